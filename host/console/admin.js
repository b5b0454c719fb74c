// The Admin view, for the operator's token: tenants with their keys,
// limits and current queue; creating a tenant, rotating and revoking keys,
// and setting limits. Deleting a tenant is left to the CLI on purpose.

import { call, path } from './api.js';
import { confirmAction } from './dialog.js';
import { emptyRow, field, h, replace, table, td } from './dom.js';
import { clearError, describe, showError } from './errors.js';
import { bytes, localTime, millis, plural } from './format.js';

const PAGE = 100;
/** Queue look-ups in flight at once, so a long tenant list does not flood the server. */
const QUEUE_CONCURRENCY = 6;
const DEFAULT_GRACE_SECONDS = 86400;
/** TenantLimits fields with their bounds (from the API's schema) and labels. */
const LIMITS = [
  ['rate_per_second', 'Requests per second', 1, 100000],
  ['burst', 'Burst above the rate', 1, 1000000],
  ['running', 'Jobs running at once', 1, 10000],
  ['queued', 'Jobs waiting at once', 1, 10000000],
  ['memory_mb', 'Memory per call (MiB)', 1, 65536],
  ['timeout_ms', 'Timeout per call (ms)', 1, 3600000],
];

/** The limits an operator set, the rest being the platform's defaults. */
function limitsText(limits) {
  const writers = {
    rate_per_second: (n) => `rate ${n}/s`,
    burst: (n) => `burst ${n}`,
    running: (n) => `running ${n}`,
    queued: (n) => `queued ${n}`,
    memory_mb: (n) => `memory ${n} MiB`,
    timeout_ms: (n) => `timeout ${millis(n)}`,
  };
  const set = Object.entries(writers)
    .filter(([name]) => limits?.[name] !== null && limits?.[name] !== undefined)
    .map(([name, write]) => write(limits[name]));
  if (set.length === 0) return 'platform defaults';
  return set.length === Object.keys(writers).length ? set.join(' · ') : `${set.join(' · ')} · others default`;
}

function queueText(q) {
  const parts = [`${q.queued} queued (${bytes(q.queued_bytes)})`, `${q.running} running`];
  if (q.oldest_queued_age_ms !== null && q.oldest_queued_age_ms !== undefined) parts.push(`oldest ${millis(q.oldest_queued_age_ms)}`);
  return parts.join(' · ');
}

/** Runs `task` over `items`, at most `limit` at a time. */
async function eachLimited(items, limit, task) {
  const queue = [...items];
  const worker = async () => {
    while (queue.length) await task(queue.shift());
  };
  await Promise.all(Array.from({ length: Math.min(limit, queue.length) }, worker));
}

/**
 * A new key whose answer came after its view was left (the Admin link
 * pressed again, say). Keys are shown only once, so it waits here for the
 * next Admin view rather than being lost; signing out forgets it.
 */
let unseenKey = null;

/** Drops a new key not yet shown: the session that asked for it has ended. */
export function forgetUnseenKey() {
  unseenKey = null;
}

