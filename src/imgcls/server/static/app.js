// imgcls web UI: pick or drop images, classify them in chunks, show top-k
// labels per image in English or Chinese, export CSV/JSON, live camera.
//
// Flow: files → items (pending) → runBatch() plans requests (planChunks: a few files,
// never more bytes than the server accepts) and sends them to
// POST /api/v1/classify → each item becomes done or error → cards re-render.
// Request-level failures (401, 413, 503, network) go to the banner.

import * as api from './api.js';
import { t, getLang, setLang, translateDom, htmlLang } from './i18n.js';
import { h, byTestId, formatInt, download, timestampForFile } from './dom.js';
import { renderCard } from './cards.js';
import { errorText, buildCsv, buildJson } from './report.js';
import { Camera } from './camera.js';
import { showBanner, hideBanner, refreshBanner, promptForKey, announce } from './banner.js';
import { sendChunk, planChunks, failItems } from './batch.js';

const RETRYABLE = new Set(['overloaded', 'not_ready', 'upload_failed']);
const PREF = { model: 'imgcls.model', topk: 'imgcls.topk', precision: 'imgcls.precision' };

const state = {
  items: [],
  nextId: 1,
  models: [],
  run: null, // {ctrl, total, done, ok, failed}
  lastRun: null, // outcome of the previous run, for the progress line
  labels: new Map(), // "model|lang" → {lang, labels} | 'loading' | 'failed'
  limits: null, // the server's upload limits from /api/v1/models, once known
};

const el = {
  fileInput: byTestId('file-input'),
  dropZone: byTestId('drop-zone'),
  classify: byTestId('classify-button'),
  cancel: byTestId('cancel-button'),
  clear: byTestId('clear-button'),
  progress: byTestId('progress'),
  progressBar: document.getElementById('progress-bar'),
  progressText: document.getElementById('progress-text'),
  grid: document.getElementById('results'),
  empty: document.getElementById('results-empty'),
  summary: document.getElementById('results-summary'),
  model: byTestId('model-select'),
  precision: byTestId('precision-select'),
  precisionField: document.getElementById('precision-field'),
  topk: byTestId('topk-select'),
  modelInfo: document.getElementById('model-info'),
  langToggle: byTestId('lang-toggle'),
  exportCsv: byTestId('export-csv'),
  exportJson: byTestId('export-json'),
  status: document.getElementById('server-status'),
  forgetKey: document.getElementById('forget-key'),
};

// ---- preferences ------------------------------------------------------------

function pref(key, fallback = '') {
  try { return localStorage.getItem(key) ?? fallback; } catch { return fallback; }
}
function savePref(key, value) {
  try { localStorage.setItem(key, value); } catch { /* ignore */ }
}

/** The query parameters every classify request uses right now. */
function currentParams() {
  return {
    model: el.model.value || undefined,
    top_k: Number(el.topk.value) || 5,
    precision: el.precisionField.hidden ? undefined : el.precision.value || undefined,
    lang: getLang(),
  };
}

/** Items classified with a different key are out of date (language excluded: labels are remapped). */
function currentKey() {
  const p = currentParams();
  return `${p.model || ''}|${p.top_k}|${p.precision || ''}`;
}

// ---- models and labels ------------------------------------------------------

function modelInfo(name) {
  return state.models.find((m) => m.name === name) || null;
}

function modelHasLang(name, lang) {
  const m = modelInfo(name);
  return !m || !Array.isArray(m.languages) || m.languages.includes(lang);
}

async function loadModels() {
  el.model.disabled = true;
  el.model.replaceChildren(h('option', { value: '' }, t('model.loading')));
  let data;
  try {
    data = await api.getModels();
  } catch (err) {
    state.models = [];
    el.model.replaceChildren(h('option', { value: '' }, t('model.default')));
    el.model.disabled = false;
    if (err.status === 401) promptForKey(getKeyMessage(), loadModels);
    else showBanner({ kind: 'warning', key: 'banner.modelsFailed' });
    renderModelInfo();
    return;
  }
  state.models = Array.isArray(data.models) ? data.models : [];
  state.limits = data.limits && typeof data.limits === 'object' ? data.limits : null;
  const saved = pref(PREF.model);
  const chosen = modelInfo(saved) ? saved : (data.default || (state.models[0] && state.models[0].name) || '');
  el.model.replaceChildren(...state.models.map((m) => h('option', { value: m.name }, m.title || m.name)));
  if (!state.models.length) el.model.append(h('option', { value: '' }, t('model.default')));
  el.model.value = chosen;
  el.model.disabled = false;
  fillPrecisions();
  renderAll();
}

