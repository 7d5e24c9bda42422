"""Golden decision stage and pre-trade risk gate: integer-only Numba kernels over record arrays.

``decide`` turns scored book updates (:data:`hftaccel.spec.risk.SCORED_UPDATE_DTYPE`) into
intents (:data:`~hftaccel.spec.risk.INTENT_DTYPE`); ``gate`` runs the checks of
:mod:`hftaccel.spec.risk` in their priority order over a stream of intents, updating a
:class:`RiskState` (positions and open orders per stock locate, committed gross notional, the
throttle ring, the kill switch, the next OUCH UserRefNum, rejection counters), and writes one
:data:`~hftaccel.spec.risk.DECISION_DTYPE` record per intent. ``on_fill`` / ``on_cancel`` are
the hooks the order router calls when the venue reports executions and cancels.

Everything is int64 arithmetic with no division, so a hardware block can evaluate every check
of one intent in parallel and priority-encode the first failing one in a few cycles.
"""

from __future__ import annotations

import numba
import numpy as np

from hftaccel.spec.book import MAX_LOCATES
from hftaccel.spec.risk import (DECISION_DTYPE, FILL_IMMEDIATE, FILL_RESTING, INTENT_BUY,
                                INTENT_DTYPE, INTENT_NONE, INTENT_SELL, INTENT_SIDE,
                                MAX_ORDER_PRICE, MAX_THROTTLE_ORDERS, POLICY_TAKE, REASON_NONE,
                                REJECT_REASONS, RISK_CONFIG_DTYPE, SCORED_UPDATE_DTYPE,
                                VERDICT_APPROVED, VERDICT_NONE, VERDICT_REJECTED, RiskConfig)

__all__ = ["RiskState", "RiskError", "OneGate", "decide", "gate", "run", "on_fill",
           "on_cancel", "set_kill_switch", "config_vector"]

# Config vector indices, in RISK_CONFIG_DTYPE field order.
_CFG = {name: i for i, name in enumerate(RISK_CONFIG_DTYPE.names)}
_C_BUY_THR = _CFG["buy_threshold"]
_C_SELL_THR = _CFG["sell_threshold"]
_C_LOT = _CFG["lot_size"]
_C_POLICY = _CFG["price_policy"]
_C_OFFSET = _CFG["price_offset_ticks"]
_C_TICK = _CFG["tick_size"]
_C_COLLAR = _CFG["collar_ticks"]
_C_MAX_SIZE = _CFG["max_order_size"]
_C_MAX_POS = _CFG["max_position"]
_C_MAX_GROSS = _CFG["max_gross_notional"]
_C_THR_N = _CFG["throttle_orders"]
_C_THR_W_US = _CFG["throttle_window_us"]
_C_FILL = _CFG["fill_model"]

# Scalar state indices.
_S_GROSS, _S_KILL, _S_NEXT_URN, _S_RING_HEAD, _S_RING_COUNT, _S_THR_N, _S_APPROVED, \
    _S_NONE, _S_FILL = range(9)

_R_KILL, _R_QUOTE, _R_ORDER, _R_SIZE, _R_COLLAR, _R_POS, _R_GROSS, _R_THROTTLE = range(8)
assert REJECT_REASONS == ("kill_switch", "bad_quote", "bad_order", "max_order_size",
                          "price_collar", "max_position", "max_gross_notional", "throttle")
_SIDE_B, _SIDE_S = INTENT_SIDE[INTENT_BUY], INTENT_SIDE[INTENT_SELL]


class RiskError(ValueError):
    """Bad input to the risk gate or its hooks; the message names the record or locate."""


def config_vector(config: RiskConfig) -> np.ndarray:
    """Return ``config`` as an int64 vector in :data:`RISK_CONFIG_DTYPE` field order."""
    if not isinstance(config, RiskConfig):
        raise TypeError(f"expected a RiskConfig, got {type(config).__name__}")
    rec = config.to_record()
    return np.array([int(rec[n]) for n in RISK_CONFIG_DTYPE.names], dtype=np.int64)


