// Building blocks of the dashboard's pages: elements from data (always as text, never parsed
// as HTML), the status line, small formatters, and how an error is shown.
import { ApiError } from './api.js';

const main = document.getElementById('main');
const statusLine = document.getElementById('status');

/** Creates element `tag` with attributes `attrs` (on* are listeners) and children (text or nodes). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** Replaces `target`'s content with `nodes` (nested lists flattened, empty ones skipped). */
export function put(target, ...nodes) {
  target.replaceChildren(...nodes.flat(Infinity).filter((n) => n !== null && n !== undefined && n !== false));
}

export function show(...nodes) {
  put(main, ...nodes);
}

export function say(text) {
  statusLine.textContent = text;
}

export function badge(value, cls) {
  return h('span', { class: `badge ${cls || value}` }, value);
}

export function yesNo(value) {
  return badge(value ? 'yes' : 'no');
}

export function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

export function extensionHref(name, tail) {
  return `#/extensions/${encodeURIComponent(name)}${tail || ''}`;
}

/** Shows `error` in `target` (an element), unless it already sent us to the login form. */
export function fail(target, error) {
  if (error instanceof ApiError && error.status === 401) return;
  target.replaceChildren(h('span', { class: 'error', role: 'alert' }, describe(error)));
}

export function describe(error) {
  if (error instanceof ApiError) {
    return error.status ? `${error.message} (${error.status} ${error.code})` : error.message;
  }
  return `Unexpected error: ${error && error.message ? error.message : error}`;
}
