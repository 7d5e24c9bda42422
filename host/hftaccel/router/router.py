"""The order router: risk gate -> journal -> OUCH 5.0 over SoupBinTCP 4.0, and back.

Outbound, every Enter Order (OUCH 5.0 section 2.1) and Replace Order Request (2.2) passes the
golden pre-trade risk gate (:func:`hftaccel.golden.risk.gate`, ``fill_model`` resting) before
anything is written: the gate assigns the UserRefNum, commits the notional and the open shares.
An approved message is journaled and fsync'd, then sent. Cancel Order Requests (2.3) are never
blocked (they only reduce risk); the kill switch turns the gate's kill switch on (every new
order is blocked) and sends a cancel for every open order.

Inbound, each Sequenced Data packet is journaled (fsync'd by group commit) before it is
decoded with :func:`hftaccel.golden.ouch.decode` and applied to the order state machine
(:mod:`hftaccel.router.orders`); executions call the gate's ``on_fill`` hook and shares that
will never execute (cancels, rejects, replaced remainders) call ``on_cancel``, so the gate always
sees the venue's view of open orders and position. A malformed OUCH message is recorded with its
sequence number and byte offset and the session is kept (the sequence number advances, as the
venue will not send it again); malformed SoupBinTCP framing closes the session cleanly.

After every login (first connect, reconnect after a dropped link, restart after ``kill -9``)
the router asks for the next sequence number it has not journaled, so the venue replays what
was missed, and then sends an Account Query Request (2.8): the response (3.17) carries the next
UserRefNum the venue expects, so an Enter Order that was journaled but never reached the venue
(the client's unsequenced data is not retransmitted, SoupBinTCP section 1) is voided and its
risk released instead of waiting forever.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import numpy as np

from hftaccel.golden import ouch
from hftaccel.golden import risk as grisk
from hftaccel.spec import ouch as spec
from hftaccel.spec.risk import (FILL_RESTING, INTENT_BUY, INTENT_DTYPE, INTENT_SELL,
                                REJECT_REASONS, VERDICT_APPROVED, RiskConfig)

from .journal import Journal
from .orders import LIVE, PENDING_CANCEL, PENDING_NEW, Order, OrderStateError, OrderTable, \
    Positions, risk_side
from .soup import LoginRejected, SoupClient, SoupError

__all__ = ["Router", "RouterError"]


class RouterError(RuntimeError):
    """The router cannot do what was asked (not connected, session closed, bad request)."""


class Router:
    """An OUCH 5.0 order-entry session with risk gate, journal and recovery.

    Parameters
    ----------
    host, port : str, int
        The venue's SoupBinTCP listener.
    risk_config : RiskConfig
        Limits of the pre-trade gate; ``fill_model`` is forced to resting (open orders count
        until the venue reports fills and cancels).
    journal : str or Path, optional
        Journal file. An existing journal is replayed first: the router resumes with the same
        orders, risk state, position and next expected sequence number.
    username, password : str
        SoupBinTCP Login Request credentials.
    session : bytes
        Session to ask for on the first login (blank: the venue's current one).
    heartbeat_s, timeout_s : float
        SoupBinTCP heartbeat interval and silence timeout (spec: 1 s and 15 s).
    reconnect : bool
        Reconnect (asking for the next expected sequence number) when the link is lost.
    fsync : bool
        Make journal writes durable (off only in benchmarks).
    group_commit_s : float
        Inbound records are written at once and fsync'd together at most this long after (or
        earlier, with the next outbound message, which is always fsync'd before it is sent).
    """

    def __init__(self, host: str, port: int, *, risk_config: RiskConfig | None = None,
                 journal=None, username: str = "HFT", password: str = "", session: bytes = b"",
                 heartbeat_s: float = 1.0, timeout_s: float = 15.0, reconnect: bool = True,
                 fsync: bool = True, group_commit_s: float = 0.002):
        self.host, self.port = host, port
        cfg = risk_config if risk_config is not None else RiskConfig()
        self.config = dataclasses.replace(cfg, fill_model=FILL_RESTING)
        self.risk = grisk.RiskState(self.config)
        self.orders = OrderTable()
        self.positions = Positions()
        self.username, self.password = username, password
        self.session = bytes(session)
        self.next_seq = 1
        self.heartbeat_s, self.timeout_s = heartbeat_s, timeout_s
        self.reconnect = reconnect
        self.client: SoupClient | None = None
        self.errors: list[dict] = []
        self.fatal: Exception | None = None
        self.events: list[dict] = []          # system events, responses, session changes
        self.counts = {"enter": 0, "replace": 0, "cancel": 0, "query": 0, "accepted": 0,
                       "rejected": 0, "replaced": 0, "canceled": 0, "executed": 0,
                       "voided": 0, "logins": 0, "reconnects": 0, "broken": 0}
        self.risk_rejects = {r: 0 for r in REJECT_REASONS}
        self.risk_rejects["not_connected"] = 0
        self.last_reject: str | None = None
        self.latency_ack_ns: list[int] = []
        self.latency_done_ns: list[int] = []
        self._sent_ns: dict[int, int] = {}
        self._query_mark = 0
        self._query_pending = False
        self._commit = None
        self.group_commit_s = group_commit_s
        self._outq: list[bytes] = []
        self._flush_handle = None
        self._fsync_future = None
        self._gate_one = grisk.OneGate(self.config, self.risk)
        self._waiters: list = []
        self._closing = False
        self._reconnect_task = None
        self._last_intent_ts = 0
        self.replayed = {"records": 0, "torn": None}
        self.journal = None
        if journal is not None:
            self.journal = Journal(journal, fsync=fsync)
            self._replay(self.journal.records)
            self.replayed = {"records": len(self.journal.records), "torn": self.journal.torn}

    # --------------------------------------------------------------------------- lifecycle

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.is_open

    async def start(self, *, timeout: float = 5.0) -> None:
        """Connect and log in, asking for the next sequence number not yet journaled.

        Raises
        ------
        LoginRejected, SoupError, OSError
        """
        await self._connect(timeout)

    async def _connect(self, timeout: float = 5.0) -> None:
        client = SoupClient(self.host, self.port, username=self.username,
                            password=self.password, on_sequenced=self._on_sequenced,
                            on_closed=self._on_closed, heartbeat_s=self.heartbeat_s,
                            timeout_s=self.timeout_s)
        self.client = client
        try:
            session, seq = await client.login(self.session, self.next_seq, timeout=timeout)
        except BaseException:
            self.client = None
            raise
        if seq != self.next_seq:
            self.events.append({"event": "sequence_reset", "asked": self.next_seq, "got": seq,
                                "session": session.decode().strip()})
        self._journal("L", Journal.login_body(session, seq))
        self._sync()
        self.session, self.next_seq = session, seq
        self.counts["logins"] += 1
        self.events.append({"event": "login", "session": session.decode().strip(),
                            "next_sequence_number": seq})
        # Which journaled orders did the venue never see? (Account Query, spec 2.8 / 3.17)
        self._query_mark = self.risk.next_user_ref_num
        self._query_pending = True
        self._send_message({"type": "Q", "options": None}, 0, None)
        self.counts["query"] += 1
        if self.risk.kill_switch:
            self._cancel_all(resend=True)

    def _on_closed(self, reason: str, error) -> None:
        self.client = None
        self.events.append({"event": "closed", "reason": reason,
                            "error": str(error) if error else None})
        if reason == "protocol":
            self.fatal = error
        elif reason == "lost" and self.reconnect and not self._closing:
            self._reconnect_task = asyncio.ensure_future(self._reconnect_loop())
        self._wake()

    async def _reconnect_loop(self) -> None:
        delay = 0.01
        while not self._closing:
            try:
                await self._connect()
                self.counts["reconnects"] += 1
                self._wake()
                return
            except LoginRejected as e:
                self.fatal = e
                self._wake()
                return
            except (SoupError, OSError, asyncio.TimeoutError):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)

    async def logout(self) -> None:
        """Log out (SoupBinTCP 2.3.4) and stop reconnecting."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        while self._outq or self._fsync_future is not None:  # what was queued leaves first
            if self._fsync_future is not None:
                await asyncio.wait([self._fsync_future])
                await asyncio.sleep(0)
            else:
                self._flush()
        self._closing = True
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
        if self.client is not None:
            await self.client.logout()

    async def close(self) -> None:
        """Log out if connected and close the journal."""
        await self.logout()
        if self._fsync_future is not None:
            await asyncio.wait([self._fsync_future])
        if self._commit is not None:
            self._commit.cancel()
            self._commit = None
        if self.journal is not None:
            self.journal.close()

    def drop_connection(self) -> None:
        """Drop the link without a logout (tests: a lost connection; reconnects if enabled)."""
        if self.client is not None:
            client = self.client
            client.close()
            self._on_closed("lost", None)

    # --------------------------------------------------------------------------- outbound

    def submit(self, symbol, stock_locate: int, side: str, quantity: int, price: int, *,
               best_bid: int, best_ask: int, timestamp: int | None = None,
               time_in_force: str = "3", display: str = "Y", capacity: str = "P",
               cl_ord_id=b"") -> Order | None:
        """Gate, journal and send one Enter Order (OUCH 5.0 section 2.1).

        Parameters
        ----------
        symbol : str or bytes
            Up to 8 characters.
        stock_locate : int
            The symbol's locate (the risk gate keeps position per locate).
        side : {"B", "S", "T", "E"}
        quantity : int
            Shares.
        price : int
            Limit price, 1/10,000 USD.
        best_bid, best_ask : int
            The quote the order was decided on (the gate's quote and price-collar checks).
        timestamp : int, optional
            ns; the throttle's clock (default: ``time.monotonic_ns()``).
        time_in_force, display, capacity : str
            OUCH codes (default IOC, visible, principal).
        cl_ord_id : str or bytes

        Returns
        -------
        Order or None
            None when the gate (or a missing connection) blocked it; ``last_reject`` then names
            the reason and ``risk_rejects`` counts it.
        """
        t_start = time.perf_counter_ns()
        if not self.connected:
            return self._blocked("not_connected")
        if side not in spec.SIDES:
            raise RouterError(f"side must be one of {''.join(spec.SIDES)}, got {side!r}")
        intent = self._intent(stock_locate, risk_side(side), quantity, price, best_bid, best_ask,
                              timestamp)
        urn = self._gate(intent)
        if urn is None:
            return None
        sym = symbol.encode("ascii") if isinstance(symbol, str) else bytes(symbol)
        order = Order(urn, sym.ljust(8, b" "), int(stock_locate), side, int(quantity), int(price),
                      time_in_force, bytes(cl_ord_id.encode() if isinstance(cl_ord_id, str)
                                           else cl_ord_id))
        msg = {"type": "O", "user_ref_num": urn, "side": side, "quantity": int(quantity),
               "symbol": order.symbol, "price": int(price), "time_in_force": time_in_force,
               "display": display, "capacity": capacity, "intermarket_sweep": "N",
               "cross_type": "N", "cl_ord_id": order.cl_ord_id, "options": {}}
        self.orders.entered(order)
        self._send_message(msg, stock_locate, intent)
        self.counts["enter"] += 1
        self._sent_ns[urn] = t_start
        return order

    def replace(self, user_ref_num: int, quantity: int, price: int, *, best_bid: int,
                best_ask: int, timestamp: int | None = None) -> Order | None:
        """Gate, journal and send a Replace Order Request (OUCH 5.0 section 2.2).

        The replacement is gated as a new order of the same side (its shares and notional
        are committed while the original's open shares still count: conservative); when the
        venue confirms (Order Replaced, 3.3) the original's open shares are released.

        Returns
        -------
        Order or None
            The replacement (new UserRefNum), or None when blocked.

        Raises
        ------
        RouterError
            The original is not a live order.
        """
        t_start = time.perf_counter_ns()
        orig = self._order(user_ref_num)
        if orig.state != LIVE:
            raise RouterError(f"UserRefNum {user_ref_num} is {orig.state}; only a live order "
                              "can be replaced")
        if not self.connected:
            return self._blocked("not_connected")
        intent = self._intent(orig.stock_locate, risk_side(orig.side), quantity, price,
                              best_bid, best_ask, timestamp)
        urn = self._gate(intent)
        if urn is None:
            return None
        new = Order(urn, orig.symbol, orig.stock_locate, orig.side, int(quantity), int(price),
                    orig.time_in_force, orig.cl_ord_id)
        msg = {"type": "U", "orig_user_ref_num": orig.user_ref_num, "user_ref_num": urn,
               "quantity": int(quantity), "price": int(price),
               "time_in_force": orig.time_in_force, "display": "Y", "intermarket_sweep": "N",
               "cl_ord_id": orig.cl_ord_id, "options": {}}
        self.orders.replace_sent(orig, new)
        self._send_message(msg, orig.stock_locate, intent)
        self.counts["replace"] += 1
        self._sent_ns[urn] = t_start
        return new

    def cancel(self, user_ref_num: int, quantity: int = 0) -> None:
        """Journal and send a Cancel Order Request (OUCH 5.0 section 2.3); ``quantity`` is the
        new intended order size (0 cancels all open shares). Never blocked by the gate.

        Raises
        ------
        RouterError
            Not connected, or the order cannot be canceled in its state.
        """
        order = self._order(user_ref_num)
        if not self.connected:
            raise RouterError("not connected: the cancel was not sent")
        if quantity < 0 or (quantity and quantity >= order.leaves):
            raise RouterError(f"UserRefNum {user_ref_num}: cancel to {quantity} shares would not "
                              f"reduce the {order.leaves} open")
        try:
            self.orders.cancel_sent(order)
        except OrderStateError as e:
            raise RouterError(str(e)) from None
        self._send_message({"type": "X", "user_ref_num": user_ref_num, "quantity": quantity,
                            "options": None}, order.stock_locate, None)
        self.counts["cancel"] += 1

    def kill(self) -> int:
        """Kill switch: block every new order and cancel every open order.

        Returns
        -------
        int
            Cancels sent (0 when disconnected: they are sent after the next login).
        """
        grisk.set_kill_switch(self.risk, True)
        self._journal("K", b"\x01")
        self._sync()
        self.events.append({"event": "kill_switch", "on": True})
        return self._cancel_all(resend=False) if self.connected else 0

    def _cancel_all(self, *, resend: bool) -> int:
        n = 0
        for o in self.orders.open_orders():
            if o.state == PENDING_CANCEL and not resend:
                continue
            if o.state != PENDING_CANCEL:
                self.orders.cancel_sent(o)
            self._send_message({"type": "X", "user_ref_num": o.user_ref_num, "quantity": 0,
                                "options": None}, o.stock_locate, None)
            n += 1
        self.counts["cancel"] += n
        return n

    def _order(self, urn: int) -> Order:
        try:
            return self.orders[urn]
        except OrderStateError as e:
            raise RouterError(str(e)) from None

    def _blocked(self, reason: str):
        self.risk_rejects[reason] += 1
        self.last_reject = reason
        return None

    def _intent(self, locate, side, quantity, price, bid, ask, timestamp) -> np.ndarray:
        rec = np.zeros(1, INTENT_DTYPE)
        ts = time.monotonic_ns() if timestamp is None else int(timestamp)
        ts = max(ts, self._last_intent_ts)  # the gate's throttle needs time order
        self._last_intent_ts = ts
        rec["timestamp"] = ts
        rec["price"] = price
        rec["best_bid"] = bid
        rec["best_ask"] = ask
        rec["shares"] = quantity
        rec["stock_locate"] = locate
        rec["intent"] = INTENT_BUY if side == "B" else INTENT_SELL
        return rec

    def _gate(self, intent: np.ndarray) -> int | None:
        try:
            verdict, reason, urn = self._gate_one(intent)
        except grisk.RiskError as exc:
            raise RouterError(str(exc)) from exc
        if verdict != VERDICT_APPROVED:
            return self._blocked(REJECT_REASONS[reason])
        self.last_reject = None
        return urn

    def _send_message(self, msg: dict, locate: int, intent) -> None:
        """Journal ``msg`` and queue it; the queue is flushed at the next turn of the event loop
        with one fsync for everything queued (write-ahead group commit), then sent."""
        payload = ouch.encode("inbound", msg)
        self._journal("O", Journal.outbound_body(
            payload, locate, intent.tobytes() if intent is not None else None))
        self._outq.append(payload)
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_event_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        if self._fsync_future is not None:
            return  # the fsync in flight calls us again when it is done
        queued, self._outq = self._outq, []
        if self.journal is None or not self.journal.fsync:
            if self.journal is not None:
                self.journal.write()
            self._send_queued(queued)
            return
        # fsync off the event loop: answers keep being read and new orders keep being
        # journaled meanwhile; they go out together after the next fsync (group commit)
        fut = asyncio.get_event_loop().run_in_executor(None, self.journal.sync_in_background())
        self._fsync_future = fut
        fut.add_done_callback(lambda f: self._fsync_done(f, queued))

    def _fsync_done(self, fut, queued: list) -> None:
        self._fsync_future = None
        if fut.exception() is not None:  # a journal we cannot make durable: send nothing
            self.fatal = RouterError(f"journal fsync failed: {fut.exception()}")
            self._wake()
            return
        self._send_queued(queued)
        if self._outq:
            self._flush()

    def _send_queued(self, queued: list) -> None:
        if self.client is not None and self.client.is_open:
            for payload in queued:
                self.client.send(payload)
        # else: journaled but never sent; the Account Query after the next login voids them

    def _journal(self, kind: str, body: bytes) -> None:
        if self.journal is not None:
            self.journal.append(kind, body)

    def _sync(self) -> None:
        if self.journal is not None:
            self.journal.sync()

    def _group_commit(self) -> None:
        self._commit = None
        if self._fsync_future is None:
            self._flush()  # fsyncs the inbound records written so far (and sends any queued)

    # --------------------------------------------------------------------------- inbound

    def _on_sequenced(self, batch) -> None:
        for seq, payload, _ in batch:
            self._journal("S", Journal.sequenced_body(seq, payload))
        if self.journal is not None:
            self.journal.write()  # crash-safe now; durable with the group commit below
            if self._commit is None:
                self._commit = asyncio.get_event_loop().call_later(self.group_commit_s,
                                                                   self._group_commit)
        for seq, payload, offset in batch:
            self._apply_sequenced(seq, payload, offset, live=True)
        self._wake()

    def _apply_sequenced(self, seq: int, payload: bytes, offset, *, live: bool) -> None:
        self.next_seq = seq + 1
        try:
            msg = ouch.decode("outbound", payload, offset=offset or 0,
                              source=f"sequenced message {seq}")
        except ouch.OuchError as e:
            self._error(seq, e.offset, str(e))
            return
        mtype = msg["type"]
        if mtype == "S":
            self.events.append({"event": "system", "seq": seq,
                                "code": msg["event_code"].decode()})
            return
        if mtype == "Q":
            self._account_query_response(msg, live)
            return
        if mtype in "XGK":
            self.events.append({"event": spec.OUTBOUND[mtype].name, "seq": seq})
            return
        try:
            effects = self.orders.apply(msg)
        except OrderStateError as e:
            self._error(seq, offset, f"sequenced message {seq} ({spec.OUTBOUND[mtype].name}): "
                        f"{e}")
            return
        self._count(mtype, msg)
        for kind, order, shares, price in effects:
            self._effect(kind, order, shares, price)

    def _count(self, mtype: str, msg: dict) -> None:
        key = {"A": "accepted", "J": "rejected", "U": "replaced", "C": "canceled",
               "D": "canceled", "E": "executed", "B": "broken"}.get(mtype)
        if key:
            self.counts[key] += 1
        urn = msg.get("user_ref_num")
        t0 = self._sent_ns.get(urn)
        if t0 is None:
            return
        now = time.perf_counter_ns()
        if mtype in "AJU":
            self.latency_ack_ns.append(now - t0)
        order = self.orders.orders.get(urn)
        if order is not None and not order.is_open:
            self.latency_done_ns.append(now - t0)
            del self._sent_ns[urn]

    def _effect(self, kind: str, order: Order, shares: int, price: int) -> None:
        side = risk_side(order.side)
        loc = order.stock_locate
        if kind == "fill":
            open_arr = self.risk.open_buy if side == "B" else self.risk.open_sell
            hooked = min(shares, int(open_arr[loc]))
            if hooked > 0:
                grisk.on_fill(self.risk, loc, side, hooked)
            if shares > hooked:  # the venue's word beats ours: position is what executed
                self.risk.position[loc] += (shares - hooked) * (1 if side == "B" else -1)
            self.positions.fill(loc, order.symbol, side, shares, price)
        elif kind == "release":
            open_arr = self.risk.open_buy if side == "B" else self.risk.open_sell
            shares = min(shares, int(open_arr[loc]))
            if shares > 0:
                grisk.on_cancel(self.risk, loc, side, shares, price)
        elif kind == "broken":
            self.positions.broken += 1

    def _account_query_response(self, msg: dict, live: bool) -> None:
        n = msg["next_user_ref_num"]
        self._query_pending = False
        self.events.append({"event": "account_query", "next_user_ref_num": n})
        if not live:
            return  # voids found live are journaled as V records and replayed from those
        mark = self._query_mark
        for o in list(self.orders.orders.values()):
            if o.state == PENDING_NEW and not o.accepted and n <= o.user_ref_num < mark:
                self._void(o, f"not received by the venue (next UserRefNum {n})")
                self._journal("V", o.user_ref_num.to_bytes(4, "little"))
        self._sync()

    def _void(self, order: Order, why: str) -> None:
        for kind, o, shares, price in self.orders.void(order, why):
            self._effect(kind, o, shares, price)
        self.counts["voided"] += 1
        self._sent_ns.pop(order.user_ref_num, None)

    def _error(self, seq, offset, text) -> None:
        self.errors.append({"seq": seq, "offset": offset, "error": text})

    # --------------------------------------------------------------------------- replay

    def _replay(self, records) -> None:
        for rec in records:
            if rec.kind == "L":
                self.session, self.next_seq = Journal.parse_login(rec.body)
            elif rec.kind == "O":
                payload, locate, intent = Journal.parse_outbound(rec.body)
                self._replay_outbound(rec, payload, locate, intent)
            elif rec.kind == "S":
                seq, payload = Journal.parse_sequenced(rec.body)
                self._apply_sequenced(seq, payload, None, live=False)
            elif rec.kind == "K":
                grisk.set_kill_switch(self.risk, bool(rec.body[0]))
            elif rec.kind == "V":
                urn = int.from_bytes(rec.body[:4], "little")
                self._void(self.orders[urn], "not received by the venue")

    def _replay_outbound(self, rec, payload: bytes, locate: int, intent) -> None:
        msg = ouch.decode("inbound", payload, source=f"journal record @ byte {rec.offset}")
        t = msg["type"]
        if t in "OU":
            arr = np.frombuffer(intent, INTENT_DTYPE).copy()
            self._last_intent_ts = max(self._last_intent_ts, int(arr["timestamp"][0]))
            urn = self._gate(arr)
            if urn != msg["user_ref_num"]:
                raise RouterError(f"journal record @ byte {rec.offset}: replaying the risk gate "
                                  f"gave UserRefNum {urn}, the journal says "
                                  f"{msg['user_ref_num']} (journal from another config?)")
            if t == "O":
                self.orders.entered(Order(urn, msg["symbol"], locate, msg["side"].decode(),
                                          msg["quantity"], msg["price"],
                                          msg["time_in_force"].decode(), msg["cl_ord_id"]))
                self.counts["enter"] += 1
            else:
                orig = self.orders[msg["orig_user_ref_num"]]
                self.orders.replace_sent(orig, Order(
                    urn, orig.symbol, locate, orig.side, msg["quantity"], msg["price"],
                    msg["time_in_force"].decode(), msg["cl_ord_id"]))
                self.counts["replace"] += 1
        elif t == "X":
            o = self.orders[msg["user_ref_num"]]
            if o.state != PENDING_CANCEL and o.is_open:
                self.orders.cancel_sent(o)
            self.counts["cancel"] += 1

    # --------------------------------------------------------------------------- waiting

    def _wake(self) -> None:
        keep = []
        for pred, fut in self._waiters:
            if fut.done():
                continue
            if self.fatal is not None:
                fut.set_exception(RouterError(f"session closed: {self.fatal}"))
            elif pred():
                fut.set_result(True)
            else:
                keep.append((pred, fut))
        self._waiters = keep

    async def wait_for(self, predicate, timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` holds after some inbound message.

        Raises
        ------
        asyncio.TimeoutError, RouterError (the session was closed by a protocol error)
        """
        if self.fatal is not None:
            raise RouterError(f"session closed: {self.fatal}")
        if predicate():
            return
        fut = asyncio.get_event_loop().create_future()
        self._waiters.append((predicate, fut))
        await asyncio.wait_for(fut, timeout)

    async def wait_settled(self, urns=None, timeout: float = 5.0) -> None:
        """Wait until no order (or none of ``urns``) awaits an answer from the venue and
        the last Account Query was answered."""
        def settled():
            seq = self.orders.orders.values() if urns is None else \
                (self.orders.orders[u] for u in urns)
            return self.connected and not self._query_pending and \
                not any(o.is_pending for o in seq)
        await self.wait_for(settled, timeout)

    # --------------------------------------------------------------------------- report

    def summary(self, marks: dict | None = None) -> dict:
        """JSON-ready state of the session: counts, risk, fills, position, P&L, errors.

        ``marks`` maps stock locate -> mark price (1/10,000 USD) for the P&L of open
        positions (default: the last fill price)."""
        pos = self.positions.summary(marks)
        states = {}
        for o in self.orders.orders.values():
            states[o.state] = states.get(o.state, 0) + 1
        lat = {}
        for name, vals in (("ack", self.latency_ack_ns), ("done", self.latency_done_ns)):
            if vals:
                a = np.asarray(vals, np.float64) / 1000
                lat[name] = {"n": int(a.size), "p50": float(np.percentile(a, 50)),
                             "p99": float(np.percentile(a, 99)), "max": float(a.max())}
        filled = sum(o.filled for o in self.orders.orders.values())
        return {
            "venue": f"{self.host}:{self.port}",
            "session": self.session.decode("ascii", "replace").strip(),
            "next_sequence_number": self.next_seq,
            "messages": dict(self.counts),
            "order_states": states,
            "risk_rejects": {k: v for k, v in self.risk_rejects.items()},
            "kill_switch": self.risk.kill_switch,
            "fills": pos["fills"],
            "filled_shares": int(filled),
            "position": {sym: r["position"] for sym, r in pos["by_symbol"].items()},
            "pnl_usd": pos["pnl_usd"],
            "realized_pnl_usd": pos["realized_pnl_usd"],
            "by_symbol": pos["by_symbol"],
            "gross_notional_usd": self.risk.gross_notional / 10_000,
            "errors": self.errors[:20],
            "n_errors": len(self.errors),
            "fatal": str(self.fatal) if self.fatal else None,
            "latency_us": lat,
            "journal": str(self.journal.path) if self.journal is not None else None,
            "journal_replayed": self.replayed,
        }
