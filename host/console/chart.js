// A plain SVG stacked bar chart over hourly slots, drawn by hand because
// the console loads no third-party code. Sized to its container in CSS
// pixels (the viewBox follows the width) so text stays legible on phones.

import { s } from './dom.js';
import { localDate, localHour } from './format.js';

const HOUR_MS = 3600 * 1000;
const MARGIN = { top: 12, right: 12, bottom: 40, left: 64 };
const HEIGHT = 280;
/** Hours between x labels, smallest first; the first that leaves room wins. */
const LABEL_EVERY = [1, 2, 3, 4, 6, 12, 24, 48, 72, 168];
const MIN_LABEL_GAP_PX = 52;

/** A round step giving 3 to 5 ticks from 0 up to at least `max`. */
function niceTicks(max, integer) {
  const top = max > 0 ? max : 1;
  const raw = top / 3;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  // Counts step by whole numbers: no 2.5 between 1 and 10.
  const multiples = integer && magnitude <= 1 ? [1, 2, 5, 10] : [1, 2, 2.5, 5, 10];
  let step = multiples.map((m) => m * magnitude).find((candidate) => candidate >= raw);
  if (integer) step = Math.max(1, step);
  const count = Math.max(2, Math.ceil(top / step - 1e-9));
  return Array.from({ length: count + 1 }, (_, i) => Number((i * step).toPrecision(12)));
}

/**
 * Should the slot at `time` carry an x label, and which. Slots start on
 * UTC hours, which in zones half or three quarters of an hour off UTC
 * start at :30 or :45 local time, so only the local hour is looked at.
 */
function xLabel(time, every) {
  const d = new Date(time);
  const midnight = d.getHours() === 0;
  if (every < 24) {
    if (d.getHours() % every !== 0) return null;
    return midnight ? localDate(d).slice(5) : localHour(d);
  }
  if (!midnight) return null;
  const day = Math.floor((time - d.getTimezoneOffset() * 60000) / (24 * HOUR_MS));
  return day % (every / 24) === 0 ? localDate(d).slice(5) : null;
}

/**
 * Draws into `svg`. `bars` is one entry per slot, `{ time, segments }`,
 * each segment `{ value, className, attrs, tip }` stacked bottom-up;
 * `formatTick` writes y labels. `title` and `desc` describe the chart to
 * those who cannot see it.
 */
export function drawStackedBars(svg, { width, bars, formatTick, integer, title, desc }) {
  const plotW = Math.max(40, width - MARGIN.left - MARGIN.right);
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const totals = bars.map((bar) => bar.segments.reduce((sum, seg) => sum + seg.value, 0));
  const ticks = niceTicks(Math.max(0, ...totals), integer);
  const top = ticks[ticks.length - 1];
  const y = (value) => MARGIN.top + plotH - (value / top) * plotH;
  const slotW = plotW / Math.max(1, bars.length);
  const barW = slotW > 4 ? slotW * 0.78 : slotW;

  svg.replaceChildren();
  svg.setAttribute('viewBox', `0 0 ${width} ${HEIGHT}`);
  svg.setAttribute('width', '100%');
  svg.setAttribute('height', String(HEIGHT));
  svg.setAttribute('aria-labelledby', 'usage-chart-title usage-chart-desc');
  svg.append(s('title', { id: 'usage-chart-title' }, title), s('desc', { id: 'usage-chart-desc' }, desc));

  const grid = s('g', { class: 'axis y-axis' });
  for (const tick of ticks) {
    const at = y(tick);
    grid.append(
      s('line', { x1: MARGIN.left, x2: MARGIN.left + plotW, y1: at, y2: at, class: tick === 0 ? 'baseline' : 'grid' }),
      s('text', { x: MARGIN.left - 6, y: at, 'text-anchor': 'end', 'dominant-baseline': 'middle' }, formatTick(tick)),
    );
  }
  svg.append(grid);

  const every = LABEL_EVERY.find((hours) => hours * slotW >= MIN_LABEL_GAP_PX) ?? 168;
  const xAxis = s('g', { class: 'axis x-axis' });
  const plot = s('g', { class: 'bars' });
  bars.forEach((bar, i) => {
    const x0 = MARGIN.left + i * slotW;
    const label = xLabel(bar.time, every);
    if (label) {
      const cx = x0 + slotW / 2;
      const base = MARGIN.top + plotH;
      xAxis.append(
        s('line', { x1: cx, x2: cx, y1: base, y2: base + 4, class: 'tick' }),
        s('text', { x: cx, y: base + 18, 'text-anchor': 'middle', class: label.includes(':') ? null : 'date' }, label),
      );
    }
    let stacked = 0;
    for (const seg of bar.segments) {
      if (!(seg.value > 0)) continue;
      const yTop = y(stacked + seg.value);
      const height = Math.max(0.5, y(stacked) - yTop);
      stacked += seg.value;
      plot.append(
        s('rect', { x: x0 + (slotW - barW) / 2, y: yTop, width: barW, height, class: seg.className, ...seg.attrs }, s('title', {}, seg.tip)),
      );
    }
  });
  svg.append(xAxis, plot);
}
