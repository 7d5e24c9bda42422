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

Pipeline (an operation accepted at cycle 0; every stage advances together, stalled only by
the output):

0. row hash; the memory read is issued; the row and reference of this operation are compared
   with those of the five operations ahead (equality flags, registered).
1. the row arrives; the row written by the operation four or five ahead (the two write-back
   registers) replaces it when the rows are equal.
2. the row written by the operation three ahead replaces it likewise; tag compares of every
   way (match and live masks registered).
3. the entry of the reference: from the operation one ahead if it had the same reference (its
   result is combinational in stage 4), else from the operation two ahead (a register), else
   the matching way.
4. the operation: insert (free way of the row as the two operations ahead left it, priority to
   way 0), take (``min(shares, remaining)``), delete; the new row goes to the write-back
   register, which writes the memory in the next cycle; the result is registered behind a
   skid buffer.

So two operations on one order or one row may follow each other on consecutive cycles (E then
D of one order, A then D, two adds into one row): read-modify-write hazards are resolved by
forwarding, never by stalling. Latency :attr:`latency` = 6 cycles from acceptance to the
result on ``o``; initiation interval 1. After reset the table is cleared, one row a cycle,
``rows`` cycles with ``i.ready`` low.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .stream import skid_output

__all__ = ["Op", "Status", "order_row", "request_layout", "result_layout", "OrderTable"]


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


def order_row(ref: int, rows: int, ref_bits: int = 39) -> int:
    """Row of reference ``ref`` (``rows`` a power of two): its low ``log2(rows)`` bits XOR
    each ``log2(rows)``-bit piece of the tag ``ref >> log2(rows)`` (bits below ``ref_bits``).
    Consecutive references go to consecutive rows; the gateware computes the same function."""
    rb = rows.bit_length() - 1
    if rb == 0:
        return 0
    h = ref & (rows - 1)
    tag = (ref & ((1 << ref_bits) - 1)) >> rb
    while tag:
        h ^= tag & (rows - 1)
        tag >>= rb
    return h


def request_layout(handle_bits: int = 13) -> data.StructLayout:
    """Request: ``op`` (:class:`Op`), ``ref`` (order reference number, 64 bits), ``shares``
    (INSERT: the order's shares; TAKE: shares to take), ``handle`` (INSERT only)."""
    return data.StructLayout({"op": Op, "ref": 64, "shares": 32, "handle": handle_bits})


def result_layout(handle_bits: int = 13) -> data.StructLayout:
    """Result, one per request, in order: ``status`` (:class:`Status`), ``op`` and ``ref``
    of the request, ``taken`` (shares taken off the order: TAKE, DELETE), ``remaining``
    (shares left on the order after the operation; 0 when it is gone), ``handle`` (of the
    order acted on: inserted, taken or found), ``over`` (TAKE of more than the remaining
    shares: all were taken)."""
    return data.StructLayout({"status": Status, "op": Op, "ref": 64, "taken": 32,
                              "remaining": 32, "handle": handle_bits, "over": 1})


def _fold(ref, ref_bits, rb):
    """Gateware :func:`order_row`: (row, tag) of a 64-bit reference signal."""
    tag = ref[rb:ref_bits]
    h = ref[:rb]
    for k in range(0, len(tag), rb):
        piece = tag[k:k + rb]
        h = h ^ Cat(piece, Const(0, rb - len(piece))) if len(piece) < rb else h ^ piece
    return h[:rb], tag


