"""hftaccel.feeds.moldudp64: real NASDAQ captures, writer round trips checked with scapy, and
malformed / adversarial captures (gaps, duplicates, A/B feeds, overlap, truncation, junk)."""

import struct
from pathlib import Path

import dpkt
import numpy as np
import pytest
from scapy.all import (ARP, ICMP, IP, TCP, UDP, Dot1AD, Dot1Q, Ether, IPv6, PcapNgWriter,
                       PcapWriter, Raw, rdpcap)
from scapy.utils import EDecimal

from hftaccel.feeds import itch
from hftaccel.feeds import moldudp64 as mold
from hftaccel.spec import itch as ispec
from hftaccel.spec import moldudp64 as mspec

OMI = Path(__file__).resolve().parents[1] / "data" / "itch_pcap"
SESSION = b"HFTACCEL01"


# ------------------------------------------------------------------------------------------
# independent oracles: scapy for L2-L4, struct at the spec's byte offsets for the rest
# ------------------------------------------------------------------------------------------

def _mold_fields(payload: bytes):
    """MoldUDP64 1.00 downstream packet: session(0,10) seq(10,8) count(18,2), then blocks."""
    session, seq, count = payload[:10], *struct.unpack_from(">QH", payload, 10)
    blocks, pos = [], 20
    if count not in (0, 0xFFFF):
        for _ in range(count):
            (n,) = struct.unpack_from(">H", payload, pos)
            blocks.append(payload[pos + 2:pos + 2 + n])
            pos += 2 + n
    return session, seq, count, blocks


def _scapy_packets(path):
    """[(capture time ns, scapy packet, mold fields or None)] for every frame."""
    out = []
    for p in rdpcap(str(path)):
        t = int(p.time * 1_000_000_000)
        out.append((t, p, _mold_fields(bytes(p[UDP].payload)) if UDP in p else None))
    return out


def _u(body, off, size):
    return int.from_bytes(body[off:off + size], "big")


# ITCH 5.0 byte offsets written out from the specification text (sections 4.2.2-4.6); the
# common header is type(0) locate(1,2) tracking(3,2) timestamp(5,6).
_SPEC_OFFSETS = {
    "A": [("order_ref", 11, 8), ("side", 19, -1), ("shares", 20, 4), ("stock", 24, -8),
          ("price", 32, 4)],
    "F": [("order_ref", 11, 8), ("side", 19, -1), ("shares", 20, 4), ("stock", 24, -8),
          ("price", 32, 4), ("attribution", 36, -4)],
    "D": [("order_ref", 11, 8)],
    "E": [("order_ref", 11, 8), ("executed_shares", 19, 4), ("match_number", 23, 8)],
    "U": [("original_order_ref", 11, 8), ("new_order_ref", 19, 8), ("shares", 27, 4),
          ("price", 31, 4)],
    "H": [("stock", 11, -8), ("trading_state", 19, -1), ("reserved", 20, -1),
          ("reason", 21, -4)],
    "L": [("mpid", 11, -4), ("stock", 15, -8), ("primary_market_maker", 23, -1),
          ("market_maker_mode", 24, -1), ("market_participant_state", 25, -1)],
    "I": [("paired_shares", 11, 8), ("imbalance_shares", 19, 8),
          ("imbalance_direction", 27, -1), ("stock", 28, -8), ("far_price", 36, 4),
          ("near_price", 40, 4), ("current_reference_price", 44, 4), ("cross_type", 48, -1),
          ("price_variation_indicator", 49, -1)],
}
_SPEC_LENGTH = {"A": 36, "F": 40, "D": 19, "E": 31, "U": 35, "H": 25, "L": 26, "I": 50}


def _check_against_raw(rec, body):
    t = body[:1].decode()
    assert len(body) == _SPEC_LENGTH[t]
    assert rec["msg_type"] == body[:1]
    assert rec["stock_locate"] == _u(body, 1, 2)
    assert rec["tracking_number"] == _u(body, 3, 2)
    assert rec["timestamp"] == _u(body, 5, 6)
    for name, off, size in _SPEC_OFFSETS[t]:
        want = body[off:off - size] if size < 0 else _u(body, off, size)
        assert rec[name] == want, (t, name)


OMI_EXPECT = {
    "AddOrderNoMpidAttributionMessage.pcap": {"A": 1},
    "MarketParticipantPositionMessage.pcap": {"L": 1},
    "NetOrderImbalanceIndicatorMessage.pcap": {"I": 1},
    "OrderDeleteMessage.pcap": {"D": 1},
    "OrderExecutedMessage.pcap": {"E": 1},
    "OrderReplaceMessage.pcap": {"U": 1},
    "StockTradingActionMessage.pcap": {"H": 1},
    "Multiple.Packets.pcap": {"A": 36, "D": 1, "F": 2},
}


