"""cocotb testbench of ``hftaccel.rtl.ouch.OuchTx`` (approved order -> OUCH 5.0 bytes).

Scoreboard: golden ``hftaccel.golden.ouch.orders_from_decisions`` on the approved decision
records, encoded by ``frame_enter_orders`` (SoupBinTCP framed DUT) or ``encode_enter_orders``
(bare): every message must equal the golden bytes, one packet (``last``) per message.
"""

from __future__ import annotations

import numpy as np

import cocotb

from hftaccel.rtl.ouch import ORDER_LAYOUT, OuchTx
from hftaccel.rtl.stream import packet_layout
from hftaccel.sim.common import TB, PacketSink, StreamSource, full_run, record_latency
from hftaccel.spec import ouch as ospec
from hftaccel.spec import risk as rspec

#: OUCH codes the DUT is built with (its defaults, those of ``orders_from_decisions``).
CODES = {}


class OuchTB(TB):
    def __init__(self, dut, *, idle=0.3, stall=0.3):
        super().__init__(dut)
        self.src = StreamSource(self, "i", ORDER_LAYOUT, idle=idle)
        self.sink = PacketSink(self, "o", packet_layout(), stall=stall)

    @property
    def framed(self) -> bool:
        """The DUT's ``soup`` parameter (read once the model has been evaluated)."""
        return bool(int(self.dut.framed.value))

    def send(self, decisions: np.ndarray, symbols: dict):
        """Queue every approved decision with its locate's symbol (space padded)."""
        for d in decisions[decisions["verdict"] == rspec.VERDICT_APPROVED]:
            self.src.send_nowait({
                "user_ref_num": int(d["user_ref_num"]), "side": int(d["side"]),
                "quantity": int(d["shares"]), "price": int(d["price"]),
                "symbol": symbols[int(d["stock_locate"])].encode().ljust(8, b" ")})

    def expected(self, decisions: np.ndarray, symbols: dict) -> list:
        from hftaccel.golden import ouch
        orders = ouch.orders_from_decisions(decisions, symbols, **CODES)
        enc = ouch.frame_enter_orders(orders) if self.framed else \
            ouch.encode_enter_orders(orders)
        size = ospec.ENTER_ORDER_LENGTH + (ospec.SOUP_HEADER_SIZE if self.framed else 0)
        raw = enc.tobytes()
        return [raw[k:k + size] for k in range(0, len(raw), size)]

    async def settle(self, timeout=200_000):
        await self.drain(self.src, timeout=timeout, tail=40, what="orders")


async def check(tb: OuchTB, decisions: np.ndarray, symbols: dict) -> list:
    """Send, compare every message with golden; returns ``(bytes, last_cycle)`` per message."""
    expected = tb.expected(decisions, symbols)
    tb.send(decisions, symbols)
    await tb.settle()
    got = tb.sink.packets()
    assert len(got) == len(expected), f"{len(got)} messages, golden {len(expected)}"
    for k, ((pkt, _, abort, _), e) in enumerate(zip(got, expected)):
        assert not abort
        assert pkt == e, f"message {k}:\n DUT    {pkt.hex()}\n golden {e.hex()}"
    assert tb.counter("orders") >= len(expected)
    assert tb.src.empty() and tb.sink.empty()
    return [(p, c) for p, _, _, c in got]


def random_symbols(rng, locates) -> dict:
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    return {int(x): "".join(rng.choice(letters, rng.integers(1, 9))) for x in locates}


def random_approved(rng, n: int, locates) -> np.ndarray:
    """Approved decision records over the whole OUCH ranges of UserRefNum, quantity, price."""
    d = np.zeros(n, rspec.DECISION_DTYPE)
    d["verdict"] = rspec.VERDICT_APPROVED
    d["reason"] = rspec.REASON_NONE
    urn = rng.integers(1, 1 << 32, n)
    urn[:6] = [1, 9, 10, 99_999, 1_000_000_000, (1 << 32) - 1][:n]
    d["user_ref_num"] = urn
    d["shares"] = rng.integers(1, ospec.MAX_QUANTITY + 1, n)
    d["price"] = rng.integers(1, ospec.MAX_PRICE + 1, n)
    d["intent"] = rng.integers(rspec.INTENT_BUY, rspec.INTENT_SELL + 1, n)
    d["side"] = np.array(rspec.INTENT_SIDE, np.uint8)[d["intent"]]
    d["stock_locate"] = rng.choice(np.asarray(locates), n)
    return d


@cocotb.test()
async def test_random_orders(dut):
    """Random orders over the full field ranges, random back-pressure and idle gaps."""
    tb = OuchTB(dut)
    await tb.reset()
    rng = np.random.default_rng(int(tb.seed) + 80)
    locates = [1, 5, 300, 65535]
    symbols = random_symbols(rng, locates)
    await check(tb, random_approved(rng, 2000 if full_run() else 150, locates), symbols)


@cocotb.test()
async def test_from_risk_gate(dut):
    """Golden risk-gate decisions on a random scored stream: an Enter Order per approved one,
    nothing for the rest."""
    from hftaccel.golden import risk
    from hftaccel.sim.test_risk import CONFIGS, random_updates
    tb = OuchTB(dut)
    await tb.reset()
    rng = np.random.default_rng(int(tb.seed) + 81)
    cfg = CONFIGS["resting"]
    locates = (1, 2, 7, 200)
    dec, _ = risk.run(random_updates(rng, 3000 if full_run() else 400, cfg, locates=locates),
                      cfg)
    assert (dec["verdict"] == rspec.VERDICT_APPROVED).sum() > 10
    await check(tb, dec, random_symbols(rng, locates))


@cocotb.test()
async def test_latency_line_rate(dut):
    """No back-pressure: messages leave back to back (one every ``OuchTx.ii`` cycles) and,
    for an order accepted while the serializer is empty, the first beat ``OuchTx.latency``
    cycles after the order is accepted (later orders wait in the holding register)."""
    tb = OuchTB(dut, idle=0.0, stall=0.0)
    await tb.reset()
    rng = np.random.default_rng(5)
    d = random_approved(rng, 100, [3])
    out = await check(tb, d, random_symbols(rng, [3]))
    beats = -(-len(out[0][0]) // 8)
    acc = tb.src.accepted[-len(out):]
    lasts = [c for _, c in out]
    assert beats == OuchTx(soup=tb.framed).ii
    assert all(b - a == beats for a, b in zip(lasts, lasts[1:])), "idle beats between messages"
    first = [c - (beats - 1) - a for c, a in zip(lasts, acc)]
    tb.dut._log.info("ouch latency (order accepted -> first beat accepted), cycles: min %d max "
                     "%d; %d beats a message", min(first), max(first), beats)
    record_latency("ouch", first)
    assert first[0] == min(first) == OuchTx.latency, (
        f"first order {first[0]} cycles, least {min(first)}, documented {OuchTx.latency}")
