// Entry point: who is signed in, which view shows, and the shell around
// the views. Browser tests wait on `main[data-view]` and `main[data-state]`
// (`loading`, then `ready`, or `error` when the view's data failed to load),
// so this file is the only one that sets them.

import { ApiError, call, key, whenUnauthorized } from './api.js';
import { h, field, replace } from './dom.js';
import { clearError, clearErrorIf, describe, initErrors, isAbort, showError } from './errors.js';
import { isoSeconds } from './format.js';
import * as admin from './admin.js';
import * as functions from './functions.js';
import * as jobs from './jobs.js';
import * as tryIt from './try.js';
import * as usage from './usage.js';

const main = document.getElementById('main');

/** Each view: who may open it and where it lives in the nav. */
const VIEWS = {
  functions: { role: 'tenant', mount: functions.mount, nav: 'Functions' },
  try: { role: 'tenant', mount: tryIt.mount, nav: 'Try it' },
  jobs: { role: 'tenant', mount: jobs.mountList, nav: 'Jobs' },
  job: { role: 'tenant', mount: jobs.mountJob, navAs: 'jobs' },
  usage: { role: 'tenant', mount: usage.mount, nav: 'Usage' },
  admin: { role: 'admin', mount: admin.mount, nav: 'Admin' },
};
const HOME = { tenant: 'functions', admin: 'admin' };

/** `{ role, tenant }` once a key is checked; null while signed out. */
let session = null;
/** The open view's controller: aborting it cancels its requests and timers. */
let current = null;

