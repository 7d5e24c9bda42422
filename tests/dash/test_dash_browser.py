"""The dashboard in a real browser: Debian's chromium, headless, driven by Playwright.

The page is served from the AMZN run (and a 4-symbol synthetic run for the symbol picker);
every panel must draw, the plotted best bid / offer must equal the book records, and changing
the symbol, the time window (zoom, brush) and playing must redraw the panels.
"""

import re

import numpy as np
import pyarrow.parquet as pq
import pytest

pytest.importorskip("dash", reason="the [dash] extra is not installed")

from hftaccel.dash.browser import background, chromium_missing, launch, open_page, \
    wait_drawn  # noqa: E402

_missing = chromium_missing()
pytestmark = pytest.mark.skipif(bool(_missing), reason=f"no browser: {_missing}")

from hftaccel.dash.app import create_app, parse_axis_time  # noqa: E402
from hftaccel.dash.data import Run  # noqa: E402
from hftaccel.dash.figures import PANELS  # noqa: E402

TIMED = ("price", "flow", "risk", "routing", "pipeline")       # panels over the time window

#: A panel's figure as Plotly holds it in the page (after decoding the typed arrays).
FIGURE = """(id) => {
  const g = document.querySelector('#' + id + '-graph .js-plotly-plot');
  const arr = (a) => (a && a.length !== undefined ? Array.from(a) : null);
  return {title: g._fullLayout.title.text, range: g._fullLayout.xaxis.range,
          traces: g._fullData.map((t) => ({name: t.name, type: t.type, x: arr(t.x),
                                           y: arr(t.y), customdata: arr(t.customdata)}))};
}"""


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture(scope="module")
def amzn_url(amzn_run, latency_json):
    with background(create_app(Run(amzn_run, latency=latency_json), log=print)) as url:
        yield url


@pytest.fixture(scope="module")
def synth_url(synth_run, latency_json):
    with background(create_app(Run(synth_run, latency=latency_json), log=print)) as url:
        yield url


@pytest.fixture(scope="module")
def book(amzn_run):
    t = pq.read_table(amzn_run / "book.parquet", columns=["timestamp", "seq", "bid_price_1",
                                                          "ask_price_1"])
    return {c: t.column(c).to_numpy() for c in t.column_names}


def _open(browser, url):
    page, quiet = open_page(browser, url, PANELS)
    page.quiet = quiet
    return page


def _trace(fig, name):
    return next(t for t in fig["traces"] if t["name"] and t["name"].startswith(name))


def _status_change(page, before):
    page.wait_for_function("(s) => document.querySelector('#status').innerText !== s",
                           arg=before, timeout=30_000)
    wait_drawn(page, PANELS)
    # the figures came in the same response as the status: let Plotly finish drawing them
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => "
                  "requestAnimationFrame(() => r(true))))")
    page.quiet.wait()
    return page.inner_text("#status")


def _until(page, ok, timeout_s=30.0):
    for _ in range(int(timeout_s * 10)):
        if ok():
            return
        page.wait_for_timeout(100)
    assert ok()


def _window(fig):
    return tuple(parse_axis_time(v) for v in fig["range"])


def _usd(p):
    return p / 10_000 if p > 0 else None


def test_amzn_page_bbo_equals_the_book(browser, amzn_url, book, tmp_path):
    page = _open(browser, amzn_url)
    assert page.inner_text("#problems") == ""
    assert "AMZN" in page.inner_text("#symbol")
    ts = book["timestamp"].astype(np.int64)
    figs = {p: page.evaluate(FIGURE, p) for p in PANELS}
    for p in PANELS:
        assert figs[p]["traces"], p
    assert "fills" in figs["routing"]["title"] and "tick-to-trade" in figs["latency"]["title"]
    price = figs["price"]
    bid, ask = _trace(price, "best bid"), _trace(price, "best offer")
    assert "M4" in bid["name"]             # the whole day is thinned: every point is a record
    by_seq = {int(s): i for i, s in enumerate(book["seq"])}
    x = np.array(bid["x"])
    for hms in (36_000, 43_200, 54_000):                  # 10:00, 12:00, 15:00
        k = int(np.argmin(np.abs(x - hms * 1e3)))
        i = by_seq[int(bid["customdata"][k])]
        assert x[k] == ts[i] / 1e6 and ask["x"][k] == ts[i] / 1e6
        assert bid["y"][k] == _usd(book["bid_price_1"][i])
        assert ask["y"][k] == _usd(book["ask_price_1"][i])

    # zoom to 20 s of 12:00 as a drag on the price panel would: nothing is thinned there, so
    # the plotted step line at any time is the book as it stood then
    before = page.inner_text("#status")
    page.evaluate("""() => Plotly.relayout(document.querySelector('#price-graph .js-plotly-plot'),
                     {'xaxis.range': ['1970-01-01 12:00:00', '1970-01-01 12:00:20']})""")
    status = _status_change(page, before)
    assert "12:00:00.000 - 12:00:20.000" in status
    figs = {p: page.evaluate(FIGURE, p) for p in PANELS}
    for p in TIMED:
        assert _window(figs[p]) == (43_200 * 10**9, 43_220 * 10**9), p
    bid, ask = _trace(figs["price"], "best bid"), _trace(figs["price"], "best offer")
    assert "M4" not in bid["name"]
    for t in (43_203_300_000_000, 43_209_900_000_000, 43_217_100_000_000):
        i = int(np.searchsorted(ts, t, side="right")) - 1     # the book's last record <= t
        assert ts[i] < t and (i + 1 == ts.size or ts[i + 1] > t)
        k = int(np.searchsorted(np.array(bid["x"]), t / 1e6, side="right")) - 1
        assert bid["y"][k] == _usd(book["bid_price_1"][i]), t
        assert ask["y"][k] == _usd(book["ask_price_1"][i]), t
        assert int(bid["customdata"][k]) == int(book["seq"][i])
    shot = tmp_path / "dash_amzn.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000
    print(f"screenshot: {shot}")
    page.close()


