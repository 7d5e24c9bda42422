"""Order table in block RAM: live orders by order reference number, one operation a cycle.

The order store of the block-RAM order book (issue: order book in EBR at line rate). Source
of the operations: NASDAQ TotalView-ITCH 5.0 sections 4.3 (Add Order A/F: insert), 4.4 (Order
Executed E / Executed With Price C / Cancel X: take shares; Delete D: take all; Replace U:
take all of the original, insert the new reference).

Structure
---------
``rows`` rows of ``ways`` entries in one memory (Yosys maps it to DP16KD). An entry is
``tag | shares | handle``:

* **tag**: reference bits ``row_bits .. ref_bits - 1``. The row is the low ``row_bits`` of the
  reference XOR the tag folded to ``row_bits`` (:func:`order_row`), so (row, tag) gives the
  reference back: a lookup never returns another order. References at or above
  ``2**ref_bits`` are refused and counted (``ref_range``); ITCH assigns them from 1 upwards
  over the day (about 10**9 on a busy day, ``2**39`` is 5.5 * 10**11).
* **shares**: remaining shares (ITCH 4-byte field); 0 marks a free way (a live order always
  has shares left: an add of 0 shares is rejected before it gets here, and an order whose
  shares reach 0 is deleted).
* **handle**: the caller's handle for the order (the book stores its price level node).

With the defaults (4096 rows x 4 ways, 39-bit references, 13-bit handles) an entry is
27 + 32 + 13 = 72 bits and the table holds 16,384 orders in 64 DP16KD.

Pipeline: :mod:`.hash_table`'s, keyed by the reference. Two operations on one order or one row
may follow each other on consecutive cycles (E then D of one order, A then D, two adds into
one row): read-modify-write hazards are resolved by forwarding, never by stalling. Latency
:attr:`latency` = 6 cycles from acceptance to the result on ``o``; initiation interval 1.
After reset the table is cleared, one row a cycle, ``rows`` cycles with ``i.ready`` low.
"""

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Mux, Signal
from amaranth.lib import data, enum, stream
from amaranth.lib.wiring import In, Out

from .hash_table import HashTable, fold_row

__all__ = ["Op", "Status", "Link", "order_row", "request_layout", "result_layout", "OrderTable"]


class Op(enum.Enum, shape=2):
    """Operation on the order table."""
    INSERT = 0      #: add ``ref`` with ``shares`` and ``handle`` (A, F, the new order of U)
    TAKE = 1        #: take ``min(shares, remaining)`` shares (E, C, X)
    DELETE = 2      #: take all remaining shares (D, the original order of U)
    FIND = 3        #: look up only


class Status(enum.Enum, shape=3):
    """Outcome of an operation."""
    OK = 0          #: done (a TAKE of more than the remaining shares also sets ``over``)
    DUPLICATE = 1   #: INSERT of a reference already live: nothing changed
    FULL = 2        #: INSERT into a row with no free way: refused, counted (``table_full``)
    UNKNOWN = 3     #: TAKE / DELETE / FIND of a reference not live: nothing changed
    RANGE = 4       #: reference at or above ``2**ref_bits``: refused, counted (``ref_range``)
    ZERO = 5        #: INSERT of 0 shares (not an order; the book rejects it first): nothing changed
    CANCELLED = 6   #: a linked request whose condition on the request before it failed


class Link(enum.Enum, shape=2):
    """How a request depends on the request accepted just before it (``linked`` builds): the
    two or three requests of one ITCH Order Replace (U), which must change nothing when the
    new reference is live (the golden book's ``duplicate_order``) or cannot be stored."""
    NONE = 0
    #: DELETE of the original, after a FIND of the new reference: cancelled (``CANCELLED``,
    #: nothing changed) when that reference was live or its row had no free way; an
    #: original that is not live is still ``UNKNOWN``
    AFTER_FIND = 1
    #: INSERT of the new reference, after the DELETE of the original: cancelled unless that
    #: DELETE was ``OK``; the handle's bits from ``link_keep`` up are the original's
    AFTER_DELETE = 2


