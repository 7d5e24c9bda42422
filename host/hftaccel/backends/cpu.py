"""CPU backend: the golden pipeline on the host, the reference replay.

decode (ITCH / MoldUDP64 / LOBSTER) -> order book -> features -> int8 MLP -> decision and risk
gate -> OUCH 5.0 Enter Orders.

This is what ``hftaccel run --backend cpu`` executes. Every stage is a library call over NumPy
record arrays (Numba inside); this module only sequences them, times them and builds the
summary that the CLI prints and writes as JSON.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numba
import numpy as np

from hftaccel.feeds import itch, source
from hftaccel.golden.book import Book
from hftaccel.spec import BOOK_DEPTH, ORDER_EVENT_DTYPE, book_record_dtype

from .check import BookCheck, LevelCheck, check_level1

__all__ = ["RunResult", "Scoring", "run", "score", "scored_updates", "default_model",
           "CHUNK_EVENTS",
           "symbol_table",
           "lobster_mapping", "records_table"]


@dataclass
class RunResult:
    """What a replay produced.

    Attributes
    ----------
    summary : dict
        The JSON summary (see :func:`run`).
    records : np.ndarray of BOOK_RECORD_DTYPE
        One book record per book update, in sequence order.
    feed : hftaccel.feeds.source.Feed
    """

    summary: dict
    records: np.ndarray
    feed: object = None
    extra: dict = field(default_factory=dict)


def lobster_mapping(feed) -> tuple | None:
    """Map the LOBSTER rows of the day ``feed`` describes to the feed's sequence numbers.

    Returns ``(main_seq, orderbook, stock_locate)`` or None when no LOBSTER files lie beside the
    input, or when the input is not the ITCH stream the converter makes from them (checked by
    comparing every book-relevant message).
    """
    from hftaccel.feeds import lobster

    if feed.lobster is None:
        return None
    orderbook = lobster.load_orderbook(feed.lobster.orderbook_path)
    conv = feed.conversion
    if conv is None:
        conv = lobster.to_itch(lobster.load_messages(feed.lobster.message_path), orderbook,
                               stock=feed.lobster.message_path.name.split("_")[0])
        ours = itch.order_events(conv.messages)
        theirs = feed.events
        fields = [n for n in ours.dtype.names if n not in ("seq", "_pad")]
        if ours.shape != theirs.shape or any(
                not np.array_equal(ours[n], theirs[n]) for n in fields) or not np.array_equal(
                ours["seq"] + np.uint64(feed.seq_base), theirs["seq"]):
            return None
    locate = int(conv.messages["R"]["stock_locate"][0])
    return conv.main_seq + np.uint64(feed.seq_base), orderbook, locate


#: Committed-notional budget of a replayed session used by ``run`` when no risk config is given:
#: USD 100M in 1/10,000 USD (the gate's notional counts every approved order of the session).
DEFAULT_SESSION_NOTIONAL = 100_000_000 * 10_000


def default_model() -> Path:
    """Path of the committed default model (``models/default.onnx``, package data)."""
    return Path(str(resources.files("hftaccel.models") / "default.onnx"))


@dataclass
class Scoring:
    """Per-update outputs of the scoring half of the pipeline, aligned with the book records.

    Attributes
    ----------
    features : np.ndarray, int32, shape (n, N_FEATURES)
    logits : np.ndarray, int32, shape (n, 3)
        Integer logits (down, flat, up) of the int8 MLP; float value = logit * 2**output_exp.
    decisions : np.ndarray of DECISION_DTYPE, shape (n,)
        Intent, verdict and rejection reason of every update.
    orders : np.ndarray of ENTER_ORDER_DTYPE, shape (k,)
        OUCH 5.0 Enter Orders of the approved decisions.
    ouch : bytes
        The orders as OUCH 5.0 Enter Order messages inside SoupBinTCP Unsequenced Data
        packets, as they would leave on the order entry session.
    """

    features: np.ndarray
    logits: np.ndarray
    decisions: np.ndarray
    orders: np.ndarray
    ouch: bytes
    risk_state: object = None


def score(records: np.ndarray, model, risk_config, symbols, *, infer=None) -> Scoring:
    """Features, integer MLP, decision + risk gate and OUCH orders for every book record.

    Parameters
    ----------
    records : np.ndarray of BOOK_RECORD_DTYPE, shape (n,)
    model : hftaccel.golden.mlp.IntegerMLP
    risk_config : hftaccel.spec.risk.RiskConfig
    symbols : np.ndarray of S8, shape (65536,)
        Stock locate -> symbol (from the Stock Directory messages).
    infer : callable, optional
        ``infer(records, model) -> (features, logits)`` computing the features and logits
        elsewhere (the GPU backend), bit-exact with the golden model; default: the golden
        model on the CPU.

    Returns
    -------
    Scoring
    """
    from hftaccel.golden import features as gfeatures
    from hftaccel.golden import ouch, risk

    if infer is None:
        feats = gfeatures.FeatureEngine().update(records)
        logits = model.run(feats)
    else:
        feats, logits = infer(records, model)
    if logits.size and (logits.min() < -(1 << 31) or logits.max() >= (1 << 31)):
        raise ValueError("MLP logits do not fit int32")
    decisions, state = risk.run(scored_updates(records, logits), risk_config)
    orders = ouch.orders_from_decisions(decisions, symbols)
    framed = ouch.frame_enter_orders(orders) if orders.shape[0] else np.zeros(0, np.uint8)
    return Scoring(feats, logits.astype(np.int32), decisions, orders,
                   np.asarray(framed).tobytes(), state)


@functools.lru_cache(maxsize=1)
def _placeholder_symbols() -> np.ndarray:
    return np.char.add(b"L", np.char.zfill(np.arange(1 << 16).astype("S5"), 5)).astype("S8")


def scored_updates(records: np.ndarray, logits: np.ndarray, *, out: np.ndarray | None = None
                   ) -> np.ndarray:
    """The decision stage's input: best bid/offer of every book record with its MLP logits.

    Parameters
    ----------
    records : np.ndarray of BOOK_RECORD_DTYPE, shape (n,)
    logits : np.ndarray of int, shape (n, 3)
    out : np.ndarray of SCORED_UPDATE_DTYPE, optional
        Zero-initialised buffer of at least n rows to fill (reused from step to step by the
        replay: every field but the padding is overwritten); default: a new array.

    Returns
    -------
    np.ndarray of hftaccel.spec.risk.SCORED_UPDATE_DTYPE, shape (n,)
        ``out[:n]`` when ``out`` is given.

    Raises
    ------
    ValueError
        ``out`` is too short or not of SCORED_UPDATE_DTYPE.
    """
    from hftaccel.spec.risk import SCORED_UPDATE_DTYPE

    n = records.shape[0]
    if out is None:
        updates = np.zeros(n, SCORED_UPDATE_DTYPE)
    elif out.dtype != SCORED_UPDATE_DTYPE or out.shape[0] < n:
        raise ValueError(f"out must be a SCORED_UPDATE_DTYPE array of >= {n} rows, got "
                         f"{out.dtype} of {out.shape[0]}")
    else:
        updates = out[:n]
    for name in ("timestamp", "seq", "stock_locate"):
        updates[name] = records[name]
    updates["best_bid"] = records["bid_price"][:, 0]
    updates["best_ask"] = records["ask_price"][:, 0]
    updates["scores"] = logits
    return updates


def symbol_table(messages: dict, base: np.ndarray | None = None) -> np.ndarray:
    """Stock locate -> 8-byte symbol from Stock Directory (R) messages, applied over ``base``
    (a (65536,) S8 table, not modified); symbols never named are ``L<locate>`` (5 digits) so
    an order can still be written."""
    table = (_placeholder_symbols() if base is None else base).copy()
    r = messages.get("R")
    if r is not None and len(r):
        table[r["stock_locate"]] = r["stock"]
    return table


def default_risk_config(engine, threshold_logit: float = 1.0, *, kill_switch: bool = False):
    """The risk config ``hftaccel run`` uses unless given one (every backend, the gateware's
    register reset values too).

    Parameters
    ----------
    engine : hftaccel.golden.mlp.IntegerMLP
        The model; its output exponent converts ``threshold_logit`` to integer logits.
    threshold_logit : float
        Buy/sell threshold: margin of the up (down) logit over the other classes, logits.
    kill_switch : bool
        Start with the kill switch on.

    Returns
    -------
    hftaccel.spec.risk.RiskConfig
        Library defaults, thresholds ``round(threshold_logit * 2**-output_exp)``, session gross
        notional :data:`DEFAULT_SESSION_NOTIONAL` (1/10,000 USD).
    """
    from hftaccel.spec.risk import RiskConfig

    thr = int(round(threshold_logit * 2.0 ** -int(engine.output_exp.max())))
    return RiskConfig(buy_threshold=thr, sell_threshold=thr,
                      max_gross_notional=DEFAULT_SESSION_NOTIONAL, kill_switch=int(kill_switch))


#: Order events handed to the book (and then to features, MLP, risk and OUCH) per step: small
#: enough that a step's arrays stay in cache and are reused by the allocator.
CHUNK_EVENTS = 65_536


def run(path=None, *, lenient: bool = False, depth: int = BOOK_DEPTH,
        model=None, risk_config=None, threshold_logit: float = 1.0, kill_switch: bool = False,
        chunk_events: int = CHUNK_EVENTS, chunk_bytes: int | None = None, progress=None,
        infer=None, sink=None, keep: bool = True, stop=None) -> RunResult:
    """Replay ``path`` (or the embedded sample) through the CPU golden pipeline, streaming.

    decode -> order book -> fixed-point features -> int8 MLP -> decision + risk gate -> OUCH,
    chunk by chunk: the input is read ``chunk_bytes`` at a time (:func:`source.open_stream`),
    each chunk's events go through every stage in steps of ``chunk_events`` and every stage's
    state (book, feature windows, risk positions and throttle, the evaluation's pending marks,
    the LOBSTER book check) carries from step to step. Outputs and summary do not depend on
    either chunk size.

    Parameters
    ----------
    path : str or Path, optional
        ITCH file (plain or gzip), pcap/pcapng or LOBSTER message file; None replays the
        embedded sample (the LOBSTER AMZN 2012-06-21 day as ITCH 5.0 over MoldUDP64 in a pcap).
    lenient : bool
        Count and skip malformed input instead of stopping at the first error.
    depth : int
        Levels per side in the book records (>= 5, what the features read).
    model : str or Path, optional
        ONNX QCDQ model (default: ``models/default.onnx``); its JSON model card beside it gives
        the label horizon and the test split used for the evaluation.
    risk_config : hftaccel.spec.risk.RiskConfig, optional
        Decision thresholds and limits; by default the library defaults with buy/sell
        thresholds of ``threshold_logit``.
    threshold_logit : float
        Default decision threshold in logits (margin of the up/down logit over the others),
        converted to the model's integer logit scale.
    kill_switch : bool
        Start the default risk config with its kill switch on (every intent is blocked).
    chunk_events : int
        Order events per pipeline step (>= 1).
    chunk_bytes : int, optional
        Input bytes read per chunk (default :data:`hftaccel.feeds.itch.CHUNK_BYTES`).
    progress : callable, optional
        ``progress("replay", bytes_read, total_bytes, messages)`` after every chunk (bytes of
        the input file, messages decoded so far).
    infer : callable, optional
        Features and logits step handed to :func:`score` (the GPU backend's); called step by
        step in stream order, so it must carry its per-symbol state across calls.
    sink : callable, optional
        ``sink(records, scoring)`` after every step with that step's book records (a view of
        a reused buffer: copy what is kept) and its :class:`Scoring`.
    keep : bool
        Keep every record, the whole scoring and the decoded feed in the result (memory grows
        with the input); False keeps only the summary.
    stop : callable, optional
        ``stop() -> bool`` checked between chunks; True ends the replay there with a summary
        marked ``"complete": false``.

    Returns
    -------
    RunResult
        ``summary`` keys: ``input``, ``kind``, ``backend``, ``complete`` (False when ``stop``
        ended the replay early), ``messages``, ``messages_by_type``, ``book_updates``,
        ``bad_references`` (by kind), ``first_bad_references``, ``gaps`` (list of {session,
        first_missing, count}), ``duplicates``, ``packets``, ``skipped`` (by reason),
        ``throughput_msgs_per_s`` (messages / wall seconds of all stages, compile time
        excluded, output written by ``sink`` included), ``stage_seconds`` (decode, book, score,
        and ``output``: time in ``sink``),
        ``input_bytes``, ``streamed`` (input read incrementally), ``book_check``
        (``{rows, mismatches, first_mismatch}`` or None when no LOBSTER orderbook describes
        the input), ``synthesized`` (LOBSTER input), ``signals`` ({buy, sell, total}),
        ``orders``, ``risk_rejects`` (by reason), ``model`` ({path, card, card_sha256,
        onnx_sha256}), ``evaluation`` (mark-to-market of the signals on the test part of the
        day, as :func:`hftaccel.model.evaluate.mark_to_market`). With ``keep``: ``records``
        (BOOK_RECORD_DTYPE, one per book update), ``extra["scoring"]`` (:class:`Scoring` of
        the whole day) and ``feed`` (a :class:`hftaccel.feeds.source.Feed`); without it
        ``records`` is None and ``feed`` the :class:`hftaccel.feeds.source.FeedStream`.

    Raises
    ------
    hftaccel.feeds.itch.ItchError, ValueError, FileNotFoundError
        Malformed input in strict mode, or a missing file.
    hftaccel.golden.risk.RiskError
        Book timestamps that go backwards.
    hftaccel.golden.mlp.UnsupportedGraphError
        The model has an op or scale the integer engine cannot run exactly.
    """
    from hftaccel.golden import features as gfeatures
    from hftaccel.golden import mlp, ouch, risk
    from hftaccel.model.export import read_card, sha256
    from hftaccel.spec.risk import INTENT_BUY, INTENT_SELL, INTENTS, REJECT_REASONS

    if not isinstance(chunk_events, (int, np.integer)) or chunk_events < 1:
        raise ValueError(f"chunk_events must be a positive integer, got {chunk_events!r}")
    path = Path(path) if path is not None else source.embedded_sample()
    model_path = Path(model) if model is not None else default_model()
    engine = mlp.load(model_path)
    card_path = model_path.with_suffix(".json")
    card = read_card(card_path) if card_path.is_file() else None
    if risk_config is None:
        risk_config = default_risk_config(engine, threshold_logit, kill_switch=kill_switch)
    _warm_up(engine, risk_config)

    tick = progress or (lambda stage, done, total, messages=None: None)
    horizon = int(card["labels"]["horizon"]) if card else 20
    test = card["splits"]["test"] if card else None
    frac = (test["first_event"] / (test["last_event"] + 1)) if test else 0.8
    stream = source.open_stream(path, lenient=lenient,
                                chunk_bytes=chunk_bytes or itch.CHUNK_BYTES)
    with _one_blas_thread():
        return _replay(stream, path, model_path, engine, card, card_path, risk_config, depth,
                       horizon, test, frac, chunk_events, tick, infer, sink, keep, stop)


def _one_blas_thread():
    """The MLP's BLAS products on one thread while replaying (a replay is one core's work;
    BLAS threads spinning beside it only slow it down): threadpoolctl when installed."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with most scientific stacks
        import contextlib
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _replay(stream, path, model_path, engine, card, card_path, risk_config, depth, horizon,
            test, frac, chunk_events, tick, infer, sink, keep, stop) -> RunResult:
    """The streaming loop of :func:`run` over an opened stream."""
    from hftaccel.golden import features as gfeatures
    from hftaccel.golden import ouch, risk
    from hftaccel.model.export import sha256
    from hftaccel.spec.risk import (INTENT_BUY, INTENT_SELL, INTENTS, REJECT_REASONS,
                                    SCORED_UPDATE_DTYPE)

    book = Book(depth=depth)
    fengine = gfeatures.FeatureEngine() if infer is None else None
    state = risk.RiskState(risk_config)
    symbols = symbol_table({})
    day = _DayEval(horizon)          # every book update (basis: a fraction of the day)
    lob = None                       # LOBSTER rows of the day, once the first chunk is read
    buf = np.empty(0, book_record_dtype(depth))     # the book's output, reused step to step
    upd = np.zeros(0, SCORED_UPDATE_DTYPE)          # the decision stage's input, reused too
    kept, kept_msgs, kept_events = [], [], []
    counts = {"signals": np.zeros(3, np.int64), "orders": 0, "records": 0}
    last_ts = -1
    secs = dict.fromkeys(("decode", "book", "score", "output"), 0.0)
    complete = True
    t_check = 0.0
    t_start = time.perf_counter()
    it = iter(stream)
    while True:
        t0 = time.perf_counter()
        chunk = next(it, None)
        secs["decode"] += time.perf_counter() - t0
        if chunk is None:
            break
        if lob is None:        # the LOBSTER oracle is the check's time, not the pipeline's
            t0 = time.perf_counter()
            lob = _LobsterRows.open(stream, horizon, test)
            t_check += time.perf_counter() - t0
        if keep:
            kept_msgs.append(chunk.messages)
        events = chunk.events
        if keep:
            kept_events.append(events)
        rmsgs = chunk.messages.get("R")
        if rmsgs is not None and len(rmsgs):
            rmsgs = rmsgs[np.argsort(rmsgs["seq"], kind="stable")]
        for a in range(0, events.shape[0], int(chunk_events)):
            ev = events[a:a + int(chunk_events)]
            t0 = time.perf_counter()
            if buf.shape[0] < ev.shape[0]:
                buf = np.empty(ev.shape[0], buf.dtype)
                upd = np.zeros(ev.shape[0], upd.dtype)
            rec = book.apply(ev, out=buf)
            t1 = time.perf_counter()
            if rec.shape[0] and int(rec["timestamp"][0]) < last_ts:
                raise risk.RiskError(f"book record seq {int(rec['seq'][0])} has timestamp "
                                     f"{int(rec['timestamp'][0])} ns before the previous "
                                     f"record's {last_ts} ns")
            if rec.shape[0]:
                last_ts = int(rec["timestamp"][-1])
            if infer is None:
                feats = fengine.update(rec)
                logits = engine.run(feats)
            else:
                feats, logits = infer(rec, engine)
            if logits.size and (logits.min() < -(1 << 31) or logits.max() >= (1 << 31)):
                raise ValueError("MLP logits do not fit int32")
            decisions, state = risk.run(scored_updates(rec, logits, out=upd), risk_config,
                                        state)
            orders, symbols, rmsgs = _orders(decisions, symbols, rmsgs, ev)
            framed = ouch.frame_enter_orders(orders) if orders.shape[0] else np.zeros(0, np.uint8)
            sc = Scoring(feats, logits.astype(np.int32), decisions, orders,
                         np.asarray(framed).tobytes(), state)
            intent = decisions["intent"]
            side = np.where(intent == INTENT_BUY, 1, np.where(intent == INTENT_SELL, -1, 0))
            approved = np.where(decisions["verdict"] == 1, side, 0)
            day.update(rec, side, approved)
            lob.update(ev, rec, side, approved)
            counts["signals"] += np.bincount(intent, minlength=3)[:3]
            counts["orders"] += int(orders.shape[0])
            counts["records"] += int(rec.shape[0])
            t2 = time.perf_counter()
            secs["book"] += t1 - t0
            secs["score"] += t2 - t1
            if sink is not None:
                sink(rec, sc)
                secs["output"] += time.perf_counter() - t2
            if keep:
                kept.append((rec.copy(), sc))
        if rmsgs is not None and len(rmsgs):   # a chunk of directory messages only
            symbols = symbol_table({"R": rmsgs}, symbols)
        tick("replay", chunk.read, stream.total_bytes, sum(stream.type_counts.values()))
        if stop is not None and stop():
            complete = False
            break
    if complete:
        tick("replay", stream.total_bytes, stream.total_bytes, sum(stream.type_counts.values()))
    elapsed = time.perf_counter() - t_start - t_check

    check, evaluation = lob.finish(day, frac, risk_config) if lob is not None else (
        None, day.finish(frac, risk_config))
    if lob is not None and lob.error is not None:
        check = BookCheck(0, 0, {"error": lob.error})
    n_msgs = sum(stream.type_counts.values())
    sig = counts["signals"]
    summary = {
        "input": str(path),
        "kind": stream.kind,
        "backend": "cpu",
        "complete": complete,
        "messages": n_msgs,
        "messages_by_type": dict(stream.type_counts),
        "book_updates": int(counts["records"]),
        "live_orders": int(book.live_orders),
        "bad_references": dict(book.bad_references),
        "first_bad_references": [{"kind": k, "seq": int(s)} for k, s in book.first_bad],
        "gaps": [{"session": _text(s), "first_missing": int(f), "count": int(c)}
                 for s, f, c in stream.gaps],
        "duplicates": int(stream.duplicates),
        "packets": int(stream.packets),
        "skipped": {k: int(v) for k, v in stream.skipped.items()},
        "throughput_msgs_per_s": float(n_msgs / elapsed) if elapsed > 0 else 0.0,
        "stage_seconds": secs,
        "input_bytes": int(stream.total_bytes),
        "streamed": bool(stream.streamed),
        "book_check": check.as_dict() if check is not None else None,
        "signals": {"buy": int(sig[INTENT_BUY]), "sell": int(sig[INTENT_SELL]),
                    "total": int(sig[INTENT_BUY] + sig[INTENT_SELL])},
        "orders": int(counts["orders"]),
        "risk_rejects": state.rejections(),
        "risk_config": dataclasses.asdict(risk_config),
        "model": {"path": str(model_path),
                  "card": str(card_path) if card else None,
                  "card_sha256": sha256(card_path.read_bytes()) if card else None,
                  "onnx_sha256": sha256(model_path.read_bytes()),
                  "output_exp": int(engine.output_exp.max())},
        "evaluation": evaluation,
    }
    assert INTENTS[0] == "none" and len(REJECT_REASONS) == len(summary["risk_rejects"])
    if stream.conversion is not None:
        summary["synthesized"] = dict(stream.conversion.synthesized)
    if not keep:
        return RunResult(summary, None, stream, {})
    records = (np.concatenate([r for r, _ in kept]) if kept
               else np.zeros(0, book_record_dtype(depth)))
    scoring = _concat_scoring([s for _, s in kept], state)
    messages = itch.concat(kept_msgs)
    all_events = np.concatenate(kept_events or [np.zeros(0, ORDER_EVENT_DTYPE)])
    feed = source.Feed(path, stream.kind, messages, all_events, dict(stream.type_counts),
                       dict(stream.skipped), list(stream.gaps), int(stream.duplicates),
                       int(stream.packets), int(stream.seq_base), stream.lobster,
                       stream.conversion)
    return RunResult(summary, records, feed, {"scoring": scoring})


