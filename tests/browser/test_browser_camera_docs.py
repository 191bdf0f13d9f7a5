"""Live camera mode on Chromium's fake camera, and the API docs page working offline."""

from __future__ import annotations


import pytest
from browser_helpers import poll
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

# Observe (not replace) getUserMedia so the test can check the tracks really stop.
KEEP_STREAMS = """(() => {
  window.__streams = [];
  const md = navigator.mediaDevices;
  if (!md || !md.getUserMedia) return;
  const original = md.getUserMedia.bind(md);
  md.getUserMedia = async (constraints) => {
    const stream = await original(constraints);
    window.__streams.push(stream);
    return stream;
  };
})();"""


def classify_requests(browser) -> int:
    return sum(1 for url in browser.requests if "/api/v1/classify" in url)


def test_camera_live_top3_then_clean_stop(browser):
    page = browser.open("/", camera=True, init_script=KEEP_STREAMS)
    expect(page.locator("#camera")).to_be_hidden()
    page.get_by_test_id("camera-start").click()
    expect(page.locator("#camera")).to_be_visible()
    expect(page.get_by_test_id("camera-start")).to_be_disabled()
    # Top-3 of the live frames within a few seconds (frames are sent about twice a second).
    expect(page.get_by_test_id("camera-top").locator("li")).to_have_count(3, timeout=8_000)
    labels = page.get_by_test_id("camera-top").get_by_test_id("label").all_inner_texts()
    assert len(labels) == 3 and all(label.strip() for label in labels), labels
    expect(page.locator("#camera-status")).to_contain_text("ms per frame")
    assert poll(page, "() => document.querySelector('[data-testid=camera-video]').videoWidth") > 0

    # A steady rate (about 2 frames/s) while it runs.
    first = classify_requests(browser)
    page.wait_for_timeout(3000)  # (a plain sleep would hold back Playwright's events)
    frames = classify_requests(browser) - first
    assert 3 <= frames <= 8, f"{frames} frames in 3 s (expected about 6)"
    browser.shot(page, "1-live", full_page=False)

    # Switching language relabels the live list.
    page.get_by_test_id("lang-toggle").click()
    expect(page.locator("#camera-status")).to_contain_text("每帧")
    page.get_by_test_id("lang-toggle").click()

    page.get_by_test_id("camera-stop").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#camera")).to_be_hidden()
    expect(page.get_by_test_id("camera-start")).to_be_enabled()
    expect(page.get_by_test_id("camera-start")).to_be_focused()  # keyboard users keep their place
    states = page.evaluate("() => window.__streams.flatMap((s) => s.getTracks().map((t) => t.readyState))")
    assert states and all(s == "ended" for s in states), f"camera tracks still live after stop: {states}"
    assert page.evaluate("() => document.querySelector('[data-testid=camera-video]').srcObject") is None
    settled = classify_requests(browser)
    page.wait_for_timeout(1500)  # three frame intervals
    assert classify_requests(browser) == settled, "frames were still sent after Stop"
    browser.shot(page, "2-stopped", full_page=False)


def test_docs_page_renders_offline(browser):
    page = browser.open("/")
    page.get_by_test_id("docs-link").click()
    page.wait_for_url("**/docs")
    expect(page.locator("h1")).to_contain_text("imgcls API")
    expect(page.locator("section.op")).not_to_have_count(0)
    expect(page.locator("#post-api-v1-classify")).to_contain_text("Classify one or more images")
    expect(page.locator("#post-api-v1-classify pre")).to_contain_text(f"{browser.server.url}/api/v1/classify")
    # The page's own stylesheet applied (served by this process, no CDN).
    radius = page.locator("section.op").first.evaluate("(el) => getComputedStyle(el).borderTopLeftRadius")
    assert radius == "10px", radius
    assert page.locator("script").count() == 0
    browser.shot(page, "docs")

    page.locator("nav a[href='#get-api-v1-models']").click()
    assert page.evaluate("() => location.hash") == "#get-api-v1-models"
    page.get_by_role("link", name="/openapi.json").click()
    page.wait_for_url("**/openapi.json")
    assert '"openapi"' in page.locator("body").inner_text()
    assert any(url.endswith("/docs.css") for url in browser.requests), browser.requests
    assert not browser.offsite_requests(), browser.offsite_requests()
