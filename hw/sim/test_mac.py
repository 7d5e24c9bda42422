"""cocotb testbench of the board MAC (``hftaccel.boards.mac``) against cocotbext-eth's PHY models.

The DUT is :class:`MacHarness`: a :class:`~hftaccel.boards.mac.MacRx` fed by a GMII or RGMII
receive pin model (cocotbext-eth ``GmiiSource`` / ``RgmiiSource`` on ``rx_clk``) delivering
frames on ``o`` in the core clock, and a :class:`~hftaccel.boards.mac.MacTx` taking frames (or,
with ``udp``, UDP payloads) on ``i`` and sending them to ``GmiiSink`` / ``RgmiiSink`` on
``tx_clk``. The three clocks are unrelated (core 6 ns, receive 8 ns, transmit 8 ns).

Scoreboard: frames are built with scapy; the expected receive output is each good frame
without FCS (padded to 60 bytes), in order; frames sent with a corrupted FCS or with ``rx_er``
must not come out intact and must be counted. On transmit the PHY model's frame must have a
7-byte preamble + SFD, a valid FCS, the padded payload, and at least 12 byte times of gap.
"""

from __future__ import annotations

import logging
import struct

import cocotb
from amaranth.hdl import ClockDomain, ClockSignal, Module, ResetSignal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hftaccel.boards.mac import MacRx, MacTx, RgmiiRx, RgmiiTx
from hftaccel.rtl.stream import packet_layout
from hftaccel.sim.common import TB, PacketSink, PacketSource

#: UDP header the harness is built with when ``udp=True`` (tests compare against these).
UDP_FIELDS = {"dst_mac": 0x02_00_00_00_00_02, "src_mac": 0x02_00_00_00_00_01,
              "src_ip": 0x0A_00_00_01, "dst_ip": 0x0A_00_00_02,
              "src_port": 40001, "dst_port": 40002}
ETH_PERIOD_NS = 8
SYS_PERIOD_NS = 6


class MacHarness(wiring.Component):
    """Receive and transmit MAC with PHY-side pins as ports, for cocotbext-eth.

    Parameters
    ----------
    phy : str
        ``"gmii"`` or ``"rgmii"``.
    udp : bool
        Transmit side prepends the UDP header (fields :data:`UDP_FIELDS`).
    """

    def __init__(self, *, phy: str = "gmii", udp: bool = False):
        if phy not in ("gmii", "rgmii"):
            raise ValueError(f"phy must be 'gmii' or 'rgmii', not {phy!r}")
        self.phy, self.udp = phy, bool(udp)
        members = {"rx_clk": In(1), "tx_clk": In(1),
                   "o": Out(stream.Signature(packet_layout())),
                   "i": In(stream.Signature(packet_layout())),
                   "is_rgmii": Out(1), "is_udp": Out(1)}
        if phy == "gmii":
            members.update({"gmii_rxd": In(8), "gmii_rx_dv": In(1), "gmii_rx_er": In(1),
                            "gmii_txd": Out(8), "gmii_tx_en": Out(1), "gmii_tx_er": Out(1)})
        else:
            members.update({"rgmii_rxd": In(4), "rgmii_rx_ctl": In(1),
                            "rgmii_txd": Out(4), "rgmii_tx_ctl": Out(1)})
        for name in ("rx_frames", "rx_fcs_errors", "rx_errors", "rx_overflows", "tx_frames",
                     "tx_underflows"):
            members[name] = Out(32)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        for dom, clk in (("eth_rx", self.rx_clk), ("eth_tx", self.tx_clk)):
            m.domains += ClockDomain(dom)
            m.d.comb += [ClockSignal(dom).eq(clk), ResetSignal(dom).eq(ResetSignal("sync"))]
        rx = m.submodules.rx = MacRx(domain="eth_rx", fifo_depth=32)
        tx = m.submodules.tx = MacTx(domain="eth_tx", udp=self.udp, fifo_depth=256)
        wiring.connect(m, rx.o, wiring.flipped(self.o))
        wiring.connect(m, wiring.flipped(self.i), tx.i)
        if self.phy == "gmii":
            m.d.comb += [rx.rxd.eq(self.gmii_rxd), rx.rx_dv.eq(self.gmii_rx_dv),
                         rx.rx_er.eq(self.gmii_rx_er), self.gmii_txd.eq(tx.txd),
                         self.gmii_tx_en.eq(tx.tx_en), self.gmii_tx_er.eq(tx.tx_er)]
        else:
            prx = m.submodules.rgmii_rx = RgmiiRx(domain="eth_rx")
            ptx = m.submodules.rgmii_tx = RgmiiTx(domain="eth_tx")
            m.d.comb += [prx.rgmii_rxd.eq(self.rgmii_rxd), prx.rgmii_rx_ctl.eq(self.rgmii_rx_ctl),
                         rx.rxd.eq(prx.rxd), rx.rx_dv.eq(prx.rx_dv), rx.rx_er.eq(prx.rx_er),
                         ptx.txd.eq(tx.txd), ptx.tx_en.eq(tx.tx_en), ptx.tx_er.eq(tx.tx_er),
                         self.rgmii_txd.eq(ptx.rgmii_txd), self.rgmii_tx_ctl.eq(ptx.rgmii_tx_ctl)]
        if self.udp:
            for name, value in UDP_FIELDS.items():
                m.d.comb += getattr(tx, name).eq(value)
        m.d.comb += [self.is_rgmii.eq(self.phy == "rgmii"), self.is_udp.eq(self.udp),
                     self.rx_frames.eq(rx.frames), self.rx_fcs_errors.eq(rx.fcs_errors),
                     self.rx_errors.eq(rx.errors), self.rx_overflows.eq(rx.overflows),
                     self.tx_frames.eq(tx.frames), self.tx_underflows.eq(tx.underflows)]
        return m


