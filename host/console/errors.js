// The global error banner, and the one way an error is put into words, so
// the banner and each view's inline messages read the same:
// `code — message (retry in N s)`.

import { h, replace } from './dom.js';

/** True for the rejection a view gets when it was left before its call ended. */
export function isAbort(err) {
  return err?.name === 'AbortError';
}

/** Nodes describing an error: its API code in `<code>`, then the message. */
export function describe(err) {
  if (err?.name !== 'ApiError') {
    return [h('code', {}, 'client_error'), ` — ${err?.message ?? String(err)}`];
  }
  const retry = err.retryAfter !== null ? ` (retry in ${err.retryAfter} s)` : '';
  const text = `${err.message}${retry}`;
  return err.code ? [h('code', {}, err.code), ` — ${text}`] : [text];
}

const banner = () => document.getElementById('error');

/** The error the banner shows, so a view can take back only its own. */
let shown = null;

/** Shows an error in the banner; a view that was left has nothing to say. */
export function showError(err) {
  if (isAbort(err)) return;
  if (err?.name !== 'ApiError') console.error(err);
  shown = err;
  replace(document.getElementById('error-text'), describe(err));
  banner().hidden = false;
}

export function clearError() {
  shown = null;
  replace(document.getElementById('error-text'));
  banner().hidden = true;
}

/**
 * Clears the banner if it still shows `err`: once a view's data loads again
 * its old failure is stale, but an error something else reported since is not.
 */
export function clearErrorIf(err) {
  if (err !== null && shown === err) clearError();
}

export function initErrors() {
  document.getElementById('error-dismiss').addEventListener('click', () => {
    clearError();
    // The button just vanished; keep keyboard users in the page.
    document.getElementById('main').focus({ preventScroll: true });
  });
}
