"""Price level table in block RAM: the aggregate of every live price level of every subscribed
symbol, by (symbol slot, side, price), one update a cycle.

The level store of the block-RAM order book (issue: order book in EBR at line rate). It holds
what the golden book's level nodes hold (:mod:`hftaccel.golden.book`): per (slot, side,
price) the aggregate displayed shares and the number of orders, for every level, at any
depth. A level is found by its key, not by a handle: every message type reaches it at the
same pipeline position, with the key from the message (A F, the new order of U) or from the
order table's entry (E C X D, the original order of U), so the table has one read and one
write a cycle and needs no index beside it.

Structure
---------
``rows`` rows of ``ways`` entries in one memory (Yosys maps it to DP16KD); the pipeline and the
key fold are :mod:`.hash_table`'s. The key is ``price | side << 32 | slot << 33``; an entry
is ``tag | shares | orders``, ``orders == 0`` marks a free way. With the defaults (2048 rows x
4 ways, 256 slots) an entry is 30 + 36 + 15 = 81 bits, a row 324 bits: 8,192 levels in
36 DP16KD (9 wide x 4 deep, no bit unused).

Operations
----------
* ADD: one order of ``shares`` joins the level; the level is created when absent (``new``).
  With no free way in the row the add is refused (``FULL``) and counted (``level_full``):
  nothing is changed.
* TAKE: ``shares`` leave the level and, with ``remove``, one order; the level is gone
  (``gone``, its way freed) when its last order leaves. TAKE of an absent level is
  ``UNKNOWN`` and counted (``unknown``): the order table and this table disagree.
* FIND: the level's aggregate, nothing changed.

Pipeline: :mod:`.hash_table`'s, keyed by the level. Updates of one level or one row may follow
each other on consecutive cycles (two orders at one price, a level emptied and created again,
both sides or two symbols in one row): read-modify-write hazards are resolved by forwarding,
never by stalling. Latency :attr:`latency` = 6 cycles, initiation interval 1. After reset the
table is cleared, one row a cycle, ``rows`` cycles with ``i.ready`` low.
"""

from types import SimpleNamespace

from amaranth.hdl import Cat, Mux, Signal
from amaranth.lib import data, enum, stream
from amaranth.lib.wiring import In, Out

from .hash_table import HashTable, fold_row

__all__ = ["LevelOp", "LevelStatus", "level_key", "level_row", "request_layout",
           "result_layout", "LevelTable"]


class LevelOp(enum.Enum, shape=2):
    """Operation on the level table."""
    ADD = 0         #: one order of ``shares`` joins the level (created when absent)
    TAKE = 1        #: ``shares`` leave the level, and one order with ``remove``
    FIND = 2        #: look up only


class LevelStatus(enum.Enum, shape=2):
    """Outcome of an operation."""
    OK = 0          #: done
    FULL = 1        #: ADD of a new level into a row with no free way: refused, counted
    UNKNOWN = 2     #: TAKE or FIND of an absent level: nothing changed (TAKE counted)


def level_key(slot: int, side: int, price: int) -> int:
    """Key of the level (``slot``, ``side`` 0 bid / 1 ask, ``price`` 1/10,000 USD)."""
    return price | side << 32 | slot << 33


def level_row(slot: int, side: int, price: int, rows: int, slot_bits: int) -> int:
    """Row of a level in a table of ``rows`` rows; the gateware computes the same function."""
    return fold_row(level_key(slot, side, price), rows, 33 + slot_bits)


def request_layout(slot_bits: int = 8, ctx_bits: int = 0) -> data.StructLayout:
    """Request: ``op`` (:class:`LevelOp`), the level (``slot``, ``side`` 0 bid / 1 ask,
    ``price`` 1/10,000 USD), ``shares`` (ADD: the order's shares; TAKE: shares leaving),
    ``remove`` (TAKE: one order leaves), ``ctx`` (``ctx_bits`` of the caller's, passed to
    the result)."""
    return data.StructLayout({"op": LevelOp, "slot": slot_bits, "side": 1, "price": 32,
                              "shares": 32, "remove": 1, "ctx": ctx_bits})