def _concat_scoring(parts: list, state) -> Scoring:
    """One :class:`Scoring` of a whole replay from the steps' ones, in order."""
    from hftaccel.golden import ouch
    from hftaccel.spec.features import N_FEATURES
    from hftaccel.spec.risk import DECISION_DTYPE

    if not parts:
        return Scoring(np.zeros((0, N_FEATURES), np.int32), np.zeros((0, 3), np.int32),
                       np.zeros(0, DECISION_DTYPE), ouch.empty_enter_orders(0), b"", state)
    return Scoring(np.concatenate([p.features for p in parts]),
                   np.concatenate([p.logits for p in parts]),
                   np.concatenate([p.decisions for p in parts]),
                   np.concatenate([p.orders for p in parts]),
                   b"".join(p.ouch for p in parts), state)


def _orders(decisions: np.ndarray, symbols: np.ndarray, rmsgs, events: np.ndarray):
    """Enter Orders of a step's approved decisions, each with the symbol its stock locate had
    when the order was decided: the Stock Directory messages ``rmsgs`` (sorted by seq) up to
    the last event of the step apply, in sequence order, first.

    Returns ``(orders, symbols, rest)``: the symbol table after those messages and the ones
    that lie after the step."""
    from hftaccel.golden import ouch

    if rmsgs is None or not len(rmsgs):
        return ouch.orders_from_decisions(decisions, symbols), symbols, rmsgs
    symbols = symbols.copy()
    upto = int(np.searchsorted(rmsgs["seq"], events["seq"][-1], side="right"))
    r, rest = rmsgs[:upto], rmsgs[upto:]
    at = np.searchsorted(decisions["seq"], r["seq"])     # decisions before each R message
    parts, done = [], 0
    for pos in np.unique(at).tolist():
        if pos > done:
            parts.append(ouch.orders_from_decisions(decisions[done:pos], symbols))
            done = pos
        sel = r[at == pos]
        symbols[sel["stock_locate"]] = sel["stock"]
    parts.append(ouch.orders_from_decisions(decisions[done:], symbols))
    return np.concatenate(parts), symbols, rest


