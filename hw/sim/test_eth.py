"""cocotb testbench of ``hftaccel.rtl.eth.EthRx`` (Ethernet / 802.1Q / IPv4 / UDP receive).

Scoreboard: scapy parses every frame for the expected UDP payload and fields (an external
parser); the golden frame classifier (``hftaccel.feeds.moldudp64.iter_packets``, lenient,
with ``skipped`` reasons) gives the expected verdict of every adversarial frame; scapy
recomputes IPv4 header checksums (the golden reader does not check them).
"""

from __future__ import annotations

import ipaddress
import tempfile
from pathlib import Path

import cocotb

from hftaccel.rtl.eth import DROP_REASONS, UDP_META, EthRx
from hftaccel.rtl.stream import packet_layout
from hftaccel.sim.common import (TB, PacketSink, PacketSource, full_run, itch_file,
                                 mold_pcap, pcap_frames, real_pcaps, record_latency, udp_payload,
                                 write_frames)

#: golden reader skip reason -> EthRx drop counter
GOLDEN_REASON = {
    "truncated_ethernet": "truncated", "truncated_ipv4": "truncated",
    "truncated_udp": "truncated", "non_ipv4": "not_ipv4", "bad_ipv4_header": "bad_header",
    "bad_udp_length": "bad_header", "non_udp": "not_udp", "ipv4_fragment": "fragment",
    "dst_ip_filtered": "dst_ip", "udp_port_filtered": "dst_port",
}


class EthTB(TB):
    def __init__(self, dut, *, idle=0.3, stall=0.3):
        super().__init__(dut)
        self.src = PacketSource(self, "i", packet_layout(), idle=idle)
        self.sink = PacketSink(self, "o", packet_layout(UDP_META), stall=stall)
        self.set_filter(None, None)

    def set_filter(self, dst_ip, dst_port):
        self.dut.ip_filter.value = int(dst_ip is not None)
        self.dut.dst_ip.value = int(ipaddress.IPv4Address(dst_ip)) if dst_ip else 0
        self.dut.port_filter.value = int(dst_port is not None)
        self.dut.dst_port.value = dst_port or 0

    def counters(self) -> dict:
        out = {r: self.counter(f"drop_{r}") for r in DROP_REASONS}
        out["accepted"] = self.counter("accepted")
        out["frames"] = self.counter("frames")
        return out

    async def drain(self, n_out: int, timeout: int = 200_000):
        got = []
        for _ in range(timeout):
            got += self.sink.packets()
            if len(got) >= n_out and self.src.empty():
                break
            await self.cycles(1)
        await self.cycles(20)
        got += self.sink.packets()
        return got


def golden_verdict(frame: bytes, tmp: Path, *, dst_ip=None, dst_port=None) -> str | None:
    """EthRx drop reason the golden classifier implies for one frame (None: delivered)."""
    from hftaccel.feeds.moldudp64 import iter_packets
    p = tmp / "one.pcap"
    write_frames(p, [frame])
    sk: dict = {}
    list(iter_packets(p, lenient=True, skipped=sk, dst_ip=dst_ip, udp_port=dst_port))
    eth = [GOLDEN_REASON[r] for r in sk if r in GOLDEN_REASON]
    assert len(eth) <= 1, sk
    return eth[0] if eth else None


def checksum_ok(frame: bytes) -> bool:
    """IPv4 header checksum recomputed by scapy."""
    from scapy.all import IP, Ether
    ip = Ether(frame)[IP]
    stated = ip.chksum
    hdr = IP(bytes(ip)[:ip.ihl * 4])
    hdr.chksum = None
    return IP(bytes(hdr)).chksum == stated


async def run_frames(tb: EthTB, frames, expected_out, expected_counts):
    for f in frames:
        tb.src.send_packet(f)
    got = await tb.drain(len(expected_out))
    assert len(got) == len(expected_out), f"{len(got)} payloads out, expected {len(expected_out)}"
    for k, ((body, meta, abort, _), (ebody, emeta, eabort)) in enumerate(zip(got, expected_out)):
        assert body == ebody, f"payload {k}: {body.hex()} != {ebody.hex()}"
        assert meta == emeta, f"payload {k}: meta {meta} != {emeta}"
        assert abort == eabort, f"payload {k}: abort {abort} != {eabort}"
    counts = tb.counters()
    for k, v in expected_counts.items():
        assert counts[k] == v, f"counter {k} = {counts[k]}, expected {v} ({counts})"
    assert tb.src.empty() and tb.sink.empty(), "left over beats"


def good_expectations(frames):
    out = []
    for f in frames:
        body, meta = udp_payload(f)
        out.append((body, meta, 0))
    return out


