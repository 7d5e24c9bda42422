"""UART register bridge (hftaccel.boards.uart): the gateware on Amaranth's simulator against a
register bank, with the host client's own framing; the client against a model of the board."""

import random

import pytest

amaranth = pytest.importorskip("amaranth", reason="amaranth not installed (pip install .[hw])")

from amaranth.hdl import Module  # noqa: E402
from amaranth.sim import Simulator  # noqa: E402

from hftaccel.boards import uart  # noqa: E402
from hftaccel.rtl.csr import CsrBank, Register  # noqa: E402

CLK_HZ, BAUD = 1_000_000, 100_000          # 10 clocks a bit
BIT = CLK_HZ // BAUD
REGS = [Register("limit", 64, reset=0x1122334455667788), Register("flag", 1, reset=1),
        Register("counter", 64, access="ro")]


def _dut():
    m = Module()
    bank = m.submodules.bank = CsrBank(registers=REGS)
    br = m.submodules.bridge = uart.UartBridge(clk_freq=CLK_HZ, baud=BAUD, timeout_bits=30)
    m.d.comb += [bank.addr.eq(br.addr), bank.w_stb.eq(br.w_stb), bank.w_data.eq(br.w_data),
                 bank.r_stb.eq(br.r_stb), br.r_data.eq(bank.r_data),
                 bank.counter.eq(0xCAFE_0000_0000_BEEF)]
    return m, br, bank


def _run(requests, expect_bytes, *, gaps=True, seed=1):
    """Send ``requests`` (bytes) bit by bit with random gaps, return the bytes the bridge sent
    and the final values of the bank's rw registers."""
    m, br, bank = _dut()
    rng = random.Random(seed)
    got = bytearray()
    final = {}

    async def host(ctx):
        ctx.set(br.rx, 1)
        await ctx.tick().repeat(5)
        for req in requests:
            if req is None:                                 # pause past the timeout
                await ctx.tick().repeat(BIT * 40)
                continue
            for byte in req:
                for bit in [0] + [byte >> k & 1 for k in range(8)] + [1]:
                    ctx.set(br.rx, bit)
                    await ctx.tick().repeat(BIT)
                if gaps:
                    await ctx.tick().repeat(rng.randrange(1, 3 * BIT))
        await ctx.tick().repeat(BIT * 12 * (expect_bytes + 2))
        final["limit"] = ctx.get(bank.limit)
        final["flag"] = ctx.get(bank.flag)

    async def listen(ctx):
        while True:
            while ctx.get(br.tx):                         # start bit
                await ctx.tick()
            await ctx.tick().repeat(BIT + BIT // 2)
            byte = 0
            for k in range(8):
                byte |= ctx.get(br.tx) << k
                await ctx.tick().repeat(BIT)
            assert ctx.get(br.tx) == 1, "stop bit missing"
            got.append(byte)

    sim = Simulator(m)
    sim.add_clock(1 / CLK_HZ)
    sim.add_testbench(host)
    sim.add_testbench(listen, background=True)
    sim.run()
    return bytes(got), final


def test_bridge_read_write():
    reqs = [uart.encode_read(0), uart.encode_read(1), uart.encode_read(3), uart.encode_read(4),
            uart.encode_write(2, 0), uart.encode_write(0, 0xDEADBEEF), uart.encode_read(0),
            uart.encode_read(7)]
    got, final = _run(reqs, 4 * 6 + 2)
    words = [got[0:4], got[4:8], got[8:12], got[12:16]]
    assert [int.from_bytes(w, "big") for w in words] == [0x55667788, 0x11223344, 0x0000BEEF,
                                                         0xCAFE0000]
    assert got[16:18] == bytes([uart.ACK, uart.ACK])
    assert int.from_bytes(got[18:22], "big") == 0xDEADBEEF
    assert int.from_bytes(got[22:26], "big") == 0           # unmapped word (7) reads 0
    assert len(got) == 26
    assert final == {"limit": 0x11223344DEADBEEF, "flag": 0}


def test_bridge_ignores_noise_and_times_out():
    """Unknown command bytes are skipped; a command cut short is abandoned after the timeout
    (30 bit times here), after which the next command works."""
    reqs = [b"\x00\xff?", uart.encode_read(0)[:2], None, uart.encode_read(2)]
    got, _ = _run(reqs, 4, gaps=False)
    assert got == (1).to_bytes(4, "big")


class _FakeBoard:
    """The framing of the module docstring, over a dict of words."""

    def __init__(self, words, *, mute=False):
        self.words, self.mute, self.out, self.buf = dict(words), mute, bytearray(), bytearray()

    def write(self, b):
        self.buf += b
        while self.buf:
            if self.buf[0] == uart.CMD_READ and len(self.buf) >= 3:
                addr = int.from_bytes(self.buf[1:3], "big")
                del self.buf[:3]
                if not self.mute:
                    self.out += self.words.get(addr, 0).to_bytes(4, "big")
            elif self.buf[0] == uart.CMD_WRITE and len(self.buf) >= 7:
                addr = int.from_bytes(self.buf[1:3], "big")
                self.words[addr] = int.from_bytes(self.buf[3:7], "big")
                del self.buf[:7]
                if not self.mute:
                    self.out.append(uart.ACK)
            else:
                break

    def read(self, n):
        chunk = bytes(self.out[:n])
        del self.out[:n]
        return chunk


def test_client_registers():
    from hftaccel.rtl.csr import address_map
    board = _FakeBoard({0: 0x55667788, 1: 0x11223344, 2: 1})
    c = uart.BridgeClient(board, address_map(REGS))
    assert c.read_reg("limit") == 0x1122334455667788
    c.write_reg("limit", 5)
    assert board.words[0] == 5 and board.words[1] == 0
    assert set(c.read_all()) == {"limit", "flag", "counter"}


def test_client_no_answer_says_so():
    c = uart.BridgeClient(_FakeBoard({}, mute=True))
    with pytest.raises(uart.BridgeError, match="bitstream loaded"):
        c.read(0)


def test_cli_status_over_a_pty(tmp_path):
    """``hftaccel status --port`` end to end: a pseudo-terminal stands in for the USB serial
    port, a thread answers as the board would."""
    import json
    import os
    import threading

    from typer.testing import CliRunner

    from hftaccel.cli import app
    from hftaccel.rtl.csr import address_map

    amap = [dict(e, bank="core") for e in address_map(REGS)]
    (tmp_path / "csr_map.json").write_text(json.dumps(amap))
    master, slave = os.openpty()
    board = _FakeBoard({0: 7, 1: 0, 2: 1, 3: 0xBEEF, 4: 0})
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                data = os.read(master, 64)
            except OSError:
                return
            board.write(data)
            out = board.read(1 << 16)
            if out:
                os.write(master, out)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        res = CliRunner().invoke(app, ["status", "--port", os.ttyname(slave), "--csr-map",
                                       str(tmp_path / "csr_map.json"), "--json"])
    finally:
        stop.set()
        os.close(slave)
        os.close(master)
    assert res.exit_code == 0, res.output
    values = json.loads(res.output[res.output.index("{"):])
    assert values == {"limit": 7, "flag": 1, "counter": 0xBEEF}
