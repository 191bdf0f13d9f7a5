"""A server with an API key that is still warming up: the page asks for the key, rejects a wrong
one, waits out "not ready" on its own and ends with results, as a newcomer would see it."""

from __future__ import annotations

import pytest
from browser_helpers import card_top
from playwright.sync_api import expect
from server_helpers import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

API_KEY = "browser-test-key-7f3a"
WARMUP_DELAY_S = 12  # long enough to reach Classify while the server still says "not ready"


@pytest.fixture(scope="module")
def guarded_server(chromium, tmp_path_factory, lite0_fp32):
    proc = ServerProcess(["--model", "efficientnet_lite0", "--api-key", API_KEY,
                          "--warmup-delay", str(WARMUP_DELAY_S)], tmp_path_factory.mktemp("guarded-server"))
    try:
        proc.wait_listening()
        yield proc
    finally:
        proc.terminate()


def test_api_key_prompt_and_warm_up_retry(browser_on, guarded_server, photos, reference):
    browser = browser_on(guarded_server)
    # The refused calls (401 before the key, 503 while warming) are logged by Chromium.
    browser.allowed_console += ["status of 401", "status of 503"]
    page = browser.open("/", settle=False)
    status = page.get_by_test_id("server-status")
    expect(status).to_have_attribute("data-state", "warming")
    expect(status).to_contain_text("Warming up")
    banner = page.get_by_test_id("banner")
    expect(banner).to_contain_text("This server needs an API key.")
    key_input = page.get_by_test_id("api-key-input")
    expect(key_input).to_be_focused()
    expect(key_input).to_have_attribute("type", "password")
    browser.shot(page, "1-key-prompt", full_page=False)

    key_input.fill("wrong-key")
    key_input.press("Enter")
    expect(banner).to_contain_text("That API key was not accepted.")
    page.get_by_test_id("api-key-input").fill(API_KEY)
    page.get_by_test_id("api-key-save").click()
    expect(page.locator("[data-testid=model-select] option[value=efficientnet_lite0]")).to_be_attached()
    expect(banner).to_contain_text("API key saved in this browser.")

    tench = photos[0]
    page.get_by_test_id("file-input").set_input_files([str(tench)])
    page.get_by_test_id("classify-button").click()
    # 503 not_ready with Retry-After: the page counts down and retries by itself...
    expect(banner).to_contain_text("still warming up")
    browser.shot(page, "2-warming-retry", full_page=False)
    # ...until cancelled: the image goes back to waiting and nothing more is sent.
    page.get_by_test_id("cancel-button").click()
    expect(page.get_by_test_id("progress")).to_have_attribute("data-state", "stopped")
    expect(page.get_by_test_id("progress")).to_contain_text("Stopped")
    expect(page.get_by_test_id("result-card")).to_have_attribute("data-status", "pending")
    expect(page.get_by_test_id("cancel-button")).to_be_hidden()
    expect(banner).to_be_hidden()  # no "Retrying in 1 s…" left behind
    sent = sum("/api/v1/classify" in url for url in browser.requests)
    page.wait_for_timeout(2500)  # longer than the Retry-After countdown
    assert sum("/api/v1/classify" in url for url in browser.requests) == sent, "requests went on after Cancel"
    # Classify again: it waits for the warm-up on its own and finishes.
    page.get_by_test_id("classify-button").click()
    expect(page.locator("[data-testid=result-card][data-status=done]")).to_have_count(1, timeout=90_000)
    assert card_top(page, tench.name)[0]["label"] == reference[tench.name]["label"]
    expect(banner).to_be_hidden()
    expect(status).to_have_attribute("data-state", "ready")
    assert any(r.startswith("503 ") and "/api/v1/classify" in r for r in browser.error_responses)
    browser.shot(page, "3-done")

    # The key is kept in this browser until the user forgets it.
    page.reload()
    expect(page.locator("[data-testid=model-select] option[value=efficientnet_lite0]")).to_be_attached()
    expect(banner).to_be_hidden()
    forget = page.locator("#forget-key")
    expect(forget).to_be_visible()
    forget.click()
    expect(banner).to_contain_text("API key removed")
    page.reload()
    expect(page.get_by_test_id("banner")).to_contain_text("This server needs an API key.")
