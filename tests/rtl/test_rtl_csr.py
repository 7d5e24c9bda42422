"""Register bank (hftaccel.rtl.csr): address map, rw/ro/wo semantics, wide-register snapshot.

Run with Amaranth's own simulator: the bank is small and has no stream ports.
"""

import pytest

amaranth = pytest.importorskip("amaranth", reason="amaranth not installed (pip install .[hw])")

from amaranth.hdl import Module, Signal  # noqa: E402
from amaranth.sim import Simulator  # noqa: E402

from hftaccel.rtl.csr import CsrBank, Register, address_map  # noqa: E402

REGS = [
    Register("limit", 64, reset=-5, doc="a signed limit"),
    Register("flag", 1, reset=1),
    Register("counter", 64, access="ro"),
    Register("status", 7, access="ro"),
    Register("weight", 40, access="wo"),
]


def test_address_map():
    m = address_map(REGS)
    assert [(e["name"], e["addr"], e["words"]) for e in m] == [
        ("limit", 0, 2), ("flag", 2, 1), ("counter", 3, 2), ("status", 5, 1), ("weight", 6, 2)]
    assert m[0]["reset"] == (-5) & (2**64 - 1)
    with pytest.raises(ValueError, match="'flag'"):
        address_map(REGS + [Register("flag", 3)])
    with pytest.raises(ValueError, match="access"):
        address_map([Register("x", 3, access="rx")])
    with pytest.raises(ValueError, match="width"):
        address_map([Register("x", 0)])


def test_bank_semantics():
    bank = CsrBank(registers=REGS)
    m = Module()
    m.submodules.bank = bank
    counter = Signal(64)
    m.d.sync += counter.eq(counter + 0x1_0000_0001)
    m.d.comb += [bank.counter.eq(counter), bank.status.eq(0x55)]
    sim = Simulator(m)
    sim.add_clock(1e-8)
    pulses = []

    async def bench(ctx):
        async def write(addr, value):
            ctx.set(bank.addr, addr)
            ctx.set(bank.w_data, value)
            ctx.set(bank.w_stb, 1)
            await ctx.tick()
            ctx.set(bank.w_stb, 0)
            pulses.append(ctx.get(bank.weight_we))

        async def read(addr):
            ctx.set(bank.addr, addr)
            ctx.set(bank.r_stb, 1)
            await ctx.tick()
            ctx.set(bank.r_stb, 0)
            return ctx.get(bank.r_data)

        assert ctx.get(bank.limit) == (-5) & (2**64 - 1)      # reset value
        assert ctx.get(bank.flag) == 1
        assert await read(0) == (-5) & 0xFFFF_FFFF
        await write(0, 7)
        await write(1, 0)
        assert ctx.get(bank.limit) == 7
        await write(2, 0)
        assert ctx.get(bank.flag) == 0
        assert await read(5) == 0x55
        # 64-bit status: the high word read later belongs to the snapshot of the low word
        lo = await read(3)
        await ctx.tick().repeat(5)
        hi = await read(4)
        v = (hi << 32) | lo
        assert v % 0x1_0000_0001 == 0 and (v >> 32) == (v & 0xFFFF_FFFF)
        # write-only: strobe only with the last word, value assembled from both words
        await write(6, 0xDEADBEEF)
        assert pulses[-1] == 0
        await write(7, 0xAB)
        assert pulses[-1] == 1 and ctx.get(bank.weight) == 0xAB_DEADBEEF
        await ctx.tick()
        assert ctx.get(bank.weight_we) == 0
        assert await read(99 % bank.words) is not None

    sim.add_testbench(bench)
    sim.run()
