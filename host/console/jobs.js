// The Jobs views: the list of recent jobs with filters kept in the URL (so
// a filtered list can be bookmarked or shared), and one job's record, logs
// and result. Both poll, but only while open and while the tab is visible.

import { ApiError, call, path } from './api.js';
import { confirmAction } from './dialog.js';
import { badge, emptyRow, field, h, replace, table, td } from './dom.js';
import { describe, showError } from './errors.js';
import { between, bytes, localTime, micros, millis } from './format.js';
import { preview, showLogs } from './output.js';

const STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];
const PAGE = 50;
const MAX_PAGE = 500;
const LIST_POLL_MS = 5000;
const JOB_POLL_MS = 2000;

const jobLink = (id) => h('a', { href: `#/jobs/${encodeURIComponent(id)}` }, id);

/**
 * Ended jobs take their time from their timestamps. Those have whole
 * seconds, so a job that ended within the second it was submitted shows
 * its run's wall time instead of a misleading zero; running ones too.
 */
function duration(job) {
  const ms = job.finished_at ? between(job.submitted_at, job.finished_at) : null;
  if (ms !== null && ms >= 1000) return millis(ms);
  if (job.usage) return micros(job.usage.wall_us);
  return ms !== null ? 'under 1 s' : '—';
}

const errorText = (error) => (error ? [h('code', {}, error.code), ` ${error.message}`] : '');

function jobRow(job) {
  return h(
    'tr',
    { 'data-job': job.id, 'data-status': job.status },
    h('th', { scope: 'row' }, jobLink(job.id)),
    td(badge(job.status)),
    td(job.function),
    td(localTime(job.submitted_at)),
    td(duration(job), true),
    td(String(job.deliveries), true),
    td(h('span', { class: 'error-cell' }, errorText(job.error))),
  );
}