class _DayEval:
    """Mark-to-market of the signals of a stream, fed step by step (see
    :func:`hftaccel.model.evaluate.mark_to_market`): each evaluated row's best bid/offer waits
    in a per-symbol ring of ``horizon`` rows until the row ``horizon`` updates later of the same
    symbol marks it. Marks are kept per signal (index, side, ok, gross, net), so the start of
    the test part can be chosen at the end, when the number of rows is known."""

    _MARK = np.dtype([("g", np.int64), ("gross2", np.int64), ("net", np.int64),
                      ("side", np.int8), ("ok", np.bool_), ("kind", np.int8)])

    def __init__(self, horizon: int):
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1 update, got {horizon}")
        self.horizon = int(horizon)
        self.n = 0
        self._slot_of = np.full(1 << 16, -1, np.int32)
        self._n_slots = np.zeros(1, np.int64)
        self._alloc(16)
        self._marks = []

    def _alloc(self, cap: int) -> None:
        h = self.horizon
        old = getattr(self, "_cnt", None)
        cnt, ring = np.zeros(cap, np.int64), np.zeros((cap, h, 5), np.int64)
        if old is not None:
            cnt[:old.shape[0]] = old
            ring[:old.shape[0]] = self._ring
        self._cnt, self._ring = cnt, ring

    def update(self, rec: np.ndarray, side: np.ndarray, approved: np.ndarray,
               rows: np.ndarray | None = None) -> None:
        """Feed one step's records (only ``rows`` of them when given) with their signal sides
        (+1 buy, -1 sell, 0 none) and the sides of the approved orders."""
        if rows is not None:
            rec, side, approved = rec[rows], side[rows], approved[rows]
        n = rec.shape[0]
        if n == 0:
            return
        out = np.zeros(2 * n, self._MARK)
        loc = np.ascontiguousarray(rec["stock_locate"]).astype(np.int64)
        bid = np.ascontiguousarray(rec["bid_price"][:, 0]).astype(np.int64)
        ask = np.ascontiguousarray(rec["ask_price"][:, 0]).astype(np.int64)
        i = k = 0
        while True:
            i, k = _mark_kernel(i, k, loc, bid, ask, side.astype(np.int64),
                                approved.astype(np.int64), self.n, self._slot_of, self._n_slots,
                                self._cnt, self._ring, out)
            if i == n:
                break
            self._alloc(2 * self._cnt.shape[0])
        self.n += n
        if k:
            self._marks.append(out[:k].copy())

    def results(self) -> np.ndarray:
        """Every signal, marked or still pending (``ok`` False), by row index."""
        pend = _pending(self._n_slots[0], self._cnt, self._ring, self.horizon)
        allm = np.concatenate(self._marks + [pend]) if self._marks else pend
        return allm[np.argsort(allm["g"], kind="stable")]

    def finish(self, frac: float, risk_config, *, start: int | None = None,
               basis: str | None = None) -> dict:
        """The evaluation dict of ``run``'s summary: from row ``start`` (default ``int(frac *
        rows)``) on, for the signals and for the approved orders."""
        if start is None:
            start = int(frac * self.n)
            basis = f"last {1 - frac:.0%} of book updates"
        res = self.results()
        ev = _summarize(res[res["kind"] == 0], start, self.horizon, risk_config)
        ev["basis"] = basis
        ev["orders"] = _summarize(res[res["kind"] == 1], start, self.horizon, risk_config)
        return ev