@pytest.mark.parametrize("name", sorted(OMI_EXPECT))
def test_omi_capture(name):
    path = OMI / name
    cap = mold.read_pcap(path)
    assert itch.counts(cap.messages) == OMI_EXPECT[name]
    raw = _scapy_packets(path)
    file_bytes = path.read_bytes()
    by_seq = {}
    for t, p, (session, seq, count, blocks) in raw:
        assert Dot1Q in p and p[UDP].dport == 26477      # 802.1Q-tagged NASDAQ multicast
        assert session == b"000010059B"
        for k, body in enumerate(blocks):
            by_seq[seq + k] = (t, body)
    assert sorted(by_seq) == cap.seq.tolist()
    assert cap.sessions == [b"000010059B"] and cap.session == b"000010059B"
    assert cap.packets == len(raw) and cap.frames == len(raw)
    assert cap.duplicates == 0 and cap.heartbeats == 0 and not cap.end_of_session
    assert sum(cap.skipped.values()) == 0
    for arr in cap.messages.values():
        for rec in arr:
            t, body = by_seq[int(rec["seq"])]
            _check_against_raw(rec, body)
            o = int(rec["offset"])
            assert file_bytes[o:o + len(body)] == body
    # capture times are the packets' exact nanosecond pcap timestamps
    assert cap.capture_time_ns.tolist() == [by_seq[s][0] for s in cap.seq.tolist()]
    # iter_packets agrees with scapy frame by frame
    pk = list(mold.iter_packets(path))
    assert [(p.capture_time_ns, p.session, p.sequence_number, p.message_count,
             [bytes(m) for m in p.messages]) for p in pk] == \
        [(t, *f[:3], f[3]) for t, _, f in raw]


def test_omi_order_delete_values():
    """One D (4.4.4) spelled out: the values read by hand from the frame's hex dump."""
    cap = mold.read_pcap(OMI / "OrderDeleteMessage.pcap")
    d = cap.messages["D"][0]
    assert int(d["seq"]) == 0xE12F5A
    assert (int(d["stock_locate"]), int(d["tracking_number"])) == (0x0DBD, 0)
    assert int(d["timestamp"]) == 0x1F1ACED85AD8
    assert int(d["order_ref"]) == 0x01668BD6
    assert int(cap.capture_time_ns[0]) == 1692711000_000059938


def test_multiple_packets_gap():
    """The OMI multi-packet capture holds two packets far apart in the session: a gap."""
    cap = mold.read_pcap(OMI / "Multiple.Packets.pcap")
    raw = _scapy_packets(OMI / "Multiple.Packets.pcap")
    (_, _, (_, s0, c0, _)), (_, _, (_, s1, _, _)) = raw
    assert cap.gaps == [(b"000010059B", s0 + c0, s1 - s0 - c0)]


def test_read_frames_matches_dpkt_reader():
    path = OMI / "Multiple.Packets.pcap"
    fr = mold.read_frames(path)
    with open(path, "rb") as fh:
        ref = list(dpkt.pcap.Reader(fh))
    assert fr.nanosecond and len(fr) == len(ref)
    for i, (ts, buf) in enumerate(ref):
        assert fr.time_ns[i] == int(ts * 1_000_000_000)
        assert fr.frame(i) == buf


# ------------------------------------------------------------------------------------------
# synthetic messages of every type
# ------------------------------------------------------------------------------------------

def _synthetic(n=600, seed=7, first_seq=1):
    rng = np.random.default_rng(seed)
    types = np.array(sorted(ispec.LAYOUTS))
    kinds = rng.choice(types, n)
    kinds[: len(types)] = types                                  # every type at least once
    gaps = np.where(rng.random(n) < 0.75, rng.integers(50, 20_000, n),
                    rng.integers(100_000, 3_000_000, n))
    ts = 9 * 3600 * 10**9 + np.cumsum(gaps)
    out = {}
    for t in types:
        idx = np.flatnonzero(kinds == t)
        arr = itch.empty(str(t), idx.shape[0])
        for f in ispec.LAYOUTS[str(t)].fields[1:]:
            if f.name == "timestamp":
                arr[f.name] = ts[idx]
            elif f.kind == "alpha":
                letters = rng.integers(ord("A"), ord("Z") + 1, (idx.shape[0], f.size), np.uint8)
                arr[f.name] = letters.view(f"S{f.size}").reshape(-1)
            else:
                hi = 2 ** min(8 * f.size, 63)
                arr[f.name] = rng.integers(0, hi, idx.shape[0], dtype=np.int64).astype(np.uint64)
        arr["seq"] = first_seq + idx
        out[str(t)] = arr
    return out


