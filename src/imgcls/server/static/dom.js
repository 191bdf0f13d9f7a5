// Small DOM and formatting helpers.
//
// h() is the only way the app builds markup: attributes go through
// setAttribute and children become text nodes, so a filename such as
// `<img src=x onerror=alert(1)>` is always shown as text, never parsed.

import { getLang } from './i18n.js';

/**
 * Create an element.
 *
 * Args: tag — element name; attrs — attributes (`class`, `dataset`, `on*`
 * handlers, `hidden`/boolean values, anything else via setAttribute);
 * children — strings, nodes, arrays, or null/false (skipped).
 * Returns: the element.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'dataset') {
      for (const [k, v] of Object.entries(value)) el.dataset[k] = String(v);
    } else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'style' && typeof value === 'object') {
      Object.assign(el.style, value);
    } else if (value === true) {
      el.setAttribute(key, '');
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** Shortcut for document.querySelector with a data-testid. */
export function byTestId(id, root = document) {
  return root.querySelector(`[data-testid="${id}"]`);
}

function locale() {
  return getLang() === 'zh' ? 'zh-CN' : 'en';
}

/** A score in [0, 1] as a percentage: "91.2%", "<0.1%". */
export function formatPercent(score) {
  const pct = Math.max(0, Math.min(1, Number(score) || 0)) * 100;
  if (pct > 0 && pct < 0.1) return '<0.1%';
  return `${pct.toFixed(1)}%`;
}

/** Milliseconds, short: 9.8 → "9.8", 142.3 → "142". */
export function formatMs(ms) {
  const v = Number(ms);
  if (!Number.isFinite(v)) return '–';
  return v < 100 ? v.toFixed(1) : String(Math.round(v));
}

/** Bytes as "53 KB" / "1.2 MB". */
export function formatBytes(bytes) {
  const b = Number(bytes);
  if (!Number.isFinite(b) || b < 0) return '–';
  const fmt = (v, d) => new Intl.NumberFormat(locale(), { maximumFractionDigits: d }).format(v);
  if (b < 1024) return `${fmt(b, 0)} B`;
  if (b < 1024 * 1024) return `${fmt(b / 1024, 0)} KB`;
  return `${fmt(b / (1024 * 1024), 1)} MB`;
}

/** A whole number with locale grouping: 1000 → "1,000". */
export function formatInt(n) {
  return new Intl.NumberFormat(locale()).format(n);
}

/** Offer `text` as a file download named `filename`. */
export function download(filename, text, type) {
  const blob = new Blob([text], { type });
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: filename, hidden: true });
  document.body.appendChild(a);
  a.click();
  a.remove();
  // Revoke later: some browsers start the download asynchronously.
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** "20250101-142233" in local time, for export file names. */
export function timestampForFile(d = new Date()) {
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}
