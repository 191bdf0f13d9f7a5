"""Browser tier: the real `imgcls serve` process driven by real headless Chromium (Debian package).

One server for the whole tier serves two models: the embedded efficientnet_lite0 (default) and a
small bundle folder that reuses the same verified ONNX under its own name with made-up English
labels, so the model selector has something real to switch to. Every test gets a fresh browser
context; at teardown each test checks that the page made no request to another host, threw no
uncaught error and logged no console error (CSP violations show up there).

Playwright's predicate helpers (`wait_for_function`) evaluate strings and are blocked by the
page's Content-Security-Policy, so waits use locators, `expect` and `page.evaluate` polling.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from browser_helpers import BUNDLE_NAME, CHROMIUM, MAX_UPLOAD_MB, SHOTS, Browser, launch_chromium  # noqa: E402
from server_helpers import ServerProcess, make_bundle  # noqa: E402  (shared with the integration tier)


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian chromium + chromium-driver "
                    "(scripts/install-system-deps.sh, or `make test` which runs it)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("the playwright Python package is not installed (pip install -e '.[test]')")
    return CHROMIUM


@pytest.fixture(scope="session")
def screenshots_dir(artifacts_dir) -> Path:
    folder = artifacts_dir / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def photos(dev_dir) -> list[Path]:
    """Five dev photos of different classes; the first is the tench (class 0, 丁鲷)."""
    chosen = sorted(dev_dir.glob("*.JPEG"))[::60][:5]
    assert chosen[0].name == "n01440764_tench.JPEG", chosen[0]
    return chosen


@pytest.fixture(scope="session")
def reference(photos, lite0_fp32) -> dict[str, dict]:
    """The engine's own top-1 for each photo (what the CLI prints): {filename: {class_index, label}}."""
    from imgcls.engine import Classifier

    classifier = Classifier("efficientnet_lite0", "fp32")
    try:
        predictions = classifier.predict(list(photos), top_k=1)
    finally:
        classifier.close()
    return {photo.name: p.top[0] for photo, p in zip(photos, predictions)}


@pytest.fixture(scope="session")
def server(chromium, tmp_path_factory, lite0_fp32):
    """`imgcls serve` with efficientnet_lite0 (default) and a bundle, a 2 MB upload cap."""
    bundle = make_bundle(tmp_path_factory.mktemp("bundle"), lite0_fp32, name=BUNDLE_NAME)
    proc = ServerProcess(["--model", "efficientnet_lite0", "--model", str(bundle), "--precision", "fp32",
                          "--max-upload-mb", str(MAX_UPLOAD_MB)], tmp_path_factory.mktemp("browser-server"))
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.terminate()


@pytest.fixture(scope="session")
def chromium_browser(chromium):
    """One headless Chromium for the tier (each test gets a fresh context in it)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = launch_chromium(driver)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_on(request, chromium_browser, screenshots_dir):
    """Factory: browser_on(server) -> a fresh Chromium for this test. At teardown every one is
    checked: no off-site request, no uncaught page error, no unexpected console error."""
    made: list[Browser] = []

    def make(server: ServerProcess) -> Browser:
        b = Browser(chromium_browser, server, screenshots_dir, request.node.name.replace("[", "-").rstrip("]"))
        made.append(b)
        return b

    try:
        yield make
    finally:
        for b in made:
            b.close()
    for b in made:
        assert not b.offsite_requests(), f"requests left the server's origin: {b.offsite_requests()}"
        assert not b.page_errors, f"uncaught page errors: {b.page_errors}"
        unexpected = [m for m in b.console_errors if not any(a in m for a in b.allowed_console)]
        assert not unexpected, f"console errors: {unexpected} (error responses: {b.error_responses})"


@pytest.fixture
def browser(browser_on, server) -> Browser:
    """A fresh Chromium on the shared server."""
    return browser_on(server)


def pytest_terminal_summary(terminalreporter):
    """List the screenshots taken (test artifacts) at the end of the run, even when all passed."""
    if SHOTS:
        terminalreporter.section(f"browser screenshots ({len(SHOTS)})")
        for path in SHOTS:
            terminalreporter.write_line(str(path))
