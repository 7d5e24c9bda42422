"""The CuPy device class of hftaccel.backends.gpu without a GPU: its calls checked against the
installed CuPy's API, and its orchestration (pinned staging, stream, events, two buffer sets)
run end to end on a stand-in CuPy whose kernels are the emulated ones."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np
import pytest

from hftaccel.backends import cpu, gpu
from hftaccel.feeds import synthetic
from hftaccel.golden import features as gf
from hftaccel.golden import mlp

from test_gpu_kernels import assert_same, random_records


def test_cupy_api_surface():
    """Every CuPy call the device class makes exists with the arguments it passes."""
    cp = pytest.importorskip("cupy", reason="CuPy not installed (the 'gpu' extra)")
    cupyx = pytest.importorskip("cupyx")
    assert callable(cupyx.empty_pinned)
    get_doc = cp.ndarray.get.__doc__
    assert "stream" in get_doc and "out" in get_doc and "blocking" in get_doc
    assert "stream" in cp.ndarray.set.__doc__
    assert "grid, block, args" in cp.RawKernel.__call__.__doc__
    assert "options" in cp.RawModule.__doc__ and "code" in cp.RawModule.__doc__
    assert hasattr(cp.RawModule, "get_function")
    assert "non_blocking" in cp.cuda.Stream.__doc__ or "non_blocking" in (
        cp.cuda.Stream.__init__.__doc__ or "")
    assert hasattr(cp.cuda.Stream, "record") and hasattr(cp.cuda.Event, "synchronize")
    assert callable(cp.cuda.runtime.getDeviceCount)
    assert callable(cp.cuda.runtime.getDeviceProperties)


class _Array(np.ndarray):
    """Device array stand-in: host memory with CuPy's set / get."""

    def set(self, arr, stream=None):
        np.copyto(self, arr)

    def get(self, stream=None, order="C", out=None, blocking=True):
        if out is None:
            return np.array(self).view(np.ndarray)
        np.copyto(out, self)
        return out


class _Stream:
    def __init__(self, non_blocking=False):
        self.recorded = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def record(self):
        self.recorded += 1
        return SimpleNamespace(synchronize=lambda: None)


@pytest.fixture()
def fake_cupy(monkeypatch):
    try:
        emu = gpu.open_device("emulated")
    except gpu.GpuUnavailableError as exc:
        pytest.skip(f"kernel emulation unavailable: {exc}")
    modules = []

    class RawModule:
        def __init__(self, code=None, options=()):
            assert any(o.startswith("-DHFT_SPEC_DEFINES") for o in options)
            assert "extern \"C\" __global__" in code
            self.options = options
            modules.append(self)

        def get_function(self, name):
            def kernel(grid, block, args, shared_mem=0):
                assert isinstance(grid, tuple) and isinstance(block, tuple)
                for a in args:
                    assert isinstance(a, (_Array, np.int32, np.int64)), type(a)
                emu.launch(name, grid[0], block[0], args)
            return kernel

    cp = SimpleNamespace(
        empty=lambda shape, dtype: np.empty(shape, dtype).view(_Array),
        asarray=lambda a: np.array(a, copy=True).view(_Array),
        RawModule=RawModule,
        cuda=SimpleNamespace(
            Stream=_Stream, Device=lambda: SimpleNamespace(id=0),
            runtime=SimpleNamespace(
                getDeviceCount=lambda: 1,
                getDeviceProperties=lambda i: {"name": b"stand-in", "major": 9, "minor": 0})))
    cupyx = SimpleNamespace(empty_pinned=lambda n, dtype: np.empty(n, dtype))
    monkeypatch.setitem(sys.modules, "cupy", cp)
    monkeypatch.setitem(sys.modules, "cupyx", cupyx)
    return modules


def test_cuda_device_orchestration_on_a_stand_in(fake_cupy):
    dev = gpu.open_device("cuda")
    assert len(fake_cupy) == len(gpu.KERNEL_FILES)
    assert dev.describe() == {"device": "cuda", "name": "stand-in", "compute_capability": "9.0"}
    model = mlp.load(cpu.default_model())
    rec = random_records(np.random.default_rng(5), 5000, locates=tuple(range(1, 60)))
    eng = gf.FeatureEngine()
    pipe = gpu.GpuPipeline(dev, chunk_records=700)        # 8 chunks: both buffer sets reused
    for part in np.array_split(rec, [2500]):
        want = eng.update(part)
        got, logits = pipe.run(part, model)
        assert_same(got, want, "features")
        assert_same(logits, model.run(want), "logits")
    assert pipe.anomalies == eng.anomalies
    assert dev.stream.recorded == 8


def test_run_through_the_cuda_device_class(fake_cupy, tmp_path):
    path = tmp_path / "syn.itch"
    synthetic.write_itch(path, 4000, n_symbols=30, seed=8)
    got = gpu.run(path, device="cuda", strict=True, chunk_records=1000)
    assert got.summary["backend"] == "gpu" and got.extra["gpu"]["name"] == "stand-in"
    np.testing.assert_array_equal(got.extra["scoring"].features,
                                  gf.compute_features(got.records))
