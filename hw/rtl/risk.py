"""Decision stage and pre-trade risk gate: scored book update in, one decision record out.

Source: :mod:`hftaccel.spec.risk` (config fields, intent / verdict / reason codes, record
dtypes, check priority) and the golden model :mod:`hftaccel.golden.risk` (``decide`` then
``gate``), which this block reproduces bit for bit. Every width is read from the spec's dtypes.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hftaccel.spec import risk as spec

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
# the notional product below is 32 x 31 bits: every valid order price must fit in 31 bits
assert 0 < spec.MAX_ORDER_PRICE < 1 << 31
_I64 = 64


def _s64(v):
    """Wrap to int64 as the golden model's NumPy/Numba arithmetic does."""
    return v[:_I64].as_signed()


class RiskGate(wiring.Component):
    """Golden ``decide`` + ``gate`` in two pipeline stages, one record a cycle.

    Stage 1 (the cycle an update is accepted) computes the intent, price and size and every
    check that needs no state (bad quote, bad order, order size, price collar) and the order's
    notional. Stage 2 reads the locate's state (asynchronous read of the locate memory), adds
    the kill switch, position, gross-notional and throttle checks, priority-encodes the first
    failing one in :data:`hftaccel.spec.risk.REJECT_REASONS` order, updates the state and
    registers the decision. The only state lives in stage 2, so back-to-back updates of one
    locate need no forwarding. A decision is presented two cycles after its update is accepted.

    After reset the locate memory is cleared, one locate a cycle (``num_locates`` cycles with
    ``i.ready`` low); the throttle ring needs no clearing (its fill count resets).

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
        Scored book updates, timestamps non-decreasing.
    o : Out(stream.Signature(DECISION_LAYOUT))
        One :data:`~hftaccel.spec.risk.DECISION_DTYPE` record per update, state fields after
        the update was applied.
    cfg : In(CONFIG_LAYOUT)
        Config registers (:class:`hftaccel.spec.risk.RiskConfig` fields). ``kill_switch`` is
        read live by every record (the golden ``set_kill_switch``); ``throttle_orders`` and
        ``fill_model`` must be held from reset on (the golden state captures them).
        Timestamps going backwards and UserRefNum wrap-around are not checked (the golden
        ``gate`` raises on them); there are no ports for the router's fill / cancel reports
        (the golden ``on_fill`` / ``on_cancel``), so with ``FILL_RESTING`` open orders only
        accumulate.
    cfg_error : Out(1)
        ``cfg.throttle_orders`` is outside 1..``max_throttle``.
    clearing : Out(1)
        The locate memory is being cleared after reset.
    gross_notional : Out(signed(64))
        Committed notional, 1/10,000 USD.
    approved, no_intent : Out(32)
        Approved orders; updates that produced no intent.
    rejected_<reason> : Out(32)
        Rejections counted by reason, one per :data:`~hftaccel.spec.risk.REJECT_REASONS`.
    """

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

        # ------------------------------------------------------------ stage 1: decide
        p = self.i.payload
        s_dn, s_fl, s_up = (p.scores[k] for k in (spec.CLASS_DOWN, spec.CLASS_FLAT,
                                                  spec.CLASS_UP))
        m_up = s_up - Mux(s_dn > s_fl, s_dn, s_fl)
        m_dn = s_dn - Mux(s_up > s_fl, s_up, s_fl)
        is_buy = Signal()
        is_sell = Signal()
        m.d.comb += [is_buy.eq(m_up >= cfg.buy_threshold),
                     is_sell.eq(~is_buy & (m_dn >= cfg.sell_threshold))]
        take = cfg.price_policy == spec.POLICY_TAKE
        # Products of configuration registers only (static while orders flow) are registered:
        # a 64x64 multiply stays off the per-update path. They follow a register write on the
        # next cycle; updates flow only after the locate memory is cleared at reset.
        off = Signal(signed(64))
        m.d.sync += off.eq(_s64(cfg.price_offset_ticks * cfg.tick_size))
        b, a = p.best_bid, p.best_ask
        price = Signal(signed(64))
        shares = Signal(DECISION_LAYOUT["shares"].shape)
        m.d.comb += [
            price.eq(Mux(is_buy, _s64(Mux(take, a, b) + off),
                         Mux(is_sell, _s64(Mux(take, b, a) - off), 0))),
            shares.eq(Mux(is_buy | is_sell, cfg.lot_size[:len(shares)], 0)),
        ]
        collar2 = Signal(signed(64))
        m.d.sync += collar2.eq(_s64(2 * cfg.collar_ticks * cfg.tick_size))
        dev = Signal(signed(67))
        m.d.comb += dev.eq(2 * price - (b + a))
        early = [   # stateless checks in priority order
            ("bad_quote", (b == 0) | (a == 0) | (b > a)),
            ("bad_order", (shares == 0) | (price <= 0) | (price > spec.MAX_ORDER_PRICE)),
            ("max_order_size", shares > cfg.max_order_size),
            ("price_collar", Mux(dev < 0, -dev, dev) > collar2),
        ]
        early_fail = Signal()
        early_reason = Signal(8)
        code = 0
        for name, cond in reversed(early):
            code = Mux(cond, _R[name], code)
        m.d.comb += [early_fail.eq(Cat(*[c for _, c in early]).any()),
                     early_reason.eq(code)]

        s1_valid = Signal()
        s1 = Signal(data.StructLayout({
            "timestamp": unsigned(64), "seq": unsigned(64), "price": signed(64),
            "shares": shares.shape(), "stock_locate": unsigned(16), "intent": unsigned(8),
            "early_fail": unsigned(1), "early_reason": unsigned(8), "notional": signed(64),
        }))

        # ------------------------------------------------------------ stage 2: gate
        m.submodules.loc_mem = loc_mem = Memory(shape=STATE_LAYOUT, depth=self._n_loc, init=[])
        rd = loc_mem.read_port(domain="comb")
        wr = loc_mem.write_port()
        m.submodules.ring_mem = ring_mem = Memory(shape=unsigned(64), depth=self._n_thr,
                                                  init=[])
        ring_rd = ring_mem.read_port(domain="comb")
        ring_wr = ring_mem.write_port()

        gross = Signal(signed(64))
        urn = Signal(32, init=self._urn0)
        head = Signal(range(self._n_thr))
        count = Signal(range(self._n_thr + 1))
        clearing = Signal(init=1)
        clr_addr = Signal(loc_bits)

        thr_n = cfg.throttle_orders
        m.d.comb += [
            self.cfg_error.eq((thr_n < 1) | (thr_n > self._n_thr)),
            self.clearing.eq(clearing),
            self.gross_notional.eq(gross),
            rd.addr.eq(s1.stock_locate[:loc_bits]),
            ring_rd.addr.eq(head),
        ]
        st = rd.data
        q = s1.shares
        buy = s1.intent == spec.INTENT_BUY
        t = _s64(s1.timestamp)
        window = Signal(signed(64))
        m.d.sync += window.eq(_s64(cfg.throttle_window_us * 1000))
        late = [   # stateful checks in priority order
            ("max_position", Mux(buy, st.position + st.open_buy + q,
                                 st.open_sell - st.position + q) > cfg.max_position),
            ("max_gross_notional", s1.notional > cfg.max_gross_notional - gross),
            ("throttle", (count >= thr_n) & (t - ring_rd.data.as_signed() < window)),
        ]
        kill = cfg.kill_switch != 0
        code = 0
        for name, cond in reversed(late):
            code = Mux(cond, _R[name], code)
        code = Mux(s1.early_fail, s1.early_reason, code)
        code = Mux(kill, _R["kill_switch"], code)
        fail = Signal()
        reason = Signal(8)
        m.d.comb += [fail.eq(kill | s1.early_fail | Cat(*[c for _, c in late]).any()),
                     reason.eq(code)]
        none = s1.intent == spec.INTENT_NONE
        ok = Signal()
        m.d.comb += ok.eq(~none & ~fail)
        resting = cfg.fill_model == spec.FILL_RESTING
        new = Signal(STATE_LAYOUT)
        m.d.comb += [
            new.eq(st),
            new.position.eq(st.position + Mux(ok & ~resting, Mux(buy, q, -q), 0)),
            new.open_buy.eq(st.open_buy + Mux(ok & resting & buy, q, 0)),
            new.open_sell.eq(st.open_sell + Mux(ok & resting & ~buy, q, 0)),
        ]
        new_gross = Signal(signed(64))
        m.d.comb += new_gross.eq(gross + Mux(ok, s1.notional, 0))

        o_free = ~self.o.valid | self.o.ready
        adv = Signal()          # stage 2 hands its record to the output register
        m.d.comb += [adv.eq(s1_valid & o_free),
                     self.i.ready.eq(~clearing & (~s1_valid | adv))]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(adv):
            m.d.sync += s1_valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [
                s1_valid.eq(1),
                s1.timestamp.eq(p.timestamp), s1.seq.eq(p.seq), s1.price.eq(price),
                s1.shares.eq(shares), s1.stock_locate.eq(p.stock_locate),
                s1.intent.eq(Mux(is_buy, spec.INTENT_BUY,
                                 Mux(is_sell, spec.INTENT_SELL, spec.INTENT_NONE))),
                s1.early_fail.eq(early_fail), s1.early_reason.eq(early_reason),
                # 0 < price <= MAX_ORDER_PRICE < 2**31 whenever the notional is used (any other
                # price fails early, and a failed intent never reaches the notional checks or
                # the gross), so a 32 x 31-bit product is exact where it matters
                s1.notional.eq(shares * price[:31]),
            ]

        o = self.o.payload
        side = Mux(buy, spec.INTENT_SIDE[spec.INTENT_BUY], spec.INTENT_SIDE[spec.INTENT_SELL])
        with m.If(adv):
            m.d.sync += [
                self.o.valid.eq(1),
                o.timestamp.eq(s1.timestamp), o.seq.eq(s1.seq), o.price.eq(s1.price),
                o.shares.eq(s1.shares), o.stock_locate.eq(s1.stock_locate),
                o.intent.eq(s1.intent),
                o.verdict.eq(Mux(none, spec.VERDICT_NONE,
                                 Mux(ok, spec.VERDICT_APPROVED, spec.VERDICT_REJECTED))),
                o.reason.eq(Mux(none | ok, spec.REASON_NONE, reason)),
                o.side.eq(Mux(none, 0, side)),
                o.user_ref_num.eq(Mux(ok, urn, 0)),
                o.position.eq(new.position), o.open_buy.eq(new.open_buy),
                o.open_sell.eq(new.open_sell), o.gross_notional.eq(new_gross),
            ]
            with m.If(none):
                m.d.sync += self.no_intent.eq(self.no_intent + 1)
            with m.Elif(ok):
                m.d.sync += [
                    gross.eq(new_gross),
                    urn.eq(urn + 1),
                    head.eq(Mux(head + 1 >= thr_n, 0, head + 1)),
                    self.approved.eq(self.approved + 1),
                ]
                with m.If(count < thr_n):
                    m.d.sync += count.eq(count + 1)
            with m.Else():
                with m.Switch(reason):
                    for r in spec.REJECT_REASONS:
                        with m.Case(_R[r]):
                            ctr = getattr(self, f"rejected_{r}")
                            m.d.sync += ctr.eq(ctr + 1)

        m.d.comb += [
            ring_wr.addr.eq(head), ring_wr.data.eq(s1.timestamp), ring_wr.en.eq(adv & ok),
            wr.addr.eq(Mux(clearing, clr_addr, rd.addr)),
            wr.data.eq(Mux(clearing, 0, new.as_value())),
            wr.en.eq(clearing | (adv & ok)),
        ]
        with m.If(clearing):
            m.d.sync += clr_addr.eq(clr_addr + 1)
            with m.If(clr_addr == self._n_loc - 1):
                m.d.sync += clearing.eq(0)
        return m
