"""Best price levels of every symbol in block RAM: a sorted window per (symbol slot, side), one
level change a cycle.

The record side of the block-RAM order book (issue: order book in EBR at line rate). The book's
level store holds every level's aggregate (shares, orders); each change of one level is sent
here as ``(slot, side, price, shares, orders)`` with the level's new aggregate (``orders == 0``:
the level is gone). This unit keeps, per slot and side, the ``window`` best levels sorted best
first (highest bid, lowest ask; ``window`` >= the record depth ``depth``) and outputs, after
every change, the first ``depth`` levels of both sides: the tail of a
:func:`hftaccel.spec.book.book_record_dtype` record.

Levels beyond the window are the *bottom*, kept by the caller (ordered off the fast path); this
unit only counts them per (slot, side):

* a new level better than the window's worst, or any new level while the window has room and
  the bottom is empty, is inserted; when the window was full its worst level is evicted to the
  bottom (``evicted``, with its fields);
* a new level that does not qualify goes to the bottom (``to_bottom``);
* a level leaving the window leaves a hole at its end; while the bottom is not empty
  ``refill`` asks for the bottom's best level, which the caller sends as a change with
  ``refill`` set (inserted at its sorted place, the bottom count decremented);
* a change of a level in the bottom (not new, not in the window) only moves the bottom count
  when the level is gone.

So the first ``depth`` levels are exact (equal to the golden book's) as long as the window
holds at least ``depth`` levels or the bottom is empty: ``window - depth`` levels may leave a
side before a refill must have arrived. ``short`` flags a record where this does not hold.

Pipeline (a change accepted at cycle 0; every stage advances together, stalled only by the
output): 0. the row of the slot (both sides) is read; slot equality with the four changes
ahead. 1. the row arrives; the rows written by the changes three and four ahead replace it.
2. the rows of the changes one ahead (combinational from stage 3) and two ahead replace it;
one compare per window entry (equal, strictly better), registered. 3. the new side: one 4:1
mux per entry (keep, from the neighbour above or below, the new level) selected by the
registered compare masks; the row goes to the write-back register and the memory one cycle
later; the output record is registered. Latency :attr:`latency` cycles, initiation interval 1,
back-to-back changes of one slot included. After reset the memory is cleared, one row a cycle.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .stream import skid_output

__all__ = ["change_layout", "levels_layout", "TopLevels"]


def change_layout(slot_bits: int, orders_bits: int = 16, ctx_bits: int = 0,
                  checked: bool = False) -> data.StructLayout:
    """A level change: ``slot`` (symbol slot), ``side`` (0 bid, 1 ask), ``price`` (1/10,000 USD,
    ITCH Price(4)), ``shares`` (the level's aggregate, saturated at 2**32 - 1), ``orders`` (the
    level's order count; 0: the level is gone), ``new`` (the level was just created),
    ``refill`` (the bottom's best level, sent after ``refill`` asked for it), ``nop`` (no
    change: only the slot's levels are output, e.g. for a record of an unchanged book), ``ctx``
    (``ctx_bits`` of the caller's, passed to the output); with ``checked``, ``start`` (a refill:
    the window's worst price the caller searched beyond)."""
    return data.StructLayout({"slot": slot_bits, "side": 1, "price": 32, "shares": 32,
                              "orders": orders_bits, "new": 1, "refill": 1, "nop": 1,
                              **({"start": 32} if checked else {}), "ctx": ctx_bits})


def levels_layout(slot_bits: int, depth: int, orders_bits: int = 16,
                  ctx_bits: int = 0, checked: bool = False) -> data.StructLayout:
    """Output after each change: ``slot``; the first ``depth`` levels of each side
    (``bid_price`` ... ``ask_orders``, arrays of ``depth``, zero beyond the last level);
    ``evicted`` / ``to_bottom`` (a level went to the bottom: the window's former worst, or the
    new level itself) with ``bottom_price``, ``bottom_shares``, ``bottom_orders``; ``refill``
    (the side lost a window level while its bottom is not empty); ``short`` (the side holds
    fewer than ``depth`` levels while its bottom is not empty: the record is not exact), ``ctx``
    of the change; with ``checked``: ``need`` (the changed side's window is not full and its
    bottom is not empty), ``worst`` (the price of its worst level, 0 when it has none) and
    ``stale`` (a refill whose ``start`` was no longer the window's worst price: ignored)."""
    arr = lambda w: data.ArrayLayout(w, depth)  # noqa: E731
    return data.StructLayout({
        "slot": slot_bits, "side": 1,
        "bid_price": arr(32), "bid_shares": arr(32), "bid_orders": arr(orders_bits),
        "ask_price": arr(32), "ask_shares": arr(32), "ask_orders": arr(orders_bits),
        "evicted": 1, "to_bottom": 1, "bottom_price": 32, "bottom_shares": 32,
        "bottom_orders": orders_bits, "refill": 1, "short": 1,
        **({"need": 1, "worst": 32, "stale": 1} if checked else {}), "ctx": ctx_bits})


class TopLevels(wiring.Component):
    """Sorted best-level windows of ``slots`` symbols in block RAM, one change a cycle.

    Parameters
    ----------
    slots : int
        Symbol slots (power of two) [256].
    depth : int
        Levels per side in the output (the record depth) [8].
    window : int
        Levels kept per side, ``>= depth`` [12].
    orders_bits : int
        Width of a level's order count [16].
    bottom_bits : int
        Width of the per-side count of levels beyond the window [14].
    ctx_bits : int
        Width of the caller's context passed from change to output [0].
    checked : bool
        Refills are checked: a refill is applied only when its ``start`` is still the
        window's worst price (every level beyond it is in the bottom), so a caller that
        searched the level table beyond ``start`` at the point of the change stream where the
        refill enters gives the bottom's best level (and a refill into a full window is
        ignored); outputs carry ``need`` / ``worst`` / ``stale`` [False].

    Attributes
    ----------
    i : In(stream.Signature(change_layout(...)))
        Level changes; ready every cycle once cleared, unless ``o`` back-pressures.
    o : Out(stream.Signature(levels_layout(...)))
        One output per change, in order, :attr:`latency` cycles after acceptance.
    clearing : Out(1)
        High while the memory is cleared after reset.

    Raises
    ------
    ValueError
        ``slots`` not a power of two, ``depth`` < 1, ``window`` < ``depth``.
    """

    latency = 5
    ii = 1

    def __init__(self, *, slots: int = 256, depth: int = 8, window: int = 12,
                 orders_bits: int = 16, bottom_bits: int = 14, ctx_bits: int = 0,
                 checked: bool = False):
        if not isinstance(slots, int) or slots < 2 or slots & (slots - 1):
            raise ValueError(f"slots must be a power of two >= 2, not {slots!r}")
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be a positive integer, not {depth!r}")
        if not isinstance(window, int) or window < depth:
            raise ValueError(f"window must be an integer >= depth ({depth}), not {window!r}")
        self.slots, self.depth, self.window = slots, depth, window
        self.orders_bits, self.bottom_bits, self.ctx_bits = orders_bits, bottom_bits, ctx_bits
        self.checked = bool(checked)
        self.slot_bits = slots.bit_length() - 1
        self.entry_layout = data.StructLayout({"price": 32, "shares": 32, "orders": orders_bits})
        self.side_layout = data.StructLayout({
            "lv": data.ArrayLayout(self.entry_layout, window), "bottom": bottom_bits})
        self.row_layout = data.ArrayLayout(self.side_layout, 2)
        super().__init__({
            "i": In(stream.Signature(change_layout(self.slot_bits, orders_bits, ctx_bits,
                                                   self.checked))),
            "o": Out(stream.Signature(levels_layout(self.slot_bits, depth, orders_bits,
                                                    ctx_bits, self.checked))),
            "clearing": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        nw, sb = self.window, self.slot_bits
        row_t, side_t, ent_t = self.row_layout, self.side_layout, self.entry_layout
        chg_t = change_layout(sb, self.orders_bits, self.ctx_bits, self.checked)
        out_t = levels_layout(sb, self.depth, self.orders_bits, self.ctx_bits, self.checked)

        m.submodules.mem = mem = Memory(shape=row_t, depth=self.slots, init=[])
        rd = mem.read_port()
        wr = mem.write_port()

        def reg(shape, name):
            return Signal(shape, name=name)

        # ------------------------------------------------------------ handshake
        clearing = Signal(init=1, name="clearing_r")
        clr = reg(sb, "clr_row")
        sk_valid = reg(1, "skid_valid")
        adv = Signal()
        m.d.comb += [adv.eq(~sk_valid), self.i.ready.eq(adv & ~clearing),
                     self.clearing.eq(clearing), rd.en.eq(adv)]
        with m.If(clearing):
            m.d.sync += clr.eq(clr + 1)
            with m.If(clr == self.slots - 1):
                m.d.sync += clearing.eq(0)

        # ------------------------------------------------------------ registers
        names = range(4)
        v = [reg(1, f"s{k}_valid") for k in names]
        c = [reg(chg_t, f"s{k}_chg") for k in names]
        f = [{d: reg(1, f"s{k}_slot_eq{d}") for d in range(1, 5)} for k in names]
        rowd = {k: reg(row_t, f"s{k}_row") for k in (2, 3)}
        wb_row, wb2_row = reg(row_t, "wb_row"), reg(row_t, "wb2_row")
        wb_slot, wb_v, wb_we = reg(sb, "wb_slot"), reg(1, "wb_valid"), reg(1, "wb_we")

        # ------------------------------------------------------------ stage 0
        with m.If(adv):
            m.d.sync += [v[0].eq(self.i.valid & self.i.ready), c[0].eq(self.i.payload)]
        m.d.comb += rd.addr.eq(c[0].slot)
        slots_ahead = [c[k].slot for k in names] + [wb_slot]
        valid_ahead = v + [wb_v]

        def shift(k):
            out = [v[k].eq(v[k - 1]), c[k].eq(c[k - 1])]
            if k >= 2:
                out += [f[k][d].eq(f[k - 1][d]) for d in range(1, 5)]
            return out

        with m.If(adv):
            for d in range(1, 5):
                m.d.sync += f[1][d].eq(valid_ahead[d] & (slots_ahead[d] == c[0].slot))
            m.d.sync += shift(1)

        # ------------------------------------------------------------ stage 1
        with m.If(adv):
            m.d.sync += shift(2)
            m.d.sync += rowd[2].eq(Mux(f[1][3], wb_row, Mux(f[1][4], wb2_row, rd.data)))

        # ------------------------------------------------------------ stage 2
        new_row = Signal(row_t)                 # stage 3's result (combinational)
        rx = Signal(row_t)
        m.d.comb += rx.eq(Mux(f[2][1], new_row, Mux(f[2][2], wb_row, rowd[2])))
        ch2 = c[2]
        sx = Signal(side_t)
        m.d.comb += sx.eq(Mux(ch2.side, rx[1], rx[0]))
        eq3, bt3, vl3 = reg(nw, "s3_equal"), reg(nw, "s3_better"), reg(nw, "s3_live")
        st3 = reg(nw, "s3_start")           # checked: entry k is live at the refill's start
        with m.If(adv):
            m.d.sync += shift(3)
            m.d.sync += rowd[3].eq(rx)
            for k in range(nw):
                e = sx.lv[k]
                live = e.orders.any()
                better = Mux(ch2.side, e.price < ch2.price, e.price > ch2.price)
                m.d.sync += [eq3[k].eq(live & (e.price == ch2.price)),
                             bt3[k].eq(live & better), vl3[k].eq(live)]
                if self.checked:
                    m.d.sync += st3[k].eq(live & (e.price == ch2.start))

        # ------------------------------------------------------------ stage 3
        ch = c[3]
        cur = Signal(side_t)
        m.d.comb += cur.eq(Mux(ch.side, rowd[3][1], rowd[3][0]))
        stale = Const(0)
        if self.checked:
            # the start is the worst live entry (entries are live from the first on), or the
            # window is empty
            last = Cat(*[vl3[k] & ~(vl3[k + 1] if k + 1 < nw else Const(0))
                         for k in range(nw)])
            # a refill into a full window would evict its worst level and drop itself
            stale = ch.refill & ~ch.nop & ((vl3.any() & ~(st3 & last).any()) | vl3[nw - 1])
        act = ~ch.nop & ~stale
        present = eq3.any() & act
        full = vl3[nw - 1]
        gone = ~ch.orders.any()
        bottom_nz = cur.bottom.any()
        upd = present & ~gone                   # in-place update of entry q
        rem = present & gone                    # entry q leaves, the rest moves up
        new_lv = act & ~present & ~gone & (ch.new | ch.refill)
        # the new level belongs inside the window: some live entry is not better than it
        inside = (vl3 & ~bt3).any()
        # inserted at the first entry not better than it: a refill (the bottom's best, to the
        # end), a level inside the window (the worst is evicted when full), or any level while
        # the window has room and the bottom is empty
        ins = new_lv & (ch.refill | inside | (~full & ~bottom_nz))
        ent_new = Signal(ent_t)
        m.d.comb += [ent_new.price.eq(ch.price), ent_new.shares.eq(ch.shares),
                     ent_new.orders.eq(ch.orders)]
        side_new = Signal(side_t)
        for k in range(nw):
            above = cur.lv[k - 1] if k else ent_new          # entry k - 1 (unused at k = 0)
            below = cur.lv[k + 1] if k + 1 < nw else Const(0, ent_t.size)
            at_pos = ~bt3[k] & (bt3[k - 1] if k else Const(1))     # first entry not better
            sel_new = (upd & eq3[k]) | (ins & at_pos)
            sel_below = rem & ~bt3[k]           # from entry q on, entries move up
            sel_above = ins & ~bt3[k] & ~at_pos if k else Const(0)
            m.d.comb += side_new.lv[k].eq(
                Mux(sel_new, ent_new, Mux(sel_below, below, Mux(sel_above, above, cur.lv[k]))))
        to_bottom = new_lv & ~ins
        evicted = ins & full
        refill_q = rem & bottom_nz
        # bottom count: +1 when a level goes there, -1 when a refill takes one or a bottom
        # level is gone
        b_up = to_bottom | evicted
        b_dn = act & (ch.refill | (~present & gone & ~ch.new))
        m.d.comb += side_new.bottom.eq(Mux(b_up & ~b_dn, cur.bottom + 1,
                                           Mux(b_dn & ~b_up, cur.bottom - 1, cur.bottom)))
        m.d.comb += new_row.eq(rowd[3])
        with m.If(ch.side):
            m.d.comb += new_row[1].eq(side_new)
        with m.Else():
            m.d.comb += new_row[0].eq(side_new)

        go = adv & v[3]
        with m.If(clearing):
            m.d.comb += [wr.addr.eq(clr), wr.data.eq(0), wr.en.eq(1)]
        with m.Else():
            m.d.comb += [wr.addr.eq(wb_slot), wr.data.eq(wb_row), wr.en.eq(wb_we)]
        m.d.sync += wb_we.eq(0)
        with m.If(adv):
            m.d.sync += [wb_slot.eq(ch.slot), wb_v.eq(v[3]), wb_we.eq(go), wb_row.eq(new_row),
                         wb2_row.eq(wb_row)]

        # ------------------------------------------------------------ output
        res = Signal(out_t)
        worst = cur.lv[nw - 1]
        m.d.comb += [res.slot.eq(ch.slot), res.side.eq(ch.side),
                     res.evicted.eq(evicted), res.to_bottom.eq(to_bottom),
                     res.bottom_price.eq(Mux(evicted, worst.price, Mux(to_bottom, ch.price, 0))),
                     res.bottom_shares.eq(Mux(evicted, worst.shares,
                                              Mux(to_bottom, ch.shares, 0))),
                     res.bottom_orders.eq(Mux(evicted, worst.orders,
                                              Mux(to_bottom, ch.orders, 0))),
                     res.refill.eq(refill_q), res.ctx.eq(ch.ctx)]
        if self.checked:
            sd = Signal(side_t, name="out_side")
            m.d.comb += sd.eq(Mux(ch.side, new_row[1], new_row[0]))
            lv_new = Cat(*[sd.lv[k].orders.any() for k in range(nw)])
            worst = Const(0, 32)
            for k in range(nw):
                is_last = lv_new[k] & ~(lv_new[k + 1] if k + 1 < nw else Const(0))
                worst = worst | Mux(is_last, sd.lv[k].price, 0)
            m.d.comb += [res.need.eq(~lv_new[nw - 1] & sd.bottom.any()), res.worst.eq(worst),
                         res.stale.eq(stale)]
        short = Const(0)
        for s, name in ((0, "bid"), (1, "ask")):
            sd = new_row[s]
            for k in range(self.depth):
                e = sd.lv[k]
                m.d.comb += [res[f"{name}_price"][k].eq(e.price),
                             res[f"{name}_shares"][k].eq(e.shares),
                             res[f"{name}_orders"][k].eq(e.orders)]
            short = short | (~sd.lv[self.depth - 1].orders.any() & sd.bottom.any())
        m.d.comb += res.short.eq(short)
        skid_output(m, self.o, res, go, sk_valid)
        return m
