"""Adding images to the page (file input, drag and drop, keyboard) and reading their results."""

from __future__ import annotations

import base64

import pytest
from browser_helpers import BUNDLE_NAME, card, card_top, classify_all
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def check_cards_match_engine(page, photos, reference) -> None:
    """Every card shows 5 labelled bars, sorted, and its top-1 is the engine's top-1."""
    for photo in photos:
        rows = card_top(page, photo.name)
        assert len(rows) == 5, (photo.name, rows)
        assert all(r["label"].strip() for r in rows)
        scores = [float(r["score"].lstrip("<").rstrip("%")) for r in rows]
        assert scores == sorted(scores, reverse=True), (photo.name, scores)
        # The first bar is drawn to its score (within a pixel's rounding), the rest no longer.
        assert rows[0]["width"] == pytest.approx(scores[0], abs=1.5), rows[0]
        assert rows[0]["width"] >= max(r["width"] for r in rows)
        assert rows[0]["label"] == reference[photo.name]["label"], (photo.name, rows[0], reference[photo.name])
        meta = card(page, photo.name).locator(".card-meta")
        expect(meta).to_contain_text("efficientnet_lite0")
        expect(meta).to_contain_text(" ms")
        expect(card(page, photo.name).get_by_test_id("input-report")).to_contain_text("JPEG")


def test_file_input_shows_bars_and_engine_top1(browser, photos, reference):
    page = browser.open("/")
    browser.shot(page, "1-empty")
    page.get_by_test_id("file-input").set_input_files([str(p) for p in photos])
    expect(page.locator("[data-testid=result-card][data-status=pending]")).to_have_count(len(photos))
    # Thumbnails preview before anything is sent.
    expect(page.locator("[data-testid=result-card] img.thumb")).to_have_count(len(photos))
    assert page.locator("img.thumb").first.evaluate("(img) => img.complete && img.naturalWidth > 0")
    expect(page.get_by_test_id("classify-button")).to_have_text(f"Classify {len(photos)} images")
    browser.shot(page, "2-pending")

    classify_all(page, len(photos))
    expect(page.locator("[data-testid=result-card][data-status=done]")).to_have_count(len(photos))
    check_cards_match_engine(page, photos, reference)
    expect(page.locator("#results-summary")).to_have_text(f"{len(photos)} images · {len(photos)} classified")
    expect(page.get_by_test_id("progress")).to_contain_text(f"{len(photos)} classified, 0 failed")
    browser.shot(page, "3-results")

    # Changing how many results per image marks the cards stale and re-classifies on demand.
    page.get_by_test_id("topk-select").select_option("3")
    expect(page.locator("[data-testid=result-card].is-stale")).to_have_count(len(photos))
    classify_all(page, len(photos))
    expect(page.locator("[data-testid=result-card].is-stale")).to_have_count(0)
    assert len(card_top(page, photos[0].name)) == 3


def test_synthetic_drop_adds_and_classifies(browser, photos, reference):
    page = browser.open("/")
    chosen = photos[1:3]
    payload = [{"name": p.name, "b64": base64.b64encode(p.read_bytes()).decode()} for p in chosen]
    # A DataTransfer holding real Files built in the page from the photos' bytes.
    transfer = page.evaluate_handle("""(files) => {
        const dt = new DataTransfer();
        for (const f of files) {
            const bytes = Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0));
            dt.items.add(new File([bytes], f.name, { type: 'image/jpeg' }));
        }
        return dt;
    }""", payload)
    zone = page.get_by_test_id("drop-zone")
    zone.dispatch_event("dragenter", {"dataTransfer": transfer})
    zone.dispatch_event("dragover", {"dataTransfer": transfer})
    expect(zone).to_have_class("drop-zone is-dragging")
    expect(zone.locator(".drop-active")).to_be_visible()
    browser.shot(page, "1-dragging", full_page=False)
    zone.dispatch_event("drop", {"dataTransfer": transfer})
    expect(zone).not_to_have_class("drop-zone is-dragging")
    expect(page.get_by_test_id("result-card")).to_have_count(len(chosen))

    classify_all(page, len(chosen))
    check_cards_match_engine(page, chosen, reference)
    browser.shot(page, "2-results")

    # Pasting files (e.g. a screenshot from the clipboard) adds them the same way.
    pasted = photos[3]
    page.evaluate("""(f) => {
        const dt = new DataTransfer();
        dt.items.add(new File([Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0))], f.name, { type: 'image/jpeg' }));
        document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true }));
    }""", {"name": pasted.name, "b64": base64.b64encode(pasted.read_bytes()).decode()})
    expect(page.get_by_test_id("result-card")).to_have_count(len(chosen) + 1)
    classify_all(page, len(chosen) + 1)
    check_cards_match_engine(page, [pasted], reference)


