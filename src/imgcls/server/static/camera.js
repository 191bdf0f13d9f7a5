// Live camera mode: grab a frame about twice a second, downscale it to a
// JPEG (longest side <= 512 px), post it to /api/v1/classify?top_k=3 and show
// the current top 3. Never more than one request in flight; Stop releases
// the camera, timers and any pending request.

import { classify, ApiError } from './api.js';
import { t, htmlLang } from './i18n.js';
import { h, byTestId, formatPercent, formatMs } from './dom.js';

const FRAME_INTERVAL_MS = 500; // 2 frames/s
const MAX_SIDE = 512;
const JPEG_QUALITY = 0.85;
const TOP_K = 3;

export class Camera {
  /**
   * Args: opts.getParams() → {model, lang, precision} for each frame;
   * opts.labelFor(model, entry, lang) → label text to show;
   * opts.onError(messageKey) → show a request-level message;
   * opts.onAuth(error) → an ApiError 401 happened (the camera stops first).
   */
  constructor(opts) {
    this.opts = opts;
    this.section = document.getElementById('camera');
    this.video = byTestId('camera-video');
    this.topList = byTestId('camera-top');
    this.status = document.getElementById('camera-status');
    this.startBtn = byTestId('camera-start');
    this.stopBtn = byTestId('camera-stop');
    this.canvas = document.createElement('canvas');
    this.stream = null;
    this.timer = null;
    this.inFlight = null; // AbortController of the pending request
    this.pausedUntil = 0;
    this.last = null; // last good response, re-rendered on language change
    this.lastStatus = ['camera.starting', {}];

    this.startBtn.addEventListener('click', () => this.start());
    this.stopBtn.addEventListener('click', () => this.stop());
    window.addEventListener('pagehide', () => this.stop());
  }

  get running() {
    return this.stream !== null;
  }

  async start() {
    if (this.running) return;
    if (!window.isSecureContext) return this.opts.onError('camera.insecure');
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      return this.opts.onError('camera.unsupported');
    }
    this.startBtn.disabled = true;
    this.section.hidden = false;
    this.last = null;
    this.renderTop();
    this.setStatus('camera.starting');
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: false,
        video: { facingMode: 'environment', width: { ideal: 1280 }, height: { ideal: 720 } },
      });
    } catch (err) {
      this.section.hidden = true;
      this.startBtn.disabled = false;
      return this.opts.onError(cameraErrorKey(err));
    }
    this.video.srcObject = this.stream;
    this.video.muted = true;
    this.video.playsInline = true;
    try { await this.video.play(); } catch { /* autoplay is allowed for muted video */ }
    this.setStatus('camera.waiting');
    this.stopBtn.focus({ preventScroll: true });
    this.section.scrollIntoView({ block: 'start', behavior: matchMedia('(prefers-reduced-motion: reduce)').matches ? 'auto' : 'smooth' });
    this.timer = setInterval(() => this.tick(), FRAME_INTERVAL_MS);
  }

  stop() {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    if (this.inFlight) this.inFlight.abort();
    this.inFlight = null;
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    const wasRunning = this.stream !== null;
    // Focus inside the panel (the Stop button) would be lost when the panel hides: hand it back
    // to the Start button so keyboard users keep their place.
    const hadFocus = this.section.contains(document.activeElement) || document.activeElement === document.body;
    this.stream = null;
    this.video.srcObject = null;
    this.section.hidden = true;
    this.startBtn.disabled = false;
    if (wasRunning && hadFocus) this.startBtn.focus({ preventScroll: true });
  }

  async tick() {
    if (!this.running || this.inFlight || document.hidden) return;
    if (Date.now() < this.pausedUntil) return;
    const v = this.video;
    if (v.readyState < 2 || !v.videoWidth) return;

    const scale = Math.min(1, MAX_SIDE / Math.max(v.videoWidth, v.videoHeight));
    this.canvas.width = Math.round(v.videoWidth * scale);
    this.canvas.height = Math.round(v.videoHeight * scale);
    this.canvas.getContext('2d').drawImage(v, 0, 0, this.canvas.width, this.canvas.height);

    const ctrl = new AbortController();
    this.inFlight = ctrl;
    try {
      const blob = await new Promise((resolve) => this.canvas.toBlob(resolve, 'image/jpeg', JPEG_QUALITY));
      if (!blob || ctrl.signal.aborted) return;
      const p = this.opts.getParams();
      const started = performance.now();
      const data = await classify([[blob, 'camera.jpg']], { ...p, top_k: TOP_K }, { signal: ctrl.signal });
      if (ctrl.signal.aborted) return;
      const r = data.results && data.results[0];
      if (!r || !Array.isArray(r.top)) {
        this.setStatus('camera.frameError', { reason: (r && r.error && r.error.message) || '?' });
        return;
      }
      const ms = r.timing_ms && r.timing_ms.total != null ? r.timing_ms.total : performance.now() - started;
      this.last = { model: data.model, lang: data.lang === 'zh' || data.lang === 'en' ? data.lang : p.lang, top: r.top, ms };
      this.renderTop();
    } catch (err) {
      if (err.name === 'AbortError') return;
      this.handleError(err);
    } finally {
      if (this.inFlight === ctrl) this.inFlight = null;
    }
  }

  handleError(err) {
    if (err instanceof ApiError && err.status === 401) {
      this.stop();
      this.opts.onAuth(err);
      return;
    }
    if (err instanceof ApiError && err.status === 503) {
      // Busy or warming: back off as asked instead of adding load.
      this.pausedUntil = Date.now() + 1000 * (err.retryAfter ?? 1);
    }
    const reason = err instanceof ApiError && err.status === 0 ? t('banner.network') : this.opts.errorText(err);
    this.setStatus('camera.frameError', { reason });
  }

  setStatus(key, vars = {}) {
    this.lastStatus = [key, vars];
    this.status.textContent = t(key, vars);
  }

  /** Re-render text after a language change. */
  refresh() {
    const [key, vars] = this.lastStatus;
    this.setStatus(key, vars);
    this.renderTop();
  }

  renderTop() {
    const items = [];
    if (this.last) {
      const { model, lang, top } = this.last;
      top.slice(0, TOP_K).forEach((entry, i) => {
        const { text, lang: labelLang } = this.opts.labelFor(model, entry, lang);
        const fill = h('span', { class: 'bar-fill', 'data-testid': 'bar' });
        fill.style.width = `${(Math.max(0, Math.min(1, entry.score)) * 100).toFixed(1)}%`;
        items.push(h('li', { class: i === 0 ? 'topk-row is-first' : 'topk-row' },
          h('span', { class: 'topk-label', 'data-testid': 'label', lang: htmlLang(labelLang), title: text }, text),
          h('span', { class: 'topk-score', 'data-testid': 'score' }, formatPercent(entry.score)),
          h('span', { class: 'bar', 'aria-hidden': 'true' }, fill)));
      });
      this.setStatus('camera.latency', { ms: formatMs(this.last.ms) });
    }
    this.topList.replaceChildren(...items);
  }
}

function cameraErrorKey(err) {
  switch (err && err.name) {
    case 'NotAllowedError':
    case 'PermissionDeniedError':
    case 'SecurityError':
      return 'camera.denied';
    case 'NotFoundError':
    case 'DevicesNotFoundError':
    case 'OverconstrainedError':
      return 'camera.notFound';
    case 'NotReadableError':
    case 'TrackStartError':
    case 'AbortError':
      return 'camera.busy';
    default:
      return 'camera.failed';
  }
}
