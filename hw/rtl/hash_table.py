"""Set-associative hash table in block RAM with one read-modify-write a cycle: the pipeline the
EBR book's order table (:mod:`.order_table`) and price level table (:mod:`.level_table`) share.

Structure
---------
``rows`` rows of ``ways`` entries in one memory (Yosys maps it to DP16KD). An entry is
``tag | fields``: the key is ``key_bits`` wide, its row is the low ``log2(rows)`` bits XOR the
rest of the key folded to ``log2(rows)`` bits (:func:`fold_row`), and the tag is the rest of
the key, so (row, tag) gives the key back: a lookup never returns another key. An entry is
live while its ``live_field`` is not zero; a free way is one whose ``live_field`` is zero.

Pipeline (a request accepted at cycle 0; every stage advances together, stalled only by the
output):

0. row hash; the memory read is issued; the row and key of this request are compared with
   those of the five requests ahead (equality flags, registered).
1. the row arrives; the row written by the request four or five ahead (the two write-back
   registers) replaces it when the rows are equal.
2. the row written by the request three ahead replaces it likewise; tag compares of every
   way (match and live masks registered).
3. the entry of the key: from the request one ahead if it had the same key (its outcome is
   combinational in stage 4), else from the request two ahead (a register), else the matching
   way.
4. the operation (:meth:`HashTable.operate`, the subclass's): it sees the row as the requests
   ahead left it, the entry of its key and the lowest free way, and names the way it writes;
   the new row goes to the write-back register, which writes the memory in the next cycle;
   the result is registered behind a skid buffer.

So requests on one key or one row may follow each other on consecutive cycles:
read-modify-write hazards are resolved by forwarding, never by stalling. Latency
:attr:`HashTable.latency` = 6 cycles from acceptance to the result on ``o``; initiation
interval 1. After reset the table is cleared, one row a cycle, ``rows`` cycles with
``i.ready`` low.
"""

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory

from .stream import skid_output

__all__ = ["fold_row", "fold", "HashTable"]


def fold_row(key: int, rows: int, key_bits: int) -> int:
    """Row of ``key`` (``rows`` a power of two): its low ``log2(rows)`` bits XOR each
    ``log2(rows)``-bit piece of the tag ``key >> log2(rows)`` (bits below ``key_bits``).
    Consecutive keys go to consecutive rows; the gateware computes the same function
    (:func:`fold`)."""
    rb = rows.bit_length() - 1
    if rb == 0:
        return 0
    h = key & (rows - 1)
    tag = (key & ((1 << key_bits) - 1)) >> rb
    while tag:
        h ^= tag & (rows - 1)
        tag >>= rb
    return h


def fold(key, key_bits: int, rb: int):
    """Gateware :func:`fold_row`: (row, tag) of a key signal (bits below ``key_bits``)."""
    tag = key[rb:key_bits]
    h = key[:rb]
    for k in range(0, len(tag), rb):
        piece = tag[k:k + rb]
        h = h ^ Cat(piece, Const(0, rb - len(piece))) if len(piece) < rb else h ^ piece
    return h[:rb], tag


