"""The Dash application: one page of panels over a run, a symbol picker, a time window and play.

Layout: the problems of the run folder (each naming its file), a line of facts from the
summary, the controls (symbol, time window brush, full day, play at 1x / 10x / 100x / as fast
as possible) and one ``dcc.Graph`` per panel of :data:`hftaccel.dash.figures.PANELS` (ids
``<panel>-graph``). A zoom on the price panel moves the window; so do the brush and play. Every
figure is drawn on the server from the window alone (:func:`hftaccel.dash.figures.render`).
With ``follow`` the run folder is looked at every second (:meth:`hftaccel.dash.data.Run.refresh`)
and a window that reached the end of the data keeps following it.

No front-end code of our own: Dash components and Plotly figures only. Errors while drawing
(a file changed or went bad under the server) are shown in the page and logged; the server
keeps running.
"""

from __future__ import annotations

import datetime as _dt
import re
import time

import dash
import numpy as np
import pyarrow as pa
from dash import Input, Output, State, dcc, html

from . import figures
from .data import Run

__all__ = ["create_app", "serve", "parse_axis_time", "initial_window", "SPEEDS",
           "PLAY_INTERVAL_MS", "INITIAL_ROWS"]

#: Play speeds: label -> market seconds per wall second (None: one window per step).
SPEEDS = {"1x": 1.0, "10x": 10.0, "100x": 100.0, "as fast as possible": None}
#: Wall time between play steps, ms.
PLAY_INTERVAL_MS = 500
#: Wall time between looks at a followed run folder, ms.
FOLLOW_INTERVAL_MS = 1000

_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?$")


def parse_axis_time(value) -> int:
    """A date-axis position from Plotly (``'1970-01-01 09:45:12.5'`` or ms as a number) -> ns
    since midnight of 1970-01-01 (the day the axes stand for).

    Raises
    ------
    ValueError
        Neither form.
    """
    if isinstance(value, (int, float)):
        return int(round(float(value) * 1e6))
    m = _TIME.match(str(value).strip())
    if not m:
        raise ValueError(f"not a date-axis time: {value!r}")
    y, mo, d, h, mi, s, frac = m.groups()
    days = (_dt.date(int(y), int(mo), int(d)) - _dt.date(1970, 1, 1)).days
    ns = (((days * 24 + int(h or 0)) * 60 + int(mi or 0)) * 60 + int(s or 0)) * 10**9
    if frac:
        ns += int(frac[:9].ljust(9, "0"))
    return ns


def _hms(ns: int) -> str:
    s = ns / 1e9
    return f"{int(s // 3600):02d}:{int(s % 3600 // 60):02d}:{s % 60:06.3f}"


def _marks(t0: int, t1: int) -> dict:
    s0, s1 = t0 / 1e9, t1 / 1e9
    span = s1 - s0
    step = next((v for v in (1, 5, 10, 30, 60, 300, 600, 1800, 3600) if span / v <= 8), 7200)
    first = np.ceil(s0 / step) * step
    return {float(v): {"label": _hms(int(v * 1e9))[:8 if step >= 1 else 12]}
            for v in np.arange(first, s1 + 1e-9, step)}


def _facts(run: Run) -> str:
    s = run.summary
    parts = []
    if s:
        parts.append(f"{s.get('kind', '?')} input {s.get('input', '?')}")
        parts.append(f"{s.get('messages', 0):,} messages, {s.get('book_updates', 0):,} book "
                     f"updates")
        sig = s.get("signals") or {}
        parts.append(f"{sig.get('total', 0):,} signals (buy {sig.get('buy', 0):,}, sell "
                     f"{sig.get('sell', 0):,}), {s.get('orders', 0):,} OUCH orders")
        chk = s.get("book_check")
        if chk:
            parts.append(f"book vs LOBSTER: {chk.get('rows', 0):,} rows, "
                         f"{chk.get('mismatches', 0):,} mismatches")
    else:
        parts.append(f"{run.timestamp.size:,} book updates read")
    if run.live:
        parts.append(f"live run: {run.live.get('state')}, {run.live.get('parts', 0)} parts, "
                     f"{run.live.get('book_rows', 0):,} book rows")
    return "; ".join(parts)


def _problems(run: Run) -> list:
    return [html.Li(str(p)) for p in run.problems]


