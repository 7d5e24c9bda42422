"""Shared cocotb testbench pieces: payload packing, stream drivers, Verilog build and runner.

Streams are Amaranth ``lib.stream`` ports flattened by ``amaranth.back.verilog`` into
``<name>__valid``, ``<name>__ready`` and one ``<name>__payload`` vector; payloads are packed and
unpacked here from the same ``amaranth.lib.data`` layouts the gateware uses, so nothing is
restated. Drivers act on the falling clock edge and sample the handshake in the ReadOnly phase
that follows, which is exact on both Verilator and Icarus; a handshake seen there takes effect
at the next rising edge, whose index :attr:`TB.cycle` the drivers record.

Run from the command line (``make -C hw/sim``)::

    python -m hftaccel.sim.common eth|moldudp64|itch [--sim verilator|icarus] [--testcase T]
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import random
import shutil
import sys
from pathlib import Path

__all__ = [
    "REPO",
    "flatten_layout",
    "pack",
    "unpack",
    "TB",
    "StreamSource",
    "StreamSink",
    "PacketSource",
    "PacketSink",
    "real_pcaps",
    "itch_file",
    "pcap_frames",
    "mold_pcap",
    "write_frames",
    "udp_payload",
    "full_run",
    "record_latency",
    "DUTS",
    "build_and_run",
    "simulator_available",
]

REPO = Path(__file__).resolve().parents[2]
BUILD_ROOT = REPO / "build" / "sim"


# ----------------------------------------------------------------------------- payload packing

def flatten_layout(layout, prefix=(), offset=0):
    """``[(path tuple, bit offset, width)]`` of every leaf of an ``amaranth.lib.data`` layout."""
    from amaranth.hdl import Shape
    from amaranth.lib import data

    if isinstance(layout, data.StructLayout):
        out = []
        for name, field in layout:
            out += flatten_layout(field.shape, prefix + (name,), offset + field.offset)
        return out
    if isinstance(layout, data.ArrayLayout):
        out = []
        w = Shape.cast(layout.elem_shape).width
        for i in range(layout.length):
            out += flatten_layout(layout.elem_shape, prefix + (i,), offset + i * w)
        return out
    return [(prefix, offset, Shape.cast(layout).width)]


def _get(value, path):
    for k in path:
        if isinstance(value, (bytes, bytearray)):
            value = value[k] if k < len(value) else 0
        elif isinstance(value, dict):
            value = value.get(k, 0)
        else:
            value = value[k]
    return int(value)


def pack(layout, value: dict) -> int:
    """Pack a nested dict (byte arrays may be ``bytes``; missing leaves are 0) into an int."""
    word = 0
    for path, off, width in flatten_layout(layout):
        v = _get(value, path)
        if v >> width:
            raise ValueError(f"{'.'.join(map(str, path))} = {v} does not fit {width} bits")
        word |= v << off
    return word


def unpack(layout, word: int) -> dict:
    """Unpack an int into a nested dict (array layouts become lists)."""
    out: dict = {}
    for path, off, width in flatten_layout(layout):
        d = out
        for k in path[:-1]:
            d = d.setdefault(k, {})
        d[path[-1]] = (word >> off) & ((1 << width) - 1)

    def fix(d):
        if isinstance(d, dict):
            if d and all(isinstance(k, int) for k in d):
                return [fix(d[i]) for i in range(len(d))]
            return {k: fix(v) for k, v in d.items()}
        return d
    return fix(out)


# ----------------------------------------------------------------------------- drivers

class TB:
    """Clock, reset and a cycle counter for an Amaranth top (``clk``, ``rst``)."""

    def __init__(self, dut, *, period_ns: int = 10, seed: int | None = None):
        import cocotb
        from cocotb.clock import Clock

        self.dut = dut
        self.cycle = 0
        self.seed = int(os.environ.get("TB_SEED", "1")) if seed is None else seed
        self.rng = random.Random(self.seed)
        cocotb.start_soon(Clock(dut.clk, period_ns, units="ns").start())
        cocotb.start_soon(self._count())

    async def _count(self):
        from cocotb.triggers import RisingEdge
        while True:
            await RisingEdge(self.dut.clk)
            self.cycle += 1

    async def reset(self, cycles: int = 3):
        from cocotb.triggers import FallingEdge
        self.dut.rst.value = 1
        for _ in range(cycles):
            await FallingEdge(self.dut.clk)
        self.dut.rst.value = 0
        await FallingEdge(self.dut.clk)

    async def cycles(self, n: int):
        from cocotb.triggers import FallingEdge
        for _ in range(n):
            await FallingEdge(self.dut.clk)

    async def drain(self, *sources, timeout: int = 200_000, tail: int = 20, what: str = "items"):
        """Wait until every source driver has sent all it holds, then ``tail`` more cycles for
        the pipeline to empty; raise ``AssertionError`` naming what is stuck after ``timeout``
        cycles."""
        for _ in range(timeout):
            if all(s.empty() for s in sources):
                break
            await self.cycles(1)
        else:
            left = ", ".join(str(len(s.queue)) for s in sources)
            raise AssertionError(f"DUT stuck with {left} {what} queued")
        await self.cycles(tail)

    def counter(self, name: str) -> int:
        return int(getattr(self.dut, name).value)


class StreamSource:
    """Drive ``<name>__valid/__payload`` from a queue; random idle cycles with ``idle`` prob."""

    def __init__(self, tb: TB, name: str, layout, *, idle: float = 0.0):
        import cocotb
        self.tb = tb
        self.layout = layout
        self.valid = getattr(tb.dut, f"{name}__valid")
        self.ready = getattr(tb.dut, f"{name}__ready")
        self.payload = getattr(tb.dut, f"{name}__payload")
        self.idle = idle
        self.queue: collections.deque = collections.deque()
        self.accepted: list = []            # cycle of each accepted beat
        self.packet_starts: list = []       # (cycle, tag) of first beats tagged "_packet"
        self.valid.value = 0
        self.payload.value = 0
        cocotb.start_soon(self._run())

    def send_nowait(self, beat: dict):
        self.queue.append(beat)

    def empty(self) -> bool:
        return not self.queue and not self._busy

    _busy = False

    async def _run(self):
        from cocotb.triggers import FallingEdge, ReadOnly
        rng = self.tb.rng
        cur = None
        while True:
            await FallingEdge(self.tb.dut.clk)
            if cur is None and self.queue and rng.random() >= self.idle:
                cur = self.queue.popleft()
                self._busy = True
                self.payload.value = pack(self.layout, cur)
                self.valid.value = 1
            elif cur is None:
                self.valid.value = 0
            await ReadOnly()
            if cur is not None and self.ready.value.integer:
                self.accepted.append(self.tb.cycle + 1)
                if "_packet" in cur:
                    self.packet_starts.append((self.tb.cycle + 1, cur["_packet"]))
                cur = None
                self._busy = False

    async def wait_idle(self):
        while not self.empty():
            await self.tb.cycles(1)


class StreamSink:
    """Take beats from ``<name>__valid/__payload``; ``ready`` low with probability ``stall``."""

    def __init__(self, tb: TB, name: str, layout, *, stall: float = 0.0):
        import cocotb
        self.tb = tb
        self.layout = layout
        self.valid = getattr(tb.dut, f"{name}__valid")
        self.ready = getattr(tb.dut, f"{name}__ready")
        self.payload = getattr(tb.dut, f"{name}__payload")
        self.stall = stall
        self.queue: collections.deque = collections.deque()   # (cycle, beat dict)
        self.first_valid: list = []        # cycle each beat was first presented (valid seen)
        self.ready.value = 0
        cocotb.start_soon(self._run())

    def empty(self) -> bool:
        return not self.queue

    def recv_nowait(self):
        return self.queue.popleft()

    async def _run(self):
        from cocotb.triggers import FallingEdge, ReadOnly
        rng = self.tb.rng
        seen = False
        while True:
            await FallingEdge(self.tb.dut.clk)
            self.ready.value = int(rng.random() >= self.stall)
            await ReadOnly()
            if self.valid.value.integer:
                if not seen:
                    self.first_valid.append(self.tb.cycle)
                    seen = True
                if self.ready.value.integer:
                    self.queue.append((self.tb.cycle + 1, unpack(self.layout,
                                                             self.payload.value.integer)))
                    seen = False


class PacketSource(StreamSource):
    """Packet stream source: ``send_nowait(bytes, meta=...)`` cuts the packet into beats."""

    def send_packet(self, pkt: bytes, meta: dict | None = None, *, abort: bool = False,
                    tag=None):
        """Queue ``pkt``; ``tag`` is recorded in :attr:`packet_starts` when it starts."""
        if not pkt:
            raise ValueError("empty packet")
        for k in range(0, len(pkt), 8):
            chunk = pkt[k:k + 8]
            last = k + 8 >= len(pkt)
            beat = {"data": int.from_bytes(chunk, "little"), "keep": (1 << len(chunk)) - 1,
                    "last": int(last), "abort": int(last and abort)}
            if meta is not None:
                beat["meta"] = meta
            if k == 0 and tag is not None:
                beat["_packet"] = tag
            self.send_nowait(beat)


class PacketSink(StreamSink):
    """Packet stream sink: :meth:`packets` returns ``(bytes, meta, abort, last_cycle)``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._partial = bytearray()
        self.done: collections.deque = collections.deque()

    def _collect(self):
        while self.queue:
            cyc, beat = self.queue.popleft()
            keep = beat["keep"]
            n = 0
            while n < 8 and keep >> n & 1:
                n += 1
            assert keep == (1 << n) - 1, f"non-contiguous keep {keep:#x} at cycle {cyc}"
            assert beat["last"] or n == 8, f"partial beat without last at cycle {cyc}"
            self._partial += beat["data"].to_bytes(8, "little")[:n]
            if beat["last"]:
                self.done.append((bytes(self._partial), beat.get("meta"), beat["abort"], cyc))
                self._partial = bytearray()

    def packets(self) -> list:
        self._collect()
        out = list(self.done)
        self.done.clear()
        return out

    def empty(self) -> bool:
        self._collect()
        return not self.done and not self._partial


