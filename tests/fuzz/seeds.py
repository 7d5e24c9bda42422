"""Seed inputs of every harness, built from the vendored captures (``tests/data``).

``python scripts/fuzz.py seed`` writes them under ``tests/fuzz/corpus/<harness>/seed-*``; the
committed corpus is what it wrote plus every minimized crash (``crash-*``) a campaign found.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from hftaccel.feeds import itch, moldudp64
from hftaccel.golden import ouch
from hftaccel.spec import itch as itch_spec
from hftaccel.spec import ouch as ouch_spec

__all__ = ["seeds"]

_ROOT = Path(__file__).resolve().parents[2]
_DATA = _ROOT / "tests" / "data"
_SHARED = _ROOT.parent / "shared" / "data"


def _data(rel: str) -> Path:
    for base in (_DATA, _SHARED):
        p = base / rel
        if p.exists():
            return p
    raise FileNotFoundError(rel)


def _pcaps() -> list:
    d = _data("itch_pcap")
    if not any(d.glob("*.pcap")):
        d = _data("itch_pcap/omi_nasdaq_totalview_itch50")
    return sorted(d.glob("*.pcap"))


def _one_of_each_type() -> dict:
    msgs = {}
    for k, t in enumerate(itch_spec.LAYOUTS):
        a = itch.empty(t, 1)
        a["seq"] = k
        a["timestamp"] = 34_200_000_000_000 + k
        msgs[t] = a
    return msgs


def _prefixed(chunks) -> bytes:
    return b"".join(len(c).to_bytes(2, "big") + c for c in chunks)


def _ouch_stream() -> bytes:
    out = [ouch.soup_encode("client", "L", {"username": "FUZZ", "password": "PASS",
                                            "requested_session": "", "requested_sequence_number": 1})]
    for direction, ptype in (("inbound", "U"), ("outbound", "S")):
        for t, lay in ouch_spec.layouts(direction).items():
            msg = {"type": t}
            for f in lay.fields[1:]:
                msg[f.name] = b"A" * f.size if f.kind == "alpha" else 1
            if lay.appendage == ouch_spec.APPENDAGE_REQUIRED:
                msg["options"] = {}
            out.append(ouch.soup_packet(ptype, ouch.encode(direction, msg)))
    out.append(ouch.soup_encode("server", "H"))
    out.append(ouch.soup_encode("server", "Z"))
    return b"".join(out)


def seeds() -> dict:
    """``{harness: {name: bytes}}``: a few small inputs each."""
    raw = _data("itch/nasdaq_itch50_2019_first1000msgs.itch").read_bytes()
    first = itch.decode(raw)
    offs = np.sort(np.concatenate([a["offset"] for a in first.messages.values()]))
    head = raw[:int(offs[40]) - 2]
    every = itch.frame(*itch.encode(_one_of_each_type()))
    out: dict = {"itch": {"seed-nasdaq-first40": head, "seed-every-type": every}}

    pcaps = {p.stem: p.read_bytes() for p in _pcaps()}
    out["pcap"] = {f"seed-{k}": v for k, v in pcaps.items()}
    frames, payloads = [], []
    for p in _pcaps():
        fr = moldudp64.read_frames(p)
        frames += [fr.frame(i) for i in range(len(fr))]
        payloads += [bytes(pk) for pk in _mold_payloads(p)]
    out["eth"] = {"seed-omi-frames": _prefixed(frames)}
    out["mold"] = {"seed-omi-payloads": _prefixed(payloads)}

    tmp = _ROOT / "build" / "fuzz" / "seed"
    tmp.mkdir(parents=True, exist_ok=True)
    msgs = dict(list(_one_of_each_type().items())[:6])
    for name, kw in (("pcapng-ns", dict(pcapng=True)),
                     ("pcap-us-qinq", dict(nanosecond=False, vlan=(5, 6)))):
        moldudp64.write_pcap(tmp / f"{name}.pcap", msgs, heartbeat_interval_ns=1, **kw)
        out["pcap"][f"seed-{name}"] = (tmp / f"{name}.pcap").read_bytes()

    mpath = _SHARED / "lobster" / "AMZN_2012-06-21_34200000_57600000_message_1.csv"
    bpath = _SHARED / "lobster" / "AMZN_2012-06-21_34200000_57600000_orderbook_1.csv"
    if mpath.exists() and bpath.exists():
        m = b"".join(mpath.read_bytes().splitlines(keepends=True)[:30])
        b = b"".join(bpath.read_bytes().splitlines(keepends=True)[:30])
    else:   # the format's own example rows (LOBSTER ReadMe)
        m = b"34200.004241176,1,16113575,18,5853300,1\n34200.025552207,1,16120456,18,5859100,-1\n"
        b = b"5859100,18,5853300,18\n5859100,18,5853300,18\n"
    out["lobster"] = {"seed-amzn-30rows": m + b"\x00" + b}
    out["ouch"] = {"seed-every-type": _ouch_stream()}
    return out


def _mold_payloads(path):
    """UDP payloads (MoldUDP64 packets) of a capture."""
    fr = moldudp64.read_frames(path)
    for i in range(len(fr)):
        f = fr.frame(i)
        q = 14
        while struct.unpack(">H", f[q - 2:q])[0] in (0x8100, 0x88A8):
            q += 4
        ihl = (f[q] & 15) * 4
        ulen = struct.unpack(">H", f[q + ihl + 4:q + ihl + 6])[0]
        yield f[q + ihl + 8:q + ihl + ulen]