@pytest.fixture(scope="module")
def msgs():
    return _synthetic()


def _strip(m):
    return {t: a[[n for n in a.dtype.names if n != "offset"]] for t, a in m.items()}


def _assert_same(got, want):
    g, w = _strip(got), _strip({t: a for t, a in want.items() if len(a)})
    assert set(g) == set(w)
    for t in w:
        assert np.array_equal(g[t], w[t]), t


def _all(m, field="seq"):
    return np.sort(np.concatenate([a[field] for a in m.values()]))


def _drop_seqs(m, seqs):
    seqs = np.asarray(list(seqs), np.uint64)
    return {t: a[~np.isin(a["seq"], seqs)] for t, a in m.items()}


@pytest.fixture(scope="module")
def base(tmp_path_factory, msgs):
    path = tmp_path_factory.mktemp("mold") / "base.pcap"
    stats = mold.write_pcap(path, msgs, max_messages_per_packet=8)
    return path, stats


VARIANTS = [
    dict(),
    dict(nanosecond=False),
    dict(pcapng=True),
    dict(pcapng=True, nanosecond=False),
    dict(vlan=141),
    dict(vlan=(100, 200), pcapng=True),
]


@pytest.mark.parametrize("kw", VARIANTS, ids=lambda kw: "-".join(f"{k}={v}" for k, v in
                                                                   kw.items()) or "pcap-ns")
def test_round_trip(tmp_path, msgs, base, kw):
    path = tmp_path / ("c.pcapng" if kw.get("pcapng") else "c.pcap")
    stats = mold.write_pcap(path, msgs, max_messages_per_packet=8, **kw)
    assert stats.messages == itch.n_messages(msgs) and stats.bytes == path.stat().st_size
    cap = mold.read_pcap(path)
    _assert_same(cap.messages, msgs)
    assert cap.gaps == [] and cap.duplicates == 0 and cap.end_of_session
    assert cap.sessions == [SESSION] and cap.packets == stats.packets
    # offsets point at each message's bytes in the file
    data = np.fromfile(path, np.uint8)
    payload, offs, lens = itch.encode(msgs)
    file_off = np.concatenate([a["offset"] for a in cap.messages.values()]).astype(np.int64)
    seqs = np.concatenate([a["seq"] for a in cap.messages.values()])
    file_off = file_off[np.argsort(seqs)]
    rows = np.arange(ispec.MESSAGE_LENGTH["I"])
    for L in np.unique(lens):
        k = np.flatnonzero(lens == L)
        assert np.array_equal(data[file_off[k][:, None] + rows[:L]],
                              payload[offs[k][:, None] + rows[:L]])
    # capture times: microsecond variants are the nanosecond ones truncated
    # (a VLAN tag lengthens the frame, hence its serialization time, hence the capture time)
    ref_path = base[0]
    if "vlan" in kw:
        ref_path = tmp_path / "ref.pcap"
        mold.write_pcap(ref_path, msgs, max_messages_per_packet=8, vlan=kw["vlan"])
    ref = mold.read_pcap(ref_path)
    want = ref.capture_time_ns if kw.get("nanosecond", True) else \
        ref.capture_time_ns // 1000 * 1000
    assert np.array_equal(cap.capture_time_ns, want)
    # scapy is the oracle for every written frame
    _check_frames_with_scapy(path, cap, kw)


def _check_frames_with_scapy(path, cap, kw):
    frames = _scapy_packets(path)
    iters = list(mold.iter_packets(path))
    assert len(frames) == len(iters) == cap.packets
    vlan = kw.get("vlan")
    tags = [] if vlan is None else ([vlan] if isinstance(vlan, int) else list(vlan))
    expect_seq = 1
    for (t, p, (session, seq, count, blocks)), it in zip(frames, iters):
        assert t == it.capture_time_ns
        if len(tags) == 2:
            assert p[Ether].type == 0x88A8 and Dot1AD in p
            assert [p[Dot1AD].vlan, p[Dot1Q].vlan] == tags
        elif tags:
            assert p[Ether].type == 0x8100 and p[Dot1Q].vlan == tags[0]
        else:
            assert p[Ether].type == 0x0800
        assert p[Ether].dst == "01:00:5e:7c:00:01"               # multicast MAC of 233.252.0.1
        ip, udp = p[IP], p[UDP]
        assert ip.version == 4 and ip.ihl == 5 and ip.flags == "DF" and ip.proto == 17
        assert ip.dst == "233.252.0.1" and udp.dport == mspec.DEFAULT_UDP_PORT
        rebuilt = IP(bytes(ip))
        want_ip, want_udp = rebuilt.chksum, rebuilt[UDP].chksum
        del rebuilt.chksum, rebuilt[UDP].chksum
        rebuilt = IP(bytes(rebuilt))
        assert (rebuilt.chksum, rebuilt[UDP].chksum) == (want_ip, want_udp)
        assert ip.len == 20 + udp.len and udp.len == 8 + len(udp.payload)
        assert len(udp.payload) <= mspec.MAX_PAYLOAD
        assert session == SESSION and seq == expect_seq
        assert (session, seq, count) == (it.session, it.sequence_number, it.message_count)
        assert blocks == [bytes(m) for m in it.messages]
        if count not in (0, 0xFFFF):
            assert 1 <= count <= 8
            ts = [_u(b, 5, 6) for b in blocks]
            assert max(ts) - ts[0] <= mold.BATCH_WINDOW_NS and ts == sorted(ts)
            midnight = 1340236800 * 10**9                          # 2012-06-21T00:00Z
            assert t >= midnight + max(ts) - (t % 1000 if kw.get("nanosecond") is False else 0)
            expect_seq += count
    assert frames[-1][2][2] == 0xFFFF and frames[-1][2][1] == expect_seq
    times = [f[0] for f in frames]
    assert times == sorted(times)