class RiskState:
    """Mutable state of the risk gate.

    Attributes
    ----------
    position : (65536,) int64
        Signed filled position per stock locate, shares.
    open_buy, open_sell : (65536,) int64
        Open (unfilled, uncancelled) order shares per stock locate.
    ring : (MAX_THROTTLE_ORDERS,) int64
        Timestamps (ns) of the last ``throttle_orders`` approved orders, circular.
    scalars : (9,) int64
        gross notional (1/10,000 USD), kill switch, next UserRefNum, ring head, ring count,
        throttle N, approved count, no-intent count, fill model.
    reject_counts : (len(REJECT_REASONS),) int64
        Rejections counted by reason.
    """

    def __init__(self, config: RiskConfig, *, first_user_ref_num: int = 1):
        if not isinstance(config, RiskConfig):
            raise TypeError(f"expected a RiskConfig, got {type(config).__name__}")
        if not 1 <= first_user_ref_num <= 0xFFFFFFFF:
            raise ValueError(f"first_user_ref_num must be in 1..2**32-1, got {first_user_ref_num}")
        self.position = np.zeros(MAX_LOCATES, np.int64)
        self.open_buy = np.zeros(MAX_LOCATES, np.int64)
        self.open_sell = np.zeros(MAX_LOCATES, np.int64)
        self.ring = np.zeros(MAX_THROTTLE_ORDERS, np.int64)
        self.scalars = np.zeros(9, np.int64)
        self.scalars[_S_KILL] = config.kill_switch
        self.scalars[_S_NEXT_URN] = first_user_ref_num
        self.scalars[_S_THR_N] = config.throttle_orders
        self.scalars[_S_FILL] = config.fill_model
        self.reject_counts = np.zeros(len(REJECT_REASONS), np.int64)

    @property
    def gross_notional(self) -> int:
        """Committed notional, 1/10,000 USD."""
        return int(self.scalars[_S_GROSS])

    @property
    def kill_switch(self) -> bool:
        return bool(self.scalars[_S_KILL])

    @property
    def next_user_ref_num(self) -> int:
        return int(self.scalars[_S_NEXT_URN])

    @property
    def n_approved(self) -> int:
        return int(self.scalars[_S_APPROVED])

    @property
    def n_rejected(self) -> int:
        return int(self.reject_counts.sum())

    def rejections(self) -> dict:
        """Return ``{reason: count}`` for every reason of :data:`REJECT_REASONS`."""
        return {r: int(c) for r, c in zip(REJECT_REASONS, self.reject_counts)}


def set_kill_switch(state: RiskState, on: bool) -> None:
    """Turn the kill switch on (block every intent) or off."""
    state.scalars[_S_KILL] = 1 if on else 0


# --------------------------------------------------------------------------- decide


@numba.njit(cache=True)
def _decide_core(bid, ask, scores, cfg, out_intent, out_price, out_shares):
    buy_thr = cfg[_C_BUY_THR]
    sell_thr = cfg[_C_SELL_THR]
    take = cfg[_C_POLICY] == POLICY_TAKE
    off = cfg[_C_OFFSET] * cfg[_C_TICK]
    lot = cfg[_C_LOT]
    for i in range(bid.shape[0]):
        s_dn = np.int64(scores[i, 0])
        s_fl = np.int64(scores[i, 1])
        s_up = np.int64(scores[i, 2])
        m_up = s_up - max(s_dn, s_fl)
        m_dn = s_dn - max(s_up, s_fl)
        b = np.int64(bid[i])
        a = np.int64(ask[i])
        if m_up >= buy_thr:
            out_intent[i] = INTENT_BUY
            out_price[i] = (a if take else b) + off
            out_shares[i] = lot
        elif m_dn >= sell_thr:
            out_intent[i] = INTENT_SELL
            out_price[i] = (b if take else a) - off
            out_shares[i] = lot
        else:
            out_intent[i] = INTENT_NONE
            out_price[i] = 0
            out_shares[i] = 0