def test_symbol_window_and_play_redraw_the_panels(browser, synth_url, synth_run):
    page = _open(browser, synth_url)
    first = page.evaluate(FIGURE, "price")
    name0 = first["title"].split(":")[0]
    # symbol picker: the third most active symbol
    page.click("#symbol")
    option = page.get_by_role("option", name=re.compile(r"^SYM00002"))
    before = page.inner_text("#status")
    option.click()
    status = _status_change(page, before)
    figs = {p: page.evaluate(FIGURE, p) for p in PANELS}
    for p in ("price", "flow", "risk", "routing"):
        assert figs[p]["title"].startswith("SYM00002:"), p
    assert name0 != "SYM00002"
    rows = Run(synth_run).symbols()
    n = next(c for loc, name, c in rows if name == "SYM00002")
    assert f"{n:,} book updates of the symbol" in status

    # time window: drag a zoom box over the middle of the price panel
    box = page.locator("#price-graph .nsewdrag").first.bounding_box()
    y = box["y"] + box["height"] / 2
    before = status
    page.mouse.move(box["x"] + 0.3 * box["width"], y)
    page.mouse.down()
    page.mouse.move(box["x"] + 0.5 * box["width"], y, steps=8)
    page.mouse.move(box["x"] + 0.6 * box["width"], y, steps=8)
    page.mouse.up()
    _status_change(page, before)
    full = _window(first)
    zoom = {p: _window(page.evaluate(FIGURE, p)) for p in TIMED if p != "routing"}  # unrouted
    w = zoom["price"]
    assert full[0] < w[0] < w[1] < full[1]
    assert 0.2 < (w[1] - w[0]) / (full[1] - full[0]) < 0.4
    assert all(v == w for v in zoom.values()), zoom

    # play as fast as possible: the window steps forward by its width until the end
    page.click("#speed")
    page.get_by_role("option", name="as fast as possible").click()
    page.click("#play")
    page.wait_for_function("""(r0) => document.querySelector('#price-graph .js-plotly-plot')
                              ._fullLayout.xaxis.range[0] !== r0""",
                           arg=page.evaluate(FIGURE, "price")["range"][0], timeout=30_000)
    moved = _window(page.evaluate(FIGURE, "price"))
    assert moved[0] > w[0] and moved[1] - moved[0] == pytest.approx(w[1] - w[0], rel=1e-6)
    _until(page, lambda: _window(page.evaluate(FIGURE, "price"))[1] == full[1])
    page.wait_for_function("() => document.querySelector('#play').innerText === 'play'",
                           timeout=30_000)                          # stopped at the end

    # brush: "full day" puts the whole run back
    before = page.inner_text("#status")
    page.click("#reset")
    _status_change(page, before)
    assert _window(page.evaluate(FIGURE, "price")) == full
    page.close()


def test_partial_run_folder_is_named_in_the_page(browser, amzn_run, tmp_path):
    import shutil

    shutil.copy(amzn_run / "book.parquet", tmp_path / "book.parquet")
    (tmp_path / "summary.json").write_text("{\"cut short")
    with background(create_app(Run(tmp_path), log=print)) as url:
        page = _open(browser, url)
        problems = page.inner_text("#problems")
        assert str(tmp_path / "signals.parquet") in problems
        assert str(tmp_path / "summary.json") in problems and "unreadable" in problems
        flow = page.evaluate(FIGURE, "flow")
        assert not flow["traces"] or "signals" in page.inner_text("#flow-graph")
        assert _trace(page.evaluate(FIGURE, "price"), "best bid")["x"]      # still drawn
        page.close()


def test_follow_tails_a_live_run(browser, synth_run, tmp_path):
    import json

    from hftaccel.dash.live import LiveWriter

    book = pq.read_table(synth_run / "book.parquet")
    sig = pq.read_table(synth_run / "signals.parquet")
    n = book.num_rows
    w = LiveWriter(tmp_path / "live", rows_per_part=n // 4 + 1)
    w.append(book.slice(0, n // 2), sig.slice(0, n // 2))
    with background(create_app(Run(tmp_path / "live"), follow=True, log=print)) as url:
        page = _open(browser, url)
        assert "live run: writing, 2 parts" in page.inner_text("#facts")
        first = _window(page.evaluate(FIGURE, "price"))
        w.append(book.slice(n // 2), sig.slice(n // 2))
        w.finish(json.loads((synth_run / "summary.json").read_text()),
                 (synth_run / "orders.ouch").read_bytes())
        page.wait_for_function("() => document.querySelector('#facts').innerText"
                               ".includes('live run: done')", timeout=30_000)
        done = Run(synth_run)
        loc, name, rows = done.symbols()[0]
        page.wait_for_function("(s) => document.querySelector('#status').innerText.includes(s)",
                               arg=f": {rows:,} book updates of the symbol", timeout=30_000)
        last = _window(page.evaluate(FIGURE, "price"))
        full = done.span()
        assert abs(last[1] - full[1]) < 10**6 and abs(first[0] - full[0]) < 10**6
        assert first[1] < full[1] - 10**6                      # the window followed the end
        page.close()
