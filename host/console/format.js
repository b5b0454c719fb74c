// Human formats, kept in one place so every view writes sizes, durations
// and times the same way. Sizes use SI units (1 KB = 1000 B) throughout.

const pad = (n, width = 2) => String(n).padStart(width, '0');

/** `512 B`, `12.3 KB`, `1.4 MB`, `2.1 GB`. */
export function bytes(n) {
  if (n === null || n === undefined || !Number.isFinite(Number(n))) return '—';
  const value = Number(n);
  if (Math.abs(value) < 1000) return `${value} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let scaled = value;
  let unit = 'B';
  for (const next of units) {
    if (Math.abs(scaled) < 1000) break;
    scaled /= 1000;
    unit = next;
  }
  return `${scaled.toFixed(1)} ${unit}`;
}

/** A duration in microseconds: `850 µs`, `1.52 ms`, `2.1 s`, `3 min 5 s`. */
export function micros(us) {
  if (us === null || us === undefined || !Number.isFinite(Number(us))) return '—';
  const value = Number(us);
  if (value < 1000) return `${Math.round(value)} µs`;
  if (value < 1e6) return `${(value / 1000).toFixed(2)} ms`;
  const seconds = value / 1e6;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/** A duration in milliseconds, as `micros` writes it. */
export function millis(ms) {
  return ms === null || ms === undefined ? '—' : micros(Number(ms) * 1000);
}

/** Milliseconds with two decimals, for usage totals: `12.50 ms`. */
export function fixedMs(ms) {
  return `${Number(ms).toFixed(2)} ms`;
}

/** Money in the price table's currency, to the micro-unit the meter keeps. */
export function cost(value) {
  return Number(value).toFixed(6);
}

/** An RFC 3339 instant in local time, `YYYY-MM-DD HH:MM:SS`. */
export function localTime(value) {
  if (!value) return '—';
  const d = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  return `${localDate(d)} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** `YYYY-MM-DD` in local time. */
export function localDate(d) {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** `HH:MM` in local time. */
export function localHour(d) {
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** Milliseconds between two RFC 3339 instants, or null. */
export function between(from, to) {
  const start = Date.parse(from);
  const end = Date.parse(to);
  return Number.isFinite(start) && Number.isFinite(end) ? Math.max(0, end - start) : null;
}

/** An instant as the API reads it: RFC 3339 in UTC, whole seconds. */
export function isoSeconds(ms) {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** `1 function`, `3 functions`. */
export function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

/** A version hash short enough for a table cell; the full one goes in a title. */
export function shortVersion(version) {
  const text = String(version ?? '');
  return text.length > 19 ? `${text.slice(0, 19)}…` : text;
}
