"""Order state machine per OUCH 5.0 UserRefNum, and position / P&L from executions.

States (``Order.state``)::

    pending_new --Accepted(L)--> live --Executed (all)--> filled
        |  \\--Accepted(D)--> dead        |--Canceled (all)--> canceled
        |--Rejected--> rejected          |--cancel sent--> pending_cancel --Cancel Reject--> live
        |--Account Query shows never     |--replace sent--> pending_replace --Replaced--> replaced
        |  received--> void              |                    \\--Rejected (new URN)--> live
        '--cancel sent--> pending_cancel

``Executed`` (spec 3.6), ``Canceled`` (3.4, its quantity is the decrement) and ``AIQ Canceled``
(3.5) are legal in every open state; ``Replaced`` (3.3) ends the original UserRefNum and makes
the new one live with the quantity the venue states. Each message returns *effects* for the
risk gate and the position keeper: ``("fill", order, shares, price)`` and ``("release", order,
shares, price)`` (open shares that will never execute: their committed notional is released).
A message that does not fit the state machine raises :class:`OrderStateError`; the router
records it with the SoupBinTCP sequence number and keeps the session.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Order", "OrderTable", "OrderStateError", "Positions", "STATES", "OPEN_STATES",
           "TERMINAL_STATES", "risk_side"]

PENDING_NEW, LIVE, PENDING_CANCEL, PENDING_REPLACE = ("pending_new", "live", "pending_cancel",
                                                      "pending_replace")
FILLED, CANCELED, REJECTED, REPLACED, DEAD, VOID = ("filled", "canceled", "rejected", "replaced",
                                                    "dead", "void")
OPEN_STATES = (PENDING_NEW, LIVE, PENDING_CANCEL, PENDING_REPLACE)
TERMINAL_STATES = (FILLED, CANCELED, REJECTED, REPLACED, DEAD, VOID)
STATES = OPEN_STATES + TERMINAL_STATES


class OrderStateError(ValueError):
    """An inbound message that does not fit the order's state (or names no known order)."""


def risk_side(side: str) -> str:
    """OUCH side (B, S, T sell short, E sell short exempt) -> risk-gate side ``B`` / ``S``."""
    return "B" if side == "B" else "S"


@dataclass
class Order:
    """One order as the router knows it.

    Attributes
    ----------
    user_ref_num : int
    symbol : bytes
        8 bytes, space padded.
    stock_locate : int
        Locate of the symbol in the ITCH feed (the risk gate's key).
    side : str
        OUCH side B / S / T / E.
    quantity : int
        Shares entered (for a replacement: the replacement's quantity).
    price : int
        Limit price, 1/10,000 USD.
    time_in_force : str
    cl_ord_id : bytes
    state : str
        One of :data:`STATES`.
    leaves : int
        Open shares (committed in the risk gate), shares.
    filled : int
        Executed shares.
    accepted : bool
        Order Accepted / Replaced was received.
    orig_user_ref_num : int
        For a replacement: the UserRefNum it replaces (0 otherwise).
    replaced_by : int
        UserRefNum of a pending or done replacement (0 otherwise).
    order_ref_num : int
        The venue's Order Reference Number (from Accepted / Replaced).
    reason : object
        Reject reason code, cancel reason letter, or why the order was voided.
    """

    user_ref_num: int
    symbol: bytes
    stock_locate: int
    side: str
    quantity: int
    price: int
    time_in_force: str = "3"
    cl_ord_id: bytes = b""
    state: str = PENDING_NEW
    leaves: int = 0
    filled: int = 0
    accepted: bool = False
    orig_user_ref_num: int = 0
    replaced_by: int = 0
    order_ref_num: int = 0
    reason: object = None
    _before_cancel: str = field(default=LIVE, repr=False)

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def is_pending(self) -> bool:
        """Waiting for the venue's answer to something we sent."""
        return self.state in (PENDING_NEW, PENDING_CANCEL, PENDING_REPLACE)

    def as_dict(self) -> dict:
        return {"user_ref_num": self.user_ref_num, "symbol": self.symbol.decode().strip(),
                "side": self.side, "quantity": self.quantity, "price": self.price,
                "state": self.state, "leaves": self.leaves, "filled": self.filled,
                "reason": self.reason}


