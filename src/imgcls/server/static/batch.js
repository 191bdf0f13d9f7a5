// Sending one chunk of images to POST /api/v1/classify and turning every
// possible answer into item states or a banner:
//   200            → each item done or error (per-file errors from the server)
//   413 / cut off  → retry the files one by one; a lone file fails "too large"
//   503            → wait Retry-After (countdown in the banner), retry a few times when
//                    busy, or for as long as the models are still loading (up to 3 min)
//   401            → ask for an API key, then resume the batch
//   network down   → banner, stop the batch

import * as api from './api.js';
import { t } from './i18n.js';
import { showBanner, hideBanner, announce } from './banner.js';

export const CHUNK_SIZE = 4;
const MAX_BUSY_RETRIES = 5;
const PREVIEW_PX = 320; // server-made thumbnails: the card's width on a 2x screen
const MAX_RETRY_WAIT_S = 30;
// A server that is still loading its models will be ready soon (a slow machine can take a
// minute): keep waiting that long instead of giving up after a few quick retries.
const MAX_WARMUP_WAIT_S = 180;
// Multipart framing per file (boundary, part headers, file name), rounded up generously so a
// planned request never trips the server's per-request byte cap.
const PART_OVERHEAD = 4096;

/**
 * Split items into requests before anything is sent: at most CHUNK_SIZE files (and the server's
 * max_files) per request and, when the server's byte cap is known, no more bytes than it takes.
 * A file at or over the cap on its own can never be accepted, so it is not uploaded at all.
 *
 * Args: items — with .size; limits — /api/v1/models `limits` ({max_upload_bytes, max_files}) or null.
 * Returns: {tooLarge: [item], chunks: [[item]]}, upload order kept.
 */
export function planChunks(items, limits) {
  const cap = Number(limits && limits.max_upload_bytes);
  const maxBytes = cap > 0 ? cap : Infinity;
  const maxFiles = Math.max(1, Math.min(CHUNK_SIZE, Number(limits && limits.max_files) || CHUNK_SIZE));
  const tooLarge = [];
  const chunks = [];
  let current = [];
  let bytes = 0;
  for (const item of items) {
    if (item.size >= maxBytes) { tooLarge.push(item); continue; }
    const cost = item.size + PART_OVERHEAD;
    if (current.length && (current.length >= maxFiles || bytes + cost > maxBytes)) {
      chunks.push(current);
      current = [];
      bytes = 0;
    }
    current.push(item);
    bytes += cost;
  }
  if (current.length) chunks.push(current);
  return { tooLarge, chunks };
}

/**
 * Send `chunk` (items with .file) and apply the answer.
 *
 * Args: chunk — items; run — {ctrl, total, done, ok, failed} counters, updated;
 * ctx — {params, key, setItem(item, status), onUpdate(), resume(),
 * reloadModels(), askForKey(resume)}.
 * Returns: true to go on with the next chunk, false to stop the batch.
 */