def order_row(ref: int, rows: int, ref_bits: int = 39) -> int:
    """Row of reference ``ref`` (``rows`` a power of two): its low ``log2(rows)`` bits XOR
    each ``log2(rows)``-bit piece of the tag ``ref >> log2(rows)`` (bits below ``ref_bits``).
    Consecutive references go to consecutive rows; the gateware computes the same function."""
    return fold_row(ref, rows, ref_bits)


def request_layout(handle_bits: int = 13, linked: bool = False,
                   ctx_bits: int = 0) -> data.StructLayout:
    """Request: ``op`` (:class:`Op`), ``ref`` (order reference number, 64 bits), ``shares``
    (INSERT: the order's shares; TAKE: shares to take), ``handle`` (INSERT only); with
    ``linked``, ``link`` (:class:`Link`); ``ctx`` (``ctx_bits`` of the caller's, passed to the
    result)."""
    return data.StructLayout({"op": Op, "ref": 64, "shares": 32, "handle": handle_bits,
                              **({"link": Link} if linked else {}), "ctx": ctx_bits})


def result_layout(handle_bits: int = 13, ctx_bits: int = 0) -> data.StructLayout:
    """Result, one per request, in order: ``status`` (:class:`Status`), ``op`` and ``ref``
    of the request, ``taken`` (shares taken off the order: TAKE, DELETE), ``remaining``
    (shares left on the order after the operation; 0 when it is gone), ``handle`` (of the
    order acted on: inserted, taken or found), ``over`` (TAKE of more than the remaining
    shares: all were taken), ``ctx`` of the request."""
    return data.StructLayout({"status": Status, "op": Op, "ref": 64, "taken": 32,
                              "remaining": 32, "handle": handle_bits, "over": 1,
                              "ctx": ctx_bits})


