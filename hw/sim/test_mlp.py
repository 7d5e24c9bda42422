"""cocotb testbench of ``hftaccel.rtl.mlp.MLP`` (int32 feature vector -> int32 scores).

Scoreboard: the integer engine ``hftaccel.golden.mlp.load(model).run`` on the very vectors the
DUT receives: every score of every vector, and its ``meta`` payload, in order; onnxruntime on
the ONNX file checks the engine (and so the DUT) on a sample. Inputs: the feature vectors of
the real AMZN day (``hftaccel.model.dataset.amzn_day``: golden book -> golden features; a few
thousand, the whole day with ``TB_FULL=1``), random int32 vectors, and vectors at the input
quantizer's corners (rounding ties, saturation edges, the float32 boundary 2**24, int32
extremes). A second model (the default one with its int8 weights and int32 biases perturbed,
same scales) is loaded through the weight port, with writes into the map's holes that must be
ignored, then the default one is loaded back; a build with ``weights="compiled"`` has no
writable weights, so there the same writes must leave its scores unchanged. Directed models
(:func:`edge_model`: an all-zero weight column and row, weights at the int8 extremes and with
the most CSD digits, biases that always saturate or always clip to zero, sums that tie in the
requantization) run through the same tests.

The DUT's parameters come from the environment (``MLP_PARAMS``, JSON keyword arguments of
:class:`~hftaccel.rtl.mlp.MLP`), set by ``tests/rtl/test_rtl_mlp.py``.
"""

from __future__ import annotations

import functools
import json
import os

import numpy as np

import cocotb

from hftaccel.rtl.mlp import MLP
from hftaccel.sim.common import TB, StreamSink, StreamSource, full_run, record_latency

PARAMS = json.loads(os.environ.get("MLP_PARAMS", "{}"))
DUT = MLP(**PARAMS)
IN_LAYOUT = DUT.i.payload.shape()
OUT_LAYOUT = DUT.o.payload.shape()
META = "meta_layout" in PARAMS and PARAMS["meta_layout"] is not None
META_MASK = (1 << int(PARAMS.get("meta_layout") or 0)) - 1
FOLDED = DUT.macs_per_cycle is not None
COMPILED = DUT.weights == "compiled"
ICARUS = os.environ.get("SIM") == "icarus"
_M32 = 0xFFFF_FFFF


def _model_path():
    from importlib import resources
    return PARAMS.get("model") or str(resources.files("hftaccel.models") / "default.onnx")