class OrderTable:
    """Every order of the session by UserRefNum, and the transitions of the state machine."""

    def __init__(self):
        self.orders: dict[int, Order] = {}
        self.counts = {s: 0 for s in STATES}

    def __getitem__(self, urn: int) -> Order:
        try:
            return self.orders[urn]
        except KeyError:
            raise OrderStateError(f"no order with UserRefNum {urn}") from None

    def __contains__(self, urn: int) -> bool:
        return urn in self.orders

    def __len__(self) -> int:
        return len(self.orders)

    def open_orders(self) -> list:
        return [o for o in self.orders.values() if o.is_open]

    # outbound ------------------------------------------------------------------------------

    def entered(self, order: Order) -> None:
        """An Enter Order was sent (and journaled) for ``order``."""
        if order.user_ref_num in self.orders:
            raise OrderStateError(f"UserRefNum {order.user_ref_num} was already used")
        order.state, order.leaves = PENDING_NEW, order.quantity
        self.orders[order.user_ref_num] = order

    def replace_sent(self, orig: Order, new: Order) -> None:
        """A Replace Order Request moving ``orig`` to the new UserRefNum of ``new`` was sent."""
        if orig.state != LIVE:
            raise OrderStateError(f"UserRefNum {orig.user_ref_num} is {orig.state}; only a live "
                                  "order can be replaced")
        self.entered(new)
        new.orig_user_ref_num = orig.user_ref_num
        orig.replaced_by = new.user_ref_num
        orig.state = PENDING_REPLACE

    def cancel_sent(self, order: Order) -> None:
        """A Cancel Order Request for ``order`` was sent."""
        if order.state not in (PENDING_NEW, LIVE, PENDING_REPLACE):
            raise OrderStateError(f"UserRefNum {order.user_ref_num} is {order.state}; it cannot "
                                  "be canceled")
        order._before_cancel = order.state
        order.state = PENDING_CANCEL

    def void(self, order: Order, why: str) -> list:
        """The venue never received ``order`` (Account Query, spec 3.17): release it."""
        if order.state != PENDING_NEW or order.accepted:
            raise OrderStateError(f"UserRefNum {order.user_ref_num} is {order.state}; only an "
                                  "unacknowledged new order can be voided")
        effects = self._release(order, order.leaves)
        order.state, order.reason = VOID, why
        if order.orig_user_ref_num in self.orders:
            orig = self.orders[order.orig_user_ref_num]
            if orig.state == PENDING_REPLACE:
                orig.state, orig.replaced_by = LIVE, 0
        return effects

    # inbound -------------------------------------------------------------------------------

    def apply(self, msg: dict) -> list:
        """Apply one decoded OUCH 5.0 outbound message; return its risk / position effects.

        Raises
        ------
        OrderStateError
            Unknown UserRefNum, or a message the order's state does not allow.
        """
        handler = _HANDLERS.get(msg["type"])
        return handler(self, msg) if handler is not None else []

    def _release(self, order: Order, shares: int) -> list:
        if shares <= 0:
            return []
        order.leaves -= shares
        return [("release", order, shares, order.price)]

    def _accepted(self, msg: dict) -> list:
        o = self[msg["user_ref_num"]]
        if o.accepted or o.state not in (PENDING_NEW, PENDING_CANCEL):
            raise OrderStateError(f"Order Accepted for UserRefNum {o.user_ref_num} in state "
                                  f"{o.state}{' (already accepted)' if o.accepted else ''}")
        return self._acknowledge(o, msg, "Order Accepted")

    def _acknowledge(self, o: Order, msg: dict, what: str) -> list:
        """Order Accepted / Replaced: the venue's quantity and Order State (live or dead)."""
        o.accepted, o.order_ref_num = True, msg["order_ref_num"]
        effects = self._check_quantity(o, msg["quantity"], what)
        if msg["order_state"] == b"D":
            effects += self._release(o, o.leaves)
            o.state = DEAD
        elif o.state == PENDING_NEW:
            o.state = LIVE
        return effects

    def _check_quantity(self, o: Order, quantity: int, what: str) -> list:
        if quantity > o.leaves:
            raise OrderStateError(f"{what} for UserRefNum {o.user_ref_num} states {quantity} "
                                  f"shares; only {o.leaves} were sent")
        return self._release(o, o.leaves - quantity)

    def _replaced(self, msg: dict) -> list:
        new = self[msg["user_ref_num"]]
        orig = self[msg["orig_user_ref_num"]]
        if new.orig_user_ref_num != orig.user_ref_num or new.state not in (PENDING_NEW,
                                                                         PENDING_CANCEL):
            raise OrderStateError(f"Order Replaced {orig.user_ref_num} -> {new.user_ref_num} "
                                  f"was not requested (new order is {new.state})")
        effects = self._release(orig, orig.leaves)
        if orig.is_open:
            orig.state = REPLACED
        return effects + self._acknowledge(new, msg, "Order Replaced")

    def _decrement(self, o: Order, shares: int, reason, what: str) -> list:
        if not o.is_open:
            raise OrderStateError(f"{what} for UserRefNum {o.user_ref_num} in state {o.state}")
        if shares > o.leaves:
            raise OrderStateError(f"{what} for UserRefNum {o.user_ref_num} decrements {shares} "
                                  f"shares; {o.leaves} are open")
        effects = self._release(o, shares)
        if o.leaves == 0:
            o.state, o.reason = CANCELED, reason
        elif o.state == PENDING_CANCEL:
            o.state = o._before_cancel if o._before_cancel != PENDING_NEW else LIVE
        return effects

    def _canceled(self, msg: dict) -> list:
        o = self[msg["user_ref_num"]]
        return self._decrement(o, msg["quantity"], msg["reason"].decode(), "Order Canceled")

    def _aiq_canceled(self, msg: dict) -> list:
        o = self[msg["user_ref_num"]]
        return self._decrement(o, msg["decrement_shares"], msg["reason"].decode(),
                               "AIQ Canceled")

    def _executed(self, msg: dict) -> list:
        o = self[msg["user_ref_num"]]
        q = msg["quantity"]
        if not o.accepted or not o.is_open:
            raise OrderStateError(f"Order Executed for UserRefNum {o.user_ref_num} in state "
                                  f"{o.state}{'' if o.accepted else ' (not accepted)'}")
        if q <= 0 or q > o.leaves:
            raise OrderStateError(f"Order Executed for UserRefNum {o.user_ref_num}: {q} shares, "
                                  f"{o.leaves} open")
        o.leaves -= q
        o.filled += q
        if o.leaves == 0 and o.state != PENDING_REPLACE:
            o.state = FILLED
        return [("fill", o, q, msg["price"])]

    def _broken(self, msg: dict) -> list:
        o = self[msg["user_ref_num"]]
        return [("broken", o, msg["match_number"], 0)]

    def _rejected(self, msg: dict) -> list:
        o = self[msg["user_ref_num"]]
        if o.accepted or o.state not in (PENDING_NEW, PENDING_CANCEL):
            raise OrderStateError(f"Rejected for UserRefNum {o.user_ref_num} in state {o.state}")
        effects = self._release(o, o.leaves)
        o.state, o.reason = REJECTED, msg["reason"]
        if o.orig_user_ref_num in self.orders:
            orig = self.orders[o.orig_user_ref_num]
            if orig.state == PENDING_REPLACE:
                orig.state, orig.replaced_by = (LIVE if orig.leaves else FILLED), 0
        return effects

    def _cancel_reject(self, msg: dict) -> list:
        o = self[msg["user_ref_num"]]
        if o.state == PENDING_CANCEL:
            o.state = o._before_cancel if o.accepted or o._before_cancel != PENDING_NEW else \
                PENDING_NEW
            if o.state == PENDING_NEW and o.accepted:
                o.state = LIVE
        return []

    def _modified(self, msg: dict) -> list:
        o = self[msg["user_ref_num"]]
        if not o.is_open:
            raise OrderStateError(f"Order Modified for UserRefNum {o.user_ref_num} in state "
                                  f"{o.state}")
        effects = self._check_quantity(o, msg["quantity"], "Order Modified")
        if o.leaves == 0:
            o.state = CANCELED
        return effects

    def _priority(self, msg: dict) -> list:
        o = self[msg["user_ref_num"]]
        o.order_ref_num = msg["order_ref_num"]
        return []

    def _noop_known(self, msg: dict) -> list:
        self[msg["user_ref_num"]]
        return []