export async function sendChunk(chunk, run, ctx) {
  const { params, key } = ctx;
  for (const item of chunk) ctx.setItem(item, 'working');
  let busyRetries = 0;
  let warmupWaited = 0;
  for (let attempt = 0; ; attempt++) {
    try {
      // Ask for thumbnails only when a file in the chunk needs one (the browser cannot draw it).
      const wanted = chunk.some((it) => it.needsPreview && !it.previewUrl) ? { ...params, preview: PREVIEW_PX } : params;
      const data = await api.classify(chunk.map((it) => it.file), wanted, { signal: run.ctrl.signal });
      applyResults(chunk, data, run, ctx);
      if (attempt > 0) hideBanner();
      return true;
    } catch (err) {
      if (err.name === 'AbortError') return false;
      // Too big together (or cut off mid-upload): send the files one at a time.
      if ((err.status === 413 || err.status === 0) && chunk.length > 1) {
        for (const item of chunk) ctx.setItem(item, 'queued');
        for (const item of chunk) {
          if (item.removed) { run.done++; continue; }
          if (!(await sendChunk([item], run, ctx))) return false;
        }
        return true;
      }
      if (err.status === 413) {
        failItems(chunk, { code: 'payload_too_large', message: err.message, status: 413 }, run, ctx);
        showBanner({ kind: 'warning', key: 'banner.tooLarge' });
        return true;
      }
      if (err.status === 0) {
        // The server is up but the upload broke: most likely it refused the
        // size before reading the body. Mark the file and go on.
        if ((await api.readiness()) !== 'down') {
          failItems(chunk, { code: 'upload_failed', message: '', status: 0 }, run, ctx);
          return true;
        }
        showBanner({ kind: 'error', key: 'banner.network', action: { key: 'action.retry', run: ctx.resume } });
        return false;
      }
      const warming = err.code === 'not_ready';
      if (err.status === 503 && (warming ? warmupWaited < MAX_WARMUP_WAIT_S : busyRetries < MAX_BUSY_RETRIES)) {
        const wait = Math.min(MAX_RETRY_WAIT_S, Math.max(1, err.retryAfter ?? 2 ** busyRetries));
        if (warming) warmupWaited += wait;
        else busyRetries += 1;
        const bannerKey = warming ? 'banner.notReady' : 'banner.busy';
        try {
          await countdown(wait, (s) => showBanner({ kind: 'info', key: bannerKey, vars: { s }, quiet: s !== wait }), run.ctrl.signal);
        } catch {
          hideBanner(); // cancelled: don't leave "Retrying in 1 s…" behind
          return false;
        }
        continue;
      }
      if (err.status === 503) {
        showBanner({ kind: 'error', key: 'banner.busyGaveUp', action: { key: 'action.retry', run: ctx.resume } });
        return false;
      }
      if (err.status === 401) {
        ctx.askForKey(ctx.resume);
        return false;
      }
      if (err.code === 'unknown_model') {
        showBanner({ kind: 'error', key: 'banner.unknownModel' });
        ctx.reloadModels();
        return false;
      }
      if (err.status >= 400 && err.status < 500) {
        // The whole request was refused for a reason that is about the files.
        failItems(chunk, { code: err.code, message: err.message, status: err.status }, run, ctx);
        return true;
      }
      showBanner({ kind: 'error', key: 'banner.generic', vars: { status: err.status }, action: { key: 'action.retry', run: ctx.resume } });
      return false;
    }
  }
}

function countdown(seconds, onTick, signal) {
  return new Promise((resolve, reject) => {
    let left = seconds;
    onTick(left);
    const timer = setInterval(() => {
      left -= 1;
      if (left <= 0) { clearInterval(timer); resolve(); } else onTick(left);
    }, 1000);
    signal.addEventListener('abort', () => { clearInterval(timer); reject(new DOMException('aborted', 'AbortError')); }, { once: true });
  });
}

function applyResults(chunk, data, run, ctx) {
  const results = Array.isArray(data.results) ? data.results : [];
  // Results come back in upload order; match by name only if the count is off.
  const byOrder = results.length === chunk.length;
  chunk.forEach((item, i) => {
    const r = byOrder ? results[i] : results.find((x) => x && x.filename === item.name);
    item.settingsKey = ctx.key;
    item.model = data.model || null;
    if (r && typeof r.preview === 'string' && r.preview.startsWith('data:image/jpeg;base64,') && item.needsPreview) {
      item.previewUrl = r.preview;
    }
    if (r && Array.isArray(r.top)) {
      item.result = {
        // The language the server really answered in (a model without Chinese names answers in English).
        model: data.model, precision: data.precision, lang: data.lang === 'zh' || data.lang === 'en' ? data.lang : ctx.params.lang,
        top: r.top, input: r.input || null, timing_ms: r.timing_ms || null,
      };
      item.error = null;
      run.ok++;
      ctx.setItem(item, 'done');
    } else {
      const e = (r && r.error) || { code: 'no_result', message: t('error.noResult') };
      item.error = { code: e.code, message: e.message, status: r && r.status };
      item.result = null;
      run.failed++;
      ctx.setItem(item, 'error');
    }
    run.done++;
  });
  ctx.onUpdate();
  announce(t('progress.running', { done: run.done, total: run.total }));
}

/** Mark every item of `chunk` failed with `error` ({code, message, status}) and count it. */
export function failItems(chunk, error, run, ctx) {
  for (const item of chunk) {
    item.settingsKey = ctx.key;
    item.model = ctx.params.model || null;
    item.result = null;
    item.error = error;
    run.failed++;
    run.done++;
    ctx.setItem(item, 'error');
  }
  ctx.onUpdate();
}