def decide(updates: np.ndarray, config: RiskConfig) -> np.ndarray:
    """Turn scored book updates into intents.

    Buy when ``score_up - max(score_down, score_flat) >= buy_threshold``, else sell when
    ``score_down - max(score_up, score_flat) >= sell_threshold``, else none. The price follows
    ``price_policy`` (join: buy at bid / sell at ask; take: buy at ask / sell at bid) moved
    ``price_offset_ticks`` ticks in the aggressive direction; shares = ``lot_size``.

    Parameters
    ----------
    updates : (n,) SCORED_UPDATE_DTYPE
    config : RiskConfig

    Returns
    -------
    (n,) INTENT_DTYPE
        timestamp, seq, stock_locate, best_bid and best_ask copied; intent, price
        (1/10,000 USD; 0 for none), shares (0 for none).

    Raises
    ------
    TypeError
        ``updates`` is not an array of SCORED_UPDATE_DTYPE.
    """
    if not isinstance(updates, np.ndarray) or updates.dtype != SCORED_UPDATE_DTYPE:
        raise TypeError("decide() needs an array of spec.risk.SCORED_UPDATE_DTYPE, got "
                        f"{getattr(updates, 'dtype', type(updates))}")
    cfg = config_vector(config)
    n = updates.shape[0]
    out = np.zeros(n, INTENT_DTYPE)
    for name in ("timestamp", "seq", "stock_locate", "best_bid", "best_ask"):
        out[name] = updates[name]
    intent = np.zeros(n, np.uint8)
    price = np.zeros(n, np.int64)
    shares = np.zeros(n, np.int64)
    _decide_core(updates["best_bid"], updates["best_ask"], np.ascontiguousarray(updates["scores"]),
                 cfg, intent, price, shares)
    out["intent"] = intent
    out["price"] = price
    out["shares"] = shares
    return out


# --------------------------------------------------------------------------- gate


@numba.njit(cache=True)
def _gate_core(ts, price, bid, ask, shares, locate, intent, cfg,
               position, open_buy, open_sell, ring, scal, counts,
               o_verdict, o_reason, o_side, o_urn, o_pos, o_ob, o_os, o_gross):
    max_size = cfg[_C_MAX_SIZE]
    max_pos = cfg[_C_MAX_POS]
    max_gross = cfg[_C_MAX_GROSS]
    collar2 = 2 * cfg[_C_COLLAR] * cfg[_C_TICK]
    thr_n = scal[_S_THR_N]
    window = cfg[_C_THR_W_US] * 1000
    resting = scal[_S_FILL] == FILL_RESTING
    for i in range(ts.shape[0]):
        loc = np.int64(locate[i])
        it = intent[i]
        if it == INTENT_NONE:
            o_verdict[i] = VERDICT_NONE
            o_reason[i] = REASON_NONE
            o_side[i] = 0
            o_urn[i] = 0
            scal[_S_NONE] += 1
        else:
            buy = it == INTENT_BUY
            t = np.int64(ts[i])
            p = price[i]
            q = np.int64(shares[i])
            b = bid[i]
            a = ask[i]
            reason = REASON_NONE
            if scal[_S_KILL] != 0:
                reason = _R_KILL
            elif b <= 0 or a <= 0 or b > a:
                reason = _R_QUOTE
            elif q <= 0 or p <= 0 or p > MAX_ORDER_PRICE:
                reason = _R_ORDER
            elif q > max_size:
                reason = _R_SIZE
            elif abs(2 * p - (b + a)) > collar2:
                reason = _R_COLLAR
            elif (buy and position[loc] + open_buy[loc] + q > max_pos) or \
                    ((not buy) and open_sell[loc] - position[loc] + q > max_pos):
                reason = _R_POS
            elif q * p > max_gross - scal[_S_GROSS]:
                reason = _R_GROSS
            elif scal[_S_RING_COUNT] >= thr_n and t - ring[scal[_S_RING_HEAD]] < window:
                reason = _R_THROTTLE
            o_side[i] = _SIDE_B if buy else _SIDE_S
            if reason == REASON_NONE:
                scal[_S_GROSS] += q * p
                o_urn[i] = scal[_S_NEXT_URN]
                scal[_S_NEXT_URN] += 1
                if resting:
                    if buy:
                        open_buy[loc] += q
                    else:
                        open_sell[loc] += q
                else:
                    position[loc] += q if buy else -q
                head = scal[_S_RING_HEAD]
                ring[head] = t
                scal[_S_RING_HEAD] = (head + 1) % thr_n
                if scal[_S_RING_COUNT] < thr_n:
                    scal[_S_RING_COUNT] += 1
                scal[_S_APPROVED] += 1
                o_verdict[i] = VERDICT_APPROVED
                o_reason[i] = REASON_NONE
            else:
                counts[reason] += 1
                o_verdict[i] = VERDICT_REJECTED
                o_reason[i] = reason
                o_urn[i] = 0
        o_pos[i] = position[loc]
        o_ob[i] = open_buy[loc]
        o_os[i] = open_sell[loc]
        o_gross[i] = scal[_S_GROSS]


