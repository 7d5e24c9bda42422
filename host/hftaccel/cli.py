"""The ``hftaccel`` command line: thin argument parsing over library calls."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="hftaccel: ITCH 5.0 in, order book, features, int8 MLP, risk, OUCH 5.0 out.")
console = Console(stderr=True)


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=console,
                    transient=False)


def _fail(exc: Exception) -> None:
    console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(2)


@app.command()
def run(
    input: Optional[Path] = typer.Argument(None, help="ITCH file, pcap/pcapng or LOBSTER message "
                                           "file (default: the embedded AMZN 2012-06-21 sample)"),
    backend: str = typer.Option("cpu", help="cpu (golden model), gpu (features and scores "
                                "in CUDA kernels; falls back to cpu without CuPy or a device) "
                                "or rtl (the gateware in Verilator, compared with golden)"),
    strict: bool = typer.Option(False, "--strict", help="with --backend gpu: fail instead of "
                                "falling back to the CPU when the GPU path is unavailable"),
    out: Optional[Path] = typer.Option(None, help="folder for summary.json and book.parquet"),
    json_out: bool = typer.Option(False, "--json", help="print the JSON summary to stdout"),
    lenient: bool = typer.Option(False, help="count and skip malformed input instead of "
                                 "stopping at the first error"),
    depth: int = typer.Option(8, help="book levels per side in the records"),
    model: Optional[Path] = typer.Option(None, help="ONNX QCDQ model (default: the committed "
                                         "models/default.onnx)"),
    threshold: float = typer.Option(1.0, help="decision threshold: margin of the up (down) "
                                    "logit over the other classes to buy (sell)"),
    kill_switch: bool = typer.Option(False, "--kill-switch", help="start with the risk gate's "
                                     "kill switch on (every intent is blocked)"),
    route: Optional[str] = typer.Option(None, "--route", metavar="HOST:PORT", help="send the "
                                        "orders to this OUCH 5.0 / SoupBinTCP venue"),
    venue_sim: bool = typer.Option(False, "--venue-sim", help="send the orders to a venue "
                                   "simulator on loopback filling against the replayed book"),
    journal: Optional[Path] = typer.Option(None, help="router journal (default: "
                                           "<out>/router.journal when --out is given)"),
    live: bool = typer.Option(False, "--live", help="with --out: write the book and signals "
                              "as part files (DIR/book/, DIR/signals/) and DIR/live.json as "
                              "the run goes, for `hftaccel dash DIR --follow`"),
    records: str = typer.Option("all", "--records", help="book records written to "
                                "book.parquet with --out: none, bbo (level 1 of every update) "
                                "or all (every level; a full day is ~100 GB)"),
    chunk_mb: float = typer.Option(8.0, "--chunk-mb", help="input read per chunk, MiB (memory "
                                   "does not grow with the input)"),
) -> None:
    """Replay a trading day through the pipeline: book, features, int8 MLP, risk gate, OUCH.

    The replay streams: the input is read, decoded, booked, scored and written chunk by chunk.
    Ctrl-C or SIGTERM stops it after the current chunk with valid partial outputs and a
    summary marked "complete": false."""
    target = _route_target(route, venue_sim)  # bad routing options fail before the replay
    if backend not in ("cpu", "gpu", "rtl"):
        _fail(ValueError(f"backend {backend!r} is not available in this build (choose cpu, "
                         "gpu or rtl)"))
    from hftaccel.backends.output import RECORDS_MODES, RunWriter

    if records not in RECORDS_MODES:
        _fail(ValueError(f"--records must be one of {', '.join(RECORDS_MODES)}, got "
                         f"{records!r}"))
    if not chunk_mb > 0:
        _fail(ValueError(f"--chunk-mb must be > 0, got {chunk_mb}"))
    if live and out is None:
        _fail(ValueError("--live needs --out DIR"))
    writer = None
    if out is not None:
        try:
            live_writer = None
            if live:
                from hftaccel.dash.live import LiveWriter
                live_writer = LiveWriter(out)
            writer = RunWriter(out, records=records, live=live_writer, depth=depth)
        except OSError as exc:
            _fail(exc)
    from hftaccel.backends import cpu, gpu, rtl
    from hftaccel.feeds.itch import ItchError

    with _progress() as bar, _stop_on_signals() as stopping:
        tasks = {}
        began = time.perf_counter()

        def tick(stage, done, total, messages=None):
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total, rate="")
            rate = ""
            if messages is not None:
                elapsed = time.perf_counter() - began
                rate = f"{messages:,} msgs, {messages / elapsed:,.0f} msg/s" if elapsed else ""
            bar.update(tasks[stage], completed=done, total=total, rate=rate)

        try:
            kw = {"strict": strict} if backend == "gpu" else {}
            if backend != "rtl":
                kw.update(sink=writer, keep=target is not None, stop=stopping,
                          chunk_bytes=max(1, int(chunk_mb * (1 << 20))))
            result = {"cpu": cpu, "gpu": gpu, "rtl": rtl}[backend].run(
                input, lenient=lenient, depth=depth, model=model, threshold_logit=threshold,
                kill_switch=kill_switch, progress=tick, **kw)
        except (ItchError, ValueError, FileNotFoundError, RuntimeError,
                gpu.GpuUnavailableError) as exc:
            if writer is not None:
                writer.close()   # what was written stays readable
            _fail(exc)
        if backend == "rtl" and writer is not None:   # the RTL's records, written at the end
            for a in range(0, result.records.shape[0], cpu.CHUNK_EVENTS):
                sc = result.extra["scoring"]
                part = slice(a, a + cpu.CHUNK_EVENTS)
                writer(result.records[part], dataclasses.replace(
                    sc, features=sc.features[part], logits=sc.logits[part],
                    decisions=sc.decisions[part], ouch=sc.ouch if a == 0 else b""))
    summary = result.summary
    if target is not None and summary.get("complete", True):
        if writer is not None and writer.live is not None:
            writer.live.set_state("routing")
        _route(result, summary, target, journal or (out / "router.journal" if out else None))
    if writer is not None:
        summary_paths = ", ".join(str(p) for p in writer.finish(summary))
    if json_out:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        _print_summary(summary)
        if out is not None:
            console.print(f"wrote {summary_paths}")
    if not summary.get("complete", True):
        console.print("[yellow]interrupted:[/yellow] partial outputs, summary marked "
                      "\"complete\": false")
        raise typer.Exit(130)
    check = summary.get("book_check")
    if check and check.get("mismatches"):
        raise typer.Exit(1)
    if "rtl" in summary and any(summary["rtl"]["mismatches"].values()):
        raise typer.Exit(1)


@contextlib.contextmanager
def _stop_on_signals():
    """While the block runs, Ctrl-C (SIGINT) and SIGTERM ask the replay to stop after the
    current chunk (a second one interrupts at once); yields the ``stop()`` callable."""
    import signal
    import threading

    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag.is_set
        return

    def handler(signum, frame):
        if flag.is_set():
            raise KeyboardInterrupt
        flag.set()

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag.is_set
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def _route_target(route: Optional[str], venue_sim: bool):
    """``None`` (no routing), ``"sim"`` or ``(host, port)`` from ``--route`` / ``--venue-sim``."""
    if route is None:
        return "sim" if venue_sim else None
    if venue_sim:
        _fail(ValueError("give either --route HOST:PORT or --venue-sim, not both"))
    host, _, port = route.rpartition(":")
    if not host or not port.isdigit():
        _fail(ValueError(f"--route wants HOST:PORT, got {route!r}"))
    return host, int(port)


def _route(result, summary: dict, target, journal: Optional[Path]) -> None:
    """Send the run's orders through the router; add fills, position and P&L to ``summary``."""
    from hftaccel.backends import cpu
    from hftaccel.router import RouterError, SoupError, pipeline, venue
    from hftaccel.spec.risk import RiskConfig

    sc = result.extra["scoring"]
    inp = pipeline.RouteInput.from_decisions(sc.orders, sc.decisions, result.records)
    market = host = port = None
    if target == "sim":
        market = venue.Market.from_records(result.records, cpu.symbol_table(result.feed.messages))
    else:
        host, port = target
    if journal is not None:
        journal.parent.mkdir(parents=True, exist_ok=True)
    with console.status(f"routing {inp.orders.shape[0]:,} orders"):
        try:
            routing = pipeline.route(inp, risk_config=RiskConfig(**summary["risk_config"]),
                                     host=host, port=port, market=market, journal=journal)
        except (RouterError, SoupError, OSError) as exc:
            _fail(exc)
    summary["routing"] = routing
    summary["fills"] = routing["fills"]
    summary["position"] = routing["position"]
    summary["pnl_usd"] = routing["pnl_usd"]


