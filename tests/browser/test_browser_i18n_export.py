"""中文 / English switching, and the CSV and JSON exports read back from real downloads."""

from __future__ import annotations

import csv
import io
import json

import pytest
from browser_helpers import file_payload, card, card_top, classify_all
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

CSV_HEADER = ["filename", "model", "rank", "class_index", "label", "score", "error"]


def test_switch_to_chinese_and_back(browser, photos):
    page = browser.open("/")
    tench = photos[0]
    page.get_by_test_id("file-input").set_input_files([str(tench), str(photos[1])])
    classify_all(page, 2)
    assert card_top(page, tench.name)[0]["label"] == "tench"
    expect(page.locator("#results-heading")).to_have_text("Results")

    page.get_by_test_id("lang-toggle").click()
    # Labels come from /api/v1/labels?lang=zh: no re-classification needed.
    expect(card(page, tench.name).get_by_test_id("label").first).to_have_text("丁鲷")
    top = card_top(page, tench.name)
    assert top[0]["lang"] == "zh-CN"
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in row["label"]) for row in card_top(page, photos[1].name))
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.locator("#results-heading")).to_have_text("识别结果")
    expect(page.get_by_test_id("drop-zone").locator(".drop-title")).to_have_text("将图片拖放到这里，或选择文件")
    expect(page.get_by_test_id("export-csv")).to_have_text("导出 CSV")
    expect(page.get_by_test_id("lang-toggle")).to_have_text("EN")
    expect(page.get_by_test_id("server-status")).to_contain_text("就绪")
    expect(page.locator("#results-summary")).to_have_text("共 2 张 · 成功 2 张")
    assert page.title() == "imgcls — 图像分类"
    assert page.locator("[data-testid=result-card].is-stale").count() == 0  # a language switch is not stale
    browser.shot(page, "zh")

    # New images classified while in 中文 come back in Chinese from the server itself.
    page.get_by_test_id("file-input").set_input_files([str(photos[2])])
    expect(page.get_by_test_id("classify-button")).to_have_text("识别 1 张图片")
    classify_all(page, 3)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in card_top(page, photos[2].name)[0]["label"])

    # The choice survives a reload (stored in the browser), and switching back restores English.
    page.reload()
    page.locator("body[data-ready=true]").wait_for(state="attached")
    expect(page.locator("#results-heading")).to_have_text("识别结果")
    page.get_by_test_id("lang-toggle").click()
    expect(page.locator("#results-heading")).to_have_text("Results")
    expect(page.locator("html")).to_have_attribute("lang", "en")


def test_export_csv_and_json(browser, photos, reference):
    page = browser.open("/", host="localhost")  # the other name a newcomer may type
    chosen = photos[:3]
    page.get_by_test_id("file-input").set_input_files(
        [file_payload(p) for p in chosen] + [{"name": "empty.jpg", "mimeType": "image/jpeg", "buffer": b""}])
    classify_all(page, 4)
    page.get_by_test_id("lang-toggle").click()  # export in Chinese: labels remapped, not re-requested
    expect(card(page, chosen[0].name).get_by_test_id("label").first).to_have_text("丁鲷")

    with page.expect_download() as download_info:
        page.get_by_test_id("export-csv").click()
    download = download_info.value
    assert download.suggested_filename.startswith("imgcls-results-") and download.suggested_filename.endswith(".csv")
    raw = open(download.path(), "rb").read()
    assert raw.startswith(b"\xef\xbb\xbf"), "CSV must start with a UTF-8 BOM (for Excel)"
    text = raw.decode("utf-8-sig")
    assert "\r\n" in text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == CSV_HEADER
    body = [dict(zip(CSV_HEADER, r)) for r in rows[1:]]
    ok = [r for r in body if not r["error"]]
    assert len(ok) == 5 * len(chosen)  # top-k rows per image
    for photo in chosen:
        mine = [r for r in ok if r["filename"] == photo.name]
        assert [r["rank"] for r in mine] == ["1", "2", "3", "4", "5"]
        assert int(mine[0]["class_index"]) == reference[photo.name]["class_index"]
        assert {r["model"] for r in mine} == {"efficientnet_lite0"}
        scores = [float(r["score"]) for r in mine]
        assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1
    assert [r["label"] for r in ok if r["filename"] == chosen[0].name][0] == "丁鲷"
    errors = [r for r in body if r["error"]]
    assert [(r["filename"], r["error"]) for r in errors] == [("empty.jpg", "empty_file")]
    print(f"csv export: {len(rows)} lines, e.g. {rows[1]}")

    with page.expect_download() as download_info:
        page.get_by_test_id("export-json").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".json")
    data = json.loads(open(download.path(), encoding="utf-8").read())
    assert data["lang"] == "zh"
    by_name = {r["filename"]: r for r in data["results"]}
    assert set(by_name) == {p.name for p in chosen} | {"empty.jpg"}
    tench = by_name[chosen[0].name]
    assert tench["top"][0] == {**tench["top"][0], "rank": 1, "class_index": 0, "label": "丁鲷"}
    assert tench["model"] == "efficientnet_lite0" and tench["precision"] == "fp32"
    assert tench["input"]["format"] == "JPEG" and tench["input"]["width"] == 500
    assert tench["timing_ms"]["total"] > 0
    assert by_name["empty.jpg"]["error"]["code"] == "empty_file"
    assert by_name["empty.jpg"]["error"]["text"] == "文件是空的。"
    browser.shot(page, "after-export")