# ----------------------------------------------------------------------------- inputs

DATA = REPO / "tests" / "data"


def real_pcaps() -> list:
    """The vendored OMI captures (real NASDAQ ITCH over MoldUDP64, 802.1Q-tagged)."""
    return sorted((DATA / "itch_pcap").glob("*.pcap"))


def itch_file() -> Path:
    """The vendored real ITCH 5.0 file (1000 messages, 2-byte length framing)."""
    return sorted((DATA / "itch").glob("*.itch"))[0]


def pcap_frames(path) -> list:
    """Every frame of a capture as bytes (read by the golden container reader)."""
    from hftaccel.feeds.moldudp64 import read_frames
    fr = read_frames(path)
    return [fr.frame(i) for i in range(len(fr))]


def mold_pcap(path, messages: dict, **kwargs) -> list:
    """Re-frame an ITCH messages dict into MoldUDP64 packets with the golden writer
    (``hftaccel.feeds.moldudp64.write_pcap``, keyword arguments passed on) and return the frames."""
    from hftaccel.feeds.moldudp64 import write_pcap
    write_pcap(path, messages, **kwargs)
    return pcap_frames(path)


def write_frames(path, frames) -> None:
    """Write raw Ethernet frames (even cut-short ones) to a pcap with dpkt, for the golden
    reader to classify."""
    import dpkt
    with open(path, "wb") as fh:
        w = dpkt.pcap.Writer(fh, linktype=dpkt.pcap.DLT_EN10MB, nano=True)
        for k, f in enumerate(frames):
            w.writepkt(bytes(f), ts=1 + k * 1e-6)


