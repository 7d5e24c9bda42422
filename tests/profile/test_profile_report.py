"""`hftaccel profile`: the report on a small synthetic capture.

The CPU/GPU report runs anywhere (the GPU is reported as not measured without a CUDA device).
The acceptance test replays the same capture through the gateware (Verilator, the small build
of tests/rtl/test_rtl_top.py, so the build is shared) and checks that the report's RTL numbers
are those of the latency.json the simulation wrote in the same run, in cycles and in ns.
"""

import base64
import json
import re
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from hftaccel.cli import app
from hftaccel.feeds import moldudp64, synthetic
from hftaccel.profile import SECTIONS, profile

#: tests/rtl/test_rtl_top.py's build parameters: the same Verilator build folder.
TEST_PARAMS = {"levels": 16, "order_slots": 1024, "max_probe": 8, "book_symbols": 4,
               "feature_symbols": 4, "num_locates": 256}
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """2500 order messages over 4 symbols as MoldUDP64 packets (up to 6 messages each)."""
    msgs = {}
    for chunk in synthetic.generate(2500, n_symbols=4, seed=5, max_live_orders=200):
        for t, arr in chunk.items():
            msgs[t] = arr if t not in msgs else np.concatenate([msgs[t], arr])
    path = tmp_path_factory.mktemp("profile") / "synthetic.pcap"
    moldudp64.write_pcap(path, msgs, max_messages_per_packet=6)
    return path