@numba.njit(cache=True)
def _mark_kernel(i, k, loc, bid, ask, side, approved, g0, slot_of, n_slots, cnt, ring, out):
    """Advance the evaluation rings over rows ``i..``; returns (next row, marks written) and
    stops early (next row < n) when the rings are full."""
    h = ring.shape[1]
    n = loc.shape[0]
    while i < n:
        s = slot_of[loc[i]]
        if s < 0:
            if n_slots[0] == cnt.shape[0]:
                return i, k
            s = n_slots[0]
            slot_of[loc[i]] = s
            n_slots[0] += 1
        c = cnt[s]
        p = c % h
        b, a = bid[i], ask[i]
        if c >= h:
            bi, ai = ring[s, p, 0], ring[s, p, 1]
            for kind in range(2):
                sd = ring[s, p, 2 + kind]
                if sd != 0:
                    o = out[k]
                    o.g = ring[s, p, 4]
                    o.side = sd
                    o.kind = kind
                    o.ok = bi > 0 and ai > 0 and b > 0 and a > 0
                    o.gross2 = sd * ((b + a) - (bi + ai))
                    o.net = (b - ai) if sd > 0 else (bi - a)
                    k += 1
        ring[s, p, 0] = b
        ring[s, p, 1] = a
        ring[s, p, 2] = side[i]
        ring[s, p, 3] = approved[i]
        ring[s, p, 4] = g0 + i
        cnt[s] = c + 1
        i += 1
    return i, k