def udp_payload(frame: bytes):
    """(payload bytes, meta dict) of a frame's UDP datagram, by scapy, trimmed to UDP Length."""
    import ipaddress
    from scapy.all import IP, UDP, Ether
    e = Ether(frame)
    ip, udp = e[IP], e[UDP]
    body = bytes(udp.payload)[:udp.len - 8]
    meta = {"src_ip": int(ipaddress.IPv4Address(ip.src)),
            "dst_ip": int(ipaddress.IPv4Address(ip.dst)),
            "src_port": udp.sport, "dst_port": udp.dport, "length": udp.len - 8}
    return body, meta


def record_latency(stage: str, cycles) -> Path:
    """Write a stage's measured latencies (cycles) to ``build/sim/latency-<stage>-<sim>.json``
    (min / median / p99 / max and every sample)."""
    import numpy as np
    lat = np.sort(np.asarray(list(cycles), np.int64))
    BUILD_ROOT.mkdir(parents=True, exist_ok=True)
    sim = os.environ.get("SIM", os.environ.get("TOPLEVEL_LANG", "sim"))
    path = BUILD_ROOT / f"latency-{stage}-{sim}.json"
    path.write_text(json.dumps({
        "stage": stage, "n": int(lat.size), "min": int(lat[0]), "median": float(np.median(lat)),
        "p99": float(np.percentile(lat, 99)), "max": int(lat[-1]), "cycles": lat.tolist()}))
    return path