@pytest.mark.parametrize("vlan", [None, 141, (100, 200)])
def test_frames_equal_dpkt_built(tmp_path, msgs, vlan):
    """Every written frame is byte-identical to the one dpkt builds packet by packet from the
    same MoldUDP64 payload (dpkt fills lengths and both checksums itself)."""
    path = tmp_path / "d.pcap"
    mold.write_pcap(path, msgs, vlan=vlan, heartbeat_interval_ns=2_000_000)
    tags = [] if vlan is None else ([vlan] if isinstance(vlan, int) else list(vlan))
    with open(path, "rb") as fh:
        recs = list(dpkt.pcap.Reader(fh))
    for i, (_, buf) in enumerate(recs):
        payload = bytes(dpkt.ethernet.Ethernet(buf).data.data.data)
        udp = dpkt.udp.UDP(sport=49152, dport=mspec.DEFAULT_UDP_PORT, ulen=8 + len(payload),
                           data=payload)
        ip = dpkt.ip.IP(src=bytes([192, 0, 2, 1]), dst=bytes([233, 252, 0, 1]), p=17, ttl=64,
                        id=i & 0xFFFF, df=1, data=udp)
        eth = dpkt.ethernet.Ethernet(src=bytes.fromhex("020000000001"),
                                     dst=bytes.fromhex("01005e7c0001"), data=ip)
        if tags:
            eth.vlan_tags = [dpkt.ethernet.VLANtag8021Q(id=v) for v in tags]
        assert bytes(eth) == buf, i


def test_big_endian_pcap(tmp_path, base):
    """The same capture with a big-endian pcap header (rebuilt with dpkt's header classes)."""
    src = base[0].read_bytes()
    out = bytearray(bytes(dpkt.pcap.FileHdr(magic=dpkt.pcap.TCPDUMP_MAGIC_NANO, snaplen=65535,
                                            linktype=1)))
    pos = 24
    while pos < len(src):
        sec, frac, caplen, wire = struct.unpack_from("<IIII", src, pos)
        out += struct.pack(">IIII", sec, frac, caplen, wire) + src[pos + 16:pos + 16 + caplen]
        pos += 16 + caplen
    p = tmp_path / "be.pcap"
    p.write_bytes(bytes(out))
    a, b = mold.read_pcap(base[0]), mold.read_pcap(p)
    _assert_same(b.messages, a.messages)
    assert np.array_equal(a.capture_time_ns, b.capture_time_ns)


def test_pcapng_written_by_scapy_and_tsresol(tmp_path, base):
    """pcapng from another writer (scapy), and an IDB with if_tsresol=2^-30 and if_tsoffset."""
    frames = _scapy_packets(base[0])
    p = tmp_path / "scapy.pcapng"
    w = PcapNgWriter(str(p))
    for _, pkt, _ in frames:
        w.write(pkt)
    w.close()
    got = mold.read_frames(p)
    assert len(got) == len(frames)
    assert [got.frame(i) for i in range(len(got))] == [bytes(f[1]) for f in frames]
    cap = mold.read_pcap(p)
    ref = mold.read_pcap(base[0])
    _assert_same(cap.messages, ref.messages)
    # binary-fraction resolution plus an offset in seconds, built with dpkt's block classes
    pc = dpkt.pcapng
    opts = [pc.PcapngOptionLE(code=pc.PCAPNG_OPT_IF_TSRESOL, data=bytes([0x80 | 30])),
            pc.PcapngOptionLE(code=pc.PCAPNG_OPT_IF_TSOFFSET, data=struct.pack("<q", 1000)),
            pc.PcapngOptionLE(code=pc.PCAPNG_OPT_ENDOFOPT)]
    q = tmp_path / "resol.pcapng"
    with open(q, "wb") as fh:
        w = pc.Writer(fh, idb=pc.InterfaceDescriptionBlockLE(linktype=1, opts=opts))
        ticks = 3 * 2**30 + 2**29                                  # 3.5 s
        w.writepkt(pc.EnhancedPacketBlockLE(ts_high=ticks >> 32, ts_low=ticks & 0xFFFFFFFF,
                                            pkt_data=bytes(frames[0][1])))
    fr = mold.read_frames(q)
    assert fr.time_ns.tolist() == [1003_500_000_000]


