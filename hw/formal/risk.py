"""Formal properties of the risk gate (:class:`hftaccel.rtl.risk.RiskGate`).

The harness feeds the gate free scored updates (timestamps non-decreasing, as the gate's
contract says) under a free sink, and checks every decision that leaves it against a shadow
model that only reads the gate's inputs and outputs:

* in order, one decision per update: ``seq``, ``timestamp`` and ``stock_locate`` of each
  decision are those of the update accepted in the same position (nothing lost, duplicated
  or reordered across the pipeline and its skid buffer);
* the output follows the AXI-Stream rules;
* every approved order: ``shares <= max_order_size``; a sane quote (both sides, not crossed)
  and price (``1 .. MAX_ORDER_PRICE``); ``|2 * price - (bid + ask)| <= 2 * collar * tick``;
  the worst-case position of its locate (shadowed per locate from the approved orders) stays
  within ``max_position``; the committed notional (shadowed: the sum of ``shares * price``)
  stays within ``max_gross_notional``; at most ``throttle_orders`` approved orders in any
  ``throttle_window_us`` window; and the kill switch was off at some cycle while the update
  was in flight (kill on from its acceptance to its decision means it is not approved);
* the gate's own state fields (``position``, ``open_buy``, ``open_sell``, ``gross_notional``)
  equal the shadow's.

Parameters are small where the gate allows it (2 locate entries, a 2-order throttle ring), the
decision thresholds, policy, fill model, limits and throttle count are free constants, the kill
switch is free every cycle. The products the gate computes from its configuration after reset
(offset and collar in price units, the window in ns, lot times offset) need the five fields
``lot_size``, ``tick_size``, ``price_offset_ticks``, ``collar_ticks`` and
``throttle_window_us`` to be fixed (:data:`CONFIGS`): the proof starts where the gate's
512-cycle clearing round ends, with those products in place (Yosys ``setattr`` of their
initial values), which is the state reset leads to for that configuration.
"""

from __future__ import annotations

from amaranth.hdl import Array, Assert, Assume, Elaboratable, Module, Mux, Signal, signed

from hftaccel.rtl.risk import RiskGate
from hftaccel.spec import risk as spec

from .props import free, free_const, harness_domain, stream_source_rules

__all__ = ["CONFIGS", "RiskHarness", "init_script"]

#: The fixed configuration fields of each proof configuration.
CONFIGS = {
    "take_lot100": dict(lot_size=100, tick_size=100, price_offset_ticks=1, collar_ticks=10,
                        throttle_window_us=1),
    "lot1_wide": dict(lot_size=1, tick_size=1, price_offset_ticks=0, collar_ticks=3,
                      throttle_window_us=2),
}

_FIFO = 8       # > updates in flight: 5 pipeline stages, the output register, the skid


