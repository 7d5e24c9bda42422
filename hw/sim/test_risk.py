"""cocotb testbench of ``hftaccel.rtl.risk.RiskGate`` (scored update -> decision record).

Scoreboard: the golden ``hftaccel.golden.risk.run`` over the very updates the DUT receives,
with the same :class:`~hftaccel.spec.risk.RiskConfig` (kill switch toggles applied between
segments with ``set_kill_switch``): every field of every decision record, then the rejection
counters, must match.
"""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np

import cocotb

from hftaccel.rtl.risk import CONFIG_LAYOUT, DECISION_LAYOUT, SCORED_LAYOUT, RiskGate
from hftaccel.sim.common import TB, StreamSink, StreamSource, full_run, pack, record_latency
from hftaccel.spec import risk as spec
from hftaccel.spec.risk import RiskConfig

_M64 = (1 << 64) - 1


class RiskTB(TB):
    def __init__(self, dut, *, idle=0.3, stall=0.3):
        super().__init__(dut)
        self.src = StreamSource(self, "i", SCORED_LAYOUT, idle=idle)
        self.sink = StreamSink(self, "o", DECISION_LAYOUT, stall=stall)

    def configure(self, config: RiskConfig, *, kill: int | None = None):
        rec = asdict(config)
        if kill is not None:
            rec["kill_switch"] = kill
        self.dut.cfg.value = pack(CONFIG_LAYOUT, {k: v & _M64 for k, v in rec.items()})

    async def start(self, config: RiskConfig):
        """Load ``config``, reset, and wait for the locate memory to be cleared."""
        self.configure(config)
        await self.reset()
        for _ in range(1 << 17):
            if not int(self.dut.clearing.value):
                break
            await self.cycles(1)
        assert int(self.dut.cfg_error.value) == 0

    def send(self, updates: np.ndarray):
        for u in updates:
            self.src.send_nowait({
                "timestamp": int(u["timestamp"]), "seq": int(u["seq"]),
                "best_bid": int(u["best_bid"]), "best_ask": int(u["best_ask"]),
                "scores": [int(s) & 0xFFFFFFFF for s in u["scores"]],
                "stock_locate": int(u["stock_locate"])})

    async def settle(self, timeout=200_000):
        await self.drain(self.src, timeout=timeout, tail=20, what="updates")

    def received(self) -> list:
        out = []
        while not self.sink.empty():
            out.append(self.sink.recv_nowait())
        return out