def result_layout(slot_bits: int = 8, shares_bits: int = 36, orders_bits: int = 15,
                  ctx_bits: int = 0) -> data.StructLayout:
    """Result, one per request, in order: ``status`` (:class:`LevelStatus`), ``op`` and the
    level of the request, the level's aggregate after it (``shares``, ``orders``; 0 when gone
    or refused), ``new`` (ADD created the level), ``gone`` (TAKE removed its last order),
    ``ctx`` of the request."""
    return data.StructLayout({"status": LevelStatus, "op": LevelOp, "slot": slot_bits,
                              "side": 1, "price": 32, "shares": shares_bits,
                              "orders": orders_bits, "new": 1, "gone": 1, "ctx": ctx_bits})


class LevelTable(HashTable):
    """Price level table: ``rows`` x ``ways`` levels in block RAM, one operation a cycle.

    Parameters
    ----------
    rows : int
        Rows (power of two, at least 2). Capacity ``rows * ways`` levels [2048].
    ways : int
        Levels per row, all compared in one cycle [4].
    slot_bits : int
        Width of the symbol slot [8: 256 slots].
    shares_bits : int
        Width of a level's aggregate shares [36].
    orders_bits : int
        Width of a level's order count [15: up to 32,767 orders].
    ctx_bits : int
        Width of the caller's context passed from request to result [0].

    Attributes
    ----------
    i : In(stream.Signature(request_layout(slot_bits, ctx_bits)))
        Requests; ready every cycle once the table is cleared, unless ``o`` back-pressures.
    o : Out(stream.Signature(result_layout(slot_bits, shares_bits, orders_bits, ctx_bits)))
        Results, one per request, in order, :attr:`latency` cycles after acceptance.
    live : Out(range(rows * ways + 1))
        Live levels.
    level_full, unknown : Out(32)
        Refused ADDs (no free way in the row) and TAKEs of an absent level.
    clearing : Out(1)
        High while the table is cleared after reset.

    Raises
    ------
    ValueError
        ``rows`` not a power of two >= 2 or above ``2**(33 + slot_bits - 1)``, ``ways`` < 1,
        ``slot_bits`` or ``orders_bits`` < 1, ``shares_bits`` < 32, ``ctx_bits`` < 0.
    """

    def __init__(self, *, rows: int = 2048, ways: int = 4, slot_bits: int = 8,
                 shares_bits: int = 36, orders_bits: int = 15, ctx_bits: int = 0):
        for name, v in (("slot_bits", slot_bits), ("orders_bits", orders_bits)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        if not isinstance(shares_bits, int) or shares_bits < 32:
            raise ValueError(f"shares_bits must be an integer >= 32, not {shares_bits!r}")
        if not isinstance(ctx_bits, int) or ctx_bits < 0:
            raise ValueError(f"ctx_bits must be a non-negative integer, not {ctx_bits!r}")
        self.slot_bits, self.shares_bits, self.orders_bits = slot_bits, shares_bits, orders_bits
        self.ctx_bits = ctx_bits
        res_t = result_layout(slot_bits, shares_bits, orders_bits, ctx_bits)
        super().__init__(
            rows=rows, ways=ways, key_bits=33 + slot_bits, live_field="orders", pre_bits=1,
            fields={"shares": shares_bits, "orders": orders_bits},
            signature={
                "i": In(stream.Signature(request_layout(slot_bits, ctx_bits))),
                "o": Out(stream.Signature(res_t)),
                "live": Out(range(rows * ways + 1)),
                "level_full": Out(32),
                "unknown": Out(32),
                "clearing": Out(1),
            })

    def key(self, payload):
        return Cat(payload.price, payload.side, payload.slot), 0

    def pre(self, payload):
        return payload.op == LevelOp.ADD

    def operate(self, m, s):
        ent_t, nw = self.entry_layout, self.ways
        r4, hit, ent = s.req, s.hit, s.ent
        f_add = s.pre[0]
        f_take = r4.op == LevelOp.TAKE
        create = f_add & ~hit & s.free_any
        upd = hit & (f_add | f_take)
        # both carry chains run side by side; one LUT picks the result
        plus, minus = Signal(self.shares_bits), Signal(self.shares_bits)
        o_plus, o_minus = Signal(self.orders_bits), Signal(self.orders_bits)
        m.d.comb += [plus.eq(ent.shares + r4.shares), minus.eq(ent.shares - r4.shares),
                     o_plus.eq(ent.orders + 1), o_minus.eq(ent.orders - r4.remove)]
        # the last order leaves: the equality runs beside the subtraction
        gone = f_take & hit & r4.remove & (ent.orders == 1)
        upd_ent, new_ent = Signal(ent_t), Signal(ent_t)
        m.d.comb += [upd_ent.tag.eq(ent.tag),
                     upd_ent.shares.eq(Mux(f_add, plus, Mux(gone, 0, minus))),
                     upd_ent.orders.eq(Mux(f_add, o_plus, o_minus)),
                     new_ent.tag.eq(s.tag), new_ent.shares.eq(r4.shares), new_ent.orders.eq(1)]
        wsel, wdata = Signal(nw), Signal(ent_t)     # the way written, one-hot (0: no write)
        m.d.comb += [wsel.eq(Mux(create, s.free_oh, Mux(upd, s.way, 0))),
                     wdata.eq(Mux(create, new_ent, upd_ent))]
        out_ent = Signal(ent_t)
        m.d.comb += out_ent.eq(Mux(create, new_ent, Mux(upd, upd_ent, ent)))
        status = Signal(LevelStatus)
        with m.If(f_add):
            m.d.comb += status.eq(Mux(hit | s.free_any, LevelStatus.OK, LevelStatus.FULL))
        with m.Else():
            m.d.comb += status.eq(Mux(hit, LevelStatus.OK, LevelStatus.UNKNOWN))
        ok = status == LevelStatus.OK
        res = Signal(self.o.payload.shape())
        m.d.comb += [res.status.eq(status), res.op.eq(r4.op), res.slot.eq(r4.slot),
                     res.side.eq(r4.side), res.price.eq(r4.price),
                     res.shares.eq(Mux(ok, out_ent.shares, 0)),
                     res.orders.eq(Mux(ok, out_ent.orders, 0)),
                     res.new.eq(create), res.gone.eq(gone), res.ctx.eq(r4.ctx)]
        return SimpleNamespace(
            wsel=wsel, wdata=wdata, wlive=~gone,
            hit=Mux(create, 1, Mux(gone, 0, hit)), ent=out_ent,
            way=Mux(create, s.free_oh, s.way), result=res,
            status=status, create=create, gone=gone)

    def counters(self, m, s, op):
        # counters one cycle later, from registered events (off the stage-4 paths)
        go = s.go
        c_full, c_unk = Signal(name="c_full"), Signal(name="c_unknown")
        c_up, c_dn = Signal(name="c_live_up"), Signal(name="c_live_dn")
        m.d.sync += [c_full.eq(go & (op.status == LevelStatus.FULL)),
                     c_unk.eq(go & (op.status == LevelStatus.UNKNOWN)
                              & (s.req.op == LevelOp.TAKE)),
                     c_up.eq(go & op.create), c_dn.eq(go & op.gone)]
        with m.If(c_full):
            m.d.sync += self.level_full.eq(self.level_full + 1)
        with m.If(c_unk):
            m.d.sync += self.unknown.eq(self.unknown + 1)
        with m.If(c_up & ~c_dn):
            m.d.sync += self.live.eq(self.live + 1)
        with m.Elif(c_dn & ~c_up):
            m.d.sync += self.live.eq(self.live - 1)
