// The Functions view: what the tenant has deployed, deploying a new
// version (with upload progress, since big components take a while), and
// rolling back or deleting.

import { call, path, upload } from './api.js';
import { confirmAction } from './dialog.js';
import { badge, emptyRow, field, h, replace, table, td } from './dom.js';
import { clearError, describe, isAbort, showError } from './errors.js';
import { bytes, localTime, plural, shortVersion } from './format.js';

const NAME_PATTERN = '[a-z0-9_\\-]{1,64}';

/** A function name from a file name: `My Filter.wasm` → `my-filter`. */
function nameFromFile(fileName) {
  return fileName
    .replace(/\.wasm$/i, '')
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .slice(0, 64);
}

const activeOf = (fn) => fn.versions.find((v) => v.version === fn.active_version) ?? null;

export function mount(ctx) {
  let list = null;
  let shown = null; // the function whose versions are open

  const limitsLine = h('p', { id: 'functions-limits', class: 'muted' });
  const columns = [
    { label: 'Name' },
    { label: 'Active version' },
    { label: 'Size', num: true },
    { label: 'World' },
    { label: 'Deployed at' },
    { label: 'Actions' },
  ];
  const fnTable = table('functions-table', 'Your functions', columns);
  const builtinTable = table('builtins-table', 'Built-in functions, callable by every tenant', [
    { label: 'Name' },
    { label: 'Version' },
    { label: 'Summary' },
  ]);
  const versions = h('section', { id: 'versions', class: 'panel', 'aria-labelledby': 'versions-title', hidden: true });

  async function refresh() {
    const { data } = await call('GET', '/v1/functions', { signal: ctx.signal });
    list = data;
    render();
  }

  function render() {
    const { max_functions: maxFns, max_component_bytes: maxBytes, max_versions: maxVersions } = list.limits;
    limitsLine.textContent = `Up to ${plural(maxFns, 'function')}, ${bytes(maxBytes)} each, ${plural(maxVersions, 'version')} kept per function.`;
    replace(
      fnTable.tbody,
      list.functions.length === 0 ? emptyRow(columns.length, 'No functions deployed yet.') : list.functions.map(functionRow),
    );
    replace(
      builtinTable.tbody,
      list.builtins.map((b) =>
        h('tr', { 'data-builtin': b.name }, h('th', { scope: 'row' }, b.name), td(h('code', {}, b.version)), td(b.summary)),
      ),
    );
    const still = shown && list.functions.find((f) => f.name === shown);
    if (still) renderVersions(still);
    else hideVersions();
  }

  function functionRow(fn) {
    const active = activeOf(fn);
    return h(
      'tr',
      { 'data-function': fn.name, 'data-active-version': fn.active_version },
      h('th', { scope: 'row' }, fn.name),
      td(h('code', { title: fn.active_version }, shortVersion(fn.active_version))),
      td(active ? bytes(active.size) : '—', true),
      td(fn.world),
      td(active ? localTime(active.deployed_at) : '—'),
      td(
        h(
          'div',
          { class: 'row-actions' },
          h('button', { type: 'button', 'data-versions': fn.name, 'aria-label': `Versions of ${fn.name}` }, 'Versions'),
          h('button', { type: 'button', class: 'danger', 'data-delete': fn.name, 'aria-label': `Delete ${fn.name}` }, 'Delete'),
        ),
      ),
    );
  }

  function renderVersions(fn) {
    shown = fn.name;
    const rows = [...fn.versions].reverse().map((v) => {
      const isActive = v.version === fn.active_version;
      return h(
        'tr',
        { 'data-version': v.version, class: isActive ? 'active' : null },
        td(h('code', { title: v.version }, shortVersion(v.version))),
        td(bytes(v.size), true),
        td(localTime(v.deployed_at)),
        td(v.world),
        td(
          isActive
            ? badge('active')
            : h('button', { type: 'button', 'data-rollback': v.version, 'aria-label': `Make ${shortVersion(v.version)} active` }, 'Make active'),
        ),
      );
    });
    const t = table('versions-table', `Versions of ${fn.name}, newest first`, [
      { label: 'Version' },
      { label: 'Size', num: true },
      { label: 'Deployed at' },
      { label: 'World' },
      { label: 'State' },
    ]);
    replace(t.tbody, rows);
    replace(
      versions,
      h('h3', { id: 'versions-title', tabindex: '-1' }, `Versions of ${fn.name}`),
      t.wrap,
      h('button', { type: 'button', id: 'versions-close' }, 'Close'),
    );
    versions.dataset.function = fn.name;
    versions.hidden = false;
  }

  function hideVersions() {
    shown = null;
    versions.hidden = true;
    versions.replaceChildren();
    delete versions.dataset.function;
  }

  fnTable.tbody.addEventListener('click', async (event) => {
    const button = event.target.closest('button');
    if (!button) return;
    if (button.dataset.versions) {
      const fn = list.functions.find((f) => f.name === button.dataset.versions);
      if (fn) renderVersions(fn);
      versions.querySelector('h3')?.focus();
    } else if (button.dataset.delete) {
      const name = button.dataset.delete;
      const yes = await confirmAction({
        title: 'Delete function',
        message: `Delete ${name} and all its versions? Calls to it will fail from now on.`,
        yes: `Delete ${name}`,
      });
      if (!yes) return;
      await ctx.load(async () => {
        await call('DELETE', path('/v1/functions', name));
        if (shown === name) hideVersions();
        await refresh();
      });
    }
  });

  versions.addEventListener('click', async (event) => {
    const button = event.target.closest('button');
    if (!button) return;
    if (button.id === 'versions-close') {
      const name = shown;
      hideVersions();
      fnTable.tbody.querySelector(`button[data-versions="${CSS.escape(name)}"]`)?.focus();
    } else if (button.dataset.rollback) {
      const name = shown;
      button.disabled = true;
      const ok = await ctx.load(async () => {
        const { data } = await call('POST', path('/v1/functions', name, 'rollback'), {
          json: { version: button.dataset.rollback },
          signal: ctx.signal,
        });
        shown = data.name;
        await refresh();
      });
      // After a failure the same button is still there: let it be tried again.
      if (!ok) button.disabled = false;
      versions.querySelector('h3')?.focus();
    }
  });

  ctx.main.append(
    h('h2', { tabindex: '-1' }, 'Functions'),
    limitsLine,
    fnTable.wrap,
    versions,
    deployForm(ctx, () => list, refresh),
    h('h2', {}, 'Built-in functions'),
    builtinTable.wrap,
  );
  ctx.load(refresh);
}