def random_updates(rng, n: int, config: RiskConfig, *, locates=(1, 2, 7, 200),
                   t0: int = 34_200_000_000_000, seq0: int = 1, burst: int = 8) -> np.ndarray:
    """Scored updates over a few locates: scores around both thresholds (and at the int32
    extremes), quotes inside and outside the collar, missing and crossed sides, prices over the
    OUCH maximum, and timestamps in bursts (gaps up to ``1/burst`` of the throttle window) and
    gaps longer than the window."""
    u = np.zeros(n, spec.SCORED_UPDATE_DTYPE)
    window = max(1, config.throttle_window_us * 1000)
    gaps = np.where(rng.random(n) < 0.8, rng.integers(0, window // burst + 1, n),
                    rng.integers(window // 2, 2 * window + 1, n))
    u["timestamp"] = t0 + np.cumsum(gaps)
    u["seq"] = seq0 + np.arange(n)
    loc = rng.choice(np.asarray(locates), n)
    u["stock_locate"] = loc
    tick = config.tick_size
    mid = 1_000_000 + (loc.astype(np.int64) % 50) * 37 * tick
    spread = rng.integers(1, 3 * max(1, config.collar_ticks) + 2, n) * tick
    bid = mid - spread // 2
    ask = bid + spread
    r = rng.random(n)
    bid = np.where(r < 0.03, 0, bid)
    ask = np.where((r >= 0.03) & (r < 0.06), 0, ask)
    bid, ask = np.where((r >= 0.06) & (r < 0.09), (ask, bid), (bid, ask))
    huge = (r >= 0.09) & (r < 0.11)
    bid = np.where(huge, spec.MAX_ORDER_PRICE - tick, bid)
    ask = np.where(huge, spec.MAX_ORDER_PRICE + tick, ask)
    u["best_bid"] = bid
    u["best_ask"] = ask
    thr = max(config.buy_threshold, config.sell_threshold)
    s = rng.integers(-2 * thr, 2 * thr + 1, (n, 3))
    ext = rng.random(n) < 0.02
    s[ext] = rng.choice([-(1 << 31), (1 << 31) - 1, 0], (int(ext.sum()), 3))
    u["scores"] = s
    return u


async def run_config(tb: RiskTB, config: RiskConfig, segments: list) -> list:
    """Reset with ``config``, send each ``(kill_switch, updates)`` segment (the kill switch set
    before it), compare every decision with golden ``run``; returns ``(cycle, decision)``."""
    from hftaccel.golden import risk as golden
    await tb.start(config)
    state = golden.RiskState(config)
    out = []
    for kill, upd in segments:
        golden.set_kill_switch(state, bool(kill))
        tb.configure(config, kill=kill)
        expected, state = golden.run(upd, config, state)
        tb.send(upd)
        await tb.settle()
        got = tb.received()
        assert len(got) == len(expected), f"{len(got)} decisions, golden {len(expected)}"
        for k, ((cyc, g), e) in enumerate(zip(got, expected)):
            for name, fld in DECISION_LAYOUT:
                w = fld.shape.width if hasattr(fld.shape, "width") else len(fld.shape)
                v = int(e[name]) & ((1 << w) - 1)
                assert g[name] == v, (f"decision {k} (seq {int(e['seq'])}, locate "
                                      f"{int(e['stock_locate'])}): {name} = {g[name]:#x}, "
                                      f"golden {v:#x}\n golden record {e}")
        out += [(c, g) for c, g in got]
    for r, c in state.rejections().items():
        got = tb.counter(f"rejected_{r}")
        assert got == c, f"rejected_{r} = {got}, golden {c}"
    assert tb.counter("approved") == state.n_approved
    assert tb.counter("gross_notional") == state.gross_notional & _M64
    assert tb.src.empty() and tb.sink.empty()
    return out


def _reasons(decisions) -> set:
    return {int(d["reason"]) for _, d in decisions}


CONFIGS = {
    # immediate fills, take the far touch: position, gross and throttle limits all bind
    "immediate": RiskConfig(max_position=300, max_gross_notional=60 * 100 * 1_000_000,
                            throttle_orders=4, throttle_window_us=50, collar_ticks=10),
    # resting orders, join the near touch one tick inside: open-order limits bind
    "resting": RiskConfig(fill_model=spec.FILL_RESTING, price_policy=spec.POLICY_JOIN,
                          price_offset_ticks=1, max_position=500, throttle_orders=16,
                          throttle_window_us=200, buy_threshold=100, sell_threshold=300),
    # lot larger than the size limit, then a zero lot (bad order)
    "oversize": RiskConfig(lot_size=1500, max_order_size=1000),
    "zero_lot": RiskConfig(lot_size=0, throttle_orders=1, buy_threshold=-5),
    # loose limits, an intent on most updates: the throttle binds (small ring, then a full one)
    "throttle": RiskConfig(max_position=1_000_000, throttle_orders=3, throttle_window_us=100,
                           lot_size=10, buy_threshold=0, sell_threshold=0, collar_ticks=100),
    "throttle_full": RiskConfig(max_position=1_000_000, throttle_orders=16,
                                throttle_window_us=1_000, lot_size=10, buy_threshold=0,
                                sell_threshold=0, collar_ticks=100),
}


@cocotb.test()
async def test_random_streams(dut):
    """Random scored updates under several configs, kill switch toggled, random back-pressure
    and idle gaps: every decision equals golden ``risk.run``."""
    tb = RiskTB(dut)
    rng = np.random.default_rng(int(tb.seed) + 40)
    n = 4000 if full_run() else 300
    seen = set()
    for name, cfg in CONFIGS.items():
        k = n // 6 if name in ("oversize", "zero_lot") else n
        u = random_updates(rng, 3 * k, cfg, locates=(1, 2, 7, 200, 255),
                           burst=64 if name == "throttle_full" else 8)
        segs = [(0, u[:k]), (1, u[k:k + k // 4]), (0, u[k + k // 4:])]
        seen |= _reasons(await run_config(tb, cfg, segs))
    missing = [r for k, r in enumerate(spec.REJECT_REASONS) if k not in seen]
    assert not missing, f"reasons never exercised: {missing}"


@cocotb.test()
async def test_latency_throughput(dut):
    """No back-pressure: an update accepted every cycle (II = ``RiskGate.ii``) and its decision
    accepted ``RiskGate.latency`` cycles later, back-to-back updates of one locate included."""
    tb = RiskTB(dut, idle=0.0, stall=0.0)
    cfg = CONFIGS["immediate"]
    rng = np.random.default_rng(7)
    u = random_updates(rng, 500, cfg)
    out = await run_config(tb, cfg, [(0, u)])
    acc = tb.src.accepted[-len(u):]
    assert all(b - a == 1 for a, b in zip(acc, acc[1:])), "input stalled"
    lat = [c - a for (c, _), a in zip(out, acc)]
    tb.dut._log.info("risk latency (update accepted -> decision accepted), cycles: min %d "
                     "max %d over %d", min(lat), max(lat), len(lat))
    record_latency("risk", lat)
    assert set(lat) == {RiskGate.latency}, f"latency {sorted(set(lat))}, RiskGate.latency " \
        f"{RiskGate.latency}"
    assert RiskGate.ii == 1
