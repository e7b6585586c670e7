"""The HTML report opened in a real browser (Chromium through playwright): it loads nothing
but itself, runs without errors, shows its tables and images, and prints to A4.

Skips when playwright or /usr/bin/chromium is missing (scripts/setup.sh installs Chromium
when it runs as root). Set METABENCH_SCREENSHOT=PATH to keep a full-page screenshot.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from test_report_html import ALGORITHMS, SHOTS, XSS, run_tiny_comparison, small_figure

from metabench.reports.html import write_report
from metabench.reports.leaderboard import build_report_data
from metabench.reports.plots import draw

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT_ENV = "METABENCH_SCREENSHOT"

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


def require_browser() -> None:
    """Skip, saying why, when playwright or Chromium is missing (never download a browser)."""
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("playwright is not installed: pip install -e '.[dev]'")
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (scripts/setup.sh does it as root)")


def write_demo_report(folder: Path) -> Path:
    """A report of the tiny comparison, with every registered plot and one more figure."""
    data = build_report_data([run_tiny_comparison(folder / "results")])
    figures = {**draw(data), "demo": small_figure()}
    return write_report(data, folder / "report.html", figures=figures)


class Recorder:
    """Every request the page makes (allowing only the report and data: URIs) and every
    console message, page error and dialog."""

    def __init__(self, allowed: str) -> None:
        self.allowed = allowed
        self.requests: list[str] = []
        self.console: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []

    def route(self, route: Any) -> None:
        url = route.request.url
        self.requests.append(url)
        if self.is_allowed(url):
            route.continue_()
        else:
            route.abort()

    def is_allowed(self, url: str) -> bool:
        return url.split("#", 1)[0] == self.allowed or url.startswith("data:")

    def dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def attach(self, context: Any, page: Any) -> None:
        context.route("**/*", self.route)
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("console", lambda message: self.console.append((message.type, message.text)))
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("dialog", self.dialog)


def test_report_in_chromium(tmp_path):
    require_browser()
    from playwright.sync_api import sync_playwright

    report = write_demo_report(tmp_path)
    url = report.resolve().as_uri()
    recorder = Recorder(url)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            recorder.attach(context, page)
            page.goto(url, wait_until="load")
            check_page(page)
            save_screenshots(page, tmp_path)
            page.emulate_media(media="print")
            page.pdf(path=str(tmp_path / "report.pdf"), prefer_css_page_size=True)
        finally:
            browser.close()

    assert recorder.requests and url in recorder.requests
    assert [u for u in recorder.requests if not recorder.is_allowed(u)] == []
    assert [text for kind, text in recorder.console if kind == "error"] == []
    assert recorder.errors == [] and recorder.dialogs == []  # an unescaped <script> would alert
    assert (tmp_path / "report.pdf").read_bytes().startswith(b"%PDF")


def check_page(page: Any) -> None:
    """Leaderboards with the expected rows, loaded images, no scripts."""
    assert page.locator("script").count() == 0
    boards = page.locator("table.leaderboard")
    assert boards.count() == len(SHOTS)
    ranked = sorted(name for name in ALGORITHMS if name in ("protonet", XSS))
    for i in range(boards.count()):
        names = boards.nth(i).locator("tbody td.algorithm").all_inner_texts()
        assert sorted(name.strip() for name in names) == ranked
    images = page.eval_on_selector_all(
        "img", "imgs => imgs.map(i => ({complete: i.complete, width: i.naturalWidth, src: i.src}))")
    assert images, "the report has no images"
    for image in images:
        assert image["src"].startswith("data:image/")
        assert image["complete"] and image["width"] > 0, image["src"][:40]
    problems = page.locator("table.problems tbody tr").all_inner_texts()
    assert any("bad <b>input</b>" in row for row in problems)


def save_screenshots(page: Any, folder: Path) -> None:
    """A full-page screenshot in the test's folder, and at $METABENCH_SCREENSHOT when set."""
    shot = folder / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0
    target = os.environ.get(SCREENSHOT_ENV)
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)