class OrderTable(wiring.Component):
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

    latency = 6     #: cycles from the accepting edge to the result's first valid cycle
    ii = 1

    def __init__(self, *, rows: int = 4096, ways: int = 4, ref_bits: int = 39,
                 handle_bits: int = 13, late_handle: bool = False):
        if not isinstance(rows, int) or rows < 2 or rows & (rows - 1):
            raise ValueError(f"rows must be a power of two >= 2, not {rows!r}")
        if not isinstance(ways, int) or ways < 1:
            raise ValueError(f"ways must be a positive integer, not {ways!r}")
        rb = rows.bit_length() - 1
        if not isinstance(ref_bits, int) or not rb < ref_bits <= 64:
            raise ValueError(f"ref_bits must be in {rb + 1}..64, not {ref_bits!r}")
        if not isinstance(handle_bits, int) or handle_bits < 1:
            raise ValueError(f"handle_bits must be a positive integer, not {handle_bits!r}")
        self.rows, self.ways, self.ref_bits, self.handle_bits = rows, ways, ref_bits, handle_bits
        self.late_handle = bool(late_handle)
        self.row_bits = rb
        self.tag_bits = ref_bits - rb
        self.entry_layout = data.StructLayout({"tag": self.tag_bits, "shares": 32,
                                               "handle": handle_bits})
        self.entry_bits = self.entry_layout.size
        late = {"handle_late": In(handle_bits), "s4_valid": Out(1), "s4_ref": Out(64),
                "s4_advance": Out(1)} if self.late_handle else {}
        super().__init__({
            **late,
            "i": In(stream.Signature(request_layout(handle_bits))),
            "o": Out(stream.Signature(result_layout(handle_bits))),
            "live": Out(range(rows * ways + 1)),
            "table_full": Out(32),
            "ref_range": Out(32),
            "clearing": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        nw, rb = self.ways, self.row_bits
        ent_t = self.entry_layout
        row_t = data.ArrayLayout(ent_t, nw)
        res_t = result_layout(self.handle_bits)
        req_t = request_layout(self.handle_bits)

        m.submodules.mem = mem = Memory(shape=row_t, depth=self.rows, init=[])
        rd = mem.read_port()
        wr = mem.write_port()

        def reg(shape, name, init=None):
            return Signal(shape, name=name) if init is None else Signal(shape, name=name,
                                                                          init=init)

        # ------------------------------------------------------------ handshake
        clearing = reg(1, "clearing_r", init=1)
        clr = reg(rb, "clr_row")
        sk_valid = reg(1, "skid_valid")
        adv = Signal()
        m.d.comb += [adv.eq(~sk_valid), self.i.ready.eq(adv & ~clearing),
                     self.clearing.eq(clearing), rd.en.eq(adv)]
        with m.If(clearing):
            m.d.sync += clr.eq(clr + 1)
            with m.If(clr == self.rows - 1):
                m.d.sync += clearing.eq(0)

        # ------------------------------------------------------------ pipeline registers
        names = range(5)
        v = [reg(1, f"s{k}_valid") for k in names]
        rq = [reg(req_t, f"s{k}_req") for k in names]
        row = [reg(rb, f"s{k}_row") for k in names]
        oor = [reg(1, f"s{k}_range") for k in names]      # reference out of range
        zero = [reg(1, f"s{k}_zero") for k in names]      # shares == 0
        tag = [reg(self.tag_bits, f"s{k}_tag") for k in names]
        # equality with the operation d ahead, d = 1..4 (row) and 1..2 (reference), as they
        # were when this operation was in stage 0
        frow = [{d: reg(1, f"s{k}_row_eq{d}") for d in range(1, 6)} for k in names]
        fref = [{d: reg(1, f"s{k}_ref_eq{d}") for d in (1, 2)} for k in names]
        rowd = {k: reg(row_t, f"s{k}_rowdata") for k in (2, 3, 4)}
        match3, live3 = reg(nw, "s3_match"), reg(nw, "s3_live")
        hit4, way4 = reg(1, "s4_hit"), reg(nw, "s4_way")          # way one-hot
        ent4 = reg(ent_t, "s4_entry")
        live4 = reg(nw, "s4_live")
        # write-back: the rows written by the two operations that left stage 4 last
        wb_row, wb_live = reg(row_t, "wb_row"), reg(nw, "wb_live")
        wb2_row, wb2_live = reg(row_t, "wb2_row"), reg(nw, "wb2_live")
        # the memory write of the operation that left stage 4 last, one cycle later
        wb_addr, wb_v, wb_we = reg(rb, "wb_addr"), reg(1, "wb_valid"), reg(1, "wb_we")
        # the result (hit, entry, way) of the operation that left stage 4 last
        wb_hit, wb_ent, wb_way = reg(1, "wb_hit"), reg(ent_t, "wb_entry"), reg(nw, "wb_way")

        # ------------------------------------------------------------ stage 0
        in_row, in_tag = _fold(self.i.payload.ref, self.ref_bits, rb)
        in_oor = self.i.payload.ref[self.ref_bits:].any() if self.ref_bits < 64 else Const(0)
        with m.If(adv):
            m.d.sync += [v[0].eq(self.i.valid & self.i.ready), rq[0].eq(self.i.payload),
                         row[0].eq(in_row), tag[0].eq(in_tag), oor[0].eq(in_oor),
                         zero[0].eq(~self.i.payload.shares.any())]
        m.d.comb += rd.addr.eq(row[0])
        # flags of stage 0 against stages 1..4 (the operations 1..4 ahead); an operation out
        # of range changes nothing, so nothing is forwarded from it
        live_ahead = [v[k] & ~oor[k] for k in names] + [wb_v]
        rows_ahead = row + [wb_addr]
        with m.If(adv):
            for d in range(1, 6):
                m.d.sync += frow[1][d].eq(live_ahead[d] & (rows_ahead[d] == row[0]))
            for d in (1, 2):
                m.d.sync += fref[1][d].eq(live_ahead[d] & (rq[d].ref == rq[0].ref))

        def shift(k):
            """Stage k-1 -> k registers that travel unchanged."""
            out = [v[k].eq(v[k - 1]), rq[k].eq(rq[k - 1]), row[k].eq(row[k - 1]),
                   oor[k].eq(oor[k - 1]), tag[k].eq(tag[k - 1]), zero[k].eq(zero[k - 1])]
            if k >= 2:
                out += [frow[k][d].eq(frow[k - 1][d]) for d in range(1, 6)]
                out += [fref[k][d].eq(fref[k - 1][d]) for d in (1, 2)]
            return out

        # ------------------------------------------------------------ stage 1
        with m.If(adv):
            m.d.sync += shift(1)
            m.d.sync += shift(2)
            m.d.sync += rowd[2].eq(Mux(frow[1][4], wb_row, Mux(frow[1][5], wb2_row, rd.data)))

        # ------------------------------------------------------------ stage 2
        rx = Signal(row_t)
        m.d.comb += rx.eq(Mux(frow[2][3], wb_row, rowd[2]))
        with m.If(adv):
            m.d.sync += shift(3)
            m.d.sync += rowd[3].eq(rx)
            for w in range(nw):
                lv = rx[w].shares.any()
                m.d.sync += [live3[w].eq(lv), match3[w].eq(lv & (rx[w].tag == tag[2]))]

        # ------------------------------------------------------------ stage 3
        def onehot_sel(row_v, oh):
            """The entry of ``row_v`` at the one-hot way ``oh`` (AND-OR, no priority)."""
            out = Const(0, self.entry_bits)
            for w in range(nw):
                out = out | Mux(oh[w], row_v[w].as_value(), 0)
            return out

        # the operation in stage 4 (its outcome is combinational there)
        s4_hit, s4_ent, s4_way = Signal(), Signal(ent_t), Signal(nw)
        with m.If(adv):
            m.d.sync += shift(4)
            # the row written by the operation two ahead (now in the write-back register)
            m.d.sync += [rowd[4].eq(Mux(frow[3][2], wb_row, rowd[3])),
                         live4.eq(Mux(frow[3][2], wb_live, live3))]
            with m.If(fref[3][1]):
                m.d.sync += [hit4.eq(s4_hit), ent4.eq(s4_ent), way4.eq(s4_way)]
            with m.Elif(fref[3][2]):
                m.d.sync += [hit4.eq(wb_hit), ent4.eq(wb_ent), way4.eq(wb_way)]
            with m.Else():
                m.d.sync += [hit4.eq(match3.any()), ent4.eq(onehot_sel(rowd[3], match3)),
                             way4.eq(match3)]

        # ------------------------------------------------------------ stage 4
        # every decision is a few LUTs of registers; only the shares left come from a carry
        r4 = rq[4]
        op = r4.op
        f_ins, f_find = (op == Op.INSERT) & ~oor[4], (op == Op.FIND) & ~oor[4]
        f_take = ((op == Op.TAKE) | (op == Op.DELETE)) & ~oor[4]
        base, base_live = Signal(row_t), Signal(nw)
        m.d.comb += [base.eq(Mux(frow[4][1], wb_row, rowd[4])),
                     base_live.eq(Mux(frow[4][1], wb_live, live4))]
        free = ~base_live
        ins_oh = Signal(nw)                 # the lowest free way, one-hot
        m.d.comb += ins_oh.eq(Cat(*[free[w] & ~free[:w].any() if w else free[0]
                                    for w in range(nw)]))
        ins_ok = f_ins & ~zero[4] & ~hit4 & free.any()
        take_ok = f_take & hit4
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
        m.d.comb += [ins_ent.tag.eq(tag[4]), ins_ent.shares.eq(r4.shares),
                     ins_ent.handle.eq(self.handle_late if self.late_handle else r4.handle),
                     take_ent.eq(ent4), take_ent.shares.eq(left)]
        wsel = Signal(nw)                   # the way written, one-hot (0: no write)
        m.d.comb += wsel.eq(Mux(f_ins, Mux(ins_ok, ins_oh, 0), Mux(take_ok, way4, 0)))
        write = wsel.any()
        new_row, new_live = Signal(row_t), Signal(nw)
        for w in range(nw):
            m.d.comb += [
                new_row[w].eq(Mux(wsel[w], Mux(f_ins, ins_ent, take_ent), base[w])),
                new_live[w].eq(Mux(wsel[w], f_ins | ~gone, base_live[w])),
            ]
        m.d.comb += [s4_hit.eq(Mux(ins_ok, 1, Mux(take_ok, ~gone, hit4))),
                     s4_ent.eq(Mux(ins_ok, ins_ent, Mux(take_ok, take_ent, ent4))),
                     s4_way.eq(Mux(ins_ok, ins_oh, way4))]
        status = Signal(Status)
        with m.If(oor[4]):
            m.d.comb += status.eq(Status.RANGE)
        with m.Elif(op == Op.INSERT):
            with m.If(zero[4]):
                m.d.comb += status.eq(Status.ZERO)
            with m.Elif(hit4):
                m.d.comb += status.eq(Status.DUPLICATE)
            with m.Elif(~free.any()):
                m.d.comb += status.eq(Status.FULL)
            with m.Else():
                m.d.comb += status.eq(Status.OK)
        with m.Elif(~hit4):
            m.d.comb += status.eq(Status.UNKNOWN)
        with m.Else():
            m.d.comb += status.eq(Status.OK)
        new_ent = Signal(ent_t)
        m.d.comb += new_ent.eq(s4_ent)
        go = adv & v[4]
        if self.late_handle:
            m.d.comb += [self.s4_valid.eq(v[4]), self.s4_ref.eq(r4.ref), self.s4_advance.eq(go)]
        with m.If(clearing):
            m.d.comb += [wr.addr.eq(clr), wr.data.eq(0), wr.en.eq(1)]
        with m.Else():
            m.d.comb += [wr.addr.eq(wb_addr), wr.data.eq(wb_row), wr.en.eq(wb_we)]
        m.d.sync += wb_we.eq(0)
        with m.If(adv):
            m.d.sync += [wb_addr.eq(row[4]), wb_v.eq(v[4] & ~oor[4]), wb_we.eq(go & write),
                         wb_row.eq(new_row), wb_live.eq(new_live),
                         wb2_row.eq(wb_row), wb2_live.eq(wb_live),
                         wb_hit.eq(s4_hit), wb_ent.eq(s4_ent), wb_way.eq(s4_way)]

        # ------------------------------------------------------------ result + counters
        res = Signal(res_t)
        is_take = (op == Op.TAKE) | (op == Op.DELETE)
        ok = status == Status.OK
        m.d.comb += [res.status.eq(status), res.op.eq(op), res.ref.eq(r4.ref),
                     res.taken.eq(Mux(ok & is_take, taken, 0)),
                     res.remaining.eq(Mux(ok, new_ent.shares, 0)),
                     res.handle.eq(Mux(ok, new_ent.handle, 0)),
                     res.over.eq(ok & over)]
        skid_output(m, self.o, res, go, sk_valid)

        # counters one cycle later, from registered events (off the stage-4 paths)
        c_full, c_range = reg(1, "c_full"), reg(1, "c_range")
        c_up, c_dn = reg(1, "c_live_up"), reg(1, "c_live_dn")
        m.d.sync += [c_full.eq(go & (status == Status.FULL)),
                     c_range.eq(go & (status == Status.RANGE)),
                     c_up.eq(go & ok & (op == Op.INSERT)),
                     c_dn.eq(go & ok & is_take & gone)]
        with m.If(c_full):
            m.d.sync += self.table_full.eq(self.table_full + 1)
        with m.If(c_range):
            m.d.sync += self.ref_range.eq(self.ref_range + 1)
        with m.If(c_up & ~c_dn):
            m.d.sync += self.live.eq(self.live + 1)
        with m.Elif(c_dn & ~c_up):
            m.d.sync += self.live.eq(self.live - 1)
        return m
