"""Ethernet II / 802.1Q / IPv4 / UDP header fields and the frame-drop reasons, as data.

Source: IEEE 802.3 clause 3 (Ethernet II frame: destination and source MAC, EtherType),
IEEE 802.1Q (VLAN tag: TPID 0x8100, 802.1ad S-tag 0x88A8, and the pre-standard QinQ TPIDs
0x9100 / 0x9200 still seen on feeds), RFC 791 (IPv4 header; header checksum per RFC 1071),
RFC 768 (UDP header), IANA protocol numbers. In the style of LiteEth's ``common.py``: every
header is a field table, ``name -> Field(offset, size)`` in bytes from the start of that
header, all fields big-endian on the wire; nothing downstream writes an offset again.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "Field",
    "ETH_HEADER_FIELDS", "ETH_HEADER_BYTES", "ETHERTYPE_IPV4",
    "VLAN_TAG_FIELDS", "VLAN_TAG_BYTES", "VLAN_TPIDS",
    "IPV4_HEADER_FIELDS", "IPV4_MIN_HEADER_BYTES", "IPV4_MAX_HEADER_BYTES", "IPV4_VERSION",
    "IPV4_MIN_IHL", "IPV4_FRAGMENT_MASK", "IP_PROTO_UDP",
    "UDP_HEADER_FIELDS", "UDP_HEADER_BYTES",
    "DROP_REASONS",
]


class Field(NamedTuple):
    """One header field: ``offset`` and ``size`` in bytes from the start of its header."""
    offset: int
    size: int


#: Ethernet II header (no preamble, no FCS: as a MAC delivers the frame).
ETH_HEADER_FIELDS = {
    "dst_mac": Field(0, 6),
    "src_mac": Field(6, 6),
    "ethertype": Field(12, 2),
}
ETH_HEADER_BYTES = 14
#: EtherType of IPv4.
ETHERTYPE_IPV4 = 0x0800

#: 802.1Q tag, inserted where the EtherType was: TPID, then the tag control information; the
#: frame's EtherType (or the next tag's TPID) follows it.
VLAN_TAG_FIELDS = {
    "tpid": Field(0, 2),
    "tci": Field(2, 2),
}
VLAN_TAG_BYTES = 4
#: TPIDs that announce a tag: 802.1Q C-tag, 802.1ad S-tag, pre-standard QinQ values.
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100, 0x9200)

#: IPv4 header (RFC 791), options follow up to IHL * 4 bytes.
IPV4_HEADER_FIELDS = {
    "version_ihl": Field(0, 1),         # version: high nibble, IHL (32-bit words): low nibble
    "tos": Field(1, 1),
    "total_length": Field(2, 2),        # bytes, header included
    "identification": Field(4, 2),
    "flags_fragment": Field(6, 2),      # reserved, DF, MF, 13-bit fragment offset
    "ttl": Field(8, 1),
    "protocol": Field(9, 1),
    "checksum": Field(10, 2),
    "src_ip": Field(12, 4),
    "dst_ip": Field(16, 4),
}
IPV4_MIN_HEADER_BYTES = 20              # IHL 5
IPV4_MAX_HEADER_BYTES = 60              # IHL 15
IPV4_VERSION = 4
IPV4_MIN_IHL = 5
#: Bits of flags_fragment that make a datagram a fragment: MF and the fragment offset.
IPV4_FRAGMENT_MASK = 0x3FFF
#: IANA protocol number of UDP.
IP_PROTO_UDP = 17

#: UDP header (RFC 768); ``length`` counts the header and the payload, bytes.
UDP_HEADER_FIELDS = {
    "src_port": Field(0, 2),
    "dst_port": Field(2, 2),
    "length": Field(4, 2),
    "checksum": Field(6, 2),
}
UDP_HEADER_BYTES = 8

#: Why a receiver drops a frame, in the order the checks are made (the first failing check
#: names the drop): the frame ends inside a header (``truncated``), EtherType not IPv4 or too
#: many VLAN tags (``not_ipv4``), malformed IPv4 or UDP length fields (``bad_header``), not UDP
#: (``not_udp``), an IPv4 fragment (``fragment``), destination address / port filtered
#: (``dst_ip`` / ``dst_port``), IPv4 header checksum wrong (``checksum``).
DROP_REASONS = ("truncated", "not_ipv4", "bad_header", "not_udp", "fragment", "dst_ip",
                "dst_port", "checksum")


def _check_tables():
    for table, size in ((ETH_HEADER_FIELDS, ETH_HEADER_BYTES), (VLAN_TAG_FIELDS, VLAN_TAG_BYTES),
                        (IPV4_HEADER_FIELDS, IPV4_MIN_HEADER_BYTES),
                        (UDP_HEADER_FIELDS, UDP_HEADER_BYTES)):
        end = 0
        for f in table.values():
            assert f.offset == end, table        # contiguous, in wire order
            end = f.offset + f.size
        assert end == size, table


_check_tables()
