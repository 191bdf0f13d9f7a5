"""Bad files get their own plain-words error while the rest succeed; the page fits a phone."""

from __future__ import annotations

import os

import pytest
from browser_helpers import file_payload, MAX_UPLOAD_MB, card, card_top, classify_all, no_horizontal_scroll
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def test_bad_files_fail_alone_in_plain_words(browser, photos, reference):
    page = browser.open("/")
    # The oversized file makes the chunk's request 413; the UI then retries files one by one, and
    # Chromium logs each refused request as a console error. Those are expected here.
    browser.allowed_console.append("status of 413")
    big = os.urandom(int((MAX_UPLOAD_MB + 0.5) * 1024 * 1024))
    files = [
        file_payload(photos[0]),
        {"name": "notes.jpg", "mimeType": "image/jpeg", "buffer": b"just some text, not a picture\n" * 20},
        {"name": "empty.jpg", "mimeType": "image/jpeg", "buffer": b""},
        file_payload(photos[1]),
        {"name": "huge.png", "mimeType": "image/png", "buffer": big},
    ]
    page.get_by_test_id("file-input").set_input_files(files)
    classify_all(page, len(files))

    for photo in photos[:2]:
        expect(card(page, photo.name)).to_have_attribute("data-status", "done")
        assert card_top(page, photo.name)[0]["label"] == reference[photo.name]["label"]
    expected = {
        "notes.jpg": "Not a supported image type.",
        "empty.jpg": "This file is empty.",
        "huge.png": "The file is too large to upload.",
    }
    for name, words in expected.items():
        bad = card(page, name)
        expect(bad).to_have_attribute("data-status", "error")
        expect(bad.get_by_test_id("card-error")).to_contain_text(words)
        text = bad.get_by_test_id("card-error").inner_text()
        assert "_" not in text and "Traceback" not in text and "{" not in text, text
        # No broken-image icon: a file that is not a picture gets a "No preview" placeholder.
        expect(bad.locator(".thumb-none")).to_be_visible()
    expect(card(page, "huge.png").get_by_test_id("card-error")).to_contain_text("MB)")
    expect(page.get_by_test_id("progress")).to_contain_text("2 classified, 3 failed")
    expect(page.locator("#results-summary")).to_have_text("5 images · 2 classified · 3 failed")
    expect(page.get_by_test_id("banner")).to_contain_text("larger than the server accepts")
    browser.shot(page, "errors")

    # A failed file is not retried on the next Classify: nothing is left to do.
    expect(page.get_by_test_id("classify-button")).to_be_disabled()
    # Removing a card works and the summary follows.
    card(page, "notes.jpg").locator(".card-remove").click()
    expect(page.get_by_test_id("result-card")).to_have_count(4)
    expect(page.locator("#results-summary")).to_have_text("4 images · 2 classified · 2 failed")


def test_phone_viewport_fits_and_works(browser, photos, reference):
    page = browser.open("/", viewport=(375, 740), scale=2)
    sizes = no_horizontal_scroll(page)
    assert sizes["scrollWidth"] <= sizes["innerWidth"], f"horizontal scroll on an empty phone page: {sizes}"
    for test_id in ("drop-zone", "classify-button", "lang-toggle", "model-select", "topk-select", "camera-start"):
        control = page.get_by_test_id(test_id)
        expect(control).to_be_visible()
        box = control.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 375, (test_id, box)
        assert box["height"] >= 24, f"{test_id} is too small to tap: {box}"
    browser.shot(page, "1-empty", full_page=False)

    page.get_by_test_id("file-input").set_input_files([str(p) for p in photos[:3]])
    classify_all(page, 3)
    assert card_top(page, photos[0].name)[0]["label"] == reference[photos[0].name]["label"]
    for test_id in ("export-csv", "export-json", "clear-button"):
        box = page.get_by_test_id(test_id).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 375, (test_id, box)
    sizes = no_horizontal_scroll(page)
    assert sizes["scrollWidth"] <= sizes["innerWidth"], f"horizontal scroll with results: {sizes}"
    # Cards stack one per row on a phone.
    boxes = [c.bounding_box() for c in page.get_by_test_id("result-card").all()]
    assert len({round(b["x"]) for b in boxes}) == 1, boxes
    browser.shot(page, "2-results")

    page.get_by_test_id("lang-toggle").click()
    expect(page.locator("#results-heading")).to_have_text("识别结果")
    sizes = no_horizontal_scroll(page)
    assert sizes["scrollWidth"] <= sizes["innerWidth"], f"horizontal scroll in 中文: {sizes}"
    browser.shot(page, "3-results-zh")
