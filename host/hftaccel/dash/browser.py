"""Serve a dashboard in the background and look at it with Debian's headless chromium.

What the browser test (``tests/dash``) and the README screenshot (``scripts/dash_screenshot.py``)
share: a Dash app served on a free loopback port from a thread, and Playwright driving the
system's ``/usr/bin/chromium`` (no browser download) until every panel has drawn.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import shutil
import threading
import time
from pathlib import Path

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "chromium_missing", "background", "launch",
           "wait_drawn", "Quiet", "open_page", "screenshot"]

#: Debian's chromium.
CHROMIUM = "/usr/bin/chromium"
#: Flags for a headless run in a container without a GPU or a network.
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking")

#: True in the page once every panel's graph holds a drawn figure that is not a placeholder.
_DRAWN = """(panels) => panels.every((p) => {
  const g = document.querySelector('#' + p + '-graph .js-plotly-plot');
  return g && g._fullLayout && g._fullData && g._fullLayout.meta !== 'placeholder' &&
         g.querySelector('.main-svg');
})"""


def chromium_missing() -> str | None:
    """Why the browser cannot run here (None when it can)."""
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install -e '.[dev]')"
    if not Path(CHROMIUM).is_file() and shutil.which("chromium") is None:
        return f"{CHROMIUM} not found (Debian: apt-get install chromium; `make sim-deps` does it)"
    return None


@contextlib.contextmanager
def background(app, host: str = "127.0.0.1", port: int = 0):
    """Serve a Dash app from a thread; yields its URL and stops it on exit.

    Parameters
    ----------
    app : dash.Dash
    host : str
    port : int
        0: any free port.

    Yields
    ------
    str
        ``http://host:port/``.
    """
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    srv = make_server(host, port, app.server, threaded=True)
    th = threading.Thread(target=srv.serve_forever, name="hftaccel-dash", daemon=True)
    th.start()
    try:
        yield f"http://{host}:{srv.server_port}/"
    finally:
        srv.shutdown()
        th.join(timeout=10)


def launch(playwright):
    """Debian's chromium through Playwright, headless (:data:`CHROMIUM_ARGS`).

    Raises
    ------
    RuntimeError
        :func:`chromium_missing` says why it cannot run.
    """
    why = chromium_missing()
    if why:
        raise RuntimeError(why)
    exe = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    return playwright.chromium.launch(executable_path=exe, args=list(CHROMIUM_ARGS))


def wait_drawn(page, panels, timeout_ms: int = 60_000) -> None:
    """Wait until every panel's graph holds a drawn figure (not the "drawing..." placeholder).

    Raises
    ------
    playwright.sync_api.TimeoutError
        Not within ``timeout_ms``.
    """
    page.wait_for_function(_DRAWN, arg=list(panels), timeout=timeout_ms)


class Quiet:
    """Counts the page's Dash callback requests in flight, to wait until the server is done.

    Plotly emits an ``autosize`` relayout shortly after a graph's first plot, which runs the
    window callback again; an interaction made meanwhile would race with it. Attach before
    :meth:`page.goto`.
    """

    def __init__(self, page):
        self.page = page
        self.busy = 0
        self.last = 0.0
        page.on("request", self._start)
        page.on("requestfinished", self._end)
        page.on("requestfailed", self._end)

    @staticmethod
    def _dash(req) -> bool:
        return "/_dash-update-component" in req.url

    def _start(self, req) -> None:
        if self._dash(req):
            self.busy += 1
            self.last = time.monotonic()

    def _end(self, req) -> None:
        if self._dash(req):
            self.busy -= 1
            self.last = time.monotonic()

    def wait(self, quiet_ms: int = 700, timeout_ms: int = 60_000) -> None:
        """Return once no callback request has been in flight for ``quiet_ms``.

        Raises
        ------
        TimeoutError
            Still busy after ``timeout_ms``.
        """
        end = time.monotonic() + timeout_ms / 1e3
        while time.monotonic() < end:
            if self.busy <= 0 and time.monotonic() - self.last >= quiet_ms / 1e3:
                return
            self.page.wait_for_timeout(100)
        raise TimeoutError(f"Dash callbacks still running after {timeout_ms} ms")


def open_page(browser, url: str, panels, *, width: int = 1400, height: int = 1000,
              timeout_ms: int = 90_000):
    """A new page on ``url``, returned once every panel has drawn and the callbacks rest.

    Returns
    -------
    (page, Quiet)
    """
    page = browser.new_page(viewport={"width": width, "height": height})
    quiet = Quiet(page)
    page.goto(url)
    wait_drawn(page, panels, timeout_ms)
    quiet.wait(timeout_ms=timeout_ms)
    return page, quiet


def screenshot(url: str, path: Path, *, width: int = 1400, height: int = 1000,
               timeout_ms: int = 90_000) -> Path:
    """Open ``url`` in headless chromium, wait for every panel, save a full-page PNG.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    RuntimeError
        No chromium or no Playwright here.
    """
    from playwright.sync_api import sync_playwright

    from .figures import PANELS

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page, _ = open_page(browser, url, PANELS, width=width, height=height,
                                timeout_ms=timeout_ms)
            page.screenshot(path=str(path), full_page=True)
        finally:
            browser.close()
    return path
