// Every call to the Sluice API goes through here, so the bearer key, the
// error body shape, Retry-After and a revoked key are handled once rather
// than in each view.

const KEY = 'sluice.key';

/** The key lives only in this tab's session storage, never in a cookie or on disk. */
export const key = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

/**
 * An API error: `code` is the API's snake_case code (null when the server
 * could not be reached), `retryAfter` is in seconds, and `headers` keeps the
 * response's headers because a failed call still names its job and usage.
 */
export class ApiError extends Error {
  constructor(status, code, message, { retryAfter = null, headers = null } = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
    this.headers = headers;
  }
}

let onUnauthorized = () => {};

/** Who to tell when a key stops working mid-session (revoked or rotated). */
export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

/** A same-origin URL; empty and missing query values are left out. */
function url(path, query) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query ?? {})) {
    if (value !== null && value !== undefined && value !== '') params.append(name, String(value));
  }
  const search = params.toString();
  return search ? `${path}?${search}` : path;
}

/** `/v1/functions/{name}`-style paths with each segment escaped. */
export function path(...segments) {
  return segments.map((part, i) => (i === 0 ? part : encodeURIComponent(part))).join('/');
}

const unreachable = () => new ApiError(0, null, 'cannot reach the server');

function errorFrom(status, statusText, text, headers) {
  const retry = Number.parseInt(headers.get('Retry-After') ?? '', 10);
  const extra = { retryAfter: Number.isFinite(retry) ? retry : null, headers };
  try {
    const body = JSON.parse(text);
    if (body && body.error && typeof body.error.code === 'string') {
      return new ApiError(status, body.error.code, String(body.error.message ?? ''), extra);
    }
  } catch {
    // Not JSON: a proxy's page or a plain-text answer; show a piece of it.
  }
  const snippet = text.trim().replace(/\s+/g, ' ').slice(0, 200);
  return new ApiError(status, String(status), [statusText, snippet].filter(Boolean).join(': ') || 'error', extra);
}

/**
 * Calls the API. `as` is `json` (default), `blob` or `none`. `signIn`
 * marks the calls that test a key, whose 401 is an answer, not a revocation.
 * Resolves to `{ status, headers, data }`; rejects with an ApiError, or an
 * AbortError when the view that asked has gone.
 */
export async function call(method, target, options = {}) {
  const { query, json, body, as = 'json', signal, signIn = false } = options;
  const bearer = options.key ?? key.get();
  const headers = {};
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  let payload = body;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(json);
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/octet-stream';
  }
  let response;
  let data = null;
  try {
    response = await fetch(url(target, query), { method, headers, body: payload, signal, cache: 'no-store' });
    if (!response.ok) {
      const error = errorFrom(response.status, response.statusText, await response.text(), response.headers);
      if (response.status === 401 && !signIn) onUnauthorized(error);
      throw error;
    }
    if (as === 'json') data = await response.json();
    else if (as === 'blob') data = await response.blob();
  } catch (err) {
    if (err instanceof ApiError || err.name === 'AbortError') throw err;
    if (err instanceof SyntaxError) throw new ApiError(response.status, null, 'the server sent a body that is not JSON');
    throw unreachable();
  }
  return { status: response.status, headers: response.headers, data };
}

/**
 * Uploads a file with PUT through XMLHttpRequest, the one browser API that
 * reports upload progress. `onProgress(fraction)` runs while bytes go out,
 * `onSent()` once they all have (the server then compiles).
 */
export function upload(target, file, { onProgress = () => {}, onSent = () => {}, signal = null } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    if (signal?.aborted) {
      reject(new DOMException('upload aborted', 'AbortError'));
      return;
    }
    signal?.addEventListener('abort', () => xhr.abort(), { once: true });
    xhr.open('PUT', target);
    const bearer = key.get();
    if (bearer) xhr.setRequestHeader('Authorization', `Bearer ${bearer}`);
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    xhr.upload.addEventListener('progress', (e) => {
      if (e.lengthComputable && e.total > 0) onProgress(e.loaded / e.total);
    });
    xhr.upload.addEventListener('load', () => onSent());
    xhr.addEventListener('load', () => {
      const headers = { get: (name) => xhr.getResponseHeader(name) };
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve({ status: xhr.status, data: JSON.parse(xhr.responseText) });
        } catch {
          reject(new ApiError(xhr.status, null, 'the server sent a body that is not JSON'));
        }
        return;
      }
      const error = errorFrom(xhr.status, xhr.statusText, xhr.responseText, headers);
      if (xhr.status === 401) onUnauthorized(error);
      reject(error);
    });
    xhr.addEventListener('error', () => reject(unreachable()));
    xhr.addEventListener('abort', () => reject(new DOMException('upload aborted', 'AbortError')));
    xhr.send(file);
  });
}
