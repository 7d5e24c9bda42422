"""Decision stage and pre-trade risk gate: scored book update in, one decision record out.

Source: :mod:`hftaccel.spec.risk` (config fields, intent / verdict / reason codes, record
dtypes, check priority) and the golden model :mod:`hftaccel.golden.risk` (``decide`` then
``gate``), which this block reproduces bit for bit. Every width is read from the spec's dtypes.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hftaccel.spec import risk as spec

from .stream import skid_output

__all__ = ["SCORED_LAYOUT", "CONFIG_LAYOUT", "DECISION_LAYOUT", "STATE_LAYOUT", "RiskGate"]


def _layout_of(dtype, overrides=None) -> data.StructLayout:
    """StructLayout with one member per (non-pad) field of a NumPy record dtype, same widths
    and signedness; ``overrides`` maps a field to another shape."""
    members = {}
    for name in dtype.names:
        if name.startswith("_"):
            continue
        if overrides and name in overrides:
            members[name] = overrides[name]
            continue
        ft = dtype.fields[name][0]
        width = 8 * ft.itemsize
        members[name] = signed(width) if ft.kind == "i" else unsigned(width)
    return data.StructLayout(members)


_SCORE = spec.SCORED_UPDATE_DTYPE.fields["scores"][0]
#: Input record: :data:`hftaccel.spec.risk.SCORED_UPDATE_DTYPE` (scores an array of int32).
SCORED_LAYOUT = _layout_of(spec.SCORED_UPDATE_DTYPE, {
    "scores": data.ArrayLayout(signed(8 * _SCORE.base.itemsize), _SCORE.shape[0])})
#: Configuration registers: every :data:`hftaccel.spec.risk.RISK_CONFIG_DTYPE` field, int64.
CONFIG_LAYOUT = _layout_of(spec.RISK_CONFIG_DTYPE)
#: Output record: :data:`hftaccel.spec.risk.DECISION_DTYPE`, every field.
DECISION_LAYOUT = _layout_of(spec.DECISION_DTYPE)
#: Per-locate state word held in the locate memory.
STATE_LAYOUT = data.StructLayout({
    "position": DECISION_LAYOUT["position"].shape,
    "open_buy": DECISION_LAYOUT["open_buy"].shape,
    "open_sell": DECISION_LAYOUT["open_sell"].shape,
})

_R = {name: k for k, name in enumerate(spec.REJECT_REASONS)}
# a valid order's notional lot * price is below 2**63 (lot < 2**32, price < 2**31), so sums of
# two notionals are exact in 64 bits
assert 0 < spec.MAX_ORDER_PRICE < 1 << 31
_I64 = 64


def _s64(v):
    """Wrap to int64 as the golden model's NumPy/Numba arithmetic does."""
    return v[:_I64].as_signed()


def _biased(v, width):
    """``v`` (signed) sign-extended to ``width`` bits with the sign bit inverted: an unsigned
    value with the same order, so that a signed compare is the carry out of one chain (no LUT
    after it for the sign and overflow; the inverter folds into the carry cells)."""
    v = v.as_signed()
    bits = [v[k] if k < len(v) else v[-1] for k in range(width)]
    return Cat(*bits[:-1], ~bits[-1])


def _slt(a, b, width):
    """Signed ``a < b`` as an unsigned compare of :func:`_biased` operands."""
    return _biased(a, width) < _biased(b, width)


def _csa(x, y, z, width):
    """Carry-save step: ``x + y + z == s + c`` (mod ``2**width``), one LUT level, no carry."""
    x, y, z = x[:width], y[:width], z[:width]
    return (x ^ y ^ z)[:width], Cat(Const(0, 1), (x & y) | (x & z) | (y & z))[:width]


