// Small element builders. Everything the server sends (names, logs, error
// messages) is untrusted, so the console only ever makes nodes and sets
// text: there is no path from a string to markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

/** Adds children, skipping null/false so callers can write conditionals inline. */
export function append(parent, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : String(child));
  }
  return parent;
}

function build(el, props, children) {
  for (const [name, value] of Object.entries(props ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  return append(el, children);
}

/** An HTML element: `h('button', { type: 'button', onclick }, 'Save')`. */
export function h(tag, props, ...children) {
  return build(document.createElement(tag), props, children);
}

/** An SVG element, for the chart. */
export function s(tag, props, ...children) {
  return build(document.createElementNS(SVG_NS, tag), props, children);
}

/** Replaces an element's content. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A labelled form field; `hint` becomes the input's description. */
export function field(label, input, hint) {
  const hintEl = hint ? h('span', { class: 'hint', id: `${input.id}-hint` }, hint) : null;
  if (hintEl) input.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: input.id }, label), input, hintEl);
}

/**
 * A table in a horizontally scrolling wrapper, so wide data never widens
 * the page on a phone. Columns are `{ label, num }`; `num` right-aligns.
 */
export function table(id, caption, columns) {
  const tbody = h('tbody');
  const tfoot = h('tfoot');
  const el = h(
    'table',
    { id },
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)))),
    tbody,
    tfoot,
  );
  return { wrap: h('div', { class: 'table-wrap' }, el), table: el, tbody, tfoot };
}

/** A full-width row saying there is nothing to show. */
export function emptyRow(columns, text) {
  return h('tr', { class: 'empty' }, h('td', { colspan: columns }, text));
}

/** A `<td>`, right-aligned when `num`. */
export function td(content, num = false) {
  return h('td', { class: num ? 'num' : null }, content);
}

/** A coloured status badge that also says its status in words. */
export function badge(status) {
  return h('span', { class: `badge status-${status}` }, status);
}