def _symbol_options(run: Run) -> list:
    return [{"label": f"{name} ({n:,} updates)", "value": loc} for loc, name, n in run.symbols()]


#: The first view shows the whole run when the first symbol has at most this many book
#: updates, else the start of the day up to that many (a whole 10M-message day takes seconds
#: to read; see scripts/bench_dash.py). "full day" shows everything.
INITIAL_ROWS = 250_000


def initial_window(run: Run, locate: int, max_rows: int = INITIAL_ROWS) -> tuple[int, int]:
    """The window the page opens on: ``(t0, t1)``, ns since midnight."""
    a, b = run.span()
    rows = run.rows_of(locate)
    if rows.size <= max_rows or not run.sorted_time:
        return a, b
    return a, int(run.timestamp[rows[max_rows]])


def create_app(run: Run, *, follow: bool = False, res: figures.Resolution = figures.Resolution(),
               log=print, title: str | None = None) -> dash.Dash:
    """The dashboard of ``run``.

    Parameters
    ----------
    run : Run
    follow : bool
        Look at the run folder every second and follow a growing run.
    res : figures.Resolution
        Server-side bins.
    log : callable
        ``log(str)`` for console messages (problems with files, drawing errors).
    title : str, optional
        Page title and heading (default: ``hftaccel dash: <run folder>``).

    Returns
    -------
    dash.Dash
        Serve it with :func:`serve` (or its ``.server``, a Flask app, under any WSGI server).
    """
    title = title or f"hftaccel dash: {run.path}"
    app = dash.Dash(__name__, title=title, serve_locally=True, update_title=None)
    reported: set = set()

    def report(problems) -> None:
        for p in problems:
            if str(p) not in reported:
                reported.add(str(p))
                log(f"problem: {p}")

    report(run.problems)
    t0, t1 = run.span()
    syms = _symbol_options(run)
    v0, v1 = initial_window(run, syms[0]["value"]) if syms else (t0, t1)
    box = {"display": "inline-block", "verticalAlign": "middle", "marginRight": "12px"}
    app.layout = html.Div([
        html.H3(title, style={"margin": "4px 0"}),
        html.Ul(_problems(run), id="problems", role="alert",
                style={"color": "#b00020", "margin": "2px 0"}),
        html.Div(_facts(run), id="facts", style={"fontSize": "13px", "color": "#444"}),
        html.Div([
            html.Div([html.Label("symbol", htmlFor="symbol"),
                      dcc.Dropdown(id="symbol", options=syms, clearable=False,
                                   value=syms[0]["value"] if syms else None,
                                   style={"width": "260px"})], style=box),
            html.Button("full day", id="reset", n_clicks=0, style=box),
            html.Div([html.Label("play speed", htmlFor="speed"),
                      dcc.Dropdown(id="speed", options=list(SPEEDS), value="10x",
                                   clearable=False, style={"width": "190px"})], style=box),
            html.Button("play", id="play", n_clicks=0, style=box),
            html.Span(id="status", style={"fontSize": "12px", "color": "#555"}),
        ], style={"margin": "6px 0"}),
        html.Div(dcc.RangeSlider(id="window", min=t0 / 1e9, max=t1 / 1e9,
                                 value=[v0 / 1e9, v1 / 1e9], step=0.001, marks=_marks(t0, t1),
                                 allowCross=False, updatemode="mouseup",
                                 allow_direct_input=False),
                 style={"padding": "0 24px"}),
        dcc.Store(id="view", data={"t0": v0, "t1": v1, "end": t1}),
        dcc.Store(id="version", data=run.version),
        dcc.Interval(id="player", interval=PLAY_INTERVAL_MS, disabled=True),
        dcc.Interval(id="follow", interval=FOLLOW_INTERVAL_MS, disabled=not follow),
        *[dcc.Graph(id=f"{p}-graph", config={"displaylogo": False},
                    figure=figures.message_figure(p, "drawing...").update_layout(
                        meta="placeholder")) for p in figures.PANELS],
    ], style={"fontFamily": "sans-serif", "margin": "8px 16px"})

    @app.callback(Output("version", "data"), Input("follow", "n_intervals"),
                  State("version", "data"), prevent_initial_call=True)
    def _follow(_n, version):
        run.refresh()
        report(run.problems)
        return run.version if run.version != version else dash.no_update

    @app.callback(Output("symbol", "options"), Output("window", "min"), Output("window", "max"),
                  Output("window", "marks"), Output("problems", "children"),
                  Output("facts", "children"), Input("version", "data"),
                  prevent_initial_call=True)
    def _meta(_version):
        a, b = run.span()
        return _symbol_options(run), a / 1e9, b / 1e9, _marks(a, b), _problems(run), _facts(run)

    @app.callback(Output("view", "data"), Output("window", "value"), Output("player", "disabled"),
                  Output("play", "children"),
                  Input("window", "value"), Input("reset", "n_clicks"), Input("play", "n_clicks"),
                  Input("player", "n_intervals"), Input("price-graph", "relayoutData"),
                  Input("version", "data"),
                  State("view", "data"), State("speed", "value"), State("player", "disabled"),
                  prevent_initial_call=True)
    def _view(slider, _reset, _play, _tick, relayout, _version, view, speed, stopped):
        trig = dash.ctx.triggered_id
        a, b = run.span()
        v0, v1 = int(view["t0"]), int(view["t1"])
        width = max(v1 - v0, 1)
        playing = not stopped
        if trig == "window":
            v0, v1 = int(round(slider[0] * 1e9)), int(round(slider[1] * 1e9))
        elif trig == "reset":
            v0, v1, playing = a, b, False
        elif trig == "price-graph":
            rd = relayout or {}
            if rd.get("xaxis.autorange"):
                v0, v1 = a, b
            elif "xaxis.range[0]" in rd or "xaxis.range" in rd:
                lo, hi = (rd["xaxis.range"] if "xaxis.range" in rd else
                          (rd["xaxis.range[0]"], rd["xaxis.range[1]"]))
                try:
                    v0, v1 = parse_axis_time(lo), parse_axis_time(hi)
                except ValueError:
                    return (dash.no_update,) * 4
            else:
                return (dash.no_update,) * 4
        elif trig == "play":
            playing = not playing
            if playing and v1 >= b:            # start again from the beginning of the day
                v0, v1 = a, a + width
        elif trig == "player":
            step = SPEEDS.get(speed)
            adv = width if step is None else int(step * PLAY_INTERVAL_MS * 1e6)
            v0, v1 = v0 + adv, v1 + adv
            if v1 >= b:
                v0, v1, playing = max(a, b - width), b, False
        elif trig == "version":
            if v1 >= int(view.get("end", b)) and b > v1:    # was at the end: follow it
                v0, v1 = (v0, b) if v0 <= a else (b - width, b)
        v0, v1 = max(v0, a), min(v1, b)
        if v1 <= v0:
            v0, v1 = a, b
        return ({"t0": v0, "t1": v1, "end": b}, [v0 / 1e9, v1 / 1e9], not playing,
                "pause" if playing else "play")

    @app.callback(*[Output(f"{p}-graph", "figure") for p in figures.PANELS],
                  Output("status", "children"),
                  Input("view", "data"), Input("symbol", "value"), Input("version", "data"))
    def _draw(view, locate, _version):
        t0, t1 = int(view["t0"]), int(view["t1"])
        started = time.perf_counter()
        if run.book is None or locate is None:
            why = "; ".join(str(p) for p in run.problems) or "the run has no book updates yet"
            return (*[figures.message_figure(p, why) for p in figures.PANELS], why)
        try:
            figs, info = figures.render(run, int(locate), t0, t1, res=res)
        except (OSError, pa.ArrowException, KeyError, ValueError, IndexError) as exc:
            msg = f"could not draw {_hms(t0)}-{_hms(t1)}: {exc}"
            report([msg])
            return (*[figures.message_figure(p, msg) for p in figures.PANELS], msg)
        ms = (time.perf_counter() - started) * 1e3
        status = (f"window {_hms(t0)} - {_hms(t1)}: {info['rows']:,} book updates of the "
                  f"symbol, drawn in {ms:,.0f} ms (read {info['read_s'] * 1e3:,.0f} ms)")
        return (*[figs[p] for p in figures.PANELS], status)

    return app


def serve(app: dash.Dash, host: str = "127.0.0.1", port: int = 8050) -> None:
    """Serve ``app`` with Flask's threaded server until interrupted (a local tool: bind to
    127.0.0.1 unless you mean to share it)."""
    app.run(host=host, port=port, debug=False)