class RiskGate(wiring.Component):
    """Golden ``decide`` + ``gate`` in a five-stage pipeline, one record a cycle.

    Every register-to-register path holds at most one carry chain, one EBR read or one DSP.
    Stages (an update accepted in cycle 0):

    0. score differences, both candidate prices (buy and sell side), the spread, ``t + window``,
       the bad-quote check; the locate memory read is issued; the four 16 x 16 partial
       products ``lot * best_ask`` and ``lot * best_bid`` (MULT18X18D, fabric registers in and
       out).
    1. the four intent compares (``score_up - max(down, flat) >= thr`` and the sell twin, one
       carry chain each against its own threshold register; buy and sell are one LUT of the
       four bits), bad-price flags of both candidates, collar deviation, partial sums of both
       candidate notionals; the locate memory's output is registered, and so are the two
       forwarding selects (the record two ahead / three ahead has this record's locate).
    2. price and notional ``n`` of the chosen side, ``n`` plus the previous record's notional,
       collar compares; the forwarded locate state (a mux on registered selects: the state
       decided in stage 4 this cycle, the write-back register, or the memory), the operand of
       the position check, both hypotheses' position thresholds and the addends ``k * lot``
       of the new-state candidates are registered.
    3. every stateful compare, each a single carry chain under both hypotheses about the
       record one stage ahead (approved or not): position against thresholds that already
       include that record's delta, ``n`` and ``n + n_prev`` against the notional headroom,
       ``t`` against the two throttle-ring candidates, combined by one LUT per hypothesis
       (the ring-full flag of the approved hypothesis is a register); the new-state
       candidates ``state + k * lot`` and both hypotheses' gross notional and headroom.
    4. the verdict: LUT logic over registered compare bits and the previous verdict, which
       selects the new state, headroom, gross, ring slot and UserRefNum.

    The decision is registered behind a skid buffer (:attr:`latency` cycles after the update
    is accepted); ``i.ready`` and the pipeline enable come from registers. Updates of one
    locate may follow each other back to back: the state of the record one stage ahead is
    speculated on, older in-flight updates are forwarded from the write-back register.

    After reset the locate memory is cleared, one locate a cycle, and the configuration
    products (``price_offset_ticks * tick_size``, ``collar_ticks * tick_size``,
    ``throttle_window_us * 1000``, ``lot_size * offset``) are computed by a shift-and-add
    engine that repeats every 256 cycles; ``i.ready`` stays low (``clearing``) for
    ``max(num_locates, 512)`` cycles.

    Parameters
    ----------
    num_locates : int
        Stock locates with their own position / open-order state (power of two). Locate ``L``
        uses entry ``L mod num_locates``: locates that differ by a multiple of it share a
        position (the golden model holds all 65536).
    max_throttle : int
        Capacity of the throttle ring (power of two, at most
        :data:`hftaccel.spec.risk.MAX_THROTTLE_ORDERS`); ``cfg.throttle_orders`` must not
        exceed it (``cfg_error`` is high when it does).
    first_user_ref_num : int
        UserRefNum of the first approved order after reset (the golden default is 1).

    Attributes
    ----------
    i : In(stream.Signature(SCORED_LAYOUT))
        Scored book updates, timestamps non-decreasing and below 2**63.
    o : Out(stream.Signature(DECISION_LAYOUT))
        One :data:`~hftaccel.spec.risk.DECISION_DTYPE` record per update, state fields after
        the update was applied.
    cfg : In(CONFIG_LAYOUT)
        Config registers (:class:`hftaccel.spec.risk.RiskConfig` fields). ``kill_switch`` is
        read (one register later) by every record (the golden ``set_kill_switch``); the other
        fields are static while orders flow: their products follow a write within 512 cycles,
        and ``throttle_orders`` and ``fill_model`` must be held from reset on (the golden state
        captures them). Timestamps going backwards and UserRefNum wrap-around are not checked
        (the golden ``gate`` raises on them); there are no ports for the router's fill / cancel
        reports (the golden ``on_fill`` / ``on_cancel``), so with ``FILL_IMMEDIATE`` nothing
        is ever open and with ``FILL_RESTING`` the position stays 0 and open orders only
        accumulate (the position check relies on both).
    cfg_error : Out(1)
        ``cfg.throttle_orders`` is outside 1..``max_throttle``.
    clearing : Out(1)
        The locate memory is being cleared / the configuration products computed after reset.
    gross_notional : Out(signed(64))
        Committed notional, 1/10,000 USD.
    approved, no_intent : Out(32)
        Approved orders; updates that produced no intent (counted one cycle after the
        decision is registered).
    rejected_<reason> : Out(32)
        Rejections counted by reason, one per :data:`~hftaccel.spec.risk.REJECT_REASONS`.
    latency, ii : int
        Cycles from an update accepted to its decision presented (no back-pressure); cycles
        between accepted updates.
    """

    latency = 5
    ii = 1

    def __init__(self, *, num_locates: int = 256, max_throttle: int = 16,
                 first_user_ref_num: int = 1):
        for name, v, hi in (("num_locates", num_locates, 1 << 16),
                            ("max_throttle", max_throttle, spec.MAX_THROTTLE_ORDERS)):
            if not isinstance(v, int) or v < 1 or v > hi or v & (v - 1):
                raise ValueError(f"{name} must be a power of two in 1..{hi}, not {v!r}")
        if not isinstance(first_user_ref_num, int) or not 1 <= first_user_ref_num < 1 << 32:
            raise ValueError(f"first_user_ref_num must be in 1..2**32-1, "
                             f"not {first_user_ref_num!r}")
        self._n_loc = num_locates
        self._n_thr = max_throttle
        self._urn0 = first_user_ref_num
        members = {
            "i": In(stream.Signature(SCORED_LAYOUT)),
            "o": Out(stream.Signature(DECISION_LAYOUT)),
            "cfg": In(CONFIG_LAYOUT),
            "cfg_error": Out(1),
            "clearing": Out(1),
            "gross_notional": Out(signed(64)),
            "approved": Out(32),
            "no_intent": Out(32),
        }
        for r in spec.REJECT_REASONS:
            members[f"rejected_{r}"] = Out(32)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        loc_bits = max(1, (self._n_loc - 1).bit_length())
        n_thr = self._n_thr
        S66 = signed(66)

        def reg(shape, name, init=0):
            return Signal(shape, name=name, init=init)

        # ------------------------------------------------------------ configuration
        # Products of configuration registers: one shift-and-add engine, 64 steps a product,
        # four products a 256-cycle round, repeated for ever (config is static while orders
        # flow; ``clearing`` covers the first two rounds after reset).
        q = reg(32, "cfg_q")                          # shares of every order
        m.d.sync += q.eq(cfg.lot_size[:32])
        ecnt = reg(8, "eng_cnt")
        e_x, e_y, e_acc = reg(64, "eng_x"), reg(64, "eng_y"), reg(64, "eng_acc")
        prods = [reg(64, f"eng_p{k}") for k in range(4)]
        off, ctk, window, qoff = prods                # offset, collar, window (ns), lot * offset
        x0 = Array([cfg.price_offset_ticks, cfg.collar_ticks, cfg.throttle_window_us, off])
        y0 = Array([cfg.tick_size, cfg.tick_size, Const(1000, 64), q])
        phase, step = ecnt[6:], ecnt[:6]
        acc_next = Signal(64)
        m.d.comb += acc_next.eq(e_acc + Mux(e_y[0], e_x, 0))     # used for steps 1..63
        # step == 0 / step == 63 as registers (decoded a cycle ahead), off the carry's path
        first, last = reg(1, "eng_first", init=1), reg(1, "eng_last")
        m.d.sync += [ecnt.eq(ecnt + 1), first.eq(step == 63), last.eq(step == 62)]
        with m.If(first):
            m.d.sync += [e_acc.eq(Mux(y0[phase][0], x0[phase], 0)),
                         e_x.eq(x0[phase] << 1), e_y.eq(y0[phase] >> 1)]
        with m.Else():
            m.d.sync += [e_acc.eq(acc_next), e_x.eq(e_x << 1), e_y.eq(e_y >> 1)]
        with m.If(last):
            with m.Switch(phase):
                for k in range(4):
                    with m.Case(k):
                        m.d.sync += prods[k].eq(acc_next)
        rounds = reg(range(3), "eng_rounds")
        with m.If((ecnt == 255) & (rounds < 2)):
            m.d.sync += rounds.eq(rounds + 1)

        take, resting, kill = reg(1, "cfg_take"), reg(1, "cfg_resting"), reg(1, "cfg_kill")
        lot_zero, size_bad = reg(1, "cfg_lot_zero"), reg(1, "cfg_size_bad")
        # one threshold register per intent compare, so that each sits beside its carry chain
        thr = [reg(signed(36), f"cfg_thr_{s}{k}") for s in "bs" for k in range(2)]
        off2 = reg(signed(64), "cfg_off2")
        col2, ncol2 = reg(signed(64), "cfg_col2"), reg(signed(66), "cfg_ncol2")
        nqoff = reg(64, "cfg_nqoff")
        win = reg(signed(64), "cfg_window")
        # position thresholds (exact): T0 = max_pos - q and its neighbours
        t0, t0m1 = reg(S66, "cfg_t0"), reg(S66, "cfg_t0m1")
        tmq, tmqm1 = reg(S66, "cfg_tmq"), reg(S66, "cfg_tmqm1")
        tpq, tpqm1 = reg(S66, "cfg_tpq"), reg(S66, "cfg_tpqm1")
        q2 = Cat(Const(0, 1), q)
        maxg = reg(signed(64), "cfg_max_gross")
        # k * lot for k = -2..2: the addends of the state candidates
        kq = {k: reg(signed(64), f"cfg_q{'m' if k < 0 else ''}{abs(k)}") for k in (-2, -1, 1, 2)}
        kq[0] = Const(0, signed(64))
        thr_n = cfg.throttle_orders
        n_r = reg(range(n_thr + 1), "cfg_thr_n")
        n_is1 = reg(1, "cfg_thr_n_is1")
        nm1 = reg(range(n_thr + 1), "cfg_thr_nm1")
        lim = 1 << 34

        def clamp(v):
            return Mux(v > lim, lim, Mux(v < -lim, -lim, v))

        mp = cfg.max_position
        m.d.sync += [
            take.eq(cfg.price_policy == spec.POLICY_TAKE),
            resting.eq(cfg.fill_model == spec.FILL_RESTING),
            kill.eq(cfg.kill_switch != 0),
            lot_zero.eq(q == 0),
            size_bad.eq(q > cfg.max_order_size),
            *(thr[k].eq(clamp(cfg.buy_threshold)) for k in (0, 1)),
            *(thr[k].eq(clamp(cfg.sell_threshold)) for k in (2, 3)),
            off2.eq(Cat(Const(0, 1), off[:63]).as_signed()),
            col2.eq(Cat(Const(0, 1), ctk[:63]).as_signed()),
            ncol2.eq(-col2),
            nqoff.eq(-qoff),
            win.eq(window.as_signed()),
            t0.eq(mp - q), t0m1.eq(t0 - 1), tmq.eq(t0 - q), tmqm1.eq(tmq - 1),
            tpq.eq(mp), tpqm1.eq(mp - 1),
            maxg.eq(cfg.max_gross_notional),
            n_r.eq(thr_n[:len(n_r)]), n_is1.eq(thr_n == 1), nm1.eq(n_r - 1),
        ]
        m.d.sync += [kq[1].eq(q), kq[2].eq(q2), kq[-1].eq(-kq[1]), kq[-2].eq(-kq[2])]

        # ------------------------------------------------------------ handshake
        clearing = Signal(init=1)
        clr_addr = reg(loc_bits, "clr_addr")
        clr_done = reg(1, "clr_done")
        sk_valid = reg(1, "skid_valid")
        adv = Signal()                                # the whole pipeline advances
        m.d.comb += [adv.eq(~sk_valid),
                     self.i.ready.eq(adv & ~clearing),
                     self.clearing.eq(clearing),
                     self.cfg_error.eq((thr_n < 1) | (thr_n > n_thr))]
        with m.If(clearing):
            m.d.sync += clr_addr.eq(clr_addr + 1)
            with m.If(clr_addr == self._n_loc - 1):
                m.d.sync += clr_done.eq(1)
            with m.If(clr_done & (rounds == 2)):
                m.d.sync += clearing.eq(0)

        # ------------------------------------------------------------ locate memory
        SW = 3 * 64
        m.submodules.loc_mem = loc_mem = Memory(shape=unsigned(SW), depth=self._n_loc, init=[])
        rd = loc_mem.read_port()
        wr = loc_mem.write_port()
        wb_valid, wb_loc, wb_st = reg(1, "wb_valid"), reg(loc_bits, "wb_loc"), reg(SW, "wb_st")

        def parts(v):
            return v[:64].as_signed(), v[64:128].as_signed(), v[128:192].as_signed()

        p = self.i.payload
        a, b = p.best_ask, p.best_bid
        loc0 = p.stock_locate[:loc_bits]
        m.d.comb += [rd.addr.eq(loc0), rd.en.eq(adv),
                     wr.addr.eq(Mux(clearing, clr_addr, wb_loc)),
                     wr.data.eq(Mux(clearing, 0, wb_st)),
                     wr.en.eq(clearing | wb_valid)]

        # ------------------------------------------------------------ stage 0 -> S1
        s_dn, s_fl, s_up = (p.scores[k] for k in (spec.CLASS_DOWN, spec.CLASS_FLAT,
                                                  spec.CLASS_UP))
        v1, t1_ = reg(1, "s1_valid"), reg(64, "s1_t")
        seq1, loc1 = reg(64, "s1_seq"), reg(16, "s1_loc")
        bq1 = reg(1, "s1_bad_quote")
        d1 = [reg(signed(34), f"s1_d{k}") for k in range(4)]
        bpx1, spx1 = reg(signed(64), "s1_bpx"), reg(signed(64), "s1_spx")
        x1 = reg(signed(34), "s1_spread")
        tw1 = reg(S66, "s1_tw")
        pp1 = {(s, k): reg(32, f"s1_p{s}{k}") for s in "ab" for k in range(4)}
        fh1, fd1 = reg(1, "s1_fwd_hit"), reg(SW, "s1_fwd_st")
        with m.If(adv):
            m.d.sync += [
                v1.eq(self.i.valid & ~clearing), t1_.eq(p.timestamp), seq1.eq(p.seq),
                loc1.eq(p.stock_locate),
                bq1.eq((b == 0) | (a == 0) | (b > a)),
                d1[0].eq(s_up - s_dn), d1[1].eq(s_up - s_fl),
                d1[2].eq(s_dn - s_up), d1[3].eq(s_dn - s_fl),
                bpx1.eq(_s64(Mux(take, a, b) + off)),
                spx1.eq(_s64(Mux(take, b, a) - off)),
                x1.eq(Mux(take, a, b) - Mux(take, b, a)),
                tw1.eq(p.timestamp.as_signed() + win),
                fh1.eq(wb_valid & (wb_loc == loc0)), fd1.eq(wb_st),
            ]
            for s, base in (("a", a), ("b", b)):
                for k, (x, y) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
                    m.d.sync += pp1[s, k].eq(base[16 * x:16 * x + 16] * q[16 * y:16 * y + 16])

        # ------------------------------------------------------------ S1 -> S2
        v2, t2, seq2, loc2 = reg(1, "s2_valid"), reg(64, "s2_t"), reg(64, "s2_seq"), \
            reg(16, "s2_loc")
        bq2, buy2, sell2 = reg(1, "s2_bad_quote"), reg(1, "s2_buy"), reg(1, "s2_sell")
        badb2, bads2 = reg(1, "s2_bad_b"), reg(1, "s2_bad_s")
        bpx2, spx2 = reg(signed(64), "s2_bpx"), reg(signed(64), "s2_spx")
        dev2 = reg(signed(64), "s2_dev")
        tw2 = reg(S66, "s2_tw")
        mid2 = {s: reg(33, f"s2_mid_{s}") for s in "bs"}
        lo2 = {s: reg(64, f"s2_lo_{s}") for s in "bs"}
        mem2, fh2, fd2 = reg(SW, "s2_mem"), reg(1, "s2_fwd_hit"), reg(SW, "s2_fwd_st")
        # S3 / S4 declared early: S1 and S2 compare their locates with the records ahead
        v3, loc3 = reg(1, "s3_valid"), reg(16, "s3_loc")
        v4, loc4 = reg(1, "s4_valid"), reg(16, "s4_loc")
        # the record two ahead (in S4 now, decided when this one enters S3) / three ahead
        # (in the write-back register then) has this record's locate
        same2_2, hit3_2 = reg(1, "s2_same2"), reg(1, "s2_hit3")
        # the record one ahead (now in S2, in S3 when this one is in S2) has this locate
        same1_2 = reg(1, "s2_same1")
        # four parallel compares (one carry chain each); buy and sell are one LUT of the four bits
        ge = [~_slt(d1[k], thr[k], 36) for k in range(4)]
        is_buy = ge[0] & ge[1]
        is_sell = ~(ge[0] & ge[1]) & ge[2] & ge[3]
        hit4 = wb_valid & (wb_loc == loc1[:loc_bits])
        with m.If(adv):
            m.d.sync += [
                v2.eq(v1), t2.eq(t1_), seq2.eq(seq1), loc2.eq(loc1), bq2.eq(bq1),
                buy2.eq(is_buy), sell2.eq(is_sell),
                badb2.eq((bpx1 <= 0) | (bpx1 > spec.MAX_ORDER_PRICE)),
                bads2.eq((spx1 <= 0) | (spx1 > spec.MAX_ORDER_PRICE)),
                bpx2.eq(bpx1), spx2.eq(spx1),
                dev2.eq(_s64(x1 + off2)),
                tw2.eq(tw1),
                mem2.eq(rd.data),
                fh2.eq(hit4 | fh1), fd2.eq(Mux(hit4, wb_st, fd1)),
                same2_2.eq(v3 & (loc3[:loc_bits] == loc1[:loc_bits])),
                same1_2.eq(v2 & (loc2[:loc_bits] == loc1[:loc_bits])),
                hit3_2.eq(v4 & (loc4[:loc_bits] == loc1[:loc_bits])),
            ]
            # notional of each side: q * base (+/-) q * offset, as lo + (mid << 16)
            for s, first, pm in (("b", "a", qoff), ("s", "b", nqoff)):
                other = "b" if first == "a" else "a"

                def pick(k):
                    return Mux(take, pp1[first, k], pp1[other, k])
                m.d.sync += [mid2[s].eq(pick(1) + pick(2)),
                             lo2[s].eq((Cat(pick(0), pick(3)) + pm)[:64])]

        # ------------------------------------------------------------ S2 -> S3
        t3, seq3 = reg(64, "s3_t"), reg(64, "s3_seq")
        buy3, intent3 = reg(1, "s3_buy"), reg(8, "s3_intent")
        price3, shares3 = reg(signed(64), "s3_price"), reg(32, "s3_shares")
        bq3, bo3, col3 = reg(1, "s3_bad_quote"), reg(1, "s3_bad_order"), reg(1, "s3_collar")
        n3, nn3 = reg(64, "s3_n"), reg(64, "s3_nn")
        tw3 = reg(S66, "s3_tw")
        mem3 = reg(SW, "s3_mem")
        x3 = reg(signed(64), "s3_x")                  # operand of the position check
        th_a3, th_b3 = reg(S66, "s3_th_a"), reg(S66, "s3_th_b")
        comps = ("pos", "ob", "os")
        hyps = ("a0", "a1", "b0", "b1")   # hypothesis, then whether this record is approved
        add3 = {(c, hy): reg(signed(64), f"s3_add_{c}_{hy}") for c in comps for hy in hyps[1:]}
        # the decided state of the record two ahead (S4, combinational: defined there)
        new_st = Signal(SW)
        fwd = Signal(SW)
        m.d.comb += fwd.eq(Mux(same2_2, new_st, Mux(hit3_2, wb_st, Mux(fh2, fd2, mem2))))

        def xsel(v, is_buy):
            """Position-check operand of a state word: FILL_IMMEDIATE compares the position
            (``~position`` for a sell, so both sides compare with ``>``), FILL_RESTING the open
            orders of the order's side."""
            pos_, ob_, os_ = parts(v)
            return Mux(resting, Mux(is_buy, ob_, os_), Mux(is_buy, pos_, ~pos_))

        # what S3 / S4 will hold after this edge: the record ahead is the one now in S3
        same1_n = same1_2
        th_a_n = Mux(~resting & ~buy2, t0m1, t0)
        th_b_imm = Mux(buy2, Mux(buy3, tmq, tpq), Mux(buy3, tpqm1, tmqm1))
        th_b_rest = Mux(buy2 == buy3, tmq, t0)

        def addends(prev, mine):
            """State addends (pos, ob, os) if the record ahead (``prev``, when of the same
            locate) and this one (``mine``) are approved."""
            ups = [c for c in ((same1_n & buy3) if prev else None, buy2 if mine else None)
                   if c is not None]
            dns = [c for c in ((same1_n & ~buy3) if prev else None, ~buy2 if mine else None)
                   if c is not None]
            n_up = sum((u.as_unsigned() for u in ups), Const(0, 2))
            n_dn = sum((d.as_unsigned() for d in dns), Const(0, 2))
            net = Signal(signed(3), name=f"net_{int(prev)}{int(mine)}")
            m.d.comb += net.eq(n_up - n_dn)
            pos_a = kq[0]
            for k in (-2, -1, 1, 2):
                pos_a = Mux(net == k, kq[k], pos_a)
            ob_a = Mux(n_up == 2, kq[2], Mux(n_up == 1, kq[1], kq[0]))
            os_a = Mux(n_dn == 2, kq[2], Mux(n_dn == 1, kq[1], kq[0]))
            return (Mux(resting, 0, pos_a), Mux(resting, ob_a, 0), Mux(resting, os_a, 0))

        lo = Mux(buy2, lo2["b"], lo2["s"])
        mid = Cat(Const(0, 16), Mux(buy2, mid2["b"], mid2["s"]))[:64]
        cs_s, cs_c = _csa(lo, mid, n3, 64)
        with m.If(adv):
            m.d.sync += [
                v3.eq(v2), t3.eq(t2), seq3.eq(seq2), loc3.eq(loc2), buy3.eq(buy2),
                intent3.eq(Mux(buy2, spec.INTENT_BUY,
                               Mux(sell2, spec.INTENT_SELL, spec.INTENT_NONE))),
                price3.eq(Mux(buy2, bpx2, Mux(sell2, spx2, 0))),
                shares3.eq(Mux(buy2 | sell2, q, 0)),
                bq3.eq(bq2), bo3.eq(lot_zero | Mux(buy2, badb2, bads2)),
                col3.eq((dev2 > col2) | (dev2 < ncol2)),
                n3.eq((lo + mid)[:64]), nn3.eq((cs_s + cs_c)[:64]),
                tw3.eq(tw2),
                mem3.eq(fwd), x3.eq(xsel(fwd, buy2)),
                th_a3.eq(th_a_n),
                th_b3.eq(Mux(same1_n, Mux(resting, th_b_rest, th_b_imm), th_a_n)),
            ]
            for hy, prev, mine in (("a1", False, True), ("b0", True, False),
                                   ("b1", True, True)):
                for c, v in zip(comps, addends(prev, mine)):
                    m.d.sync += add3[c, hy].eq(v)

        # ------------------------------------------------------------ S3 -> S4 (compares)
        # Every stateful check of the record in S3 is evaluated twice: A if the record in S4
        # (one ahead, its verdict not known yet) is not approved, B if it is. S4 then only
        # picks one with the previous verdict (a register).
        t4, seq4 = reg(64, "s4_t"), reg(64, "s4_seq")
        buy4, intent4 = reg(1, "s4_buy"), reg(8, "s4_intent")
        none4 = reg(1, "s4_none")
        price4, shares4 = reg(signed(64), "s4_price"), reg(32, "s4_shares")
        n4, tw4 = reg(64, "s4_n"), reg(S66, "s4_tw")
        act4, e_any4, e_code4 = reg(1, "s4_act"), reg(1, "s4_early_any"), reg(8, "s4_early_code")
        late_a4, late_b4 = reg(1, "s4_late_a"), reg(1, "s4_late_b")
        pa4, pb4, ga4, gb4 = (reg(1, f"s4_{k}") for k in ("pos_a", "pos_b", "gross_a",
                                                          "gross_b"))
        st4 = {(c, hy): reg(signed(64), f"s4_{c}_{hy}") for c in comps for hy in hyps}
        # gross notional / headroom after this record, both hypotheses (S4 picks one)
        gs_a4, gs_b4 = reg(signed(64), "s4_gross_a"), reg(signed(64), "s4_gross_b")
        hs_a4, hs_b4 = reg(signed(64), "s4_head_a"), reg(signed(64), "s4_head_b")

        gross = reg(signed(64), "gross")
        h = reg(signed(64), "headroom")               # max_gross_notional - gross
        heads = [reg(range(n_thr), f"ring_head{k}") for k in range(4)]   # head, +1, +2, +3
        # the window ends themselves: distributed RAM (TRELLIS_DPR16X4) with an asynchronous
        # read, so reading ring[head + 3] is one LUT level, not a mux tree over registers
        m.submodules.ring = ring = Memory(shape=S66, depth=max(n_thr, 2), init=[])
        ring_w = ring.write_port()
        ring_r = ring.read_port(domain="comb")
        # ring[head], ring[head + 1], ring[head + 2] (mod N), kept as registers; r_be is
        # the oldest window end if the record in S4 is approved (r_b, or tw4 when N = 1)
        r_a, r_b, r_c = reg(S66, "ring_a"), reg(S66, "ring_b"), reg(S66, "ring_c")
        r_be = reg(S66, "ring_b_eff")
        count = reg(range(n_thr + 1), "ring_count")
        full = reg(1, "ring_full")
        # the ring is full once the record in S4 is approved: full | (count == N - 1), kept as
        # a register so that the late check is one LUT after its compares
        full_b = reg(1, "ring_full_b")

        pos, ob, os_ = parts(mem3)
        pa, pb = Signal(), Signal()
        ga, gb = Signal(), Signal()
        ta, tb = Signal(), Signal()
        t3s = t3.as_signed()
        m.d.comb += [
            pa.eq(_slt(th_a3, x3, 66)), pb.eq(_slt(th_b3, x3, 66)),
            ga.eq(_slt(h, Cat(n3, Const(0, 1)), 65)),
            gb.eq(_slt(h, Cat(nn3, Const(0, 1)), 65)),
            ta.eq(_slt(t3s, r_a, 66)), tb.eq(_slt(t3s, r_be, 66)),
        ]
        early = [("bad_quote", bq3), ("bad_order", bo3), ("max_order_size", size_bad),
                 ("price_collar", col3)]
        ef = Cat(*[c for _, c in early]).any()
        code = 0
        for name, cond in reversed(early):
            code = Mux(cond, _R[name], code)
        act3 = v3 & (intent3 != spec.INTENT_NONE)
        # one LUT after the compares: the late checks of each hypothesis
        late_a = pa | ga | (full & ta)
        late_b = pb | gb | (full_b & tb)
        e_any = kill | ef
        e_code = Mux(kill, _R["kill_switch"], code)

        with m.If(adv):
            m.d.sync += [
                v4.eq(v3), loc4.eq(loc3), t4.eq(t3), seq4.eq(seq3), buy4.eq(buy3),
                intent4.eq(intent3), none4.eq(intent3 == spec.INTENT_NONE),
                price4.eq(price3), shares4.eq(shares3), n4.eq(n3), tw4.eq(tw3),
                act4.eq(act3 & ~e_any), e_any4.eq(e_any), e_code4.eq(e_code),
                late_a4.eq(late_a), late_b4.eq(late_b),
                pa4.eq(pa), pb4.eq(pb), ga4.eq(ga), gb4.eq(gb),
                gs_a4.eq(_s64(gross + n3)), gs_b4.eq(_s64(gross + nn3)),
                hs_a4.eq(_s64(h - n3)), hs_b4.eq(_s64(h - nn3)),
            ]
            for c, v in zip(comps, (pos, ob, os_)):
                m.d.sync += st4[c, "a0"].eq(v)
                for hy in hyps[1:]:
                    m.d.sync += st4[c, hy].eq(_s64(v + add3[c, hy]))

        # ------------------------------------------------------------ S4: the verdict
        ok_prev = reg(1, "ok_prev")
        urn = reg(32, "urn", init=self._urn0)
        ok = Signal()
        reason = Signal(8)
        ok_a4, ok_b4 = act4 & ~late_a4, act4 & ~late_b4

        def late_code(pf, gf):
            return Mux(e_any4, e_code4, Mux(pf, _R["max_position"], Mux(
                gf, _R["max_gross_notional"], _R["throttle"])))
        m.d.comb += [ok.eq(Mux(ok_prev, ok_b4, ok_a4)),
                     reason.eq(Mux(ok_prev, late_code(pb4, gb4), late_code(pa4, ga4)))]
        new = {}
        for c in comps:
            new[c] = Signal(signed(64), name=f"new_{c}")
            m.d.comb += new[c].eq(Mux(ok_prev, Mux(ok_b4, st4[c, "b1"], st4[c, "b0"]),
                                      Mux(ok_a4, st4[c, "a1"], st4[c, "a0"])))
        m.d.comb += new_st.eq(Cat(new["pos"], new["ob"], new["os"]))
        # the record ahead, if approved, has already been added to gross / taken from h
        gross_add = Mux(ok_prev, gs_b4, gs_a4)
        h_sub = Mux(ok_prev, hs_b4, hs_a4)
        new_gross = Mux(ok, gross_add, gross)

        def nxt(v):
            return Mux(v + 1 >= n_r, 0, v + 1)

        r_b_next = Mux(ok, Mux(heads[2] == heads[0], tw4, r_c), r_b)
        with m.If(clearing):
            m.d.sync += [heads[0].eq(0), count.eq(0), full.eq(0), full_b.eq(n_is1)]
            m.d.sync += [heads[k].eq(nxt(heads[k - 1])) for k in range(1, 4)]
        m.d.comb += [ring_w.addr.eq(heads[0]), ring_w.data.eq(tw4), ring_w.en.eq(adv & ok),
                     ring_r.addr.eq(heads[3])]
        with m.If(adv):
            m.d.sync += [ok_prev.eq(ok),
                         wb_valid.eq(v4), wb_loc.eq(loc4[:loc_bits]), wb_st.eq(new_st),
                         r_be.eq(Mux(n_is1, tw3, r_b_next))]
            with m.If(~v4):
                m.d.sync += h.eq(_s64(maxg - gross))
            with m.Elif(ok):
                m.d.sync += h.eq(h_sub)
            with m.If(ok):
                m.d.sync += [
                    gross.eq(gross_add), urn.eq(urn + 1),
                    heads[0].eq(heads[1]), heads[1].eq(heads[2]), heads[2].eq(heads[3]),
                    heads[3].eq(nxt(heads[3])),
                    r_a.eq(Mux(n_is1, tw4, r_b)),
                    r_b.eq(r_b_next),
                    r_c.eq(Mux(heads[3] == heads[0], tw4, ring_r.data)),
                ]
                with m.If(~full):
                    m.d.sync += [count.eq(count + 1), full.eq(count == nm1),
                                 full_b.eq((count == nm1) | (count + 1 == nm1))]
        m.d.comb += self.gross_notional.eq(gross)
        none = none4
        new_pos, new_ob, new_os = new["pos"], new["ob"], new["os"]

        # ------------------------------------------------------------ output + skid buffer
        rec = Signal(DECISION_LAYOUT)
        side = Mux(buy4, spec.INTENT_SIDE[spec.INTENT_BUY], spec.INTENT_SIDE[spec.INTENT_SELL])
        m.d.comb += [
            rec.timestamp.eq(t4), rec.seq.eq(seq4), rec.price.eq(price4),
            rec.shares.eq(shares4), rec.stock_locate.eq(loc4), rec.intent.eq(intent4),
            rec.verdict.eq(Mux(none, spec.VERDICT_NONE,
                               Mux(ok, spec.VERDICT_APPROVED, spec.VERDICT_REJECTED))),
            rec.reason.eq(Mux(none | ok, spec.REASON_NONE, reason)),
            rec.side.eq(Mux(none, 0, side)),
            rec.user_ref_num.eq(Mux(ok, urn, 0)),
            rec.position.eq(new_pos), rec.open_buy.eq(new_ob), rec.open_sell.eq(new_os),
            rec.gross_notional.eq(new_gross),
        ]
        skid_output(m, self.o, rec, v4, sk_valid)

        # ------------------------------------------------------------ counters
        wb_new, wb_none, wb_ok = reg(1, "wb_new"), reg(1, "wb_none"), reg(1, "wb_ok")
        wb_reason = reg(8, "wb_reason")
        m.d.sync += [wb_new.eq(adv & v4), wb_none.eq(none), wb_ok.eq(ok),
                     wb_reason.eq(reason)]
        with m.If(wb_new):
            with m.If(wb_none):
                m.d.sync += self.no_intent.eq(self.no_intent + 1)
            with m.Elif(wb_ok):
                m.d.sync += self.approved.eq(self.approved + 1)
            with m.Else():
                with m.Switch(wb_reason):
                    for r in spec.REJECT_REASONS:
                        with m.Case(_R[r]):
                            ctr = getattr(self, f"rejected_{r}")
                            m.d.sync += ctr.eq(ctr + 1)
        return m
