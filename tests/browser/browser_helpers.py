"""The browser-tier helpers: one headless Chromium per session and a fresh context per test, with
requests and errors recorded, screenshots saved as test artifacts, and CSP-safe polling."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit

CHROMIUM = Path("/usr/bin/chromium")
# Quiet, offline-friendly Chromium: no background services that would phone home.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-quic", "--no-first-run", "--disable-sync",
]
SHOTS: list[Path] = []  # every screenshot of this session, listed in the terminal summary
FAKE_CAMERA_ARGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
BUNDLE_NAME = "lite0-bundle"  # the second served model (a bundle folder)
MAX_UPLOAD_MB = 2  # the server's cap: small, so "too large" is cheap to reach with a generated file


def launch_chromium(driver):
    """The Debian Chromium, headless. Playwright gives it a fresh temporary profile
    (--user-data-dir) and every test opens its own context (own storage, cookies, permissions).
    The fake-camera flags are harmless elsewhere and let the camera test run in the same browser."""
    return driver.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                  args=CHROMIUM_ARGS + FAKE_CAMERA_ARGS)


class Browser:
    """One fresh browser context for one test, its requests and errors recorded for teardown."""

    def __init__(self, chromium, server, screenshots: Path, test_name: str):
        self.chromium = chromium
        self.server = server
        self.screenshots = screenshots
        self.test_name = test_name
        self.requests: list[str] = []
        self.page_errors: list[str] = []
        self.console_errors: list[str] = []
        self.error_responses: list[str] = []  # "status url", to explain console errors
        self.allowed_console: list[str] = []
        self.context = None
        self.origin = server.url
        self.shots: list[Path] = []

    def open(self, path: str = "/", *, viewport=(1280, 900), scale: float = 1, camera: bool = False,
             init_script: str | None = None, settle: bool = True, dark: bool = False, host: str = "127.0.0.1"):
        """Open `path` on the server in a fresh context; for the app, wait until it has wired
        itself up and (with `settle`) loaded the model list and seen the server ready. `host` is
        the name typed in the address bar (127.0.0.1 or localhost reach the same server)."""
        self.origin = f"http://{host}:{self.server.port}"
        self.context = self.chromium.new_context(
            viewport={"width": viewport[0], "height": viewport[1]}, device_scale_factor=scale,
            accept_downloads=True, locale="en-US", color_scheme="dark" if dark else "light",
            permissions=["camera"] if camera else [])
        self.context.set_default_timeout(20_000)
        self.context.on("request", lambda r: self.requests.append(r.url))
        if init_script:
            self.context.add_init_script(init_script)
        page = self.context.new_page()
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))
        page.on("console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None)
        page.on("response", lambda r: self.error_responses.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        page.goto(self.origin + path)
        if path == "/":
            page.locator("body[data-ready=true]").wait_for(state="attached")
        if path == "/" and settle:
            # The model list and readiness arrive asynchronously.
            page.locator("[data-testid=model-select] option[value=efficientnet_lite0]").wait_for(state="attached")
            page.locator("[data-testid=server-status][data-state=ready]").wait_for(state="attached")
        return page

    def shot(self, page, name: str, full_page: bool = True) -> Path:
        path = self.screenshots / f"{self.test_name}--{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        self.shots.append(path)
        SHOTS.append(path)
        print(f"screenshot: {path}")
        return path

    def offsite_requests(self) -> list[str]:
        own = urlsplit(self.origin)
        bad = []
        for url in self.requests:
            parts = urlsplit(url)
            if parts.scheme in ("blob", "data"):
                continue
            if (parts.scheme, parts.hostname, parts.port) != (own.scheme, own.hostname, own.port):
                bad.append(url)
        return bad

    def close(self) -> None:
        if self.context is not None:
            self.context.close()


def poll(page, script: str, predicate=bool, timeout: float = 10.0, interval: float = 0.1):
    """page.evaluate(script) until predicate(value) holds (CSP-safe replacement for wait_for_function)."""
    deadline = time.monotonic() + timeout
    value = page.evaluate(script)
    while not predicate(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting on {script!r}; last value {value!r}")
        time.sleep(interval)
        value = page.evaluate(script)
    return value


def card(page, filename: str):
    """The result card of one uploaded file."""
    return page.locator(f'[data-testid=result-card][data-filename="{filename}"]')


def classify_all(page, expected: int, timeout: float = 60_000) -> None:
    """Press Classify and wait until `expected` cards have finished (done or error)."""
    from playwright.sync_api import expect

    button = page.get_by_test_id("classify-button")
    expect(button).to_be_enabled()
    button.click()
    finished = page.locator("[data-testid=result-card][data-status=done], [data-testid=result-card][data-status=error]")
    expect(finished).to_have_count(expected, timeout=timeout)
    expect(page.get_by_test_id("progress")).to_have_attribute("data-state", "done")


def card_top(page, filename: str) -> list[dict]:
    """[{label, score, width}] for one card, read from the DOM (width = the bar's fill in %)."""
    return card(page, filename).evaluate("""(el) => Array.from(el.querySelectorAll('.topk-row')).map((row) => ({
        label: row.querySelector('[data-testid=label]').textContent,
        lang: row.querySelector('[data-testid=label]').lang,
        score: row.querySelector('[data-testid=score]').textContent,
        width: row.querySelector('[data-testid=bar]').getBoundingClientRect().width
             / row.querySelector('.bar').getBoundingClientRect().width * 100,
    }))""")


def no_horizontal_scroll(page) -> dict:
    return page.evaluate("""() => ({scrollWidth: document.documentElement.scrollWidth,
                                    innerWidth: window.innerWidth})""")


def file_payload(path) -> dict:
    """A photo as a Playwright file payload (paths and in-memory files cannot be mixed)."""
    return {"name": path.name, "mimeType": "image/jpeg", "buffer": path.read_bytes()}


# WCAG 2 contrast of every visible, enabled text element against its composited background:
# [{sel, text, ratio, need}], need = 4.5 (3 for large text). Disabled controls are exempt.
CONTRAST_JS = r"""() => {
  const parse = (c) => { const m = c.match(/rgba?\(([^)]+)\)/); if (!m) return null;
    const p = m[1].split(/[ ,\/]+/).filter(Boolean).map(Number); return {r:p[0],g:p[1],b:p[2],a:p.length>3?p[3]:1}; };
  const lum = ({r,g,b}) => { const f = (v) => { v/=255; return v <= 0.03928 ? v/12.92 : Math.pow((v+0.055)/1.055, 2.4); };
    return 0.2126*f(r)+0.7152*f(g)+0.0722*f(b); };
  const over = (top, under) => ({ r: top.r*top.a + under.r*(1-top.a), g: top.g*top.a + under.g*(1-top.a), b: top.b*top.a + under.b*(1-top.a), a: 1 });
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) { const c = parse(getComputedStyle(e).backgroundColor); if (c && c.a > 0) { layers.push(c); if (c.a >= 1) break; } }
    let bg = {r:255,g:255,b:255,a:1};
    if (layers.length && layers[layers.length-1].a >= 1) bg = layers.pop();
    for (const l of layers.reverse()) bg = over(l, bg);
    return bg;
  };
  const out = [];
  const seen = new Set();
  for (const el of document.querySelectorAll('body *')) {
    if (el.closest('[hidden]') || el.closest('.visually-hidden') || el.matches(':disabled') || el.closest(':disabled')) continue;
    const text = Array.from(el.childNodes).filter(n => n.nodeType === 3).map(n => n.textContent.trim()).join('');
    if (!text) continue;
    const r = el.getBoundingClientRect(); if (!r.width || !r.height) continue;
    const s = getComputedStyle(el); if (s.visibility === 'hidden' || Number(s.opacity) === 0) continue;
    const fg0 = parse(s.color); const bg = background(el); const fg = over(fg0, bg);
    const L1 = lum(fg), L2 = lum(bg); const ratio = (Math.max(L1,L2)+0.05)/(Math.min(L1,L2)+0.05);
    const size = parseFloat(s.fontSize), bold = Number(s.fontWeight) >= 700;
    const need = (size >= 24 || (bold && size >= 18.66)) ? 3 : 4.5;
    out.push({sel: el.tagName.toLowerCase() + (el.className && typeof el.className === 'string' ? '.' + el.className.split(' ').join('.') : ''), text: text.slice(0, 30), ratio: Math.round(ratio*100)/100, need});
  }
  return out;
}"""