def gate(intents: np.ndarray, config: RiskConfig, state: RiskState | None = None):
    """Run the pre-trade risk gate over a stream of intents.

    The checks and their priority are those of :mod:`hftaccel.spec.risk`. An approved order
    gets the next UserRefNum, adds ``shares * price`` to the committed gross notional, takes a
    throttle slot and, by ``fill_model``, either moves the position at once (immediate) or
    becomes open (resting). A rejected intent changes nothing but its reason's counter; an
    intent of ``none`` is passed through with verdict none.

    Parameters
    ----------
    intents : (n,) INTENT_DTYPE
        In time order (timestamps in ns since midnight, non-decreasing).
    config : RiskConfig
    state : RiskState, optional
        Carried across calls; a fresh one from ``config`` when omitted.

    Returns
    -------
    decisions : (n,) DECISION_DTYPE
    state : RiskState

    Raises
    ------
    TypeError
        ``intents`` is not an INTENT_DTYPE array.
    RiskError
        An intent code is not 0/1/2 or timestamps go backwards (the record index is named),
        or ``state`` was made for another throttle_orders / fill_model.
    """
    if not isinstance(intents, np.ndarray) or intents.dtype != INTENT_DTYPE:
        raise TypeError("gate() needs an array of spec.risk.INTENT_DTYPE, got "
                        f"{getattr(intents, 'dtype', type(intents))}")
    if state is None:
        state = RiskState(config)
    if state.scalars[_S_THR_N] != config.throttle_orders or \
            state.scalars[_S_FILL] != config.fill_model:
        raise RiskError("RiskState was created for throttle_orders="
                        f"{int(state.scalars[_S_THR_N])}, fill_model={int(state.scalars[_S_FILL])}"
                        f"; config has {config.throttle_orders}, {config.fill_model}")
    n = intents.shape[0]
    bad = np.flatnonzero(intents["intent"] > INTENT_SELL)
    if bad.size:
        raise RiskError(f"intent record {bad[0]} (seq {intents['seq'][bad[0]]}) has intent code "
                        f"{intents['intent'][bad[0]]}; expected 0 none, 1 buy, 2 sell")
    ts = intents["timestamp"]
    if n > 1:
        back = np.flatnonzero(ts[1:] < ts[:-1])
        if back.size:
            k = back[0] + 1
            raise RiskError(f"intent record {k} (seq {intents['seq'][k]}) has timestamp {ts[k]} "
                            f"ns before the previous record's {ts[k - 1]} ns")
    cfg = config_vector(config)
    out = np.zeros(n, DECISION_DTYPE)
    for name in ("timestamp", "seq", "price", "shares", "stock_locate", "intent"):
        out[name] = intents[name]
    verdict = np.zeros(n, np.uint8)
    reason = np.zeros(n, np.uint8)
    side = np.zeros(n, np.uint8)
    urn = np.zeros(n, np.int64)
    pos = np.zeros(n, np.int64)
    ob = np.zeros(n, np.int64)
    os_ = np.zeros(n, np.int64)
    gross = np.zeros(n, np.int64)
    _gate_core(ts, intents["price"], intents["best_bid"], intents["best_ask"],
               intents["shares"], intents["stock_locate"], intents["intent"], cfg,
               state.position, state.open_buy, state.open_sell, state.ring, state.scalars,
               state.reject_counts, verdict, reason, side, urn, pos, ob, os_, gross)
    if state.scalars[_S_NEXT_URN] > 0xFFFFFFFF + 1:
        raise RiskError("OUCH UserRefNum space (2**32-1) exhausted")
    out["verdict"] = verdict
    out["reason"] = reason
    out["side"] = side
    out["user_ref_num"] = urn
    out["position"] = pos
    out["open_buy"] = ob
    out["open_sell"] = os_
    out["gross_notional"] = gross
    return out, state


def run(updates: np.ndarray, config: RiskConfig, state: RiskState | None = None):
    """``gate(decide(updates, config), config, state)``: scored updates to decisions."""
    return gate(decide(updates, config), config, state)


