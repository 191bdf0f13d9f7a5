"""Bad files get their own plain-words error while the rest succeed; the page fits a phone."""

from __future__ import annotations

import io
import os

import pytest
from browser_helpers import CONTRAST_JS, file_payload, MAX_UPLOAD_MB, card, card_top, classify_all, no_horizontal_scroll
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def test_bad_files_fail_alone_in_plain_words(browser, photos, reference):
    page = browser.open("/")
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
        "huge.png": f"The file is too large to upload (2.5 MB; this server accepts up to {MAX_UPLOAD_MB} MB).",
    }
    for name, words in expected.items():
        bad = card(page, name)
        expect(bad).to_have_attribute("data-status", "error")
        expect(bad.get_by_test_id("card-error")).to_contain_text(words)
        text = bad.get_by_test_id("card-error").inner_text()
        assert "_" not in text and "Traceback" not in text and "{" not in text, text
        # No broken-image icon: a file that is not a picture gets a "No preview" placeholder.
        expect(bad.locator(".thumb-none")).to_be_visible()
    expect(page.get_by_test_id("progress")).to_contain_text("2 classified, 3 failed")
    expect(page.locator("#results-summary")).to_have_text("5 images · 2 classified · 3 failed")
    # The oversized file was refused in the page (the limit comes from /api/v1/models), not uploaded.
    assert not [r for r in browser.error_responses if r.startswith("413 ")], browser.error_responses
    expect(page.get_by_test_id("banner")).to_be_hidden()
    browser.shot(page, "errors")

    # A failed file is not retried on the next Classify: nothing is left to do.
    expect(page.get_by_test_id("classify-button")).to_be_disabled()
    # Removing a card works and the summary follows.
    card(page, "notes.jpg").locator(".card-remove").click()
    expect(page.get_by_test_id("result-card")).to_have_count(4)
    expect(page.locator("#results-summary")).to_have_text("4 images · 2 classified · 2 failed")


def test_requests_stay_under_the_upload_cap(browser, photos):
    """Three ~0.8 MB photos under a 2 MB cap: the page packs them so no request is refused."""
    page = browser.open("/")
    files = [{"name": f"noise-{i}.jpg", "mimeType": "image/jpeg", "buffer": noisy_jpeg(seed=i)} for i in range(3)]
    files.append(file_payload(photos[0]))
    sizes = [len(f["buffer"]) for f in files]
    assert sum(sizes) > MAX_UPLOAD_MB * 1024 * 1024 and max(sizes) < 0.45 * MAX_UPLOAD_MB * 1024 * 1024, sizes
    page.get_by_test_id("file-input").set_input_files(files)
    classify_all(page, len(files))
    expect(page.locator("[data-testid=result-card][data-status=done]")).to_have_count(len(files))
    assert not browser.error_responses, browser.error_responses
    # Together they exceed the cap, so they went in more than one request, and none was refused.
    assert sum("/api/v1/classify" in url for url in browser.requests) >= 2


def noisy_jpeg(seed: int) -> bytes:
    """A valid JPEG of about 0.8 MB (random noise does not compress)."""
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (940, 940, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


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


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_contrast(browser, photos, scheme):
    """Every visible text on a page with results and an error meets WCAG AA contrast."""
    page = browser.open("/", dark=scheme == "dark")
    page.get_by_test_id("file-input").set_input_files(
        [file_payload(p) for p in photos[:2]] + [{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"text"}])
    classify_all(page, 3)
    page.mouse.move(0, 0)  # no hover effects
    checked = page.evaluate(CONTRAST_JS)
    assert len(checked) > 30, checked
    low = [c for c in checked if c["ratio"] < c["need"]]
    assert not low, f"text below WCAG AA contrast in {scheme} mode: {low}"
    print(f"{scheme}: {len(checked)} texts, lowest ratio {min(c['ratio'] for c in checked)}")
    browser.shot(page, scheme)