def _pending(n_slots, cnt, ring, horizon) -> np.ndarray:
    """Signals still waiting for their mark (the last ``horizon`` rows of each symbol)."""
    out = []
    h = ring.shape[1]
    for s in range(int(n_slots)):
        c = int(cnt[s])
        for j in range(max(0, c - h), c):
            row = ring[s, j % h]
            for kind in range(2):
                if row[2 + kind] != 0:
                    out.append((int(row[4]), 0, 0, int(row[2 + kind]), False, kind))
    return np.array(out, _DayEval._MARK) if out else np.zeros(0, _DayEval._MARK)


def _summarize(marks: np.ndarray, start: int, horizon: int, risk_config) -> dict:
    """:func:`hftaccel.model.evaluate.mark_to_market`'s dict from per-signal marks sorted by
    row index (same arithmetic, same order, so the same floats)."""
    sel = marks[marks["g"] >= start]
    good = sel[sel["ok"]]
    s = good["side"].astype(np.int64)
    gross2, net = good["gross2"], good["net"]
    n = int(good.shape[0])
    usd = risk_config.lot_size / 10_000
    tick_size = risk_config.tick_size
    return {
        "horizon": int(horizon),
        "start": int(start),
        "signals": n,
        "unmarked": int(sel.shape[0] - n),
        "buy": int((s > 0).sum()),
        "sell": int((s < 0).sum()),
        "gross_ticks_per_share": float(gross2.mean() / 2 / tick_size) if n else 0.0,
        "net_ticks_per_share": float(net.mean() / tick_size) if n else 0.0,
        "net_hit_rate": float((net > 0).mean()) if n else 0.0,
        "gross_pnl_usd": float(gross2.sum() / 2 * usd),
        "net_pnl_usd": float(net.sum() * usd),
        "spread_cost_usd": float((gross2.sum() / 2 - net.sum()) * usd),
    }


