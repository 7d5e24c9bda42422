"""hftaccel.backends.gpu: run() against the CPU backend (emulated device), the fallback to the
CPU said once, --strict, the CLI, and CuPy on a real device (``gpu`` marker)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from hftaccel.backends import cpu, gpu
from hftaccel.cli import app
from hftaccel.feeds import itch, source, synthetic
from hftaccel.golden import features as gf
from hftaccel.golden import mlp
from hftaccel.golden.book import Book

runner = CliRunner()
TIMING = ("backend", "stage_seconds", "throughput_msgs_per_s")


def _comparable(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in TIMING}


def _same_run(got, want) -> None:
    assert _comparable(got.summary) == _comparable(want.summary)
    a, b = got.extra["scoring"], want.extra["scoring"]
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.logits, b.logits)
    np.testing.assert_array_equal(a.decisions, b.decisions)
    assert a.ouch == b.ouch
    np.testing.assert_array_equal(got.records, want.records)


@pytest.fixture()
def no_cuda(monkeypatch):
    """The GPU path unavailable, whatever the machine has."""
    real = gpu.open_device

    def fake(kind="cuda"):
        if kind == "cuda":
            raise gpu.GpuUnavailableError("no CUDA device (test)")
        return real(kind)

    monkeypatch.setattr(gpu, "open_device", fake)
    monkeypatch.setattr(gpu, "_said", set())
    monkeypatch.delenv("HFTACCEL_GPU_DEVICE", raising=False)


@pytest.fixture(scope="module")
def small_itch(tmp_path_factory):
    path = tmp_path_factory.mktemp("itch") / "syn.itch"
    synthetic.write_itch(path, 3000, n_symbols=20, seed=4)
    return path


@pytest.fixture(scope="module")
def emulated():
    try:
        gpu.open_device("emulated")
    except gpu.GpuUnavailableError as exc:
        pytest.skip(f"kernel emulation unavailable: {exc}")
    return "emulated"


def test_run_emulated_equals_cpu_on_the_amzn_day(emulated):
    got = gpu.run(device=emulated, chunk_records=50_000)
    want = cpu.run()
    assert got.summary["backend"] == "gpu" and want.summary["backend"] == "cpu"
    assert got.extra["gpu"]["device"] == "emulated"
    assert got.summary["book_updates"] == 86_852
    _same_run(got, want)


def test_run_emulated_equals_cpu_multi_symbol(emulated, small_itch):
    got = gpu.run(small_itch, device=emulated, chunk_records=1000)
    assert got.summary["book_updates"] == 3000 and np.unique(got.records["stock_locate"]).size > 10
    _same_run(got, cpu.run(small_itch))


def test_fallback_says_once_and_runs_on_cpu(no_cuda, small_itch):
    with pytest.warns(gpu.GpuFallbackWarning, match="no CUDA device"):
        first = gpu.run(small_itch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = gpu.run(small_itch)
    for res in (first, second):
        assert res.summary["backend"] == "cpu"
        assert "no CUDA device" in res.extra["gpu"]["fallback"]
    _same_run(first, cpu.run(small_itch))


def test_strict_raises(no_cuda, small_itch):
    with pytest.raises(gpu.GpuUnavailableError, match="no CUDA device"):
        gpu.run(small_itch, strict=True)


def test_bad_arguments_rejected():
    with pytest.raises(ValueError, match="device must be one of"):
        gpu.open_device("tpu")
    with pytest.raises(ValueError, match="chunk_records"):
        gpu.GpuPipeline("tpu", chunk_records=0)


def test_cli_gpu_falls_back(no_cuda, small_itch):
    res = runner.invoke(app, ["run", str(small_itch), "--backend", "gpu", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["backend"] == "cpu"


def test_cli_gpu_strict_fails(no_cuda, small_itch):
    res = runner.invoke(app, ["run", str(small_itch), "--backend", "gpu", "--strict", "--json"])
    assert res.exit_code == 2
    assert "no CUDA device" in res.output


def test_cli_gpu_emulated(emulated, small_itch, monkeypatch):
    monkeypatch.setenv("HFTACCEL_GPU_DEVICE", emulated)
    res = runner.invoke(app, ["run", str(small_itch), "--backend", "gpu", "--strict", "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    assert got["backend"] == "gpu"
    want = json.loads(runner.invoke(app, ["run", str(small_itch), "--json"]).stdout)
    assert _comparable(got) == _comparable(want)


def test_cli_unknown_backend():
    res = runner.invoke(app, ["run", "--backend", "tpu"])
    assert res.exit_code == 2 and "choose cpu, gpu or rtl" in " ".join(res.output.split())


# ------------------------------------------------------------------------------ real device

@pytest.fixture(scope="module")
def cuda():
    try:
        return gpu.open_device("cuda")
    except gpu.GpuUnavailableError as exc:
        pytest.skip(f"no usable CUDA device through CuPy: {exc}")


@pytest.mark.gpu
def test_cuda_amzn_day_bit_exact(cuda):
    rec = Book().apply(source.open_feed(source.embedded_sample()).events)
    model = mlp.load(cpu.default_model())
    want = gf.compute_features(rec)
    for chunk in (1 << 20, 10_000):
        got, logits = gpu.GpuPipeline(cuda, chunk_records=chunk).run(rec, model)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(logits, model.run(want))


@pytest.mark.gpu
def test_cuda_synthetic_multi_symbol_bit_exact(cuda):
    book = Book()
    rec = np.concatenate([book.apply(itch.order_events(m)) for m in synthetic.generate(
        300_000, n_symbols=500, seed=9, hawkes=True)])
    model = mlp.load(cpu.default_model())
    eng = gf.FeatureEngine()
    want = eng.update(rec)
    pipe = gpu.GpuPipeline(cuda, chunk_records=65_536)
    got, logits = pipe.run(rec, model)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(logits, model.run(want))
    assert pipe.anomalies == eng.anomalies


@pytest.mark.gpu
def test_cuda_run_equals_cpu(cuda):
    got = gpu.run(device="cuda", strict=True)
    assert got.summary["backend"] == "gpu"
    _same_run(got, cpu.run())