def test_heartbeats_and_end_of_session(tmp_path, msgs):
    path = tmp_path / "hb.pcap"
    mold.write_pcap(path, msgs, heartbeat_interval_ns=1_500_000)
    frames = _scapy_packets(path)
    hb = [f for f in frames if f[2][2] == 0]
    assert len(hb) > 10
    cap = mold.read_pcap(path)
    assert cap.heartbeats == len(hb) and cap.end_of_session and cap.gaps == []
    _assert_same(cap.messages, msgs)
    pk = list(mold.iter_packets(path))
    assert sum(p.is_heartbeat for p in pk) == len(hb) and pk[-1].is_end_of_session
    # a heartbeat announces the next sequence number: losing the data packet before it shows
    k = next(i for i, f in enumerate(frames) if f[2][2] == 0 and i > 3)
    j = k - 1
    while frames[j][2][2] == 0:
        j -= 1
    lost = frames[j][2]
    cut = _rewrite(path, tmp_path / "hb_cut.pcap", drop={j})
    c2 = mold.read_pcap(cut)
    assert c2.gaps == [(SESSION, lost[1], lost[2])]
    _assert_same(c2.messages, _drop_seqs(msgs, range(lost[1], lost[1] + lost[2])))
    # End of Session alone: no messages
    e = tmp_path / "eos.pcap"
    assert mold.write_pcap(e, {}).packets == 1
    c3 = mold.read_pcap(e)
    assert c3.end_of_session and c3.n_messages == 0 and c3.messages == {}


# ------------------------------------------------------------------------------------------
# adversarial captures
# ------------------------------------------------------------------------------------------

def _rewrite(src, dst, *, drop=(), extra=None, edit=None):
    """Copy a capture frame by frame (dpkt reader, scapy writer), dropping, editing or
    inserting frames. ``extra``: {index: [frames to insert before it]}."""
    with open(src, "rb") as fh:
        recs = list(dpkt.pcap.Reader(fh))
    w = PcapWriter(str(dst), nano=True, linktype=1)
    for i, (ts, buf) in enumerate(recs):
        for fr in (extra or {}).get(i, []):
            w.write(_stamp(fr, ts))
        if i in drop:
            continue
        pkt = Ether(buf)
        if edit and i in edit:
            pkt = edit[i](pkt)
        w.write(_stamp(pkt, ts))
    for fr in (extra or {}).get(len(recs), []):
        w.write(_stamp(fr, recs[-1][0]))
    w.close()
    return dst


def _stamp(pkt, ts):
    pkt = pkt.copy() if hasattr(pkt, "copy") else pkt
    pkt.time = ts
    return pkt


def _frames(path):
    return _scapy_packets(path)


def test_gaps_exact(tmp_path, msgs, base):
    frames = _frames(base[0])
    drop = {3, 7, 8, 40}
    cut = _rewrite(base[0], tmp_path / "gaps.pcap", drop=drop)
    cap = mold.read_pcap(cut)
    want, missing = [], []
    for i in sorted(drop):
        _, s, c, _ = frames[i][2]
        missing += range(s, s + c)
        if want and want[-1][1] + want[-1][2] == s:
            want[-1] = (SESSION, want[-1][1], want[-1][2] + c)
        else:
            want.append((SESSION, s, c))
    assert cap.gaps == want
    assert len(want) == 3
    _assert_same(cap.messages, _drop_seqs(msgs, missing))
    assert cap.duplicates == 0