class MacTB(TB):
    def __init__(self, dut, *, idle=0.3, stall=0.3):
        from cocotb.clock import Clock
        from cocotbext.eth import GmiiSink, GmiiSource, RgmiiSink, RgmiiSource

        super().__init__(dut, period_ns=SYS_PERIOD_NS)
        cocotb.start_soon(Clock(dut.rx_clk, ETH_PERIOD_NS, units="ns").start())
        cocotb.start_soon(Clock(dut.tx_clk, ETH_PERIOD_NS, units="ns").start())
        self.rgmii = hasattr(dut, "rgmii_rxd")
        if self.rgmii:
            self.phy_src = RgmiiSource(dut.rgmii_rxd, dut.rgmii_rx_ctl, dut.rx_clk)
            self.phy_sink = RgmiiSink(dut.rgmii_txd, dut.rgmii_tx_ctl, dut.tx_clk)
        else:
            self.phy_src = GmiiSource(dut.gmii_rxd, dut.gmii_rx_er, dut.gmii_rx_dv, dut.rx_clk)
            self.phy_sink = GmiiSink(dut.gmii_txd, dut.gmii_tx_er, dut.gmii_tx_en, dut.tx_clk)
        for model in (self.phy_src, self.phy_sink):
            model.log.setLevel(logging.WARNING)
        self.sink = PacketSink(self, "o", packet_layout(), stall=stall)
        self.src = PacketSource(self, "i", packet_layout(), idle=idle)


    @property
    def udp(self) -> bool:
        """The harness's ``udp`` parameter (read once the model has been evaluated)."""
        return bool(int(self.dut.is_udp.value))


def random_frame(rng, length: int) -> bytes:
    """An Ethernet II frame (no FCS) of ``length`` bytes built by scapy: IPv4/UDP to a random
    port with random payload (shorter requests still give scapy's 42-byte header)."""
    from scapy.all import IP, UDP, Ether, Raw
    body = bytes(rng.getrandbits(8) for _ in range(max(0, length - 42)))
    pkt = (Ether(src="02:00:00:00:00:0a", dst="01:00:5e:00:00:01") /
           IP(src="10.1.0.1", dst="233.54.12.111") / UDP(sport=1234, dport=rng.randrange(65536))
           / Raw(body))
    return bytes(pkt)


def lengths(rng, n: int) -> list:
    """Frame lengths without FCS: the edges (42 -> padded, 59, 60, 61, 1514) then random."""
    edge = [42, 59, 60, 61, 63, 64, 65, 1514]
    return (edge + [rng.randrange(42, 1515) for _ in range(n)])[:max(n, len(edge))]


def pad60(frame: bytes) -> bytes:
    return frame + bytes(max(0, 60 - len(frame)))


@cocotb.test()
async def rx_good_and_bad_frames(dut):
    """Good frames come out intact in order; bad FCS and rx_er frames are dropped and counted."""
    from cocotbext.eth import GmiiFrame
    tb = MacTB(dut)
    await tb.reset()
    rng = tb.rng
    expected, n_fcs, n_er = [], 0, 0
    for k, n in enumerate(lengths(rng, 24)):
        frame = random_frame(rng, n)
        kind = "good" if k % 5 not in (2, 4) else ("fcs" if k % 5 == 2 else "er")
        g = GmiiFrame.from_payload(frame)
        if kind == "fcs":
            g.data[-1 - rng.randrange(4)] ^= 1 << rng.randrange(8)
            n_fcs += 1
        elif kind == "er":
            g.error = [0] * len(g.data)
            g.error[8 + rng.randrange(len(g.data) - 8)] = 1
            n_er += 1
        else:
            expected.append(pad60(frame))
        await tb.phy_src.send(g)
    await tb.phy_src.wait()
    await tb.cycles(200)
    got = [p for p, _, abort, _ in tb.sink.packets() if not abort]
    assert len(got) == len(expected), f"{len(got)} frames out, expected {len(expected)}"
    for k, (g, e) in enumerate(zip(got, expected)):
        assert g == e, f"frame {k}:\n DUT      {g.hex()}\n expected {e.hex()}"
    assert tb.counter("rx_frames") == len(expected)
    assert tb.counter("rx_fcs_errors") == n_fcs
    assert tb.counter("rx_errors") == n_er
    assert tb.counter("rx_overflows") == 0
    assert tb.sink.empty()


