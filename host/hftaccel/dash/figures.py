"""The dashboard's panels as Plotly figures, drawn from one window of a run.

Times are drawn on date axes as milliseconds since midnight (1970-01-01 stands for the trading
day, which the records do not carry); prices in USD (ITCH ``Price(4)`` / 10,000); features in
their real units (the code times ``2**-frac_bits`` of its Q format,
:func:`hftaccel.spec.features.feature_scale`). Every panel is downsampled on the server
(:mod:`hftaccel.dash.downsample`): what goes to the browser depends on the bins, not on the
number of records.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hftaccel.spec.features import FEATURE_UNITS, feature_scale
from hftaccel.spec.itch import TICK_SIZE
from hftaccel.spec.risk import INTENT_BUY, INTENT_SELL, REJECT_REASONS, VERDICT_APPROVED, \
    VERDICT_REJECTED

from . import downsample as ds
from .data import Latency, Run, WindowData, load_window

__all__ = ["PANELS", "TEMPLATE", "Resolution", "render", "build", "price_figure", "flow_figure",
           "risk_figure", "routing_figure", "pipeline_figure", "latency_figure",
           "message_figure", "ns_to_ms"]

#: Panel names, in page order (the ids of their graphs are ``<name>-graph``).
PANELS = ("price", "flow", "risk", "routing", "pipeline", "latency")

_BID, _ASK, _MICRO = "#1a9850", "#d73027", "#fdae61"
_AXIS = {"gridcolor": "#ebebeb", "linecolor": "#ebebeb", "zerolinecolor": "#d8d8d8",
         "ticks": "", "automargin": True}
#: A small white template: Plotly's own ones cost ~15 ms a figure to apply.
TEMPLATE = go.layout.Template(layout={
    "paper_bgcolor": "white", "plot_bgcolor": "white", "font": {"color": "#2a3f5f"},
    "colorway": ["#636efa", "#EF553B", "#00cc96", "#ab63fa", "#FFA15A", "#19d3f3"],
    "xaxis": _AXIS, "yaxis": _AXIS, "hoverlabel": {"align": "left"}})
_REASON_COLOURS = ("#000000", "#7f7f7f", "#8c564b", "#e377c2", "#1f77b4", "#ff7f0e",
                   "#9467bd", "#bcbd22")


@dataclass(frozen=True)
class Resolution:
    """Bins of the server-side downsampling (about a panel's width in pixels).

    Attributes
    ----------
    time_bins : int
        Heatmap columns.
    price_rows : int
        At most this many heatmap rows (a row then holds several ticks).
    line_buckets : int
        M4 buckets of the lines (4 points each at most).
    rate_bins : int
        Bars of the risk and pipeline panels.
    marker_bins : int
        Time buckets of the signal / order / fill markers (one marker per bucket and tick).
    """

    time_bins: int = 600
    price_rows: int = 160
    line_buckets: int = 1000
    rate_bins: int = 200
    marker_bins: int = 1000


def ns_to_ms(ns) -> np.ndarray:
    """ns since midnight -> ms, float64 (what the date axes take)."""
    return np.asarray(ns, np.float64) / 1e6


def _usd(price) -> np.ndarray:
    p = np.asarray(price, np.float64) / 10_000
    return np.where(p > 0, p, np.nan)


def _time_axes(fig: go.Figure, t0: int, t1: int) -> None:
    fig.update_xaxes(type="date", range=[t0 / 1e6, t1 / 1e6], tickformat="%H:%M:%S",
                     hoverformat="%H:%M:%S.%L")


def _style(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(title={"text": title, "x": 0.01, "font": {"size": 13}}, height=height,
                      margin={"l": 64, "r": 16, "t": 44, "b": 28}, template=TEMPLATE,
                      legend={"orientation": "h", "x": 1, "xanchor": "right", "y": 1.0,
                              "yanchor": "bottom", "font": {"size": 10}},
                      hovermode="closest")
    return fig


def message_figure(title: str, text: str, height: int = 180) -> go.Figure:
    """An empty panel that says why it is empty."""
    fig = go.Figure()
    fig.add_annotation(text=text, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font={"size": 13})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _style(fig, title, height)


def _levels(run: Run, which: dict):
    price_cols, share_cols = run.level_columns()
    p = np.column_stack([which[c] for c in price_cols])
    q = np.column_stack([which[c] for c in share_cols])
    return p, q


def _bbo(cols: dict) -> tuple:
    bid, ask = cols["bid_price_1"].astype(np.int64), cols["ask_price_1"].astype(np.int64)
    bq, aq = cols["bid_shares_1"].astype(np.float64), cols["ask_shares_1"].astype(np.float64)
    two = (bid > 0) & (ask > 0) & (bq + aq > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        micro = np.where(two, (bid * aq + ask * bq) / (bq + aq), np.nan)
    return bid, ask, micro


def price_figure(wd: WindowData, run: Run, name: str, res: Resolution) -> go.Figure:
    """Liquidity heatmap (price tick x time, colour = resting shares per book update), best
    bid / offer and micro-price over it, signals, OUCH orders and fills as markers."""
    title = (f"{name}: resting shares by price and time, best bid/offer, micro-price, "
             "signals, orders")
    t0, t1 = wd.t0, wd.t1
    ts = wd.book["timestamp"].astype(np.int64)
    if ts.size == 0 and wd.prev is None:
        return message_figure(title, f"no book update of {name} before or in this window", 420)
    fig = go.Figure()
    prices, shares = _levels(run, wd.book)
    carry = None
    if wd.prev is not None:
        pp, pq_ = _levels(run, wd.prev)
        live = np.r_[prices[prices > 0], pp[pp > 0]]
    else:
        live = prices[prices > 0]
    if live.size:
        grid = ds.liquidity_grid(ts, prices, shares, t0, t1, res.time_bins, tick=TICK_SIZE,
                                 max_rows=res.price_rows,
                                 price_range=(int(live.min()), int(live.max())))
        if wd.prev is not None:
            carry = ds.grid_row_vector(pp[0], pq_[0], grid)
        z = grid.mean(carry)
        z[z == 0] = np.nan
        row_usd = (grid.prices + (grid.ticks_per_row - 1) * TICK_SIZE / 2) / 10_000
        mid_ms = ns_to_ms((grid.edges[:-1] + grid.edges[1:]) / 2)
        finite = z[np.isfinite(z)]
        zmax = float(np.percentile(finite, 99)) if finite.size else 1.0
        rows_label = ("1 tick" if grid.ticks_per_row == 1 else
                      f"{grid.ticks_per_row} ticks")
        fig.add_trace(go.Heatmap(
            x=mid_ms, y=row_usd, z=z.astype(np.float32), zmin=0, zmax=max(zmax, 1.0),
            colorscale="Blues", showscale=True, name="resting shares",
            colorbar={"title": {"text": "shares", "side": "right"}, "thickness": 10, "len": 0.8},
            hovertemplate=("%{x}<br>$%{y:.2f} (" + rows_label + ")<br>%{z:,.0f} shares resting "
                           "(mean per book update)<extra></extra>")))
    # best bid / offer and micro-price: every plotted point is a record (M4 decimation)
    bid, ask, micro = _bbo(wd.book)
    seq = wd.book["seq"].astype(np.float64)
    keep = ds.decimate(ts, np.column_stack([bid, ask, micro]), t0, t1, res.line_buckets) \
        if ts.size else np.zeros(0, np.int64)
    x, yb, ya, ym, cs = ns_to_ms(ts[keep]), _usd(bid[keep]), _usd(ask[keep]), \
        micro[keep] / 10_000, seq[keep]
    if wd.prev is not None:                  # the book as it stood at the window's start
        pb, pa, pm = _bbo(wd.prev)
        x, yb, ya = np.r_[t0 / 1e6, x], np.r_[_usd(pb), yb], np.r_[_usd(pa), ya]
        ym, cs = np.r_[pm / 10_000, ym], np.r_[wd.prev["seq"].astype(np.float64), cs]
    thinned = "" if keep.size == ts.size else f" (M4, {keep.size:,} of {ts.size:,})"
    for y, label, colour, width in ((yb, "best bid", _BID, 1.6), (ya, "best offer", _ASK, 1.6),
                                    (ym, "micro-price", _MICRO, 1.0)):
        fig.add_trace(go.Scatter(
            x=x, y=y, customdata=cs, mode="lines", line={"shape": "hv", "color": colour,
                                                          "width": width},
            name=label + (thinned if label == "best bid" else ""),
            hovertemplate=label + " $%{y:.4f}<br>%{x}<br>seq %{customdata}<extra></extra>"))
    _signal_markers(fig, wd, run, res)
    _fill_markers(fig, wd, run, res)
    fig.update_yaxes(title_text="price, USD", tickformat=".2f")
    _time_axes(fig, t0, t1)
    _style(fig, title, 480)
    fig.update_layout(legend={"orientation": "h", "x": 0, "xanchor": "left", "y": -0.08,
                              "yanchor": "top"}, margin={"b": 60})
    return fig


#: Marker traces with more markers than this start hidden (a click on the legend shows them).
MAX_SHOWN_MARKERS = 600


def _markers(fig, ts, price, t0, t1, res, *, label, symbol, colour, size, line=None):
    if ts.size == 0:
        return
    rows, counts = ds.cell_markers(ts, price, t0, t1, res.marker_bins, tick=TICK_SIZE)
    crowded = rows.size > MAX_SHOWN_MARKERS
    fig.add_trace(go.Scatter(
        x=ns_to_ms(ts[rows]), y=_usd(price[rows]), customdata=counts, mode="markers",
        marker={"symbol": symbol, "color": colour, "size": size, "opacity": 0.85,
                "line": line or {"width": 0}},
        name=f"{label} ({ts.size:,}{', click to show' if crowded else ''})",
        visible="legendonly" if crowded else True,
        hovertemplate=label + " $%{y:.2f}<br>%{x}<br>%{customdata} here<extra></extra>"))


def _signal_markers(fig, wd: WindowData, run: Run, res: Resolution) -> None:
    s = wd.signals
    if s is None or s["intent"].size == 0:
        return
    ts = wd.book["timestamp"][:s["intent"].size].astype(np.int64)
    price = s["price"].astype(np.int64)
    for code, side, sym, colour in ((INTENT_BUY, "buy", "triangle-up", _BID),
                                    (INTENT_SELL, "sell", "triangle-down", _ASK)):
        m = (s["intent"] == code) & (price > 0)
        _markers(fig, ts[m], price[m], wd.t0, wd.t1, res, label=f"{side} signal", symbol=sym,
                 colour=colour, size=6)
    approved = s["verdict"] == VERDICT_APPROVED
    if not approved.any():
        return
    rows = wd.rows[:s["intent"].size][approved]
    ts_o = ts[approved]
    if run.orders is not None:
        k = np.searchsorted(run.order_rows, rows)
        o = run.orders[k]
        o_price = o["price"].astype(np.int64)
        buy = o["side"] == b"B"
    else:
        o_price = price[approved]
        buy = s["intent"][approved] == INTENT_BUY
    for m, side, sym, colour in ((buy, "buy", "triangle-up", _BID),
                                 (~buy, "sell", "triangle-down", _ASK)):
        _markers(fig, ts_o[m], o_price[m], wd.t0, wd.t1, res, label=f"OUCH {side} order",
                 symbol=sym + "-open", colour=colour, size=11,
                 line={"width": 1.5, "color": colour})


def _fill_markers(fig, wd: WindowData, run: Run, res: Resolution) -> None:
    f = run.fills
    if f is None:
        return
    ts = f.timestamp.astype(np.int64)
    m = (f.stock_locate == wd.locate) & (ts >= wd.t0) & (ts < wd.t1)
    if not m.any():
        return
    order = np.argsort(ts[m], kind="stable")
    _markers(fig, ts[m][order], f.price[m][order], wd.t0, wd.t1, res, label="fill",
             symbol="x", colour="#222222", size=7)


def flow_figure(wd: WindowData, name: str, res: Resolution) -> go.Figure:
    """Order-flow features as the MLP sees them, in real units: OFI at levels 1-3 over the
    last 16 and 64 events, level-1 and depth imbalance, decayed buy / sell intensities."""
    title = f"{name}: order flow (the MLP's features, Q formats undone)"
    s = wd.signals
    if s is None:
        return message_figure(title, "no signals.parquet: no features", 200)
    n = s["intent"].size
    if n == 0:
        return message_figure(title, f"no scored book update of {name} in this window", 200)
    ts = wd.book["timestamp"][:n].astype(np.int64)
    rows = (("ofi_l1_k16", "ofi_l2_k16", "ofi_l3_k16", "ofi_l1_k64", "ofi_l2_k64",
             "ofi_l3_k64"), ("imb_l1", "imb_depth"), ("intensity_buy", "intensity_sell"))
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.07,
                        subplot_titles=(f"OFI, {FEATURE_UNITS['ofi_l1_k16']} (K = 16 solid, "
                                        "K = 64 dotted)",
                                        "imbalance, fraction of size (level 1, depth-weighted)",
                                        f"decayed intensity, {FEATURE_UNITS['intensity_buy']}"))
    colours = {"l1": "#1f77b4", "l2": "#ff7f0e", "l3": "#2ca02c", "imb_l1": "#1f77b4",
               "imb_depth": "#9467bd", "intensity_buy": _BID, "intensity_sell": _ASK}
    for r, names in enumerate(rows, start=1):
        for feat in names:
            v = s[feat].astype(np.float64) * feature_scale(feat)
            keep = ds.decimate(ts, v, wd.t0, wd.t1, res.line_buckets)
            key = feat.split("_")[1] if feat.startswith("ofi") else feat
            dash = "dot" if feat.endswith("_k64") else "solid"
            fig.add_trace(go.Scatter(
                x=ns_to_ms(ts[keep]), y=v[keep], mode="lines", name=feat,
                line={"shape": "hv", "color": colours[key], "width": 1.1, "dash": dash},
                hovertemplate=feat + " %{y:,.4g}<br>%{x}<extra></extra>"), row=r, col=1)
    _time_axes(fig, wd.t0, wd.t1)
    fig.update_annotations(font={"size": 11})
    _style(fig, title, 520)
    fig.update_layout(legend={"orientation": "v", "x": 1.01, "xanchor": "left", "y": 1,
                              "yanchor": "top"}, margin={"r": 120})
    return fig


def risk_figure(wd: WindowData, run: Run, name: str, res: Resolution) -> go.Figure:
    """Risk-gate rejections of the symbol by reason per time bin (stacked), approved orders
    beside them."""
    title = f"{name}: risk-gate rejections by reason"
    s = wd.signals
    if s is None:
        return message_figure(title, "no signals.parquet: no decisions", 200)
    n = s["intent"].size
    ts = wd.book["timestamp"][:n].astype(np.int64)
    rej = s["verdict"] == VERDICT_REJECTED
    edges = ds.bin_edges(wd.t0, wd.t1, res.rate_bins)
    mid = ns_to_ms((edges[:-1] + edges[1:]) / 2)
    width = float(np.diff(edges).mean()) / 1e6
    counts = ds.counts_per_bin(ts[rej], wd.t0, wd.t1, res.rate_bins, s["reason"][rej],
                               len(REJECT_REASONS))
    approved = ds.counts_per_bin(ts[s["verdict"] == VERDICT_APPROVED], wd.t0, wd.t1,
                                 res.rate_bins)[0]
    fig = go.Figure()
    totals = counts.sum(axis=1)
    for k, reason in enumerate(REJECT_REASONS):
        if totals[k]:
            fig.add_trace(go.Bar(x=mid, y=counts[k], width=width, name=f"{reason} "
                                 f"({totals[k]:,})", marker_color=_REASON_COLOURS[k],
                                 hovertemplate=reason + " %{y}<br>%{x}<extra></extra>"))
    fig.add_trace(go.Scatter(x=mid, y=approved, mode="lines", line={"shape": "hvh",
                                                                     "color": "#2ca02c"},
                             name=f"approved orders ({approved.sum():,})",
                             hovertemplate="approved %{y}<br>%{x}<extra></extra>"))
    run_totals = (run.summary or {}).get("risk_rejects") or {}
    tail = ", ".join(f"{k} {v:,}" for k, v in run_totals.items() if v)
    fig.update_layout(barmode="stack", bargap=0)
    fig.update_yaxes(title_text=f"per {width / 1e3:.3g} s")
    _time_axes(fig, wd.t0, wd.t1)
    return _style(fig, title + (f" (whole run, all symbols: {tail})" if tail else
                                " (none in this window)" if not totals.any() else ""), 280)


def routing_figure(run: Run, locate: int, name: str, t0: int, t1: int) -> go.Figure:
    """Fills, position and P&L of a routed run (``--venue-sim`` / ``--route``)."""
    title = f"{name}: fills, position and P&L"
    if run.fills is None:
        why = ("the run was not routed: `hftaccel run --venue-sim` or `--route HOST:PORT` "
               "with `--out` writes router.journal")
        if run.summary and run.summary.get("routing"):
            why = "the run was routed but router.journal is not in the run folder"
        return message_figure(title, why)
    ts, pos, pnl = run.fills.position(locate)
    ts = ts.astype(np.int64)
    if ts.size == 0:
        return message_figure(title, f"no fill of {name}")
    a, b = np.searchsorted(ts, [t0, t1])
    sel = np.r_[a - 1, np.arange(a, b)] if a > 0 else np.arange(a, b)
    if sel.size == 0:
        return message_figure(title, f"no fill of {name} before or in this window")
    # the state after the last fill holds to the window's end
    sel = np.r_[sel, sel[-1]]
    x = ns_to_ms(np.r_[np.maximum(ts[sel[:-1]], t0), t1])
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        subplot_titles=("position, shares", "P&L, USD (marked at each fill's "
                                                            "price)"))
    fig.add_trace(go.Scatter(x=x, y=pos[sel], mode="lines", line={"shape": "hv"},
                             name="position", hovertemplate="%{y:,} shares<br>%{x}"
                                                            "<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=pnl[sel], mode="lines", line={"shape": "hv",
                                                                  "color": "#9467bd"},
                             name="P&L", hovertemplate="$%{y:,.2f}<br>%{x}<extra></extra>"),
                  row=2, col=1)
    r = (run.summary or {}).get("routing") or {}
    tail = ""
    if r:
        tail = (f" (run: {r['fills']:,} fills, position "
                f"{', '.join(f'{k} {v:+,}' for k, v in r['position'].items()) or 'flat'}, "
                f"P&L ${r['pnl_usd']:,.2f} at the last quotes)")
    _time_axes(fig, t0, t1)
    fig.update_annotations(font={"size": 11})
    _style(fig, title + tail, 320)
    fig.update_layout(showlegend=False)
    return fig


def pipeline_figure(run: Run, t0: int, t1: int, res: Resolution) -> go.Figure:
    """Messages/s and book updates/s over time (all symbols), MoldUDP64 gaps and the first
    bad references where they happened; duplicates and totals in the title."""
    title = "pipeline (all symbols)"
    s = run.summary or {}
    if run.book is None:
        return message_figure(title, "no book.parquet: no rates")
    if not run.sorted_time:
        return message_figure(title, "the book's timestamps are not in order: no rates per "
                              "time bin")
    ts = run.timestamp.view(np.int64)
    seq = run.seq.astype(np.int64)
    edges = ds.bin_edges(t0, t1, res.rate_bins)
    sec = np.diff(edges) / 1e9
    idx = np.searchsorted(ts, edges, side="left")
    base = seq[0] - 1 if seq.size else 0
    last_seq = np.where(idx > 0, seq[np.maximum(idx - 1, 0)], base)
    msgs = np.diff(last_seq).astype(np.float64)
    gaps = s.get("gaps") or []
    for g in gaps:                       # missing sequence numbers are no messages
        k = int(np.searchsorted(seq, g["first_missing"]))
        if k < ts.size and t0 <= ts[k] < t1:
            msgs[ds.bin_index(ts[k:k + 1], t0, t1, res.rate_bins)[0]] -= g["count"]
    updates = np.diff(idx).astype(np.float64)
    mid = ns_to_ms((edges[:-1] + edges[1:]) / 2)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=mid, y=msgs / sec, mode="lines", line={"shape": "hvh"},
                             name="messages/s (by sequence number)",
                             hovertemplate="%{y:,.0f} messages/s<br>%{x}<extra></extra>"))
    fig.add_trace(go.Scatter(x=mid, y=updates / sec, mode="lines",
                             line={"shape": "hvh", "color": "#ff7f0e"}, name="book updates/s",
                             hovertemplate="%{y:,.0f} updates/s<br>%{x}<extra></extra>"))
    for label, items, colour in (
            ("MoldUDP64 gap", [(g["first_missing"], f"{g['count']:,} missing from "
                                f"{g['first_missing']:,} ({g.get('session', '')})")
                               for g in gaps], "#d62728"),
            ("first bad references", [(b["seq"], f"{b['kind']} at seq {b['seq']:,}")
                                      for b in s.get("first_bad_references") or []],
             "#8c564b")):
        if not items:
            continue
        k = np.minimum(np.searchsorted(seq, [i[0] for i in items]), ts.size - 1)
        when = ts[k]
        m = (when >= t0) & (when < t1)
        if m.any():
            fig.add_trace(go.Scatter(x=ns_to_ms(when[m]), y=np.zeros(int(m.sum())),
                                     mode="markers", name=label,
                                     marker={"symbol": "x", "size": 10, "color": colour},
                                     text=[t for t, ok in zip((i[1] for i in items), m) if ok],
                                     hovertemplate="%{text}<br>%{x}<extra></extra>"))
    bad = s.get("bad_references") or {}
    facts = [f"{s['messages']:,} messages" if "messages" in s else None,
             f"{len(gaps)} gaps ({sum(g['count'] for g in gaps):,} missing)" if s else None,
             f"{s.get('duplicates', 0):,} duplicates (no times recorded)" if s else None,
             "bad references " + (", ".join(f"{k} {v:,}" for k, v in bad.items() if v)
                                  or "none") if s else None]
    fig.update_yaxes(title_text="per second", rangemode="tozero")
    _time_axes(fig, t0, t1)
    return _style(fig, title + ": " + "; ".join(f for f in facts if f), 260)


def latency_figure(lat: Latency | None) -> go.Figure:
    """Tick-to-trade of the RTL pipeline: histogram over the reported quantile bins and the
    CDF through the reported quantiles, ns at the report's clock."""
    title = "tick-to-trade (RTL)"
    if lat is None:
        return message_figure(title, "no tick-to-trade report: `hftaccel profile` writes "
                              "build/profile/report.json, `make sim` build/sim/latency.json")
    x, p = lat.quantiles()
    period = 1e3 / lat.clock_mhz
    lo, hi = x[:-1], x[1:]
    mass = np.diff(p)
    width = np.maximum(hi - lo, period)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08,
                        subplot_titles=("orders per ns between reported quantiles, %",
                                        "CDF through the reported quantiles"))
    names = [k for k, _ in Latency.QUANTILES if lat.ns.get(k) is not None]
    fig.add_trace(go.Bar(x=lo + width / 2, y=100 * mass / width, width=width,
                         marker_color="#c0392b", name="share per ns",
                         customdata=np.column_stack([lo, hi, 100 * mass]),
                         hovertemplate=("%{customdata[0]:.1f}-%{customdata[1]:.1f} ns: "
                                        "%{customdata[2]:.1f} % of orders<extra></extra>")),
                  row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=p, mode="lines+markers+text", text=names,
                             textposition="middle right", line={"color": "#c0392b"},
                             name="CDF", hovertemplate="%{text} %{x:.1f} ns<extra></extra>"),
                  row=1, col=2)
    fig.update_xaxes(title_text=f"ns at {lat.clock_mhz:g} MHz"
                     + (" (nominal)" if lat.nominal else ""))
    fig.update_yaxes(range=[-0.05, 1.1], row=1, col=2)
    n = lat.ns.get("n", 0)
    fig.update_annotations(font={"size": 11})
    fig.update_layout(showlegend=False)
    src = Path(lat.source)
    if src.is_absolute() and src.is_relative_to(Path.cwd()):
        src = src.relative_to(Path.cwd())
    return _style(fig, f"{title}: {n:,} orders, median {lat.ns['median']:.1f} ns, max "
                  f"{lat.ns['max']:.1f} ns; from {src} (summary quantiles only)", 300)


