// The Usage view: what the tenant's calls consumed and cost, hour by hour
// and per function, with a CSV export. Reports are rate limited (one a
// second) and aggregate the log on every read, so this view asks only when
// opened or when the user changes the period or presses Refresh.

import { call } from './api.js';
import { drawStackedBars } from './chart.js';
import { emptyRow, field, h, replace, s, table, td } from './dom.js';
import { bytes, cost, fixedMs, isoSeconds, localDate, localHour, localTime, plural } from './format.js';

const HOUR_MS = 3600 * 1000;
const PERIODS = {
  '24h': { label: 'last 24 hours', hours: 24 },
  '7d': { label: 'last 7 days', hours: 7 * 24 },
  '30d': { label: 'last 30 days', hours: 30 * 24 },
};
const shortMs = (v) => (v >= 1000 ? `${Number((v / 1000).toPrecision(3))} s` : `${Number(v.toPrecision(3))} ms`);
const shortBytes = (v) => bytes(v).replace('.0 ', ' ');
/** `5e-7` as `0.0000005`: costs per hour are often far below one unit. */
const plainDecimal = (v) =>
  v === 0 ? '0' : v.toFixed(Math.min(12, Math.max(0, 2 - Math.floor(Math.log10(Math.abs(v)))))).replace(/\.?0+$/, '');
/** Each metric: its label, how a value reads in a tooltip, and how an axis tick reads. */
const METRICS = {
  invocations: { label: 'invocations', tip: (v) => plural(v, 'invocation'), tick: String, integer: true },
  failures: { label: 'failures', tip: (v) => plural(v, 'failure'), tick: String, integer: true },
  cpu_ms: { label: 'CPU time', tip: (v) => `${fixedMs(v)} CPU`, tick: shortMs },
  wall_ms: { label: 'wall time', tip: (v) => `${fixedMs(v)} wall`, tick: shortMs },
  bytes_in: { label: 'bytes in', tip: (v) => `${bytes(v)} in`, tick: shortBytes, integer: true },
  bytes_out: { label: 'bytes out', tip: (v) => `${bytes(v)} out`, tick: shortBytes, integer: true },
  cost: { label: 'cost', tip: (v) => `cost ${cost(v)}`, tick: plainDecimal },
};
const CSV_COLUMNS = ['hour', 'function', 'invocations', 'failures', 'cpu_ms', 'wall_ms', 'bytes_in', 'bytes_out', 'cost'];
/** Series colours defined in console.css (light and dark variants). */
const SERIES_COLOURS = 8;

