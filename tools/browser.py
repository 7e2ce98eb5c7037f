"""Debian's Chromium, headless, driven by Playwright, with the network cut off: for pages that must work offline.

Playwright drives the system browser (`executable_path`); it never downloads one. Every request
the page makes is recorded, and any that leaves the file system (or, for a page served on this
machine, its own origin) is refused, so a page that needs the network shows it: its charts stay
blank and `OfflinePage.external_requests` names the URLs.
"""

import contextlib
import dataclasses
import itertools
import os
import shutil
from pathlib import Path

from stages.errors import SourceError

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
# Rendered marks of a Vega-Embed chart: a canvas (the default renderer) or an SVG's marks group.
CHART_SELECTOR = ".vega-embed canvas, .vega-embed svg.marks"


def chromium_path() -> str:
    """The system's Chromium: $CHROMIUM, or the first of CHROMIUM_NAMES on PATH.

    Raises:
        SourceError: none is installed.
    """
    found = os.environ.get("CHROMIUM") or next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    if not found:
        raise SourceError("chromium: not found on PATH; expected Debian's package (apt-get install -y chromium)")
    return found


@dataclasses.dataclass
class OfflinePage:
    page: object
    # What the page may load: local files, inline data, its own blobs, and the origin that served it.
    allowed: tuple[str, ...] = ("file://", "data:", "blob:")
    requests: list[str] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)

    @property
    def external_requests(self) -> list[str]:
        return [url for url in self.requests if not url.startswith(self.allowed)]

    def wait_for_charts(self, count: int, timeout_ms: float = 30_000) -> None:
        """Waits until `count` charts have rendered marks and every image has loaded (or failed).

        Raises:
            AssertionError: they did not within the timeout; the message names what the page asked
                of the network and the errors it logged, the usual causes.
        """
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        ready = """count => document.querySelectorAll(selector).length >= count
                             && [...document.images].every(image => image.complete)"""
        try:
            self.page.wait_for_function(ready.replace("selector", repr(CHART_SELECTOR)), arg=count, timeout=timeout_ms)
        except PlaywrightTimeout:
            drawn = self.page.evaluate(f"document.querySelectorAll({CHART_SELECTOR!r}).length")
            raise AssertionError(
                f"{drawn} of {count} charts rendered in {timeout_ms / 1000:.0f} s; requests refused: "
                f"{self.external_requests}; page errors: {self.errors}"
            ) from None

    def chart_ink(self) -> list[dict]:
        """Per chart: its container's id and how many of its pixels are not background (0: blank)."""
        return self.page.evaluate(
            """selector => [...document.querySelectorAll(selector)].map(chart => {
                const id = chart.closest('div[id]')?.id ?? '';
                if (chart.tagName.toLowerCase() === 'svg')
                    return {id, ink: chart.querySelectorAll('path, rect, text, line').length};
                const pixels = chart.getContext('2d').getImageData(0, 0, chart.width, chart.height).data;
                let ink = 0;
                for (let i = 0; i < pixels.length; i += 4)
                    if (pixels[i + 3] > 0 && (pixels[i] < 250 || pixels[i + 1] < 250 || pixels[i + 2] < 250)) ink++;
                return {id, ink};
            })""",
            CHART_SELECTOR,
        )

    def draw(self, selector: str, strokes: list[list[tuple[float, float]]], touch: bool = False) -> None:
        """Draws `strokes` on the element `selector`, each a list of points 0 to 1 across it: with the mouse,
        or with a finger (touch events through Chromium's DevTools protocol; the page must be opened with
        touch=True)."""
        box = self.page.locator(selector).bounding_box()
        finger = self.page.context.new_cdp_session(self.page) if touch else None
        for stroke in strokes:
            points = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke]
            path = [points[0]] + [
                (start[0] + (end[0] - start[0]) * step / 8, start[1] + (end[1] - start[1]) * step / 8)
                for start, end in itertools.pairwise(points)
                for step in range(1, 9)
            ]
            if finger:
                for kind, (x, y) in [("touchStart", path[0]), *[("touchMove", point) for point in path[1:]]]:
                    finger.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [{"x": x, "y": y}]})
                finger.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
                continue
            self.page.mouse.move(*path[0])
            self.page.mouse.down()
            for point in path[1:]:
                self.page.mouse.move(*point)
            self.page.mouse.up()

    def image_widths(self) -> dict[str, int]:
        return self.page.evaluate("() => Object.fromEntries([...document.images].map(i => [i.src, i.naturalWidth]))")


@contextlib.contextmanager
def offline_page(address: Path | str, width: int = 1400, touch: bool = False):
    """Opens `address` in headless Chromium with every other request refused: a local page (a path), or a
    page served on this machine (an http://127.0.0.1:PORT/ URL), which may also reach its own origin.
    With `touch`, the page sees a touch screen, as on a phone."""
    from urllib.parse import urlsplit

    from playwright.sync_api import sync_playwright

    if isinstance(address, Path):
        url, allowed = address.resolve().as_uri(), OfflinePage.allowed
    else:
        parts = urlsplit(address)
        if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise SourceError(f"{address}: expected a page on this machine, http://127.0.0.1:PORT/")
        url, allowed = address, (*OfflinePage.allowed, f"http://{parts.netloc}/")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": 900}, has_touch=touch)
            opened = OfflinePage(page, allowed)

            def route(handle) -> None:
                opened.requests.append(handle.request.url)
                if handle.request.url.startswith(allowed):
                    handle.continue_()
                else:
                    handle.abort()

            page.route("**/*", route)
            page.on("console", lambda message: opened.errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: opened.errors.append(str(error)))
            page.goto(url)
            yield opened
        finally:
            browser.close()