def build(run: Run, wd: WindowData, name: str, res: Resolution) -> dict:
    """Every panel of one window: ``{panel: go.Figure}`` (see :data:`PANELS`)."""
    return {"price": price_figure(wd, run, name, res),
            "flow": flow_figure(wd, name, res),
            "risk": risk_figure(wd, run, name, res),
            "routing": routing_figure(run, wd.locate, name, wd.t0, wd.t1),
            "pipeline": pipeline_figure(run, wd.t0, wd.t1, res),
            "latency": latency_figure(run.latency)}


def render(run: Run, locate: int, t0: int, t1: int, *, name: str | None = None,
           res: Resolution = Resolution()) -> tuple[dict, dict]:
    """Read one window of ``run`` (columnar, windowed) and draw every panel.

    Parameters
    ----------
    run : Run
    locate : int
        Stock locate of the symbol.
    t0, t1 : int
        Window, ns since midnight.
    name : str, optional
        Symbol name for the titles (default: from :meth:`Run.symbols`).
    res : Resolution

    Returns
    -------
    figures : dict[str, go.Figure]
    info : dict
        ``rows`` (book rows of the symbol in the window), ``read_s`` and ``draw_s`` (server
        seconds reading and drawing).

    Raises
    ------
    ValueError
        ``t1 <= t0`` or no readable book.
    """
    if name is None:
        name = dict((loc, nm) for loc, nm, _ in run.symbols()).get(locate, f"locate {locate}")
    a = time.perf_counter()
    wd = load_window(run, locate, t0, t1)
    b = time.perf_counter()
    figs = build(run, wd, name, res)
    c = time.perf_counter()
    return figs, {"rows": int(wd.rows.size), "read_s": b - a, "draw_s": c - b}