def _images(page: str) -> dict:
    """alt -> decoded PNG bytes of every embedded image."""
    out = {}
    for alt, data in re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,([^"]+)"', page):
        out[alt] = base64.b64decode(data)
    return out


def _check_files(rep, out):
    page = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    for sid, title in SECTIONS:
        assert f'<section id="{sid}"' in page
        assert f"## {title}" in md
    assert "src=\"http" not in page and "<script" not in page       # self-contained
    imgs = _images(page)
    assert imgs and all(b.startswith(PNG) for b in imgs.values())
    for name in rep["plots"].values():
        assert (out / name).read_bytes().startswith(PNG)
        assert f"]({name})" in md
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["summary"] == rep["summary"]
    return page, md, imgs


def test_cpu_gpu_report(capture, tmp_path):
    out = tmp_path / "report"
    rep = profile(capture, backends=["cpu", "gpu"], out=out, threshold_logit=0.0,
                  cpu_max_events=1500)
    page, md, imgs = _check_files(rep, out)
    cpu = rep["backends"]["cpu"]
    assert cpu["measured"] and cpu["agrees_with_batch"]
    assert cpu["events_timed"] == cpu["steps"] == 1500
    ev = cpu["per_event_ns"]
    assert ev["event_to_decision"]["n"] == 1500 and ev["book"]["n"] == 1500
    for stage in ("book", "features", "mlp", "risk", "ouch", "event_to_decision"):
        d = ev[stage]
        assert 0 < d["min"] <= d["median"] <= d["p90"] <= d["p99"] <= d["p99_9"] <= d["max"]
    assert cpu["throughput"]["messages_per_s"] > 0
    assert "CPU per-event latency" in imgs and "measured numbers beside published figures" in imgs
    gpu = rep["backends"]["gpu"]
    try:
        import cupy
        has_gpu = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        has_gpu = False
    if has_gpu:
        assert gpu["measured"] and gpu["mismatches"] == 0
    else:
        assert not gpu["measured"] and gpu["reason"].startswith("not measured")
        assert "GPU not measured" in page
    assert rep["backends"]["rtl"] == {"measured": False, "reason": "not requested (--backends)"}
    # references: sourced, kept apart from our numbers
    refs = rep["references"]
    assert len(refs) >= 4 and all(r["url"].startswith("https://") for r in refs)
    assert any("STAC-T0" in r["what"] for r in refs) and any("FINN" in r["what"] for r in refs)
    assert "not measured here" in md
    # reproducibility
    prov = rep["provenance"]
    import hashlib
    assert prov["input"]["sha256"] == hashlib.sha256(capture.read_bytes()).hexdigest()
    assert prov["model"]["onnx_sha256"] and prov["model"]["card_sha256"]
    assert prov["git"]["revision"] is None or re.fullmatch(r"[0-9a-f]{40}", prov["git"]["revision"])
    assert {"python", "numpy", "numba"} <= set(prov["tools"])
    assert rep["clock"]["nominal"] and rep["clock"]["mhz"] == 156.25


def test_emulated_gpu_is_not_a_measurement(capture, tmp_path):
    """The kernels' CPU emulation checks bit-exactness; the report never calls it a GPU
    measurement."""
    from hftaccel.backends import cpu
    from hftaccel.golden import mlp
    from hftaccel.profile import measure

    if shutil.which("g++") is None:
        pytest.skip("g++ not on PATH (the kernel emulation compiles with it)")
    res = cpu.run(capture)
    sc = res.extra["scoring"]
    engine = mlp.load(cpu.default_model())
    n = 300
    g = measure.gpu_profile(res.records[:n], engine, (sc.features[:n], sc.logits[:n]),
                            device="emulated", batches=(1, 100), max_batches=3)
    assert g["measured"] is False and "not GPU measurements" in g["reason"]
    assert g["mismatches"] == 0 and set(g["per_batch_ns"]) == {"1", "100"}


def test_cli_profile(capture, tmp_path):
    out = tmp_path / "cli"
    res = CliRunner().invoke(app, ["profile", str(capture), "--backends", "cpu", "--out",
                                   str(out), "--cpu-events", "300", "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout[res.stdout.index("{"):res.stdout.rindex("}") + 1])
    assert rep["backends"]["cpu"]["events_timed"] == 300
    assert (out / "report.html").is_file() and (out / "report.json").is_file()
    bad = CliRunner().invoke(app, ["profile", str(capture), "--backends", "fpga", "--out",
                                   str(out)])
    assert bad.exit_code == 2 and "fpga" in bad.output


@pytest.mark.sim
def test_rtl_report_agrees_with_latency_json(capture, tmp_path):
    """Acceptance: the report's RTL section carries the simulation's own numbers."""
    pytest.importorskip("amaranth", reason="amaranth not installed (pip install .[hw])")
    if shutil.which("verilator") is None:
        pytest.skip("verilator not on PATH (Debian: apt-get install verilator)")
    out = tmp_path / "report"
    rep = profile(capture, backends=["cpu", "rtl"], out=out, threshold_logit=0.0,
                  rtl_params=TEST_PARAMS, cpu_max_events=500)
    page, md, imgs = _check_files(rep, out)
    rtl = rep["backends"]["rtl"]
    assert rtl["measured"] and not any(rtl["mismatches"].values()), rtl["mismatches"]
    lj = json.loads((out / "latency.json").read_text())
    assert rtl["latency_json"] == str(out / "latency.json")
    assert rtl["latency_json_check"]["agrees"], rtl["latency_json_check"]
    t2t = rtl["tick_to_trade_cycles"]
    assert t2t["n"] > 0 and t2t["n"] == lj["tick_to_trade_cycles"]["n"]
    for k in ("n", "min", "median", "p99", "max", "mean"):
        assert t2t[k] == pytest.approx(lj["tick_to_trade_cycles"][k])
        for stage, d in lj["stages"].items():
            assert rtl["stages"][stage].get(k) == pytest.approx(d.get(k))
    assert t2t["median"] <= t2t["p90"] <= t2t["p99"] <= t2t["p99_9"] <= t2t["max"]
    # ns at the stated clock, and the wire-to-wire estimate built on them
    period = rep["clock"]["period_ns"]
    assert rtl["tick_to_trade_ns"]["median"] == pytest.approx(t2t["median"] * period)
    w = rtl["wire_to_wire"]
    assert [x["rate_gbps"] for x in w["median"]] == [1, 10, 25]
    assert all(x["core_ns"] == pytest.approx(rtl["tick_to_trade_ns"]["median"])
               for x in w["median"])
    # the orders the gateware sent are the golden model's (same risk config)
    assert t2t["n"] == rep["backends"]["cpu"]["summary"]["orders"]
    assert {"RTL per-stage histograms", "RTL latency CDF", "wire-to-wire estimate"} <= set(imgs)
    assert "agrees." in page
