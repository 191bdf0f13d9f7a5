// Same-origin client for the imgcls HTTP API (/api/v1/...).
//
// Every failure becomes an ApiError with a status, a machine code and the
// server's message, so the UI can translate it; raw bodies are never shown.

const KEY_STORAGE = 'imgcls.apiKey';

/** A request that did not succeed. `status` is 0 for network failures. */
export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message || code || `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter; // seconds, or null
  }
}

export function getApiKey() {
  try { return localStorage.getItem(KEY_STORAGE) || ''; } catch { return ''; }
}

export function setApiKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch { /* storage disabled: the key lasts until reload at most */ }
}

/** Seconds to wait from a Retry-After header (delta-seconds or HTTP date). */
export function parseRetryAfter(value) {
  if (!value) return null;
  const secs = Number(value);
  if (Number.isFinite(secs)) return Math.max(0, Math.ceil(secs));
  const when = Date.parse(value);
  if (Number.isNaN(when)) return null;
  return Math.max(0, Math.ceil((when - Date.now()) / 1000));
}

const DEFAULT_CODES = {
  400: 'bad_request', 401: 'unauthorized', 404: 'not_found', 413: 'payload_too_large',
  415: 'unsupported_media_type', 422: 'bad_request', 503: 'overloaded',
};

async function request(path, { params, method = 'GET', body, signal } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, String(v));
  }
  const headers = { Accept: 'application/json' };
  const key = getApiKey();
  if (key) headers['X-API-Key'] = key;

  let res;
  try {
    res = await fetch(url, { method, body, headers, signal, cache: 'no-store' });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, 'network', 'network error');
  }
  let data = null;
  try { data = await res.json(); } catch { /* not JSON (e.g. a proxy page) */ }
  if (!res.ok) {
    const e = data && typeof data === 'object' && data.error && typeof data.error === 'object' ? data.error : {};
    const code = typeof e.code === 'string' ? e.code : (DEFAULT_CODES[res.status] || 'http_error');
    const message = typeof e.message === 'string' ? e.message : '';
    throw new ApiError(res.status, code, message, parseRetryAfter(res.headers.get('Retry-After')));
  }
  if (data === null) throw new ApiError(res.status, 'bad_response', 'response was not JSON');
  return data;
}

/** GET /api/v1/models → {default, models: [...]} */
export function getModels(opts) {
  return request('/api/v1/models', opts);
}

/** GET /api/v1/labels → {model, lang, labels: [...]} */
export function getLabels(model, lang, opts) {
  return request('/api/v1/labels', { ...opts, params: { model, lang } });
}

/**
 * POST /api/v1/classify with one or more files (multipart parts named `file`).
 *
 * Args: files — array of File/Blob (a Blob gets `filename` from the pair
 * form [blob, name]); params — {model, top_k, lang, precision}.
 * Returns: the parsed response {model, precision, results}.
 * Raises: ApiError for request-level failures, AbortError when aborted.
 */
export function classify(files, params, opts = {}) {
  const form = new FormData();
  for (const f of files) {
    if (Array.isArray(f)) form.append('file', f[0], f[1]);
    else form.append('file', f, f.name);
  }
  return request('/api/v1/classify', { ...opts, method: 'POST', body: form, params });
}

/** 'ready' | 'warming' | 'down', from GET /readyz. */
export async function readiness() {
  try {
    const res = await fetch('/readyz', { cache: 'no-store' });
    if (res.ok) return 'ready';
    return res.status === 503 ? 'warming' : 'down';
  } catch {
    return 'down';
  }
}