/** The deploy form; `lastList()` gives the limits to check against, `refresh` reloads the table. */
function deployForm(ctx, lastList, refresh) {
  let file = null;
  const name = h('input', { id: 'deploy-name', name: 'name', pattern: NAME_PATTERN, maxlength: 64, required: true, autocomplete: 'off', spellcheck: 'false' });
  const fileInput = h('input', { id: 'deploy-file', type: 'file', accept: '.wasm,application/wasm' });
  const dropLabel = h('span', {}, 'Drop a .wasm component here, or press to choose one');
  const drop = h('button', { type: 'button', id: 'deploy-drop', class: 'drop-zone', 'aria-describedby': 'deploy-file-hint' }, dropLabel);
  const progress = h('progress', { id: 'deploy-progress', max: 100, value: 0, hidden: true, 'aria-label': 'Upload progress' });
  const status = h('p', { id: 'deploy-status', 'aria-live': 'polite', role: 'status' });
  const submit = h('button', { type: 'submit', id: 'deploy-submit', class: 'primary' }, 'Deploy');

  const choose = (chosen) => {
    file = chosen ?? null;
    dropLabel.textContent = file ? `${file.name} (${bytes(file.size)})` : 'Drop a .wasm component here, or press to choose one';
    if (file && name.value.trim() === '') name.value = nameFromFile(file.name);
  };
  const setStatus = (state, ...content) => {
    status.dataset.state = state;
    replace(status, ...content);
  };

  fileInput.addEventListener('change', () => choose(fileInput.files[0]));
  drop.addEventListener('click', () => fileInput.click());
  drop.addEventListener('dragover', (event) => {
    event.preventDefault();
    event.dataTransfer.dropEffect = 'copy';
    drop.classList.add('dragging');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('dragging'));
  drop.addEventListener('drop', (event) => {
    event.preventDefault();
    drop.classList.remove('dragging');
    const dropped = event.dataTransfer.files;
    if (dropped.length === 0) return;
    try {
      fileInput.files = dropped; // keeps the visible input in step
    } catch {
      // Older browsers cannot assign a FileList; the drop still counts.
    }
    choose(dropped[0]);
  });

  const form = h(
    'form',
    { id: 'deploy-form', class: 'panel', 'aria-labelledby': 'deploy-title', novalidate: true },
    h('h3', { id: 'deploy-title' }, 'Deploy a function'),
    h(
      'div',
      { class: 'form-row' },
      field('Name', name, '1 to 64 of a–z, 0–9, - and _. Deploying to an existing name adds a version.'),
      field('Component (.wasm)', fileInput),
    ),
    drop,
    h('p', { id: 'deploy-file-hint', class: 'hint' }, 'A WebAssembly component implementing the transform or http world.'),
    h('div', { class: 'actions' }, submit, progress),
    status,
  );

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const fnName = name.value.trim();
    if (!new RegExp(`^${NAME_PATTERN}$`).test(fnName)) {
      setStatus('error', 'The name must be 1 to 64 of a–z, 0–9, - and _.');
      name.focus();
      return;
    }
    if (!file) {
      setStatus('error', 'Choose a .wasm component first.');
      drop.focus();
      return;
    }
    const max = lastList()?.limits?.max_component_bytes;
    if (max && file.size > max) {
      setStatus('error', h('code', {}, 'component_too_large'), ` — ${file.name} is ${bytes(file.size)}; this server takes up to ${bytes(max)}`);
      return;
    }

    submit.disabled = true;
    progress.hidden = false;
    progress.value = 0;
    setStatus('uploading', 'Uploading… 0%');
    try {
      // Leaving the view stops the upload; a deploy already sent still completes on the server.
      const { status: code, data } = await upload(path('/v1/functions', fnName), file, {
        signal: ctx.signal,
        onProgress: (fraction) => {
          const percent = Math.floor(fraction * 100);
          progress.value = percent;
          setStatus('uploading', `Uploading… ${percent}%`);
        },
        onSent: () => {
          progress.value = 100;
          setStatus('compiling', 'Compiling…');
        },
      });
      const again = code === 200 ? ' — these bytes were deployed before; that version is active again' : '';
      progress.value = 100; // a small upload may report no progress at all
      clearError(); // an earlier failed deploy's banner is stale now
      setStatus('done', `Deployed ${data.name} version ${data.version} (${data.world}, ${bytes(data.size)})${again}`);
      form.reset();
      choose(null);
      ctx.load(refresh);
    } catch (err) {
      if (isAbort(err)) return;
      setStatus('error', describe(err));
      showError(err);
    } finally {
      submit.disabled = false;
      progress.hidden = true;
    }
  });

  return form;
}
