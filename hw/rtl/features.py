"""Features stage: one book record in, the golden fixed-point feature vector out, bit-exact.

Source: the contract :mod:`hftaccel.spec.features` (formulas, Q formats, tables, per-symbol
state) as the golden model :mod:`hftaccel.golden.features` implements it; every constant and
table is read from the spec. Input records are :func:`hftaccel.rtl.book.record_layout`, the
order book's output (:data:`hftaccel.spec.book.BOOK_RECORD_DTYPE` fields).

Pipeline (one record a cycle, no stall between records of one symbol)
---------------------------------------------------------------------
Stage ``k`` is the register loaded on the ``k``-th clock edge counted from the edge that
accepts the record (stage 1 is loaded by the accepting edge). The whole pipeline advances
together (``adv``: the output register is empty or taken), so ``i.ready = adv``.

* Accept: the symbol index ``stock_locate mod n_symbols`` selects the per-symbol event counter
  (registers, updated here, so it needs no forwarding); the state word read (block RAM,
  transparent for the state write) and both window-ring reads (address ``symbol * 64 +
  (count - K) mod 64`` for ``K`` = 16 and 64) are issued.
* Stage 1 closes every per-symbol recurrence in one cycle from the state word: OFI levels
  1..3, signed trade volume, mid change, window sums ``S_K += v - v_{n-K}``, intensities
  (decay bucket, ROM, multiply, round, add, saturate), last trade; the new state word and
  the ring entry are written on the edge that leaves stage 1. The next record's read on that
  same edge sees the write (transparent read), so back-to-back records of one symbol need no
  other forwarding; the ring entry of event ``n - 16`` is written before event ``n`` reads it
  (a record leaves stage 1 at the latest on the edge that accepts the next one).
* Stateless features in parallel: spread (subtract, multiply, round + saturate: stage 3),
  imbalances (weighted sums, ``log2q`` leading-one + mantissa ROM, tanh ROM: stage 4),
  micro-price (multiply, round, saturate: stage 5); windowed outputs saturate / ``to_ticks``
  in stages 2..4.
* Every feature is then delayed to stage ``latency`` so the vector leaves in one beat.

Latency: a record valid and accepted at the input in cycle ``c`` has its vector valid on
``o`` in cycle ``c + latency`` (``latency`` register stages; default
:data:`hftaccel.spec.features.FEATURES_LATENCY_CYCLES` = 9; at least :data:`MIN_LATENCY`).
Initiation interval: 1 cycle for any mix of symbols. No clearing after reset: a symbol's state
counts as the spec's reset state until its first record (a per-symbol flag) and ring entries
older than the symbol's first event read as 0 (the counter knows how many were written).
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hftaccel.spec import book as book_spec
from hftaccel.spec import features as fs
from hftaccel.spec.itch import SIDE_BUY, SIDE_SELL

from .book import record_layout

__all__ = ["feature_in_layout", "feature_out_layout", "STATE_LAYOUT", "RING_LAYOUT", "COUNTERS",
           "MIN_LATENCY", "FeatureEngine"]

#: Counters (one ``Out(32)`` port each): the golden model's anomaly kinds
#: (``hftaccel.golden.features.ANOMALY_KINDS``: a timestamp earlier than the symbol's previous
#: record, an E/C/P record whose side is neither B nor S), then records delivered on ``o``.
COUNTERS = ("time_reversal", "trade_without_side", "records")

#: Fewest register stages the pipeline needs (the micro-price is ready in stage 5).
MIN_LATENCY = 5

_L = fs.OFI_LEVELS
_DL = fs.DEPTH_IMB_LEVELS
_NQ = len(fs.WINDOW_QUANTITIES)
_RING = fs.WINDOW_RING
_RING_BITS = _RING.bit_length() - 1
_KS, _KL = fs.WINDOW_SHORT, fs.WINDOW_LONG
assert _RING == _KL and _KS < _KL
_V_BITS = 35            # per-event quantity: |ofi|, |dmid2| < 2**33, |tvol| < 2**32 (signed)
_SUM_BITS = 42          # window sum: |S| <= 64 * 2**33 = 2**39 (signed, with margin)
_W_BITS = 32 + _DL      # weighted depth sum < 2**37
_I_BITS = fs.FEATURE_Q["intensity_buy"][0] + fs.FEATURE_Q["intensity_buy"][1]   # I >= 0
_EMPTY_ASK = 1 << 32
_TRADES = tuple(ord(c) for c in fs.TRADE_MESSAGE_TYPES)

#: Per-symbol state word (block RAM, one per symbol; all zero = the spec's reset state).
STATE_LAYOUT = data.StructLayout({
    "last_ts": unsigned(64),                         # timestamp of the previous record
    "last_mid2": unsigned(33),                       # last valid bid1 + ask1; 0: none yet
    "ibuy": unsigned(_I_BITS),                       # intensities, Q15.16, never negative
    "isell": unsigned(_I_BITS),
    "last_trade": unsigned(64),                      # timestamp of the last E/C/P record
    "traded": unsigned(1),                           # a trade has been seen
    "bid_price": data.ArrayLayout(unsigned(32), _L),  # levels 1..OFI_LEVELS of the previous
    "bid_shares": data.ArrayLayout(unsigned(32), _L),  # record (ask price 0 = empty)
    "ask_price": data.ArrayLayout(unsigned(32), _L),
    "ask_shares": data.ArrayLayout(unsigned(32), _L),
    "sum_s": data.ArrayLayout(signed(_SUM_BITS), _NQ),   # window sums, WINDOW_QUANTITIES order
    "sum_l": data.ArrayLayout(signed(_SUM_BITS), _NQ),
})
#: One window-ring entry: the per-event quantities of :data:`~hftaccel.spec.features.
#: WINDOW_QUANTITIES` (ofi_l1..3, tvol, dmid2, adm2).
RING_LAYOUT = data.ArrayLayout(signed(_V_BITS), _NQ)


def feature_in_layout(depth: int = book_spec.BOOK_DEPTH, meta_layout=None):
    """Input payload: ``record_layout(depth)``, or ``{"rec": record_layout(depth), "meta":
    meta_layout}`` when ``meta_layout`` is given."""
    rec = record_layout(depth)
    if meta_layout is None:
        return rec
    return data.StructLayout({"rec": rec, "meta": meta_layout})


def feature_out_layout(meta_layout=None, depth: int = book_spec.BOOK_DEPTH):
    """Output payload: ``x`` (``N_FEATURES`` signed 32-bit codes, column order of
    :data:`~hftaccel.spec.features.FEATURE_NAMES`, each in its Q format), ``rec`` (the input
    record, unchanged) and, when ``meta_layout`` is given, ``meta`` (passed through)."""
    members = {"x": data.ArrayLayout(signed(32), fs.N_FEATURES), "rec": record_layout(depth)}
    if meta_layout is not None:
        members["meta"] = meta_layout
    return data.StructLayout(members)


# ----------------------------------------------------------------------------- arithmetic

def _round_shift(x, s):
    """Spec ``round_shift``: ``x / 2**s`` rounded half away from zero (signed ``x``)."""
    if s == 0:
        return x
    neg = x < 0
    mag = (Mux(neg, -x, x) + (1 << (s - 1))) >> s
    return Mux(neg, -mag, mag)


def _saturate(x, name):
    lo, hi = fs.feature_min(name), fs.feature_max(name)
    return Mux(x > hi, hi, Mux(x < lo, lo, x))


def _signed(v):
    """Unsigned value as a signed one of one more bit (same number)."""
    return Cat(v, Const(0, 1)).as_signed()


def _bit_length(m, x, name):
    """Bits needed for unsigned ``x`` (0 for 0): a priority encoder."""
    bl = Signal(range(len(x) + 1), name=name)
    for i in range(len(x)):
        with m.If(x[i]):
            m.d.comb += bl.eq(i + 1)
    return bl


def _log2_parts(m, x, name):
    """``(e, mantissa)`` of spec ``log2q``: ``e = bit_length(x) - 1`` and the
    ``LOG2_MANT_BITS`` bits right below the leading one (zero-filled)."""
    mb = fs.LOG2_MANT_BITS
    e = Signal(range(len(x)), name=f"{name}_e")
    mant = Signal(mb, name=f"{name}_m")
    for i in range(len(x)):
        with m.If(x[i]):
            m.d.comb += e.eq(i)
    with m.Switch(e):
        for i in range(1, len(x)):
            with m.Case(i):
                m.d.comb += mant.eq(x[i - mb:i] if i >= mb else x[0:i] << (mb - i))
    return e, mant


class FeatureEngine(wiring.Component):
    """Golden feature vector per book record, one record a cycle, per-symbol state in block RAM.

    Parameters
    ----------
    depth : int
        Levels per side of the input records (``record_layout(depth)``), at least
        :data:`~hftaccel.spec.features.DEPTH_IMB_LEVELS`.
    n_symbols : int
        Symbols with their own state (a power of two, 1..65536). Stock locate ``L`` uses state
        ``L mod n_symbols``: locates that differ by a multiple of it share state (the golden
        model keeps every locate apart), so subscribe locates distinct modulo ``n_symbols``.
        Block RAM: ``n_symbols`` state words of ``STATE_LAYOUT`` (1,112 bits) and
        ``n_symbols * 64`` ring entries of ``RING_LAYOUT`` (210 bits); registers: 8 bits of
        event counter per symbol.
    meta_layout : amaranth shape or layout, optional
        Opaque per-record field carried from input to output unchanged (the top's cycle
        stamps); ``None`` for none.
    latency : int
        Register stages from input to output, cycles (see the module docstring), at least
        :data:`MIN_LATENCY`; default :data:`hftaccel.spec.features.FEATURES_LATENCY_CYCLES`.

    Attributes
    ----------
    i : In(stream.Signature(feature_in_layout(depth, meta_layout)))
        Book records (``record_layout(depth)``; prices 1/10,000 USD, sizes shares,
        timestamps ns since midnight), or ``{"rec": record, "meta": meta}`` with a
        ``meta_layout``. ``msg_type`` must be one of A F E C X D U P (the book only makes those).
    o : Out(stream.Signature(feature_out_layout(meta_layout, depth)))
        One beat per record, in order: ``x[j]`` = feature ``FEATURE_NAMES[j]`` (signed 32-bit
        code in its Q format, :data:`~hftaccel.spec.features.FEATURE_Q`), ``rec`` = the input
        record, ``meta`` = the input meta.
    time_reversal, trade_without_side, records : Out(32)
        :data:`COUNTERS`: anomalies as the golden model counts them, and beats delivered.

    Notes
    -----
    Timestamps and their differences are 64-bit two's complement, as the golden model's
    int64 arithmetic. The per-symbol recurrences (window sums, intensity multiply-add) close
    in one cycle: that stage sets the clock.
    """

    def __init__(self, *, depth: int = book_spec.BOOK_DEPTH, n_symbols: int = 16,
                 meta_layout=None, latency: int = fs.FEATURES_LATENCY_CYCLES):
        if not isinstance(depth, int) or depth < max(_DL, _L):
            raise ValueError(f"depth must be an integer >= DEPTH_IMB_LEVELS ({_DL}), "
                             f"not {depth!r}")
        if (not isinstance(n_symbols, int) or not 1 <= n_symbols <= 1 << 16
                or n_symbols & (n_symbols - 1)):
            raise ValueError(f"n_symbols must be a power of two in 1..65536, not {n_symbols!r}")
        if not isinstance(latency, int) or latency < MIN_LATENCY:
            raise ValueError(f"latency must be an integer >= {MIN_LATENCY}, not {latency!r}")
        if meta_layout is not None:
            try:
                data.StructLayout({"meta": meta_layout})
            except TypeError:
                raise TypeError(f"meta_layout must be an Amaranth shape or layout, "
                                f"not {meta_layout!r}") from None
        self.depth, self.n_symbols, self.latency = depth, n_symbols, latency
        self.meta_layout = meta_layout
        self.record_layout = record_layout(depth)
        self.in_layout = feature_in_layout(depth, meta_layout)
        self.out_layout = feature_out_layout(meta_layout, depth)
        members = {
            "i": In(stream.Signature(self.in_layout)),
            "o": Out(stream.Signature(self.out_layout)),
        }
        for c in COUNTERS:
            members[c] = Out(32)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        lat = self.latency
        sym_bits = (self.n_symbols - 1).bit_length()
        adv = Signal()          # the whole pipeline moves one stage
        m.d.comb += [adv.eq(~self.o.valid | self.o.ready), self.i.ready.eq(adv)]
        accept = self.i.valid & adv

        def reg(value, name, shape=None):
            """A pipeline register loaded with ``value`` when the pipeline advances."""
            r = Signal(shape if shape is not None else value.shape(), name=name)
            with m.If(adv):
                m.d.sync += r.eq(value)
            return r

        def delay(value, n, name):
            for k in range(n):
                value = reg(value, f"{name}_d{k}")
            return value

        p = self.i.payload
        rec = p.rec if self.meta_layout is not None else p

        # valid bits of stages 1..lat
        valid = [None]
        for k in range(1, lat + 1):
            valid.append(reg(self.i.valid if k == 1 else valid[k - 1], f"valid{k}",
                             unsigned(1)))

        # ============================================================ stage 1 registers
        r1 = reg(rec, "rec1")
        bid1 = rec.bid_price[0]
        ask1 = rec.ask_price[0]
        two1 = reg((bid1 != 0) & (ask1 != 0), "two1")
        dsp1 = reg(_signed(ask1) - _signed(bid1), "dsp1")
        bw = sum(rec.bid_shares[i] << (_DL - 1 - i) for i in range(_DL))
        aw = sum(rec.ask_shares[i] << (_DL - 1 - i) for i in range(_DL))
        bw1 = reg(bw[:_W_BITS], "bw1")
        aw1 = reg(aw[:_W_BITS], "aw1")

        # ============================================================ stateless: spread
        sprod2 = reg(dsp1 * fs.TICK_RECIP, "sprod2")
        two2 = reg(two1, "two2")
        sp_code = _saturate(_round_shift(sprod2, fs.TICK_RECIP_SHIFT - fs.FEATURE_Q["spread"][1]),
                            "spread")
        spread3 = reg(Mux(two2, sp_code, fs.feature_max("spread")), "spread3",
                      signed(1 + sum(fs.FEATURE_Q["spread"])))
        two3 = reg(two2, "two3")

        # ============================================================ stateless: imbalances
        m.submodules.log2_rom = log2_rom = Memory(
            shape=unsigned(9), depth=len(fs.LOG2_MANT_TABLE),
            init=[int(v) for v in fs.LOG2_MANT_TABLE])
        m.submodules.tanh_rom = tanh_rom = Memory(
            shape=unsigned(fs.IMB_FRAC_BITS + 1), depth=fs.IMB_TABLE_SIZE,
            init=[int(v) for v in fs.IMB_TANH_TABLE])
        imb4 = {}
        for name, b, a in (("imb_l1", r1.bid_shares[0], r1.ask_shares[0]),
                           ("imb_depth", bw1, aw1)):
            e2, ports = [], []
            for side, x in (("b", b), ("a", a)):
                e, mant = _log2_parts(m, x, f"{name}_{side}")
                rp = log2_rom.read_port()
                m.d.comb += [rp.addr.eq(mant), rp.en.eq(adv)]
                e2.append(reg(e, f"{name}_{side}_e2"))
                ports.append(rp)
            eq2 = reg(b == a, f"{name}_eq2")
            az2 = reg(a == 0, f"{name}_az2")
            bz2 = reg(b == 0, f"{name}_bz2")
            lq_b = e2[0] * (1 << fs.LOG2_FRAC_BITS) + ports[0].data
            lq_a = e2[1] * (1 << fs.LOG2_FRAC_BITS) + ports[1].data
            d = Signal(signed(16), name=f"{name}_d")
            m.d.comb += d.eq(lq_b - lq_a)
            k = Signal(15, name=f"{name}_k")
            m.d.comb += k.eq(abs(d) >> fs.IMB_INDEX_SHIFT)
            tp = tanh_rom.read_port()
            m.d.comb += [tp.addr.eq(k[:len(tp.addr)]), tp.en.eq(adv)]
            big3 = reg(k >= fs.IMB_TABLE_SIZE, f"{name}_big3")
            neg3 = reg(d < 0, f"{name}_neg3")
            zero3 = reg(d == 0, f"{name}_zero3")
            eq3 = reg(eq2, f"{name}_eq3")
            az3 = reg(az2, f"{name}_az3")
            bz3 = reg(bz2, f"{name}_bz3")
            one = fs.IMB_ONE
            v = Mux(big3, one, tp.data)
            imb = Mux(eq3, 0, Mux(az3, one, Mux(bz3, -one, Mux(zero3, 0, Mux(neg3, -v, v)))))
            imb4[name] = reg(_saturate(imb, name), f"{name}4",
                             signed(1 + sum(fs.FEATURE_Q[name])))

        # ============================================================ stateless: micro-price
        spread4 = reg(spread3, "spread4")
        two4 = reg(two3, "two4")
        mp_shift = (fs.FEATURE_Q["spread"][1] + fs.IMB_FRAC_BITS + 1
                    - fs.FEATURE_Q["microprice_mid"][1])
        mpm = _saturate(_round_shift(spread4 * imb4["imb_l1"], mp_shift), "microprice_mid")
        mpm5 = reg(Mux(two4, mpm, 0), "mpm5", signed(1 + sum(fs.FEATURE_Q["microprice_mid"])))

        # ============================================================ per-symbol state
        ns = self.n_symbols
        sym = rec.stock_locate[:sym_bits] if sym_bits else Const(0, 1)
        cnt = Array(Signal(_RING_BITS, name=f"cnt{s}") for s in range(ns))
        full = Array(Signal(name=f"full{s}") for s in range(ns))     # >= 64 events seen
        seen = Array(Signal(name=f"seen{s}") for s in range(ns))     # >= 1 event seen
        c0 = Signal(_RING_BITS)
        m.d.comb += c0.eq(cnt[sym])
        with m.If(accept):
            m.d.sync += [cnt[sym].eq(c0 + 1), seen[sym].eq(1)]
            with m.If(c0 == _RING - 1):
                m.d.sync += full[sym].eq(1)

        m.submodules.state_mem = state_mem = Memory(shape=STATE_LAYOUT, depth=ns, init=[])
        st_wr = state_mem.write_port()
        st_rd = state_mem.read_port(transparent_for=(st_wr,))
        m.submodules.ring_mem = ring_mem = Memory(shape=RING_LAYOUT, depth=ns * _RING, init=[])
        ring_wr = ring_mem.write_port()
        ring_s = ring_mem.read_port()
        ring_l = ring_mem.read_port()

        def ring_addr(pos, s):
            return Cat(pos, s) if sym_bits else pos

        m.d.comb += [
            st_rd.addr.eq(sym), st_rd.en.eq(adv),
            ring_s.addr.eq(ring_addr((c0 - _KS)[:_RING_BITS], sym)), ring_s.en.eq(adv),
            ring_l.addr.eq(ring_addr(c0, sym)), ring_l.en.eq(adv),
        ]
        sym1 = reg(sym, "sym1")
        cnt1 = reg(c0, "cnt1")
        seen1 = reg(seen[sym], "seen1")
        sok1 = reg(full[sym] | (c0 >= _KS), "short_ok1")     # ring entry K_SHORT ago written
        lok1 = reg(full[sym], "long_ok1")

        # ============================================================ stage 1: recurrences
        st = Signal(STATE_LAYOUT)
        m.d.comb += st.eq(Mux(seen1, st_rd.data.as_value(), 0))
        new = Signal(STATE_LAYOUT)

        def ask(p_):
            return Mux(p_ == 0, _EMPTY_ASK, p_)

        vals = []
        for lv in range(_L):
            pb, qb = r1.bid_price[lv], r1.bid_shares[lv]
            pa, qa = ask(r1.ask_price[lv]), r1.ask_shares[lv]
            pb0, qb0 = st.bid_price[lv], st.bid_shares[lv]
            pa0, qa0 = ask(st.ask_price[lv]), st.ask_shares[lv]
            e = (Mux(pb >= pb0, qb, 0) - Mux(pb <= pb0, qb0, 0)
                 - Mux(pa <= pa0, qa, 0) + Mux(pa >= pa0, qa0, 0))
            vals.append(e)
        mt, side = r1.msg_type, r1.side
        is_trade = Cat(*[mt == c for c in _TRADES]).any()
        is_buy = side == SIDE_BUY
        is_sell = side == SIDE_SELL
        shares = _signed(r1.shares)
        vals.append(Mux(is_trade & is_buy, -shares, Mux(is_trade & is_sell, shares, 0)))
        mid2 = r1.bid_price[0] + r1.ask_price[0]
        dm = Signal(signed(_V_BITS))
        m.d.comb += dm.eq(Mux(two1 & (st.last_mid2 != 0), _signed(mid2) - _signed(st.last_mid2),
                              0))
        vals.append(dm)
        vals.append(abs(dm))
        v = Signal(RING_LAYOUT)
        for j, x in enumerate(vals):
            m.d.comb += v[j].eq(x)
        for j in range(_NQ):
            old_s = Mux(sok1, ring_s.data[j], 0)
            old_l = Mux(lok1, ring_l.data[j], 0)
            m.d.comb += [new.sum_s[j].eq(st.sum_s[j] + v[j] - old_s),
                         new.sum_l[j].eq(st.sum_l[j] + v[j] - old_l)]

        # intensities
        ts = r1.timestamp
        dt_raw = Signal(signed(64))
        m.d.comb += dt_raw.eq((ts - st.last_ts)[:64])
        back = seen1 & (dt_raw < 0)
        dt = Signal(64)
        m.d.comb += dt.eq(Mux(seen1 & ~back, dt_raw, 0))
        lo = fs.DECAY_MIN_LOG2
        top = lo + fs.DECAY_BUCKETS - 2          # bit_length(dt) - lo >= DECAY_BUCKETS - 1
        bucket = Signal(range(fs.DECAY_BUCKETS))
        for i in range(lo, top):
            with m.If(dt[i]):
                m.d.comb += bucket.eq(i + 1 - lo)
        with m.If(dt[top:].any()):
            m.d.comb += bucket.eq(fs.DECAY_BUCKETS - 1)
        decay = Array(Const(int(x), 16) for x in fs.DECAY_TABLE)[bucket]
        i_max = fs.feature_max("intensity_buy")
        df = fs.DECAY_FRAC_BITS
        for fld, hit in (("ibuy", is_buy), ("isell", is_sell)):
            x = ((st[fld] * decay + (1 << (df - 1))) >> df) + Mux(hit, 1 << fs.INTENSITY_FRAC_BITS,
                                                                  0)
            m.d.comb += new[fld].eq(Mux(x > i_max, i_max, x))

        m.d.comb += [
            new.last_ts.eq(ts),
            new.last_mid2.eq(Mux(two1, mid2, st.last_mid2)),
            new.last_trade.eq(Mux(is_trade, ts, st.last_trade)),
            new.traded.eq(st.traded | is_trade),
        ]
        for lv in range(_L):
            for fld in ("bid_price", "bid_shares", "ask_price", "ask_shares"):
                m.d.comb += new[fld][lv].eq(r1[fld][lv])

        step1 = valid[1] & adv
        m.d.comb += [
            st_wr.addr.eq(sym1), st_wr.data.eq(new), st_wr.en.eq(step1),
            ring_wr.addr.eq(ring_addr(cnt1, sym1)), ring_wr.data.eq(v), ring_wr.en.eq(step1),
        ]
        with m.If(step1 & back):
            m.d.sync += self.time_reversal.eq(self.time_reversal + 1)
        with m.If(step1 & is_trade & ~is_buy & ~is_sell):
            m.d.sync += self.trade_without_side.eq(self.trade_without_side + 1)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.records.eq(self.records + 1)

        # ============================================================ windowed outputs
        sums2 = reg(Cat(new.sum_s.as_value(), new.sum_l.as_value()), "sums2")
        sums = data.ArrayLayout(signed(_SUM_BITS), 2 * _NQ)(sums2)
        ibuy2 = reg(new.ibuy, "ibuy2")
        isell2 = reg(new.isell, "isell2")
        ts2 = reg(ts, "ts2")
        lt2 = reg(new.last_trade, "last_trade2")
        # golden: last trade time < 0 (int64) means none
        has2 = reg(new.traded & ~new.last_trade[63], "has_trade2")

        win = {}            # feature name -> (stage, register)
        tick_shift = fs.TICK_RECIP_SHIFT + 1
        clamp_hi = (1 << 31) - 1
        for w, k_ in enumerate(fs.WINDOWS):
            for j, q in enumerate(fs.WINDOW_QUANTITIES):
                s_ = sums[w * _NQ + j]
                if q in ("dmid2", "adm2"):
                    fname = (f"dmid_k{k_}" if q == "dmid2" else f"rv_k{k_}")
                    cl = Mux(s_ > clamp_hi, clamp_hi, Mux(s_ < -clamp_hi - 1, -clamp_hi - 1, s_))
                    prod3 = reg(cl[:32].as_signed() * fs.TICK_RECIP, f"{fname}_p3")
                    code = _saturate(_round_shift(prod3, tick_shift - fs.FEATURE_Q[fname][1]),
                                     fname)
                    win[fname] = (4, reg(code, f"{fname}4", signed(32)))
                else:
                    fname = f"{q}_k{k_}"
                    win[fname] = (3, reg(_saturate(s_, fname), f"{fname}3", signed(32)))
        win["intensity_buy"] = (2, ibuy2)
        win["intensity_sell"] = (2, isell2)
        age = Signal(signed(64))
        m.d.comb += age.eq((ts2 - lt2)[:64])
        bl = _bit_length(m, Mux(age < 0, 0, age)[:63], "age_bits")
        win["t_since_trade"] = (3, reg(Mux(has2, bl, fs.TRADE_AGE_NONE), "t_since_trade3",
                                       signed(32)))

        # ============================================================ align and output
        staged = dict(win)
        staged["spread"] = (3, spread3)
        staged["imb_l1"] = (4, imb4["imb_l1"])
        staged["imb_depth"] = (4, imb4["imb_depth"])
        staged["microprice_mid"] = (5, mpm5)
        assert set(staged) == set(fs.FEATURE_NAMES)
        assert max(s for s, _ in staged.values()) == MIN_LATENCY
        o = self.o.payload
        for j, name in enumerate(fs.FEATURE_NAMES):
            stage, r = staged[name]
            m.d.comb += o.x[j].eq(delay(r, lat - stage, name))
        m.d.comb += o.rec.eq(delay(r1, lat - 1, "rec"))
        if self.meta_layout is not None:
            m.d.comb += o.meta.eq(delay(reg(p.meta, "meta1"), lat - 1, "meta"))
        m.d.comb += self.o.valid.eq(valid[lat])
        return m
