"""MoldUDP64/UDP/IPv4/Ethernet in pcap and pcapng captures: a sequencing reader and a writer.

Layers, bottom up:

* **Container** (:func:`read_frames`): classic pcap (micro- and nanosecond magic, either byte
  order) and pcapng (Section Header, Interface Description and Enhanced/obsolete Packet blocks,
  any ``if_tsresol`` / ``if_tsoffset``). File headers and pcapng SHB/IDB blocks are parsed with
  dpkt; the per-record walk keeps exact integer nanosecond timestamps and each frame's byte
  offset in the file (dpkt's readers return float seconds, which loses nanoseconds).
* **Ethernet II / 802.1Q / QinQ / IPv4 / UDP / MoldUDP64 framing**: one Numba pass over the
  whole capture classifies every frame and validates MoldUDP64 framing (spec sections 2-3:
  20-byte header, then Message Count blocks of 2-byte big-endian length + message).
* **Sequencing** (:func:`read_pcap`): per session, the first packet sets the expected sequence
  number; a packet beyond it records a gap, a packet entirely below it is a duplicate (A/B
  arbitration drops it), a partial overlap keeps only the unseen suffix.
* **ITCH**: the kept message bytes are decoded in place (the capture buffer itself is the uint8
  buffer) by :func:`hftaccel.feeds.itch.decode_blocks`.

:func:`write_pcap` goes the other way: an ITCH messages dict is packetized the way an exchange
does it (messages within a short batching window share a packet) into MoldUDP64/UDP/IPv4/
Ethernet (optionally 802.1Q or QinQ tagged) frames, written as pcap or pcapng. dpkt builds the
header template and the file/section/interface headers; a Numba emitter fills the per-packet
lengths, IPv4 identification and header checksum and the UDP checksum (RFC 1071), so no Python
object is made per packet. The tests check every frame byte for byte against dpkt building it
packet by packet, and the checksums with scapy.

Source: NASDAQ MoldUDP64 Protocol Specification 1.00; libpcap file format
(pcap-savefile(5)); IETF draft-ietf-opsawg-pcapng; IEEE 802.1Q; RFC 791; RFC 768.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
import struct
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import dpkt
import numba
import numpy as np

from hftaccel.spec import moldudp64 as spec

__all__ = [
    "MoldError",
    "CaptureFrames",
    "MoldPacket",
    "MoldCapture",
    "WriteStats",
    "BATCH_WINDOW_NS",
    "read_frames",
    "iter_packets",
    "read_pcap",
    "write_pcap",
]

#: Writer: messages whose ITCH timestamps lie within this window of the first message of a
#: packet may share the packet (exchanges batch what is ready in a short window), ns.
BATCH_WINDOW_NS = 50_000
#: Writer: fixed part of the wire delay between the matching engine timestamp and the capture
#: point (exchange gateway + one switch hop), ns.
_WIRE_DELAY_NS = 2_000
#: Writer: deterministic jitter added to the wire delay is ``hash(first seq) % _JITTER_NS``, ns.
_JITTER_NS = 256
#: Writer: Ethernet preamble + start delimiter + FCS + inter-frame gap, bytes on the wire.
_WIRE_OVERHEAD = 8 + 4 + 12
#: Writer: link speed used for serialization time, bits per ns (10GbE).
_LINK_BITS_PER_NS = 10
#: Writer: gap between the last packet and the End of Session packet when no heartbeat
#: interval is given, ns.
_END_OF_SESSION_DELAY_NS = 1_000_000
#: pcap snapshot length written by the writer (no truncation).
_SNAPLEN = 65535

_DLT_EN10MB = dpkt.pcap.DLT_EN10MB
_ETH_IP = 0x0800
_UDP_MAX_PAYLOAD = 65535 - 20 - 8

# Frame classification (Numba kernel output). < _ST_SKIP: MoldUDP64 packet; [_ST_SKIP, _ST_ERROR):
# traffic that is not ours, always skipped and counted; >= _ST_ERROR: malformed, an error unless
# lenient (then counted).
_ST_DATA, _ST_HEARTBEAT, _ST_END = 0, 1, 2
_ST_SKIP = 10
_ST_NON_IPV4, _ST_NON_UDP, _ST_FRAGMENT, _ST_DST_IP, _ST_PORT = 10, 11, 12, 13, 14
_ST_ERROR = 20
(_ST_TRUNC_ETH, _ST_TRUNC_IP, _ST_BAD_IP, _ST_TRUNC_UDP, _ST_BAD_UDP_LEN, _ST_MOLD_SHORT,
 _ST_OVERRUN, _ST_TRAILING) = range(20, 28)
_ST_SEQ_WRAP = 28

_REASONS = {
    _ST_NON_IPV4: "non_ipv4",
    _ST_NON_UDP: "non_udp",
    _ST_FRAGMENT: "ipv4_fragment",
    _ST_DST_IP: "dst_ip_filtered",
    _ST_PORT: "udp_port_filtered",
    _ST_TRUNC_ETH: "truncated_ethernet",
    _ST_TRUNC_IP: "truncated_ipv4",
    _ST_BAD_IP: "bad_ipv4_header",
    _ST_TRUNC_UDP: "truncated_udp",
    _ST_BAD_UDP_LEN: "bad_udp_length",
    _ST_MOLD_SHORT: "moldudp64_short_header",
    _ST_OVERRUN: "moldudp64_block_overrun",
    _ST_TRAILING: "moldudp64_trailing_bytes",
    _ST_SEQ_WRAP: "moldudp64_sequence_wrap",
}
_DESCRIPTIONS = {
    _ST_TRUNC_ETH: "Ethernet/VLAN header cut short",
    _ST_TRUNC_IP: "IPv4 packet longer than the captured frame (truncated capture?)",
    _ST_BAD_IP: "bad IPv4 header (version != 4, IHL < 5 or total length < IHL)",
    _ST_TRUNC_UDP: "UDP header cut short",
    _ST_BAD_UDP_LEN: "UDP length field outside [8, IPv4 payload length]",
    _ST_MOLD_SHORT: f"UDP payload shorter than the {spec.HEADER_SIZE}-byte MoldUDP64 header",
    _ST_OVERRUN: "MoldUDP64 message blocks overrun the UDP payload (Message Count too large "
                 "or a Message Length too long)",
    _ST_TRAILING: "bytes left in the UDP payload after Message Count message blocks",
    _ST_SEQ_WRAP: "Sequence Number + Message Count runs past 2**64 - 1",
}


class MoldError(ValueError):
    """Malformed capture or MoldUDP64 packet.

    Attributes
    ----------
    source : str
        The capture file.
    frame_index : int or None
        0-based index of the offending frame in the capture (None for container errors).
    offset : int
        Byte offset in the file of the offending record / frame.
    """

    def __init__(self, message: str, *, source: str, frame_index: int | None, offset: int):
        super().__init__(message)
        self.source = source
        self.frame_index = frame_index
        self.offset = offset


# --------------------------------------------------------------------------------------------
# Container layer
# --------------------------------------------------------------------------------------------

@dataclass
class CaptureFrames:
    """Every frame of a capture, as views into the file.

    Attributes
    ----------
    buf : np.ndarray
        uint8, shape (file_size,): the whole file (read-only memory map).
    offset : np.ndarray
        int64, shape (n,): byte offset in the file of each frame's first byte.
    caplen : np.ndarray
        int64, shape (n,): captured length of each frame, bytes.
    wirelen : np.ndarray
        int64, shape (n,): original length on the wire, bytes.
    time_ns : np.ndarray
        int64, shape (n,): capture time, ns since the Unix epoch (exact; microsecond captures
        give multiples of 1000).
    linktype : np.ndarray
        int32, shape (n,): DLT link type of the interface that captured each frame.
    nanosecond : bool
        True when every timestamp has nanosecond (or finer) resolution.
    skipped : dict
        reason -> count for records that carry no frame (lenient truncated tail, pcapng
        Simple Packet Blocks without a timestamp).
    source : str
        The file path.
    """

    buf: np.ndarray
    offset: np.ndarray
    caplen: np.ndarray
    wirelen: np.ndarray
    time_ns: np.ndarray
    linktype: np.ndarray
    nanosecond: bool
    skipped: dict
    source: str

    def __len__(self) -> int:
        return int(self.offset.shape[0])

    def frame(self, i: int) -> bytes:
        """Bytes of frame ``i``."""
        o = int(self.offset[i])
        return self.buf[o:o + int(self.caplen[i])].tobytes()


def _map_file(path) -> np.ndarray:
    size = os.path.getsize(path)
    if size == 0:
        return np.zeros(0, np.uint8)
    # a plain ndarray view of the map: slicing it makes no memmap objects
    return np.memmap(path, dtype=np.uint8, mode="r").view(np.ndarray)


def read_frames(path, *, lenient: bool = False) -> CaptureFrames:
    """Index every frame of a pcap or pcapng file.

    Parameters
    ----------
    path : str or os.PathLike
        Capture file; the format is recognised by its magic number.
    lenient : bool
        A truncated last record (or a pcapng packet block whose captured length exceeds the
        block) is counted in ``skipped["truncated_record"]`` instead of raising.

    Returns
    -------
    CaptureFrames

    Raises
    ------
    MoldError
        Unknown magic, bad pcapng block, or a record running past the end of the file (naming
        the byte offset).
    """
    source = os.fspath(path)
    buf = _map_file(path)
    head = bytes(buf[:4])
    if len(head) < 4:
        raise MoldError(f"{source}: not a pcap/pcapng file (only {len(buf)} bytes)",
                        source=source, frame_index=None, offset=0)
    if struct.unpack(">I", head)[0] == dpkt.pcapng.PCAPNG_BT_SHB:
        return _read_pcapng(buf, source, lenient)
    return _read_pcap(buf, source, lenient)


@numba.njit(cache=True)
def _u32(buf, p, big):
    if big:
        return ((np.int64(buf[p]) << 24) | (np.int64(buf[p + 1]) << 16)
                | (np.int64(buf[p + 2]) << 8) | np.int64(buf[p + 3]))
    return ((np.int64(buf[p + 3]) << 24) | (np.int64(buf[p + 2]) << 16)
            | (np.int64(buf[p + 1]) << 8) | np.int64(buf[p]))


@numba.njit(cache=True)
def _walk_pcap(buf, pos, big, fill, sec, frac, off, caplen, wirelen):
    """Walk pcap records (16-byte header: ts_sec, ts_frac, caplen, len). Returns (records,
    byte offset of a record that does not fit the file or -1)."""
    n = buf.shape[0]
    k = 0
    while pos < n:
        if pos + 16 > n:
            return k, pos
        cl = _u32(buf, pos + 8, big)
        if pos + 16 + cl > n:
            return k, pos
        if fill:
            sec[k] = _u32(buf, pos, big)
            frac[k] = _u32(buf, pos + 4, big)
            off[k] = pos + 16
            caplen[k] = cl
            wirelen[k] = _u32(buf, pos + 12, big)
        k += 1
        pos += 16 + cl
    return k, -1


def _read_pcap(buf, source, lenient) -> CaptureFrames:
    hdr_len = dpkt.pcap.FileHdr.__hdr_len__
    raw = bytes(buf[:hdr_len])
    if len(raw) < hdr_len:
        raise MoldError(f"{source}: pcap file header cut short ({len(raw)} bytes)",
                        source=source, frame_index=None, offset=0)
    magic = dpkt.pcap.FileHdr(raw).magic     # read big-endian: tells the byte order
    if magic in (dpkt.pcap.TCPDUMP_MAGIC, dpkt.pcap.TCPDUMP_MAGIC_NANO):
        fh, big = dpkt.pcap.FileHdr(raw), True
    elif magic in (dpkt.pcap.PMUDPCT_MAGIC, dpkt.pcap.PMUDPCT_MAGIC_NANO):
        fh, big = dpkt.pcap.LEFileHdr(raw), False
    else:
        raise MoldError(f"{source}: not a pcap/pcapng file (magic 0x{magic:08x} at byte 0)",
                        source=source, frame_index=None, offset=0)
    nano = magic in (dpkt.pcap.TCPDUMP_MAGIC_NANO, dpkt.pcap.PMUDPCT_MAGIC_NANO)
    if fh.linktype > 0x7FFFFFFF:    # LINKTYPE_* and the FCS bits above it fit 31 bits
        raise MoldError(f"{source}: pcap file header link type 0x{fh.linktype:08x} is not a "
                        f"link type (byte 20)", source=source, frame_index=None, offset=20)
    e = np.zeros(0, np.int64)
    n, bad = _walk_pcap(buf, hdr_len, big, False, e, e, e, e, e)
    sec, frac, off, caplen, wirelen = (np.empty(n, np.int64) for _ in range(5))
    _walk_pcap(buf, hdr_len, big, True, sec, frac, off, caplen, wirelen)
    skipped: dict = {}
    if bad >= 0:
        what = ("pcap record header cut short" if bad + 16 > len(buf) else
                f"pcap record of {_u32(buf, bad + 8, big)} bytes runs past the end of the file")
        _container_error(source, bad, what, lenient, skipped)
    time_ns = sec * 1_000_000_000 + frac * (1 if nano else 1000)
    return CaptureFrames(buf, off, caplen, wirelen, time_ns, np.full(n, fh.linktype, np.int32),
                         nano, skipped, source)


def _container_error(source, pos, what, lenient, skipped):
    if not lenient:
        raise MoldError(f"{source}: {what} (byte {pos})", source=source, frame_index=None,
                        offset=pos)
    skipped["truncated_record"] = skipped.get("truncated_record", 0) + 1


# pcapng walk stop codes
_NG_EOF, _NG_HEADER, _NG_BAD_BLOCK, _NG_BAD_CAPLEN = 0, 1, 2, 3
_SHB, _IDB, _PB, _SPB, _EPB = 0x0A0D0D0A, 1, 2, 3, 6


@numba.njit(cache=True)
def _walk_pcapng(buf, pos, big, count_only, k, off, caplen, wirelen, ticks, iface):
    """Walk pcapng blocks from ``pos``, recording Enhanced (and obsolete) Packet Blocks at
    index ``k`` on. Stops at a Section Header or Interface Description Block (unless
    ``count_only``, which follows byte-order changes itself), a bad block, or the end.

    Returns (k, pos, stop code, simple packet blocks passed)."""
    n = buf.shape[0]
    spb = 0
    while pos < n:
        if pos + 12 > n:
            return k, pos, _NG_BAD_BLOCK, spb
        btype = _u32(buf, pos, big)
        if btype == _SHB:
            if not count_only:
                return k, pos, _NG_HEADER, spb
            big = buf[pos + 8] == 0x1A
        elif btype == _IDB and not count_only:
            return k, pos, _NG_HEADER, spb
        blen = _u32(buf, pos + 4, big)
        if blen < 12 or blen % 4 != 0 or pos + blen > n:
            return k, pos, _NG_BAD_BLOCK, spb
        if btype == _EPB or btype == _PB:
            cl = _u32(buf, pos + 20, big)
            if 28 + cl + 4 > blen:
                if count_only:      # not counted: the filling walk skips it too (lenient)
                    pos += blen
                    continue
                return k, pos, _NG_BAD_CAPLEN, spb
            if not count_only:
                if btype == _EPB:
                    iface[k] = _u32(buf, pos + 8, big)
                else:               # PB: u16 interface id, u16 drops count
                    iface[k] = (_u32(buf, pos + 8, big) >> 16) if big else (
                        _u32(buf, pos + 8, big) & 0xFFFF)
                ticks[k] = np.uint64((_u32(buf, pos + 12, big) << 32) | _u32(buf, pos + 16, big))
                off[k] = pos + 28
                caplen[k] = cl
                wirelen[k] = _u32(buf, pos + 24, big)
            k += 1
        elif btype == _SPB:
            spb += 1
        pos += blen
    return k, pos, _NG_EOF, spb


def _tick_ns(t: int, resol: int, tsoff: int) -> int:
    """One pcapng tick count -> ns since the epoch, exactly (see :func:`_ticks_to_ns`)."""
    v = resol & 0x7F
    if resol & 0x80:
        ns = (t * 1_000_000_000) >> v
    else:
        ns = t * 10 ** (9 - v) if v <= 9 else t // 10 ** (v - 9)
    return ns + tsoff * 1_000_000_000


def _ticks_to_ns(ticks: np.ndarray, resol: int, tsoff: int) -> np.ndarray | None:
    """pcapng ticks -> ns since the epoch for an ``if_tsresol`` byte (MSB 0: 10**-v s,
    MSB 1: 2**-v s) and an ``if_tsoffset`` in seconds; None when a time does not fit int64."""
    if not ticks.shape[0]:
        return np.zeros(0, np.int64)
    # the map is monotonic in the tick count: the extremes tell whether every time fits
    if not all(-(1 << 63) <= _tick_ns(int(t), resol, tsoff) < 1 << 63
               for t in (ticks.min(), ticks.max())):
        return None
    v = resol & 0x7F
    if resol & 0x80 or abs(tsoff) >= 1 << 32:
        return np.array([_tick_ns(t, resol, tsoff) for t in ticks.tolist()], np.int64)
    if v <= 9:
        ns = ticks.astype(np.int64) * 10 ** (9 - v)
    elif v - 9 < 20:
        ns = (ticks // np.uint64(10 ** (v - 9))).astype(np.int64)
    else:                       # 10**20 > 2**64: every count is 0 ticks of a whole ns
        ns = np.zeros(ticks.shape[0], np.int64)
    return ns + tsoff * 1_000_000_000


def _resol_is_nano(resol: int) -> bool:
    v = resol & 0x7F
    return 2 ** v >= 1_000_000_000 if resol & 0x80 else v >= 9


def _ng_parse(cls, block: bytes, source: str, pos: int):
    """A pcapng Section Header / Interface Description Block parsed by dpkt; one dpkt refuses
    is a MoldError naming its byte offset."""
    try:
        return cls(block)
    except (dpkt.UnpackError, dpkt.NeedData, struct.error, UnicodeDecodeError) as exc:
        raise MoldError(f"{source}: bad pcapng {cls.__name__}: {exc} (byte {pos})",
                        source=source, frame_index=None, offset=pos) from None


def _read_pcapng(buf, source, lenient) -> CaptureFrames:
    pc = dpkt.pcapng
    n_bytes = len(buf)
    e = np.zeros(0, np.int64)
    n, _, _, _ = _walk_pcapng(buf, 0, False, True, 0, e, e, e, np.zeros(0, np.uint64), e)
    off, caplen, wirelen, iface = (np.empty(n, np.int64) for _ in range(4))
    ticks = np.empty(n, np.uint64)
    gifaces: list = []         # every interface: (linktype, tsresol byte, tsoffset s)
    section: list = []         # global indexes of the current section's interfaces
    skipped: dict = {}
    big = False
    pos = k = 0
    while True:
        k0 = k
        k, pos, code, spb = _walk_pcapng(buf, pos, big, False, k, off, caplen, wirelen, ticks,
                                         iface)
        if spb:
            skipped["pcapng_simple_packet_block"] = (
                skipped.get("pcapng_simple_packet_block", 0) + spb)
        if k > k0:
            ids = iface[k0:k]
            if int(ids.max()) >= len(section):
                bad = int(off[k0 + int(np.argmax(ids >= len(section)))]) - 28
                raise MoldError(f"{source}: pcapng packet block names interface "
                                f"{int(ids.max())} but {len(section)} are described "
                                f"(byte {bad})", source=source, frame_index=None, offset=bad)
            iface[k0:k] = np.asarray(section, np.int64)[ids]
        if code == _NG_EOF:
            break
        if code == _NG_BAD_CAPLEN:
            _container_error(source, pos, "pcapng packet block: captured length exceeds the "
                             "block", lenient, skipped)
            pos += _u32(buf, pos + 4, big)
            continue
        if code == _NG_BAD_BLOCK:
            _container_error(source, pos, "pcapng block does not fit the file", lenient,
                             skipped)
            break
        # a Section Header or Interface Description Block: parsed by dpkt
        if bytes(buf[pos:pos + 4]) == struct.pack(">I", pc.PCAPNG_BT_SHB):
            bom = bytes(buf[pos + 8:pos + 12])
            if bom not in (struct.pack("<I", pc.BYTE_ORDER_MAGIC),
                           struct.pack(">I", pc.BYTE_ORDER_MAGIC)):
                raise MoldError(f"{source}: pcapng section header with bad byte-order magic "
                                f"(byte {pos})", source=source, frame_index=None, offset=pos)
            big = bom == struct.pack(">I", pc.BYTE_ORDER_MAGIC)
        blen = _u32(buf, pos + 4, big) if pos + 12 <= n_bytes else 0
        if blen < 12 or blen % 4 or pos + blen > n_bytes:
            _container_error(source, pos, "pcapng block does not fit the file", lenient,
                             skipped)
            break
        block = bytes(buf[pos:pos + blen])
        if _u32(buf, pos, big) == pc.PCAPNG_BT_SHB:
            shb = _ng_parse(pc.SectionHeaderBlock if big else pc.SectionHeaderBlockLE, block,
                            source, pos)
            if shb.v_major != pc.PCAPNG_VERSION_MAJOR:
                raise MoldError(f"{source}: pcapng version {shb.v_major}.{shb.v_minor} "
                                f"not supported (byte {pos})", source=source,
                                frame_index=None, offset=pos)
            section = []
        else:
            idb = _ng_parse(pc.InterfaceDescriptionBlock if big else
                            pc.InterfaceDescriptionBlockLE, block, source, pos)
            resol, tsoff = 6, 0
            for opt in idb.opts:
                if opt.code in (pc.PCAPNG_OPT_IF_TSRESOL, pc.PCAPNG_OPT_IF_TSOFFSET):
                    size = 1 if opt.code == pc.PCAPNG_OPT_IF_TSRESOL else 8
                    if len(opt.data) != size:
                        raise MoldError(f"{source}: pcapng interface option {opt.code} has "
                                        f"{len(opt.data)} bytes, not {size} (byte {pos})",
                                        source=source, frame_index=None, offset=pos)
                    if size == 1:
                        resol = opt.data[0]
                    else:
                        tsoff = struct.unpack((">" if big else "<") + "q", opt.data)[0]
            section.append(len(gifaces))
            gifaces.append((idb.linktype, resol, tsoff))
        pos += blen
    off, caplen, wirelen, iface, ticks = off[:k], caplen[:k], wirelen[:k], iface[:k], ticks[:k]
    time_ns = np.zeros(k, np.int64)
    linktype = np.zeros(k, np.int32)
    used = np.unique(iface)
    for g in used.tolist():
        sel = iface == g
        lt, resol, tsoff = gifaces[g]
        t = _ticks_to_ns(ticks[sel], resol, tsoff)
        if t is None:
            bad = int(off[np.flatnonzero(sel)[0]]) - 28
            raise MoldError(f"{source}: pcapng timestamps of interface {g} (if_tsresol "
                            f"0x{resol:02x}, if_tsoffset {tsoff} s) do not fit int64 ns since "
                            f"the epoch (first packet block at byte {bad})", source=source,
                            frame_index=None, offset=bad)
        time_ns[sel] = t
        linktype[sel] = lt
    nano = all(_resol_is_nano(gifaces[g][1]) for g in (used.tolist() if k else
                                                       range(len(gifaces))))
    return CaptureFrames(buf, off, caplen, wirelen, time_ns, linktype, nano and bool(gifaces),
                         skipped, source)


# --------------------------------------------------------------------------------------------
# Ethernet / IPv4 / UDP / MoldUDP64 framing (one pass, Numba)
# --------------------------------------------------------------------------------------------

@numba.njit(cache=True)
def _be16(buf, p):
    return (np.int64(buf[p]) << 8) | np.int64(buf[p + 1])


@numba.njit(cache=True)
def _parse_frames(buf, off, caplen, udp_port, dst_ip, status, pay_off, seq, count):
    """Classify each frame and validate MoldUDP64 framing.

    Writes per frame: ``status`` (``_ST_*``), ``pay_off`` (file offset of the MoldUDP64
    header), ``seq`` (Sequence Number), ``count`` (Message Count). ``udp_port`` / ``dst_ip``
    < 0 disable the filters.
    """
    hsize = 20                     # spec.HEADER_SIZE (asserted by the caller)
    for i in range(off.shape[0]):
        p = off[i]
        end = p + caplen[i]
        pay_off[i] = -1
        if p + 14 > end:
            status[i] = _ST_TRUNC_ETH
            continue
        et = _be16(buf, p + 12)
        q = p + 14
        trunc = False
        while et == 0x8100 or et == 0x88A8 or et == 0x9100 or et == 0x9200:
            if q + 4 > end:
                trunc = True
                break
            et = _be16(buf, q + 2)
            q += 4
        if trunc:
            status[i] = _ST_TRUNC_ETH
            continue
        if et != 0x0800:
            status[i] = _ST_NON_IPV4
            continue
        if q + 20 > end:
            status[i] = _ST_TRUNC_IP
            continue
        vihl = np.int64(buf[q])
        ihl = (vihl & 15) * 4
        total = _be16(buf, q + 2)
        if (vihl >> 4) != 4 or ihl < 20 or total < ihl:
            status[i] = _ST_BAD_IP
            continue
        if buf[q + 9] != 17:
            status[i] = _ST_NON_UDP
            continue
        if (_be16(buf, q + 6) & 0x3FFF) != 0:
            status[i] = _ST_FRAGMENT
            continue
        if dst_ip >= 0:
            dip = (_be16(buf, q + 16) << 16) | _be16(buf, q + 18)
            if dip != dst_ip:
                status[i] = _ST_DST_IP
                continue
        u = q + ihl
        if u + 8 > end:
            status[i] = _ST_TRUNC_UDP
            continue
        if udp_port >= 0 and _be16(buf, u + 2) != udp_port:
            status[i] = _ST_PORT
            continue
        if q + total > end:
            status[i] = _ST_TRUNC_IP
            continue
        ulen = _be16(buf, u + 4)
        if ulen < 8 or ulen > total - ihl:
            status[i] = _ST_BAD_UDP_LEN
            continue
        m = u + 8
        mend = u + ulen
        if mend - m < hsize:
            status[i] = _ST_MOLD_SHORT
            continue
        s = np.uint64(0)
        for k in range(8):
            s = (s << np.uint64(8)) | np.uint64(buf[m + 10 + k])
        cnt = _be16(buf, m + 18)
        pay_off[i] = m
        seq[i] = s
        count[i] = cnt
        b = m + hsize
        if cnt == 0 or cnt == 0xFFFF:
            status[i] = _ST_HEARTBEAT if cnt == 0 else _ST_END
        else:
            status[i] = _ST_DATA
            for _ in range(cnt):
                if b + 2 > mend:
                    status[i] = _ST_OVERRUN
                    break
                b += 2 + _be16(buf, b)
                if b > mend:
                    status[i] = _ST_OVERRUN
                    break
        if status[i] < _ST_SKIP and b != mend:
            status[i] = _ST_TRAILING
        if status[i] == _ST_DATA and s > np.uint64(0xFFFFFFFFFFFFFFFF) - np.uint64(cnt):
            status[i] = _ST_SEQ_WRAP


@numba.njit(cache=True)
def _gather_blocks(buf, pay_off, skip, keep, out_off, out_len):
    """Message offsets/lengths of packets already validated by ``_parse_frames``.

    For packet ``j`` the first ``skip[j]`` blocks are passed over and the next ``keep[j]`` are
    written, in order, to ``out_off`` (file offset of the message's first byte) and ``out_len``.
    """
    w = 0
    for j in range(pay_off.shape[0]):
        b = pay_off[j] + 20
        for k in range(skip[j] + keep[j]):
            ln = _be16(buf, b)
            if k >= skip[j]:
                out_off[w] = b + 2
                out_len[w] = ln
                w += 1
            b += 2 + ln
    return w


assert spec.HEADER_SIZE == 20 and spec.BLOCK_LENGTH_SIZE == 2


@dataclass
class _Scan:
    frames: CaptureFrames
    status: np.ndarray
    pay_off: np.ndarray
    seq: np.ndarray
    count: np.ndarray
    skipped: dict


def _ip_to_int(ip) -> int:
    if ip is None:
        return -1
    return int(ipaddress.IPv4Address(ip))


def _scan(path, *, udp_port, dst_ip, lenient) -> _Scan:
    frames = read_frames(path, lenient=lenient)
    n = len(frames)
    status = np.zeros(n, np.int8)
    pay_off = np.zeros(n, np.int64)
    seq = np.zeros(n, np.uint64)
    count = np.zeros(n, np.int64)
    skipped = dict(frames.skipped)
    eth = frames.linktype == _DLT_EN10MB
    if not eth.all():
        bad = int(np.flatnonzero(~eth)[0])
        if not lenient:
            raise MoldError(f"{frames.source}: frame {bad} (byte {int(frames.offset[bad])}): "
                            f"link type {int(frames.linktype[bad])} is not Ethernet "
                            f"(DLT_EN10MB = {_DLT_EN10MB})", source=frames.source,
                            frame_index=bad, offset=int(frames.offset[bad]))
        skipped["non_ethernet_linktype"] = int((~eth).sum())
    idx = np.flatnonzero(eth)
    st = np.zeros(idx.shape[0], np.int8)
    po = np.zeros(idx.shape[0], np.int64)
    sq = np.zeros(idx.shape[0], np.uint64)
    ct = np.zeros(idx.shape[0], np.int64)
    if idx.shape[0]:
        _parse_frames(frames.buf, frames.offset[idx], frames.caplen[idx],
                      -1 if udp_port is None else int(udp_port), _ip_to_int(dst_ip),
                      st, po, sq, ct)
    status[idx], pay_off[idx], seq[idx], count[idx] = st, po, sq, ct
    status[~eth] = -1
    bad = np.flatnonzero(status >= _ST_ERROR)
    if bad.shape[0] and not lenient:
        i = int(bad[0])
        o = int(frames.offset[i])
        raise MoldError(f"{frames.source}: frame {i} (byte {o}): "
                        f"{_DESCRIPTIONS[int(status[i])]}", source=frames.source,
                        frame_index=i, offset=o)
    codes, counts = np.unique(status[status >= _ST_SKIP], return_counts=True)
    for code, c in zip(codes.tolist(), counts.tolist()):
        skipped[_REASONS[code]] = skipped.get(_REASONS[code], 0) + c
    return _Scan(frames, status, pay_off, seq, count, skipped)


# --------------------------------------------------------------------------------------------
# Reader API
# --------------------------------------------------------------------------------------------

@dataclass
class MoldPacket:
    """One MoldUDP64 downstream packet as captured.

    Attributes
    ----------
    capture_time_ns : int
        Capture time, ns since the Unix epoch.
    session : bytes
        The 10-byte Session.
    sequence_number : int
        Sequence Number of the first message (for heartbeats and End of Session: the next
        expected one).
    message_count : int
        Message Count as on the wire: 0 heartbeat, 0xFFFF End of Session.
    messages : list of memoryview
        The message blocks' payloads (without their 2-byte length), views into the file.
    frame_index : int
        0-based index of the frame in the capture.
    """

    capture_time_ns: int
    session: bytes
    sequence_number: int
    message_count: int
    messages: list
    frame_index: int

    @property
    def is_heartbeat(self) -> bool:
        return self.message_count == spec.HEARTBEAT_COUNT

    @property
    def is_end_of_session(self) -> bool:
        return self.message_count == spec.END_OF_SESSION_COUNT


def iter_packets(path, *, udp_port: int | None = None, dst_ip: str | None = None,
                 lenient: bool = False, skipped: dict | None = None) -> Iterator[MoldPacket]:
    """Yield every MoldUDP64 packet of a capture in capture order, without sequencing.

    Parameters
    ----------
    path : str or os.PathLike
        pcap or pcapng file of Ethernet frames.
    udp_port : int, optional
        Keep only UDP datagrams with this destination port.
    dst_ip : str, optional
        Keep only IPv4 packets with this destination address (dotted quad).
    lenient : bool
        Count malformed frames in ``skipped`` instead of raising.
    skipped : dict, optional
        If given, filled with reason -> count for frames that yield nothing: ``non_ipv4``
        (ARP, IPv6, ...), ``non_udp``, ``ipv4_fragment``, ``dst_ip_filtered``,
        ``udp_port_filtered`` and, when lenient, the malformed-frame reasons.

    Yields
    ------
    MoldPacket
        Heartbeats and End of Session packets included (empty ``messages``).

    Raises
    ------
    MoldError
        On the first malformed frame (naming the file, frame index and byte offset) unless
        ``lenient``. The whole capture is validated before the first packet is yielded.
    """
    sc = _scan(path, udp_port=udp_port, dst_ip=dst_ip, lenient=lenient)
    if skipped is not None:
        for k, v in sc.skipped.items():
            skipped[k] = skipped.get(k, 0) + v
    idx = np.flatnonzero((sc.status >= 0) & (sc.status < _ST_SKIP))
    data = sc.status[idx] == _ST_DATA
    n_msgs = np.where(data, sc.count[idx], 0)
    tot = int(n_msgs.sum())
    moff = np.zeros(tot, np.int64)
    mlen = np.zeros(tot, np.int64)
    _gather_blocks(sc.frames.buf, sc.pay_off[idx], np.zeros(idx.shape[0], np.int64), n_msgs,
                   moff, mlen)
    mv = memoryview(sc.frames.buf)
    starts = np.concatenate(([0], np.cumsum(n_msgs)))
    times = sc.frames.time_ns
    for j, i in enumerate(idx.tolist()):
        po = int(sc.pay_off[i])
        a, b = int(starts[j]), int(starts[j + 1])
        msgs = [mv[o:o + ln] for o, ln in zip(moff[a:b].tolist(), mlen[a:b].tolist())]
        yield MoldPacket(int(times[i]), bytes(mv[po:po + spec.SESSION_SIZE]), int(sc.seq[i]),
                         int(sc.count[i]), msgs, i)


@dataclass
class MoldCapture:
    """Result of :func:`read_pcap`.

    Attributes
    ----------
    messages : dict
        ``{msg_type: np.ndarray of hftaccel.spec.decoded_dtype(msg_type)}``; ``seq`` is the
        MoldUDP64 sequence number, ``offset`` the byte offset in the capture file of the
        message's first byte (its Message Type, after the 2-byte Message Length).
    seq : np.ndarray
        uint64, shape (n,): every decoded message's sequence number, ascending.
    capture_time_ns : np.ndarray
        uint64, shape (n,): capture time (ns since the Unix epoch) of the packet that delivered
        each message, aligned with ``seq``.
    sessions : list of bytes
        Sessions seen, in order of first appearance.
    session : bytes or None
        The session whose messages are in ``messages``.
    packets : int
        MoldUDP64 packets seen (data, heartbeat and End of Session; duplicates included).
    frames : int
        Frames in the capture.
    heartbeats : int
        Heartbeat packets (Message Count 0).
    end_of_session : bool
        An End of Session packet (Message Count 0xFFFF) was seen for ``session``.
    gaps : list of (bytes, int, int)
        ``(session, first_missing_seq, count)`` in detection order.
    duplicates : int
        Messages dropped because their sequence number had already been delivered.
    skipped : dict
        reason -> count: frames that are not ours (``non_ipv4``, ``non_udp``, ...), malformed
        frames (lenient), and ITCH decode skips prefixed with ``itch_``.
    events : np.ndarray of ORDER_EVENT_DTYPE or None
        With ``read_pcap(..., events=True)``: the book messages as order book input.
    type_counts : dict
        Messages delivered, by type (all types).
    """

    messages: dict
    seq: np.ndarray
    capture_time_ns: np.ndarray
    sessions: list
    session: bytes | None
    packets: int
    frames: int
    heartbeats: int
    end_of_session: bool
    gaps: list
    duplicates: int
    skipped: dict = field(default_factory=dict)
    events: np.ndarray | None = None
    type_counts: dict = field(default_factory=dict)

    @property
    def n_messages(self) -> int:
        return int(self.seq.shape[0])


def read_pcap(path, *, lenient: bool = False, udp_port: int | None = None,
              dst_ip: str | None = None, session: bytes | None = None,
              events: bool = False) -> MoldCapture:
    """Read a MoldUDP64 ITCH capture: sequence, de-duplicate and decode every message.

    Sequencing is per session, in capture order (MoldUDP64 spec 2-3): the first packet of a
    session sets the expected sequence number; a packet starting beyond it records a gap
    ``(session, expected, start - expected)`` and moves the expectation; a packet entirely
    below it is a duplicate (its messages are dropped and counted); a packet that straddles it
    has its already-delivered prefix dropped and the rest kept. Heartbeats and End of Session
    carry the next expected sequence number and so reveal gaps too. A/B feeds (the same
    packets on two groups) are arbitrated by the same rule.

    Parameters
    ----------
    path : str or os.PathLike
        pcap (micro/nanosecond) or pcapng capture of Ethernet frames.
    lenient : bool
        Count malformed frames and undecodable ITCH messages in ``skipped`` instead of raising.
    udp_port : int, optional
        Keep only datagrams to this UDP destination port.
    dst_ip : str, optional
        Keep only packets to this IPv4 destination.
    session : bytes, optional
        Session to decode; required when more than one session carries messages.
    events : bool
        Extract the book messages (A F E C X D U P) straight into ``MoldCapture.events``
        (ORDER_EVENT_DTYPE, the replay's fast path) instead of decoding them into ``messages``;
        ``MoldCapture.type_counts`` then counts every type.

    Returns
    -------
    MoldCapture

    Raises
    ------
    MoldError
        Malformed container or frame (file, frame index, byte offset), or several sessions
        with messages and no ``session`` chosen.
    hftaccel.feeds.itch.ItchError
        A message that does not decode (unless lenient).
    """
    from hftaccel.feeds import itch

    sc = _scan(path, udp_port=udp_port, dst_ip=dst_ip, lenient=lenient)
    src = sc.frames.source
    buf = sc.frames.buf
    idx = np.flatnonzero((sc.status >= 0) & (sc.status < _ST_SKIP))
    po = sc.pay_off[idx]
    # session ids in order of first appearance (void view: every byte counts)
    sess_raw = np.ascontiguousarray(buf[po[:, None] + np.arange(spec.SESSION_SIZE)]).view(
        f"V{spec.SESSION_SIZE}").reshape(-1)
    _, first, inv = np.unique(sess_raw, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.shape[0])
    sid = rank[inv.reshape(-1)].astype(np.int64)
    sessions = [bytes(buf[int(po[int(first[j])]):int(po[int(first[j])]) + spec.SESSION_SIZE])
                for j in order.tolist()]
    status = sc.status[idx]
    seq = sc.seq[idx]
    count = np.where(status == _ST_DATA, sc.count[idx], 0)
    n = idx.shape[0]
    skip, keep = np.zeros(n, np.int64), np.zeros(n, np.int64)
    gap_first, gap_len = np.zeros(n, np.uint64), np.zeros(n, np.uint64)
    _sequence(sid, status, seq, count, len(sessions), skip, keep, gap_first, gap_len)
    kept = keep > 0
    data_sessions = [sessions[j] for j in np.unique(sid[kept]).tolist()]
    if session is None:
        if len(data_sessions) > 1:
            raise MoldError(f"{src}: messages from {len(data_sessions)} sessions "
                            f"{data_sessions}; choose one with session=", source=src,
                            frame_index=None, offset=0)
        session = data_sessions[0] if data_sessions else (sessions[0] if sessions else None)
    session = None if session is None else bytes(session)
    sel_sid = sessions.index(session) if session in sessions else -1
    mine = sid == sel_sid
    g = np.flatnonzero(mine & (gap_len > 0))
    gaps = [(session, int(gap_first[j]), int(gap_len[j])) for j in g.tolist()]
    heartbeats = int((status == _ST_HEARTBEAT).sum())
    eos = bool((mine & (status == _ST_END)).any())
    duplicates = int(skip[mine].sum())
    sel = mine & kept
    kp = idx[sel]
    sk = skip[sel]
    kn = keep[sel]
    tot = int(kn.sum())
    moff = np.zeros(tot, np.int64)
    mlen = np.zeros(tot, np.int64)
    _gather_blocks(buf, sc.pay_off[kp], sk, kn, moff, mlen)
    first_seq = sc.seq[kp] + sk.astype(np.uint64)
    pkt_of_msg = np.repeat(np.arange(kp.shape[0]), kn)
    starts = np.concatenate(([0], np.cumsum(kn)))[:-1]
    seqs = first_seq[pkt_of_msg] + (np.arange(tot) - starts[pkt_of_msg]).astype(np.uint64)
    times = sc.frames.time_ns[kp][pkt_of_msg].astype(np.uint64)
    res = itch.decode_blocks(buf, moff, mlen, seqs, lenient=lenient, source=src, events=events)
    skipped = dict(sc.skipped)
    for reason, c in res.skipped.items():
        if c:
            skipped[f"itch_{reason}"] = skipped.get(f"itch_{reason}", 0) + c
    ev_seq = [res.events["seq"]] if res.events is not None else []
    dec_seq = np.sort(np.concatenate([a["seq"] for a in res.messages.values()] + ev_seq
                                     + [np.zeros(0, np.uint64)]).astype(np.uint64))
    cap = times[np.searchsorted(seqs, dec_seq)] if tot else np.zeros(0, np.uint64)
    return MoldCapture(res.messages, dec_seq, cap, sessions, session, int(idx.shape[0]),
                       len(sc.frames), heartbeats, eos, gaps, duplicates, skipped, res.events,
                       res.type_counts if events else itch.counts(res.messages))


@numba.njit(cache=True)
def _sequence(sid, status, seq, count, n_sessions, skip, keep, gap_first, gap_len):
    """Per-session sequencing in capture order (see :func:`read_pcap`).

    For packet ``k`` (session id ``sid[k]``): ``gap_first/gap_len`` record a gap found at it,
    ``skip`` the messages dropped as already delivered, ``keep`` the messages kept after them.
    ``count`` is 0 for heartbeats and End of Session packets.
    """
    expected = np.zeros(n_sessions, np.uint64)
    seen = np.zeros(n_sessions, np.bool_)
    for k in range(sid.shape[0]):
        j = sid[k]
        s = seq[k]
        if not seen[j]:
            seen[j] = True
            expected[j] = s
        e = expected[j]
        if s > e:
            gap_first[k] = e
            gap_len[k] = s - e
            e = s
            expected[j] = s
        if status[k] != _ST_DATA:
            continue
        n = np.uint64(count[k])
        d = e - s
        if d >= n:
            skip[k] = count[k]
        else:
            skip[k] = np.int64(d)
            keep[k] = np.int64(n - d)
            expected[j] = s + n


# --------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------

@dataclass
class WriteStats:
    """What :func:`write_pcap` wrote.

    Attributes
    ----------
    packets : int
        Frames written (data, heartbeat and End of Session packets).
    messages : int
        ITCH messages written.
    bytes : int
        Size of the file, bytes.
    """

    packets: int
    messages: int
    bytes: int


@numba.njit(cache=True)
def _packetize(lengths, ts, max_payload, max_msgs, window):
    """Packet boundaries: ``starts`` of each packet (int64, shape (n_packets + 1,))."""
    n = lengths.shape[0]
    starts = np.empty(n + 1, np.int64)
    k = 0
    i = 0
    while i < n:
        starts[k] = i
        k += 1
        size = 20 + 2 + lengths[i]
        j = i + 1
        while (j < n and j - i < max_msgs and size + 2 + lengths[j] <= max_payload
               and ts[j] - ts[i] <= window and ts[j] >= ts[i]):
            size += 2 + lengths[j]
            j += 1
        i = j
    starts[k] = n
    return starts[:k + 1]


@numba.njit(cache=True)
def _capture_times(pkt_ts, frame_bytes, first_seq, base_ns, delay_ns, jitter_ns):
    """Capture time of each packet: engine time + wire delay, never before the previous
    packet has finished serializing on the 10GbE link (ns since the epoch)."""
    n = pkt_ts.shape[0]
    out = np.empty(n, np.int64)
    prev = np.int64(-(1 << 62))
    for k in range(n):
        ser = (frame_bytes[k] + _WIRE_OVERHEAD) * 8 // _LINK_BITS_PER_NS
        h = (np.uint64(first_seq[k]) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)
        t = base_ns + pkt_ts[k] + delay_ns + ser + np.int64(h % np.uint64(jitter_ns))
        if t < prev + ser:
            t = prev + ser
        out[k] = t
        prev = t
    return out


def _mac(m) -> bytes:
    if isinstance(m, bytes):
        if len(m) != 6:
            raise ValueError(f"MAC address {m!r} is not 6 bytes")
        return m
    b = bytes.fromhex(str(m).replace(":", "").replace("-", ""))
    if len(b) != 6:
        raise ValueError(f"MAC address {m!r} is not 6 bytes")
    return b


def _midnight_ns(date) -> int:
    d = date if isinstance(date, _dt.date) else _dt.date.fromisoformat(str(date))
    return int(np.datetime64(d.isoformat(), "ns").astype(np.int64))


def write_pcap(path, messages: dict, *, session: bytes = b"HFTACCEL01", first_seq: int = 1,
               date="2012-06-21", max_payload: int = spec.MAX_PAYLOAD,
               max_messages_per_packet: int | None = None,
               src_mac="02:00:00:00:00:01", dst_mac=None, src_ip: str = "192.0.2.1",
               dst_ip: str = "233.252.0.1", src_port: int = 49152,
               dst_port: int = spec.DEFAULT_UDP_PORT, vlan: int | Sequence[int] | None = None,
               nanosecond: bool = True, pcapng: bool = False,
               heartbeat_interval_ns: int | None = None, end_of_session: bool = True,
               batch_window_ns: int = BATCH_WINDOW_NS) -> WriteStats:
    """Packetize an ITCH messages dict into MoldUDP64/UDP/IPv4/Ethernet frames and write them.

    Messages are taken in ``seq`` order (:func:`hftaccel.feeds.itch.encode`); message ``i``
    gets MoldUDP64 sequence number ``first_seq + i`` (the input ``seq`` values only order the
    messages). Consecutive messages share a packet while the packet fits ``max_payload`` bytes
    of UDP payload, holds at most ``max_messages_per_packet`` messages, and their ITCH
    timestamps lie within ``batch_window_ns`` of the packet's first message. A packet's
    capture time is midnight UTC of ``date`` + the largest ITCH timestamp in it + a wire delay
    (2 us fixed + 10GbE serialization + a 0-255 ns jitter hashed from its sequence number), and
    never earlier than the previous packet's time plus this packet's serialization time.
    Records are little-endian; the IPv4 identification counts packets (mod 2**16); the DF bit
    is set, TTL 64, and the UDP checksum is always computed.

    Parameters
    ----------
    path : str or os.PathLike
        Output file.
    messages : dict
        ``{msg_type: decoded array}`` (see :mod:`hftaccel.feeds.itch`).
    session : bytes
        10-byte MoldUDP64 Session (shorter values are space-padded).
    first_seq : int
        Sequence number of the first message.
    date : str or datetime.date
        Trading date (ISO ``YYYY-MM-DD``); ITCH timestamps are ns since its midnight (UTC here).
    max_payload : int
        Largest UDP payload, bytes (default: 1500-byte MTU less IPv4 and UDP headers).
    max_messages_per_packet : int, optional
        Cap on messages per packet (< 0xFFFF).
    src_mac, dst_mac : str or bytes
        Ethernet addresses; ``dst_mac`` defaults to the IPv4 multicast MAC of ``dst_ip``
        (01:00:5e + low 23 bits) or a locally administered unicast address.
    src_ip, dst_ip : str
        IPv4 addresses (dotted quad).
    src_port, dst_port : int
        UDP ports.
    vlan : int or sequence of int, optional
        802.1Q VLAN id, or (outer, inner) ids for 802.1ad QinQ.
    nanosecond : bool
        Nanosecond timestamps (pcap magic 0xa1b23c4d / pcapng ``if_tsresol`` 9); else
        microseconds (capture times truncated).
    pcapng : bool
        Write pcapng instead of pcap.
    heartbeat_interval_ns : int, optional
        When set, a heartbeat (Message Count 0, next expected sequence number) is sent every
        interval while no data packet is due.
    end_of_session : bool
        End with an End of Session packet (Message Count 0xFFFF).
    batch_window_ns : int
        Batching window, ns.

    Returns
    -------
    WriteStats

    Raises
    ------
    ValueError
        Bad session, addresses, ``max_payload`` smaller than the longest message needs, or
        capture times before the Unix epoch.
    """
    from hftaccel.feeds import itch

    session = bytes(session)
    if len(session) > spec.SESSION_SIZE:
        raise ValueError(f"session {session!r} is longer than {spec.SESSION_SIZE} bytes")
    session = session.ljust(spec.SESSION_SIZE, b" ")
    if not 0 <= first_seq < 2 ** 62:
        raise ValueError(f"first_seq {first_seq} outside [0, 2**62)")
    if not spec.HEADER_SIZE < max_payload <= _UDP_MAX_PAYLOAD:
        raise ValueError(f"max_payload {max_payload} outside ({spec.HEADER_SIZE}, "
                         f"{_UDP_MAX_PAYLOAD}]")
    max_msgs = spec.END_OF_SESSION_COUNT - 1
    if max_messages_per_packet is not None:
        if not 1 <= max_messages_per_packet <= max_msgs:
            raise ValueError(f"max_messages_per_packet {max_messages_per_packet} outside "
                             f"[1, {max_msgs}]")
        max_msgs = int(max_messages_per_packet)
    if heartbeat_interval_ns is not None and heartbeat_interval_ns <= 0:
        raise ValueError(f"heartbeat_interval_ns {heartbeat_interval_ns} must be > 0")
    tags = [] if vlan is None else ([vlan] if isinstance(vlan, int) else list(vlan))
    if len(tags) > 2 or not all(0 <= int(t) < 4096 for t in tags):
        raise ValueError(f"vlan {vlan!r}: give one or two VLAN ids in [0, 4095]")

    payload, offsets, lengths = itch.encode(messages)
    offsets = np.asarray(offsets, np.int64)
    lengths = np.asarray(lengths, np.int64)
    n = int(lengths.shape[0])
    arrays = [a for a in messages.values() if len(a)]
    if arrays:
        seq_all = np.concatenate([a["seq"] for a in arrays])
        ts_all = np.concatenate([a["timestamp"].astype(np.int64) for a in arrays])
        ts = ts_all[np.argsort(seq_all, kind="stable")]
    else:
        ts = np.zeros(0, np.int64)
    if n and int(lengths.max()) + spec.BLOCK_LENGTH_SIZE + spec.HEADER_SIZE > max_payload:
        raise ValueError(f"max_payload {max_payload} cannot hold a {int(lengths.max())}-byte "
                         f"message and the MoldUDP64 header")

    starts = _packetize(lengths, ts, int(max_payload), max_msgs, int(batch_window_ns))
    n_pkts = starts.shape[0] - 1
    framed = np.frombuffer(itch.frame(payload, offsets, lengths), np.uint8) if n else \
        np.zeros(0, np.uint8)
    block_end = np.concatenate(([0], np.cumsum(lengths + spec.BLOCK_LENGTH_SIZE)))
    counts = np.diff(starts)
    pkt_ts = np.maximum.reduceat(ts, starts[:-1]) if n else np.zeros(0, np.int64)
    eth_hdr = 14 + 4 * len(tags) + 20 + 8
    mold_bytes = spec.HEADER_SIZE + block_end[starts[1:]] - block_end[starts[:-1]]
    pkt_seq = first_seq + starts[:-1]
    base = _midnight_ns(date)
    times = _capture_times(pkt_ts, eth_hdr + mold_bytes, pkt_seq.astype(np.uint64), base,
                           _WIRE_DELAY_NS, _JITTER_NS)

    # every packet in send order: heartbeats (before data packet k, while no data is due),
    # data packets, End of Session
    if heartbeat_interval_ns is not None and n_pkts > 1:
        n_hb = np.concatenate(([0], (np.diff(times) - 1) // heartbeat_interval_ns))
    else:
        n_hb = np.zeros(n_pkts, np.int64)
    per = n_hb + 1
    total = int(per.sum()) + (1 if end_of_session else 0)
    owner = np.repeat(np.arange(n_pkts), per)                 # data packet each entry precedes
    j = np.arange(owner.shape[0]) - np.repeat(np.cumsum(per) - per, per)   # 0..n_hb
    is_data = j == n_hb[owner]
    p_time = np.where(is_data, times[owner],
                      np.concatenate(([0], times))[owner] + (j + 1) * (heartbeat_interval_ns or 0))
    p_seq = pkt_seq[owner].astype(np.uint64)
    p_cnt = np.where(is_data, counts[owner], spec.HEARTBEAT_COUNT).astype(np.int64)
    p_bs = np.where(is_data, block_end[starts[:-1]][owner], 0).astype(np.int64)
    p_be = np.where(is_data, block_end[starts[1:]][owner], 0).astype(np.int64)
    if end_of_session:
        last = int(times[-1]) if n_pkts else base
        p_time = np.append(p_time, last + (heartbeat_interval_ns or _END_OF_SESSION_DELAY_NS))
        p_seq = np.append(p_seq, np.uint64(first_seq + n))
        p_cnt = np.append(p_cnt, spec.END_OF_SESSION_COUNT)
        p_bs = np.append(p_bs, 0)
        p_be = np.append(p_be, 0)
    p_time = p_time.astype(np.int64)
    if total and int(p_time.min()) < 0:
        raise ValueError(f"date {date!r} puts capture times before the Unix epoch")

    # Ethernet (+802.1Q/802.1ad) / IPv4 / UDP header template, built by dpkt; per packet the
    # emitter fills IPv4 total length, identification and checksum, UDP length and checksum.
    smac = _mac(src_mac)
    dip = ipaddress.IPv4Address(dst_ip)
    sip = ipaddress.IPv4Address(src_ip)
    if dst_mac is None:
        dmac = (bytes([0x01, 0x00, 0x5E]) + (int(dip) & 0x7FFFFF).to_bytes(3, "big")
                if dip.is_multicast else bytes([0x02, 0, 0, 0, 0, 0x02]))
    else:
        dmac = _mac(dst_mac)
    udp = dpkt.udp.UDP(sport=src_port, dport=dst_port, ulen=8, data=b"")
    ip = dpkt.ip.IP(src=sip.packed, dst=dip.packed, p=dpkt.ip.IP_PROTO_UDP, ttl=64, id=0,
                    df=1, data=udp)
    eth = dpkt.ethernet.Ethernet(src=smac, dst=dmac, type=_ETH_IP, data=ip)
    if tags:
        eth.vlan_tags = [dpkt.ethernet.VLANtag8021Q(id=int(v)) for v in tags]
    tmpl = np.frombuffer(bytes(eth), np.uint8)
    ip_off = 14 + 4 * len(tags)
    assert tmpl.shape[0] == eth_hdr and tmpl[ip_off] == 0x45

    frame_len = eth_hdr + spec.HEADER_SIZE + (p_be - p_bs)
    if pcapng:
        rec_len = 28 + (frame_len + 3) // 4 * 4 + 4
        ticks = (p_time if nanosecond else p_time // 1000).astype(np.uint64)
        t_hi, t_lo = ticks >> np.uint64(32), ticks & np.uint64(0xFFFFFFFF)
        opt = dpkt.pcapng.PcapngOptionLE
        opts = ([opt(code=dpkt.pcapng.PCAPNG_OPT_IF_TSRESOL, data=bytes([9]))] if nanosecond
                else []) + [opt(code=dpkt.pcapng.PCAPNG_OPT_ENDOFOPT)]
        head = (bytes(dpkt.pcapng.SectionHeaderBlockLE())
                + bytes(dpkt.pcapng.InterfaceDescriptionBlockLE(
                    snaplen=_SNAPLEN, linktype=_DLT_EN10MB, opts=opts)))
    else:
        rec_len = 16 + frame_len
        t_hi = (p_time // 1_000_000_000).astype(np.uint64)
        t_lo = (p_time % 1_000_000_000 // (1 if nanosecond else 1000)).astype(np.uint64)
        head = bytes(dpkt.pcap.LEFileHdr(
            snaplen=_SNAPLEN, linktype=_DLT_EN10MB,
            magic=dpkt.pcap.TCPDUMP_MAGIC_NANO if nanosecond else dpkt.pcap.TCPDUMP_MAGIC))
    rec_pos = np.concatenate(([0], np.cumsum(rec_len)))
    out = np.zeros(int(rec_pos[-1]), np.uint8)
    _emit(out, rec_pos[:-1].astype(np.int64), bool(pcapng), t_hi, t_lo, tmpl, ip_off, framed,
          p_bs, p_be, p_seq, p_cnt, np.frombuffer(session, np.uint8))
    with open(path, "wb") as f:
        f.write(head)
        f.write(out.data)
    return WriteStats(total, n, len(head) + out.shape[0])


@numba.njit(cache=True)
def _put32le(out, p, v):
    for b in range(4):
        out[p + b] = (v >> (8 * b)) & 0xFF


@numba.njit(cache=True)
def _put16be(out, p, v):
    out[p] = (v >> 8) & 0xFF
    out[p + 1] = v & 0xFF


@numba.njit(cache=True)
def _ones_sum(buf, p, n):
    """RFC 1071 one's-complement sum (unfolded) of ``n`` bytes at ``p``, odd byte zero-padded."""
    s = np.int64(0)
    for i in range(0, n - 1, 2):
        s += (np.int64(buf[p + i]) << 8) | np.int64(buf[p + i + 1])
    if n % 2:
        s += np.int64(buf[p + n - 1]) << 8
    return s


@numba.njit(cache=True)
def _fold(s):
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


@numba.njit(cache=True)
def _emit(out, rec_pos, pcapng, t_hi, t_lo, tmpl, ip_off, framed, bstart, bend, seqs, counts,
          session):
    """Write every packet record (pcap record or pcapng EPB, little-endian) into ``out``."""
    hl = tmpl.shape[0]
    for k in range(rec_pos.shape[0]):
        mlen = 20 + bend[k] - bstart[k]
        flen = hl + mlen
        r = rec_pos[k]
        if pcapng:
            blen = 28 + (flen + 3) // 4 * 4 + 4
            _put32le(out, r, 6)                       # Enhanced Packet Block
            _put32le(out, r + 4, blen)
            _put32le(out, r + 8, 0)                   # interface 0
            _put32le(out, r + 12, np.int64(t_hi[k]))
            _put32le(out, r + 16, np.int64(t_lo[k]))
            _put32le(out, r + 20, flen)
            _put32le(out, r + 24, flen)
            _put32le(out, r + blen - 4, blen)
            p = r + 28
        else:
            _put32le(out, r, np.int64(t_hi[k]))       # ts_sec
            _put32le(out, r + 4, np.int64(t_lo[k]))   # ts_nsec / ts_usec
            _put32le(out, r + 8, flen)
            _put32le(out, r + 12, flen)
            p = r + 16
        out[p:p + hl] = tmpl
        q = p + ip_off
        _put16be(out, q + 2, 28 + mlen)               # IPv4 total length
        _put16be(out, q + 4, k & 0xFFFF)              # identification
        _put16be(out, q + 10, 0)
        _put16be(out, q + 10, (~_fold(_ones_sum(out, q, 20))) & 0xFFFF)
        u = q + 20
        _put16be(out, u + 4, 8 + mlen)                # UDP length
        _put16be(out, u + 6, 0)
        m = u + 8
        out[m:m + 10] = session
        s = seqs[k]
        for b in range(8):
            out[m + 17 - b] = np.uint8((s >> np.uint64(8 * b)) & np.uint64(0xFF))
        _put16be(out, m + 18, counts[k])
        out[m + 20:m + mlen] = framed[bstart[k]:bend[k]]
        # UDP checksum over the pseudo-header (src, dst, 0, 17, UDP length) and the datagram
        c = _ones_sum(out, q + 12, 8) + 17 + 8 + mlen + _ones_sum(out, u, 8 + mlen)
        c = (~_fold(c)) & 0xFFFF
        _put16be(out, u + 6, 0xFFFF if c == 0 else c)