class HashTable(wiring.Component):
    """Base of the block-RAM hash tables: the pipeline of the module docstring.

    A subclass gives the request and result streams (``i``, ``o`` in its signature), the
    entry's fields and four methods: :meth:`key` (the key of a request and whether it is out
    of range), :meth:`pre` (flags of a request decoded in stage 0), :meth:`operate` (stage 4)
    and :meth:`counters` (from registered stage-4 events).

    Parameters
    ----------
    rows : int
        Rows (power of two, at least 2).
    ways : int
        Entries per row, all compared in one cycle.
    key_bits : int
        Width of the key, more than ``log2(rows)``.
    fields : dict
        The entry's fields after the tag (name -> shape).
    live_field : str
        The field whose non-zero value marks a live entry.
    pre_bits : int
        Width of :meth:`pre`.
    signature : dict
        The component's ports (``i`` and ``o`` among them).

    Raises
    ------
    ValueError
        ``rows`` not a power of two >= 2, ``ways`` < 1, ``key_bits`` <= ``log2(rows)``.
    """

    latency = 6     #: cycles from the accepting edge to the result's first valid cycle
    ii = 1

    def __init__(self, *, rows: int, ways: int, key_bits: int, fields: dict, live_field: str,
                 pre_bits: int, signature: dict):
        if not isinstance(rows, int) or rows < 2 or rows & (rows - 1):
            raise ValueError(f"rows must be a power of two >= 2, not {rows!r}")
        if not isinstance(ways, int) or ways < 1:
            raise ValueError(f"ways must be a positive integer, not {ways!r}")
        rb = rows.bit_length() - 1
        if not isinstance(key_bits, int) or key_bits <= rb:
            raise ValueError(f"key_bits must be more than {rb}, not {key_bits!r}")
        self.rows, self.ways, self.key_bits = rows, ways, key_bits
        self.row_bits = rb
        self.tag_bits = key_bits - rb
        self.live_field, self.pre_bits = live_field, pre_bits
        self.entry_layout = data.StructLayout({"tag": self.tag_bits, **fields})
        self.entry_bits = self.entry_layout.size
        super().__init__(signature)

    # ---------------------------------------------------------------- subclass interface
    def key(self, payload):
        """(key, out_of_range) of a request payload: a ``key_bits`` value and a 1-bit value
        (a request out of range changes nothing and is not forwarded)."""
        raise NotImplementedError

    def pre(self, payload):
        """``pre_bits`` of flags decoded from a request payload in stage 0."""
        raise NotImplementedError

    def operate(self, m, s):
        """Stage 4. ``s`` holds the request (``req``), its ``tag``, ``oor`` and ``pre``
        registers, ``hit`` / ``ent`` / ``way`` (whether its key is live, the entry, the way
        one-hot), ``base`` / ``base_live`` (the row and live mask as the requests ahead left
        them), ``free_oh`` (the lowest free way, one-hot) and ``free_any``. Return a namespace
        with ``wsel`` (the way written, one-hot, 0: none), ``wdata`` (the entry written there),
        ``wlive`` (its live bit after the write), ``hit`` / ``ent`` / ``way`` (what a later
        request on the same key sees) and ``result`` (the ``o`` payload)."""
        raise NotImplementedError

    def counters(self, m, s, op):
        """Counters, from the stage-4 namespace ``s`` and what :meth:`operate` returned."""
        raise NotImplementedError

    # ---------------------------------------------------------------- the pipeline
    def elaborate(self, platform):
        m = Module()
        nw, rb = self.ways, self.row_bits
        ent_t = self.entry_layout
        row_t = data.ArrayLayout(ent_t, nw)
        req_t = self.i.payload.shape()

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
        key = [reg(self.key_bits, f"s{k}_key") for k in names]
        row = [reg(rb, f"s{k}_row") for k in names]
        oor = [reg(1, f"s{k}_range") for k in names]      # key out of range
        pre = [reg(self.pre_bits, f"s{k}_pre") for k in names]
        tag = [reg(self.tag_bits, f"s{k}_tag") for k in names]
        # equality with the request d ahead, d = 1..5 (row) and 1..2 (key), as they were
        # when this request was in stage 0
        frow = [{d: reg(1, f"s{k}_row_eq{d}") for d in range(1, 6)} for k in names]
        fkey = [{d: reg(1, f"s{k}_key_eq{d}") for d in (1, 2)} for k in names]
        rowd = {k: reg(row_t, f"s{k}_rowdata") for k in (2, 3, 4)}
        match3, live3 = reg(nw, "s3_match"), reg(nw, "s3_live")
        hit4, way4 = reg(1, "s4_hit"), reg(nw, "s4_way")          # way one-hot
        ent4 = reg(ent_t, "s4_entry")
        live4 = reg(nw, "s4_live")
        # write-back: the rows written by the two requests that left stage 4 last
        wb_row, wb_live = reg(row_t, "wb_row"), reg(nw, "wb_live")
        wb2_row, wb2_live = reg(row_t, "wb2_row"), reg(nw, "wb2_live")
        # the memory write of the request that left stage 4 last, one cycle later
        wb_addr, wb_v, wb_we = reg(rb, "wb_addr"), reg(1, "wb_valid"), reg(1, "wb_we")
        # the outcome (hit, entry, way) of the request that left stage 4 last
        wb_hit, wb_ent, wb_way = reg(1, "wb_hit"), reg(ent_t, "wb_entry"), reg(nw, "wb_way")

        # ------------------------------------------------------------ stage 0
        in_key, in_oor = self.key(self.i.payload)
        in_row, in_tag = fold(in_key, self.key_bits, rb)
        with m.If(adv):
            m.d.sync += [v[0].eq(self.i.valid & self.i.ready), rq[0].eq(self.i.payload),
                         key[0].eq(in_key), row[0].eq(in_row), tag[0].eq(in_tag),
                         oor[0].eq(in_oor), pre[0].eq(self.pre(self.i.payload))]
        m.d.comb += rd.addr.eq(row[0])
        # flags of stage 0 against stages 1..4 and the write-back (the requests 1..5 ahead);
        # a request out of range changes nothing, so nothing is forwarded from it
        live_ahead = [v[k] & ~oor[k] for k in names] + [wb_v]
        rows_ahead = row + [wb_addr]
        with m.If(adv):
            for d in range(1, 6):
                m.d.sync += frow[1][d].eq(live_ahead[d] & (rows_ahead[d] == row[0]))
            for d in (1, 2):
                m.d.sync += fkey[1][d].eq(live_ahead[d] & (key[d] == key[0]))

        def shift(k):
            """Stage k-1 -> k registers that travel unchanged."""
            out = [v[k].eq(v[k - 1]), rq[k].eq(rq[k - 1]), key[k].eq(key[k - 1]),
                   row[k].eq(row[k - 1]), oor[k].eq(oor[k - 1]), tag[k].eq(tag[k - 1]),
                   pre[k].eq(pre[k - 1])]
            if k >= 2:
                out += [frow[k][d].eq(frow[k - 1][d]) for d in range(1, 6)]
                out += [fkey[k][d].eq(fkey[k - 1][d]) for d in (1, 2)]
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
                lv = rx[w][self.live_field].any()
                m.d.sync += [live3[w].eq(lv), match3[w].eq(lv & (rx[w].tag == tag[2]))]

        # ------------------------------------------------------------ stage 3
        def onehot_sel(row_v, oh):
            """The entry of ``row_v`` at the one-hot way ``oh`` (AND-OR, no priority)."""
            out = Const(0, self.entry_bits)
            for w in range(nw):
                out = out | Mux(oh[w], row_v[w].as_value(), 0)
            return out

        # the request in stage 4 (its outcome is combinational there)
        s4_hit, s4_ent, s4_way = Signal(), Signal(ent_t), Signal(nw)
        with m.If(adv):
            m.d.sync += shift(4)
            # the row written by the request two ahead (now in the write-back register)
            m.d.sync += [rowd[4].eq(Mux(frow[3][2], wb_row, rowd[3])),
                         live4.eq(Mux(frow[3][2], wb_live, live3))]
            with m.If(fkey[3][1]):
                m.d.sync += [hit4.eq(s4_hit), ent4.eq(s4_ent), way4.eq(s4_way)]
            with m.Elif(fkey[3][2]):
                m.d.sync += [hit4.eq(wb_hit), ent4.eq(wb_ent), way4.eq(wb_way)]
            with m.Else():
                m.d.sync += [hit4.eq(match3.any()), ent4.eq(onehot_sel(rowd[3], match3)),
                             way4.eq(match3)]

        # ------------------------------------------------------------ stage 4
        base, base_live = Signal(row_t), Signal(nw)
        m.d.comb += [base.eq(Mux(frow[4][1], wb_row, rowd[4])),
                     base_live.eq(Mux(frow[4][1], wb_live, live4))]
        free = ~base_live
        free_oh = Signal(nw)                # the lowest free way, one-hot
        m.d.comb += free_oh.eq(Cat(*[free[w] & ~free[:w].any() if w else free[0]
                                     for w in range(nw)]))
        go = adv & v[4]                     # the request leaves stage 4 on this edge
        s = SimpleNamespace(req=rq[4], tag=tag[4], oor=oor[4], pre=pre[4], key=key[4],
                            valid=v[4], go=go, hit=hit4, ent=ent4, way=way4, base=base,
                            base_live=base_live, free_oh=free_oh, free_any=free.any())
        op = self.operate(m, s)
        new_row, new_live = Signal(row_t), Signal(nw)
        for w in range(nw):
            m.d.comb += [new_row[w].eq(Mux(op.wsel[w], op.wdata, base[w])),
                         new_live[w].eq(Mux(op.wsel[w], op.wlive, base_live[w]))]
        m.d.comb += [s4_hit.eq(op.hit), s4_ent.eq(op.ent), s4_way.eq(op.way)]
        with m.If(clearing):
            m.d.comb += [wr.addr.eq(clr), wr.data.eq(0), wr.en.eq(1)]
        with m.Else():
            m.d.comb += [wr.addr.eq(wb_addr), wr.data.eq(wb_row), wr.en.eq(wb_we)]
        m.d.sync += wb_we.eq(0)
        with m.If(adv):
            m.d.sync += [wb_addr.eq(row[4]), wb_v.eq(v[4] & ~oor[4]),
                         wb_we.eq(go & op.wsel.any()),
                         wb_row.eq(new_row), wb_live.eq(new_live),
                         wb2_row.eq(wb_row), wb2_live.eq(wb_live),
                         wb_hit.eq(s4_hit), wb_ent.eq(s4_ent), wb_way.eq(s4_way)]

        skid_output(m, self.o, op.result, go, sk_valid)
        self.counters(m, s, op)
        return m
