// The Try it view: one synchronous call of a transform function with a
// file and parameters, showing the output, what the call consumed (the
// Sluice-Usage-* headers), its job and its logs: the quickest way to
// debug a function without the CLI.

import { call, path } from './api.js';
import { field, h, replace } from './dom.js';
import { clearError, describe, showError } from './errors.js';
import { bytes, micros } from './format.js';
import { preview, showLogs } from './output.js';

/** The usage headers, as `[data-usage name, header, label, format]`. */
const USAGE = [
  ['wall-us', 'Sluice-Usage-Wall-Us', 'Wall time', micros],
  ['cpu-us', 'Sluice-Usage-Cpu-Us', 'CPU time', micros],
  ['bytes-in', 'Sluice-Usage-Bytes-In', 'Bytes in', bytes],
  ['bytes-out', 'Sluice-Usage-Bytes-Out', 'Bytes out', bytes],
  ['peak-memory-bytes', 'Sluice-Usage-Peak-Memory-Bytes', 'Peak memory', bytes],
];

function usageList(headers) {
  const items = USAGE.filter(([, header]) => headers.get(header) !== null).map(([name, header, label, format]) => {
    const raw = headers.get(header);
    return [h('dt', {}, label), h('dd', { 'data-usage': name, 'data-value': raw }, format(Number(raw)))];
  });
  return items.length ? h('dl', { id: 'try-usage', class: 'pairs' }, items) : null;
}

export function mount(ctx) {
  let revokePrevious = () => {};

  const select = h('select', { id: 'try-function', name: 'function', required: true });
  const fileInput = h('input', { id: 'try-file', type: 'file', name: 'input' });
  const params = h('input', { id: 'try-params', name: 'params', placeholder: 'width=200&format=png', autocomplete: 'off', spellcheck: 'false' });
  const submit = h('button', { type: 'submit', id: 'try-submit', class: 'primary' }, 'Run');
  const httpNote = h('p', { id: 'try-http-note', class: 'hint', hidden: true });
  const result = h('section', { id: 'try-result', 'aria-live': 'polite', 'aria-labelledby': 'try-result-title', hidden: true });

  function fillFunctions(list) {
    const wanted = ctx.params.get('function') ?? select.value;
    const own = list.functions.map((fn) =>
      fn.world === 'http'
        ? h('option', { value: fn.name, disabled: true }, `${fn.name} (http: called at /v1/functions/${fn.name}/http/)`)
        : h('option', { value: fn.name }, fn.name),
    );
    const builtins = list.builtins.map((b) => h('option', { value: b.name }, `${b.name} — ${b.summary}`));
    replace(
      select,
      own.length ? h('optgroup', { label: 'Your functions' }, own) : null,
      h('optgroup', { label: 'Built-in functions' }, builtins),
    );
    const callable = [...select.options].filter((o) => !o.disabled).map((o) => o.value);
    if (callable.includes(wanted)) select.value = wanted;
    const http = list.functions.filter((fn) => fn.world === 'http').map((fn) => fn.name);
    httpNote.hidden = http.length === 0;
    httpNote.textContent = `${http.join(', ')} ${http.length === 1 ? 'is an http function' : 'are http functions'}: they answer HTTP requests at /v1/functions/NAME/http/ and cannot be called here.`;
  }

  /** Adds the job link and a logs box to `into`; returns what fills the box. */
  function showJob(jobId, into) {
    const logs = h('pre', { id: 'try-logs', class: 'output' }, 'Loading logs…');
    into.push(
      h('p', {}, 'Job ', h('a', { id: 'try-job', href: `#/jobs/${encodeURIComponent(jobId)}` }, jobId)),
      h('h4', {}, 'Logs'),
      logs,
    );
    return async () => {
      try {
        const { data } = await call('GET', path('/v1/jobs', jobId, 'logs'), { signal: ctx.signal });
        showLogs(logs, data);
      } catch (err) {
        replace(logs, 'Logs unavailable: ', describe(err));
      }
    };
  }

  async function run(name, body, query) {
    revokePrevious();
    revokePrevious = () => {};
    result.hidden = false;
    result.dataset.state = 'running';
    replace(result, h('h3', { id: 'try-result-title' }, 'Result'), h('p', { class: 'muted' }, `Calling ${name}…`));
    const nodes = [h('h3', { id: 'try-result-title' }, 'Result')];
    let headers;
    let loadLogs = null;
    try {
      const response = await call('POST', `${path('/v1/functions', name, 'invoke')}${query ? `?${query}` : ''}`, {
        body,
        as: 'blob',
        signal: ctx.signal,
      });
      headers = response.headers;
      const shown = await preview(response.data, headers.get('Content-Type'), {
        ids: { img: 'try-preview', text: 'try-text', download: 'try-download' },
        baseName: `${name}-output`,
        signal: ctx.signal,
      });
      revokePrevious = shown.revoke;
      nodes.push(...shown.nodes);
      result.dataset.state = 'done';
      clearError(); // an earlier failed call's banner is stale now
    } catch (err) {
      if (ctx.signal.aborted) return;
      headers = err.headers ?? null;
      nodes.push(h('p', { class: 'inline-error' }, describe(err)));
      result.dataset.state = 'error';
      showError(err);
    }
    if (headers) {
      nodes.push(usageList(headers));
      const jobId = headers.get('Sluice-Job-Id');
      if (jobId) loadLogs = showJob(jobId, nodes);
    }
    replace(result, nodes);
    // Logs arrive after the result; the form is usable again meanwhile.
    if (loadLogs) loadLogs();
  }

  const form = h(
    'form',
    { id: 'try-form', class: 'panel', 'aria-labelledby': 'try-title' },
    h('h3', { id: 'try-title' }, 'Call a function'),
    h(
      'div',
      { class: 'form-row' },
      field('Function', select),
      field('Input file', fileInput, 'Any bytes; usually an image. Leave empty to send nothing.'),
      field('Parameters', params, 'A query string, e.g. width=200&format=png'),
    ),
    httpNote,
    h('div', { class: 'actions' }, submit),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const name = select.value;
    if (!name) return;
    const query = new URLSearchParams(params.value.trim().replace(/^\?/, '')).toString();
    submit.disabled = true;
    try {
      await run(name, fileInput.files[0] ?? new Uint8Array(0), query);
    } finally {
      submit.disabled = false;
    }
  });

  ctx.main.append(
    h('h2', { tabindex: '-1' }, 'Try it'),
    h('p', { class: 'muted' }, 'Calls a function synchronously, exactly as POST /v1/functions/NAME/invoke does, and bills it the same way.'),
    form,
    result,
  );
  ctx.load(async () => {
    const { data } = await call('GET', '/v1/functions', { signal: ctx.signal });
    fillFunctions(data);
  });
}
