"""hftaccel.spec.net: header field tables agree with scapy's encoders; the module stands alone."""

import ast
from pathlib import Path

import pytest

from hftaccel.spec import net


def _at(raw: bytes, field: net.Field, base: int = 0) -> int:
    return int.from_bytes(raw[base + field.offset:base + field.offset + field.size], "big")


def test_tables_are_contiguous():
    for table, size in ((net.ETH_HEADER_FIELDS, net.ETH_HEADER_BYTES),
                        (net.VLAN_TAG_FIELDS, net.VLAN_TAG_BYTES),
                        (net.IPV4_HEADER_FIELDS, net.IPV4_MIN_HEADER_BYTES),
                        (net.UDP_HEADER_FIELDS, net.UDP_HEADER_BYTES)):
        assert sum(f.size for f in table.values()) == size
    assert net.IPV4_MIN_HEADER_BYTES == 4 * net.IPV4_MIN_IHL
    assert net.IPV4_MAX_HEADER_BYTES == 4 * 15
    assert len(set(net.DROP_REASONS)) == len(net.DROP_REASONS)


def test_offsets_match_scapy():
    scapy = pytest.importorskip("scapy.all")
    raw = bytes(scapy.Ether(dst="01:00:5e:00:00:01", src="00:11:22:33:44:55")
                / scapy.Dot1Q(vlan=100)
                / scapy.IP(src="10.1.2.3", dst="233.252.0.1", flags="MF", frag=3, proto=17)
                / scapy.UDP(sport=1234, dport=26400) / scapy.Raw(b"x" * 5))
    assert _at(raw, net.ETH_HEADER_FIELDS["ethertype"]) == 0x8100 in net.VLAN_TPIDS
    tag = net.ETH_HEADER_FIELDS["ethertype"].offset
    assert _at(raw, net.VLAN_TAG_FIELDS["tci"], tag) == 100
    l3 = net.ETH_HEADER_BYTES + net.VLAN_TAG_BYTES
    assert _at(raw, net.VLAN_TAG_FIELDS["tpid"], l3 - 2) == net.ETHERTYPE_IPV4
    ip = scapy.Ether(raw)[scapy.IP]
    f = net.IPV4_HEADER_FIELDS
    assert _at(raw, f["version_ihl"], l3) >> 4 == net.IPV4_VERSION
    assert _at(raw, f["total_length"], l3) == ip.len
    assert _at(raw, f["flags_fragment"], l3) & net.IPV4_FRAGMENT_MASK == 0x2003
    assert _at(raw, f["protocol"], l3) == net.IP_PROTO_UDP
    assert _at(raw, f["checksum"], l3) == ip.chksum
    assert _at(raw, f["src_ip"], l3) == 0x0A010203
    assert _at(raw, f["dst_ip"], l3) == 0xE9FC0001
    l4 = l3 + net.IPV4_MIN_HEADER_BYTES
    u = net.UDP_HEADER_FIELDS
    assert (_at(raw, u["src_port"], l4), _at(raw, u["dst_port"], l4)) == (1234, 26400)
    assert _at(raw, u["length"], l4) == net.UDP_HEADER_BYTES + 5


def test_imports_nothing_of_the_project():
    tree = ast.parse(Path(net.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and not (node.module or "").startswith(("hftaccel", "amaranth"))
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith(("hftaccel", "amaranth")) for a in node.names)