class RiskHarness(Elaboratable):
    """The gate (``num_locates`` entries, ``max_throttle`` ring) under the shadow model.

    Parameters
    ----------
    fixed : dict
        Values of the five fixed configuration fields (see :data:`CONFIGS`).
    """

    def __init__(self, fixed: dict, *, num_locates: int = 2, max_throttle: int = 2,
                 value_bits: int | None = 12, vacuity: bool = False):
        self.fixed = dict(fixed)
        self.n_loc, self.n_thr = num_locates, max_throttle
        self.value_bits = value_bits
        self.vacuity = vacuity

    def elaborate(self, platform):
        m = Module()
        started = harness_domain(m)
        m.submodules.dut = dut = RiskGate(num_locates=self.n_loc, max_throttle=self.n_thr)
        fx = self.fixed
        lot, tick = fx["lot_size"], fx["tick_size"]
        window_ns = fx["throttle_window_us"] * 1000
        collar2 = 2 * fx["collar_ticks"] * tick

        # ------------------------------------------------------------ configuration
        cfg = dut.cfg
        for name in spec.RISK_CONFIG_DTYPE.names:
            if name in fx:
                m.d.comb += getattr(cfg, name).eq(fx[name])
            elif name == "kill_switch":
                m.d.comb += cfg.kill_switch.eq(free(m, 1, "f_kill"))
            else:
                m.d.comb += getattr(cfg, name).eq(free_const(m, signed(64), f"f_cfg_{name}"))
        m.d.comb += [
            Assume(cfg.price_policy[1:] == 0), Assume(cfg.fill_model[1:] == 0),
            Assume((cfg.throttle_orders >= 1) & (cfg.throttle_orders <= self.n_thr)),
            Assume(cfg.max_order_size >= 0), Assume(cfg.max_position >= 0),
            Assume(cfg.max_gross_notional >= 0),
        ]
        vb = self.value_bits
        if vb is not None:      # small values on the full-width datapath (see the module doc)
            lim = 1 << vb
            for name in ("buy_threshold", "sell_threshold"):
                v = getattr(cfg, name)
                m.d.comb += Assume((v < lim) & (v > -lim))
            for name in ("max_order_size", "max_position", "max_gross_notional"):
                m.d.comb += Assume(getattr(cfg, name) < (lim * lim if name.endswith("notional")
                                                          else lim))
        kill = cfg.kill_switch[0]
        resting = cfg.fill_model[0]

        # ------------------------------------------------------------ input (free, in order)
        i, o = dut.i, dut.o
        p = i.payload
        m.d.comb += [i.valid.eq(free(m, 1, "f_i_valid")), o.ready.eq(free(m, 1, "f_o_ready")),
                     p.timestamp.eq(free(m, 64, "f_t")), p.seq.eq(free(m, 64, "f_seq")),
                     p.best_bid.eq(free(m, 32, "f_bid")), p.best_ask.eq(free(m, 32, "f_ask")),
                     p.stock_locate.eq(free(m, 16, "f_loc"))]
        for k in range(3):
            m.d.comb += p.scores[k].eq(free(m, signed(32), f"f_score{k}"))
        if vb is not None:
            m.d.comb += [Assume(p.best_bid < (1 << vb)), Assume(p.best_ask < (1 << vb)),
                         Assume(p.timestamp < (1 << (vb + 8))),
                         *(Assume((p.scores[k] < (1 << vb)) & (p.scores[k] > -(1 << vb)))
                           for k in range(3))]
        last_t = Signal(64, name="f_last_t")
        m.d.comb += Assume(p.timestamp < (1 << 62))
        m.d.comb += Assume(p.timestamp >= last_t)
        take_in = i.valid & i.ready
        with m.If(take_in):
            m.d.sync += last_t.eq(p.timestamp)

        # scoreboard of updates in flight: what each decision must echo, and whether the kill
        # switch has been on in every cycle since the update was accepted
        f_seq = Array(Signal(64, name=f"f_q_seq{k}") for k in range(_FIFO))
        f_t = Array(Signal(64, name=f"f_q_t{k}") for k in range(_FIFO))
        f_loc = Array(Signal(16, name=f"f_q_loc{k}") for k in range(_FIFO))
        f_bid = Array(Signal(32, name=f"f_q_bid{k}") for k in range(_FIFO))
        f_ask = Array(Signal(32, name=f"f_q_ask{k}") for k in range(_FIFO))
        f_kill = [Signal(name=f"f_q_kill{k}") for k in range(_FIFO)]
        f_kill_a = Array(f_kill)
        wp, rp = Signal(range(_FIFO), name="f_wp"), Signal(range(_FIFO), name="f_rp")
        inflight = Signal(range(_FIFO + 1), name="f_inflight")
        for k in range(_FIFO):
            m.d.sync += f_kill[k].eq(f_kill[k] & kill)
        with m.If(take_in):
            m.d.sync += [f_seq[wp].eq(p.seq), f_t[wp].eq(p.timestamp),
                         f_loc[wp].eq(p.stock_locate), f_bid[wp].eq(p.best_bid),
                         f_ask[wp].eq(p.best_ask), f_kill_a[wp].eq(kill), wp.eq(wp + 1)]
        take_out = o.valid & o.ready
        with m.If(take_out):
            m.d.sync += rp.eq(rp + 1)
        m.d.sync += inflight.eq(inflight + take_in - take_out)
        m.d.comb += Assert(inflight < _FIFO)

        # ------------------------------------------------------------ shadow state
        S = signed(68)
        pos = Array(Signal(S, name=f"f_pos{k}") for k in range(self.n_loc))
        ob = Array(Signal(S, name=f"f_ob{k}") for k in range(self.n_loc))
        os_ = Array(Signal(S, name=f"f_os{k}") for k in range(self.n_loc))
        gross = Signal(S, name="f_gross")
        hist = [Signal(64, name=f"f_thr_t{k}") for k in range(self.n_thr)]   # newest first
        n_appr = Signal(range(self.n_thr + 1), name="f_n_appr")

        r = o.payload
        slot = r.stock_locate[:max(1, (self.n_loc - 1).bit_length())]
        approved = take_out & (r.verdict == spec.VERDICT_APPROVED)
        buy = r.intent == spec.INTENT_BUY
        price = Signal(S, name="f_price")
        m.d.comb += price.eq(r.price)
        notional = Signal(S, name="f_notional")
        m.d.comb += notional.eq(price * lot)
        new_pos = Signal(S, name="f_new_pos")
        new_ob, new_os = Signal(S, name="f_new_ob"), Signal(S, name="f_new_os")
        new_gross = Signal(S, name="f_new_gross")
        q = Mux(approved, lot, 0)
        m.d.comb += [
            new_pos.eq(pos[slot] + Mux(resting, 0, Mux(buy, q, -q))),
            new_ob.eq(ob[slot] + Mux(resting & buy, q, 0)),
            new_os.eq(os_[slot] + Mux(resting & ~buy, q, 0)),
            new_gross.eq(gross + Mux(approved, notional, 0)),
        ]
        nth = Array(hist)[(cfg.throttle_orders - 1)[:max(1, (self.n_thr - 1).bit_length())]]
        mid2 = Signal(S, name="f_mid2")
        with m.If(take_out):
            m.d.comb += [
                Assert(r.seq == f_seq[rp]), Assert(r.timestamp == f_t[rp]),
                Assert(r.stock_locate == f_loc[rp]),
                Assert(r.position == new_pos), Assert(r.open_buy == new_ob),
                Assert(r.open_sell == new_os), Assert(r.gross_notional == new_gross),
            ]
            m.d.comb += mid2.eq(f_bid[rp] + f_ask[rp])
            with m.If(approved):
                m.d.comb += [
                    Assert(r.shares == lot),
                    Assert(r.shares <= cfg.max_order_size),
                    Assert((f_bid[rp] != 0) & (f_ask[rp] != 0) & (f_bid[rp] <= f_ask[rp])),
                    Assert((price > 0) & (price <= spec.MAX_ORDER_PRICE)),
                    Assert(2 * price - mid2 <= collar2), Assert(mid2 - 2 * price <= collar2),
                    Assert(Mux(buy, new_pos + new_ob, -new_pos + new_os) <= cfg.max_position),
                    Assert(new_gross <= cfg.max_gross_notional),
                    Assert((n_appr < cfg.throttle_orders) | (r.timestamp - nth >= window_ns)),
                    Assert(~f_kill_a[rp]),
                ]
                if self.vacuity:    # must FAIL: an approval is reachable within the bound
                    m.d.comb += Assert(0)
                m.d.sync += [hist[0].eq(r.timestamp),
                             *(hist[k].eq(hist[k - 1]) for k in range(1, self.n_thr))]
                with m.If(n_appr < self.n_thr):
                    m.d.sync += n_appr.eq(n_appr + 1)
            m.d.sync += [pos[slot].eq(new_pos), ob[slot].eq(new_ob), os_[slot].eq(new_os),
                         gross.eq(new_gross)]
        stream_source_rules(m, started, o, "o")
        m.d.comb += Assert(~dut.cfg_error)
        return m


def init_script(fixed: dict, path: str = "h.dut") -> str:
    """Yosys commands that start the gate where its clearing round ends for configuration
    ``fixed``: both product rounds done and the four products in place (the locate memory is
    cleared from reset on; two cycles of clearing remain for the registers that follow the
    configuration)."""
    off = fixed["price_offset_ticks"] * fixed["tick_size"]
    prods = [off, fixed["collar_ticks"] * fixed["tick_size"], fixed["throttle_window_us"] * 1000,
             fixed["lot_size"] * off]
    lines = [f"setattr -set init 2'b10 w:{path}.eng_rounds"]
    for k, v in enumerate(prods):
        lines.append(f"setattr -set init 64'b{v & (1 << 64) - 1:064b} w:{path}.eng_p{k}")
    return "\n".join(lines)