def test_keyboard_only_flow(browser, photos, reference):
    page = browser.open("/")
    # Subscribing turns on Playwright's file-chooser interception; doing it now, not inside
    # expect_file_chooser, avoids a race with the key press that opens the chooser.
    page.on("filechooser", lambda chooser: None)
    # Tab from the top of the page until the drop zone has focus; it must be reachable quickly.
    for presses in range(1, 16):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.dataset.testid") == "drop-zone":
            break
    else:
        pytest.fail("the drop zone is not reachable with Tab")
    focus_ring = page.get_by_test_id("drop-zone").evaluate(
        "(el) => { const s = getComputedStyle(el); return {style: s.outlineStyle, width: s.outlineWidth}; }")
    assert focus_ring["style"] != "none" and focus_ring["width"] != "0px", f"no visible focus ring: {focus_ring}"
    browser.shot(page, "1-dropzone-focused", full_page=False)

    with page.expect_file_chooser() as chooser_info:
        page.keyboard.press("Enter")
    chooser = chooser_info.value
    assert chooser.is_multiple()
    chooser.set_files([str(p) for p in photos[:2]])
    expect(page.get_by_test_id("result-card")).to_have_count(2)

    # On to Classify with Tab, start it with Enter.
    for _ in range(10):
        if page.evaluate("() => document.activeElement.dataset.testid") == "classify-button":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.dataset.testid") == "classify-button"
    page.keyboard.press("Enter")
    expect(page.locator("[data-testid=result-card][data-status=done]")).to_have_count(2, timeout=60_000)
    assert card_top(page, photos[0].name)[0]["label"] == reference[photos[0].name]["label"]
    browser.shot(page, "2-results")

    # The language toggle works from the keyboard too (Space on a focused button).
    page.get_by_test_id("lang-toggle").focus()
    page.keyboard.press("Space")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")


def test_model_selector_lists_served_models(browser, photos, reference):
    page = browser.open("/")
    select = page.get_by_test_id("model-select")
    values = select.locator("option").evaluate_all("(opts) => opts.map((o) => o.value)")
    assert values == ["efficientnet_lite0", BUNDLE_NAME]
    assert select.input_value() == "efficientnet_lite0"  # the server's default is preselected
    expect(page.locator("#model-info")).to_contain_text("1,000 classes")
    expect(page.locator("#model-info")).to_contain_text("中文")

    select.select_option(BUNDLE_NAME)
    expect(page.locator("#model-info")).not_to_contain_text("中文")
    tench = photos[0]
    page.get_by_test_id("file-input").set_input_files([str(tench)])
    classify_all(page, 1)
    # The bundle reuses the same network, so its top-1 is the same class under the bundle's name.
    top = card_top(page, tench.name)
    assert top[0]["label"] == f"bundle class {reference[tench.name]['class_index']}"
    expect(card(page, tench.name).locator(".meta-model")).to_have_text(BUNDLE_NAME)

    # The bundle has no Chinese names: in 中文 the UI says so and keeps English labels.
    page.get_by_test_id("lang-toggle").click()
    expect(page.get_by_test_id("lang-fallback")).to_be_visible()
    expect(card(page, tench.name).locator(".card-note")).to_contain_text("中文")
    assert card_top(page, tench.name)[0]["lang"] == "en"
    browser.shot(page, "bundle-zh-fallback")

    # The choice is remembered across a reload.
    page.reload()
    page.locator(f"[data-testid=model-select] option[value='{BUNDLE_NAME}']").wait_for(state="attached")
    expect(select).to_have_value(BUNDLE_NAME)


def test_formats_the_browser_cannot_draw_get_the_servers_thumbnail(browser, photos, reference, tmp_path):
    """Chromium draws neither HEIC, TIFF nor JPEG 2000: the card starts with "No preview", then
    shows the thumbnail the server made while classifying (classify's `preview` parameter),
    upright and at most 320 px. A JPEG in the same chunk keeps its local thumbnail."""
    import pillow_heif  # the `heic` extra (installed by make test)
    from PIL import Image

    pillow_heif.register_heif_opener()
    tench = photos[0]
    picture = Image.open(tench).convert("RGB")
    files = []
    for suffix, fmt in ((".heic", "HEIF"), (".tif", "TIFF"), (".jp2", "JPEG2000")):
        path = tmp_path / f"{tench.stem}{suffix}"
        picture.save(path, fmt)
        files.append(path)
    page = browser.open("/")
    page.get_by_test_id("file-input").set_input_files([str(p) for p in files] + [str(photos[1])])
    expect(page.locator("[data-testid=result-card] .thumb-none")).to_have_count(len(files))
    classify_all(page, len(files) + 1)
    for path in files:
        shown = card(page, path.name).get_by_test_id("server-preview")
        expect(shown).to_have_count(1)
        size = shown.evaluate("(img) => img.decode().then(() => [img.naturalWidth, img.naturalHeight])")
        assert size == [320, round(320 * picture.height / picture.width)], (path.name, size)
        assert card_top(page, path.name)[0]["label"] == reference[tench.name]["label"], path.name
    expect(page.locator("[data-testid=result-card] .thumb-none")).to_have_count(0)
    local = card(page, photos[1].name).locator("img.thumb")
    assert local.get_attribute("src").startswith("blob:")
    browser.shot(page, "server-previews")
