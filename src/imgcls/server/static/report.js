// Plain-words text for what the server reports: per-file errors, the input
// report (format, size, conversions), and the CSV / JSON exports.

import { t, has } from './i18n.js';
import { formatBytes } from './dom.js';

/** Friendly text for a per-file or request error {code, message, status}. */
export function errorText(err) {
  const code = err && typeof err.code === 'string' ? err.code : '';
  if (code && has(`error.${code}`)) return t(`error.${code}`);
  if (err && typeof err.message === 'string' && err.message) return err.message;
  return t('error.generic', { status: (err && err.status) || '?' });
}

function modeName(mode) {
  const m = String(mode).replace(/[.,;:]+$/, '');
  return has(`mode.${m}`) ? t(`mode.${m}`) : m;
}

/**
 * One server conversion note in plain words in the current language.
 * The server's notes are short English phrases ("rotated per EXIF
 * orientation 6", "converted from CMYK"); unknown ones are shown as sent.
 */
export function describeConversion(note) {
  const s = String(note);
  let m;
  if ((m = /rotat\w*.*exif.*?(\d)/i.exec(s))) return t('input.rotatedExif', { n: m[1] });
  if (/rotat\w*.*exif|exif.*orient/i.test(s)) return t('input.rotated');
  if (/invert/i.test(s)) return t('input.inverted');
  if ((m = /converted from\s+(\S+)/i.exec(s))) return t('input.convertedFrom', { mode: modeName(m[1]) });
  if (/first frame|animat/i.test(s)) return t('input.firstFrame');
  if (/16[- ]?bit/i.test(s)) return t('input.bitDepth');
  if ((m = /1\/(\d+) scale/i.exec(s))) return t('input.draft', { n: m[1] });
  if (/alpha|transparen/i.test(s)) return t('input.alpha');
  return s;
}

/** "JPEG · 500×375 · 52 KB", or '' when the server sent no input report. */
export function describeInput(input) {
  if (!input || typeof input !== 'object') return '';
  return t('input.summary', {
    format: input.format || '?',
    width: input.width ?? '?',
    height: input.height ?? '?',
    size: formatBytes(input.bytes),
  });
}

// ---- exports -------------------------------------------------------------

export const CSV_COLUMNS = ['filename', 'model', 'rank', 'class_index', 'label', 'score', 'error'];

/** Quote a CSV field per RFC 4180 when it holds a comma, quote or newline. */
export function csvField(value) {
  const s = value === null || value === undefined ? '' : String(value);
  return /[",\r\n]/.test(s) || /^\s|\s$/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/**
 * The CSV text for finished items, BOM-prefixed so Excel reads UTF-8.
 *
 * Args: rows — [{filename, model, top: [{class_index, label, score}] | null,
 * error: {code} | null}], labels already in the wanted language.
 * Returns: a string with CRLF line ends.
 */
export function buildCsv(rows) {
  const lines = [CSV_COLUMNS.join(',')];
  for (const r of rows) {
    if (r.error) {
      lines.push([r.filename, r.model, '', '', '', '', r.error.code || 'error'].map(csvField).join(','));
      continue;
    }
    r.top.forEach((e, i) => {
      lines.push([r.filename, r.model, i + 1, e.class_index, e.label, e.score, ''].map(csvField).join(','));
    });
  }
  return `\uFEFF${lines.join('\r\n')}\r\n`;
}

/** The JSON export: the same rows with input report and timing kept. */
export function buildJson(rows, lang) {
  return `${JSON.stringify({
    exported_at: new Date().toISOString(),
    lang,
    results: rows.map((r) => (r.error
      ? { filename: r.filename, model: r.model, precision: r.precision, error: r.error }
      : {
        filename: r.filename,
        model: r.model,
        precision: r.precision,
        top: r.top.map((e, i) => ({ rank: i + 1, class_index: e.class_index, label: e.label, score: e.score })),
        input: r.input ?? null,
        timing_ms: r.timing_ms ?? null,
      })),
  }, null, 2)}\n`;
}
