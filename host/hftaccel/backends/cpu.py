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

import numpy as np

from hftaccel.feeds import itch, source
from hftaccel.golden.book import Book
from hftaccel.spec import BOOK_DEPTH, book_record_dtype

from .check import BookCheck, check_level1

__all__ = ["RunResult", "Scoring", "run", "score", "scored_updates", "default_model",
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


def scored_updates(records: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """The decision stage's input: best bid/offer of every book record with its MLP logits.

    Parameters
    ----------
    records : np.ndarray of BOOK_RECORD_DTYPE, shape (n,)
    logits : np.ndarray of int, shape (n, 3)

    Returns
    -------
    np.ndarray of hftaccel.spec.risk.SCORED_UPDATE_DTYPE, shape (n,)
    """
    from hftaccel.spec.risk import SCORED_UPDATE_DTYPE

    updates = np.zeros(records.shape[0], SCORED_UPDATE_DTYPE)
    for name in ("timestamp", "seq", "stock_locate"):
        updates[name] = records[name]
    updates["best_bid"] = records["bid_price"][:, 0]
    updates["best_ask"] = records["ask_price"][:, 0]
    updates["scores"] = logits
    return updates


def symbol_table(messages: dict) -> np.ndarray:
    """Stock locate -> 8-byte symbol from Stock Directory (R) messages; symbols the feed never
    named are ``L<locate>`` (5 digits) so an order can still be written."""
    table = _placeholder_symbols().copy()
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


def run(path=None, *, lenient: bool = False, depth: int = BOOK_DEPTH,
        model=None, risk_config=None, threshold_logit: float = 1.0, kill_switch: bool = False,
        chunk_events: int = 200_000, progress=None, infer=None) -> RunResult:
    """Replay ``path`` (or the embedded sample) through the CPU golden pipeline.

    decode -> order book -> fixed-point features -> int8 MLP -> decision + risk gate -> OUCH.

    Parameters
    ----------
    path : str or Path, optional
        ITCH file, pcap/pcapng or LOBSTER message file; None replays the embedded sample (the
        LOBSTER AMZN 2012-06-21 day as ITCH 5.0 over MoldUDP64 in a pcap).
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
        Events handed to the book per call (progress granularity).
    progress : callable, optional
        ``progress(stage, done, total)`` while replaying.
    infer : callable, optional
        Features and logits step handed to :func:`score` (the GPU backend's); default golden.

    Returns
    -------
    RunResult
        ``summary`` keys: ``input``, ``kind``, ``backend``, ``messages``, ``messages_by_type``,
        ``book_updates``, ``bad_references`` (by kind), ``first_bad_references``, ``gaps``
        (list of {session, first_missing, count}), ``duplicates``, ``packets``, ``skipped`` (by
        reason), ``throughput_msgs_per_s`` (messages / wall seconds of all stages, compile time
        excluded), ``stage_seconds``, ``book_check`` (``{rows, mismatches, first_mismatch}`` or
        None when no LOBSTER orderbook describes the input), ``synthesized`` (LOBSTER input),
        ``signals`` ({buy, sell, total}), ``orders``, ``risk_rejects`` (by reason), ``model``
        ({path, card, card_sha256, onnx_sha256}), ``evaluation`` (mark-to-market of the
        signals on the test part of the day, see :func:`hftaccel.model.evaluate.mark_to_market`).

    Raises
    ------
    hftaccel.feeds.itch.ItchError, ValueError, FileNotFoundError
        Malformed input in strict mode, or a missing file.
    hftaccel.golden.mlp.UnsupportedGraphError
        The model has an op or scale the integer engine cannot run exactly.
    """
    from hftaccel.golden import mlp
    from hftaccel.model.evaluate import mark_to_market
    from hftaccel.model.export import read_card, sha256
    from hftaccel.spec.risk import INTENT_BUY, INTENT_SELL, INTENTS, REJECT_REASONS

    path = Path(path) if path is not None else source.embedded_sample()
    model_path = Path(model) if model is not None else default_model()
    engine = mlp.load(model_path)
    card_path = model_path.with_suffix(".json")
    card = read_card(card_path) if card_path.is_file() else None
    if risk_config is None:
        risk_config = default_risk_config(engine, threshold_logit, kill_switch=kill_switch)
    _warm_up(engine, risk_config)

    tick = progress or (lambda stage, done, total: None)
    t0 = time.perf_counter()
    feed = source.open_feed(path, lenient=lenient)
    events = feed.events
    t1 = time.perf_counter()

    book = Book(depth=depth)
    parts = []
    total = events.shape[0]
    for start in range(0, max(total, 1), chunk_events):
        parts.append(book.apply(events[start:start + chunk_events]))
        tick("book", min(start + chunk_events, total), total)
    records = np.concatenate(parts) if parts else np.zeros(0, book_record_dtype(depth))
    t2 = time.perf_counter()
    scoring = score(records, engine, risk_config, symbol_table(feed.messages), infer=infer)
    tick("score", records.shape[0], records.shape[0])
    t3 = time.perf_counter()

    check = None
    mapping = lobster_mapping(feed)
    if mapping is not None:
        main_seq, orderbook, locate = mapping
        check = check_level1(records, main_seq, orderbook, stock_locate=locate)
    elif feed.lobster is not None:
        check = BookCheck(0, 0, {"error": "input is not the ITCH conversion of the LOBSTER "
                                          f"files beside it ({feed.lobster.message_path.name})"})

    # Mark-to-market on the test part of the day: with LOBSTER rows mapped, exactly the model's
    # test split (rows from the card's first test event on, synthesized fillers left out);
    # otherwise the same fraction of the day's book updates.
    intent = scoring.decisions["intent"]
    side = np.where(intent == INTENT_BUY, 1, np.where(intent == INTENT_SELL, -1, 0))
    horizon = int(card["labels"]["horizon"]) if card else 20
    test = card["splits"]["test"] if card else None
    if mapping is not None:
        rows = np.isin(records["seq"], main_seq)
        eval_records, eval_side = records[rows], side[rows]
        first = int(test["first_event"]) if test else int(0.8 * main_seq.shape[0])
        start = int(np.searchsorted(eval_records["seq"], main_seq[min(first, len(main_seq) - 1)]))
        basis = "model test split (LOBSTER rows)"
    else:
        eval_records, eval_side = records, side
        frac = (test["first_event"] / (test["last_event"] + 1)) if test else 0.8
        start = int(frac * records.shape[0])
        basis = f"last {1 - frac:.0%} of book updates"
    evaluation = mark_to_market(eval_records, eval_side, horizon=horizon, start=start,
                                shares=risk_config.lot_size, tick_size=risk_config.tick_size)
    evaluation["basis"] = basis
    approved = scoring.decisions["verdict"] == 1
    evaluation["orders"] = mark_to_market(
        eval_records, np.where(approved[rows] if mapping is not None else approved, eval_side, 0),
        horizon=horizon, start=start, shares=risk_config.lot_size,
        tick_size=risk_config.tick_size)

    n_msgs = sum(feed.type_counts.values())
    elapsed = t3 - t0
    summary = {
        "input": str(path),
        "kind": feed.kind,
        "backend": "cpu",
        "messages": n_msgs,
        "messages_by_type": dict(feed.type_counts),
        "book_updates": int(records.shape[0]),
        "live_orders": int(book.live_orders),
        "bad_references": dict(book.bad_references),
        "first_bad_references": [{"kind": k, "seq": int(s)} for k, s in book.first_bad],
        "gaps": [{"session": _text(s), "first_missing": int(f), "count": int(c)}
                 for s, f, c in feed.gaps],
        "duplicates": int(feed.duplicates),
        "packets": int(feed.packets),
        "skipped": {k: int(v) for k, v in feed.skipped.items()},
        "throughput_msgs_per_s": float(n_msgs / elapsed) if elapsed > 0 else 0.0,
        "stage_seconds": {"decode": t1 - t0, "book": t2 - t1, "score": t3 - t2},
        "book_check": check.as_dict() if check is not None else None,
        "signals": {"buy": int((intent == INTENT_BUY).sum()),
                    "sell": int((intent == INTENT_SELL).sum()),
                    "total": int((intent != 0).sum())},
        "orders": int(scoring.orders.shape[0]),
        "risk_rejects": scoring.risk_state.rejections(),
        "risk_config": dataclasses.asdict(risk_config),
        "model": {"path": str(model_path),
                  "card": str(card_path) if card else None,
                  "card_sha256": sha256(card_path.read_bytes()) if card else None,
                  "onnx_sha256": sha256(model_path.read_bytes()),
                  "output_exp": int(engine.output_exp.max())},
        "evaluation": evaluation,
    }
    assert INTENTS[0] == "none" and len(REJECT_REASONS) == len(summary["risk_rejects"])
    if feed.conversion is not None:
        summary["synthesized"] = dict(feed.conversion.synthesized)
    return RunResult(summary, records, feed, {"scoring": scoring})


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
    """Per-update features, logits and decisions of a run as a :class:`pyarrow.Table`
    (``seq``, ``stock_locate``, one column per feature, ``logit_down/flat/up``, ``intent``,
    ``verdict``, ``reason``, ``price``, ``shares``, ``user_ref_num``)."""
    import pyarrow as pa

    from hftaccel.spec.features import FEATURE_NAMES

    sc = result.extra["scoring"]
    cols = {"seq": result.records["seq"], "stock_locate": result.records["stock_locate"]}
    for k, name in enumerate(FEATURE_NAMES):
        cols[name] = np.ascontiguousarray(sc.features[:, k])
    for k, name in enumerate(("down", "flat", "up")):
        cols[f"logit_{name}"] = np.ascontiguousarray(sc.logits[:, k])
    for name in ("intent", "verdict", "reason", "price", "shares", "user_ref_num"):
        cols[name] = np.ascontiguousarray(sc.decisions[name])
    return pa.table({k: pa.array(v) for k, v in cols.items()})


def records_table(records: np.ndarray):
    """Book records as a :class:`pyarrow.Table`, one column per field and level
    (``bid_price_1`` ... ``ask_orders_N``, level 1 = best)."""
    import pyarrow as pa

    cols = {}
    for name in records.dtype.names:
        if name.startswith("_"):
            continue
        col = records[name]
        if col.ndim == 2:
            for k in range(col.shape[1]):
                cols[f"{name}_{k + 1}"] = pa.array(np.ascontiguousarray(col[:, k]))
        elif name in ("msg_type", "side"):
            cols[name] = pa.array(col.view("S1").astype(str))
        else:
            cols[name] = pa.array(np.ascontiguousarray(col))
    return pa.table(cols)