/** RFC 4180: quote a field holding a comma, quote or line break; double its quotes. */
function csvField(value) {
  const text = String(value ?? '');
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function toCsv(hourly) {
  const lines = [CSV_COLUMNS.join(',')];
  for (const row of hourly) lines.push(CSV_COLUMNS.map((c) => csvField(row[c])).join(','));
  return `${lines.join('\r\n')}\r\n`;
}

/** `2024-05-01T13:00:00Z` → `20240501T130000Z`, safe in a file name everywhere. */
const compactTime = (iso) => String(iso).replace(/[-:]/g, '').replace(/\.\d+/, '');

function saveFile(name, text, type) {
  const href = URL.createObjectURL(new Blob([text], { type }));
  const link = h('a', { href, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(href), 10000);
}

export function mount(ctx) {
  let report = null;
  /** The period `report` covers, which the select may not show while a load is under way. */
  let shownPeriod = null;
  let slots = [];
  let drawnWidth = 0;
  /** Only the newest request may draw: an older answer arriving last is dropped. */
  let ticket = 0;

  const periodSelect = h('select', { id: 'usage-period', name: 'period' }, Object.entries(PERIODS).map(([v, p]) => h('option', { value: v }, p.label)));
  const metricSelect = h('select', { id: 'usage-metric', name: 'metric' }, Object.entries(METRICS).map(([v, m]) => h('option', { value: v }, m.label)));
  const refreshButton = h('button', { type: 'button', id: 'usage-refresh' }, 'Refresh');
  const csvButton = h('button', { type: 'button', id: 'usage-csv', disabled: true }, 'Download CSV');
  const periodText = h('p', { id: 'usage-period-text', class: 'muted' });
  const empty = h('p', { id: 'usage-empty', class: 'muted', hidden: true }, 'No usage in this period');
  const svg = s('svg', { id: 'usage-chart', role: 'img' });
  const chartBox = h('div', { class: 'chart' }, svg);
  const legend = h('ul', { id: 'usage-legend', class: 'legend', 'aria-label': 'Functions in the chart' });
  const columns = [
    { label: 'Function' },
    { label: 'Invocations', num: true },
    { label: 'Failures', num: true },
    { label: 'CPU time', num: true },
    { label: 'Wall time', num: true },
    { label: 'Bytes in', num: true },
    { label: 'Bytes out', num: true },
    { label: 'Cost', num: true },
  ];
  const totals = table('usage-table', 'Totals per function over the period', columns);

  async function load() {
    const mine = ++ticket;
    const period = periodSelect.value;
    const hours = PERIODS[period].hours;
    // The current hour is included; the server counts buckets starting in [from, to).
    const end = Math.floor(Date.now() / HOUR_MS) * HOUR_MS + HOUR_MS;
    const start = end - hours * HOUR_MS;
    refreshButton.disabled = true;
    try {
      const { data } = await call('GET', '/v1/usage', {
        query: { from: isoSeconds(start), to: isoSeconds(end), granularity: 'hour' },
        signal: ctx.signal,
      });
      if (mine !== ticket) return;
      report = { ...data, hourly: Array.isArray(data.hourly) ? data.hourly : [] };
      shownPeriod = period;
      slots = Array.from({ length: hours }, (_, i) => start + i * HOUR_MS);
      render();
    } catch (err) {
      // The chart still shows the last period that loaded: say so.
      if (mine === ticket && shownPeriod) periodSelect.value = shownPeriod;
      throw err;
    } finally {
      if (mine === ticket) refreshButton.disabled = false;
    }
  }

  /** Every function seen, in name order, so each keeps its colour across metrics. */
  const functionNames = () => [...new Set([...report.functions.map((f) => f.function), ...report.hourly.map((r) => r.function)])].sort();

  function render() {
    const names = functionNames();
    periodText.textContent = `From ${localTime(report.from)} to ${localTime(report.to)} (local time).`;
    empty.hidden = names.length > 0;
    csvButton.disabled = report.hourly.length === 0;
    drawChart(names);
    renderTable();
  }

  function drawChart(names = functionNames()) {
    const metricName = metricSelect.value;
    const metric = METRICS[metricName];
    const colour = new Map(names.map((n, i) => [n, `series-${i % SERIES_COLOURS}`]));
    const byHour = new Map();
    for (const row of report.hourly) {
      const at = Date.parse(row.hour);
      if (!byHour.has(at)) byHour.set(at, []);
      byHour.get(at).push(row);
    }
    let total = 0;
    let busiest = null;
    const bars = slots.map((time) => {
      const rows = (byHour.get(time) ?? []).sort((a, b) => names.indexOf(a.function) - names.indexOf(b.function));
      const when = `${localDate(new Date(time))} ${localHour(new Date(time))}`;
      const segments = rows.map((row) => {
        const value = Number(row[metricName]) || 0;
        return {
          value,
          className: colour.get(row.function),
          attrs: { 'data-function': row.function, 'data-hour': row.hour, 'data-value': row[metricName] },
          tip: `${row.function}, ${when}: ${metric.tip(value)}`,
        };
      });
      const sum = segments.reduce((acc, seg) => acc + seg.value, 0);
      total += sum;
      if (sum > 0 && (!busiest || sum > busiest.sum)) busiest = { sum, when };
      return { time, segments };
    });
    const period = PERIODS[shownPeriod].label;
    const desc = busiest
      ? `${metric.tip(total)} in total across ${plural(names.length, 'function')}; the busiest hour was ${busiest.when} with ${metric.tip(busiest.sum)}.`
      : `No ${metric.label} in the ${period}.`;
    drawnWidth = Math.round(chartBox.clientWidth) || 720;
    drawStackedBars(svg, {
      width: drawnWidth,
      bars,
      formatTick: metric.tick,
      integer: metric.integer,
      title: `Usage: ${metric.label} per hour, ${period}`,
      desc,
    });
    replace(
      legend,
      names.map((n) =>
        h('li', { 'data-function': n }, h('span', { class: `swatch ${colour.get(n)}`, 'aria-hidden': 'true' }), n),
      ),
    );
  }

  function renderTable() {
    const rows = [...report.functions].sort((a, b) => a.function.localeCompare(b.function));
    const sum = (key) => rows.reduce((acc, r) => acc + (Number(r[key]) || 0), 0);
    const cells = (r) => [
      td(String(r.invocations), true),
      td(String(r.failures), true),
      td(fixedMs(r.cpu_ms), true),
      td(fixedMs(r.wall_ms), true),
      td(bytes(r.bytes_in), true),
      td(bytes(r.bytes_out), true),
      td(cost(r.cost), true),
    ];
    replace(
      totals.tbody,
      rows.length
        ? rows.map((r) => h('tr', { 'data-function': r.function }, h('th', { scope: 'row' }, r.function), cells(r)))
        : emptyRow(columns.length, 'No usage in this period'),
    );
    const all = Object.fromEntries(['invocations', 'failures', 'cpu_ms', 'wall_ms', 'bytes_in', 'bytes_out', 'cost'].map((k) => [k, sum(k)]));
    replace(totals.tfoot, h('tr', { 'data-total': '' }, h('th', { scope: 'row' }, 'Total'), cells(all)));
  }

  periodSelect.addEventListener('change', () => ctx.load(load));
  refreshButton.addEventListener('click', () => ctx.load(load));
  metricSelect.addEventListener('change', () => report && drawChart());
  csvButton.addEventListener('click', () => {
    if (report) saveFile(`usage-${compactTime(report.from)}-${compactTime(report.to)}.csv`, toCsv(report.hourly), 'text/csv');
  });
  // Redraw at the new width so labels keep their size; no new request.
  const resize = new ResizeObserver(() => {
    const width = Math.round(chartBox.clientWidth);
    if (report && width > 0 && Math.abs(width - drawnWidth) > 2) drawChart();
  });
  resize.observe(chartBox);
  ctx.signal.addEventListener('abort', () => resize.disconnect());

  const controls = h(
    'form',
    { id: 'usage-controls', class: 'panel form-row', 'aria-label': 'Usage period and metric' },
    field('Period', periodSelect),
    field('Chart', metricSelect),
    h('div', { class: 'actions' }, refreshButton, csvButton),
  );
  controls.addEventListener('submit', (event) => event.preventDefault());

  ctx.main.append(
    h('h2', { tabindex: '-1' }, 'Usage'),
    controls,
    periodText,
    empty,
    h('figure', { class: 'chart-figure' }, chartBox, legend),
    totals.wrap,
  );
  ctx.load(load);
}