def test_duplicates_and_ab_feeds(tmp_path, msgs, base):
    """Every packet twice (back to back), then an A/B pair of feeds with B sometimes ahead."""
    frames = _frames(base[0])
    n = itch.n_messages(msgs)
    dup = _rewrite(base[0], tmp_path / "dup.pcap",
                   extra={i: [f[1]] for i, f in enumerate(frames) if f[2][2] not in (0, 0xFFFF)})
    cap = mold.read_pcap(dup)
    _assert_same(cap.messages, msgs)
    assert cap.duplicates == n and cap.gaps == []
    # B feed: the same payloads to another group and port, B randomly ahead of or behind A
    rng = np.random.default_rng(3)

    def b_copy(pkt):
        q = Ether(bytes(pkt))
        q[IP].dst = "233.252.0.2"
        q[UDP].dport = mspec.DEFAULT_UDP_PORT + 1
        del q[IP].chksum, q[UDP].chksum
        return Ether(bytes(q))

    extra, prev = {}, 0
    for i, f in enumerate(frames):
        # B's copy just before A's, or 0-2 packets after it (each feed stays in order)
        at = i if rng.random() < 0.5 else min(i + 1 + int(rng.integers(0, 3)), len(frames))
        prev = max(at, prev)
        extra.setdefault(prev, []).append(b_copy(f[1]))
    ab = _rewrite(base[0], tmp_path / "ab.pcap", extra=extra)
    cap = mold.read_pcap(ab)
    _assert_same(cap.messages, msgs)
    assert cap.duplicates == n and cap.gaps == []
    assert len(set(_all(cap.messages).tolist())) == n
    # the port filter keeps feed A only, dst_ip feed B only
    a = mold.read_pcap(ab, udp_port=mspec.DEFAULT_UDP_PORT)
    assert a.duplicates == 0 and a.skipped["udp_port_filtered"] == len(frames)
    b = mold.read_pcap(ab, dst_ip="233.252.0.2")
    assert b.duplicates == 0 and b.skipped["dst_ip_filtered"] == len(frames)
    _assert_same(b.messages, msgs)


def _mold_frame(seq, bodies, *, session=SESSION, count=None, vlan=141, dport=26400):
    payload = struct.pack(">10sQH", session, seq, len(bodies) if count is None else count)
    payload += b"".join(struct.pack(">H", len(b)) + b for b in bodies)
    l2 = Ether(dst="01:00:5e:7c:00:01", src="02:00:00:00:00:01")
    if vlan is not None:
        l2 = l2 / Dot1Q(vlan=vlan)
    return Ether(bytes(l2 / IP(src="192.0.2.9", dst="233.252.0.1") /
                       UDP(sport=1234, dport=dport) / Raw(payload)))


def _write(path, frames, t0=1340236800 * 10**9):
    w = PcapWriter(str(path), nano=True, linktype=1)
    for k, f in enumerate(frames):
        f.time = EDecimal(t0 + 1000 * k) / 10**9
        w.write(f)
    w.close()
    return path


def _bodies(msgs, first, last):
    """Encoded bytes of the messages with seqs first..last (msgs seqs start at 1)."""
    payload, offs, lens = itch.encode(msgs)
    return [payload[offs[s - 1]:offs[s - 1] + lens[s - 1]].tobytes() for s in
            range(first, last + 1)]


def test_partial_overlap(tmp_path, msgs):
    p = _write(tmp_path / "ov.pcap", [_mold_frame(1, _bodies(msgs, 1, 5)),
                                      _mold_frame(3, _bodies(msgs, 3, 8)),
                                      _mold_frame(2, _bodies(msgs, 2, 4)),
                                      _mold_frame(12, _bodies(msgs, 12, 12)),
                                      _mold_frame(9, _bodies(msgs, 9, 13))])
    cap = mold.read_pcap(p)
    # 3-5 again, 2-4 again, then 9-11 arrive after the gap was declared (stale) and 12 again
    assert cap.duplicates == 3 + 3 + 4
    assert cap.gaps == [(SESSION, 9, 3)]
    assert _all(cap.messages).tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 12, 13]
    want = {t: a[(a["seq"] <= 8) | (a["seq"] == 12) | (a["seq"] == 13)] for t, a in
            msgs.items()}
    _assert_same(cap.messages, want)
    # capture time of each message is that of the packet that first delivered it
    t0 = 1340236800 * 10**9
    assert cap.capture_time_ns.tolist() == [t0] * 5 + [t0 + 1000] * 3 + [t0 + 3000, t0 + 4000]


def test_truncated_udp_payload(tmp_path, base, msgs):
    """A frame cut short by the capture (caplen < IP total length): strict error naming file and
    frame; lenient counts it and reports the loss as a gap."""
    frames = _frames(base[0])
    src = base[0].read_bytes()
    # rebuild the file with frame 5's record cut by 7 bytes (dpkt header classes)
    out = bytearray(src[:24])
    pos, i = 24, 0
    while pos < len(src):
        sec, frac, caplen, wire = struct.unpack_from("<IIII", src, pos)
        keep = caplen - 7 if i == 5 else caplen
        out += bytes(dpkt.pcap.LEPktHdr(tv_sec=sec, tv_usec=frac, caplen=keep, len=wire))
        out += src[pos + 16:pos + 16 + keep]
        pos += 16 + caplen
        i += 1
    p = tmp_path / "trunc.pcap"
    p.write_bytes(bytes(out))
    with pytest.raises(mold.MoldError, match=r"trunc\.pcap: frame 5 \(byte \d+\)") as ei:
        mold.read_pcap(p)
    assert ei.value.frame_index == 5 and "truncated" in str(ei.value)
    cap = mold.read_pcap(p, lenient=True)
    assert cap.skipped == {"truncated_ipv4": 1}
    _, s, c, _ = frames[5][2]
    assert cap.gaps == [(SESSION, s, c)]
    _assert_same(cap.messages, _drop_seqs(msgs, range(s, s + c)))
    sk = {}
    assert len(list(mold.iter_packets(p, lenient=True, skipped=sk))) == len(frames) - 1
    assert sk == {"truncated_ipv4": 1}


