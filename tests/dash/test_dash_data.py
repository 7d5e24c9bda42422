"""The dashboard's data layer and downsampling on the AMZN run, exact against the Parquet files."""

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from hftaccel.dash import downsample as ds
from hftaccel.dash.data import Run, find_latency, load_window, read_fills, read_latency, \
    read_orders
from hftaccel.golden import ouch
from hftaccel.spec.itch import TICK_SIZE
from hftaccel.spec.risk import REJECT_REASONS, VERDICT_REJECTED

AMZN = 1            # stock locate of AMZN in the embedded sample
T10 = 36_000 * 10**9   # 10:00:00, ns since midnight


@pytest.fixture(scope="module")
def run(amzn_run, latency_json):
    return Run(amzn_run, latency=latency_json)


@pytest.fixture(scope="module")
def book(amzn_run):
    t = pq.read_table(amzn_run / "book.parquet")
    return {c: t.column(c).to_numpy() for c in t.column_names}


@pytest.fixture(scope="module")
def signals(amzn_run):
    t = pq.read_table(amzn_run / "signals.parquet")
    return {c: t.column(c).to_numpy() for c in t.column_names}


def test_index_and_symbols(run, book, amzn_run):
    assert run.problems == []
    assert np.array_equal(run.timestamp, book["timestamp"])
    assert np.array_equal(run.seq, book["seq"])
    assert run.sorted_time
    assert run.symbols() == [(AMZN, "AMZN", book["timestamp"].size)]
    assert run.span() == (int(book["timestamp"].min()), int(book["timestamp"].max()) + 1)
    summary = json.loads((amzn_run / "summary.json").read_text())
    assert run.summary == summary


def test_window_rows_and_columns_equal_the_file(run, book):
    t0, t1 = T10, T10 + 1800 * 10**9
    ts = book["timestamp"].astype(np.int64)
    want = np.flatnonzero((ts >= t0) & (ts < t1))
    w = run.window(AMZN, t0, t1)
    assert np.array_equal(w.rows, want) and w.prev == want[0] - 1
    wd = load_window(run, AMZN, t0, t1)
    for c in ("timestamp", "seq", "bid_price_1", "ask_shares_8"):
        assert np.array_equal(wd.book[c], book[c][want])
    assert wd.prev["seq"][0] == book["seq"][want[0] - 1]
    run.clear_cache()
    again = run.book.take(["bid_price_3"], want[::7])
    assert np.array_equal(again["bid_price_3"], book["bid_price_3"][want[::7]])