@cocotb.test()
async def test_real_pcaps(dut):
    """Every OMI capture frame (802.1Q, real NASDAQ) delivers its UDP payload; filters on."""
    tb = EthTB(dut)
    frames = [f for p in real_pcaps() for f in pcap_frames(p)]
    _, meta0 = udp_payload(frames[0])
    tb.set_filter(str(ipaddress.IPv4Address(meta0["dst_ip"])), meta0["dst_port"])
    await tb.reset()
    await run_frames(tb, frames, good_expectations(frames),
                     {"accepted": len(frames), "frames": len(frames),
                      **{r: 0 for r in DROP_REASONS}})


@cocotb.test()
async def test_reframed_itch_file(dut):
    """The real ITCH file re-framed into MoldUDP64 by the golden writer: untagged, 802.1Q and
    QinQ, with random back-pressure and idle gaps."""
    from hftaccel.feeds import itch
    tb = EthTB(dut)
    await tb.reset()
    msgs = itch.read_file(itch_file()).messages
    with tempfile.TemporaryDirectory() as d:
        frames = []
        for k, vlan in enumerate((None, 100, (10, 20))):
            frames += mold_pcap(Path(d) / f"v{k}.pcap", msgs, vlan=vlan,
                                max_payload=1472 if k != 1 else 300)
    tb.set_filter("233.252.0.1", 26400)
    await run_frames(tb, frames, good_expectations(frames),
                     {"accepted": len(frames), **{r: 0 for r in DROP_REASONS}})


def adversarial_frames(base: bytes):
    """(frame, truncated-in-payload original or None) pairs: one defect each, built with scapy."""
    from scapy.all import (ARP, IP, TCP, UDP, Dot1Q, Ether, IPOption_Router_Alert, IPv6,
                           Padding, Raw)
    e = Ether(base)
    body = bytes(e[UDP].payload)
    ip_dst, dport = e[IP].dst, e[UDP].dport
    mac = dict(dst=e.dst, src=e.src)

    def rebuild(mutate):
        x = Ether(base)
        mutate(x)
        del x[IP].chksum
        del x[UDP].chksum
        return bytes(x)

    def plain(**ipkw):
        return Ether(**mac) / IP(dst=ip_dst, **ipkw) / UDP(sport=1, dport=dport) / Raw(body)

    out = [
        (base, None),
        (bytes(Ether(**mac) / ARP()), None),
        (bytes(Ether(**mac) / IPv6() / UDP(dport=dport) / Raw(body)), None),
        (bytes(Ether(**mac) / IP(dst=ip_dst) / TCP(dport=dport) / Raw(body)), None),
        (rebuild(lambda x: setattr(x[IP], "flags", "MF")), None),
        (rebuild(lambda x: setattr(x[IP], "frag", 8)), None),
        (rebuild(lambda x: setattr(x[IP], "dst", "233.54.12.112")), None),
        (rebuild(lambda x: setattr(x[UDP], "dport", dport + 1)), None),
        (rebuild(lambda x: setattr(x[IP], "version", 5)), None),
        (rebuild(lambda x: setattr(x[IP], "ihl", 4)), None),
        (rebuild(lambda x: setattr(x[IP], "len", 19)), None),
        (rebuild(lambda x: setattr(x[UDP], "len", 7)), None),
        (rebuild(lambda x: setattr(x[UDP], "len", len(body) + 9)), None),
        (bytes(plain(options=[IPOption_Router_Alert()])), None),
        (bytes(Ether(**mac) / Dot1Q(vlan=5) / Dot1Q(vlan=6) / IP(dst=ip_dst)
               / UDP(dport=dport) / Raw(body)), None),
        (bytes(Ether(**mac) / IP(dst=ip_dst) / UDP(dport=dport) / Raw(body[:4])
               / Padding(b"\x00" * 14)), None),
        (base, None),
    ]
    bad = Ether(base)
    bad[IP].chksum ^= 0x5A5A
    out.append((bytes(bad), None))
    for cut in (10, 16, 30, 44):
        out.append((base[:cut], None))
    out.append((base[:len(base) - 3], base))
    long = bytes(plain())
    out.append((long[:len(long) - 9], long))
    out.append((base, None))
    return out


async def start_filtered(tb: EthTB):
    """Set both filters to the first real capture's destination and reset the DUT.
    Returns ``(first frame of that capture, destination address, destination port)``."""
    base = pcap_frames(real_pcaps()[0])[0]
    _, meta0 = udp_payload(base)
    ip_dst = str(ipaddress.IPv4Address(meta0["dst_ip"]))
    tb.set_filter(ip_dst, meta0["dst_port"])
    await tb.reset()
    return base, ip_dst, meta0["dst_port"]