def test_message_count_overruns_payload(tmp_path, msgs):
    good = _mold_frame(1, _bodies(msgs, 1, 3))
    over = _mold_frame(4, _bodies(msgs, 4, 6), count=5)             # says 5, carries 3
    long_len = _mold_frame(7, _bodies(msgs, 7, 7))
    raw = bytearray(bytes(long_len))
    blen_at = len(raw) - len(_bodies(msgs, 7, 7)[0]) - 2
    raw[blen_at:blen_at + 2] = struct.pack(">H", 200)               # length past the end
    trailing = _mold_frame(8, _bodies(msgs, 8, 8), count=0)         # heartbeat with a body
    short = Ether(bytes(Ether() / IP(dst="233.252.0.1") / UDP(dport=26400) / Raw(b"x" * 12)))
    p = _write(tmp_path / "over.pcap", [good, over, Ether(bytes(raw)), trailing, short,
                                        _mold_frame(9, _bodies(msgs, 9, 10))])
    with pytest.raises(mold.MoldError, match=r"over\.pcap: frame 1 .*overrun") as ei:
        mold.read_pcap(p)
    assert ei.value.frame_index == 1
    with pytest.raises(mold.MoldError, match="frame 1"):
        list(mold.iter_packets(p))
    cap = mold.read_pcap(p, lenient=True)
    assert cap.skipped == {"moldudp64_block_overrun": 2, "moldudp64_trailing_bytes": 1,
                           "moldudp64_short_header": 1}
    assert _all(cap.messages).tolist() == [1, 2, 3, 9, 10]
    assert cap.gaps == [(SESSION, 4, 5)]


def test_non_udp_frames_skipped(tmp_path, msgs, base):
    frames = _frames(base[0])
    junk = [
        Ether() / ARP(pdst="192.0.2.1"),
        Ether() / IPv6(dst="ff02::1") / UDP(dport=26400) / Raw(b"0" * 40),
        Ether() / Dot1Q(vlan=5) / IP(dst="233.252.0.1") / TCP(dport=26400) / Raw(b"0" * 40),
        Ether() / IP(dst="233.252.0.1") / ICMP(),
        Ether() / IP(dst="233.252.0.1", flags="MF") / UDP(dport=26400) / Raw(b"0" * 40),
        Ether() / Dot1AD(vlan=9) / Dot1Q(vlan=10) / ARP(),
    ]
    junk = [Ether(bytes(j)) for j in junk]
    p = _rewrite(base[0], tmp_path / "junk.pcap", extra={2: junk[:3], 9: junk[3:],
                                                          len(frames): junk[:1]})
    cap = mold.read_pcap(p)
    _assert_same(cap.messages, msgs)
    assert cap.skipped == {"non_ipv4": 4, "non_udp": 2, "ipv4_fragment": 1}
    assert cap.frames == len(frames) + 7 and cap.packets == len(frames)
    sk = {}
    assert len(list(mold.iter_packets(p, skipped=sk))) == len(frames)
    assert sk == cap.skipped


def test_itch_errors_inside_packets(tmp_path, msgs):
    bad = b"Z" + b"\0" * 10                                          # unknown message type
    p = _write(tmp_path / "itch.pcap", [_mold_frame(1, _bodies(msgs, 1, 2) + [bad] +
                                                    _bodies(msgs, 4, 4))])
    with pytest.raises(itch.ItchError, match="message 3"):
        mold.read_pcap(p)
    cap = mold.read_pcap(p, lenient=True)
    assert cap.skipped == {"itch_unknown_type": 1}
    assert _all(cap.messages).tolist() == [1, 2, 4] and cap.seq.tolist() == [1, 2, 4]
    assert cap.capture_time_ns.shape == (3,)


