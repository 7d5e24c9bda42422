"""Decision and pre-trade risk gate contracts: config record, intents, reasons, record dtypes.

The decision stage turns one scored book update (3 int32 class logits of the int8 MLP) into an
intent (none / buy / sell) with a price and a size; the risk gate approves or rejects it. Both
are integer-only (prices and notional in 1/10,000 USD as int64, shares, times in ns) so the
gateware (``hftaccel.rtl.risk``) reproduces the golden model (``hftaccel.golden.risk``) bit
for bit. The semantics are stated once here and in :mod:`hftaccel.golden.risk`.

Gate checks, in priority order (the first failing check is the counted reason):

``kill_switch``
    the kill switch is on: everything is blocked.
``bad_quote``
    best bid or best ask is 0 (missing side), or the book is crossed (bid > ask).
``bad_order``
    shares == 0, or price <= 0, or price > the OUCH 5.0 maximum price.
``max_order_size``
    shares > ``max_order_size``.
``price_collar``
    ``|2 * price - (bid + ask)| > 2 * collar_ticks * tick_size`` (the price lies more than
    ``collar_ticks`` ticks from the mid; doubled so no division is needed).
``max_position``
    worst case after the order exceeds ``max_position`` shares for that stock locate:
    buy: ``position + open_buy + shares``; sell: ``-position + open_sell + shares``.
``max_gross_notional``
    ``gross_notional + shares * price > max_gross_notional`` where ``gross_notional`` is the
    committed notional of the session: the sum of ``shares * price`` of every approved order,
    less ``shares * price`` released by cancels of unfilled shares (fills keep it committed).
``throttle``
    ``throttle_orders`` orders were already approved in the last ``throttle_window_us`` µs:
    an order at ``t`` is allowed only if ``t - t_oldest >= window`` where ``t_oldest`` is the
    timestamp of the ``throttle_orders``-th most recent approved order. Hence every half-open
    window ``[t0, t0 + W)`` holds at most ``throttle_orders`` approved orders.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from .itch import TICK_SIZE
from .ouch import MAX_PRICE

__all__ = [
    "INTENTS", "INTENT_NONE", "INTENT_BUY", "INTENT_SELL", "INTENT_SIDE",
    "REJECT_REASONS", "REASON_NONE", "VERDICTS", "VERDICT_NONE", "VERDICT_APPROVED",
    "VERDICT_REJECTED", "PRICE_POLICIES", "POLICY_JOIN", "POLICY_TAKE",
    "FILL_MODELS", "FILL_IMMEDIATE", "FILL_RESTING", "MAX_THROTTLE_ORDERS", "NUM_CLASSES",
    "CLASS_DOWN", "CLASS_FLAT", "CLASS_UP", "MAX_ORDER_PRICE",
    "RiskConfig", "RISK_CONFIG_DTYPE", "SCORED_UPDATE_DTYPE", "INTENT_DTYPE",
    "DECISION_DTYPE",
]

#: Intent codes (u1): index into this tuple.
INTENTS = ("none", "buy", "sell")
INTENT_NONE, INTENT_BUY, INTENT_SELL = 0, 1, 2
#: Intent code -> ASCII OUCH side (0 for none).
INTENT_SIDE = (0, ord("B"), ord("S"))

#: Rejection reasons in check-priority order; a decision record's ``reason`` indexes this tuple.
REJECT_REASONS = ("kill_switch", "bad_quote", "bad_order", "max_order_size", "price_collar",
                  "max_position", "max_gross_notional", "throttle")
#: ``reason`` of records that were not rejected.
REASON_NONE = 255

#: Verdict codes (u1).
VERDICTS = ("none", "approved", "rejected")
VERDICT_NONE, VERDICT_APPROVED, VERDICT_REJECTED = 0, 1, 2

#: Price policies: ``join`` rests at the near touch (buy at best bid, sell at best ask);
#: ``take`` is a marketable limit at the far touch (buy at best ask, sell at best bid).
PRICE_POLICIES = ("join", "take")
POLICY_JOIN, POLICY_TAKE = 0, 1

#: How open orders are modelled without a venue. ``immediate``: an approved order is assumed
#: filled in full at its limit price at once (position moves, nothing stays open).
#: ``resting``: an approved order stays open (counted in open_buy / open_sell and in the
#: worst-case position) until the router reports ``on_fill`` / ``on_cancel``.
FILL_MODELS = ("immediate", "resting")
FILL_IMMEDIATE, FILL_RESTING = 0, 1

#: Throttle ring capacity: the largest ``throttle_orders`` the gate (and its gateware RAM) holds.
MAX_THROTTLE_ORDERS = 1024
#: Score vector layout of the MLP output (int32 logits).
NUM_CLASSES = 3
CLASS_DOWN, CLASS_FLAT, CLASS_UP = 0, 1, 2
#: Largest order price the gate lets through: the OUCH 5.0 maximum limit price (spec 1.2).
MAX_ORDER_PRICE = MAX_PRICE


@dataclass(frozen=True)
class RiskConfig:
    """Decision thresholds and risk limits (all integers).

    Attributes
    ----------
    buy_threshold, sell_threshold : int
        Buy when ``score_up - max(score_down, score_flat) >= buy_threshold``; otherwise sell
        when ``score_down - max(score_up, score_flat) >= sell_threshold`` (buy wins a tie).
        Units: the MLP's int32 logits.
    lot_size : int
        Shares per order.
    price_policy : int
        ``POLICY_JOIN`` or ``POLICY_TAKE``.
    price_offset_ticks : int
        Added aggressiveness: a buy price moves up, a sell price down by this many ticks.
    tick_size : int
        1/10,000 USD per tick (100 = $0.01).
    collar_ticks : int
        Price collar half-width around the mid, in ticks.
    max_order_size : int
        Shares.
    max_position : int
        Worst-case absolute position per stock locate, shares.
    max_gross_notional : int
        Committed session notional, 1/10,000 USD (int64).
    throttle_orders : int
        N: most approved orders in any window, 1..``MAX_THROTTLE_ORDERS``.
    throttle_window_us : int
        W: window length in µs.
    fill_model : int
        ``FILL_IMMEDIATE`` or ``FILL_RESTING``.
    kill_switch : int
        Initial kill switch state (0 off, 1 on).
    """

    buy_threshold: int = 256
    sell_threshold: int = 256
    lot_size: int = 100
    price_policy: int = POLICY_TAKE
    price_offset_ticks: int = 0
    tick_size: int = TICK_SIZE
    collar_ticks: int = 10
    max_order_size: int = 1_000
    max_position: int = 1_000
    max_gross_notional: int = 1_000_000 * 10_000
    throttle_orders: int = 10
    throttle_window_us: int = 1_000
    fill_model: int = FILL_IMMEDIATE
    kill_switch: int = 0

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
                raise TypeError(f"RiskConfig.{f.name} must be an integer, got {v!r}")
        nonneg = ("lot_size", "tick_size", "collar_ticks", "max_order_size", "max_position",
                  "max_gross_notional", "throttle_window_us")
        for name in nonneg:
            if getattr(self, name) < 0:
                raise ValueError(f"RiskConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.tick_size < 1:
            raise ValueError(f"RiskConfig.tick_size must be >= 1, got {self.tick_size!r}")
        if not 1 <= self.throttle_orders <= MAX_THROTTLE_ORDERS:
            raise ValueError(f"RiskConfig.throttle_orders must be in 1..{MAX_THROTTLE_ORDERS}, "
                             f"got {self.throttle_orders!r}")
        if self.price_policy not in (POLICY_JOIN, POLICY_TAKE):
            raise ValueError(f"RiskConfig.price_policy must be 0 (join) or 1 (take), "
                             f"got {self.price_policy!r}")
        if self.fill_model not in (FILL_IMMEDIATE, FILL_RESTING):
            raise ValueError(f"RiskConfig.fill_model must be 0 (immediate) or 1 (resting), "
                             f"got {self.fill_model!r}")
        if self.kill_switch not in (0, 1):
            raise ValueError(f"RiskConfig.kill_switch must be 0 or 1, got {self.kill_switch!r}")

    def to_record(self) -> np.ndarray:
        """Return the config as a 0-d array of :data:`RISK_CONFIG_DTYPE`."""
        rec = np.zeros((), RISK_CONFIG_DTYPE)
        for k, v in asdict(self).items():
            rec[k] = v
        return rec


#: Config as one fixed record (all int64), as the gateware's register file holds it.
RISK_CONFIG_DTYPE = np.dtype([(f.name, "<i8") for f in fields(RiskConfig)])

#: Decision input: one scored book update.
#: timestamp (ns since midnight), seq (triggering message), best_bid / best_ask (ITCH Price(4),
#: 1/10,000 USD, 0 = side empty), stock_locate, scores (int32 logits down / flat / up).
SCORED_UPDATE_DTYPE = np.dtype([
    ("timestamp", "<u8"),
    ("seq", "<u8"),
    ("best_bid", "<u4"),
    ("best_ask", "<u4"),
    ("scores", "<i4", (NUM_CLASSES,)),
    ("stock_locate", "<u2"),
    ("_pad", "V2"),
])
assert SCORED_UPDATE_DTYPE.itemsize == 40

#: Gate input: one intent (the decision stage's output, or a synthetic stream in tests).
INTENT_DTYPE = np.dtype([
    ("timestamp", "<u8"),
    ("seq", "<u8"),
    ("price", "<i8"),
    ("best_bid", "<i8"),
    ("best_ask", "<i8"),
    ("shares", "<u4"),
    ("stock_locate", "<u2"),
    ("intent", "u1"),
    ("_pad", "V1"),
])
assert INTENT_DTYPE.itemsize == 48

#: Gate output: one record per input. State fields are those after the record was applied.
#: verdict: VERDICT_*; reason: index into REJECT_REASONS or REASON_NONE; side: ASCII B/S of the
#: order (0 when intent is none); user_ref_num: OUCH UserRefNum of an approved order, else 0;
#: position / open_buy / open_sell (shares, this locate) and gross_notional (1/10,000 USD).
DECISION_DTYPE = np.dtype([
    ("timestamp", "<u8"),
    ("seq", "<u8"),
    ("price", "<i8"),
    ("position", "<i8"),
    ("open_buy", "<i8"),
    ("open_sell", "<i8"),
    ("gross_notional", "<i8"),
    ("shares", "<u4"),
    ("user_ref_num", "<u4"),
    ("stock_locate", "<u2"),
    ("intent", "u1"),
    ("verdict", "u1"),
    ("reason", "u1"),
    ("side", "u1"),
    ("_pad", "V2"),
])
assert DECISION_DTYPE.itemsize == 72