_HANDLERS = {
    "A": OrderTable._accepted, "U": OrderTable._replaced, "C": OrderTable._canceled,
    "D": OrderTable._aiq_canceled, "E": OrderTable._executed, "B": OrderTable._broken,
    "J": OrderTable._rejected, "P": OrderTable._noop_known, "I": OrderTable._cancel_reject,
    "T": OrderTable._priority, "M": OrderTable._modified, "R": OrderTable._noop_known,
}


class Positions:
    """Position, cash and P&L per stock locate from executions.

    Prices are 1/10,000 USD; cash is integer (1/10,000 USD): a buy of ``q`` at ``p`` costs
    ``q * p``. Realized P&L uses the average cost of the open position; total P&L marks the
    position at a given price (``cash + position * mark``).
    """

    def __init__(self):
        self.by_locate: dict[int, dict] = {}
        self.fills = 0
        self.broken = 0

    def _row(self, locate: int, symbol: bytes) -> dict:
        if locate not in self.by_locate:
            self.by_locate[locate] = {"symbol": symbol.decode("ascii", "replace").strip(),
                                      "position": 0, "cash": 0, "bought": 0, "sold": 0,
                                      "fills": 0, "avg_cost": 0.0, "realized": 0.0,
                                      "last_price": 0}
        return self.by_locate[locate]

    def fill(self, locate: int, symbol: bytes, side: str, shares: int, price: int) -> None:
        r = self._row(locate, symbol)
        signed = shares if side == "B" else -shares
        pos = r["position"]
        if pos == 0 or (pos > 0) == (signed > 0):
            r["avg_cost"] = (r["avg_cost"] * abs(pos) + price * shares) / (abs(pos) + shares)
        else:
            closed = min(shares, abs(pos))
            r["realized"] += closed * (price - r["avg_cost"]) * (1 if pos > 0 else -1)
            if shares > abs(pos):
                r["avg_cost"] = float(price)
        r["position"] = pos + signed
        if r["position"] == 0:
            r["avg_cost"] = 0.0
        r["cash"] -= signed * price
        r["bought" if side == "B" else "sold"] += shares
        r["fills"] += 1
        r["last_price"] = price
        self.fills += 1

    def summary(self, marks: dict | None = None) -> dict:
        """``{locate: row}`` plus totals, in USD; ``marks`` maps locate -> mark price
        (1/10,000 USD; default: the last fill price)."""
        rows, total, realized = {}, 0.0, 0.0
        for loc, r in sorted(self.by_locate.items()):
            mark = (marks or {}).get(loc) or r["last_price"]
            pnl = (r["cash"] + r["position"] * mark) / 10_000
            rows[r["symbol"] or str(loc)] = {
                "stock_locate": loc, "position": r["position"], "bought": r["bought"],
                "sold": r["sold"], "fills": r["fills"], "mark": mark / 10_000,
                "realized_pnl_usd": r["realized"] / 10_000, "pnl_usd": pnl}
            total += pnl
            realized += r["realized"] / 10_000
        return {"by_symbol": rows, "fills": self.fills, "broken_trades": self.broken,
                "realized_pnl_usd": realized, "pnl_usd": total}