function fillPrecisions() {
  const m = modelInfo(el.model.value);
  const list = m && Array.isArray(m.precisions) ? m.precisions : [];
  el.precision.replaceChildren(...list.map((p) => h('option', { value: p }, precisionLabel(p))));
  el.precisionField.hidden = list.length < 2;
  const saved = pref(PREF.precision);
  el.precision.value = list.includes(saved) ? saved : (m && m.default_precision) || list[0] || '';
  renderModelInfo();
}

function precisionLabel(p) {
  const key = `precision.${p}`;
  const s = t(key);
  return s === key ? String(p).toUpperCase() : s;
}

function renderModelInfo() {
  const m = modelInfo(el.model.value);
  const parts = [];
  if (m) {
    if (m.num_classes) parts.push(t('model.classes', { n: formatInt(m.num_classes) }));
    if (Array.isArray(m.languages) && m.languages.length) {
      parts.push(t('model.langs', { langs: m.languages.map((l) => t(`lang.name.${l}`)).join(', ') }));
    }
    if (m.loaded === false) parts.push(t('model.loadsOnUse'));
  }
  const fallback = m && !modelHasLang(m.name, getLang());
  el.modelInfo.replaceChildren(...[
    parts.length ? h('span', {}, parts.join(' · ')) : null,
    fallback ? h('span', { class: 'model-fallback', 'data-testid': 'lang-fallback' }, t('model.langFallback')) : null,
  ].filter(Boolean));
  el.modelInfo.title = (m && m.preprocessing) || '';
}

/**
 * The label to show for a top-k entry in the current UI language.
 * Uses /api/v1/labels (cached) when the result came in another language.
 * Returns {text, lang} where lang is the language the text really is in.
 */
function labelFor(model, entry, resultLang) {
  const lang = getLang();
  const cached = state.labels.get(`${model}|${lang}`);
  if (cached && typeof cached === 'object') {
    const text = cached.labels[entry.class_index];
    if (typeof text === 'string') return { text, lang: cached.lang };
  }
  if (resultLang === lang) return { text: entry.label, lang: modelHasLang(model, lang) ? lang : 'en' };
  if (!cached) fetchLabels(model, lang);
  return { text: entry.label, lang: modelHasLang(model, resultLang) ? resultLang : 'en' };
}

async function fetchLabels(model, lang) {
  const key = `${model}|${lang}`;
  state.labels.set(key, 'loading');
  try {
    const data = await api.getLabels(model, lang);
    if (!Array.isArray(data.labels)) throw new Error('no labels');
    state.labels.set(key, { lang: data.lang === 'zh' || data.lang === 'en' ? data.lang : lang, labels: data.labels });
    renderAll();
    camera.refresh();
  } catch {
    state.labels.set(key, 'failed');
  }
}

// ---- items ------------------------------------------------------------------

const BROWSER_IMAGE_TYPES = new Set(['image/jpeg', 'image/png', 'image/gif', 'image/webp', 'image/bmp', 'image/avif']);

function addFiles(fileList) {
  const files = Array.from(fileList || []).filter((f) => f instanceof File);
  if (!files.length) return;
  for (const file of files) {
    // Formats the browser cannot draw (HEIC, TIFF, JPEG 2000, unknown types) get their
    // thumbnail from the server, which decodes them anyway (classify's `preview` parameter).
    const showable = BROWSER_IMAGE_TYPES.has(file.type);
    state.items.push({
      id: state.nextId++,
      file,
      name: file.name || 'image',
      size: file.size,
      url: showable ? URL.createObjectURL(file) : null,
      needsPreview: !showable,
      previewUrl: null,
      status: 'pending',
      result: null,
      error: null,
      model: null,
      settingsKey: null,
      card: null,
      thumb: null,
    });
  }
  state.lastRun = null;
  renderAll();
  announce(t('announce.added', { n: files.length }));
}

function removeItem(item) {
  item.removed = true;
  if (item.url) URL.revokeObjectURL(item.url);
  if (item.card) item.card.remove();
  state.items = state.items.filter((i) => i !== item);
  renderControls();
  renderSummary();
  el.dropZone.focus();
}

function clearAll() {
  if (state.run) return;
  for (const item of state.items) {
    item.removed = true;
    if (item.url) URL.revokeObjectURL(item.url);
  }
  state.items = [];
  state.lastRun = null;
  el.grid.replaceChildren();
  hideBanner();
  renderAll();
  el.dropZone.focus();
}

function needsRun(item) {
  if (item.status === 'pending') return true;
  if (item.status === 'error' && RETRYABLE.has(item.error && item.error.code)) return true;
  return (item.status === 'done' || item.status === 'error') && item.settingsKey !== currentKey();
}

// ---- classification ---------------------------------------------------------

