// One result card per image: thumbnail, name, state, top-k bars, input report.
//
// Cards are rebuilt from the item's data whenever it changes; the thumbnail
// element is made once per item and reused so it never flickers.

import { t, getLang, htmlLang } from './i18n.js';
import { h, formatPercent, formatMs, formatBytes } from './dom.js';
import { errorText, describeInput, describeConversion } from './report.js';

/**
 * Make the thumbnail or a "no preview" placeholder for an item, once; a placeholder gives way to
 * the server's preview (item.previewUrl) when one arrives.
 */
function thumbnail(item) {
  const isPlaceholder = item.thumb && item.thumb.classList.contains('thumb-none');
  if (item.thumb && !(isPlaceholder && item.previewUrl)) return item.thumb;
  const placeholder = () => h('div', { class: 'thumb thumb-none' },
    h('span', { class: 'thumb-icon', 'aria-hidden': 'true' }, fileGlyph()),
    h('span', { class: 'thumb-none-text', 'data-i18n': 'card.noPreview' }, t('card.noPreview')));
  const src = item.previewUrl || item.url;
  if (!src) {
    item.thumb = placeholder();
    return item.thumb;
  }
  const img = h('img', { class: 'thumb', src, alt: '', decoding: 'async', loading: 'lazy',
                         'data-testid': item.previewUrl ? 'server-preview' : null });
  img.addEventListener('error', () => {
    item.needsPreview = true; // the browser could not draw it after all: ask the server next time
    const ph = placeholder();
    img.replaceWith(ph);
    item.thumb = ph;
  }, { once: true });
  if (item.thumb) item.thumb.replaceWith(img);
  item.thumb = img;
  return img;
}

function fileGlyph() {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('width', '28');
  svg.setAttribute('height', '28');
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('d', 'M6 2h8l6 6v12a2 2 0 0 1-2 2H6a2 2 0 0 1-2-2V4a2 2 0 0 1 2-2zm7 1.5V9h5.5M8 13h8M8 17h6');
  path.setAttribute('fill', 'none');
  path.setAttribute('stroke', 'currentColor');
  path.setAttribute('stroke-width', '1.5');
  path.setAttribute('stroke-linejoin', 'round');
  svg.appendChild(path);
  return svg;
}

function topList(item, ctx) {
  const { result } = item;
  let fellBack = false;
  const rows = result.top.map((entry, i) => {
    const { text, lang } = ctx.labelFor(result.model, entry, result.lang);
    if (lang !== getLang()) fellBack = true;
    const fill = h('span', { class: 'bar-fill', 'data-testid': 'bar' });
    fill.style.width = `${(Math.max(0, Math.min(1, Number(entry.score) || 0)) * 100).toFixed(1)}%`;
    return h('li', { class: i === 0 ? 'topk-row is-first' : 'topk-row' },
      h('span', { class: 'topk-label', 'data-testid': 'label', lang: htmlLang(lang), title: text }, text),
      h('span', { class: 'topk-score', 'data-testid': 'score' }, formatPercent(entry.score)),
      h('span', { class: 'bar', 'aria-hidden': 'true' }, fill));
  });
  return [
    h('ol', { class: 'topk', 'aria-label': t('card.topLabel', { n: rows.length }) }, rows),
    fellBack ? h('p', { class: 'card-note' }, t('card.langFallback')) : null,
  ];
}

function inputReport(result) {
  const summary = describeInput(result.input);
  const notes = (result.input && Array.isArray(result.input.conversions)) ? result.input.conversions : [];
  if (!summary && !notes.length) return null;
  return h('div', { class: 'card-input', 'data-testid': 'input-report' },
    h('span', { class: 'visually-hidden' }, `${t('card.inputReport')}: `),
    summary ? h('p', { class: 'card-input-summary' }, summary) : null,
    notes.length
      ? h('ul', { class: 'chips' }, notes.map((n) => h('li', { class: 'chip', title: String(n) }, describeConversion(n))))
      : null);
}

function metaLine(item, ctx) {
  const r = item.result;
  const timing = r.timing_ms || {};
  const parts = [
    h('span', { class: 'meta-model', title: ctx.modelTitle(r.model) }, r.model || '?'),
  ];
  if (r.precision) parts.push(h('span', { class: 'meta-tag' }, String(r.precision).toUpperCase()));
  if (timing.total != null) {
    parts.push(h('span', {
      class: 'meta-latency',
      title: t('card.timing', {
        decode: formatMs(timing.decode), queue: formatMs(timing.queue),
        model: formatMs(timing.model), total: formatMs(timing.total),
      }),
    }, t('card.latency', { ms: formatMs(timing.total) })));
  }
  return h('p', { class: 'card-meta' }, parts);
}

/** The card's error in plain words; "too large" says the file's size and the server's limit. */
function errorMessage(item, ctx) {
  if (item.error && item.error.code === 'payload_too_large' && item.size) {
    const limit = ctx.uploadLimit && ctx.uploadLimit();
    return limit
      ? t('error.tooLargeLimit', { size: formatBytes(item.size), limit: formatBytes(limit) })
      : `${errorText(item.error)} (${formatBytes(item.size)})`;
  }
  return errorText(item.error);
}

function stateLine(item) {
  if (item.status === 'working') {
    return h('p', { class: 'card-state is-working' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), t('card.working'));
  }
  if (item.status === 'queued') return h('p', { class: 'card-state' }, t('card.waiting'));
  return h('p', { class: 'card-state' }, t('card.pending'));
}

/**
 * Build or refresh the card element for `item`.
 *
 * Args: item — {id, name, size, status, result, error, settingsKey, ...};
 * ctx — {labelFor, modelTitle, currentKey, onRemove, uploadLimit}.
 * Returns: the card element (item.card), updated in place.
 */
export function renderCard(item, ctx) {
  const card = item.card || h('article', { class: 'card', 'data-testid': 'result-card' });
  item.card = card;
  card.dataset.filename = item.name;
  card.dataset.status = item.status;
  const stale = (item.status === 'done' || item.status === 'error') && item.settingsKey !== ctx.currentKey();
  card.classList.toggle('is-stale', stale);
  card.setAttribute('aria-busy', item.status === 'working' ? 'true' : 'false');

  const media = h('div', { class: 'card-media' }, thumbnail(item),
    h('button', {
      type: 'button',
      class: 'card-remove',
      'aria-label': t('card.remove', { name: item.name }),
      title: t('card.remove', { name: item.name }),
      disabled: item.status === 'working',
      onclick: () => ctx.onRemove(item),
    }, '×'));

  const body = h('div', { class: 'card-body' },
    h('h3', { class: 'card-title', title: item.name }, item.name));

  if (item.status === 'done') {
    body.append(metaLine(item, ctx), ...topList(item, ctx).filter(Boolean));
    const report = inputReport(item.result);
    if (report) body.append(report);
  } else if (item.status === 'error') {
    if (item.model) body.append(h('p', { class: 'card-meta' }, h('span', { class: 'meta-model' }, item.model)));
    body.append(h('p', { class: 'card-error', 'data-testid': 'card-error' },
      h('span', { class: 'card-error-icon', 'aria-hidden': 'true' }, '!'),
      h('span', {}, errorMessage(item, ctx))));
  } else {
    body.append(stateLine(item));
  }
  if (stale) body.append(h('p', { class: 'card-note' }, t('card.stale')));

  card.replaceChildren(media, body);
  return card;
}