def _print_summary(s: dict) -> None:
    out = Console()
    t = Table(title=f"hftaccel run ({s['backend']}): {Path(s['input']).name}", show_header=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_row("input kind", s["kind"])
    t.add_row("messages", f"{s['messages']:,}")
    t.add_row("  by type", "  ".join(f"{k} {v:,}" for k, v in s["messages_by_type"].items()))
    if s["kind"] == "pcap":
        t.add_row("MoldUDP64 packets", f"{s['packets']:,}")
        t.add_row("MoldUDP64 gaps", f"{len(s['gaps'])} ({sum(g['count'] for g in s['gaps']):,} "
                  "messages missing)")
        t.add_row("MoldUDP64 duplicates", f"{s['duplicates']:,}")
    if any(s["skipped"].values()):
        t.add_row("skipped (malformed)", ", ".join(f"{k} {v}" for k, v in s["skipped"].items()
                                                   if v))
    t.add_row("book updates", f"{s['book_updates']:,}")
    t.add_row("live orders at end", f"{s['live_orders']:,}")
    bad = s["bad_references"]
    t.add_row("bad references", ", ".join(f"{k} {v}" for k, v in bad.items() if v) or "none")
    if s.get("synthesized"):
        t.add_row("LOBSTER: synthesized", f"{s['synthesized'].get('total', 0):,} messages")
    t.add_row("throughput", f"{s['throughput_msgs_per_s']:,.0f} messages/s (all stages)")
    sig = s["signals"]
    t.add_row("signals", f"{sig['total']:,} (buy {sig['buy']:,}, sell {sig['sell']:,})")
    t.add_row("OUCH 5.0 orders", f"{s['orders']:,}")
    rej = {k: v for k, v in s["risk_rejects"].items() if v}
    t.add_row("risk rejects", ", ".join(f"{k} {v:,}" for k, v in rej.items()) or "none")
    t.add_row("model", f"{Path(s['model']['path']).name} (card sha256 "
              f"{(s['model']['card_sha256'] or 'none')[:12]})")
    ev = s["evaluation"]
    for label, e in (("signals", ev), ("orders", ev["orders"])):
        t.add_row(f"mark-to-market, {label}",
                  f"{e['signals']:,} over {ev['basis']}, h={ev['horizon']}: "
                  f"gross {e['gross_ticks_per_share']:+.2f} ticks/share, net of spread "
                  f"{e['net_ticks_per_share']:+.2f} (hit {e['net_hit_rate']:.0%}), "
                  f"net P&L ${e['net_pnl_usd']:,.0f}")
    check = s.get("book_check")
    if check is None:
        t.add_row("book check", "no LOBSTER orderbook beside the input")
    else:
        ok = "[green]OK[/green]" if check["mismatches"] == 0 and check["rows"] else "[red]FAIL[/red]"
        t.add_row("book check vs LOBSTER",
                  f"{check['rows']:,} rows, {check['mismatches']:,} mismatches {ok}")
    r = s.get("routing")
    if r is not None:
        m = r["messages"]
        t.add_row("routed to", f"{r['venue']} session {r['session']}: {m['enter']:,} sent, "
                  f"{m['accepted']:,} accepted, {m['rejected']:,} rejected")
        rej = {k: v for k, v in r["risk_rejects"].items() if v}
        t.add_row("router risk rejects", ", ".join(f"{k} {v:,}" for k, v in rej.items()) or "none")
        t.add_row("fills", f"{r['fills']:,} ({r['filled_shares']:,} shares)")
        t.add_row("position", ", ".join(f"{k} {v:+,}" for k, v in r["position"].items()) or "flat")
        t.add_row("P&L", f"${r['pnl_usd']:,.2f} (realized ${r['realized_pnl_usd']:,.2f})")
    g = s.get("rtl")
    if g is not None:
        bad = {k: v for k, v in g["mismatches"].items() if v}
        verdict = "[green]bit-exact[/green]" if not bad else f"[red]{bad}[/red]"
        t.add_row("RTL vs golden", f"{sum(g['counts'].values()):,} items compared: {verdict}")
        tt = g["tick_to_trade_cycles"]
        if tt.get("n"):
            t.add_row("tick-to-trade", f"{tt['min']} / {tt['median']:.0f} / {tt['p99']:.0f} / "
                      f"{tt['max']} cycles (min / median / p99 / max, {tt['n']:,} orders)")
        t.add_row("stages (median cycles)", "  ".join(
            f"{k} {v['median']:.0f}" for k, v in g["stages"].items() if v.get("n")))
        t.add_row("simulation", f"{g['cycles']:,} cycles in {g['sim_wall_s']:.1f} s "
                  f"({g['sim_cycles_per_s']:,.0f} cycles/s)")
    out.print(t)


@app.command()
def train(
    out: Path = typer.Option(Path("models/default"), help="output path prefix: writes "
                             "<out>.onnx (QCDQ), <out>.qonnx.onnx and <out>.json (model card)"),
    seed: int = typer.Option(0),
    horizon: int = typer.Option(20, help="label horizon, book updates"),
    alpha: float = typer.Option(5e-5, help="label threshold on the relative mid change"),
    hidden: str = typer.Option("32,16", help="hidden layer widths"),
    bits: int = typer.Option(8, help="weight and activation bit width (4..8)"),
    qat_epochs: Optional[int] = typer.Option(None, help="QAT epochs (default: the library's)"),
) -> None:
    """Quantization-aware training on the AMZN day (torch + brevitas) -> ONNX QCDQ/QONNX + card."""
    import dataclasses

    from hftaccel.model import dataset, labels
    from hftaccel.model import train as mtrain

    cfg = mtrain.TrainConfig(label=labels.LabelConfig(horizon=horizon, alpha=alpha, method="mean"),
                             seed=seed, hidden=tuple(int(h) for h in hidden.split(",")),
                             weight_bits=bits, act_bits=bits)
    if qat_epochs is not None:
        cfg = dataclasses.replace(cfg, qat_epochs=qat_epochs)
    with console.status("replaying the AMZN day: book and features"):
        feats, mids, info = dataset.amzn_day()
    with console.status(f"training (QAT int{bits}, float MLP, logistic regression)"):
        res = mtrain.train(feats, mids, cfg, out=str(out), data=info)
    t = Table(title=f"hftaccel train: {out}.onnx")
    t.add_column("split")
    t.add_column("model")
    for col in ("macro-F1", "accuracy", "MCC"):
        t.add_column(col, justify="right")
    for split, per in res.metrics.items():
        for name, m in per.items():
            t.add_row(split, name, f"{m['macro_f1']:.4f}", f"{m['accuracy']:.4f}",
                      f"{m['mcc']:.4f}")
    Console().print(t)
    console.print(f"wrote {', '.join(str(p) for p in res.paths.values())}")


@app.command()
def convert(
    message_file: Path = typer.Argument(..., help="LOBSTER message file (.csv or .csv.gz)"),
    out: Path = typer.Argument(..., help="output: .pcap / .pcapng (MoldUDP64) or .itch[.gz]"),
    stock: Optional[str] = typer.Option(None, help="ticker (default: from the file name)"),
    date: Optional[str] = typer.Option(None, help="trading date YYYY-MM-DD (default: from the "
                                       "file name)"),
) -> None:
    """Convert a LOBSTER day into ITCH 5.0 (file or MoldUDP64 pcap)."""
    import re

    from hftaccel.feeds import itch, lobster, source

    name = message_file.name
    m = re.match(r"^([A-Za-z.]+)_(\d{4}-\d{2}-\d{2})", name)
    stock = stock or (m.group(1) if m else "LOBSTER")
    date = date or (m.group(2) if m else "1970-01-01")
    lob = source.find_lobster_beside(message_file)
    book = lobster.load_orderbook(lob.orderbook_path) if lob else None
    try:
        conv = lobster.to_itch(lobster.load_messages(message_file), book, stock=stock.upper())
    except ValueError as exc:
        _fail(exc)
    if out.suffix in (".pcap", ".pcapng"):
        from hftaccel.feeds import moldudp64

        stats = moldudp64.write_pcap(out, conv.messages, date=date, pcapng=out.suffix == ".pcapng")
        console.print(f"wrote {out}: {stats.packets:,} packets, {stats.messages:,} messages")
    else:
        n = itch.write_file(out, conv.messages)
        console.print(f"wrote {out}: {itch.n_messages(conv.messages):,} messages, {n:,} bytes")
    console.print(f"synthesized: {conv.synthesized}")


@app.command()
def generate(
    out: Path = typer.Argument(..., help="output ITCH file (.itch or .itch.gz)"),
    messages: int = typer.Option(1_000_000, help="number of messages"),
    symbols: int = typer.Option(1000, help="number of stock locates"),
    seed: int = typer.Option(0),
    hawkes: bool = typer.Option(False, help="clustered (self-exciting) arrivals"),
) -> None:
    """Write a seeded synthetic multi-symbol ITCH 5.0 stream in bounded memory."""
    from hftaccel.feeds import synthetic

    stats = synthetic.write_itch(out, messages, n_symbols=symbols, seed=seed, hawkes=hawkes)
    console.print(f"wrote {out}: {stats}")


@app.command()
def venue(
    input: Optional[Path] = typer.Argument(None, help="replay whose book the venue fills "
                                           "against (default: the embedded AMZN sample)"),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(0, help="TCP port (0: any free one, printed)"),
    username: str = typer.Option("HFT"),
    password: str = typer.Option(""),
    latency_us: float = typer.Option(0.0, help="delay before each inbound message is handled"),
    reject_rate: float = typer.Option(0.0, help="fraction of new orders rejected at random"),
    reject_symbol: list[str] = typer.Option([], help="reject every order for this symbol"),
    max_quantity: int = typer.Option(999_999, help="reject orders above this many shares"),
    speed: float = typer.Option(1.0, help="replay clock speed (x real time)"),
    seed: int = typer.Option(0),
) -> None:
    """OUCH 5.0 / SoupBinTCP 4.0 venue simulator on loopback, filling against a replayed book."""
    import asyncio

    from hftaccel.backends import cpu
    from hftaccel.feeds import source
    from hftaccel.golden.book import Book
    from hftaccel.router import venue as rvenue

    path = input if input is not None else source.embedded_sample()
    with console.status(f"replaying {path.name} for the venue's book"):
        feed = source.open_feed(path)
        records = Book().apply(feed.events)
    market = rvenue.Market.from_records(records, cpu.symbol_table(feed.messages))
    cfg = rvenue.VenueConfig(username=username, password=password, latency_us=latency_us,
                             reject_rate=reject_rate, reject_symbols=tuple(reject_symbol),
                             max_quantity=max_quantity, seed=seed, speed=speed)
    sim = rvenue.Venue(market, cfg, clock="wall")

    def ready(bound: int) -> None:
        sys.stdout.write(f"{host}:{bound}\n")
        sys.stdout.flush()
        console.print(f"venue simulator listening on {host}:{bound} ({len(market.symbols)} "
                      f"symbols, {records.shape[0]:,} book states); Ctrl-C stops it")

    try:
        asyncio.run(rvenue.serve(sim, host, port, ready=ready))
    except KeyboardInterrupt:
        console.print(f"venue stopped: {sim.stats}")


@app.command()
def profile(
    input: Optional[Path] = typer.Argument(None, help="ITCH file, pcap/pcapng or LOBSTER message "
                                           "file (default: the embedded AMZN 2012-06-21 sample)"),
    backends: str = typer.Option("cpu,gpu,rtl", help="comma-separated backends to measure"),
    board: Optional[str] = typer.Option(None, help="board whose latest build report "
                                        "(build/boards/NAME or build/NAME, report.json) gives "
                                        "the fmax; default: a stated nominal 156.25 MHz"),
    out: Path = typer.Option(Path("build/profile"), help="folder for report.html, report.md, "
                             "report.json, the PNG plots and the replay's latency.json"),
    model: Optional[Path] = typer.Option(None, help="ONNX QCDQ model (default: "
                                         "models/default.onnx)"),
    threshold: float = typer.Option(1.0, help="decision threshold in logits (as run), every "
                                    "backend"),
    rtl_params: Optional[str] = typer.Option(None, help="JSON object of hftaccel.rtl.top.Top "
                                             "parameters for the replay build (default: the "
                                             "replay's)"),
    rtl_latency: Optional[Path] = typer.Option(None, help="report this latency.json instead of "
                                               "simulating (no histograms)"),
    cpu_events: int = typer.Option(100_000, help="order events timed one at a time on the CPU"),
    cpu_batch: int = typer.Option(1, help="events per timed CPU step"),
    json_out: bool = typer.Option(False, "--json", help="print report.json to stdout"),
) -> None:
    """Latency profile of the backends on one input: self-contained HTML, Markdown, JSON, PNGs."""
    from hftaccel.profile import profile as run_profile

    try:
        params = json.loads(rtl_params) if rtl_params else None
    except ValueError as exc:
        _fail(ValueError(f"--rtl-params is not JSON: {exc}"))
    with console.status("profiling") as status:
        try:
            rep = run_profile(input, backends=[b.strip() for b in backends.split(",") if b.strip()],
                              board=board, out=out, model=model, threshold_logit=threshold,
                              rtl_params=params, rtl_latency_json=rtl_latency,
                              cpu_max_events=cpu_events, cpu_batch=cpu_batch,
                              progress=lambda stage: status.update(f"profiling: {stage}"))
        except (ValueError, TypeError, FileNotFoundError, RuntimeError) as exc:
            _fail(exc)
    if json_out:
        print(json.dumps(rep, indent=2))
    table = Table("backend", "what", "result", title=rep["title"])
    for row in rep["summary"]:
        table.add_row(row["backend"], row["metric"], row["value"])
    console.print(table)
    console.print(f"wrote {rep['paths']['html']}, {rep['paths']['md']}, {rep['paths']['json']}")


@app.command()
def build(
    board: Optional[str] = typer.Option(None, help="versa (ECP5-5G Versa, LFE5UM5G-45F) or "
                                        "ulx3s (85F): a whole-chip bitstream"),
    stage: Optional[str] = typer.Option(None, help="one pipeline stage out of context "
                                        "(eth, moldudp64, itch, risk, ouch, csr, lookup, "
                                        "meter, book, features, mlp) or 'all' "
                                        "(hftaccel.boards.stage)"),
    model: Optional[Path] = typer.Option(None, help="ONNX model for the MLP (default: the "
                                         "package's default model)"),
    seed: int = typer.Option(1, help="nextpnr placement seed"),
    out: Optional[Path] = typer.Option(None, help="output folder (default build/boards/BOARD "
                                       "or build/stages/STAGE)"),
    config: str = typer.Option("default", help="board: core configuration default, folded, "
                               "small, shell (hftaccel.boards.build.CONFIGS); stage: a key of "
                               "hftaccel.boards.stage.STAGES[STAGE].configs"),
    core_mhz: float = typer.Option(156.25, "--core-mhz", "--freq",
                                   help="core clock (board) or clock constraint (stage), MHz"),
    device: str = typer.Option("LFE5UM5G-85F", help="stage builds: ECP5 device"),
    speed: int = typer.Option(8, help="stage builds: ECP5 speed grade"),
    jobs: int = typer.Option(2, help="stage builds with --stage all: builds at a time"),
    json_out: bool = typer.Option(False, "--json", help="stage builds: print the report as "
                                  "JSON"),
) -> None:
    """Build an ECP5 bitstream (Amaranth, Yosys, nextpnr-ecp5, ecppack) with a timing and
    utilization report, or one stage out of context (--stage)."""
    from hftaccel.boards import build as bbuild

    if (board is None) == (stage is None):
        _fail(ValueError("give exactly one of --board BOARD or --stage STAGE"))
    try:
        if stage is not None:
            from hftaccel.boards.commands import run_stage_build
            rep = run_stage_build(stage, config=config, device=device, speed=speed,
                                  freq_mhz=core_mhz, seed=seed, out=out, jobs=jobs,
                                  console=console)
            if json_out:
                print(json.dumps(rep, indent=1))
            bad = rep if isinstance(rep, list) else [rep]
            if any("error" in r for r in bad):
                raise typer.Exit(1)
            return
        from hftaccel.boards.commands import run_build
        run_build(board, model=model, seed=seed, out=out, config=config, core_mhz=core_mhz,
                  console=console)
    except (ValueError, bbuild.BuildError) as exc:
        _fail(exc)


@app.command()
def deploy(
    board: str = typer.Option(..., help="versa or ulx3s"),
    sram: bool = typer.Option(True, "--sram/--flash", help="program SRAM (volatile, default) "
                              "or the configuration flash"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan, touch nothing"),
    config: str = typer.Option("default"),
    model: Optional[Path] = typer.Option(None),
    seed: int = typer.Option(1),
    out: Optional[Path] = typer.Option(None),
    cable: Optional[str] = typer.Option(None, help="openFPGALoader cable (-c) instead of the "
                                        "board's default"),
) -> None:
    """Program a board through openFPGALoader, rebuilding first if the bitstream is stale."""
    from hftaccel.boards import build as bbuild
    from hftaccel.boards import deploy as bdeploy
    from hftaccel.boards.commands import run_deploy

    try:
        run_deploy(board, flash=not sram, dry_run=dry_run, out=out, config=config, model=model,
                   seed=seed, cable=cable, console=console)
    except (ValueError, bbuild.BuildError, bdeploy.DeployError) as exc:
        _fail(exc)


@app.command()
def status(
    port: str = typer.Option(..., help="serial device of the board's UART bridge"),
    board: str = typer.Option("versa", help="board whose csr_map.json to use"),
    csr_map: Optional[Path] = typer.Option(None, help="register map (default: "
                                           "build/boards/BOARD/csr_map.json)"),
    baud: int = typer.Option(115200),
    register: list[str] = typer.Option([], help="read only these registers"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Read a programmed board's counters and registers over the UART bridge."""
    from hftaccel.boards import build as bbuild
    from hftaccel.boards.commands import run_status
    from hftaccel.boards.uart import BridgeError

    path = csr_map or bbuild.default_out(board) / "csr_map.json"
    if not path.exists():
        _fail(FileNotFoundError(f"{path} not found: build the bitstream first "
                                f"(hftaccel build --board {board}) or pass --csr-map"))
    try:
        run_status(port, csr_map=path, baud=baud, names=register or None, as_json=as_json,
                   console=console)
    except (OSError, BridgeError, KeyError) as exc:
        _fail(exc)


@app.command("dash")
def dash_command(
    target: Optional[Path] = typer.Argument(None, metavar="[RUN_DIR | INPUT]", help="folder "
                                            "written by `hftaccel run --out` (or --live), or "
                                            "any input `hftaccel run` takes, replayed first "
                                            "(default: the embedded AMZN 2012-06-21 day)"),
    port: int = typer.Option(8050, help="TCP port"),
    host: str = typer.Option("127.0.0.1", help="address to listen on: this machine only by "
                             "default; 0.0.0.0 shares the dashboard with the network"),
    follow: bool = typer.Option(False, "--follow", help="look at RUN_DIR every second and "
                                "follow a live run (`hftaccel run --out DIR --live`)"),
    latency: Optional[Path] = typer.Option(None, help="tick-to-trade report to show "
                                           "(build/sim/latency.json or an `hftaccel profile` "
                                           "report.json; default: the newest of RUN_DIR's, "
                                           "build/profile's and build/sim's)"),
    backend: str = typer.Option("cpu", help="backend that replays an INPUT: cpu, gpu or rtl"),
) -> None:
    """Browser dashboard of a trading day (Dash + Plotly): liquidity heatmap, order flow,
    signals and orders, risk rejections, fills, pipeline rates, tick-to-trade."""
    import tempfile

    try:
        from hftaccel.dash import app as dash_app
        from hftaccel.dash.data import Run
    except ImportError as exc:
        _fail(RuntimeError(f"hftaccel dash needs the [dash] extra ({exc}): "
                           "pip install -e '.[dash]'"))
    tmp = None
    run_dir = target
    if target is None or target.is_file():
        tmp = tempfile.TemporaryDirectory(prefix="hftaccel-dash-")
        run_dir = Path(tmp.name)
        try:  # the replay, its progress bar and its summary exactly as `hftaccel run --out`
            run(input=target, backend=backend, strict=False, out=run_dir, json_out=False,
                lenient=False, depth=8, model=None, threshold=1.0, kill_switch=False,
                route=None, venue_sim=False, journal=None, live=False, records="all",
                chunk_mb=8.0)
        except typer.Exit as exc:
            if exc.exit_code != 1:  # 1: a book-check mismatch, which the page shows too
                tmp.cleanup()
                raise
    data = Run(run_dir, latency=latency)
    shown = run_dir if tmp is None else (target or Path("the embedded AMZN 2012-06-21 day"))
    web = dash_app.create_app(data, follow=follow, title=f"hftaccel dash: {shown}",
                              log=lambda m: console.print(f"[yellow]{m}[/yellow]"))
    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]warning:[/yellow] listening on {host}: whoever reaches this "
                      "machine can open the dashboard")
    console.print(f"serving {shown} on http://{host}:{port}/ (Ctrl-C stops)")
    if tmp is not None:  # a kill removes the replay's temporary folder too
        import signal
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        dash_app.serve(web, host, port)
    except OSError as exc:
        _fail(exc)
    finally:
        if tmp is not None:
            tmp.cleanup()


def main() -> None:
    """Entry point of the ``hftaccel`` console script."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