async function runBatch() {
  if (state.run) return;
  const todo = state.items.filter(needsRun);
  if (!todo.length) return;
  const run = { ctrl: new AbortController(), total: todo.length, done: 0, ok: 0, failed: 0, stopped: false };
  state.run = run;
  hideBanner();
  for (const item of todo) setItem(item, 'queued');
  renderControls();
  announce(t('progress.running', { done: 0, total: run.total }));

  const ctx = {
    params: currentParams(),
    key: currentKey(),
    setItem,
    onUpdate: renderSummary,
    resume: runBatch,
    reloadModels: loadModels,
    askForKey: (then) => promptForKey(getKeyMessage(), then),
  };
  const { tooLarge, chunks } = planChunks(todo, state.limits);
  // Over the server's cap on its own: say so on the card instead of uploading it to be refused.
  if (tooLarge.length) failItems(tooLarge, { code: 'payload_too_large', message: '', status: 413 }, run, ctx);
  renderControls();
  for (const planned of chunks) {
    const chunk = planned.filter((it) => !it.removed);
    run.done += planned.length - chunk.length;
    if (!chunk.length) continue;
    const keepGoing = await sendChunk(chunk, run, ctx);
    renderControls();
    if (!keepGoing) {
      run.stopped = true;
      break;
    }
  }
  for (const item of todo) if (item.status === 'queued' || item.status === 'working') setItem(item, 'pending');
  state.run = null;
  state.lastRun = run;
  if (run.ok && lastStatus !== 'ready') renderStatus('ready'); // an answer proves it; don't wait for the poll
  renderControls();
  renderSummary();
  announce(run.stopped
    ? t('progress.cancelled', { done: run.done, total: run.total })
    : t('progress.done', { ok: run.ok, failed: run.failed }));
}

function setItem(item, status) {
  item.status = status;
  if (!item.removed) renderItem(item);
}

function getKeyMessage() {
  return api.getApiKey() ? 'banner.keyRejected' : 'banner.unauthorized';
}

// ---- rendering --------------------------------------------------------------

const cardCtx = {
  labelFor,
  currentKey,
  modelTitle: (name) => (modelInfo(name) && modelInfo(name).title) || name || '',
  uploadLimit: () => (state.limits && Number(state.limits.max_upload_bytes)) || null,
  onRemove: removeItem,
};

function renderItem(item) {
  const card = renderCard(item, cardCtx);
  if (card.parentNode !== el.grid) el.grid.append(card);
}

function renderAll() {
  for (const item of state.items) renderItem(item);
  renderControls();
  renderSummary();
  renderModelInfo();
}

function renderControls() {
  const run = state.run;
  const todo = state.items.filter(needsRun).length;
  el.classify.disabled = Boolean(run) || todo === 0;
  el.classify.textContent = run
    ? t('action.classifying')
    : todo ? t('action.classify', { n: todo }) : t('action.classifyIdle');
  el.classify.setAttribute('aria-busy', run ? 'true' : 'false');
  el.cancel.hidden = !run;
  el.clear.disabled = Boolean(run) || !state.items.length;
  const finished = state.items.some((i) => i.status === 'done' || i.status === 'error');
  el.exportCsv.disabled = !finished;
  el.exportJson.disabled = !finished;

  const shown = run || state.lastRun;
  el.progress.hidden = !shown;
  if (shown) {
    el.progressBar.max = Math.max(1, shown.total);
    el.progressBar.value = shown.done;
    el.progress.dataset.done = String(shown.done);
    el.progress.dataset.total = String(shown.total);
    el.progress.dataset.state = run ? 'running' : (shown.stopped ? 'stopped' : 'done');
    el.progressText.textContent = run
      ? t('progress.running', { done: shown.done, total: shown.total })
      : shown.stopped
        ? t('progress.cancelled', { done: shown.done, total: shown.total })
        : t('progress.done', { ok: shown.ok, failed: shown.failed });
  }
}

function renderSummary() {
  const n = state.items.length;
  el.empty.hidden = n > 0;
  if (!n) { el.summary.textContent = ''; return; }
  const ok = state.items.filter((i) => i.status === 'done').length;
  const failed = state.items.filter((i) => i.status === 'error').length;
  const parts = [t('summary.count', { n })];
  if (ok) parts.push(t('summary.ok', { n: ok }));
  if (failed) parts.push(t('summary.failed', { n: failed }));
  const waiting = n - ok - failed;
  if (waiting && ok + failed) parts.push(t('summary.pending', { n: waiting }));
  el.summary.textContent = parts.join(' · ');
}

function renderLang() {
  translateDom();
  el.langToggle.lang = htmlLang(getLang() === 'zh' ? 'en' : 'zh');
  for (const opt of el.precision.options) opt.textContent = precisionLabel(opt.value);
  if (!state.models.length && el.model.options.length === 1) {
    el.model.options[0].textContent = el.model.disabled ? t('model.loading') : t('model.default');
  }
  renderAll();
  refreshBanner();
  camera.refresh();
  renderStatus(lastStatus);
}