export function mount(ctx) {
  let cursor = null;
  const tenants = new Map(); // name → TenantView, for the forms

  const columns = [
    { label: 'Name' },
    { label: 'Id' },
    { label: 'Created' },
    { label: 'Keys' },
    { label: 'Limits' },
    { label: 'Queue' },
    { label: 'Actions' },
  ];
  const list = table('tenants-table', 'Tenants, in name order', columns);
  const more = h('button', { type: 'button', id: 'tenants-more', hidden: true }, 'Load more');
  const refreshButton = h('button', { type: 'button', id: 'tenants-refresh' }, 'Refresh');
  const newKey = h('output', { id: 'admin-new-key', class: 'panel new-key', tabindex: '-1', hidden: true });
  const panel = h('section', { id: 'tenant-panel', class: 'panel', hidden: true });

  function keyItem(tenant, k) {
    return h(
      'li',
      { 'data-key': k.id },
      h('code', {}, k.id),
      k.expires_at ? ` expires ${localTime(k.expires_at)}` : ' current',
      ' ',
      h('button', { type: 'button', class: 'small danger', 'data-revoke': k.id, 'data-tenant': tenant.name, 'aria-label': `Revoke key ${k.id} of ${tenant.name}` }, 'Revoke'),
    );
  }

  function tenantRow(t) {
    return h(
      'tr',
      { 'data-tenant': t.name },
      h('th', { scope: 'row' }, t.name),
      td(h('code', {}, t.id)),
      td(localTime(t.created_at)),
      td([h('span', {}, plural(t.keys.length, 'key')), h('ul', { class: 'keys' }, t.keys.map((k) => keyItem(t, k)))]),
      td(limitsText(t.limits)),
      td(h('span', { class: 'queue', 'data-queue': t.name }, '…')),
      td(
        h(
          'div',
          { class: 'row-actions' },
          h('button', { type: 'button', 'data-rotate': t.name, 'aria-label': `Rotate the key of ${t.name}` }, 'Rotate key'),
          h('button', { type: 'button', 'data-limits': t.name, 'aria-label': `Limits of ${t.name}` }, 'Limits'),
        ),
      ),
    );
  }

  async function loadQueue(name) {
    const cell = list.tbody.querySelector(`[data-queue="${CSS.escape(name)}"]`);
    try {
      const { data } = await call('GET', path('/v1/tenants', name, 'queue'), { signal: ctx.signal });
      if (cell) cell.textContent = queueText(data);
    } catch (err) {
      if (ctx.signal.aborted) throw err;
      if (cell) replace(cell, describe(err));
    }
  }

  /** Puts rows in the table (replacing a tenant's row when it is there) and fetches their queues. */
  async function show(views, { append = true } = {}) {
    list.tbody.querySelector('tr.empty')?.remove();
    for (const t of views) {
      tenants.set(t.name, t);
      const row = tenantRow(t);
      const old = list.tbody.querySelector(`tr[data-tenant="${CSS.escape(t.name)}"]`);
      if (old) old.replaceWith(row);
      else if (append) list.tbody.append(row);
    }
    await eachLimited(views.map((t) => t.name), QUEUE_CONCURRENCY, loadQueue);
  }

  async function reload() {
    const { data } = await call('GET', '/v1/tenants', { query: { limit: PAGE }, signal: ctx.signal });
    tenants.clear();
    replace(list.tbody, data.tenants.length ? [] : emptyRow(columns.length, 'No tenants yet.'));
    cursor = data.next_cursor ?? null;
    more.hidden = cursor === null;
    await show(data.tenants);
  }

  async function loadMore() {
    const { data } = await call('GET', '/v1/tenants', { query: { limit: PAGE, cursor }, signal: ctx.signal });
    cursor = data.next_cursor ?? null;
    more.hidden = cursor === null;
    await show(data.tenants);
  }

  /** A key is shown once: here, with a copy button, until the next one or leaving the view. */
  function showKey(tenant, apiKey) {
    if (ctx.signal.aborted) {
      unseenKey = { tenant, apiKey };
      return;
    }
    const copied = h('span', { class: 'hint', 'aria-live': 'polite' });
    const copy = h('button', { type: 'button', id: 'admin-new-key-copy' }, 'Copy');
    copy.hidden = !navigator.clipboard;
    copy.addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(apiKey);
        copied.textContent = 'Copied.';
      } catch {
        copied.textContent = 'Copying was refused; select the key and copy it by hand.';
      }
    });
    replace(
      newKey,
      h('strong', {}, `New API key for ${tenant}:`),
      ' ',
      h('code', { class: 'secret' }, apiKey),
      ' ',
      copy,
      copied,
      h('p', { class: 'warning' }, 'This key is shown only once; only its hash is stored. Copy it now and give it to the tenant.'),
    );
    newKey.hidden = false;
    newKey.focus();
  }

  function closePanel() {
    const { tenant: name, opener } = panel.dataset;
    panel.hidden = true;
    panel.replaceChildren();
    delete panel.dataset.tenant;
    delete panel.dataset.opener;
    // Back to the button that opened the panel (not the row's first, which may be a Revoke).
    if (name) list.tbody.querySelector(`tr[data-tenant="${CSS.escape(name)}"] button[data-${opener}]`)?.focus();
  }

  /** `opener` names the row button's data attribute (`rotate` or `limits`), for focus on close. */
  function openPanel(name, opener, title, form) {
    replace(panel, h('h3', { id: 'tenant-panel-title', tabindex: '-1' }, title), form);
    panel.dataset.tenant = name;
    panel.dataset.opener = opener;
    panel.setAttribute('aria-labelledby', 'tenant-panel-title');
    panel.hidden = false;
    panel.querySelector('input')?.focus();
  }

  /** A form whose submit runs `send()`; its status line shows code + message on failure. */
  function panelForm(id, fields, submitLabel, send) {
    const base = id.replace(/-form$/, '');
    const status = h('p', { id: `${base}-status`, role: 'status', 'aria-live': 'polite' });
    const submit = h('button', { type: 'submit', id: `${base}-submit`, class: 'primary' }, submitLabel);
    const cancel = h('button', { type: 'button', id: `${base}-cancel` }, 'Cancel');
    const form = h('form', { id, novalidate: true }, h('div', { class: 'form-row' }, fields), h('div', { class: 'actions' }, submit, cancel), status);
    cancel.addEventListener('click', closePanel);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      submit.disabled = true;
      replace(status);
      delete status.dataset.state;
      try {
        await send((message) => {
          status.dataset.state = 'error';
          replace(status, message);
        });
        if (status.dataset.state !== 'error') clearError(); // an earlier failure of this form is stale now
      } catch (err) {
        status.dataset.state = 'error';
        replace(status, describe(err));
        showError(err);
      } finally {
        submit.disabled = false;
      }
    });
    return form;
  }

  function openRotate(name) {
    const grace = h('input', { id: 'rotate-grace', type: 'number', min: 0, max: 2592000, step: 1, value: DEFAULT_GRACE_SECONDS, inputmode: 'numeric' });
    const form = panelForm('rotate-form', field('Grace period for the current keys (seconds)', grace, '0 revokes them at once; at most 2 592 000 (30 days). The default is one day.'), 'Rotate key', async (invalid) => {
      const seconds = grace.value.trim() === '' ? null : Number(grace.value);
      if (seconds !== null && !(Number.isInteger(seconds) && seconds >= 0 && seconds <= 2592000)) {
        invalid('The grace period must be a whole number of seconds from 0 to 2 592 000.');
        return;
      }
      const { data } = await call('POST', path('/v1/tenants', name, 'keys'), { json: { grace_seconds: seconds } });
      closePanel();
      showKey(name, data.api_key);
      await ctx.load(() => show([data.tenant], { append: false }));
    });
    openPanel(name, 'rotate', `Rotate the key of ${name}`, form);
  }

  function openLimits(name) {
    const current = tenants.get(name)?.limits ?? {};
    const inputs = LIMITS.map(([key, label, min, max]) => {
      const input = h('input', { id: `limit-${key}`, name: key, type: 'number', min, max, step: 1, inputmode: 'numeric', placeholder: 'default' });
      if (current[key] !== null && current[key] !== undefined) input.value = String(current[key]);
      return { key, label, min, max, input };
    });
    const fields = inputs.map(({ label, min, max, input }) => field(label, input, `${min} to ${max.toLocaleString('en')}; empty for the default`));
    const form = panelForm('limits-form', fields, 'Save limits', async (invalid) => {
      const body = {};
      for (const { key, label, min, max, input } of inputs) {
        const text = input.value.trim();
        const value = text === '' ? null : Number(text);
        if (value !== null && !(Number.isInteger(value) && value >= min && value <= max)) {
          invalid(`${label} must be a whole number from ${min} to ${max}, or empty for the default.`);
          input.focus();
          return;
        }
        body[key] = value;
      }
      const { data } = await call('PUT', path('/v1/tenants', name, 'limits'), { json: body });
      closePanel();
      await ctx.load(() => show([data], { append: false }));
    });
    openPanel(name, 'limits', `Limits of ${name}`, form);
  }

  list.tbody.addEventListener('click', async (event) => {
    const button = event.target.closest('button');
    if (!button) return;
    if (button.dataset.rotate) openRotate(button.dataset.rotate);
    else if (button.dataset.limits) openLimits(button.dataset.limits);
    else if (button.dataset.revoke) {
      const { revoke: keyId, tenant } = button.dataset;
      const yes = await confirmAction({
        title: 'Revoke key',
        message: `Revoke key ${keyId} of ${tenant}? Requests with it fail at once, on every node.`,
        yes: 'Revoke key',
      });
      if (!yes) return;
      await ctx.load(async () => {
        const { data } = await call('DELETE', path('/v1/tenants', tenant, 'keys', keyId));
        await show([data], { append: false });
      });
    }
  });

  const createName = h('input', { id: 'tenant-create-name', name: 'name', pattern: '[a-z0-9_\\-]{1,64}', maxlength: 64, required: true, autocomplete: 'off', spellcheck: 'false' });
  const createSubmit = h('button', { type: 'submit', id: 'tenant-create-submit', class: 'primary' }, 'Create tenant');
  const createStatus = h('p', { id: 'tenant-create-status', role: 'status', 'aria-live': 'polite' });
  const createForm = h(
    'form',
    { id: 'tenant-create-form', class: 'panel', 'aria-labelledby': 'tenant-create-title', novalidate: true },
    h('h3', { id: 'tenant-create-title' }, 'Create a tenant'),
    h('div', { class: 'form-row' }, field('Name', createName, '1 to 64 of a–z, 0–9, - and _.'), h('div', { class: 'actions' }, createSubmit)),
    createStatus,
  );
  createForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const name = createName.value.trim();
    if (!/^[a-z0-9_-]{1,64}$/.test(name)) {
      createStatus.dataset.state = 'error';
      createStatus.textContent = 'The name must be 1 to 64 of a–z, 0–9, - and _.';
      createName.focus();
      return;
    }
    createSubmit.disabled = true;
    replace(createStatus);
    delete createStatus.dataset.state;
    try {
      const { data } = await call('POST', '/v1/tenants', { json: { name } });
      createStatus.dataset.state = 'done';
      clearError();
      createStatus.textContent = `Created tenant ${data.name} (${data.id}).`;
      createForm.reset();
      showKey(data.name, data.api_key);
      await ctx.load(reload);
    } catch (err) {
      createStatus.dataset.state = 'error';
      replace(createStatus, describe(err));
      showError(err);
    } finally {
      createSubmit.disabled = false;
    }
  });

  refreshButton.addEventListener('click', () => ctx.load(reload));
  more.addEventListener('click', () => ctx.load(loadMore));

  ctx.main.append(
    h('h2', { tabindex: '-1' }, 'Tenants'),
    createForm,
    newKey,
    panel,
    h('div', { class: 'actions' }, refreshButton),
    list.wrap,
    h('div', { class: 'actions' }, more),
  );
  if (unseenKey) {
    showKey(unseenKey.tenant, unseenKey.apiKey);
    unseenKey = null;
  }
  ctx.load(reload);
}