# --------------------------------------------------------------------------- router hooks


def _check_hook(state, stock_locate, side, shares):
    if not 0 <= stock_locate < MAX_LOCATES:
        raise RiskError(f"stock locate {stock_locate} out of range 0..{MAX_LOCATES - 1}")
    if side not in ("B", "S", _SIDE_B, _SIDE_S):
        raise RiskError(f"side must be 'B' or 'S', got {side!r}")
    if shares <= 0:
        raise RiskError(f"shares must be positive, got {shares}")
    is_buy = side in ("B", _SIDE_B)
    open_arr = state.open_buy if is_buy else state.open_sell
    if shares > open_arr[stock_locate]:
        raise RiskError(f"locate {stock_locate}: {shares} shares reported on the "
                        f"{'buy' if is_buy else 'sell'} side but only {open_arr[stock_locate]} "
                        "are open (fill_model immediate keeps nothing open)")
    return is_buy, open_arr


class OneGate:
    """:func:`gate` for one intent at a time, without its per-call setup.

    Runs the gate's own kernel on ``state`` with the config vector and the output buffers made
    once (``gate()`` rebuilds both on every call, ~150 µs); for callers that gate orders one
    by one, such as the order router. Intents must be valid (intent code 1/2, timestamps not
    going backwards): they are not checked here.

    Parameters
    ----------
    config : RiskConfig
    state : RiskState
        Updated in place by every call.
    """

    def __init__(self, config: RiskConfig, state: RiskState):
        self.cfg = config_vector(config)
        self.state = state
        self.out = [np.zeros(1, np.uint8) for _ in range(3)] + \
            [np.zeros(1, np.int64) for _ in range(5)]

    def __call__(self, rec: np.ndarray) -> tuple:
        """``(verdict, reason, user_ref_num)`` of one INTENT_DTYPE record (shape (1,)).

        Raises
        ------
        RiskError
            The OUCH UserRefNum space is exhausted.
        """
        s = self.state
        verdict, reason, side, urn, pos, ob, os_, gross = self.out
        _gate_core(rec["timestamp"], rec["price"], rec["best_bid"], rec["best_ask"],
                   rec["shares"], rec["stock_locate"], rec["intent"], self.cfg, s.position,
                   s.open_buy, s.open_sell, s.ring, s.scalars, s.reject_counts, verdict,
                   reason, side, urn, pos, ob, os_, gross)
        if s.scalars[_S_NEXT_URN] > 0xFFFFFFFF + 1:
            raise RiskError("OUCH UserRefNum space (2**32-1) exhausted")
        return int(verdict[0]), int(reason[0]), int(urn[0])


def on_fill(state: RiskState, stock_locate: int, side, shares: int) -> None:
    """Apply an execution of an open order: open shares become position.

    Parameters
    ----------
    state : RiskState
    stock_locate : int
    side : 'B' | 'S' (or their ASCII codes)
    shares : int
        Executed shares (> 0, at most the open shares of that side).

    Raises
    ------
    RiskError
        Bad locate / side / shares, or more shares than are open.
    """
    is_buy, open_arr = _check_hook(state, stock_locate, side, shares)
    open_arr[stock_locate] -= shares
    state.position[stock_locate] += shares if is_buy else -shares


def on_cancel(state: RiskState, stock_locate: int, side, shares: int, price: int) -> None:
    """Apply a cancel of open shares: they leave the open count and release their notional.

    Parameters
    ----------
    state : RiskState
    stock_locate : int
    side : 'B' | 'S' (or their ASCII codes)
    shares : int
        Cancelled shares (> 0, at most the open shares of that side).
    price : int
        Limit price of the cancelled order, 1/10,000 USD (the notional it committed).

    Raises
    ------
    RiskError
        Bad locate / side / shares, more shares than are open, or more notional released than
        is committed.
    """
    is_buy, open_arr = _check_hook(state, stock_locate, side, shares)
    release = int(shares) * int(price)
    if price <= 0 or release > state.scalars[_S_GROSS]:
        raise RiskError(f"locate {stock_locate}: cancel of {shares} @ {price} releases {release} "
                        f"but only {int(state.scalars[_S_GROSS])} notional is committed")
    open_arr[stock_locate] -= shares
    state.scalars[_S_GROSS] -= release