def full_run() -> bool:
    """Long inputs requested (``TB_FULL=1``, set by ``--full`` / the slow pytest tests)."""
    return os.environ.get("TB_FULL", "0") == "1"


# ----------------------------------------------------------------------------- build & run

def _eth_top():
    from hftaccel.rtl.eth import EthRx
    return EthRx()


def _mold_top():
    from hftaccel.rtl.moldudp64 import MoldRx
    return MoldRx()


def _itch_top():
    from hftaccel.rtl.itch import ItchParser
    return ItchParser()


def _factory(module: str, cls: str, package: str = "hftaccel.rtl"):
    """Lazy factory ``<package>.<module>.<cls>(**params)``."""
    def make(**params):
        import importlib
        return getattr(importlib.import_module(f"{package}.{module}"), cls)(**params)
    return make


#: name -> (Verilog top name, component factory, cocotb test module)
DUTS = {
    "eth": ("eth_rx", _eth_top, "hftaccel.sim.test_eth"),
    "moldudp64": ("mold_rx", _mold_top, "hftaccel.sim.test_moldudp64"),
    "itch": ("itch_parser", _itch_top, "hftaccel.sim.test_itch"),
    "risk": ("risk_gate", _factory("risk", "RiskGate"), "hftaccel.sim.test_risk"),
    "ouch": ("ouch_tx", _factory("ouch", "OuchTx"), "hftaccel.sim.test_ouch"),
    "book": ("order_book", _factory("book", "OrderBook"), "hftaccel.sim.test_book"),
    "ebr_book": ("ebr_book", _factory("ebr_book", "EbrBook"), "hftaccel.sim.test_ebr_book"),
    "order_table": ("order_table", _factory("order_table", "OrderTable"),
                    "hftaccel.sim.test_order_table"),
    "level_table": ("level_table", _factory("level_table", "LevelTable"),
                    "hftaccel.sim.test_level_table"),
    "top_levels": ("top_levels", _factory("top_levels", "TopLevels"),
                   "hftaccel.sim.test_top_levels"),
    "features": ("feature_engine", _factory("features", "FeatureEngine"),
                 "hftaccel.sim.test_features"),
    "mlp": ("mlp_scorer", _factory("mlp", "MLP"), "hftaccel.sim.test_mlp"),
    "mac": ("mac_harness", _factory("test_mac", "MacHarness", "hftaccel.sim"),
            "hftaccel.sim.test_mac"),
}

_VERILATOR_ARGS = ["-Wno-fatal", "-Wno-WIDTH", "-Wno-UNOPTFLAT", "-Wno-CASEINCOMPLETE",
                   "-Wno-UNSIGNED", "-Wno-CMPCONST", "-O2", "--x-assign", "fast",
                   "--x-initial", "fast", "-CFLAGS", "-O1"]