@cocotb.test()
async def test_adversarial(dut):
    """Truncated frames, bad checksum, wrong port / address, not IPv4 / UDP, fragments, bad
    lengths, IP options, QinQ, padding: verdicts from the golden classifier, payloads from
    scapy, random back-pressure."""
    tb = EthTB(dut)
    base, ip_dst, port = await start_filtered(tb)
    cases = adversarial_frames(base)
    if full_run():
        cases = cases * 4
    frames, expected = [], []
    counts = {r: 0 for r in DROP_REASONS}
    counts["accepted"] = 0
    with tempfile.TemporaryDirectory() as d:
        for frame, original in cases:
            verdict = golden_verdict(frame, Path(d), dst_ip=ip_dst, dst_port=port)
            frames.append(frame)
            if original is not None:           # cut inside the payload: delivered, aborted
                assert verdict == "truncated"
                obody, ometa = udp_payload(original)
                kept = len(obody) - (len(original) - len(frame))
                expected.append((obody[:kept], ometa, 1))
                counts["truncated"] += 1
                counts["accepted"] += 1
            elif verdict is not None:
                counts[verdict] += 1
            elif not checksum_ok(frame):
                counts["checksum"] += 1
            else:
                body, meta = udp_payload(frame)
                expected.append((body, meta, 0))
                counts["accepted"] += 1
    counts["frames"] = len(frames)
    await run_frames(tb, frames, expected, counts)


@cocotb.test()
async def test_latency(dut):
    """No back-pressure: cycles from a frame's last beat accepted to its payload's last beat."""
    tb = EthTB(dut, idle=0.0, stall=0.0)
    await tb.reset()
    frames = [f for p in real_pcaps() for f in pcap_frames(p)]
    lat = []
    for f in frames:
        tb.src.send_packet(f)
        got = await tb.drain(1)
        assert len(got) == 1
        lat.append(got[0][3] - tb.src.accepted[-1])
        assert got[0][0] == udp_payload(f)[0]
    tb.dut._log.info("eth latency (last byte in -> last byte out), cycles: min %d max %d",
                     min(lat), max(lat))
    record_latency("eth", lat)
    # EthRx.latency is the minimum; a last beat whose bytes spill past the realignment
    # shift takes one cycle more (see the class docstring)
    assert min(lat) == EthRx.latency and max(lat) <= EthRx.latency + 1, lat
    assert tb.src.empty() and tb.sink.empty()


def sweep_frames(base: bytes):
    """Untagged, 802.1Q and QinQ datagrams, with and without an IPv4 option, each cut at every
    length: ``(frame, original)`` pairs."""
    from scapy.all import IP, UDP, Dot1Q, Ether, IPOption_Router_Alert, Raw
    e = Ether(base)
    body = bytes(e[UDP].payload)[:21]
    out = []
    for tags in ((), (7,), (7, 8)):
        for opts in ([], [IPOption_Router_Alert()]):
            x = Ether(dst=e.dst, src=e.src)
            for t in tags:
                x = x / Dot1Q(vlan=t)
            full = bytes(x / IP(dst=e[IP].dst, options=opts) / UDP(sport=5, dport=e[UDP].dport)
                         / Raw(body))
            out += [(full[:n], full) for n in range(1, len(full) + 1)]
    return out


def sweep_expectation(frame: bytes, full: bytes, verdict):
    """(delivered payload, abort) or None (dropped) for a cut of ``full``: the golden verdict,
    except that a cut past the UDP header delivers what it holds, ended with ``abort``, unless
    the frame ends in the beat that holds the UDP header's last byte (then: ``truncated``)."""
    from scapy.all import IP, Ether
    body, _ = udp_payload(full)
    if frame == full:
        return (body, 0) if verdict is None else None
    assert verdict == "truncated", verdict
    ip = Ether(full)[IP]
    hdr_end = len(full) - len(body)
    assert hdr_end == len(full) - ip.len + ip.ihl * 4 + 8
    if len(frame) > -(-hdr_end // 8) * 8:
        return body[:len(frame) - hdr_end], 1
    return None


@cocotb.test()
async def test_truncation_sweep(dut):
    """Every cut of untagged / 802.1Q / QinQ datagrams (IHL 5 and 6), back to back and then
    with random gaps and back-pressure: verdicts from the golden classifier."""
    tb = EthTB(dut, idle=0.0, stall=0.0)
    base, ip_dst, port = await start_filtered(tb)
    cases = sweep_frames(base)
    frames, expected = [], []
    counts = {r: 0 for r in DROP_REASONS}
    counts["accepted"] = 0
    with tempfile.TemporaryDirectory() as d:
        for frame, full in cases:
            verdict = golden_verdict(frame, Path(d), dst_ip=ip_dst, dst_port=port)
            got = sweep_expectation(frame, full, verdict)
            frames.append(frame)
            if got is None:
                counts[verdict] += 1
            else:
                expected.append((got[0], udp_payload(full)[1], got[1]))
                counts["accepted"] += 1
                counts["truncated"] += got[1]
    counts["frames"] = len(frames)
    await run_frames(tb, frames, expected, counts)
    tb.src.idle, tb.sink.stall = 0.3, 0.3
    counts = {k: 2 * v for k, v in counts.items()}
    await run_frames(tb, frames, expected, counts)