export function mountList(ctx) {
  const filters = { status: ctx.params.get('status') ?? '', function: ctx.params.get('function') ?? '' };
  let loaded = 0;
  let cursor = null;
  let latest = 0; // a slow poll must not overwrite a newer filter's rows
  let growing = false; // "Load more" under way: a poll now would count the old rows

  const status = h('select', { id: 'jobs-status', name: 'status' }, h('option', { value: '' }, 'all'), STATUSES.map((s) => h('option', { value: s }, s)));
  status.value = STATUSES.includes(filters.status) ? filters.status : '';
  filters.status = status.value;
  const fnSelect = h('select', { id: 'jobs-function', name: 'function' }, h('option', { value: '' }, 'all'));
  const refreshButton = h('button', { type: 'button', id: 'jobs-refresh' }, 'Refresh');
  const more = h('button', { type: 'button', id: 'jobs-more', hidden: true }, 'Load more');
  const columns = [
    { label: 'Job' },
    { label: 'Status' },
    { label: 'Function' },
    { label: 'Submitted' },
    { label: 'Duration', num: true },
    { label: 'Deliveries', num: true },
    { label: 'Error' },
  ];
  const jobs = table('jobs-table', 'Jobs, newest first', columns);

  function fillFunctions(names) {
    const all = [...new Set([...names, filters.function].filter(Boolean))].sort();
    replace(fnSelect, h('option', { value: '' }, 'all'), all.map((n) => h('option', { value: n }, n)));
    fnSelect.value = filters.function;
  }

  /** Loads the first `limit` jobs again, replacing the table. */
  async function reload(limit = PAGE) {
    const ticket = ++latest;
    const { data } = await call('GET', '/v1/jobs', { query: { ...filters, limit }, signal: ctx.signal });
    if (ticket !== latest) return;
    // A poll rebuilds the rows; keep keyboard focus on the same job's link.
    const focused = document.activeElement?.closest?.('#jobs-table tr')?.dataset.job;
    replace(jobs.tbody, data.jobs.length ? data.jobs.map(jobRow) : emptyRow(columns.length, 'No jobs match.'));
    if (focused) jobs.tbody.querySelector(`tr[data-job="${CSS.escape(focused)}"] a`)?.focus();
    loaded = data.jobs.length;
    cursor = data.next_cursor ?? null;
    more.hidden = cursor === null;
  }

  async function loadMore() {
    const ticket = ++latest;
    growing = true;
    try {
      const { data } = await call('GET', '/v1/jobs', { query: { ...filters, limit: PAGE, cursor }, signal: ctx.signal });
      if (ticket !== latest) return;
      jobs.tbody.querySelector('tr.empty')?.remove();
      jobs.tbody.append(...data.jobs.map(jobRow));
      loaded += data.jobs.length;
      cursor = data.next_cursor ?? null;
      more.hidden = cursor === null;
    } finally {
      growing = false;
    }
  }

  function applyFilters() {
    filters.status = status.value;
    filters.function = fnSelect.value;
    const query = new URLSearchParams(Object.entries(filters).filter(([, v]) => v)).toString();
    // Replacing the entry (not pushing) keeps Back meaning "the previous view".
    history.replaceState(null, '', `#/jobs${query ? `?${query}` : ''}`);
    ctx.load(() => reload());
  }

  status.addEventListener('change', applyFilters);
  fnSelect.addEventListener('change', applyFilters);
  refreshButton.addEventListener('click', () => ctx.load(() => reload(Math.min(MAX_PAGE, Math.max(PAGE, loaded)))));
  more.addEventListener('click', () => ctx.load(loadMore));

  const form = h(
    'form',
    { id: 'jobs-filters', class: 'panel form-row', 'aria-label': 'Filter jobs' },
    field('Status', status),
    field('Function', fnSelect),
    h('div', { class: 'actions' }, refreshButton),
  );
  form.addEventListener('submit', (event) => event.preventDefault());

  ctx.main.append(
    h('h2', { tabindex: '-1' }, 'Jobs'),
    form,
    h('p', { class: 'hint' }, 'Refreshes every 5 seconds while this tab is visible.'),
    jobs.wrap,
    h('div', { class: 'actions' }, more),
  );
  fillFunctions([]);
  ctx.load(async () => {
    const [list] = await Promise.all([call('GET', '/v1/functions', { signal: ctx.signal }), reload()]);
    fillFunctions([...list.data.functions.map((f) => f.name), ...list.data.builtins.map((b) => b.name)]);
  });
  // Polls keep as many rows as are shown, so "Load more" is not undone.
  ctx.every(LIST_POLL_MS, async () => {
    if (!growing) await reload(Math.min(MAX_PAGE, Math.max(PAGE, loaded)));
  });
}

function record(job) {
  const usage = job.usage;
  const rows = [
    ['Status', badge(job.status)],
    ['Function', job.function],
    ['Version', h('code', {}, job.version)],
    ['Deliveries', String(job.deliveries)],
    ['Submitted', localTime(job.submitted_at)],
    ['Finished', localTime(job.finished_at)],
    ['Duration', duration(job)],
    ['Attempts billed', String(job.attempts?.length ?? 0)],
  ];
  if (usage) {
    rows.push(
      ['Outcome', h('code', {}, usage.outcome)],
      ['Wall time', micros(usage.wall_us)],
      ['CPU time', micros(usage.cpu_us)],
      ['Bytes in', bytes(usage.bytes_in)],
      ['Bytes out', bytes(usage.bytes_out)],
      ['Peak memory', bytes(usage.peak_memory_bytes)],
    );
    if (usage.fuel !== null && usage.fuel !== undefined) rows.push(['Fuel', String(usage.fuel)]);
  }
  if (job.error) rows.push(['Error', errorText(job.error)]);
  return rows.flatMap(([label, value]) => [h('dt', {}, label), h('dd', {}, value)]);
}