def simulator_available(sim: str) -> bool:
    """Whether the simulator's executable is on PATH."""
    return shutil.which({"verilator": "verilator", "icarus": "iverilog"}[sim]) is not None


def run_testbench(dut: str, sim: str = "verilator", *, full: bool = False, params=None,
                  extra_env=None, testcase=None) -> None:
    """pytest entry: build ``dut`` and run its cocotb tests; skip with a reason when the
    simulator is missing; fail unless every cocotb test passed. ``full`` adds the long inputs
    (``TB_FULL=1``)."""
    import pytest

    if not simulator_available(sim):
        exe = {"verilator": "verilator", "icarus": "iverilog"}[sim]
        pytest.skip(f"{exe} not on PATH (Debian: apt-get install {exe})")
    env = dict(extra_env or {})
    if full:
        env["TB_FULL"] = "1"
    n, failed, xml = build_and_run(dut, sim=sim, testcase=testcase, extra_env=env, params=params)
    assert n > 0, f"no cocotb tests ran for {dut} on {sim} ({xml})"
    assert failed == 0, f"{failed} of {n} cocotb tests failed for {dut} on {sim}; see {xml}"


def build_and_run(dut: str, *, sim: str = "verilator", testcase=None, extra_env=None,
                  params: dict | None = None) -> tuple:
    """Generate Verilog for ``dut``, build it for ``sim`` and run its cocotb tests.

    Each (dut, sim, params) gets its own folder ``build/sim/<dut>-<sim>-<hash>`` so parallel
    pytest workers do not collide.

    Returns
    -------
    (n_tests, n_failed, results_xml_path)
    """
    from amaranth.back import verilog
    from cocotb.runner import get_runner

    top, factory, module = DUTS[dut]
    params = dict(params or {})
    tag = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]
    build_dir = BUILD_ROOT / f"{dut}-{sim}-{tag}"
    build_dir.mkdir(parents=True, exist_ok=True)
    src = build_dir / f"{top}.v"
    # Amaranth emits no `timescale; Icarus would default to 1 s and the 10 ns clock fails
    text = "`timescale 1ns/1ps\n" + verilog.convert(factory(**params), name=top, emit_src=False)
    if not src.exists() or src.read_text() != text:
        src.write_text(text)
    runner = get_runner(sim)
    build_args = _VERILATOR_ARGS if sim == "verilator" else []
    runner.build(verilog_sources=[src], hdl_toplevel=top, build_dir=build_dir,
                 build_args=build_args)
    env = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p), "SIM": sim}
    env.update(extra_env or {})
    xml = runner.test(test_module=module, hdl_toplevel=top, build_dir=build_dir,
                      testcase=testcase, extra_env=env,
                      results_xml=f"results-{os.getpid()}.xml")
    n, failed = _results(xml)
    return n, failed, xml


def _results(xml) -> tuple:
    """(tests, failures) of a cocotb results file (``get_results`` exits on failures)."""
    import xml.etree.ElementTree as ET
    cases = list(ET.parse(xml).getroot().iter("testcase"))
    failed = sum(1 for c in cases if c.find("failure") is not None or c.find("error") is not None)
    return len(cases), failed


def main(argv=None):
    ap = argparse.ArgumentParser(description="Run the front-end cocotb testbenches.")
    ap.add_argument("dut", nargs="*", default=list(DUTS), choices=list(DUTS))
    ap.add_argument("--sim", default="verilator", choices=["verilator", "icarus"])
    ap.add_argument("--testcase", default=None)
    ap.add_argument("--full", action="store_true", help="include the long (slow) inputs")
    a = ap.parse_args(argv)
    bad = 0
    for d in a.dut:
        env = {"TB_FULL": "1"} if a.full else {}
        n, failed, _ = build_and_run(d, sim=a.sim, testcase=a.testcase, extra_env=env)
        print(f"{d} on {a.sim}: {n - failed}/{n} passed")
        bad += failed
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
