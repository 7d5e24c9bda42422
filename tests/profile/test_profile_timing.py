"""hftaccel.profile.timing: Ethernet wire time, fmax lookup in board build reports, and the
distribution statistics the report shares with the simulation's latency.json."""

import json

import numpy as np
import pytest

from hftaccel.profile import measure, timing


def test_wire_time():
    # a minimum frame: 8 preamble/SFD + 60 + 4 FCS + 12 IFG = 84 bytes = 672 bits
    assert timing.wire_bytes(42) == timing.wire_bytes(60) == 84
    assert timing.wire_time_ns(60, 10) == pytest.approx(67.2)
    assert timing.wire_time_ns(1500, 1) == pytest.approx((8 + 1500 + 4 + 12) * 8)
    assert timing.wire_time_ns(200, 25) == pytest.approx(224 * 8 / 25)
    # the order frame: Ethernet + IPv4 + TCP + SoupBinTCP (3) + Enter Order (47)
    assert timing.ORDER_FRAME_BYTES == 104
    est = timing.wire_to_wire(100.0, 200)
    assert [e["rate_gbps"] for e in est] == [1, 10, 25]
    for e in est:
        assert e["total_ns"] == pytest.approx(e["in_wire_ns"] + 100.0 + e["out_wire_ns"])
    with pytest.raises(ValueError, match="-1"):
        timing.wire_bytes(-1)
    with pytest.raises(ValueError, match="0"):
        timing.wire_time_ns(60, 0)


@pytest.mark.parametrize("where, body, want", [
    ("boards/versa/report.json",
     {"clocks": {"sync": {"fmax_mhz": 171.2, "target_mhz": 156.25},
                 "eth_rx": {"fmax_mhz": 140.0}}}, 171.2),
    ("versa/report.json", {"timing": {"fmax_mhz": {"sync": 160.5, "tx": 125.0}}}, 160.5),
    ("versa/run3/report.json", {"fmax": [{"domain": "rx", "mhz": 130e6},
                                         {"domain": "pll", "mhz": 120e6}]}, 120.0),
])
def test_board_clock_from_report(tmp_path, where, body, want):
    path = tmp_path / where
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(body))
    clk = timing.board_clock("versa", build_root=tmp_path)
    assert not clk["nominal"] and clk["mhz"] == pytest.approx(want)
    assert clk["period_ns"] == pytest.approx(1e3 / want)
    assert clk["source"] == str(path)


def test_board_clock_nominal(tmp_path):
    for board in (None, "ulx3s"):
        clk = timing.board_clock(board, build_root=tmp_path)
        assert clk["nominal"] and clk["mhz"] == timing.NOMINAL_MHZ
        assert "nominal" in clk["note"]
    (tmp_path / "ulx3s").mkdir()
    (tmp_path / "ulx3s" / "report.json").write_text(json.dumps({"luts": 100}))
    clk = timing.board_clock("ulx3s", build_root=tmp_path)
    assert clk["nominal"] and "report.json" in clk["note"]


def test_distribution_matches_latency_json_stats():
    """The report's statistics are latency.json's (same percentile method) plus p90/p99.9."""
    replay = pytest.importorskip("hftaccel.sim.replay")
    v = np.random.default_rng(1).integers(5, 60, 997)
    ours, theirs = measure.distribution(v), replay._dist(v)
    for k, x in theirs.items():
        assert ours[k] == pytest.approx(x)
    assert ours["median"] <= ours["p90"] <= ours["p99"] <= ours["p99_9"] <= ours["max"]
    assert measure.distribution([]) == {"n": 0}