// ---- exports ----------------------------------------------------------------

function exportRows() {
  return state.items
    .filter((i) => i.status === 'done' || i.status === 'error')
    .map((i) => (i.status === 'done'
      ? {
        filename: i.name, model: i.result.model, precision: i.result.precision,
        top: i.result.top.map((e) => ({ ...e, label: labelFor(i.result.model, e, i.result.lang).text })),
        input: i.result.input, timing_ms: i.result.timing_ms,
      }
      : { filename: i.name, model: i.model, precision: null, error: { ...i.error, text: errorText(i.error) } }));
}

// ---- server status ----------------------------------------------------------

let lastStatus = 'checking';
function renderStatus(s) {
  lastStatus = s;
  el.status.dataset.state = s;
  const text = t(`status.${s}`);
  el.status.querySelector('.status-text').textContent = text;
  el.status.title = text;
}

async function pollStatus() {
  const s = document.hidden ? lastStatus : await api.readiness();
  renderStatus(s);
  setTimeout(pollStatus, s === 'ready' ? 30_000 : 3_000);
}

// ---- wiring -----------------------------------------------------------------

const camera = new Camera({
  getParams: () => { const { top_k, ...rest } = currentParams(); return rest; },
  labelFor,
  errorText,
  onError: (key) => showBanner({ kind: 'error', key }),
  onAuth: () => promptForKey(getKeyMessage(), () => camera.start()),
});

function wire() {
  for (let k = 1; k <= 10; k++) el.topk.append(h('option', { value: String(k) }, String(k)));
  const savedK = Number(pref(PREF.topk, '5'));
  el.topk.value = String(savedK >= 1 && savedK <= 10 ? savedK : 5);

  el.dropZone.addEventListener('click', () => el.fileInput.click());
  el.fileInput.addEventListener('change', () => {
    addFiles(el.fileInput.files);
    el.fileInput.value = ''; // picking the same file again fires change again
  });

  // Accept drops anywhere on the page; highlight the drop zone meanwhile.
  let depth = 0;
  const hasFiles = (e) => e.dataTransfer && Array.from(e.dataTransfer.types || []).includes('Files');
  document.addEventListener('dragenter', (e) => {
    if (!hasFiles(e)) return;
    depth++;
    el.dropZone.classList.add('is-dragging');
  });
  document.addEventListener('dragleave', () => {
    depth = Math.max(0, depth - 1);
    if (!depth) el.dropZone.classList.remove('is-dragging');
  });
  document.addEventListener('dragover', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = 'copy';
  });
  document.addEventListener('drop', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth = 0;
    el.dropZone.classList.remove('is-dragging');
    addFiles(e.dataTransfer.files);
  });
  document.addEventListener('paste', (e) => {
    if (e.target instanceof HTMLInputElement) return;
    const files = e.clipboardData && e.clipboardData.files;
    if (files && files.length) addFiles(files);
  });

  el.classify.addEventListener('click', runBatch);
  el.cancel.addEventListener('click', () => state.run && state.run.ctrl.abort());
  el.clear.addEventListener('click', clearAll);
  el.model.addEventListener('change', () => {
    savePref(PREF.model, el.model.value);
    fillPrecisions();
    renderAll();
  });
  el.precision.addEventListener('change', () => { savePref(PREF.precision, el.precision.value); renderAll(); });
  el.topk.addEventListener('change', () => { savePref(PREF.topk, el.topk.value); renderAll(); });
  el.langToggle.addEventListener('click', () => {
    setLang(getLang() === 'zh' ? 'en' : 'zh');
    for (const [k, v] of state.labels) if (v === 'failed') state.labels.delete(k);
    renderLang();
  });
  el.exportCsv.addEventListener('click', () => {
    download(`${t('export.fileStem')}-${timestampForFile()}.csv`, buildCsv(exportRows()), 'text/csv;charset=utf-8');
  });
  el.exportJson.addEventListener('click', () => {
    download(`${t('export.fileStem')}-${timestampForFile()}.json`, buildJson(exportRows(), getLang()), 'application/json');
  });
  el.forgetKey.addEventListener('click', () => {
    api.setApiKey('');
    el.forgetKey.hidden = true;
    showBanner({ kind: 'info', key: 'banner.keyForgotten' });
  });
  el.forgetKey.hidden = !api.getApiKey();
  document.addEventListener('imgcls:key-saved', () => { el.forgetKey.hidden = false; });
}

setLang(getLang());
wire();
renderLang();
loadModels();
pollStatus();
document.body.dataset.ready = 'true';
