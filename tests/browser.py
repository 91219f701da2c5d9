"""Headless Chromium from the distribution, driven by Playwright, for the console's tests.

``open_console`` gives a page of one server in a fresh browser context (no cookies, no
storage) that records every request the page makes, so a test can check that none went
to another host, and every uncaught script error; its screenshots are numbered in the
order they were taken under the test's temporary directory.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from system_packages import missing_reason

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, ViewportSize

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 15_000  # longest wait for anything on the page (a loaded machine is slow)
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}


def browser_missing() -> str | None:
    """Why no browser test can run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    return missing_reason([CHROMIUM], ["chromium"])


@contextmanager
def launched() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS,
                                             headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Console:
    page: Page
    base: str  # http://127.0.0.1:PORT
    shots: Path
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    taken: int = 0

    def open(self, path: str = "/") -> None:
        self.page.goto(self.base + path)

    def screenshot(self, name: str, *, full_page: bool = False) -> Path:
        self.taken += 1
        path = self.shots / f"{self.taken:02d}-{name}.png"
        self.page.screenshot(path=path, full_page=full_page)
        return path

    def foreign_requests(self) -> list[str]:
        """Requests to anything but this server (data: URLs are no request)."""
        own = urllib.parse.urlsplit(self.base)
        return [url for url in self.requests if not url.startswith("data:")
                and urllib.parse.urlsplit(url)[:2] != own[:2]]

    def row_ids(self) -> list[int]:
        ids = self.page.locator("#results tbody tr").evaluate_all(
            "rows => rows.map(r => Number(r.dataset.rowId))")
        return [int(i) for i in ids]

    def query(self) -> dict[str, list[str]]:
        return urllib.parse.parse_qs(urllib.parse.urlsplit(self.page.url).query)


@contextmanager
def open_console(browser: Browser, port: int, shots: Path, *, viewport: ViewportSize = DESKTOP,
                 color_scheme: Literal["light", "dark"] = "light",
                 scheme: Literal["http", "https"] = "http") -> Iterator[Console]:
    """A page of the server on 127.0.0.1:port; with scheme https, any certificate is taken
    (the tests' own CA is not the browser's)."""
    shots.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport=viewport, color_scheme=color_scheme,
                                  timezone_id="UTC", locale="en-GB",
                                  ignore_https_errors=scheme == "https")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    console = Console(page, f"{scheme}://127.0.0.1:{port}", shots)
    page.on("request", lambda request: console.requests.append(request.url))
    page.on("pageerror", lambda error: console.errors.append(str(error)))
    try:
        yield console
    finally:
        context.close()
