// Showing what a function produced, shared by Try it and the job page: a
// preview of its output (image or text), a download link, and its logs.

import { h, replace } from './dom.js';
import { bytes } from './format.js';

const TEXT_PREVIEW_BYTES = 64 * 1024;

/** Media types worth decoding as text without looking at the bytes. */
function textual(type) {
  return /^text\/|[/+](json|xml|csv|javascript|yaml)\b/.test(type);
}

/** Bytes that decode as UTF-8 and hold no control characters besides whitespace. */
function looksLikeText(buffer) {
  const sample = new Uint8Array(buffer, 0, Math.min(buffer.byteLength, 4096));
  for (const byte of sample) {
    if (byte === 0 || (byte < 32 && byte !== 9 && byte !== 10 && byte !== 13)) return false;
  }
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(sample.subarray(0, Math.max(0, sample.length - 4)));
    return true;
  } catch {
    return false;
  }
}

const EXTENSIONS = {
  'image/png': 'png',
  'image/jpeg': 'jpg',
  'image/webp': 'webp',
  'image/gif': 'gif',
  'image/svg+xml': 'svg',
  'application/json': 'json',
  'text/plain': 'txt',
};

/**
 * Nodes previewing `blob`: an image when its type is `image/*`, else the
 * start of it as text when it reads as text; always a download link. The
 * object URL lives until `signal` aborts or `revoke()` is called.
 */
export async function preview(blob, contentType, { ids, baseName, signal }) {
  const type = (contentType || blob.type || 'application/octet-stream').split(';')[0].trim().toLowerCase();
  const objectUrl = URL.createObjectURL(blob);
  const revoke = () => URL.revokeObjectURL(objectUrl);
  signal?.addEventListener('abort', revoke, { once: true });

  let shown;
  if (type.startsWith('image/')) {
    shown = h('img', { id: ids.img, src: objectUrl, alt: `Output of ${baseName} (${type})`, class: 'preview' });
  } else {
    const head = await blob.slice(0, TEXT_PREVIEW_BYTES).arrayBuffer();
    if (head.byteLength > 0 && (textual(type) || looksLikeText(head))) {
      let text = new TextDecoder('utf-8').decode(head);
      if (type.includes('json') && blob.size <= TEXT_PREVIEW_BYTES) {
        try {
          text = JSON.stringify(JSON.parse(text), null, 2);
        } catch {
          // Shown as it came.
        }
      }
      const cut = blob.size > TEXT_PREVIEW_BYTES ? `\n… (first ${bytes(TEXT_PREVIEW_BYTES)} of ${bytes(blob.size)} shown)` : '';
      shown = h('pre', { id: ids.text, class: 'output' }, text + cut);
    } else {
      shown = h('p', { class: 'muted' }, blob.size === 0 ? 'The output is empty.' : 'Binary output: no preview.');
    }
  }
  const extension = EXTENSIONS[type] ?? (type.startsWith('image/') ? type.slice(6).replace(/[^a-z0-9]/g, '') : 'bin');
  const download = h('a', { id: ids.download, href: objectUrl, download: `${baseName}.${extension}`, class: 'button' }, 'Download output');
  return { nodes: [h('p', {}, `${type}, ${bytes(blob.size)}`), shown, h('p', {}, download)], revoke };
}

/** Fills a `<pre>` with a job's logs, each stream labelled. */
export function showLogs(pre, logs) {
  const parts = [];
  for (const stream of ['stdout', 'stderr']) {
    const text = logs?.[stream] ?? '';
    if (text === '') continue;
    if (parts.length) parts.push('\n');
    parts.push(h('span', { class: 'log-label' }, `${stream}:`), '\n', text.endsWith('\n') ? text : `${text}\n`);
  }
  if (parts.length === 0) parts.push('(no output)');
  if (logs?.truncated) parts.push(h('span', { class: 'log-label' }, '\n(truncated: the function printed more than is kept)'));
  replace(pre, parts);
}