/** `#/jobs/ID?status=x` → `{ view: 'job', arg: 'ID', params }`; null for other hashes. */
function parseHash() {
  const hash = location.hash;
  if (hash !== '' && hash !== '#' && !hash.startsWith('#/')) return null;
  const [route, search = ''] = hash.replace(/^#\/?/, '').split('?');
  const [name, ...rest] = route.split('/');
  const params = new URLSearchParams(search);
  if (name === 'jobs' && rest.length > 0 && rest[0] !== '') {
    let arg = rest.join('/');
    try {
      arg = decodeURIComponent(arg);
    } catch {
      // A malformed escape: the API answers not_found for it as typed.
    }
    return { view: 'job', arg, params };
  }
  return { view: name, arg: null, params };
}

function markNav(view) {
  const section = VIEWS[view]?.navAs ?? view;
  for (const link of document.querySelectorAll('#nav a')) {
    if (link.dataset.nav === section) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

/**
 * Replaces <main> with a fresh view. The context a view gets: `signal`
 * (aborted when it is left), `load(task)` which drives `data-state`, and
 * `every(ms, task)` for polling only while the tab is visible (it returns
 * a function that stops the polling).
 */
function open(view, { arg = null, params = new URLSearchParams(), keepError = false } = {}) {
  current?.abort();
  const controller = new AbortController();
  current = controller;
  const { signal } = controller;
  if (!keepError) clearError();

  let pending = 0;
  let failed = false;
  // The last failure this view put in the banner (a 503 while Redis was
  // away, say), cleared once its data loads again.
  let loadError = null;
  const recovered = () => {
    clearErrorIf(loadError);
    loadError = null;
  };
  const failedWith = (err) => {
    if (signal.aborted || isAbort(err)) return;
    showError(err);
    loadError = err;
  };
  const setState = (state) => {
    if (signal.aborted) return;
    main.dataset.state = state;
    main.setAttribute('aria-busy', String(state === 'loading'));
  };
  const ctx = {
    main,
    signal,
    arg,
    params,
    async load(task) {
      pending += 1;
      setState('loading');
      let ok = true;
      try {
        await task();
      } catch (err) {
        ok = false;
        failedWith(err);
      }
      pending -= 1;
      failed ||= !ok;
      if (pending === 0) {
        setState(failed ? 'error' : 'ready');
        if (!failed && !signal.aborted) recovered();
        failed = false;
      }
      return ok;
    },
    every(ms, task) {
      let timer = null;
      let stopped = false;
      const stop = () => {
        stopped = true;
        clearTimeout(timer);
      };
      const tick = async () => {
        if (document.visibilityState === 'visible') {
          try {
            await task();
            // Fresh data again after a failed load: the view is usable.
            if (pending === 0 && !signal.aborted) {
              setState('ready');
              recovered();
            }
          } catch (err) {
            failedWith(err);
          }
        }
        if (!signal.aborted && !stopped) timer = setTimeout(tick, ms);
      };
      timer = setTimeout(tick, ms);
      signal.addEventListener('abort', stop);
      return stop;
    },
  };

  main.replaceChildren();
  main.dataset.view = view;
  setState('loading');
  markNav(view);
  (VIEWS[view]?.mount ?? signinView)(ctx);
}

function route({ focus = false } = {}) {
  if (!session) return;
  const target = parseHash();
  if (!target) return;
  if (VIEWS[target.view]?.role !== session.role) {
    history.replaceState(null, '', `#/${HOME[session.role]}`);
    route({ focus });
    return;
  }
  open(target.view, target);
  // Tell screen readers where they are after following a link.
  if (focus) main.querySelector('h2')?.focus({ preventScroll: true });
}

/** Which role a key has: a tenant key lists functions; the admin token lists tenants. */
async function identify(secret) {
  try {
    await call('GET', '/v1/functions', { key: secret, signIn: true });
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 401) throw err;
    await call('GET', '/v1/tenants', { key: secret, query: { limit: 1 }, signIn: true });
    return { role: 'admin', tenant: null };
  }
  // The name is only for the header; an empty period is the cheapest report.
  let tenant = null;
  try {
    const now = isoSeconds(Date.now());
    const { data } = await call('GET', '/v1/usage', { key: secret, query: { from: now, to: now }, signIn: true });
    tenant = typeof data.tenant === 'string' ? data.tenant : null;
  } catch {
    // Rate limited or busy: the header just says "tenant".
  }
  return { role: 'tenant', tenant };
}

function enter(who) {
  session = who;
  document.getElementById('whoami').textContent = who.role === 'admin' ? 'admin' : `tenant ${who.tenant ?? ''}`.trim();
  const links = Object.entries(VIEWS)
    .filter(([, v]) => v.role === who.role && v.nav)
    .map(([name, v]) => h('li', {}, h('a', { href: `#/${name}`, 'data-nav': name }, v.nav)));
  replace(document.getElementById('nav-links'), links);
  document.getElementById('nav').hidden = false;
  document.getElementById('session').hidden = false;
  route();
}

/** Back to the sign-in form; `error` says why when the key stopped working. */
function signOut({ error = null, forget = true } = {}) {
  session = null;
  admin.forgetUnseenKey();
  if (forget) key.clear();
  const dialog = document.getElementById('confirm-dialog');
  if (dialog.open) dialog.close();
  document.getElementById('nav').hidden = true;
  document.getElementById('session').hidden = true;
  document.getElementById('whoami').textContent = '';
  open('signin', { keepError: error !== null });
  if (error) showError(error);
}

function signinView(ctx) {
  const input = h('input', {
    id: 'signin-key',
    type: 'password',
    name: 'key',
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
  });
  const submit = h('button', { type: 'submit', id: 'signin-submit' }, 'Sign in');
  const error = h('p', { id: 'signin-error', role: 'alert' });
  const form = h(
    'form',
    { id: 'signin-form', class: 'panel narrow' },
    field('API key or admin token', input, 'Kept in this browser tab only, and sent only to this server.'),
    h('div', { class: 'actions' }, submit),
    error,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const secret = input.value.trim();
    if (!secret) {
      replace(error, 'Enter an API key or the admin token.');
      input.focus();
      return;
    }
    submit.disabled = true;
    replace(error);
    try {
      const who = await identify(secret);
      key.set(secret);
      clearError();
      enter(who);
    } catch (err) {
      replace(error, describe(err));
      input.focus();
    } finally {
      submit.disabled = false;
    }
  });
  main.append(h('section', { 'aria-labelledby': 'signin-title' }, h('h2', { id: 'signin-title', tabindex: '-1' }, 'Sign in'), form));
  ctx.load(async () => {});
  input.focus();
}

/** A reload keeps the session, but the stored key is checked again first. */
async function resume() {
  const secret = key.get();
  if (!secret) {
    signOut({ forget: false });
    return;
  }
  main.dataset.view = 'signin';
  main.replaceChildren(h('p', { class: 'muted' }, 'Checking your key…'));
  try {
    enter(await identify(secret));
  } catch (err) {
    // Only a refused key is forgotten; a busy or unreachable server is not its fault.
    signOut({ forget: err instanceof ApiError && err.status === 401 });
    replace(document.getElementById('signin-error'), describe(err));
  }
}

function init() {
  initErrors();
  whenUnauthorized((err) => {
    if (session) signOut({ error: err, forget: true });
  });
  window.addEventListener('hashchange', () => route({ focus: true }));
  document.getElementById('signout').addEventListener('click', () => {
    clearError();
    history.replaceState(null, '', location.pathname + location.search);
    signOut();
  });
  // The skip link's own hash would look like a route; move focus instead.
  document.getElementById('skip-link').addEventListener('click', (event) => {
    event.preventDefault();
    main.focus();
  });
  resume();
}

init();