class _LobsterRows:
    """The LOBSTER side of a replay, fed step by step: whether the input is the ITCH
    conversion of the LOBSTER files beside it (every book event compared), the level-1 check
    of every LOBSTER row and the evaluation on the model's test split of those rows."""

    def __init__(self, stream, horizon: int, test):
        from hftaccel.feeds import lobster

        self.error = None
        ref = stream.lobster
        self.orderbook = lobster.load_orderbook(ref.orderbook_path)
        conv = stream.conversion
        self.ours = None
        if conv is None:
            conv = lobster.to_itch(lobster.load_messages(ref.message_path), self.orderbook,
                                   stock=ref.message_path.name.split("_")[0])
            self.ours = itch.order_events(conv.messages)
        self.base = np.uint64(stream.seq_base)
        self.pos = 0
        self.matches = True
        self.main_seq = conv.main_seq + self.base
        self.locate = int(conv.messages["R"]["stock_locate"][0])
        self.check = LevelCheck(self.main_seq, self.orderbook, stock_locate=self.locate)
        first = int(test["first_event"]) if test else int(0.8 * self.main_seq.shape[0])
        self.first_seq = self.main_seq[min(first, len(self.main_seq) - 1)]
        self.start = 0
        self.eval = _DayEval(horizon)
        self.name = ref.message_path.name

    @classmethod
    def open(cls, stream, horizon, test):
        """A :class:`_LobsterRows` when LOBSTER files lie beside the input, else a no-op."""
        return cls(stream, horizon, test) if stream.lobster is not None else _NoLobster()

    def update(self, events, rec, side, approved) -> None:
        if not self.matches:
            return
        if self.ours is not None:
            theirs = self.ours[self.pos:self.pos + events.shape[0]]
            fields = [n for n in events.dtype.names if n not in ("seq", "_pad")]
            self.pos += events.shape[0]
            if theirs.shape != events.shape or any(
                    not np.array_equal(theirs[n], events[n]) for n in fields) or \
                    not np.array_equal(theirs["seq"] + self.base, events["seq"]):
                self.matches = False
                return
        last = int(events["seq"][-1]) if events.shape[0] else None
        self.check.update(rec, last)
        rows = np.isin(rec["seq"], self.main_seq)
        self.start += int((rows & (rec["seq"] < self.first_seq)).sum())
        self.eval.update(rec, side, approved, rows)

    def finish(self, day, frac, risk_config):
        if self.ours is not None and self.pos != self.ours.shape[0]:
            self.matches = False
        if not self.matches:
            self.error = ("input is not the ITCH conversion of the LOBSTER files beside it "
                          f"({self.name})")
            return None, day.finish(frac, risk_config)
        return self.check.finish(), self.eval.finish(
            frac, risk_config, start=self.start, basis="model test split (LOBSTER rows)")


