"""What the panels plot, checked against the run's files: prices in USD, features in real
units, rejections and fills as the summary counts them."""

import numpy as np
import pyarrow.parquet as pq
import pytest

pytest.importorskip("plotly", reason="the [dash] extra is not installed")

from hftaccel.dash import figures  # noqa: E402
from hftaccel.dash.app import create_app, parse_axis_time  # noqa: E402
from hftaccel.dash.data import Run  # noqa: E402
from hftaccel.spec.features import feature_scale  # noqa: E402

AMZN = 1
T10 = 36_000 * 10**9


@pytest.fixture(scope="module")
def run(amzn_run, latency_json):
    return Run(amzn_run, latency=latency_json)


@pytest.fixture(scope="module")
def full_day(run):
    figs, info = figures.render(run, AMZN, *run.span())
    return figs, info


def _trace(fig, name):
    return next(t for t in fig.data if t.name and t.name.startswith(name))


def test_every_panel_is_drawn(full_day, run):
    figs, info = full_day
    assert set(figs) == set(figures.PANELS)
    assert info["rows"] == run.timestamp.size
    for name, fig in figs.items():
        assert fig.data, name


def test_bbo_points_are_book_records(full_day, amzn_run):
    t = pq.read_table(amzn_run / "book.parquet", columns=["seq", "timestamp", "bid_price_1",
                                                          "ask_price_1"])
    by_seq = {int(s): i for i, s in enumerate(t.column("seq").to_numpy())}
    figs, _ = full_day
    bid, ask = _trace(figs["price"], "best bid"), _trace(figs["price"], "best offer")
    assert "M4" in bid.name                   # the full day is thinned to the pixels
    # per bucket: first, last, and the lowest and highest of bid, offer and micro-price
    assert 1000 < len(bid.x) <= 8 * figures.Resolution().line_buckets
    rows = [by_seq[int(s)] for s in bid.customdata]
    for trace, col in ((bid, "bid_price_1"), (ask, "ask_price_1")):
        p = t.column(col).to_numpy()[rows]
        usd = np.where(p > 0, p / 10_000, np.nan)          # an empty side is not drawn
        assert np.array_equal(np.asarray(trace.y), usd, equal_nan=True)
    assert np.array_equal(np.asarray(bid.x), t.column("timestamp").to_numpy()[rows] / 1e6)


def test_flow_features_in_real_units(run, amzn_run):
    t0, t1 = T10, T10 + 60 * 10**9
    figs, info = figures.render(run, AMZN, t0, t1)
    sig = pq.read_table(amzn_run / "signals.parquet", columns=["imb_l1", "ofi_l1_k64",
                                                                "intensity_buy"])
    rows = run.window(AMZN, t0, t1).rows
    assert info["rows"] == rows.size < 4 * figures.Resolution().line_buckets  # not thinned
    for feat in ("imb_l1", "ofi_l1_k64", "intensity_buy"):
        y = np.asarray(_trace(figs["flow"], feat).y)
        code = sig.column(feat).to_numpy()[rows]
        assert np.array_equal(y, code * feature_scale(feat))
    imb = np.asarray(_trace(figs["flow"], "imb_l1").y)
    assert imb.min() >= -1 and imb.max() <= 1


def test_risk_and_routing_panels_count_as_the_summary(full_day, run):
    figs, _ = full_day
    bars = [t for t in figs["risk"].data if t.type == "bar"]
    got = {t.name.split(" (")[0]: int(np.sum(t.y)) for t in bars}
    assert got == {k: v for k, v in run.summary["risk_rejects"].items() if v}
    approved = _trace(figs["risk"], "approved orders")
    assert int(np.sum(approved.y)) == run.summary["orders"]
    pos = _trace(figs["routing"], "position")
    assert pos.y[-1] == run.summary["routing"]["position"]["AMZN"]
    assert "1,971 fills" in figs["routing"].layout.title.text or \
        f"{run.summary['routing']['fills']:,} fills" in figs["routing"].layout.title.text


def test_pipeline_rates_add_up(full_day, run):
    figs, _ = full_day
    fig = figs["pipeline"]
    upd = _trace(fig, "book updates/s")
    t0, t1 = run.span()
    sec = (t1 - t0) / 1e9 / len(upd.x)
    assert round(float(np.sum(upd.y)) * sec) == run.timestamp.size
    msgs = _trace(fig, "messages/s")
    seq = run.seq.astype(np.int64)
    assert round(float(np.sum(msgs.y)) * sec) == int(seq[-1] - seq[0] + 1)


def test_latency_panel(full_day):
    lat = full_day[0]["latency"]
    bars = lat.data[0]
    assert np.isclose(np.sum(np.asarray(bars.y) / 100 * np.asarray(bars.width)), 1.0)
    assert list(lat.data[1].x) == [172.8, 185.6, 326.4, 384.0]
    assert "156.25 MHz" in lat.layout.xaxis.title.text


def test_panels_say_what_is_missing(tmp_path, amzn_run):
    import shutil
    shutil.copy(amzn_run / "book.parquet", tmp_path / "book.parquet")
    r = Run(tmp_path)
    figs, _ = figures.render(r, AMZN, *r.span())
    assert "no signals.parquet" in figs["flow"].layout.annotations[0].text
    assert "not routed" in figs["routing"].layout.annotations[0].text
    assert len(figs["price"].data) >= 4            # heatmap and lines still drawn
    logged = []
    create_app(r, log=logged.append)
    assert any("signals.parquet" in m for m in logged)


def test_axis_times():
    assert parse_axis_time("1970-01-01 09:30:00.25") == 34_200_250_000_000
    assert parse_axis_time("1970-01-01 10:00") == T10
    assert parse_axis_time(36_000_000.5) == T10 + 500_000
    assert parse_axis_time("1970-01-02 00:00:01") == 86_401 * 10**9
    with pytest.raises(ValueError, match="date-axis"):
        parse_axis_time("noon")


def test_initial_window_bounds_the_first_read(synth_run):
    from hftaccel.dash.app import initial_window

    r = Run(synth_run)
    loc, _, n = r.symbols()[0]
    assert initial_window(r, loc) == r.span()                     # small: the whole run
    a, b = initial_window(r, loc, max_rows=100)
    assert a == r.span()[0] and r.window(loc, a, b).rows.size == 100


def test_dash_command_reports_a_bad_folder_and_serves(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from hftaccel.cli import app as cli
    from hftaccel.dash import app as dash_app

    served = []
    monkeypatch.setattr(dash_app, "serve", lambda web, host, port: served.append((host, port)))
    res = CliRunner().invoke(cli, ["dash", str(tmp_path / "nowhere"), "--port", "8123"])
    assert res.exit_code == 0, res.output
    assert "nowhere" in res.output and "no such folder" in res.output
    assert served == [("127.0.0.1", 8123)]