def test_heatmap_bin_shares_are_the_sum_of_the_records_in_it(run, book):
    t0, t1, n_time = T10, T10 + 600 * 10**9, 120
    wd = load_window(run, AMZN, t0, t1)
    prices_c, shares_c = run.level_columns()
    assert len(prices_c) == 16
    p = np.column_stack([wd.book[c] for c in prices_c])
    q = np.column_stack([wd.book[c] for c in shares_c])
    ts = wd.book["timestamp"].astype(np.int64)
    g = ds.liquidity_grid(ts, p, q, t0, t1, n_time, tick=TICK_SIZE, max_rows=10_000)
    assert g.ticks_per_row == 1
    # independently: walk the records of the file, one by one
    edges = g.edges
    want = np.zeros_like(g.shares)
    n_bin = np.zeros(n_time, np.int64)
    all_ts = book["timestamp"].astype(np.int64)
    for i in np.flatnonzero((all_ts >= t0) & (all_ts < t1)):
        b = int(np.searchsorted(edges, all_ts[i], side="right")) - 1
        n_bin[b] += 1
        for pc, qc in zip(prices_c, shares_c):
            if book[pc][i]:
                want[book[pc][i] // TICK_SIZE - g.lo_tick, b] += int(book[qc][i])
    assert np.array_equal(g.shares, want)
    assert np.array_equal(g.updates, n_bin)
    assert g.shares.sum() == sum(int(book[qc][(all_ts >= t0) & (all_ts < t1)].sum())
                                 for qc in shares_c)
    # rows of several ticks sum their ticks
    g4 = ds.liquidity_grid(ts, p, q, t0, t1, n_time, tick=TICK_SIZE, max_rows=20)
    assert g4.ticks_per_row > 1 and g4.shares.sum() == g.shares.sum()
    r4 = (g.lo_tick + np.arange(g.shares.shape[0]) - g4.lo_tick) // g4.ticks_per_row
    assert np.array_equal(np.add.reduceat(g.shares, np.flatnonzero(np.r_[True, np.diff(r4)]),
                                          axis=0), g4.shares[:r4.max() + 1])


def test_heatmap_mean_and_forward_fill(run):
    t0, t1, n_time = T10, T10 + 2 * 10**9, 400          # 2 s: most bins hold no update
    wd = load_window(run, AMZN, t0, t1)
    pc, qc = run.level_columns()
    p = np.column_stack([wd.book[c] for c in pc])
    q = np.column_stack([wd.book[c] for c in qc])
    pp = np.column_stack([wd.prev[c] for c in pc])[0]
    pq_ = np.column_stack([wd.prev[c] for c in qc])[0]
    ts = wd.book["timestamp"].astype(np.int64)
    live = np.r_[p[p > 0], pp[pp > 0]]
    g = ds.liquidity_grid(ts, p, q, t0, t1, n_time, tick=TICK_SIZE, max_rows=10_000,
                          price_range=(int(live.min()), int(live.max())))
    carry = ds.grid_row_vector(pp, pq_, g)
    z = g.mean(carry)
    assert not np.isnan(z).any()
    b = ds.bin_index(ts, t0, t1, n_time)
    for k in range(n_time):
        have = np.flatnonzero(b == k)
        if have.size:
            assert np.allclose(z[:, k], g.shares[:, k] / have.size)
        else:                            # the state of the last record before the bin
            before = np.flatnonzero(b < k)
            if before.size:
                last = before[-1]
                state = ds.grid_row_vector(p[last], q[last], g)
            else:
                state = carry
            assert np.array_equal(z[:, k], state)


def test_bins_and_edges_agree():
    t0, t1 = 10, 10 + 997
    edges = ds.bin_edges(t0, t1, 13)
    ts = np.arange(t0, t1)
    b = ds.bin_index(ts, t0, t1, 13)
    assert np.array_equal(np.searchsorted(edges, ts, side="right") - 1, b)
    with pytest.raises(ValueError, match="outside the window"):
        ds.bin_index(np.array([t1]), t0, t1, 13)
    with pytest.raises(ValueError, match="t1 > t0"):
        ds.bin_edges(5, 5, 3)


def test_m4_keeps_every_buckets_first_last_min_and_max(book):
    ts = book["timestamp"].astype(np.int64)
    t0, t1 = int(ts[0]), int(ts[-1]) + 1
    bid = book["bid_price_1"].astype(np.float64)
    ask = book["ask_price_1"].astype(np.float64)
    keep = ds.decimate(ts, np.column_stack([bid, ask]), t0, t1, 500)
    assert keep.size < ts.size / 10 and np.all(np.diff(keep) > 0)
    b = ds.bin_index(ts, t0, t1, 500)
    kept = np.zeros(ts.size, bool)
    kept[keep] = True
    for k in np.unique(b):
        rows = np.flatnonzero(b == k)
        assert kept[rows[0]] and kept[rows[-1]]
        for v in (bid, ask):
            assert v[rows[kept[rows]]].min() == v[rows].min()
            assert v[rows[kept[rows]]].max() == v[rows].max()
    small = ds.decimate(ts[:100], bid[:100], t0, t1, 500)
    assert np.array_equal(small, np.arange(100))


def test_markers_and_counts(run, signals, book):
    ts = book["timestamp"].astype(np.int64)
    t0, t1 = int(ts[0]), int(ts[-1]) + 1
    buy = np.flatnonzero(signals["intent"] == 1)
    rows, counts = ds.cell_markers(ts[buy], signals["price"][buy], t0, t1, 300, tick=TICK_SIZE)
    assert counts.sum() == buy.size and np.all(np.diff(rows) > 0)
    rej = np.flatnonzero(signals["verdict"] == VERDICT_REJECTED)
    per = ds.counts_per_bin(ts[rej], t0, t1, 50, signals["reason"][rej], len(REJECT_REASONS))
    assert dict(zip(REJECT_REASONS, per.sum(axis=1).tolist())) == run.summary["risk_rejects"]
    with pytest.raises(ValueError, match="category"):
        ds.counts_per_bin(ts[:3], t0, t1, 5, np.array([0, 1, 9]), 3)


def test_decisions_orders_and_fills(run, signals, amzn_run):
    assert np.array_equal(run.intent, signals["intent"])
    assert np.array_equal(run.verdict, signals["verdict"])
    orders = read_orders(amzn_run / "orders.ouch")
    ref = ouch.decode_stream("inbound", (amzn_run / "orders.ouch").read_bytes())
    assert orders.shape[0] == len(ref) == run.summary["orders"]
    assert [int(x) for x in orders["price"]] == [o["price"] for o in ref]
    assert [int(x) for x in orders["user_ref_num"]] == [o["user_ref_num"] for o in ref]
    approved = np.flatnonzero(signals["verdict"] == 1)
    assert np.array_equal(run.order_rows, approved)
    assert np.array_equal(orders["price"], signals["price"][approved])
    # fills of the journal against the router's own summary
    r = run.summary["routing"]
    f = read_fills(amzn_run / "router.journal")
    assert f.timestamp.size == r["fills"] and int(f.quantity.sum()) == r["filled_shares"]
    ts, pos, _ = f.position(AMZN)
    row = r["by_symbol"]["AMZN"]
    assert int(pos[-1]) == r["position"]["AMZN"] == row["position"]
    cash = -int((f.side.astype(np.int64) * f.quantity * f.price).sum())
    assert (cash + pos[-1] * round(row["mark"] * 10_000)) / 10_000 == pytest.approx(
        row["pnl_usd"], abs=0.005)


def test_latency_reports(tmp_path, latency_json, run):
    lat = read_latency(latency_json)
    assert lat is not None and lat.clock_mhz == 156.25 and lat.ns["median"] == 185.6
    x, p = lat.quantiles()
    assert list(x) == [172.8, 185.6, 326.4, 384.0] and list(p) == [0, 0.5, 0.99, 1.0]
    assert run.latency.source == str(latency_json)
    rep = {"clock": {"mhz": 100.0, "nominal": False},
           "backends": {"rtl": {"measured": True, "tick_to_trade_cycles": {
               "n": 10, "min": 20, "median": 25.0, "p90": 28.0, "max": 30, "mean": 25.0}}}}
    (tmp_path / "report.json").write_text(json.dumps(rep))
    lat = read_latency(tmp_path / "report.json")
    assert lat.ns["p90"] == pytest.approx(280.0) and not lat.nominal
    rep["backends"]["rtl"] = {"measured": False, "reason": "verilator not on PATH"}
    (tmp_path / "report.json").write_text(json.dumps(rep))
    assert read_latency(tmp_path / "report.json") is None
    assert tmp_path / "report.json" in find_latency(tmp_path)
    (tmp_path / "latency.json").write_text("{\"no\": 1}")
    with pytest.raises(ValueError, match="latency.json"):
        read_latency(tmp_path / "latency.json")


def test_bad_and_partial_run_folders_name_the_file(tmp_path, amzn_run):
    missing = Run(tmp_path / "nowhere")
    assert [p.file for p in missing.problems] == [str(tmp_path / "nowhere")]
    assert "no such folder" in missing.problems[0].message
    part = tmp_path / "partial"
    part.mkdir()
    shutil.copy(amzn_run / "book.parquet", part / "book.parquet")
    r = Run(part)
    named = {p.file: p.message for p in r.problems}
    assert str(part / "signals.parquet") in named and str(part / "summary.json") in named
    assert r.book is not None and r.intent is None
    (part / "signals.parquet").write_bytes(b"PAR1 this is not parquet")
    (part / "summary.json").write_text("{\"cut short")
    r = Run(part)
    named = {p.file: p.message for p in r.problems}
    assert "unreadable" in named[str(part / "signals.parquet")]
    assert "unreadable" in named[str(part / "summary.json")]
    (part / "book.parquet").write_bytes((amzn_run / "book.parquet").read_bytes()[:5000])
    r = Run(part)
    assert "unreadable" in {p.file: p.message for p in r.problems}[str(part / "book.parquet")]
    assert r.book is None and r.span() == (0, 1)