class _NoLobster:
    error = None

    def update(self, *args) -> None:
        pass

    def finish(self, day, frac, risk_config):
        return None, day.finish(frac, risk_config)


_warmed = False


def _warm_up(engine, risk_config) -> None:
    """Run every compiled stage once on a tiny stream, so that one-off compile/cache-load time
    stays out of the measured throughput."""
    import tempfile

    from hftaccel.feeds import moldudp64

    global _warmed
    if _warmed:
        return
    a = itch.empty("A", 2)
    a["seq"] = [0, 1]
    a["order_ref"] = [1, 2]
    a["side"] = [b"B", b"S"]
    a["shares"] = 100
    a["price"] = [1_000_000, 1_000_100]
    a["stock_locate"] = 1
    d = itch.empty("D", 1)
    d["seq"], d["order_ref"], d["stock_locate"] = 2, 1, 1
    msgs = {"A": a, "D": d}
    with tempfile.TemporaryDirectory() as tmp:
        pcap = Path(tmp) / "warm.pcap"
        moldudp64.write_pcap(pcap, msgs)
        moldudp64.read_pcap(pcap, events=True)
        itch.decode(itch.frame(*itch.encode(msgs)), events=True)
    records = Book().apply(itch.order_events(msgs))
    score(records, engine, risk_config, symbol_table({}))
    _warmed = True


def _text(session) -> str:
    if isinstance(session, (bytes, bytearray)):
        return session.decode("ascii", "replace").strip()
    return str(session)


def scoring_table(result: RunResult):
    """Per-update features, logits and decisions of a kept run as a :class:`pyarrow.Table`
    (see :func:`hftaccel.backends.output.scoring_table`)."""
    from .output import scoring_table as table

    return table(result.records, result.extra["scoring"])


def records_table(records: np.ndarray):
    """Book records as a :class:`pyarrow.Table`, one column per field and level
    (``bid_price_1`` ... ``ask_orders_N``, level 1 = best); see
    :func:`hftaccel.backends.output.records_table`."""
    from .output import records_table as table

    return table(records)
