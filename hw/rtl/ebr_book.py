"""Order book in block RAM: 256 subscribed symbols, 16k live orders and an 8k-level pool, one
operation a cycle (issue: order book in EBR at line rate).

Source: NASDAQ TotalView-ITCH 5.0 sections 4.3 (A/F), 4.4 (E C X D U) and 4.5.1 (P). The
semantics -- which events are rejected and in which order the checks run, what every record
holds -- are those of the golden book (:mod:`hftaccel.golden.book`); the record layout is
:func:`hftaccel.spec.book.book_record_dtype`, the ports and counters those of
:class:`hftaccel.rtl.book.OrderBook`, plus the capacity counters of this book.

Structure
---------
Four block-RAM structures in a chain, every message type passing each at the same position, so
each has one read and one write a cycle:

* **Locate table** (``locates`` x 9 bits: slot, enable): stock locate -> symbol slot, written
  through the ``sym_*`` port (which also writes the slot -> locate table the records' locate
  comes from). Locates at or above ``locates`` are unsubscribed.
* **Order table** (:class:`.order_table.OrderTable`, linked requests): by order reference
  number; the handle of an order is its level key, ``price | side << 32 | slot << 33``
  (41 bits with 256 slots), so levels are found by key and no level index is needed.
* **Level table** (:class:`.level_table.LevelTable`): the aggregate (shares, orders) of every
  live level of every slot, by key.
* **Best-level windows** (:class:`.top_levels.TopLevels`): per slot and side the ``window``
  best levels, sorted; the record's top ``depth`` levels of both sides.

Per message, requests to the order table: A F: INSERT. E C X: TAKE. D: DELETE. P: FIND (no
change; it carries the record through). U: FIND of the new reference, DELETE of the original
linked on it, INSERT of the new reference linked on the DELETE (handle: the new price, the
original's side and slot); when the new reference is the original, DELETE then INSERT; a U of 0
shares only a FIND of the original (``zero_shares`` after ``unknown_order``, as golden). So a
rejected replace changes nothing. Every order table result becomes one level table request (an
ADD, a TAKE, or a FIND that changes nothing), every level table result one change of the
windows, every window output at most one record.

Throughput and latency: initiation interval 1 for A F E C X D P and for rejected messages, 3
for U (2 when the new reference is the original), no stall on hazards (forwarding in every
table). Latency from the edge that accepts a message to its record: :attr:`latency` cycles.

Capacities (each counted, nothing else changed): an add into a full order table row
(``table_full``), a new level into a full level table row (``level_full``: the order stays in
the order table, its symbol is flagged in ``degraded``), a later take of such a level
(``level_unknown``), references at or above ``2**ref_bits`` (``ref_range``).

Refill: the windows hold ``window`` levels per side; the levels beyond (the bottom) are only
counted there. When an output shows a side whose window is not full while its bottom is not
empty, the refill engine sends a burst of ``probes`` FINDs into the level table, back to back
(the order table's results wait), at the prices beyond the window's worst price on the ITCH
price grid ($0.01 at and above $1, $0.0001 below: Reg NMS Rule 612); a burst without a hit is
repeated at twice the length, up to ``max_probes``. Every hit becomes a refill change whose
``start`` is the price before it; the windows apply it only while ``start`` is still their
worst price and they are not full (else ``refill_stale``). The refill enters the change stream
where its FINDs entered the level table, so it is the bottom's best level. A window emptied
while levels remain searches from the other side's best price. Counted: ``refill`` (applied),
``refill_stale``, ``refill_miss`` (no level within ``max_probes`` ticks: levels off the grid or
farther away), ``short`` (a record with a side of fewer than ``depth`` levels while levels
remain beyond its window: the window lost more than ``window - depth`` levels before its
refill arrived). Records equal golden's while ``table_full``, ``level_full`` and ``short``
stay 0.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hftaccel.spec import book as spec
from hftaccel.spec.itch import SIDE_BUY, SIDE_SELL

from .book import record_layout
from .itch import DECODED_LAYOUT
from .level_table import LevelOp, LevelStatus, LevelTable
from .order_table import Link, Op, OrderTable, Status
from .stream import skid_output
from .top_levels import TopLevels

__all__ = ["COUNTERS", "Role", "EbrBook"]

#: Counters (one ``Out(32)`` port each): those of :data:`hftaccel.rtl.book.COUNTERS`, then the
#: capacity and exactness counts of this book.
COUNTERS = tuple(f"bad_{k}" for k in spec.BAD_REFERENCE_KINDS) + (
    "table_full", "level_full", "unsubscribed", "other", "updates",
    "ref_range", "level_unknown", "short", "refill", "refill_stale", "refill_miss")

_U4_MAX = 0xFFFF_FFFF


class Role(enum.Enum, shape=3):
    """What an order table request does for its message."""
    SINGLE = 0      #: the one request of an A F E C X D
    P = 1           #: the FIND carrying a P
    UZERO = 2       #: FIND of the original of a U of 0 shares
    UFIND = 3       #: FIND of the new reference of a U
    UDEL = 4        #: DELETE of the original of a U
    UINS = 5        #: INSERT of the new reference of a U


def _stage(m, name, src_valid, payload, o):
    """A registered stream stage: ``o`` loaded from ``payload`` while ``src_valid``; returns
    the ready the source sees (a register: the stage's skid is empty)."""
    sk = Signal(name=f"{name}_skid_valid")
    skid_output(m, o, payload, src_valid & ~sk, sk)
    return ~sk


class EbrBook(wiring.Component):
    """Order-level book in block RAM; one record per book message, as the golden book.

    Parameters
    ----------
    depth : int
        Levels per side in each record (N) [8].
    slots : int
        Subscribed symbol slots (power of two) [256].
    locates : int
        Entries of the locate table (power of two): stock locates below it can be
        subscribed [16,384].
    order_rows, order_ways : int
        Order table rows (power of two) and ways: capacity ``order_rows * order_ways``
        orders [4096 x 4].
    ref_bits : int
        Order references below ``2**ref_bits`` are stored [39].
    level_rows, level_ways : int
        Level table rows (power of two) and ways: a pool of ``level_rows * level_ways``
        levels shared by all symbols [2048 x 4].
    window : int
        Levels kept sorted per slot and side, ``>= depth`` [12].
    probes, max_probes : int
        FINDs of a refill burst, and the longest burst after misses (powers of two) [8, 64].

    Attributes
    ----------
    i : In(stream.Signature(DECODED_LAYOUT))
        Decoded ITCH messages; types other than A F E C X D U P are counted (``other``).
    o : Out(stream.Signature(record_layout(depth)))
        One record per accepted book message and per P of a subscribed symbol, in order.
    sym_we, sym_index, sym_locate, sym_enable : In
        On ``sym_we``: locate ``sym_locate`` maps to slot ``sym_index`` (``sym_enable``: it
        is subscribed). Change it only while no order of the slot is live.
    degraded_index : In(slot bits); degraded : Out(1)
        Whether slot ``degraded_index`` lost a level to a full level table row.
    <counter> : Out(32)
        One per :data:`COUNTERS`.
    live_orders, live_levels : Out
        Orders in the order table, levels in the level table.
    clearing : Out(1)
        High while the tables are cleared after reset (``i`` not ready).

    Raises
    ------
    ValueError
        A size not a power of two, ``depth`` < 1, ``window`` < ``depth``, ``probes`` or
        ``max_probes`` not a power of two or ``probes > max_probes``.
    """

    def __init__(self, *, depth: int = spec.BOOK_DEPTH, slots: int = 256,
                 locates: int = 16384, order_rows: int = 4096, order_ways: int = 4,
                 ref_bits: int = 39, level_rows: int = 2048, level_ways: int = 4,
                 window: int = 12, probes: int = 8, max_probes: int = 64):
        for name, v in (("slots", slots), ("locates", locates), ("order_rows", order_rows),
                        ("level_rows", level_rows)):
            if not isinstance(v, int) or v < 2 or v & (v - 1):
                raise ValueError(f"{name} must be a power of two >= 2, not {v!r}")
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be a positive integer, not {depth!r}")
        if not isinstance(window, int) or window < depth:
            raise ValueError(f"window must be an integer >= depth ({depth}), not {window!r}")
        if not isinstance(probes, int) or probes < 1 or probes & (probes - 1) or \
                not isinstance(max_probes, int) or max_probes < probes or \
                max_probes & (max_probes - 1):
            raise ValueError(f"probes and max_probes must be powers of two, probes <= "
                             f"max_probes, not {probes!r}, {max_probes!r}")
        self.probes, self.max_probes = probes, max_probes
        self.depth, self.slots, self.locates, self.window = depth, slots, locates, window
        self.order_rows, self.order_ways, self.ref_bits = order_rows, order_ways, ref_bits
        self.level_rows, self.level_ways = level_rows, level_ways
        self.slot_bits = sb = slots.bit_length() - 1
        self.locate_bits = locates.bit_length() - 1
        self.handle_bits = 33 + sb
        self.record_layout = record_layout(depth)
        # what travels with a request through the order table
        self.octx = data.StructLayout({
            "timestamp": 48, "seq": 64, "msg_type": 8, "shares": 32, "price": 32,
            "locate": 16, "slot": sb, "hit": 1, "side": 8, "role": Role})
        # ... through the level table and the windows: the record's header
        self.lctx = data.StructLayout({
            "timestamp": 48, "seq": 64, "msg_type": 8, "ref": 64, "shares": 32, "price": 32,
            "side": 8, "locate": 16, "own_locate": 1, "emit": 1, "nop": 1,
            "probe": 1, "last": 1, "fill": 1, "miss": 1})
        self.ot = OrderTable(rows=order_rows, ways=order_ways, ref_bits=ref_bits,
                             handle_bits=self.handle_bits, linked=True, link_keep=32,
                             ctx_bits=self.octx.size)
        self.lt = LevelTable(rows=level_rows, ways=level_ways, slot_bits=sb,
                             ctx_bits=self.lctx.size)
        self.tl = TopLevels(slots=slots, depth=depth, window=window,
                            orders_bits=self.lt.orders_bits, ctx_bits=self.lctx.size,
                            checked=True)
        members = {
            "i": In(stream.Signature(DECODED_LAYOUT)),
            "o": Out(stream.Signature(self.record_layout)),
            "sym_we": In(1), "sym_index": In(sb), "sym_locate": In(16), "sym_enable": In(1),
            "degraded_index": In(sb), "degraded": Out(1),
            "live_orders": Out(range(order_rows * order_ways + 1)),
            "live_levels": Out(range(level_rows * level_ways + 1)),
            "clearing": Out(1),
        }
        for c in COUNTERS:
            members[c] = Out(32)
        super().__init__(members)

    #: cycles from the edge accepting a message to its record's first valid cycle: locate
    #: read 1, order table 6, level request 1, level table 6, change 1, windows 5; a U adds
    #: its requests after the first (2, or 1 onto its own reference)
    latency = 1 + 6 + 1 + 6 + 1 + 5

    def elaborate(self, platform):
        m = Module()
        sb, lb = self.slot_bits, self.locate_bits
        m.submodules.ot = ot = self.ot
        m.submodules.lt = lt = self.lt
        m.submodules.tl = tl = self.tl
        cnt = {c: getattr(self, c) for c in COUNTERS}
        # a counter moves at most once a cycle per stage; several stages may count one name
        bumps = {c: [] for c in COUNTERS}

        def count(name, cond):
            bumps[name].append(cond)

        m.d.comb += [self.clearing.eq(ot.clearing | lt.clearing | tl.clearing),
                     self.live_orders.eq(ot.live), self.live_levels.eq(lt.live)]

        # ------------------------------------------------------------ symbol tables
        loc_t = data.StructLayout({"slot": sb, "enable": 1})
        m.submodules.loc = loc_mem = Memory(shape=loc_t, depth=self.locates, init=[])
        loc_rd, loc_wr = loc_mem.read_port(), loc_mem.write_port()
        m.submodules.sloc = sloc_mem = Memory(shape=16, depth=self.slots, init=[])
        sloc_rd = sloc_mem.read_port(domain="comb")
        sloc_wr = sloc_mem.write_port()
        sym_in_range = ~self.sym_locate[lb:].any() if lb < 16 else Const(1)
        m.d.comb += [loc_wr.addr.eq(self.sym_locate[:lb]), loc_wr.data.slot.eq(self.sym_index),
                     loc_wr.data.enable.eq(self.sym_enable),
                     loc_wr.en.eq(self.sym_we & sym_in_range),
                     sloc_wr.addr.eq(self.sym_index), sloc_wr.data.eq(self.sym_locate),
                     sloc_wr.en.eq(self.sym_we)]
        degraded = Signal(self.slots)
        m.d.comb += self.degraded.eq(degraded.bit_select(self.degraded_index, 1))

        # ------------------------------------------------------------ front
        # F0: the message is accepted, its locate read; F1: requests to the order table
        msg = Signal(DECODED_LAYOUT)
        m1_v = Signal()
        m1_inr = Signal()                   # header locate inside the locate table
        k = Signal(2)                       # request of the message being sent
        t = msg.msg_type
        is_af = (t == ord("A")) | (t == ord("F"))
        is_ecx = (t == ord("E")) | (t == ord("C")) | (t == ord("X"))
        is_d, is_u, is_p = t == ord("D"), t == ord("U"), t == ord("P")
        hit = m1_inr & loc_rd.data.enable
        hslot = loc_rd.data.slot
        side_ok = (msg.side == SIDE_BUY) | (msg.side == SIDE_SELL)
        u_zero = ~msg.shares.any()
        u_same = msg.new_order_ref == msg.order_ref
        n_req = Signal(2)                   # requests of the message (0: dropped here)
        with m.If(is_af):
            m.d.comb += n_req.eq(Mux(hit & side_ok, 1, 0))
        with m.Elif(is_ecx | is_d):
            m.d.comb += n_req.eq(1)
        with m.Elif(is_u):
            m.d.comb += n_req.eq(Mux(u_zero, 1, Mux(u_same, 2, 3)))
        with m.Elif(is_p):
            m.d.comb += n_req.eq(Mux(hit, 1, 0))
        last = k + 1 >= n_req
        req = Signal(ot.i.payload.shape())
        octx = Signal(self.octx)
        m.d.comb += [octx.timestamp.eq(msg.timestamp), octx.seq.eq(msg.seq),
                     octx.msg_type.eq(t), octx.shares.eq(msg.shares), octx.price.eq(msg.price),
                     octx.locate.eq(msg.stock_locate), octx.slot.eq(hslot), octx.hit.eq(hit),
                     octx.side.eq(msg.side), req.ctx.eq(octx),
                     req.ref.eq(msg.order_ref), req.shares.eq(msg.shares),
                     req.handle.eq(Cat(msg.price, msg.side == SIDE_SELL, hslot)),
                     req.link.eq(Link.NONE)]
        with m.If(is_af):
            m.d.comb += [req.op.eq(Op.INSERT), octx.role.eq(Role.SINGLE)]
        with m.Elif(is_ecx):
            m.d.comb += [req.op.eq(Op.TAKE), octx.role.eq(Role.SINGLE)]
        with m.Elif(is_d):
            m.d.comb += [req.op.eq(Op.DELETE), octx.role.eq(Role.SINGLE)]
        with m.Elif(is_p):
            m.d.comb += [req.op.eq(Op.FIND), req.ref.eq(0), octx.role.eq(Role.P)]
        with m.Elif(u_zero):
            m.d.comb += [req.op.eq(Op.FIND), octx.role.eq(Role.UZERO)]
        with m.Else():
            # the U's sequence: [FIND new,] DELETE original, INSERT new
            step = Mux(u_same, k + 1, k)    # 0 FIND, 1 DELETE, 2 INSERT
            with m.Switch(step):
                with m.Case(0):
                    m.d.comb += [req.op.eq(Op.FIND), req.ref.eq(msg.new_order_ref),
                                 octx.role.eq(Role.UFIND)]
                with m.Case(1):
                    m.d.comb += [req.op.eq(Op.DELETE), octx.role.eq(Role.UDEL),
                                 req.link.eq(Mux(u_same, Link.NONE, Link.AFTER_FIND))]
                with m.Default():
                    m.d.comb += [req.op.eq(Op.INSERT), req.ref.eq(msg.new_order_ref),
                                 octx.role.eq(Role.UINS), req.link.eq(Link.AFTER_DELETE)]
        sending = m1_v & (n_req != 0)
        m.d.comb += [ot.i.valid.eq(sending), ot.i.payload.eq(req)]
        done = m1_v & ((n_req == 0) | (ot.i.ready & last))
        m.d.comb += self.i.ready.eq(~m1_v | done)
        with m.If(m1_v & (n_req != 0) & ot.i.ready & ~last):
            m.d.sync += k.eq(k + 1)
        with m.If(done):
            m.d.sync += m1_v.eq(0)
        accept = self.i.valid & self.i.ready
        m.d.comb += [loc_rd.addr.eq(self.i.payload.stock_locate[:lb]), loc_rd.en.eq(accept)]
        with m.If(accept):
            m.d.sync += [msg.eq(self.i.payload), m1_v.eq(1), k.eq(0),
                         m1_inr.eq(~self.i.payload.stock_locate[lb:].any() if lb < 16
                                   else 1)]
        # counts of messages dropped here
        count("other", done & ~(is_af | is_ecx | is_d | is_u | is_p))
        count("unsubscribed", done & (is_af | is_p) & ~hit)
        count("bad_bad_side", done & is_af & hit & ~side_ok)

        # ------------------------------------------------------------ order table results
        r = ot.o.payload
        rc = Signal(self.octx)
        m.d.comb += rc.eq(r.ctx)
        lreq = Signal(lt.i.payload.shape())
        lctx = Signal(self.lctx)
        h_price, h_side, h_slot = r.handle[:32], r.handle[32], r.handle[33:33 + sb]
        st, rop = r.status, r.op
        ok = st == Status.OK
        # the U's FIND of its new reference: live, out of range
        uf_hit, uf_range = Signal(name="uf_hit"), Signal(name="uf_range")
        take = Signal()                     # a TAKE of the order's level
        add = Signal()                      # an ADD to the level of the handle
        emit = Signal()
        m.d.comb += [lctx.timestamp.eq(rc.timestamp), lctx.seq.eq(rc.seq),
                     lctx.msg_type.eq(rc.msg_type), lctx.ref.eq(r.ref),
                     lctx.shares.eq(rc.shares), lctx.price.eq(rc.price),
                     lctx.side.eq(Mux(h_side, SIDE_SELL, SIDE_BUY)),
                     lctx.locate.eq(rc.locate), lctx.own_locate.eq(0)]
        unknown = Signal()                  # the order is not on this book
        o_fire = ot.o.valid & ot.o.ready
        role = {x: rc.role == x for x in Role}
        with m.Switch(rc.role):
            with m.Case(Role.SINGLE):
                with m.If(rop == Op.INSERT):
                    m.d.comb += [add.eq(ok), emit.eq(ok), lctx.own_locate.eq(1)]
                with m.Else():
                    m.d.comb += [take.eq(ok), emit.eq(ok), lctx.shares.eq(r.taken),
                                 unknown.eq(~ok),
                                 lctx.price.eq(Mux(rc.msg_type == ord("C"), rc.price,
                                                   h_price))]
            with m.Case(Role.P):
                m.d.comb += [emit.eq(1), lctx.ref.eq(0), lctx.side.eq(rc.side),
                             lctx.own_locate.eq(1)]
            with m.Case(Role.UZERO):
                m.d.comb += unknown.eq(~ok)
            with m.Case(Role.UFIND):
                with m.If(o_fire):
                    m.d.sync += [uf_hit.eq(ok), uf_range.eq(st == Status.RANGE)]
            with m.Case(Role.UDEL):
                m.d.comb += [take.eq(ok), unknown.eq((st == Status.UNKNOWN) |
                                                     (st == Status.RANGE))]
            with m.Case(Role.UINS):
                m.d.comb += [add.eq(ok), emit.eq(ok)]
        ins_res = (role[Role.SINGLE] & (rop == Op.INSERT)) | role[Role.UINS]
        cancelled = o_fire & role[Role.UDEL] & (st == Status.CANCELLED)
        count("bad_duplicate_order", (o_fire & ins_res & (st == Status.DUPLICATE)) |
              (cancelled & uf_hit))
        count("bad_zero_shares", o_fire & ((ins_res & (st == Status.ZERO)) |
                                           (role[Role.UZERO] & ok)))
        count("bad_over_execution", o_fire & role[Role.SINGLE] & r.over)
        count("bad_unknown_order", o_fire & unknown & rc.hit)
        count("unsubscribed", o_fire & unknown & ~rc.hit)
        count("ref_range", (o_fire & ins_res & (st == Status.RANGE)) |
              (cancelled & ~uf_hit & uf_range))
        # the order table counts its refused inserts (table_full) itself; a U cancelled for a
        # full row of its new reference never runs its INSERT, so it is counted here
        u_full = Signal(32)
        with m.If(cancelled & ~uf_hit & ~uf_range):
            m.d.sync += u_full.eq(u_full + 1)
        m.d.comb += cnt["table_full"].eq(ot.table_full + u_full)
        m.d.comb += [lctx.emit.eq(emit), lctx.nop.eq(~(add | take)),
                     lreq.op.eq(Mux(add, LevelOp.ADD, Mux(take, LevelOp.TAKE, LevelOp.FIND))),
                     lreq.slot.eq(Mux(rc.role == Role.P, rc.slot, h_slot)),
                     lreq.side.eq(h_side), lreq.price.eq(h_price),
                     lreq.shares.eq(Mux(add, rc.shares, r.taken)),
                     lreq.remove.eq(take & ~r.remaining.any()), lreq.ctx.eq(lctx)]
        # ---- refill engine: a burst of FINDs beyond the window's worst price, back to back
        # in the level table (the order table's results wait), so the first hit is the
        # bottom's best level at that point of the change stream (the windows check that
        # ``start`` is still their worst price when the refill arrives)
        e_busy, e_issue = Signal(name="e_busy"), Signal(name="e_issue")
        e_slot, e_side = Signal(sb, name="e_slot"), Signal(name="e_side")
        e_start, e_price = Signal(32, name="e_start"), Signal(32, name="e_price")
        e_tick = Signal(7, name="e_tick")
        e_left = Signal(range(self.max_probes + 1))
        e_span = Signal(range(self.max_probes + 1))
        preq = Signal(lt.i.payload.shape())
        pctx = Signal(self.lctx)
        # the last FIND of the burst: its length reached, or a bid search at its lowest price
        e_stop = (e_left == 1) | (~e_side & (e_price < e_tick + 1))
        m.d.comb += [pctx.probe.eq(1), pctx.last.eq(e_stop), pctx.nop.eq(1),
                     preq.op.eq(LevelOp.FIND), preq.slot.eq(e_slot), preq.side.eq(e_side),
                     preq.price.eq(e_price), preq.ctx.eq(pctx)]
        l_rdy = Signal()
        m.d.comb += l_rdy.eq(_stage(m, "lreq", Mux(e_issue, 1, ot.o.valid),
                                    Mux(e_issue, preq, lreq), lt.i))
        m.d.comb += ot.o.ready.eq(l_rdy & ~e_issue)
        with m.If(e_issue & l_rdy):
            m.d.sync += [e_left.eq(e_left - 1),
                         e_price.eq(Mux(e_side, e_price + e_tick, e_price - e_tick))]
            with m.If(e_stop):
                m.d.sync += [e_issue.eq(0), e_left.eq(0)]

        # ------------------------------------------------------------ level table results
        lr = lt.o.payload
        lx = Signal(self.lctx)
        m.d.comb += lx.eq(lr.ctx)
        chg = Signal(tl.i.payload.shape())
        cx = Signal(self.lctx)
        l_fire = lt.o.valid & lt.o.ready
        l_ok = lr.status == LevelStatus.OK
        real = ~lx.nop & l_ok
        m.d.comb += [cx.eq(lx), cx.emit.eq(lx.emit & (lx.nop | l_ok)), cx.nop.eq(~real),
                     chg.slot.eq(lr.slot), chg.side.eq(lr.side), chg.price.eq(lr.price),
                     chg.shares.eq(Mux(lr.shares[32:].any(), _U4_MAX, lr.shares[:32])),
                     chg.orders.eq(lr.orders), chg.new.eq(lr.new), chg.refill.eq(0),
                     chg.nop.eq(~real), chg.ctx.eq(cx)]
        lost = l_fire & ~lx.nop & ~l_ok
        count("level_full", lost & (lr.op == LevelOp.ADD))
        count("level_unknown", lost & (lr.op == LevelOp.TAKE))
        with m.If(lost):
            m.d.sync += degraded.bit_select(lr.slot, 1).eq(1)
        # refill: every hit of the burst, in order, is sent as a refill whose start is the
        # hit before it (the first: the window's worst), so one burst refills several levels;
        # the burst's last result always goes on (a marker when it is no hit)
        f_any, f_prev = Signal(name="f_any"), Signal(32, name="f_prev")
        p_hit = lx.probe & l_ok
        with m.If(l_fire & lx.probe):
            with m.If(lx.last):
                m.d.sync += f_any.eq(0)
            with m.Elif(p_hit):
                m.d.sync += f_any.eq(1)
            with m.If(p_hit):
                m.d.sync += f_prev.eq(lr.price)
        with m.If(lx.probe):
            m.d.comb += [chg.refill.eq(p_hit), chg.nop.eq(~p_hit), chg.new.eq(0),
                         chg.slot.eq(e_slot), chg.side.eq(e_side), cx.fill.eq(p_hit),
                         cx.miss.eq(lx.last & ~p_hit & ~f_any), cx.emit.eq(0)]
        m.d.comb += chg.start.eq(Mux(f_any, f_prev, e_start))
        keep = ~lx.probe | lx.last | p_hit
        m.d.comb += lt.o.ready.eq(_stage(m, "chg", lt.o.valid & keep, chg, tl.i) | ~keep)

        # ------------------------------------------------------------ records
        w = tl.o.payload
        wx = Signal(self.lctx)
        m.d.comb += wx.eq(w.ctx)
        rec = Signal(self.record_layout)
        m.d.comb += [sloc_rd.addr.eq(w.slot),
                     rec.timestamp.eq(wx.timestamp), rec.seq.eq(wx.seq),
                     rec.order_ref.eq(wx.ref), rec.shares.eq(wx.shares),
                     rec.price.eq(wx.price),
                     rec.stock_locate.eq(Mux(wx.own_locate, wx.locate, sloc_rd.data)),
                     rec.msg_type.eq(wx.msg_type), rec.side.eq(wx.side)]
        for j in range(self.depth):
            for side in ("bid", "ask"):
                for f in ("price", "shares", "orders"):
                    m.d.comb += rec[f"{side}_{f}"][j].eq(w[f"{side}_{f}"][j])
        w_fire = tl.o.valid & tl.o.ready
        count("updates", w_fire & wx.emit)
        count("short", w_fire & wx.emit & w.short)
        fill_r = w_fire & wx.probe & wx.fill
        done_r = w_fire & wx.probe & wx.last
        count("refill", fill_r & ~w.stale)
        count("refill_stale", fill_r & w.stale)
        count("refill_miss", done_r & wx.miss & (e_span == self.max_probes))
        # arm the engine on an output whose side needs a level from the bottom
        with m.If(done_r):
            m.d.sync += e_busy.eq(0)
        retry = done_r & wx.miss
        # where the search starts: the window's worst price; a window emptied while levels
        # remain beyond it starts from the best price of the other side (every level of an
        # uncrossed book is beyond it)
        other = Mux(w.side, w.bid_price[0], w.ask_price[0])
        start = Mux(w.worst.any(), w.worst, other)
        # price grid: $0.01 at and above $1, $0.0001 below (Reg NMS Rule 612)
        tick = Mux(start >= 10_000, 100, 1)
        room = w.side | (start > tick)      # a bid search needs a price above 0 below it
        arm = w_fire & w.need & start.any() & room & (~e_busy | done_r) & \
            ~(retry & (e_span == self.max_probes))
        span = Mux(retry, e_span << 1, self.probes)
        with m.If(arm):
            m.d.sync += [e_busy.eq(1), e_issue.eq(1), e_slot.eq(w.slot), e_side.eq(w.side),
                         e_start.eq(start), e_span.eq(span), e_left.eq(span),
                         e_tick.eq(tick),
                         e_price.eq(Mux(w.side, start + tick, start - tick))]
        m.d.comb += tl.o.ready.eq(_stage(m, "rec", tl.o.valid & wx.emit, rec, self.o) |
                                  ~wx.emit)

        # ------------------------------------------------------------ counters
        for name, conds in bumps.items():
            if name == "table_full":
                continue
            if conds:
                m.d.sync += cnt[name].eq(cnt[name] + sum(conds, Const(0, 2)))
        return m