def test_sessions(tmp_path, msgs):
    frames = [_mold_frame(1, _bodies(msgs, 1, 2)),
              _mold_frame(1, _bodies(msgs, 1, 3), session=b"OTHERSESS1"),
              _mold_frame(3, _bodies(msgs, 3, 4))]
    p = _write(tmp_path / "sess.pcap", frames)
    with pytest.raises(mold.MoldError, match="2 sessions"):
        mold.read_pcap(p)
    cap = mold.read_pcap(p, session=SESSION)
    assert cap.sessions == [SESSION, b"OTHERSESS1"] and cap.duplicates == 0
    assert _all(cap.messages).tolist() == [1, 2, 3, 4]
    assert mold.read_pcap(p, session=b"OTHERSESS1").n_messages == 3


def test_bad_containers(tmp_path, base):
    p = tmp_path / "x.pcap"
    p.write_bytes(b"not a capture file at all")
    with pytest.raises(mold.MoldError, match=r"x\.pcap: not a pcap/pcapng file"):
        mold.read_pcap(p)
    cut = tmp_path / "cut.pcap"
    data = base[0].read_bytes()
    cut.write_bytes(data[:-9])
    with pytest.raises(mold.MoldError, match=r"cut\.pcap: pcap record of \d+ bytes runs past "
                                             r"the end of the file \(byte \d+\)"):
        mold.read_pcap(cut)
    cap = mold.read_pcap(cut, lenient=True)
    assert cap.skipped == {"truncated_record": 1} and not cap.end_of_session
    # a non-Ethernet link type
    q = tmp_path / "raw.pcap"
    with open(q, "wb") as fh:
        w = dpkt.pcap.Writer(fh, linktype=dpkt.pcap.DLT_RAW)
        w.writepkt(b"\x45" + b"\0" * 30, ts=1.0)
    with pytest.raises(mold.MoldError, match="not Ethernet"):
        mold.read_pcap(q)
    assert mold.read_pcap(q, lenient=True).skipped == {"non_ethernet_linktype": 1}


def test_writer_packetization_limits(tmp_path, msgs):
    p = tmp_path / "small.pcap"
    st = mold.write_pcap(p, msgs, max_payload=200, batch_window_ns=10**12)
    frames = _frames(p)
    data = [f for f in frames if f[2][2] not in (0, 0xFFFF)]
    assert st.packets == len(frames) == len(data) + 1
    assert max(len(bytes(f[1][UDP].payload)) for f in data) <= 200
    # greedy: the next message would not have fitted
    payload, offs, lens = itch.encode(msgs)
    sizes = [len(bytes(f[1][UDP].payload)) for f in data]
    firsts = [f[2][1] for f in data]
    for sz, nxt in zip(sizes[:-1], firsts[1:]):
        assert sz + 2 + lens[nxt - 1] > 200
    _assert_same(mold.read_pcap(p).messages, msgs)
    with pytest.raises(ValueError, match="max_payload"):
        mold.write_pcap(p, msgs, max_payload=40)
    with pytest.raises(ValueError, match="vlan"):
        mold.write_pcap(p, msgs, vlan=5000)
    # first_seq shifts the MoldUDP64 numbering
    mold.write_pcap(p, msgs, first_seq=1000)
    got = mold.read_pcap(p)
    assert _all(got.messages).tolist() == (_all(msgs) + 999).tolist()


def test_bad_pcapng_blocks(tmp_path, msgs):
    """An Enhanced Packet Block whose captured length exceeds the block, and a cut file."""
    path = tmp_path / "g.pcapng"
    mold.write_pcap(path, msgs, pcapng=True)
    data = bytearray(path.read_bytes())
    blocks, pos = [], 0
    while pos < len(data):                                  # independent block walk (struct)
        btype, blen = struct.unpack_from("<II", data, pos)
        blocks.append((btype, pos))
        pos += blen
    epbs = [p for t, p in blocks if t == 6]
    bad = epbs[4]
    struct.pack_into("<I", data, bad + 20, 4000)            # caplen far beyond the block
    p = tmp_path / "bad.pcapng"
    p.write_bytes(bytes(data))
    with pytest.raises(mold.MoldError, match=rf"bad\.pcapng: pcapng packet block: captured "
                                             rf"length exceeds the block \(byte {bad}\)"):
        mold.read_pcap(p)
    fr = mold.read_frames(p, lenient=True)
    assert len(fr) == len(epbs) - 1 and fr.skipped == {"truncated_record": 1}
    cap = mold.read_pcap(p, lenient=True)
    (s, c), = [(g[1], g[2]) for g in cap.gaps]
    assert cap.skipped == {"truncated_record": 1}
    _assert_same(cap.messages, _drop_seqs(msgs, range(s, s + c)))
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(mold.MoldError, match=rf"pcapng block does not fit the file "
                                             rf"\(byte {epbs[-1]}\)"):
        mold.read_pcap(cut)
    assert mold.read_pcap(cut, lenient=True).skipped == {"truncated_record": 1}