export function mountJob(ctx) {
  const id = ctx.arg;
  let finishedShown = false; // the ended job's logs and result are on the page
  let finishing = false; // ...and are being fetched
  let stopPolling = null;
  let sent = 0; // requests for the record, numbered
  let drawn = 0; // the newest shown: a poll answered after a newer one is dropped

  const title = h('h2', { tabindex: '-1' }, 'Job ', h('code', {}, id));
  const dl = h('dl', { id: 'job-record', class: 'pairs' });
  const raw = h('pre', { class: 'output' });
  const cancel = h('button', { type: 'button', id: 'job-cancel', class: 'danger', hidden: true }, 'Cancel job');
  const logs = h('pre', { id: 'job-logs', class: 'output' }, 'Loading…');
  const result = h('div', { id: 'job-result', 'aria-live': 'polite' });

  async function loadResult(job) {
    if (job.status !== 'succeeded') {
      const why = { failed: 'The job failed, so it has no result.', cancelled: 'The job was cancelled before it ran.' };
      replace(result, h('p', { class: 'muted' }, why[job.status] ?? 'No result until the job ends.'));
      return;
    }
    try {
      const response = await call('GET', path('/v1/jobs', id, 'result'), { as: 'blob', signal: ctx.signal });
      const shown = await preview(response.data, response.headers.get('Content-Type'), {
        ids: { img: 'job-preview', text: 'job-text', download: 'job-download' },
        baseName: `${job.function}-${id}`,
        signal: ctx.signal,
      });
      replace(result, shown.nodes);
    } catch (err) {
      // Expired or not there: part of the page, not a failure to load it.
      if (!(err instanceof ApiError) || err.status === 401) throw err;
      replace(result, h('p', { class: 'inline-error', id: 'job-result-error' }, describe(err)));
    }
  }

  async function refresh() {
    const mine = ++sent;
    let job;
    try {
      ({ data: job } = await call('GET', path('/v1/jobs', id), { signal: ctx.signal }));
    } catch (err) {
      // No such job: there is nothing to wait for. Anything else is retried.
      if (err instanceof ApiError && err.status === 404) endPolling();
      throw err;
    }
    if (mine < drawn) return;
    drawn = mine;
    replace(dl, record(job));
    raw.textContent = JSON.stringify(job, null, 2);
    cancel.hidden = job.status !== 'queued';
    if (['queued', 'running'].includes(job.status)) {
      logs.textContent = '(nothing yet: logs appear when the job ends)';
      replace(result, h('p', { class: 'muted' }, 'No result until the job ends.'));
      startPolling();
      return;
    }
    if (!finishedShown && !finishing) {
      finishing = true;
      // Polling goes on until the logs and result are in, so a failure to fetch them is retried.
      startPolling();
      try {
        const [logData] = await Promise.all([call('GET', path('/v1/jobs', id, 'logs'), { signal: ctx.signal }), loadResult(job)]);
        showLogs(logs, logData.data);
        finishedShown = true;
      } finally {
        finishing = false;
      }
    }
    if (finishedShown) endPolling();
  }

  function startPolling() {
    if (stopPolling) return;
    stopPolling = ctx.every(JOB_POLL_MS, refresh);
  }

  function endPolling() {
    stopPolling?.();
    stopPolling = null;
  }

  cancel.addEventListener('click', async () => {
    const yes = await confirmAction({
      title: 'Cancel job',
      message: `Cancel job ${id}? It will never run.`,
      yes: 'Cancel job',
      no: 'Keep it',
    });
    if (!yes) return;
    await ctx.load(async () => {
      try {
        await call('DELETE', path('/v1/jobs', id), { signal: ctx.signal });
      } catch (err) {
        showError(err); // e.g. a worker took it meanwhile; show where it is now
      }
      await refresh();
    });
  });

  ctx.main.append(
    h('p', {}, h('a', { href: '#/jobs' }, '← All jobs')),
    title,
    h('div', { class: 'actions' }, cancel),
    dl,
    h('details', {}, h('summary', {}, 'Raw record (JSON)'), raw),
    h('h3', {}, 'Logs'),
    logs,
    h('h3', {}, 'Result'),
    result,
  );
  // Polled from the start, so a first load that fails (a 503, say) is retried.
  startPolling();
  ctx.load(refresh);
}