class OrderTable(HashTable):
    """Order table: ``rows`` x ``ways`` entries in block RAM, one operation a cycle.

    Parameters
    ----------
    rows : int
        Rows (power of two, at least 2). Capacity ``rows * ways`` orders [4096].
    ways : int
        Entries per row, all compared in one cycle [4].
    ref_bits : int
        Order references below ``2**ref_bits`` are stored [39].
    handle_bits : int
        Width of the caller's handle [13: 8,192 price level nodes].
    late_handle : bool
        INSERT takes its handle not from the request but from ``handle_late`` in the cycle the
        request is in stage 4 (``latency - 2`` cycles after acceptance, later when the output
        stalls: it is sampled on the edge where ``s4_advance`` is high). The book's level
        index runs beside the table and decides the level handle of an add in its own stage
        4, the same cycle [False].
    linked : bool
        Requests carry a ``link`` (:class:`Link`) on the request before them: the order
        replace (U) of the book as FIND new, DELETE original, INSERT new (or DELETE, INSERT
        when the new reference is the original's), all or nothing [False].
    link_keep : int
        ``Link.AFTER_DELETE``: handle bits below this come from the request, the rest from the
        original order [32: the book's handle is price | side << 32 | slot << 33, and a
        replace keeps side and symbol].
    ctx_bits : int
        Width of the caller's context passed from request to result [0].

    Attributes
    ----------
    i : In(stream.Signature(request_layout(handle_bits)))
        Requests; ready every cycle once the table is cleared, unless ``o`` back-pressures.
    o : Out(stream.Signature(result_layout(handle_bits)))
        Results, one per request, in order, :attr:`latency` cycles after acceptance.
    live : Out(range(rows * ways + 1))
        Live orders.
    table_full, ref_range : Out(32)
        Refused INSERTs (no free way in the row) and requests with a reference at or above
        ``2**ref_bits``.
    clearing : Out(1)
        High while the table is cleared after reset.
    handle_late : In(handle_bits); s4_valid, s4_advance : Out(1); s4_ref : Out(64)
        With ``late_handle`` only: the late handle, and the request in stage 4 (valid, its
        reference, whether it leaves stage 4 on this edge).

    Raises
    ------
    ValueError
        ``rows`` not a power of two >= 2, ``ways`` < 1, ``ref_bits`` not in
        ``log2(rows) + 1 .. 64``, ``handle_bits`` < 1.
    """

    def __init__(self, *, rows: int = 4096, ways: int = 4, ref_bits: int = 39,
                 handle_bits: int = 13, late_handle: bool = False, linked: bool = False,
                 link_keep: int = 32, ctx_bits: int = 0):
        rb = rows.bit_length() - 1 if isinstance(rows, int) else 0
        if not isinstance(ref_bits, int) or not rb < ref_bits <= 64:
            raise ValueError(f"ref_bits must be in {rb + 1}..64, not {ref_bits!r}")
        if not isinstance(handle_bits, int) or handle_bits < 1:
            raise ValueError(f"handle_bits must be a positive integer, not {handle_bits!r}")
        self.ref_bits, self.handle_bits = ref_bits, handle_bits
        self.late_handle = bool(late_handle)
        self.linked = bool(linked)
        if self.linked and not (isinstance(link_keep, int) and 0 <= link_keep <= handle_bits):
            raise ValueError(f"link_keep must be in 0..{handle_bits}, not {link_keep!r}")
        if not isinstance(ctx_bits, int) or ctx_bits < 0:
            raise ValueError(f"ctx_bits must be a non-negative integer, not {ctx_bits!r}")
        self.link_keep, self.ctx_bits = link_keep, ctx_bits
        late = {"handle_late": In(handle_bits), "s4_valid": Out(1), "s4_ref": Out(64),
                "s4_advance": Out(1)} if self.late_handle else {}
        super().__init__(
            rows=rows, ways=ways, key_bits=ref_bits, live_field="shares", pre_bits=1,
            fields={"shares": 32, "handle": handle_bits},
            signature={
                **late,
                "i": In(stream.Signature(request_layout(handle_bits, self.linked, ctx_bits))),
                "o": Out(stream.Signature(result_layout(handle_bits, ctx_bits))),
                "live": Out(range(rows * ways + 1)),
                "table_full": Out(32),
                "ref_range": Out(32),
                "clearing": Out(1),
            })

    def key(self, payload):
        ref = payload.ref
        oor = ref[self.ref_bits:].any() if self.ref_bits < 64 else Const(0)
        return ref[:self.ref_bits], oor

    def pre(self, payload):
        return ~payload.shares.any()        # an INSERT of 0 shares

    def operate(self, m, s):
        # every decision is a few LUTs of registers; only the shares left come from a carry
        ent_t, nw = self.entry_layout, self.ways
        r4, hit4, ent4, way4, zero = s.req, s.hit, s.ent, s.way, s.pre[0]
        op = r4.op
        f_ins = (op == Op.INSERT) & ~s.oor
        f_take = ((op == Op.TAKE) | (op == Op.DELETE)) & ~s.oor
        cancel = Const(0)
        if self.linked:
            # the request that left stage 4 last: its status, whether its key was live and
            # its row had a free way, its handle (registers, so off the stage-4 paths)
            p_ok, p_hit = Signal(name="prev_ok"), Signal(name="prev_hit")
            p_free, p_handle = Signal(name="prev_free"), Signal(self.handle_bits,
                                                                name="prev_handle")
            after_find, after_del = r4.link == Link.AFTER_FIND, r4.link == Link.AFTER_DELETE
            cancel = (after_find & (p_hit | ~p_free)) | (after_del & ~p_ok)
        ins_ok = f_ins & ~cancel & ~zero & ~hit4 & s.free_any
        take_ok = f_take & ~cancel & hit4
        rem = ent4.shares
        # TAKE: rem - x with its borrow; DELETE takes all
        diff = Signal(33)
        m.d.comb += diff.eq(rem - r4.shares)
        over = (op == Op.TAKE) & diff[32]
        take_all = (op == Op.DELETE) | diff[32]
        taken = Mux(take_all, rem, r4.shares)
        left = Mux(take_all, 0, diff[:32])
        # the order leaves: the equality runs beside the subtraction, so the live bits are one
        # LUT after the borrow
        gone = take_all | (rem == r4.shares)
        ins_ent, take_ent = Signal(ent_t), Signal(ent_t)
        handle = self.handle_late if self.late_handle else r4.handle
        if self.linked and self.link_keep < self.handle_bits:
            kp = self.link_keep
            handle = Mux(after_del, Cat(r4.handle[:kp], p_handle[kp:]), handle)
        m.d.comb += [ins_ent.tag.eq(s.tag), ins_ent.shares.eq(r4.shares),
                     ins_ent.handle.eq(handle),
                     take_ent.eq(ent4), take_ent.shares.eq(left)]
        wsel, wdata = Signal(nw), Signal(ent_t)   # the way written, one-hot (0: no write)
        m.d.comb += [wsel.eq(Mux(f_ins, Mux(ins_ok, s.free_oh, 0), Mux(take_ok, way4, 0))),
                     wdata.eq(Mux(f_ins, ins_ent, take_ent))]
        out_ent = Signal(ent_t)
        m.d.comb += out_ent.eq(Mux(ins_ok, ins_ent, Mux(take_ok, take_ent, ent4)))
        status = Signal(Status)
        with m.If(s.oor):
            m.d.comb += status.eq(Status.RANGE)
        with m.Elif(cancel & ((op == Op.INSERT) | hit4)):
            m.d.comb += status.eq(Status.CANCELLED)
        with m.Elif(op == Op.INSERT):
            with m.If(zero):
                m.d.comb += status.eq(Status.ZERO)
            with m.Elif(hit4):
                m.d.comb += status.eq(Status.DUPLICATE)
            with m.Elif(~s.free_any):
                m.d.comb += status.eq(Status.FULL)
            with m.Else():
                m.d.comb += status.eq(Status.OK)
        with m.Elif(~hit4):
            m.d.comb += status.eq(Status.UNKNOWN)
        with m.Else():
            m.d.comb += status.eq(Status.OK)
        if self.late_handle:
            m.d.comb += [self.s4_valid.eq(s.valid), self.s4_ref.eq(r4.ref),
                         self.s4_advance.eq(s.go)]
        res = Signal(result_layout(self.handle_bits, self.ctx_bits))
        is_take = (op == Op.TAKE) | (op == Op.DELETE)
        ok = status == Status.OK
        m.d.comb += [res.status.eq(status), res.op.eq(op), res.ref.eq(r4.ref),
                     res.taken.eq(Mux(ok & is_take, taken, 0)),
                     res.remaining.eq(Mux(ok, out_ent.shares, 0)),
                     res.handle.eq(Mux(ok, out_ent.handle, 0)),
                     res.over.eq(ok & over), res.ctx.eq(r4.ctx)]
        if self.linked:
            with m.If(s.go):
                m.d.sync += [p_ok.eq(ok), p_hit.eq(hit4 & ~s.oor),
                             p_free.eq(s.free_any & ~s.oor), p_handle.eq(res.handle)]
        return SimpleNamespace(
            wsel=wsel, wdata=wdata, wlive=f_ins | ~gone,
            hit=Mux(ins_ok, 1, Mux(take_ok, ~gone, hit4)), ent=out_ent,
            way=Mux(ins_ok, s.free_oh, way4), result=res,
            status=status, ok=ok, is_take=is_take, gone=gone)

    def counters(self, m, s, op):
        # counters one cycle later, from registered events (off the stage-4 paths)
        go, kind = s.go, s.req.op
        c_full, c_range = Signal(name="c_full"), Signal(name="c_range")
        c_up, c_dn = Signal(name="c_live_up"), Signal(name="c_live_dn")
        m.d.sync += [c_full.eq(go & (op.status == Status.FULL)),
                     c_range.eq(go & (op.status == Status.RANGE)),
                     c_up.eq(go & op.ok & (kind == Op.INSERT)),
                     c_dn.eq(go & op.ok & op.is_take & op.gone)]
        with m.If(c_full):
            m.d.sync += self.table_full.eq(self.table_full + 1)
        with m.If(c_range):
            m.d.sync += self.ref_range.eq(self.ref_range + 1)
        with m.If(c_up & ~c_dn):
            m.d.sync += self.live.eq(self.live + 1)
        with m.Elif(c_dn & ~c_up):
            m.d.sync += self.live.eq(self.live - 1)
