"""Order book: order table in block RAM, sorted price levels per subscribed symbol, top-N records.

Source: NASDAQ TotalView-ITCH 5.0 sections 4.3 (A/F), 4.4 (E C X D U) and 4.5.1 (P). The
semantics -- which events are rejected and in which order the checks run, what every record
holds -- are those of the golden book (:mod:`hftaccel.golden.book`); the record layout is
:func:`hftaccel.spec.book.book_record_dtype`.

Structures
----------
* **Order table**: one block RAM of ``order_slots // max_probe`` rows of ``max_probe`` ways
  (bounded probing as a set-associative bucket: the row is found by :func:`order_row`, a fold of
  the order reference number, and all its ways are read and compared in one cycle). A way holds
  the reference, remaining shares, price, side and symbol index of one live order. A delete
  clears the way; no tombstones. An add whose row has no free way is refused and counted
  (``table_full``).
* **Symbols**: ``n_symbols`` entries (stock locate, enable) written through the ``sym_*`` port;
  an event whose locate is not enabled (and, for E C X D U, whose order is not on this book) is
  dropped and counted (``unsubscribed``).
* **Price levels**: per (symbol, side) a sorted array of ``levels`` entries (price, aggregate
  shares, order count) in registers, best first, empty entries all zero; an insert or delete
  shifts the array in one cycle, so the top N of a record are its first N entries. A new level
  on a full array is refused and counted (``level_full``).

Timing: one event at a time. From the clock edge that accepts an event to the first cycle its
record is valid on ``o``: 3 cycles for A/F/E/C/X/D (row read, level update, record), 5 for U
(second row read, level take, level add), 2 for P; rejected events give no record. The next
event is accepted in the cycle the record is loaded, so without back-pressure the initiation
interval is 3 cycles for A/F/E/C/X/D, 5 for U, 2 for P and for rejected events. After reset the
table is cleared, one row a cycle, before ``i`` is ready.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hftaccel.spec import book as spec
from hftaccel.spec.itch import SIDE_BUY, SIDE_SELL

from .itch import DECODED_LAYOUT

__all__ = ["record_layout", "order_row", "COUNTERS", "OrderBook"]

#: Counters (one ``Out(32)`` port each): the golden book's bad-reference kinds (``bad_<kind>``),
#: then the capacity and filter counts this book adds.
COUNTERS = tuple(f"bad_{k}" for k in spec.BAD_REFERENCE_KINDS) + (
    "table_full", "level_full", "unsubscribed", "other", "updates")

_SHARES_BITS = 48       # aggregate level shares (saturated to 32 bits in records)
_U4_MAX = 0xFFFF_FFFF


def record_layout(depth: int = spec.BOOK_DEPTH) -> data.StructLayout:
    """Book record: the fields of :func:`hftaccel.spec.book.book_record_dtype` (``depth``
    levels per side, same names and widths, without the padding)."""
    dt = spec.book_record_dtype(depth)
    members = {}
    for name in dt.names:
        if name.startswith("_"):
            continue
        sub = dt.fields[name][0]
        if sub.shape:
            members[name] = data.ArrayLayout(unsigned(8 * sub.base.itemsize), sub.shape[0])
        else:
            members[name] = unsigned(8 * sub.itemsize)
    return data.StructLayout(members)


def order_row(ref: int, rows: int) -> int:
    """Row of the order table holding reference ``ref`` (``rows`` a power of two): the XOR
    of the reference's ``log2(rows)``-bit pieces, so consecutive references fill consecutive
    rows. The gateware computes the same function."""
    bits = rows.bit_length() - 1
    h = 0
    for k in range(0, 64, max(bits, 1)):
        h ^= (ref >> k) & (rows - 1)
    return h if bits else 0


def _hash(ref, rows):
    bits = rows.bit_length() - 1
    if bits == 0:
        return Const(0, 1)
    h = ref[0:bits]
    for k in range(bits, 64, bits):
        piece = ref[k:k + bits]
        h = h ^ piece
    return h[:bits]


class OrderBook(wiring.Component):
    """Order-level book for a set of subscribed stock locates; one record per book message.

    Parameters
    ----------
    depth : int
        Levels per side in each record (N), at most ``levels``.
    order_slots : int
        Order table capacity, orders (a power of two, a multiple of ``max_probe``).
    max_probe : int
        Ways per order table row: the probe bound (a power of two).
    n_symbols : int
        Subscribed stock locate entries.
    levels : int
        Price levels kept per side per symbol.

    Attributes
    ----------
    i : In(stream.Signature(DECODED_LAYOUT))
        Decoded ITCH messages (:class:`hftaccel.rtl.itch.ItchParser` output); types other than
        A F E C X D U P are counted (``other``) and dropped.
    o : Out(stream.Signature(record_layout(depth)))
        One record per accepted book message and per P of a subscribed symbol.
    sym_we, sym_index, sym_locate, sym_enable : In
        Symbol table write port: on ``sym_we``, entry ``sym_index`` becomes (``sym_locate``,
        ``sym_enable``). Entries reset to disabled. Change it only while no order is live.
    <counter> : Out(32)
        One per :data:`COUNTERS`: ``bad_<kind>`` as the golden book counts them,
        ``table_full`` (add refused: no free way), ``level_full`` (add refused: level array
        full), ``unsubscribed`` (event for a locate not subscribed), ``other`` (non-book
        message types), ``updates`` (records delivered).

    Notes
    -----
    Records equal the golden book's (:class:`hftaccel.golden.book.Book` at this depth, fed the
    events of the subscribed locates) as long as no capacity counter moves. A refused A/F
    (``table_full``/``level_full``) leaves the book unchanged and gives no record; a U whose
    new reference finds its row full is refused before anything changes (original kept); a U
    whose new price needs a level on a full side has already taken the original off: the
    original is gone, no record. Later messages for a refused order count as
    ``bad_unknown_order``. An E C X D U whose reference is not on the book counts
    ``bad_unknown_order`` when its header locate is subscribed, else ``unsubscribed``.
    Aggregate level shares are kept in 48 bits and saturate at 2**32 - 1 in records.
    """

    def __init__(self, *, depth: int = spec.BOOK_DEPTH, order_slots: int = 1024,
                 max_probe: int = 8, n_symbols: int = 4, levels: int = 16):
        def pow2(name, v):
            if not isinstance(v, int) or v < 1 or v & (v - 1):
                raise ValueError(f"{name} must be a positive power of two, not {v!r}")
        pow2("order_slots", order_slots)
        pow2("max_probe", max_probe)
        if order_slots < max_probe:
            raise ValueError(f"order_slots ({order_slots!r}) must be at least max_probe "
                             f"({max_probe!r})")
        if not isinstance(n_symbols, int) or n_symbols < 1:
            raise ValueError(f"n_symbols must be a positive integer, not {n_symbols!r}")
        if not isinstance(levels, int) or levels < 1:
            raise ValueError(f"levels must be a positive integer, not {levels!r}")
        if not isinstance(depth, int) or not 1 <= depth <= levels:
            raise ValueError(f"depth must be an integer in 1..levels ({levels}), not {depth!r}")
        self.depth, self.order_slots, self.max_probe = depth, order_slots, max_probe
        self.n_symbols, self.levels = n_symbols, levels
        self.rows = order_slots // max_probe
        self.record_layout = record_layout(depth)
        members = {
            "i": In(stream.Signature(DECODED_LAYOUT)),
            "o": Out(stream.Signature(self.record_layout)),
            "sym_we": In(1),
            "sym_index": In(range(n_symbols)) if n_symbols > 1 else In(1),
            "sym_locate": In(16),
            "sym_enable": In(1),
        }
        for c in COUNTERS:
            members[c] = Out(32)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        ns, nl, nw, depth = self.n_symbols, self.levels, self.max_probe, self.depth
        sym_bits = max(1, (ns - 1).bit_length())
        entry = data.StructLayout({"valid": 1, "ref": 64, "shares": 32, "price": 32,
                                   "side": 1, "sym": sym_bits})
        row_layout = data.ArrayLayout(entry, nw)
        level = data.StructLayout({"price": 32, "shares": _SHARES_BITS, "orders": 32})
        lv_layout = data.ArrayLayout(level, nl)
        ev_t = DECODED_LAYOUT

        # ---- symbol table
        sym_loc = [Signal(16, name=f"sym{s}_locate") for s in range(ns)]
        sym_en = [Signal(name=f"sym{s}_enable") for s in range(ns)]
        with m.If(self.sym_we):
            for s in range(ns):
                with m.If(self.sym_index == s):
                    m.d.sync += [sym_loc[s].eq(self.sym_locate), sym_en[s].eq(self.sym_enable)]

        # ---- counters
        cnt = {c: getattr(self, c) for c in COUNTERS}

        def count(name):
            return cnt[name].eq(cnt[name] + 1)

        # ---- order table
        m.submodules.table = table = Memory(shape=row_layout, depth=self.rows, init=[])
        rd = table.read_port()
        wr = table.write_port()
        m.d.comb += rd.en.eq(1)

        # ---- price levels: arrays[2 * sym + side]
        arrays = [Signal(lv_layout, name=f"lv{a // 2}_{'ba'[a % 2]}") for a in range(2 * ns)]
        counts = [Signal(range(nl + 1), name=f"lv{a // 2}_{'ba'[a % 2]}_n")
                  for a in range(2 * ns)]

        # ---- event registers
        ev = Signal(ev_t)
        hit = Signal()                      # header locate subscribed
        hsym = Signal(sym_bits)             # its symbol index
        row_a = Signal(row_layout)          # row of order_ref
        addr_a = Signal(range(self.rows))
        way_a = Signal(range(nw))
        ent = Signal(entry)                 # the order acted on
        row_b = Signal(row_layout)          # row to insert into (A/F/U)
        addr_b = Signal(range(self.rows))
        is_u = Signal()
        # level operation
        l_sel = Signal(range(2 * ns))
        l_price = Signal(32)
        l_shares = Signal(32)
        l_add = Signal()                    # 1: add an order; 0: take shares
        l_remove = Signal()                 # take: the order leaves the level
        # record header
        r_ref = Signal(64)
        r_shares = Signal(32)
        r_price = Signal(32)
        r_locate = Signal(16)
        r_side = Signal(8)
        r_sym = Signal(sym_bits)

        t = ev.msg_type
        is_af = (t == ord("A")) | (t == ord("F"))
        is_ecxd = (t == ord("E")) | (t == ord("C")) | (t == ord("X")) | (t == ord("D"))

        def row_search(row, ref):
            """(found, way, free, free_way) of ``ref`` in a row value."""
            found = Signal()
            way = Signal(range(nw))
            free = Signal()
            free_way = Signal(range(nw))
            for w in reversed(range(nw)):
                with m.If(row[w].valid & (row[w].ref == ref)):
                    m.d.comb += [found.eq(1), way.eq(w)]
                with m.If(~row[w].valid):
                    m.d.comb += [free.eq(1), free_way.eq(w)]
            return found, way, free, free_way

        def with_entry(row, w, value):
            """Row ``row`` with way ``w`` replaced by ``value``."""
            new = Signal(row_layout)
            m.d.comb += new.eq(row)
            for k in range(nw):
                with m.If(w == k):
                    m.d.comb += new[k].eq(value)
            return new

        def sym_locate(idx):
            v = Signal(16)
            for s in range(ns):
                with m.If(idx == s):
                    m.d.comb += v.eq(sym_loc[s])
            return v

        side_ascii = lambda bit: Mux(bit, SIDE_SELL, SIDE_BUY)

        # header locate lookup on the input
        in_hit = Signal()
        in_sym = Signal(sym_bits)
        for s in reversed(range(ns)):
            with m.If(sym_en[s] & (sym_loc[s] == self.i.payload.stock_locate)):
                m.d.comb += [in_hit.eq(1), in_sym.eq(s)]

        # ---- level update (combinational from the selected array)
        cur = Signal(lv_layout)
        cur_n = Signal(range(nl + 1))
        for a in range(2 * ns):
            with m.If(l_sel == a):
                m.d.comb += [cur.eq(arrays[a]), cur_n.eq(counts[a])]
        ask = l_sel[0]
        match = Signal(nl)
        better = Signal(nl)
        for k in range(nl):
            valid = k < cur_n
            p = cur[k].price
            m.d.comb += [
                match[k].eq(valid & (p == l_price)),
                better[k].eq(valid & Mux(ask, p < l_price, p > l_price)),
            ]
        level_full = Signal()
        new = Signal(lv_layout)
        new_n = Signal(range(nl + 1))
        m.d.comb += [new.eq(cur), new_n.eq(cur_n)]
        with m.If(l_add):
            with m.If(match.any()):
                for k in range(nl):
                    with m.If(match[k]):
                        m.d.comb += [new[k].shares.eq(cur[k].shares + l_shares),
                                     new[k].orders.eq(cur[k].orders + 1)]
            with m.Elif(cur_n == nl):
                m.d.comb += level_full.eq(1)
            with m.Else():
                m.d.comb += new_n.eq(cur_n + 1)
                for k in range(nl):
                    prev_better = better[k - 1] if k else Const(1)
                    with m.If(~better[k] & prev_better):      # the insertion point
                        m.d.comb += [new[k].price.eq(l_price), new[k].shares.eq(l_shares),
                                     new[k].orders.eq(1)]
                    with m.Elif(~better[k]):                   # after it: shift down
                        m.d.comb += new[k].eq(cur[k - 1])
        with m.Else():
            gone = Signal()
            for k in range(nl):
                with m.If(match[k]):
                    m.d.comb += [new[k].shares.eq(cur[k].shares - l_shares),
                                 new[k].orders.eq(cur[k].orders - l_remove),
                                 gone.eq(l_remove & (cur[k].orders == 1))]
            with m.If(gone):
                m.d.comb += new_n.eq(cur_n - 1)
                for k in range(nl):
                    at_or_after = match[:k + 1].any()
                    with m.If(at_or_after):
                        m.d.comb += new[k].eq(cur[k + 1] if k + 1 < nl else 0)

        # ---- record assembly from the levels of r_sym
        rec = Signal(self.record_layout)
        bid = Signal(lv_layout)
        askv = Signal(lv_layout)
        for s in range(ns):
            with m.If(r_sym == s):
                m.d.comb += [bid.eq(arrays[2 * s]), askv.eq(arrays[2 * s + 1])]
        m.d.comb += [rec.timestamp.eq(ev.timestamp), rec.seq.eq(ev.seq), rec.order_ref.eq(r_ref),
                     rec.shares.eq(r_shares), rec.price.eq(r_price),
                     rec.stock_locate.eq(r_locate), rec.msg_type.eq(ev.msg_type),
                     rec.side.eq(r_side)]
        for k in range(depth):
            for side, arr in (("bid", bid), ("ask", askv)):
                sh = arr[k].shares
                m.d.comb += [
                    rec[f"{side}_price"][k].eq(arr[k].price),
                    rec[f"{side}_shares"][k].eq(Mux(sh[32:].any(), _U4_MAX, sh[:32])),
                    rec[f"{side}_orders"][k].eq(arr[k].orders),
                ]

        # ---- output register
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        # ---- control
        clr = Signal(range(self.rows + 1))
        m.d.comb += rd.addr.eq(Mux(self.i.valid & self.i.ready,
                                   _hash(self.i.payload.order_ref, self.rows),
                                   _hash(ev.new_order_ref, self.rows)))

        with m.FSM(init="CLEAR"):
            with m.State("CLEAR"):
                m.d.comb += [wr.addr.eq(clr), wr.data.eq(0), wr.en.eq(1)]
                m.d.sync += clr.eq(clr + 1)
                with m.If(clr == self.rows - 1):
                    m.next = "IDLE"

            def accept():
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [ev.eq(self.i.payload), hit.eq(in_hit), hsym.eq(in_sym),
                                 addr_a.eq(_hash(self.i.payload.order_ref, self.rows))]
                    m.next = "LOOK"

            with m.State("IDLE"):
                accept()

            with m.State("LOOK"):
                found, way, free, free_way = row_search(rd.data, ev.order_ref)
                hent = rd.data[way]
                m.d.sync += [row_a.eq(rd.data), way_a.eq(way), ent.eq(hent),
                             r_ref.eq(Mux(t == ord("P"), 0, ev.order_ref)),
                             r_shares.eq(ev.shares),
                             r_price.eq(ev.price), r_locate.eq(ev.stock_locate),
                             r_side.eq(ev.side), r_sym.eq(hsym), is_u.eq(0)]
                # rejections go straight back to IDLE
                m.next = "IDLE"
                with m.If(is_af):
                    new_ent = Signal(entry)
                    m.d.comb += [new_ent.valid.eq(1), new_ent.ref.eq(ev.order_ref),
                                 new_ent.shares.eq(ev.shares), new_ent.price.eq(ev.price),
                                 new_ent.side.eq(ev.side == SIDE_SELL), new_ent.sym.eq(hsym)]
                    with m.If(~hit):
                        m.d.sync += count("unsubscribed")
                    with m.Elif((ev.side != SIDE_BUY) & (ev.side != SIDE_SELL)):
                        m.d.sync += count("bad_bad_side")
                    with m.Elif(ev.shares == 0):
                        m.d.sync += count("bad_zero_shares")
                    with m.Elif(found):
                        m.d.sync += count("bad_duplicate_order")
                    with m.Elif(~free):
                        m.d.sync += count("table_full")
                    with m.Else():
                        m.d.sync += [row_b.eq(with_entry(rd.data, free_way, new_ent)),
                                     addr_b.eq(addr_a),
                                     l_sel.eq(Cat(ev.side == SIDE_SELL, hsym)),
                                     l_price.eq(ev.price), l_shares.eq(ev.shares),
                                     l_add.eq(1)]
                        m.next = "LEVEL"
                with m.Elif(is_ecxd | (t == ord("U"))):
                    with m.If(~found):
                        with m.If(hit):
                            m.d.sync += count("bad_unknown_order")
                        with m.Else():
                            m.d.sync += count("unsubscribed")
                    with m.Elif(is_ecxd):
                        rem = hent.shares
                        x = Signal(32)
                        m.d.comb += x.eq(Mux(t == ord("D"), rem,
                                             Mux(ev.shares > rem, rem, ev.shares)))
                        with m.If((t != ord("D")) & (ev.shares > rem)):
                            m.d.sync += count("bad_over_execution")
                        upd = Signal(entry)
                        m.d.comb += [upd.eq(hent), upd.shares.eq(rem - x),
                                     upd.valid.eq(x != rem)]
                        m.d.comb += [wr.addr.eq(addr_a),
                                     wr.data.eq(with_entry(rd.data, way, upd)), wr.en.eq(1)]
                        m.d.sync += [l_sel.eq(Cat(hent.side, hent.sym)), l_price.eq(hent.price),
                                     l_shares.eq(x), l_add.eq(0), l_remove.eq(x == rem),
                                     r_shares.eq(x),
                                     r_price.eq(Mux(t == ord("C"), ev.price, hent.price)),
                                     r_locate.eq(sym_locate(hent.sym)),
                                     r_side.eq(side_ascii(hent.side)), r_sym.eq(hent.sym),
                                     row_b.eq(rd.data), addr_b.eq(addr_a)]
                        m.next = "LEVEL"
                    with m.Elif(ev.shares == 0):
                        m.d.sync += count("bad_zero_shares")
                    with m.Else():
                        m.next = "LOOK2"
                with m.Elif(t == ord("P")):
                    with m.If(hit):
                        m.next = "EMIT"
                    with m.Else():
                        m.d.sync += count("unsubscribed")
                with m.Else():
                    m.d.sync += count("other")

            with m.State("LOOK2"):          # U: rd.data is the row of new_order_ref
                addr_n = _hash(ev.new_order_ref, self.rows)
                same = addr_n == addr_a
                cleared_ent = Signal(entry)
                m.d.comb += [cleared_ent.eq(ent), cleared_ent.valid.eq(0)]
                row_a_clr = with_entry(row_a, way_a, cleared_ent)
                rowb = Signal(row_layout)
                m.d.comb += rowb.eq(Mux(same, row_a_clr, rd.data))
                dfound, _w, _f, _fw = row_search(rd.data, ev.new_order_ref)
                _f2, _w2, free, free_way = row_search(rowb, ev.new_order_ref)
                new_ent = Signal(entry)
                m.d.comb += [new_ent.valid.eq(1), new_ent.ref.eq(ev.new_order_ref),
                             new_ent.shares.eq(ev.shares), new_ent.price.eq(ev.price),
                             new_ent.side.eq(ent.side), new_ent.sym.eq(ent.sym)]
                m.next = "IDLE"
                with m.If(dfound & (ev.new_order_ref != ev.order_ref)):
                    m.d.sync += count("bad_duplicate_order")
                with m.Elif(~free):
                    m.d.sync += count("table_full")
                with m.Else():
                    m.d.comb += [wr.addr.eq(addr_a), wr.data.eq(row_a_clr), wr.en.eq(1)]
                    m.d.sync += [row_b.eq(with_entry(rowb, free_way, new_ent)),
                                 addr_b.eq(addr_n), is_u.eq(1),
                                 l_sel.eq(Cat(ent.side, ent.sym)), l_price.eq(ent.price),
                                 l_shares.eq(ent.shares), l_add.eq(0), l_remove.eq(1),
                                 r_ref.eq(ev.new_order_ref), r_shares.eq(ev.shares),
                                 r_price.eq(ev.price), r_locate.eq(sym_locate(ent.sym)),
                                 r_side.eq(side_ascii(ent.side)), r_sym.eq(ent.sym)]
                    m.next = "LEVEL"

            with m.State("LEVEL"):
                for a in range(2 * ns):
                    with m.If((l_sel == a) & ~level_full):
                        m.d.sync += [arrays[a].eq(new), counts[a].eq(new_n)]
                with m.If(l_add):
                    with m.If(level_full):
                        m.d.sync += count("level_full")
                        m.next = "IDLE"
                    with m.Else():
                        m.d.comb += [wr.addr.eq(addr_b), wr.data.eq(row_b), wr.en.eq(1)]
                        m.next = "EMIT"
                with m.Elif(is_u):           # U: the original is off, now add the new order
                    m.d.sync += [is_u.eq(0), l_add.eq(1), l_price.eq(ev.price),
                                 l_shares.eq(ev.shares)]
                with m.Else():
                    m.next = "EMIT"

            with m.State("EMIT"):
                with m.If(~self.o.valid | self.o.ready):
                    m.d.sync += [self.o.payload.eq(rec), self.o.valid.eq(1),
                                 count("updates")]
                    m.next = "IDLE"
                    accept()                # the next event overlaps the record's cycle

        return m