@cocotb.test()
async def rx_overflow_cuts_and_recovers(dut):
    """With the core side stalled the FIFO fills: frames are cut with abort and counted; once
    the core reads again, the following frames come out intact."""
    from cocotbext.eth import GmiiFrame
    tb = MacTB(dut, stall=1.0)
    await tb.reset()
    rng = tb.rng
    for _ in range(3):                      # 3 x 1514 bytes >> 32 beats of FIFO
        await tb.phy_src.send(GmiiFrame.from_payload(random_frame(rng, 1514)))
    await tb.phy_src.wait()
    await tb.cycles(50)
    tb.sink.stall = 0.0
    await tb.cycles(200)
    cut = tb.sink.packets()
    assert tb.counter("rx_overflows") == 3
    assert cut and all(abort for _, _, abort, _ in cut), "a frame that overflowed came out intact"
    tb.sink.stall = 0.3
    expected = [pad60(random_frame(rng, n)) for n in (60, 333, 1000)]
    for f in expected:
        await tb.phy_src.send(GmiiFrame.from_payload(f))
    await tb.phy_src.wait()
    await tb.cycles(300)
    got = [p for p, _, abort, _ in tb.sink.packets() if not abort]
    assert got == expected
    assert tb.sink.empty()


@cocotb.test()
async def tx_frames(dut):
    """Packets on ``i`` leave with preamble, SFD, padding, a good FCS and >= 12 byte IFG;
    an aborted packet is not sent."""
    tb = MacTB(dut)
    await tb.reset()
    rng = tb.rng
    expected = []
    for k, n in enumerate(lengths(rng, 12)):
        body = random_frame(rng, n) if not tb.udp else bytes(
            rng.getrandbits(8) for _ in range(max(1, n - 42)))
        abort = k == 5
        tb.src.send_packet(body, abort=abort)
        if not abort:
            expected.append(body)
    frames = []
    for _ in expected:
        frames.append(await tb.phy_sink.recv())
    await tb.cycles(200)
    assert tb.phy_sink.empty(), "more frames than packets sent"
    for k, (f, body) in enumerate(zip(frames, expected)):
        # the PHY models do not record the first byte of a frame: 6 of the 7 0x55 are seen
        pre = bytes(f.get_preamble())
        assert pre in (b"\x55" * 6 + b"\xd5", b"\x55" * 7 + b"\xd5"), f"preamble {pre.hex()}"
        assert f.check_fcs(), f"frame {k}: bad FCS"
        assert f.error is None, f"frame {k}: tx_er set"
        payload = bytes(f.get_payload())
        if tb.udp:
            check_udp(payload, body)
        else:
            assert payload == pad60(body), f"frame {k}:\n got {payload.hex()}\n exp {body.hex()}"
    for a, b in zip(frames, frames[1:]):
        gap_ns = (b.sim_time_start - a.sim_time_end) / 1000
        assert gap_ns >= 12 * ETH_PERIOD_NS - ETH_PERIOD_NS, f"IFG {gap_ns} ns"
    assert tb.counter("tx_frames") == len(expected)
    assert tb.counter("tx_underflows") == 0
    assert tb.src.empty()


def check_udp(frame: bytes, body: bytes) -> None:
    """The frame is Ethernet II / IPv4 / UDP with the harness's addresses, a valid IPv4 header
    checksum and ``body`` as its UDP payload (then padding)."""
    from scapy.all import IP, UDP, Ether
    e = Ether(frame)
    f = UDP_FIELDS
    assert e.dst == ":".join(f"{b:02x}" for b in f["dst_mac"].to_bytes(6, "big"))
    assert e.src == ":".join(f"{b:02x}" for b in f["src_mac"].to_bytes(6, "big"))
    ip, udp = e[IP], e[UDP]
    assert ip.len == 28 + len(body) and ip.proto == 17 and ip.ttl == 64 and ip.flags == "DF"
    assert int.from_bytes(bytes(map(int, ip.src.split("."))), "big") == f["src_ip"]
    assert int.from_bytes(bytes(map(int, ip.dst.split("."))), "big") == f["dst_ip"]
    raw_ip = frame[14:34]
    s = sum(struct.unpack("!10H", raw_ip))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    assert s == 0xFFFF, f"IPv4 header checksum wrong: {raw_ip.hex()}"
    assert (udp.sport, udp.dport, udp.len, udp.chksum) == (f["src_port"], f["dst_port"],
                                                          8 + len(body), 0)
    assert frame[42:42 + len(body)] == body
