"""Venue simulator: a SoupBinTCP 4.0 / OUCH 5.0 order-entry server on loopback.

It accepts OUCH 5.0 inbound messages (Enter, Replace, Cancel, Modify, Mass Cancel, Disable /
Enable Order Entry, Account Query: spec sections 2.1-2.8), answers with the outbound messages
of section 3 as SoupBinTCP Sequenced Data (kept per session, so a client logging in again with
a sequence number gets everything from there replayed: SoupBinTCP 2.3.1), sends Server
Heartbeats (2.2.4) and honours Logout Request (2.3.4).

Fills come from a :class:`Market`: the top of book of every stock locate over replay time,
taken from the book records of the same ITCH replay (``hftaccel.golden.book`` output). An
incoming order that crosses the top of book executes at once against the displayed top level
(price-time priority: it is behind every displayed order at its price, so it takes the touch at
the touch price, up to the displayed size not already taken at this book state); what is left
is canceled (IOC, Canceled reason ``I``) or rests. Resting orders execute, at their own price
and best price / earliest first, when the top of book later crosses them. The market clock is
either set by the caller (lockstep with a replay) or runs with the wall clock at a speed.

Rules: ``latency_us`` delays every inbound message (pipelined: each is processed ``latency_us``
after it arrived), ``reject_rate`` rejects that fraction of new orders at random (seeded),
``reject_symbols`` and ``max_quantity`` reject by symbol and size. Rejected (3.8) carries a
2-byte reason: the simulator's own codes, :data:`REJECT_CODES`.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import numpy as np

from hftaccel.golden import ouch
from hftaccel.spec import ouch as spec

__all__ = ["Market", "Venue", "VenueConfig", "REJECT_CODES", "serve"]

#: Rejected (OUCH 5.0 section 3.8) reason codes the simulator uses.
REJECT_CODES = {1: "random reject (simulator rule)", 2: "symbol not allowed",
                3: "quantity above the venue limit", 4: "UserRefNum not increasing",
                5: "no market for the symbol", 6: "original order not open (replace)",
                7: "order entry disabled", 8: "invalid price or quantity"}


class Market:
    """Top of book per stock locate over time.

    Parameters
    ----------
    symbols : dict[bytes, int]
        8-byte symbol (space padded) -> stock locate.
    quotes : dict[int, tuple]
        locate -> ``(timestamp, bid, bid_size, ask, ask_size)`` arrays (ns since midnight,
        1/10,000 USD, shares), timestamps non-decreasing.
    """

    def __init__(self, symbols: dict, quotes: dict):
        self.symbols = {bytes(k).ljust(8, b" "): int(v) for k, v in symbols.items()}
        self.quotes = quotes

    @classmethod
    def from_records(cls, records: np.ndarray, symbols) -> "Market":
        """Build from book records (``spec.book_record_dtype``) and a locate -> symbol table
        ((65536,) S8 array or dict)."""
        quotes, names = {}, {}
        locs = records["stock_locate"]
        for loc in np.unique(locs):
            r = records[locs == loc]
            ts = r["timestamp"].astype(np.int64)
            order = np.argsort(ts, kind="stable")
            quotes[int(loc)] = tuple(np.ascontiguousarray(a[order]) for a in (
                ts, r["bid_price"][:, 0].astype(np.int64), r["bid_shares"][:, 0].astype(np.int64),
                r["ask_price"][:, 0].astype(np.int64), r["ask_shares"][:, 0].astype(np.int64)))
            sym = symbols[int(loc)]
            names[bytes(sym).ljust(8, b" ")] = int(loc)
        return cls(names, quotes)

    @classmethod
    def constant(cls, quotes: dict) -> "Market":
        """A market that never moves: ``{symbol: (locate, bid, ask, size)}``."""
        out_q, names = {}, {}
        for sym, (loc, bid, ask, size) in quotes.items():
            names[sym.encode() if isinstance(sym, str) else sym] = loc
            out_q[loc] = tuple(np.array([v], np.int64) for v in (0, bid, size, ask, size))
        return cls(names, out_q)

    @property
    def start_ns(self) -> int:
        return int(min((q[0][0] for q in self.quotes.values()), default=0))

    def top(self, locate: int, now_ns: int):
        """``(state index, bid, bid size, ask, ask size)`` in force at ``now_ns`` (zeros and
        index -1 before the first update or for an unknown locate)."""
        q = self.quotes.get(locate)
        if q is None:
            return -1, 0, 0, 0, 0
        i = int(np.searchsorted(q[0], now_ns, side="right")) - 1
        if i < 0:
            return -1, 0, 0, 0, 0
        return i, int(q[1][i]), int(q[2][i]), int(q[3][i]), int(q[4][i])


@dataclass
class VenueConfig:
    """Simulator settings (see the module docstring for the rules)."""

    username: str = "HFT"
    password: str = ""
    session: str = "SIM0000001"
    latency_us: float = 0.0
    reject_rate: float = 0.0
    reject_symbols: tuple = ()
    max_quantity: int = spec.MAX_QUANTITY
    seed: int = 0
    heartbeat_s: float = 1.0
    timeout_s: float = 15.0
    speed: float = 1.0


@dataclass
class _VOrder:
    urn: int
    symbol: bytes
    locate: int
    side: str
    leaves: int
    price: int
    tif: str
    display: str
    capacity: str
    cl_ord_id: bytes
    ref: int
    arrival: int


@dataclass
class _Session:
    name: bytes
    log: list = field(default_factory=list)
    conn: object = None
    last_urn: int = 0
    orders: dict = field(default_factory=dict)
    disabled: bool = False
    queue: object = None
    worker: object = None
    last_sent: float = 0.0


class Venue:
    """The simulator server.

    Parameters
    ----------
    market : Market
    config : VenueConfig
    clock : {"lockstep", "wall"}
        ``lockstep``: the market time is :attr:`now`, set by the caller; ``wall``: the replay
        starts at the market's first update when the server starts and runs at
        ``config.speed`` times real time.

    Attributes
    ----------
    port : int
        The bound port (after :meth:`start`).
    stats : dict
        Orders, fills, rejects, cancels, logins.
    """

    def __init__(self, market: Market, config: VenueConfig | None = None, *,
                 clock: str = "lockstep"):
        if clock not in ("lockstep", "wall"):
            raise ValueError(f"clock must be 'lockstep' or 'wall', got {clock!r}")
        self.market = market
        self.config = config or VenueConfig()
        self.clock = clock
        self.now = market.start_ns
        self._t0 = time.monotonic_ns()
        self._rng = random.Random(self.config.seed)
        self.sessions: dict[str, _Session] = {}
        self._consumed: dict = {}
        self._ref = 0
        self._match = 0
        self._arrival = 0
        self._server = None
        self._conns = set()
        self._handlers = set()
        self.port = None
        self.stats = {"logins": 0, "login_rejects": 0, "orders": 0, "rejects": 0, "fills": 0,
                      "filled_shares": 0, "cancels": 0, "replaces": 0, "bad_packets": 0}

    # --------------------------------------------------------------------------- server

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0: an ephemeral port); return the port."""
        self._t0 = time.monotonic_ns()
        self._server = await asyncio.start_server(self._handle, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        for s in self.sessions.values():
            if s.worker is not None:
                s.worker.cancel()
        for w in list(self._conns):
            w.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        tasks = [t for t in self._handlers if not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)

    def market_now(self) -> int:
        if self.clock == "lockstep":
            return self.now
        elapsed = (time.monotonic_ns() - self._t0) * self.config.speed
        return self.market.start_ns + int(elapsed)

    def _session(self, username: str) -> _Session:
        s = self.sessions.get(username)
        if s is None:
            s = _Session(self.config.session.encode())
            s.queue = asyncio.Queue()
            s.worker = asyncio.ensure_future(self._worker(s))
            self.sessions[username] = s
            self._emit(s, {"type": "S", "timestamp": self._ts(), "event_code": "S"})
        return s

    async def _handle(self, reader, writer) -> None:
        self._handlers.add(asyncio.current_task())
        self._conns.add(writer)
        sess, buf, pos = None, b"", 0
        last_recv = [time.monotonic()]
        hb = None
        try:
            while True:
                data = await asyncio.wait_for(reader.read(65536), self.config.timeout_s)
                if not data:
                    return
                last_recv[0] = time.monotonic()
                buf += data
                try:
                    packets, buf = ouch.soup_split(buf, partial=True)
                except ouch.OuchError:
                    self.stats["bad_packets"] += 1
                    return
                for ptype, payload, off in packets:
                    if sess is None:
                        if ptype != "L":
                            self.stats["bad_packets"] += 1
                            return
                        sess = self._login(payload, writer)
                        if sess is None:
                            await writer.drain()
                            return
                        hb = asyncio.ensure_future(self._heartbeats(sess, writer))
                    elif ptype == "U":
                        self._arrival += 1
                        sess.queue.put_nowait((time.monotonic_ns(), payload))
                    elif ptype == "R" or ptype == "+":
                        continue
                    elif ptype == "O":
                        return
                    else:
                        self.stats["bad_packets"] += 1
                        return
                pos += len(data)
        except (asyncio.TimeoutError, ConnectionError, OSError):
            return
        finally:
            if hb is not None:
                hb.cancel()
            if sess is not None and sess.conn is writer:
                sess.conn = None
            self._conns.discard(writer)
            writer.close()

    def _login(self, payload: bytes, writer):
        try:
            req = ouch.soup_decode("client", ouch.soup_packet("L", payload))
        except ouch.OuchError:
            self.stats["bad_packets"] += 1
            return None
        cfg = self.config
        if req["username"].decode() != cfg.username.strip() or \
                req["password"].decode() != cfg.password.strip():
            writer.write(ouch.soup_encode("server", "J", {"reject_reason_code": "A"}))
            self.stats["login_rejects"] += 1
            return None
        sess = self._session(req["username"].decode())
        asked = req["requested_session"]
        if asked and asked != sess.name.strip():
            writer.write(ouch.soup_encode("server", "J", {"reject_reason_code": "S"}))
            self.stats["login_rejects"] += 1
            return None
        seq = req["requested_sequence_number"]
        if seq == 0 or seq > len(sess.log) + 1:
            seq = len(sess.log) + 1
        if sess.conn is not None:
            sess.conn.transport.abort()
        writer.write(ouch.soup_encode("server", "A", {"session": sess.name,
                                                      "sequence_number": seq}))
        writer.write(b"".join(ouch.soup_packet("S", p) for p in sess.log[seq - 1:]))
        sess.conn = writer
        sess.last_sent = time.monotonic()
        self.stats["logins"] += 1
        return sess

    async def _heartbeats(self, sess: _Session, writer) -> None:
        """Server Heartbeat (SoupBinTCP 1.3, 2.2.4) when nothing was sent for the interval."""
        hb = ouch.soup_encode("server", "H")
        period = self.config.heartbeat_s
        try:
            while True:
                await asyncio.sleep(max(period - (time.monotonic() - sess.last_sent), 0.001))
                if time.monotonic() - sess.last_sent >= period:
                    writer.write(hb)
                    sess.last_sent = time.monotonic()
        except (asyncio.CancelledError, ConnectionError, OSError):
            return

    # --------------------------------------------------------------------------- test hooks

    def inject_sequenced(self, username: str, payload: bytes) -> None:
        """Append raw bytes as the next Sequenced Data message (malformed-message tests)."""
        sess = self.sessions[username]
        sess.log.append(bytes(payload))
        if sess.conn is not None:
            sess.conn.write(ouch.soup_packet("S", payload))

    def inject_raw(self, username: str, data: bytes) -> None:
        """Write raw bytes on the session's connection (framing tests); not logged."""
        self.sessions[username].conn.write(bytes(data))

    def drop(self, username: str) -> None:
        """Abort the session's connection (the client sees a lost link)."""
        conn = self.sessions[username].conn
        if conn is not None:
            conn.transport.abort()

    def end_session(self, username: str) -> None:
        """Send End of Session (SoupBinTCP 2.2.5) and close."""
        conn = self.sessions[username].conn
        if conn is not None:
            conn.write(ouch.soup_encode("server", "Z"))
            conn.close()

    # --------------------------------------------------------------------------- matching

    def _ts(self) -> int:
        return int(self.market_now()) % (86_400 * 10 ** 9)

    def _emit(self, sess: _Session, msg: dict) -> None:
        payload = ouch.encode("outbound", msg)
        sess.log.append(payload)
        if sess.conn is not None:
            sess.conn.write(ouch.soup_packet("S", payload))
            sess.last_sent = time.monotonic()

    async def _worker(self, sess: _Session) -> None:
        delay = int(self.config.latency_us * 1000)
        while True:
            arrived, payload = await sess.queue.get()
            if delay:
                wait = (arrived + delay - time.monotonic_ns()) / 1e9
                if wait > 0:
                    await asyncio.sleep(wait)
            try:
                self._process(sess, payload)
            except ouch.OuchError:
                self.stats["bad_packets"] += 1

    def _process(self, sess: _Session, payload: bytes) -> None:
        msg = ouch.decode("inbound", payload, source="venue inbound")
        now = self.market_now()
        self._sweep(sess, now)
        t = msg["type"]
        if t == "O":
            self._enter(sess, msg, now)
        elif t == "U":
            self._replace(sess, msg, now)
        elif t == "X":
            self._cancel(sess, msg["user_ref_num"], msg["quantity"], "U")
        elif t == "M":
            self._modify(sess, msg)
        elif t == "C":
            sym = msg["symbol"]
            for o in list(sess.orders.values()):
                if sym.strip() in (b"", o.symbol.strip()):
                    self._cancel(sess, o.urn, 0, "U")
            self._emit(sess, {"type": "X", "timestamp": self._ts(), "user_ref_num":
                              msg["user_ref_num"], "firm": msg["firm"], "symbol": sym,
                              "options": {}})
        elif t in "DE":
            sess.disabled = t == "D"
            self._emit(sess, {"type": "G" if t == "D" else "K", "timestamp": self._ts(),
                              "user_ref_num": msg["user_ref_num"], "firm": msg["firm"],
                              "options": {}})
        elif t == "Q":
            self._emit(sess, {"type": "Q", "timestamp": self._ts(),
                              "next_user_ref_num": sess.last_urn + 1, "options": None})

    def _reject(self, sess, urn: int, code: int, cl_ord_id: bytes) -> None:
        self.stats["rejects"] += 1
        self._emit(sess, {"type": "J", "timestamp": self._ts(), "user_ref_num": urn,
                          "reason": code, "cl_ord_id": cl_ord_id, "options": None})

    def _check_new(self, sess, urn, symbol, quantity, price, cl_ord_id) -> bool:
        cfg = self.config
        code = 0
        if urn <= sess.last_urn:
            code = 4
        elif sess.disabled:
            code = 7
        elif symbol.strip().decode() in cfg.reject_symbols:
            code = 2
        elif symbol not in self.market.symbols:
            code = 5
        elif quantity > cfg.max_quantity:
            code = 3
        elif quantity < 1 or price < 1 or price > spec.MAX_PRICE:
            code = 8
        elif cfg.reject_rate and self._rng.random() < cfg.reject_rate:
            code = 1
        if urn > sess.last_urn:
            sess.last_urn = urn
        if code:
            self._reject(sess, urn, code, cl_ord_id)
            return False
        return True

    def _enter(self, sess, msg, now) -> None:
        urn, sym = msg["user_ref_num"], msg["symbol"]
        self.stats["orders"] += 1
        if not self._check_new(sess, urn, sym, msg["quantity"], msg["price"], msg["cl_ord_id"]):
            return
        self._ref += 1
        o = _VOrder(urn, sym, self.market.symbols[sym], msg["side"].decode(), msg["quantity"],
                    msg["price"], msg["time_in_force"].decode(), msg["display"].decode(),
                    msg["capacity"].decode(), msg["cl_ord_id"], self._ref, self._arrival)
        self._emit(sess, {"type": "A", "timestamp": self._ts(), "user_ref_num": urn,
                          "side": o.side, "quantity": o.leaves, "symbol": sym, "price": o.price,
                          "time_in_force": o.tif, "display": o.display, "order_ref_num": o.ref,
                          "capacity": o.capacity, "intermarket_sweep": "N", "cross_type": "N",
                          "order_state": "L", "cl_ord_id": o.cl_ord_id, "options": {}})
        self._after_entry(sess, o, now)

    def _after_entry(self, sess, o, now) -> None:
        self._take(sess, o, now)
        if o.leaves and o.tif == "3":
            self._cancel_order(sess, o, o.leaves, "I")
        elif o.leaves:
            sess.orders[o.urn] = o

    def _replace(self, sess, msg, now) -> None:
        orig = sess.orders.get(msg["orig_user_ref_num"])
        urn = msg["user_ref_num"]
        self.stats["replaces"] += 1
        if orig is None:
            if urn > sess.last_urn:
                sess.last_urn = urn
            self._reject(sess, urn, 6, msg["cl_ord_id"])
            return
        if not self._check_new(sess, urn, orig.symbol, msg["quantity"], msg["price"],
                               msg["cl_ord_id"]):
            return
        del sess.orders[orig.urn]
        self._ref += 1
        o = _VOrder(urn, orig.symbol, orig.locate, orig.side, msg["quantity"], msg["price"],
                    msg["time_in_force"].decode(), msg["display"].decode(), orig.capacity,
                    msg["cl_ord_id"], self._ref, self._arrival)
        self._emit(sess, {"type": "U", "timestamp": self._ts(), "orig_user_ref_num": orig.urn,
                          "user_ref_num": urn, "side": o.side, "quantity": o.leaves,
                          "symbol": o.symbol, "price": o.price, "time_in_force": o.tif,
                          "display": o.display, "order_ref_num": o.ref, "capacity": o.capacity,
                          "intermarket_sweep": "N", "cross_type": "N", "order_state": "L",
                          "cl_ord_id": o.cl_ord_id, "options": {}})
        self._after_entry(sess, o, now)

    def _cancel(self, sess, urn: int, quantity: int, reason: str) -> None:
        o = sess.orders.get(urn)
        if o is None:
            self._emit(sess, {"type": "I", "timestamp": self._ts(), "user_ref_num": urn,
                              "options": None})
            return
        dec = o.leaves - min(quantity, o.leaves)
        if dec:
            self._cancel_order(sess, o, dec, reason)
        else:  # nothing to take away: tell the client rather than stay silent
            self._emit(sess, {"type": "I", "timestamp": self._ts(), "user_ref_num": urn,
                              "options": None})

    def _cancel_order(self, sess, o, shares: int, reason: str) -> None:
        o.leaves -= shares
        self.stats["cancels"] += 1
        self._emit(sess, {"type": "C", "timestamp": self._ts(), "user_ref_num": o.urn,
                          "quantity": shares, "reason": reason, "options": None})
        if o.leaves == 0:
            sess.orders.pop(o.urn, None)

    def _modify(self, sess, msg) -> None:
        o = sess.orders.get(msg["user_ref_num"])
        if o is None or msg["quantity"] > o.leaves:
            self._emit(sess, {"type": "I", "timestamp": self._ts(),
                              "user_ref_num": msg["user_ref_num"], "options": None})
            return
        o.leaves = msg["quantity"]
        self._emit(sess, {"type": "M", "timestamp": self._ts(), "user_ref_num": o.urn,
                          "side": o.side, "quantity": o.leaves, "options": None})
        if o.leaves == 0:
            sess.orders.pop(o.urn, None)

    def _available(self, locate: int, contra: str, state: int, size: int) -> int:
        key = (locate, contra)
        seen_state, used = self._consumed.get(key, (None, 0))
        return size - (used if seen_state == state else 0)

    def _consume(self, locate: int, contra: str, state: int, shares: int) -> None:
        key = (locate, contra)
        seen_state, used = self._consumed.get(key, (None, 0))
        self._consumed[key] = (state, (used if seen_state == state else 0) + shares)

    def _take(self, sess, o, now) -> None:
        """The incoming order against the displayed top of book (taker, touch price)."""
        state, bid, bsz, ask, asz = self.market.top(o.locate, now)
        buy = o.side == "B"
        px, size = (ask, asz) if buy else (bid, bsz)
        if state < 0 or px <= 0 or (o.price < px if buy else o.price > px):
            return
        avail = self._available(o.locate, "S" if buy else "B", state, size)
        q = min(o.leaves, avail)
        if q > 0:
            self._consume(o.locate, "S" if buy else "B", state, q)
            self._execute(sess, o, q, px, "R")

    def _sweep(self, sess, now) -> None:
        """Resting orders the top of book now crosses execute at their price, best first."""
        if not sess.orders:
            return
        ranked = sorted(sess.orders.values(),
                        key=lambda o: (-o.price if o.side == "B" else o.price, o.arrival))
        for o in ranked:
            state, bid, bsz, ask, asz = self.market.top(o.locate, now)
            buy = o.side == "B"
            px, size = (ask, asz) if buy else (bid, bsz)
            if state < 0 or px <= 0 or (o.price < px if buy else o.price > px):
                continue
            contra = "S" if buy else "B"
            q = min(o.leaves, self._available(o.locate, contra, state, size))
            if q > 0:
                self._consume(o.locate, contra, state, q)
                self._execute(sess, o, q, o.price, "A")
                if o.leaves == 0:
                    sess.orders.pop(o.urn, None)

    def _execute(self, sess, o, q: int, px: int, flag: str) -> None:
        o.leaves -= q
        self._match += 1
        self.stats["fills"] += 1
        self.stats["filled_shares"] += q
        self._emit(sess, {"type": "E", "timestamp": self._ts(), "user_ref_num": o.urn,
                          "quantity": q, "price": px, "liquidity_flag": flag,
                          "match_number": self._match, "options": {}})

    def sweep(self) -> None:
        """Match resting orders against the market now (call after moving :attr:`now`)."""
        now = self.market_now()
        for sess in self.sessions.values():
            self._sweep(sess, now)


async def serve(venue: Venue, host: str = "127.0.0.1", port: int = 0, *, ready=None,
                sweep_s: float = 0.01) -> None:
    """Run ``venue`` until cancelled; ``ready(port)`` is called once it listens. In wall-clock
    mode resting orders are swept every ``sweep_s`` seconds."""
    port = await venue.start(host, port)
    if ready is not None:
        ready(port)
    try:
        while True:
            await asyncio.sleep(sweep_s)
            if venue.clock == "wall":
                venue.sweep()
    finally:
        await venue.close()
