"""gpu/kernels: nvcc / NVRTC compile checks, and the kernels run through the CPU emulation
(g++ + hft_emu.cuh) bit-exact with the golden features and integer MLP."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace

import numpy as np
import pytest

from hftaccel.backends import cpu, gpu
from hftaccel.feeds import itch, source, synthetic
from hftaccel.golden import features as gf
from hftaccel.golden import mlp
from hftaccel.golden.book import Book
from hftaccel.spec import book as book_spec
from hftaccel.spec import features as fs
from hftaccel.spec import itch as itch_spec

B, S = itch_spec.SIDE_BUY, itch_spec.SIDE_SELL
U32 = (1 << 32) - 1


@pytest.fixture(scope="module")
def emu():
    try:
        return gpu.open_device("emulated")
    except gpu.GpuUnavailableError as exc:
        pytest.skip(f"kernel emulation unavailable: {exc}")


@pytest.fixture(scope="module")
def model():
    return mlp.load(cpu.default_model())


@pytest.fixture(scope="module")
def amzn_records():
    feed = source.open_feed(source.embedded_sample())
    return Book().apply(feed.events)


def synthetic_records(n_messages, n_symbols, seed, hawkes=False, depth=book_spec.BOOK_DEPTH):
    book = Book(depth=depth)
    parts = [book.apply(itch.order_events(c)) for c in synthetic.generate(
        n_messages, n_symbols=n_symbols, seed=seed, hawkes=hawkes, chunk_size=n_messages)]
    return np.concatenate(parts)


def random_records(rng, n, locates=(1, 7, 300, 4242, 65535), depth=book_spec.BOOK_DEPTH,
                   extreme=False):
    """Random book records: sorted levels, one-sided / locked / crossed books, trades with and
    without a side, time gaps from 0 ns to hours and occasional time reversals."""
    rec = np.zeros(n, dtype=book_spec.book_record_dtype(depth))
    loc = rng.choice(locates, n)
    rec["stock_locate"] = loc
    rec["seq"] = np.arange(n)
    gaps = rng.choice([0, 500, 5_000, 200_000, 30_000_000, 10**12], n,
                      p=[.2, .2, .2, .25, .1, .05]) * rng.random(n)
    ts = np.cumsum(gaps.astype(np.int64)) + 34_200 * 10**9
    back = rng.random(n) < 0.01
    ts[back] -= 10**6
    rec["timestamp"] = ts
    rec["msg_type"] = rng.choice([ord(c) for c in "AFECXDUP"], n)
    rec["side"] = rng.choice([B, S, B, S, 0], n)
    rec["shares"] = rng.choice([0, U32], n) if extreme else rng.integers(1, 1000, n)
    mid = 1_000_000 + np.cumsum(rng.integers(-2, 3, n)) * 100
    rec["price"] = mid
    for side, sign in (("bid", -1), ("ask", 1)):
        nlev = rng.choice([0, 1, 2, 3, 5, depth], n, p=[.05, .1, .1, .15, .2, .4])
        half = rng.choice([-100, 0, 100, 200], n, p=[.05, .05, .6, .3])
        for j in range(depth):
            on = j < nlev
            p = mid + sign * (half + j * 100)
            rec[f"{side}_price"][:, j] = np.where(on, p, 0)
            q = rng.choice([1, U32], n) if extreme else rng.integers(1, 5000, n)
            rec[f"{side}_shares"][:, j] = np.where(on, q, 0)
            rec[f"{side}_orders"][:, j] = on
    return rec


def assert_same(got, want, what):
    bad = np.argwhere(got != want)
    assert bad.size == 0, (f"{what}: {len(bad)} mismatches, first (row, col) {bad[0].tolist()}: "
                           f"got {got[tuple(bad[0])]}, golden {want[tuple(bad[0])]}")


# ------------------------------------------------------------------------------ compile checks

@pytest.mark.parametrize("name", gpu.KERNEL_FILES)
def test_nvcc_ptx_sm90(name, tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not found on PATH")
    ptx = tmp_path / (name + ".ptx")
    proc = subprocess.run([nvcc, "--ptx", "-arch=sm_90", "-std=c++17", *gpu.compile_options(),
                           str(gpu.kernel_dir() / name), "-o", str(ptx)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    entries = re.findall(r"\.visible \.entry (\w+)\(", ptx.read_text())
    assert sorted(entries) == sorted(gpu.kernel_names(gpu.kernel_dir() / name))


@pytest.mark.parametrize("name", gpu.KERNEL_FILES)
def test_nvrtc_compiles(name):
    """NVRTC is what cupy.RawModule uses at run time."""
    try:
        from cupy_backends.cuda.libs import nvrtc
        prog = nvrtc.createProgram((gpu.kernel_dir() / name).read_text(), name, [], [])
    except Exception as exc:  # no CuPy, or CuPy without libnvrtc
        pytest.skip(f"NVRTC unavailable: {type(exc).__name__}: {exc}")
    try:
        nvrtc.compileProgram(prog, ["-std=c++17", "-arch=compute_90", *gpu.compile_options()])
    except Exception:
        pytest.fail(nvrtc.getProgramLog(prog))
    assert len(nvrtc.getPTX(prog)) > 0


def test_spec_defines_follow_the_spec():
    d = gpu.spec_defines()
    assert int(d["HFT_N_FEATURES"]) == fs.N_FEATURES
    assert int(d["HFT_TICK_RECIP"]) == fs.TICK_RECIP
    assert d["HFT_OFI_LO"] == f"({fs.feature_min('ofi_l1_k16')}LL)"
    assert int(d["HFT_C_TAGE"]) == fs.FEATURE_INDEX["t_since_trade"]
    assert int(d["HFT_WINDOW_LONG"]) == fs.WINDOW_LONG
    # the kernels restate no spec constant: every HFT_ macro they use is defined by the host
    used = set()
    for p in gpu.kernel_dir().glob("*.cu*"):
        used |= set(re.findall(r"\bHFT_[A-Z0-9_]+\b", p.read_text()))
    defined_in_sources = set()
    for p in gpu.kernel_dir().glob("*.cu*"):
        defined_in_sources |= set(re.findall(r"#define\s+(HFT_[A-Z0-9_]+)", p.read_text()))
    assert used - defined_in_sources - {"HFT_EMU_EXPORT"} <= set(d)


# ------------------------------------------------------------------------------ emulation

def test_emulated_block_scan_honours_syncthreads(emu):
    """The max-scan is three launches with shared-memory Hillis-Steele steps between barriers:
    wrong barrier semantics in the emulation would break it."""
    rng = np.random.default_rng(0)
    for m in (1, 5, 1023, 1024, 1025, 5000, 300_001):
        a = np.where(rng.random(m) < 0.01, np.arange(m), -1).astype(np.int32)
        d = emu.asarray(a)
        tile = gpu.FEAT_BLOCK * gpu.SCAN_ITEMS
        nb = -(-m // tile)
        agg = emu.empty(nb, np.int32)
        emu.launch("hft_scan_max_block", nb, gpu.FEAT_BLOCK, (np.int64(m), d, agg))
        emu.launch("hft_scan_max_carry", 1, gpu.FEAT_BLOCK, (np.int32(nb), agg))
        emu.launch("hft_scan_max_apply", -(-m // gpu.FEAT_BLOCK), gpu.FEAT_BLOCK,
                   (np.int64(m), d, agg))
        np.testing.assert_array_equal(d, np.maximum.accumulate(a))


@pytest.mark.parametrize("seed,extreme,chunk", [(0, False, 1 << 20), (1, False, 97),
                                                (2, True, 1 << 20), (3, True, 333)])
def test_emulated_random_streams_bit_exact(emu, model, seed, extreme, chunk):
    rec = random_records(np.random.default_rng(seed), 4000, extreme=extreme)
    eng = gf.FeatureEngine()
    want = eng.update(rec)
    pipe = gpu.GpuPipeline(emu, chunk_records=chunk)
    got, logits = pipe.run(rec, model)
    assert_same(got, want, "features")
    assert_same(logits, model.run(want), "logits")
    assert pipe.anomalies == eng.anomalies
    assert eng.anomalies["time_reversal"] > 0 and eng.anomalies["trade_without_side"] > 0


@pytest.mark.parametrize("depth", [fs.DEPTH_IMB_LEVELS, 11])
def test_emulated_other_depths(emu, depth):
    rec = random_records(np.random.default_rng(depth), 1500, depth=depth)
    assert_same(gpu.GpuPipeline(emu).run(rec)[0], gf.compute_features(rec), f"depth {depth}")


def test_emulated_state_persists_across_calls(emu, model):
    rec = random_records(np.random.default_rng(7), 3000, locates=tuple(range(1, 40)))
    eng = gf.FeatureEngine()
    pipe = gpu.GpuPipeline(emu, chunk_records=500)
    for part in np.array_split(rec, [1, 700, 701, 2100]):
        want = eng.update(part)
        got, logits = pipe.run(part, model)
        assert_same(got, want, "features")
        assert_same(logits, model.run(want), "logits")
    assert pipe.n_records == eng.n_records == 3000


def test_emulated_amzn_day_bit_exact(emu, model, amzn_records):
    rec = amzn_records
    assert rec.shape[0] == 86_852
    want = gf.compute_features(rec)
    got, logits = gpu.GpuPipeline(emu, chunk_records=30_000).run(rec, model)
    assert_same(got, want, "features")
    assert_same(logits, model.run(want), "logits")


@pytest.mark.parametrize("hawkes", [False, True])
def test_emulated_synthetic_multi_symbol_bit_exact(emu, model, hawkes):
    rec = synthetic_records(20_000, 64, seed=11, hawkes=hawkes)
    assert np.unique(rec["stock_locate"]).size > 30
    want = gf.compute_features(rec)
    got, logits = gpu.GpuPipeline(emu, chunk_records=6_000).run(rec, model)
    assert_same(got, want, "features")
    assert_same(logits, model.run(want), "logits")


@pytest.mark.slow
def test_emulated_synthetic_large_bit_exact(emu, model):
    rec = synthetic_records(400_000, 1000, seed=5, hawkes=True)
    want = gf.compute_features(rec)
    got, logits = gpu.GpuPipeline(emu, chunk_records=100_000).run(rec, model)
    assert_same(got, want, "features")
    assert_same(logits, model.run(want), "logits")


def test_mlp_kernel_requant_edges(emu, model):
    """Feature values at the int32 edges (float32 rounding of the input) and random ones."""
    rng = np.random.default_rng(3)
    x = rng.integers(-(1 << 31), 1 << 31, (3000, fs.N_FEATURES), dtype=np.int64)
    x[:500] = rng.choice([-(1 << 31), (1 << 31) - 1, 0, 1, -1, (1 << 24) + 1, (1 << 24) + 3,
                          -(1 << 25) - 2], (500, fs.N_FEATURES))
    x = x.astype(np.int32)
    p = gpu.mlp_program(model)
    d = {k: emu.asarray(v) for k, v in p.items() if isinstance(v, np.ndarray)}
    out = emu.empty((x.shape[0], p["n_out"]), np.int32)
    emu.launch("hft_mlp_int8", 7, gpu.MLP_BLOCK,
               (np.int32(x.shape[0]), emu.asarray(x), np.int32(fs.N_FEATURES), out, d["prog"],
                np.int32(d["prog"].size), d["weights"], np.int32(d["weights"].size), d["bias"],
                np.int32(d["bias"].size), d["shifts"], np.int32(d["shifts"].size)))
    assert_same(out, model.run(x), "logits")


def test_mlp_program_rejects_what_the_kernel_cannot_run(model):
    steps = list(model.steps)
    with pytest.raises(gpu.GpuUnavailableError, match="input quantizer"):
        gpu.mlp_program(replace(model, steps=steps[1:]))
    wide = replace(steps[1], weight=steps[1].weight * 300)
    with pytest.raises(gpu.GpuUnavailableError, match="not int8"):
        gpu.mlp_program(replace(model, steps=[steps[0], wide, *steps[2:]]))
    with pytest.raises(gpu.GpuUnavailableError, match="not requantized"):
        gpu.mlp_program(replace(model, steps=[s for s in steps if not
                                              (isinstance(s, mlp.Requant) and s is not steps[0])]))