def _count(parallel: int, *, folded: int) -> int:
    """Vectors for a test: ``parallel`` on the fully parallel build on Verilator, ``folded`` on a
    folded build (one vector per II cycles), an eighth of ``parallel`` on Icarus (whose
    fully parallel model runs ~100 cycles/s)."""
    if FOLDED:
        return folded
    return max(parallel // 8, 50) if ICARUS else parallel


def _s32(v: int) -> int:
    return v - (1 << 32) if v >> 31 else v


class MLPTB(TB):
    def __init__(self, dut, *, idle=0.3, stall=0.3):
        super().__init__(dut)
        self.src = StreamSource(self, "i", IN_LAYOUT, idle=idle)
        self.sink = StreamSink(self, "o", OUT_LAYOUT, stall=stall)
        dut.w_we.value = 0
        dut.w_addr.value = 0
        dut.w_data.value = 0
        self.sent_meta: list = []

    def send(self, x: np.ndarray):
        for row in x:
            beat = {"x": [int(v) & _M32 for v in row]}
            if META:
                tag = self.rng.getrandbits(64) & META_MASK
                beat["meta"] = tag
                self.sent_meta.append(tag)
            self.src.send_nowait(beat)

    async def settle(self, n: int, timeout=2_000_000):
        """Wait for the source to empty and ``n`` score vectors to arrive, then one more
        latency's worth of cycles for any extra one."""
        await self.drain(self.src, timeout=timeout, tail=0, what="vectors")
        for _ in range(timeout):
            if len(self.sink.queue) >= n:
                break
            await self.cycles(1)
        await self.cycles(DUT.latency + 40)

    async def write_weights(self, writes):
        """Drive ``(address, value)`` pairs through the weight port, one a cycle."""
        for addr, value in writes:
            self.dut.w_addr.value = int(addr)
            self.dut.w_data.value = int(value) & _M32
            self.dut.w_we.value = 1
            await self.cycles(1)
        self.dut.w_we.value = 0
        await self.cycles(1)


async def check(tb: MLPTB, x: np.ndarray, engine) -> list:
    """Send ``x``, compare every score vector (and meta) with ``engine.run(x)``; returns the
    ``(cycle, beat)`` list received."""
    want = engine.run(x)
    assert want.min() >= -(1 << 31) and want.max() < (1 << 31), "golden scores exceed int32"
    tb.sent_meta.clear()
    tb.send(x)
    await tb.settle(len(x))
    got = []
    while not tb.sink.empty():
        got.append(tb.sink.recv_nowait())
    assert len(got) == len(x), f"{len(got)} score vectors for {len(x)} inputs"
    for k, ((_, beat), w) in enumerate(zip(got, want)):
        s = [_s32(v) for v in beat["scores"]]
        assert s == [int(v) for v in w], (f"vector {k}: scores {s}, golden {w.tolist()}\n "
                                           f"features {x[k].tolist()}")
        if META:
            assert beat["meta"] == tb.sent_meta[k], f"vector {k}: meta {beat['meta']:#x}, " \
                                                    f"sent {tb.sent_meta[k]:#x}"
    assert tb.src.empty() and tb.sink.empty()
    return got


@functools.lru_cache(maxsize=1)
def amzn_features() -> np.ndarray:
    from hftaccel.model import dataset
    return dataset.amzn_day()[0]


def saturations(engine, x: np.ndarray) -> list:
    """Per requantization step of ``engine``, how many values of ``x``'s pass it clips (the
    NumPy reference semantics of the engine's steps)."""
    from hftaccel.golden import mlp as gm
    y = gm.float32_grid(np.asarray(x, np.int64))
    out = []
    for st in engine.steps:
        if isinstance(st, gm.Requant):
            pre = gm.rne_shift(y, st.shift)
            out.append(int(((pre < st.lo) | (pre > st.hi)).sum()))
            y = np.clip(pre, st.lo, st.hi)
        elif isinstance(st, gm.Dense):
            y = y @ st.weight.T + st.bias
        elif isinstance(st, gm.Relu):
            y = np.maximum(y, 0)
        else:
            y = np.clip(y, st.lo, st.hi)
    return out


def corner_vectors(rng, n: int, engine) -> np.ndarray:
    """Vectors whose every feature sits at a corner of its input quantizer: rounding ties and
    their neighbours, the saturation edges, zero, 2**24 (float32 boundary), int32 extremes."""
    shifts = np.broadcast_to(np.asarray(engine.steps[0].shift, np.int64), (engine.n_inputs,))
    lo, hi = engine.steps[0].lo, engine.steps[0].hi
    cols = []
    for s in shifts:
        s = int(s)
        c = [0, 1, -1, (1 << 31) - 1, -(1 << 31), 1 << 24, -(1 << 24), (1 << 24) + 1,
             -(1 << 24) - 1]
        for q in (hi, lo, hi + 1, lo - 1, 0, 1, -1, 2, -2, 3, 17, -17):
            if s > 0:
                base = q << s
                tie = base + (1 << (s - 1))          # q + 0.5
                c += [base, tie, tie - 1, tie + 1, base - (1 << (s - 1))]
            else:
                c += [q >> -s, (q >> -s) + 1, (q >> -s) - 1]
        c = np.clip(np.asarray(c, np.int64), -(1 << 31), (1 << 31) - 1)
        cols.append(rng.choice(c, n))
    return np.stack(cols, axis=1)


def random_vectors(rng, n: int, nf: int) -> np.ndarray:
    """Uniform int32, and log-uniform magnitudes (so every quantizer sees unsaturated values)."""
    u = rng.integers(-(1 << 31), 1 << 31, (n // 2, nf), dtype=np.int64)
    mag = np.exp2(rng.uniform(0, 31, (n - n // 2, nf))).astype(np.int64)
    sign = rng.choice([-1, 1], (n - n // 2, nf))
    return np.concatenate([u, np.clip(mag * sign, -(1 << 31), (1 << 31) - 1)])


def perturbed_model(seed: int = 5):
    """The default model with every int8 weight matrix and int32 bias vector changed (scales,
    shifts and graph untouched): a different model of the same shape."""
    import onnx
    from onnx import numpy_helper

    rng = np.random.default_rng(seed)
    proto = onnx.load(_model_path())
    for init in proto.graph.initializer:
        a = numpy_helper.to_array(init)
        if a.dtype == np.int8 and a.ndim == 2:
            b = np.clip(np.round(a * 1.5) + rng.integers(-20, 21, a.shape), -127, 127)
        elif a.dtype == np.int32 and a.ndim == 1:
            b = a * 2 + rng.integers(-2000, 2001, a.shape)
        else:
            continue
        init.CopyFrom(numpy_helper.from_array(b.astype(a.dtype), init.name))
    return proto


def edge_model(path=None):
    """A directed variant of the default model (same graph and scales, int8 weights and int32
    biases edited) for the edges of the compiled adder trees and requantizations:

    * layer 0: input column 0 and neuron 0 all zero (neuron 0 is its bias alone); neuron 1 has
      one weight 64 and bias 0 (its requantization by 2**-7 ties whenever the input is odd);
      neuron 2 all -127; neurons 3-6 from {+-127, +-85, +-64, +-43, +-1, 0} (85 and 43 have
      the most canonical-signed digits of any int8, 4); neuron 8's bias saturates it at the
      clip bound always, neuron 9's always clips it to 0 (ReLU);
    * layer 1: columns 0 and 5 and neuron 0 all zero, neuron 1 all -127, neuron 2 all +127
      with a negative bias, neuron 3 one weight 64 (ties), neurons 4-7 from the extremes;
    * layer 2: column 0 zero, neuron 0 from the extremes.

    Returns the ONNX ``ModelProto``; with ``path`` also writes it there."""
    import onnx
    from onnx import numpy_helper

    rng = np.random.default_rng(17)
    ext = np.array([-127, -85, -64, -43, -1, 0, 1, 43, 64, 85, 127])
    proto = onnx.load(str(resources_default()))
    mats = [i for i in proto.graph.initializer
            if numpy_helper.to_array(i).dtype == np.int8 and numpy_helper.to_array(i).ndim == 2]
    vecs = [i for i in proto.graph.initializer
            if numpy_helper.to_array(i).dtype == np.int32 and numpy_helper.to_array(i).ndim == 1]
    assert len(mats) == len(vecs) == 3, "edge_model expects the default 3-layer model"
    w = [numpy_helper.to_array(i).copy() for i in mats]
    b = [numpy_helper.to_array(i).copy() for i in vecs]
    w0, b0 = w[0], b[0]
    w0[:, 0] = 0
    w0[0], b0[0] = 0, 1000
    w0[1], w0[1, 3], b0[1] = 0, 64, 0
    w0[2, 1:] = -127
    w0[3:7, 1:] = rng.choice(ext, (4, w0.shape[1] - 1))
    b0[8], b0[9] = 1 << 20, -(1 << 20)
    w1, b1 = w[1], b[1]
    w1[:, [0, 5]] = 0
    w1[0] = 0
    w1[1] = -127
    w1[2], b1[2] = 127, -60000
    w1[3], w1[3, 7], b1[3] = 0, 64, 0
    w1[4:8] = rng.choice(ext, (4, w1.shape[1]))
    w1[4:8, [0, 5]] = 0
    w[2][:, 0] = 0
    w[2][0, 1:] = rng.choice(ext, w[2].shape[1] - 1)
    for init, a in zip(mats + vecs, w + b):
        init.CopyFrom(numpy_helper.from_array(a, init.name))
    if path is not None:
        onnx.save(proto, str(path))
    return proto


def resources_default():
    from importlib import resources
    return resources.files("hftaccel.models") / "default.onnx"


def ort_logits(proto_or_path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    if hasattr(proto_or_path, "SerializeToString"):
        data = proto_or_path.SerializeToString()
    else:
        with open(proto_or_path, "rb") as fh:
            data = fh.read()
    s = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x.astype(np.float32)})[0]


def assert_ort(proto_or_path, engine, x: np.ndarray):
    """onnxruntime's float logits equal the engine's integers (which the DUT matched) scaled."""
    want = ort_logits(proto_or_path, x)
    got = np.ldexp(engine.run(x).astype(np.float64), engine.output_exp).astype(np.float32)
    assert np.array_equal(want, got), "onnxruntime differs from the integer engine"


def _writes(image, holes=()):
    """``(address, value)`` of every mapped address of ``image``, plus ``holes`` garbage."""
    out = []
    for s in DUT.weight_map():
        for o in range(s["rows"]):
            for j in range(s["cols"]):
                a = s["base"] + (o << s["col_bits"]) + j
                out.append((a, int(image[a])))
    return out + list(holes)


def _holes(rng) -> list:
    """Addresses inside sections but past their rows / columns, and past the map's end."""
    out = []
    for s in DUT.weight_map():
        size = 1 << s["bits"]
        used = {(o << s["col_bits"]) + j for o in range(s["rows"]) for j in range(s["cols"])}
        free = [a for a in range(size) if a not in used]
        for a in free[:: max(1, len(free) // 8)]:
            out.append((s["base"] + a, rng.integers(-(1 << 31), 1 << 31)))
    end = DUT.weight_map()[-1]["base"] + (1 << DUT.weight_map()[-1]["bits"])
    for a in range(end, min(end + 8, 1 << DUT.addr_width)):
        out.append((a, -1))
    return out


# ----------------------------------------------------------------------------- tests

@cocotb.test()
async def test_amzn_day(dut):
    """Feature vectors of the real AMZN day (a spread sample; all with TB_FULL=1), random
    back-pressure and idle gaps: every score equals the engine's."""
    from hftaccel.golden.mlp import load
    tb = MLPTB(dut)
    await tb.reset()
    eng = load(_model_path())
    feats = amzn_features()
    rng = np.random.default_rng(tb.seed)
    n = _count(len(feats) if full_run() else 3000, folded=600 if full_run() else 160)
    if n < len(feats):
        start = int(rng.integers(0, len(feats) - n // 2))
        idx = np.sort(np.concatenate([np.arange(start, start + n // 2) % len(feats),
                                      rng.choice(len(feats), n - n // 2, replace=False)]))
        x = feats[idx]
    else:
        x = feats
    await check(tb, x, eng)
    assert_ort(_model_path(), eng, x[:5000])


@cocotb.test()
async def test_corners(dut):
    """Random int32 vectors and quantizer corner vectors (ties, saturation, 2**24, int32
    extremes) under back-pressure."""
    from hftaccel.golden.mlp import load
    tb = MLPTB(dut, idle=0.2, stall=0.4)
    await tb.reset()
    eng = load(_model_path())
    rng = np.random.default_rng(tb.seed + 11)
    n = _count(1000, folded=80)
    x = np.concatenate([corner_vectors(rng, n, eng), random_vectors(rng, n, eng.n_inputs)])
    x = x[rng.permutation(len(x))]
    sat = saturations(eng, x)
    assert all(sat), f"some requantization never saturates: {sat}"
    assert_ort(_model_path(), eng, x)
    await check(tb, x, eng)


@cocotb.test()
async def test_reload(dut):
    """Load a different model through the weight port (plus writes into holes, which must be
    ignored): scores equal the engine on that model (checked against onnxruntime too); then
    load the default model back."""
    from hftaccel.golden.mlp import load
    tb = MLPTB(dut)
    await tb.reset()
    rng = np.random.default_rng(tb.seed + 23)
    proto = perturbed_model()
    eng2 = load(proto, source="perturbed")
    eng1 = load(_model_path())
    img2 = DUT.image(eng2)
    assert not np.array_equal(img2, DUT.image()), "the second model equals the first"
    feats = amzn_features()
    n = _count(1000, folded=64)
    x = np.concatenate([feats[rng.choice(len(feats), n, replace=False)],
                        corner_vectors(rng, n // 4, eng2),
                        random_vectors(rng, n // 4, eng2.n_inputs)])
    assert not np.array_equal(eng1.run(x), eng2.run(x))
    assert_ort(proto, eng2, x)
    await tb.write_weights(_writes(img2, _holes(rng)))
    if COMPILED:                           # constants: the weight port writes nothing
        await check(tb, x, eng1)
        return
    await check(tb, x, eng2)
    await tb.reset()                       # reset keeps the loaded weights
    await check(tb, x[: n // 4], eng2)
    await tb.write_weights(_writes(DUT.image()))
    await check(tb, x[: n // 2], eng1)


@cocotb.test()
async def test_latency_ii(dut):
    """No back-pressure: latency (vector accepted -> scores valid) of vectors entering an
    empty pipeline, and the steady-state accept interval, equal ``MLP.latency`` / ``MLP.ii``."""
    from hftaccel.golden.mlp import load
    eng = load(_model_path())
    tb = MLPTB(dut, idle=0.0, stall=0.0)
    await tb.reset()
    x = amzn_features()[:_count(400, folded=12)]
    # one at a time: each vector meets an empty pipeline
    lat = []
    for k in range(min(len(x), 20 if not FOLDED else 4)):
        got = await check(tb, x[k:k + 1], eng)
        lat.append(got[0][0] - tb.src.accepted[-1])
    # back to back
    await check(tb, x, eng)
    acc = tb.src.accepted[-len(x):]
    gaps = np.diff(acc)
    steady = gaps[len(DUT.layer_cycles) + 2:]
    tb.dut._log.info("mlp (macs_per_cycle=%s): latency %s cycles (documented %d), accept "
                     "intervals %s (documented II %d)", DUT.macs_per_cycle, sorted(set(lat)),
                     DUT.latency, sorted(set(gaps.tolist())), DUT.ii)
    assert set(lat) == {DUT.latency}, f"latency {sorted(set(lat))}, documented {DUT.latency}"
    assert len(steady) and set(steady.tolist()) == {DUT.ii}, \
        f"accept intervals {sorted(set(steady.tolist()))}, documented II {DUT.ii}"
    record_latency("mlp-compiled" if COMPILED else f"mlp-m{DUT.macs_per_cycle or 'par'}", lat)
