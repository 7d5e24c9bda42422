"""Integer inference of a QCDQ ONNX MLP: reads the ONNX file, runs int8/int32 arithmetic only.

The engine reads the exported graph (``onnx``, never torch), checks that every node can be run
exactly in integers, and compiles it into a short list of integer steps
(:class:`Requant`, :class:`Dense`, :class:`Relu`, :class:`Clip`). Its outputs equal onnxruntime's on
the same file bit for bit: ``onnxruntime logits == run(x) * 2**output_exp`` (float32).

Supported ops and the rules that make them exact (``hftaccel.spec.quant``):

* ``Mul`` by a constant whose entries are powers of two (scalar or per feature).
* ``QuantizeLinear`` / ``DequantizeLinear`` with power-of-two scales (per tensor, or per axis on
  the last axis), zero point 0, int8 / uint8 outputs.
* ``Clip`` on integer tensors (or float tensors whose bounds are on the value grid).
* ``Gemm`` (alpha = beta = 1, transA = 0) / ``MatMul`` / ``Add`` with constant weights and biases
  that are integers times powers of two, and a static worst-case accumulator within 2**24 (so the
  float32 arithmetic of the graph is exact in any summation order).
* ``Relu``, ``Identity``; ``Constant`` nodes and constant subgraphs (weights through Clip/DQ) are
  folded.

Anything else raises :class:`UnsupportedGraphError` naming the node.

Rounding. ONNX ``QuantizeLinear`` computes ``saturate(round(x / scale))`` with round half to even
(RNE). With ``x = a * 2**e`` (``a`` integer: every tensor here is on such a grid) and
``scale = 2**s`` this is ``saturate(rne(a * 2**(e - s)))``; for ``n = s - e > 0``,
:func:`rne_shift` computes ``rne(a / 2**n)`` exactly with integer operations:
write ``a = q * 2**n + r`` with ``q = a >> n`` (arithmetic shift = floor division) and
``0 <= r < 2**n``, ``h = 2**(n-1)``. Then ``a / 2**n = q + r / 2**n`` with ``0 <= r / 2**n < 1``,
so the nearest integers are ``q`` and ``q + 1``: ``r < h`` is nearer to ``q``, ``r > h`` nearer
to ``q + 1``, and ``r == h`` is the tie, which goes to the even one of ``q`` and ``q + 1`` --
``q`` if ``q`` is even, else ``q + 1``. Hence ``rne(a / 2**n) = q + [r > h or (r == h and q odd)]``
which is what :func:`rne_shift` returns. Because the division by a power of two is exact in
binary floating point (no underflow at these magnitudes), the float RNE of ONNX equals this
integer RNE. For ``n <= 0`` the result is ``a << -n``, exact.

Float32 input. The graph input is float32, so an int32 feature ``x`` enters the graph as
``float32(x)``, rounded to 24 significant bits with RNE when ``|x| >= 2**24``.
:func:`float32_grid` reproduces that rounding in integers (same RNE argument with
``n = bit_length(|x|) - 24``).

Batched engine. :meth:`IntegerMLP.run` runs the steps over blocks of :data:`CHUNK_ROWS` samples:
each ``Dense`` is one BLAS matrix product (``numpy.matmul``) in floating point, the other steps
are element-wise passes (compiled with Numba) over the block. It equals the one-sample int64
program :meth:`IntegerMLP.run_reference` (and so onnxruntime) bit for bit, because every
floating-point operation it performs has an exactly representable result:

* Every value between the steps is an integer; a float format with ``p`` significand bits (24
  for float32, 53 for float64) holds every integer of magnitude ``<= 2**p`` exactly, and
  multiplying by a power of two is exact (no overflow or underflow here: shifts are at most 62
  and magnitudes below 2**62, else the model runs in int64).
* A ``Dense`` output channel is ``b + sum_j w_j a_j``. In whatever order and blocking BLAS adds
  the products (fused multiply-add or not), every product and every partial sum is an integer of
  magnitude ``<= |b| + sum_j |w_j| max|a_j| =: worst``, the static worst case of the channel
  (:func:`_dense_bounds`, with the input range ``|float32(x)| <= 2**31`` carried through every
  step). With ``worst <= 2**p`` no operation of the product rounds: the float result is the
  integer sum. Where a ``Requant`` by ``2**-n`` follows (after an optional ``Relu``), its scale
  is folded into the weights and the bias: every product and partial sum is then ``2**-n``
  times such an integer, exact for the same reason.
* The bound is the one :func:`load` enforces: it rejects any graph whose ``worst`` exceeds
  ``2**hftaccel.spec.quant.FLOAT32_EXACT_BITS = 2**24`` (the graph's own float32 Gemm is exact
  only within it), so every loaded model runs in float32 (the default model's largest ``worst``
  is 85,655). An :class:`IntegerMLP` built by hand with ``worst <= 2**53`` runs in float64, one
  with a larger bound (or a degenerate clip, a shift beyond 62, a weight or clip bound the float
  format cannot hold) in int64: batched integer products and the reference's own element-wise
  operations, wrap-around included.
* ``Requant`` is ``clip(rint(v * 2**-n), lo, hi)``: ``rint`` rounds half to even (the IEEE
  default mode, which nothing in the engine changes) an exact value, so it is :func:`rne_shift`
  by the argument above. ``Relu`` and ``Clip`` select among exact values (a Relu before a
  requantization becomes its lower clip bound: ``clip(rint(max(v, 0) * s), lo, hi) ==
  clip(rint(v * s), max(lo, 0), hi)`` for ``s > 0``, ``lo <= hi``).
* The input ``float32(x)`` is the float32 cast itself (:func:`float32_grid` is its integer
  model), widened exactly where the model runs in float64.

Blocks of a few thousand rows keep the activations in cache, and bound the engine's working
memory to a few MB whatever the input length. Batches of fewer than :data:`SMALL_BATCH` rows go
through the one-sample program, whose fixed cost per call is lower.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numba.extending
import numpy as np

from hftaccel.spec.quant import FLOAT32_EXACT_BITS, INPUT_NAME, OUTPUT_NAME

__all__ = [
    "UnsupportedGraphError",
    "Requant", "Dense", "Relu", "Clip",
    "IntegerMLP", "load", "rne_shift", "float32_grid", "CHUNK_ROWS", "SMALL_BATCH",
]

_INT_LIMIT = 1 << 62          # int64 headroom for every intermediate of the engine
_F32_EXACT = 1 << FLOAT32_EXACT_BITS
_F64_EXACT = 1 << (np.finfo(np.float64).nmant + 1)     # 2**53
_MAX_FLOAT_SHIFT = 62         # |requant shift| the float blocks take (2**-62 is a normal float32)

#: Rows per block of the batched engine (a block's widest float32 buffer, 8192 x 32 x 4 bytes,
#: is 1 MiB; 2,048 to 16,384 rows ran within noise of each other in scripts/bench_pipeline.py).
CHUNK_ROWS = 8192
#: Batches of fewer rows run through the one-sample program (lower fixed cost per call).
SMALL_BATCH = 64


class UnsupportedGraphError(ValueError):
    """The ONNX graph holds an op, scale or value range the engine cannot run exactly.

    Attributes
    ----------
    node : str
        Name of the offending node (its op type and first output when unnamed).
    """

    def __init__(self, node: str, reason: str):
        self.node = node
        super().__init__(f"node {node!r}: {reason}")


def rne_shift(a: np.ndarray, n) -> np.ndarray:
    """``rne(a * 2**-n)``: arithmetic shift right by ``n`` with round half to even.

    Parameters
    ----------
    a : np.ndarray, int64
        Integers (any shape).
    n : int or np.ndarray of int
        Shift, broadcast against ``a``; ``n <= 0`` shifts left (exact).

    Returns
    -------
    np.ndarray, int64
        See the module docstring for the proof that this equals ONNX QuantizeLinear's rounding.
    """
    a = np.asarray(a, dtype=np.int64)
    n = np.broadcast_to(np.asarray(n, dtype=np.int64), a.shape)
    right = np.maximum(n, 0)
    q = a >> right
    r = a - (q << right)
    h = np.where(right > 0, np.left_shift(1, np.maximum(right - 1, 0)), 1 << 62)
    up = (r > h) | ((r == h) & ((q & 1) == 1))
    return np.where(n > 0, q + up, a << np.maximum(-n, 0))


def float32_grid(x: np.ndarray) -> np.ndarray:
    """The integer value of ``float32(x)`` for integers ``|x| < 2**62``: RNE to 24 significant bits.

    Parameters
    ----------
    x : np.ndarray, integer

    Returns
    -------
    np.ndarray, int64
        ``float32(x)`` as an exact integer (equals ``x`` when ``|x| <= 2**24``).
    """
    x = np.asarray(x, dtype=np.int64)
    a = np.abs(x)
    # bit length of |x| without float conversion
    bl = np.zeros(a.shape, dtype=np.int64)
    t = a.copy()
    for s in (32, 16, 8, 4, 2, 1):
        big = t >= (1 << s)
        bl += np.where(big, s, 0)
        t = np.where(big, t >> s, t)
    bl += (t > 0)
    n = np.maximum(bl - FLOAT32_EXACT_BITS, 0)
    g = rne_shift(a, n) << n
    return np.where(x < 0, -g, g)


@numba.njit(cache=True, inline="always")
def _rne_shift1(a, n):  # pragma: no cover - compiled
    """Scalar :func:`rne_shift` (int64 ``a``, int64 ``n``)."""
    if n <= 0:
        return a << -n
    q = a >> n
    r = a - (q << n)
    h = np.int64(1) << (n - 1)
    if r > h or (r == h and (q & 1) == 1):
        q += 1
    return q


_OP_REQUANT, _OP_DENSE, _OP_RELU, _OP_CLIP = 0, 1, 2, 3


@numba.njit(cache=True)
def _run_program(x, ops, shifts, weights, biases, widest):  # pragma: no cover - compiled
    """Integer MLP, one sample at a time: float32 grid of the input, then ``ops`` rows
    ``(op, a, b, c)``: requant (shift offset, lo, hi), dense (weight offset, bias offset,
    outputs), relu, clip (-, lo, hi). Accumulation in int64 (exact)."""
    n, n_in = x.shape
    width_out = n_in
    for k in range(ops.shape[0]):
        if ops[k, 0] == _OP_DENSE:
            width_out = ops[k, 3]
    out = np.empty((n, width_out), np.int64)
    a = np.empty(widest, np.int64)
    t = np.empty(widest, np.int64)
    exact = np.int64(1) << FLOAT32_EXACT_BITS
    for i in range(n):
        w = n_in
        for j in range(w):
            v = np.int64(x[i, j])
            m = -v if v < 0 else v
            if m >= exact:  # float32 keeps 24 significant bits: round the rest off (RNE)
                bl = 0
                u = m
                while u > 0:
                    bl += 1
                    u >>= 1
                e = np.int64(bl - FLOAT32_EXACT_BITS)
                m = _rne_shift1(m, e) << e
            a[j] = -m if v < 0 else m
        for k in range(ops.shape[0]):
            op = ops[k, 0]
            if op == _OP_REQUANT:
                so, lo, hi = ops[k, 1], ops[k, 2], ops[k, 3]
                sl = shifts[so:so + w]  # local slices let LLVM keep the loops tight
                for j in range(w):
                    v = _rne_shift1(a[j], sl[j])
                    a[j] = lo if v < lo else (hi if v > hi else v)
            elif op == _OP_DENSE:
                wo, bo, m_out = ops[k, 1], ops[k, 2], ops[k, 3]
                wl = weights[wo:wo + m_out * w]
                bl = biases[bo:bo + m_out]
                for o in range(m_out):
                    acc = bl[o]
                    base = o * w
                    for j in range(w):
                        acc += a[j] * wl[base + j]
                    t[o] = acc
                for o in range(m_out):
                    a[o] = t[o]
                w = m_out
            elif op == _OP_RELU:
                for j in range(w):
                    if a[j] < 0:
                        a[j] = 0
            else:
                lo, hi = ops[k, 2], ops[k, 3]
                for j in range(w):
                    a[j] = lo if a[j] < lo else (hi if a[j] > hi else a[j])
        for j in range(w):
            out[i, j] = a[j]
    return out


# The element-wise pass of the batched engine, over C-contiguous (rows, c) blocks seen flat:
# ``out = clip(rint(in * 2**-n + bias), lo, hi)`` per channel. It runs the input quantizer, a
# Dense's bias with the Relu / Requant / Clip that follow it (the scale is then in the weights:
# ``scale`` None), and element-wise steps that follow no Dense (``bias`` None). The parameters
# come tiled over whole rows (:func:`_tile_rows`) to a multiple of 16 values, so the inner loop
# runs in full SIMD vectors; source and destination are distinct arrays (an in-place pass would
# defeat the vectorizer's alias check).


def _graph_input(v):  # pragma: no cover - only called compiled
    """``float32(v)`` for the integer features (the graph's float32 input), ``v`` for floats."""
    raise NotImplementedError


@numba.extending.overload(_graph_input)
def _graph_input_impl(v):
    if isinstance(v, numba.types.Integer):
        return lambda v: np.float32(v)
    return lambda v: v


@numba.njit(cache=True)
def _pass_float(a, out, bias, scale, lo, hi):  # pragma: no cover - compiled
    """Float plans (``lo <= hi`` everywhere, so clip is ``min(max(., lo), hi)``; a Relu is
    folded into ``lo``: ``clip(rint(max(v, 0) * s), lo, hi) == clip(rint(v * s), max(lo, 0), hi)``
    for ``s > 0``); ``out`` may be the int64 result. ``bias`` / ``scale`` None are pruned at
    compile time."""
    t = lo.size
    n = a.size
    for base in range(0, n, t):
        m = min(t, n - base)
        s, o = a[base:base + m], out[base:base + m]
        for k in range(m):
            v = _graph_input(s[k])
            if scale is not None:
                v = v * scale[k]
            if bias is not None:
                v = v + bias[k]
            o[k] = min(max(np.rint(v), lo[k]), hi[k])


@numba.njit(cache=True)
def _pass_int(a, out, bias, floor, shift, lo, hi):  # pragma: no cover - compiled
    """Int64 plans: the reference's operations one for one (``_rne_shift1``, its clip, which
    also covers ``lo > hi``), wrapping as it does."""
    t = bias.size
    for i in range(a.size):
        k = i % t
        v = _rne_shift1(max(a[i] + bias[k], floor[k]), shift[k])
        out[i] = lo[k] if v < lo[k] else (hi[k] if v > hi[k] else v)


@dataclass(frozen=True)
class _Stage:
    """One block operation of the batched engine: ``step(a @ weight_t + bias)``, or ``step(a)``
    where ``weight_t`` is None (the input and element-wise steps that follow no Dense).

    Parameters are per output channel, tiled over :func:`_tile_rows` rows (flat). In float plans
    ``floor`` is folded into ``lo``, ``scale`` is ``2**-shift``, and a Dense's ``scale`` is
    folded into ``weight_t`` and ``bias`` (its ``scale`` is then 1); in int64 plans ``scale``
    holds the shifts."""

    weight_t: np.ndarray | None     # (in, out), the plan's dtype
    width: int                      # output channels
    bias: np.ndarray
    floor: np.ndarray               # Relu floor: 0 or the int64 minimum (int64 plans)
    scale: np.ndarray               # 2**-shift (float plans) or shift (int64 plans)
    lo: np.ndarray                  # clip bounds
    hi: np.ndarray


@dataclass(frozen=True)
class _Plan:
    """The steps grouped into :class:`_Stage` s for one arithmetic (float32, float64 or int64)."""

    dtype: np.dtype
    worst: int                      # largest static accumulator bound over the Dense steps
    stages: tuple


@dataclass(frozen=True)
class Requant:
    """``y = clip(rne_shift(x, shift), lo, hi)``; ``shift`` is per channel (int64 (C,)) or scalar."""

    node: str
    shift: np.ndarray
    lo: int
    hi: int


@dataclass(frozen=True)
class Dense:
    """``y = x @ weight.T + bias`` in integers; weight int64 (out, in), bias int64 (out,)."""

    node: str
    weight: np.ndarray
    bias: np.ndarray


@dataclass(frozen=True)
class Relu:
    """``y = max(x, 0)``."""

    node: str


@dataclass(frozen=True)
class Clip:
    """``y = clip(x, lo, hi)`` (integers)."""

    node: str
    lo: int
    hi: int


@dataclass
class IntegerMLP:
    """A compiled integer MLP.

    Attributes
    ----------
    steps : list
        Integer steps applied in order to ``float32_grid(features)``.
    n_inputs : int
        Number of input features.
    output_exp : np.ndarray, int64, shape (n_outputs,)
        Output scale exponents: graph output = ``run(x) * 2**output_exp``.
    input_name, output_name : str
        Graph input / output names.
    """

    steps: list
    n_inputs: int
    output_exp: np.ndarray
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME
    source: str = "<model>"
    layers: list = field(default_factory=list)
    _compiled: tuple | None = field(default=None, init=False, repr=False, compare=False)
    _plan: _Plan | None = field(default=None, init=False, repr=False, compare=False)

    def run(self, features: np.ndarray) -> np.ndarray:
        """Integer logits of int32 feature vectors.

        Batched: blocks of :data:`CHUNK_ROWS` rows, one BLAS product per Dense step, in float32
        when the static accumulator bound allows it (always, for a model from :func:`load`);
        see the module docstring for why this is exact. Equal to :meth:`run_reference`, which
        also serves batches of fewer than :data:`SMALL_BATCH` rows.

        Parameters
        ----------
        features : np.ndarray, integer, shape (n, n_inputs)
            Feature integers (``hftaccel.golden.features``), |value| < 2**31.

        Returns
        -------
        np.ndarray, int64, shape (n, n_outputs)
            Output integers; the graph's float output is ``out * 2**output_exp``.

        Raises
        ------
        ValueError
            Wrong shape or a value out of the int32 range.
        """
        x = self._check(features)
        if x.shape[0] < SMALL_BATCH:
            return self.run_reference(x)
        plan = self.plan()
        n, last = x.shape[0], len(plan.stages) - 1
        rows = min(n, CHUNK_ROWS)
        out = np.empty((n, plan.stages[-1].width), np.int64)
        new = lambda st: np.empty((rows, st.width), plan.dtype)  # noqa: E731
        acc = [None if st.weight_t is None else new(st) for st in plan.stages]   # products
        res = [None if k == last else new(st) for k, st in enumerate(plan.stages)]  # requantized
        fl = plan.dtype.kind == "f"
        for i0 in range(0, n, rows):
            m = min(rows, n - i0)
            a = x[i0:i0 + m] if fl else float32_grid(x[i0:i0 + m])
            for k, st in enumerate(plan.stages):
                dst = out[i0:i0 + m] if k == last else res[k][:m]
                if st.weight_t is not None:
                    a = np.matmul(a, st.weight_t, out=acc[k][:m])
                if fl:
                    dense = st.weight_t is not None
                    _pass_float(a.reshape(-1), dst.reshape(-1), st.bias if dense else None,
                                None if dense else st.scale, st.lo, st.hi)
                else:
                    _pass_int(a.reshape(-1), dst.reshape(-1), st.bias, st.floor, st.scale, st.lo,
                              st.hi)
                a = dst
        return out

    def run_reference(self, features: np.ndarray) -> np.ndarray:
        """:meth:`run` computed one sample at a time in int64 (the compiled program
        :func:`_run_program`): the reference the batched engine is held equal to.

        Parameters, returns and errors as :meth:`run`.
        """
        x = self._check(features)
        # One compiled pass per sample over the integer program (the NumPy functions above are
        # its reference semantics; tests hold the two equal).
        ops, shifts, weights, biases, width = self._program()
        return _run_program(x, ops, shifts, weights, biases, width)

    def _check(self, features) -> np.ndarray:
        """The features validated (shape, integer dtype, int32 range), as C-contiguous int32."""
        x = np.asarray(features)
        if x.ndim != 2 or x.shape[1] != self.n_inputs:
            raise ValueError(f"{self.source}: features must have shape (n, {self.n_inputs}), "
                             f"got {x.shape}")
        if not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"{self.source}: features must be integers, got {x.dtype}")
        info = np.iinfo(x.dtype)
        if not (info.min >= -(1 << 31) and info.max < (1 << 31)) and x.size and (
                x.min() < -(1 << 31) or x.max() >= (1 << 31)):
            raise ValueError(f"{self.source}: feature values must fit int32")
        return np.ascontiguousarray(x, dtype=np.int32)

    def plan(self) -> _Plan:
        """The steps grouped for the batched engine, with its arithmetic (built once, cached).

        Returns
        -------
        _Plan
            ``dtype`` (float32, float64 or int64: the arithmetic the static bounds prove exact),
            ``worst`` (the largest accumulator bound over the Dense steps, Python int) and
            ``stages``.
        """
        if self._plan is None:
            self._plan = _build_plan(self.steps, self.n_inputs, self.source)
        return self._plan

    def _program(self):
        """The steps flattened for :func:`_run_program` (built once, cached)."""
        if self._compiled is not None:
            return self._compiled
        ops, shifts, weights, biases = [], [], [], []
        n_shift = n_w = n_b = 0
        width = self.n_inputs
        widest = width
        for st in self.steps:
            if isinstance(st, Requant):
                sh = np.broadcast_to(np.asarray(st.shift, np.int64), (width,))
                ops.append((_OP_REQUANT, n_shift, int(st.lo), int(st.hi)))
                shifts.append(sh)
                n_shift += width
            elif isinstance(st, Dense):
                w = np.asarray(st.weight, np.int64)
                if w.shape[1] != width:
                    raise ValueError(f"{self.source}: node {st.node!r} expects {w.shape[1]} "
                                     f"inputs, gets {width}")
                ops.append((_OP_DENSE, n_w, n_b, w.shape[0]))
                weights.append(w.reshape(-1))
                biases.append(np.asarray(st.bias, np.int64).reshape(-1))
                n_w += w.size
                n_b += w.shape[0]
                width = w.shape[0]
                widest = max(widest, width)
            elif isinstance(st, Relu):
                ops.append((_OP_RELU, 0, 0, 0))
            else:
                ops.append((_OP_CLIP, 0, int(st.lo), int(st.hi)))
        cat = lambda parts: np.ascontiguousarray(  # noqa: E731
            np.concatenate(parts) if parts else np.zeros(0, np.int64), dtype=np.int64)
        self._compiled = (np.asarray(ops, np.int64).reshape(-1, 4), cat(shifts), cat(weights),
                          cat(biases), widest)
        return self._compiled

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Arg-max class of every sample, int64 (n,) (ties: lowest index, as numpy.argmax)."""
        out = self.run(features)
        if np.any(self.output_exp != self.output_exp[0]):
            # classes on different grids: compare exactly on the finest one
            e0 = self.output_exp.min()
            out = out << (self.output_exp - e0)
        return np.argmax(out, axis=1)

    def float_output(self, features: np.ndarray) -> np.ndarray:
        """The graph's float32 output, rebuilt from the integers (exact: |out| <= 2**24)."""
        return np.ldexp(self.run(features).astype(np.float64), self.output_exp).astype(np.float32)


# ----------------------------------------------------------------------------- compiler

@dataclass
class _Dyn:
    """A runtime tensor: ``value = int * 2**exp`` per channel; ``lo``/``hi`` static int bounds."""

    exp: np.ndarray       # int64 (C,)
    lo: np.ndarray        # int64 (C,)
    hi: np.ndarray        # int64 (C,)
    integer_type: bool    # ONNX element type is an integer (output of QuantizeLinear / Clip)


def _name(node) -> str:
    return node.name or f"{node.op_type}:{node.output[0]}"


def _pow2_exponent(v: np.ndarray, node: str, what: str) -> np.ndarray:
    """Exponents k with v == 2**k exactly; raise naming the node otherwise."""
    v = np.asarray(v, dtype=np.float64)
    m, e = np.frexp(v)
    if v.size == 0 or np.any(m != 0.5) or np.any(~np.isfinite(v)):
        raise UnsupportedGraphError(node, f"{what} {v.ravel()[:8].tolist()} is not a power of two")
    return (e - 1).astype(np.int64).ravel()


def _int_and_exp(v: np.ndarray, node: str, what: str) -> tuple[np.ndarray, int]:
    """Write a constant float array as ``ints * 2**e`` with the largest common e (|ints| < 2**31)."""
    v = np.asarray(v, dtype=np.float64)
    if not np.all(np.isfinite(v)):
        raise UnsupportedGraphError(node, f"{what} holds non-finite values")
    nz = v[v != 0]
    if nz.size == 0:
        return np.zeros(v.shape, dtype=np.int64), 0
    m, e = np.frexp(nz)
    # each value = m * 2**e with 53-bit m: lowest set bit gives the finest grid needed
    mant = np.ldexp(np.abs(m), 53).astype(np.int64)
    tz = np.zeros(mant.shape, dtype=np.int64)
    t = mant.copy()
    for s in (32, 16, 8, 4, 2, 1):
        z = (t & ((1 << s) - 1)) == 0
        tz += np.where(z, s, 0)
        t = np.where(z, t >> s, t)
    exp = int(np.min(e - 53 + tz))
    ints = np.ldexp(v, -exp)
    if np.any(np.abs(ints) >= 2.0 ** 31):
        raise UnsupportedGraphError(node, f"{what} is not an integer times a power of two "
                                          f"within 31 bits")
    return ints.astype(np.int64), exp


def _channel_vec(a: np.ndarray, c: int, node: str, what: str) -> np.ndarray:
    a = np.asarray(a).ravel()
    if a.size == 1:
        return np.repeat(a, c)
    if a.size != c:
        raise UnsupportedGraphError(node, f"{what} has {a.size} entries for {c} channels")
    return a


def _attrs(node) -> dict:
    import onnx
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def load(model, *, source: str | None = None) -> IntegerMLP:
    """Read a QCDQ ONNX model and compile it into integer steps.

    Parameters
    ----------
    model : str, Path, bytes or onnx.ModelProto
        The ONNX file (e.g. ``models/default.onnx``).
    source : str, optional
        Name used in error messages (defaults to the path).

    Returns
    -------
    IntegerMLP

    Raises
    ------
    UnsupportedGraphError
        A node cannot be run exactly in integers (unknown op, non power-of-two scale, nonzero
        zero point, float32-inexact accumulator range, more than one dynamic input/output).
    """
    import onnx
    from onnx import numpy_helper

    if isinstance(model, (str, Path)):
        source = source or str(model)
        proto = onnx.load(str(model))
    elif isinstance(model, bytes):
        proto = onnx.load_from_string(model)
    else:
        proto = model
    source = source or "<model>"
    g = proto.graph
    consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    inputs = [i for i in g.input if i.name not in consts]
    if len(inputs) != 1 or len(g.output) != 1:
        raise UnsupportedGraphError("<graph>", f"{source}: expected one input and one output, "
                                               f"got {len(inputs)} and {len(g.output)}")
    inp = inputs[0]
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    if len(dims) != 2 or dims[1] <= 0:
        raise UnsupportedGraphError("<graph>", f"input {inp.name!r} must be (batch, n_features)")
    if inp.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise UnsupportedGraphError("<graph>", f"input {inp.name!r} must be float32")
    nf = dims[1]
    env: dict[str, _Dyn] = {
        inp.name: _Dyn(np.zeros(nf, np.int64), np.full(nf, -(1 << 31), np.int64),
                       np.full(nf, 1 << 31, np.int64), False)}
    steps: list = []
    qconsts: dict[str, tuple] = {}       # constants that are DequantizeLinear(int tensor, 2**e)

    for node in g.node:
        nm = _name(node)
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedGraphError(nm, f"op {node.domain}.{op} is not supported")
        ins = list(node.input)
        dyn = [i for i in ins if i in env]
        if op == "Constant":
            a = _attrs(node)
            if "value" not in a:
                raise UnsupportedGraphError(nm, "Constant without a tensor value")
            consts[node.output[0]] = numpy_helper.to_array(a["value"])
            continue
        if not dyn:                          # constant folding of weight subgraphs
            consts[node.output[0]] = _fold(node, nm, [consts.get(i) if i else None for i in ins])
            if (op == "DequantizeLinear" and np.issubdtype(consts[ins[0]].dtype, np.integer)
                    and np.asarray(consts[ins[1]]).size == 1):
                e = int(_pow2_exponent(consts[ins[1]], nm, "DequantizeLinear scale")[0])
                qconsts[node.output[0]] = (consts[ins[0]].astype(np.int64), e)
            continue
        if len(dyn) != 1 or len(node.output) != 1:
            raise UnsupportedGraphError(nm, f"op {op} with {len(dyn)} dynamic inputs is not supported")
        x = env[dyn[0]]
        c = x.exp.size
        cin = [consts.get(i) if i else None for i in ins]
        for i, v in zip(ins, cin):
            if i and i not in env and v is None:
                raise UnsupportedGraphError(nm, f"input {i!r} is neither constant nor computed")
        if op == "Identity":
            y = x
        elif op == "Mul":
            k = cin[1] if ins[0] in env else cin[0]
            y = _Dyn(x.exp + _channel_vec(_pow2_exponent(k, nm, "Mul constant"), c, nm, "Mul constant"),
                     x.lo, x.hi, False)
            if not np.all(np.abs(y.exp) < 120):
                raise UnsupportedGraphError(nm, "scaling leaves the float32 normal range")
        elif op in ("QuantizeLinear", "DequantizeLinear"):
            if ins[0] not in env:
                raise UnsupportedGraphError(nm, f"{op} of a constant with a dynamic scale")
            a = _attrs(node)
            s = cin[1]
            zp = cin[2] if len(cin) > 2 and cin[2] is not None else np.zeros((), np.uint8)
            if np.asarray(s).size > 1 and a.get("axis", 1) not in (1, -1):
                raise UnsupportedGraphError(nm, f"per-axis {op} on axis {a.get('axis')} is not supported")
            if np.any(np.asarray(zp) != 0):
                raise UnsupportedGraphError(nm, f"{op} zero point {np.asarray(zp).ravel()[:8].tolist()} "
                                                f"is not zero")
            sexp = _channel_vec(_pow2_exponent(s, nm, f"{op} scale"), c, nm, f"{op} scale")
            if op == "QuantizeLinear":
                if x.integer_type:
                    raise UnsupportedGraphError(nm, "QuantizeLinear of an integer tensor")
                qlo, qhi = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255)}.get(
                    np.asarray(zp).dtype, (None, None))
                if qlo is None:
                    raise UnsupportedGraphError(nm, f"QuantizeLinear to {np.asarray(zp).dtype} "
                                                    f"is not supported")
                shift = sexp - x.exp
                big = np.maximum(np.abs(x.lo), np.abs(x.hi))
                if np.any((shift < 0) & ((big << np.clip(-shift, 0, 62)) >= _INT_LIMIT)) or np.any(-shift > 40):
                    raise UnsupportedGraphError(nm, "left shift overflows 62 bits")
                steps.append(Requant(nm, shift, qlo, qhi))
                lo = np.clip(rne_shift(x.lo, shift), qlo, qhi)
                hi = np.clip(rne_shift(x.hi, shift), qlo, qhi)
                y = _Dyn(sexp, lo, hi, True)
            else:
                if not x.integer_type:
                    raise UnsupportedGraphError(nm, "DequantizeLinear of a float tensor")
                y = _Dyn(sexp, x.lo, x.hi, False)
        elif op == "Clip":
            lo_c = cin[1] if len(cin) > 1 else None
            hi_c = cin[2] if len(cin) > 2 else None
            a = _attrs(node)
            lo_v = lo_c if lo_c is not None else a.get("min")
            hi_v = hi_c if hi_c is not None else a.get("max")
            if x.integer_type:
                lo_i = -_INT_LIMIT if lo_v is None else int(np.asarray(lo_v))
                hi_i = _INT_LIMIT if hi_v is None else int(np.asarray(hi_v))
                steps.append(Clip(nm, lo_i, hi_i))
                y = _Dyn(x.exp, np.clip(x.lo, lo_i, hi_i), np.clip(x.hi, lo_i, hi_i), True)
            else:
                lo_i, hi_i = _grid_bound(lo_v, x.exp, nm), _grid_bound(hi_v, x.exp, nm)
                if lo_i is not None and hi_i is not None and lo_i > hi_i:
                    raise UnsupportedGraphError(nm, "Clip min > max")
                lo_i = -_INT_LIMIT if lo_i is None else lo_i
                hi_i = _INT_LIMIT if hi_i is None else hi_i
                steps.append(Clip(nm, lo_i, hi_i))
                y = _Dyn(x.exp, np.clip(x.lo, lo_i, hi_i), np.clip(x.hi, lo_i, hi_i), False)
        elif op == "Relu":
            steps.append(Relu(nm))
            y = _Dyn(x.exp, np.maximum(x.lo, 0), np.maximum(x.hi, 0), x.integer_type)
        elif op in ("Gemm", "MatMul"):
            if x.integer_type:
                raise UnsupportedGraphError(nm, f"{op} on an integer tensor")
            if ins[0] not in env:
                raise UnsupportedGraphError(nm, f"{op} with a dynamic right-hand side")
            a = _attrs(node)
            w = cin[1]
            if w is None or np.asarray(w).ndim != 2:
                raise UnsupportedGraphError(nm, "weight must be a constant matrix")
            wq = qconsts.get(ins[1])
            w = np.asarray(w, dtype=np.float64)
            transpose = not (op == "Gemm" and a.get("transB", 0))
            if op == "Gemm" and (a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0
                                 or a.get("transA", 0)):
                raise UnsupportedGraphError(nm, "Gemm needs alpha = beta = 1 and transA = 0")
            if transpose:
                w = w.T
                wq = None if wq is None else (wq[0].T, wq[1])
            if w.shape[1] != c:
                raise UnsupportedGraphError(nm, f"weight has {w.shape[1]} inputs for {c} channels")
            bias = cin[2] if op == "Gemm" and len(cin) > 2 else None
            y, st = _dense(nm, x, w, bias, wq, qconsts.get(ins[2]) if bias is not None else None)
            steps.append(st)
        elif op == "Add":
            b = cin[1] if ins[0] in env else cin[0]
            if x.integer_type:
                raise UnsupportedGraphError(nm, "Add on an integer tensor")
            y, st = _dense(nm, x, None, b, None, qconsts.get(ins[1] if ins[0] in env else ins[0]))
            steps.append(st)
        else:
            raise UnsupportedGraphError(nm, f"op {op} is not supported by the integer engine")
        env[node.output[0]] = y

    out = g.output[0].name
    if out not in env:
        raise UnsupportedGraphError("<graph>", f"output {out!r} is not computed from the input")
    y = env[out]
    mlp = IntegerMLP(steps=steps, n_inputs=nf, output_exp=y.exp.copy(), input_name=inp.name,
                     output_name=out, source=source)
    mlp.layers = _layers(steps)
    return mlp


def _grid_bound(v, exp: np.ndarray, nm: str):
    if v is None:
        return None
    v = float(np.asarray(v))
    if np.isinf(v):
        return None
    ints = np.ldexp(v, -exp.astype(np.int64))
    if np.any(ints != np.round(ints)) or np.any(ints != ints[0]):
        raise UnsupportedGraphError(nm, f"Clip bound {v} is not on the value grid")
    return int(ints[0])


def _dense(nm: str, x: _Dyn, w: np.ndarray | None, bias, wq=None, bq=None) -> tuple[_Dyn, Dense]:
    """Integer Dense step for ``x @ w.T + bias`` (w float (out, in) or None = identity).

    ``wq`` / ``bq``: ``(ints, exp)`` of weight / bias when they are DequantizeLinear outputs of
    integer constants (kept as exported, rather than re-derived from the float values).
    """
    c = x.exp.size
    e0 = int(x.exp.min())
    align = x.exp - e0                                          # input channel -> finest grid
    if w is None:
        wi = np.diag(np.left_shift(1, align))
        wexp = 0
    else:
        wi, wexp = wq if wq is not None else _int_and_exp(w, nm, "weight")
        wi = wi << align[None, :]
    out_exp = e0 + wexp
    n_out = wi.shape[0]
    if bias is not None:
        if bq is not None and bq[0].shape == (n_out,):
            bi, bexp = bq
        else:
            bi, bexp = _int_and_exp(np.broadcast_to(np.asarray(bias, np.float64), (n_out,)), nm, "bias")
        if bexp < out_exp:
            # bias finer than the products: only exact if its ints are multiples of the gap
            d = out_exp - bexp
            if np.any(bi % (1 << d)):
                raise UnsupportedGraphError(nm, "bias is finer than the accumulator grid")
            bi = bi >> d
        else:
            bi = bi << (bexp - out_exp)
    else:
        bi = np.zeros(n_out, np.int64)
    worst, lo, hi = _dense_bounds(wi, bi, x.lo, x.hi)
    if np.any(worst > _F32_EXACT):
        raise UnsupportedGraphError(
            nm, f"worst-case accumulator {int(worst.max())} exceeds 2**{FLOAT32_EXACT_BITS}: "
                f"the graph's float32 arithmetic would not be exact")
    y = _Dyn(np.full(n_out, out_exp, np.int64), lo.astype(np.int64), hi.astype(np.int64), False)
    return y, Dense(nm, wi, bi)


def _dense_bounds(w, b, lo, hi):
    """Static bounds of ``y = x @ w.T + b`` for ``lo <= x <= hi`` (per input channel).

    Returns
    -------
    worst : np.ndarray, object (Python int), shape (out,)
        ``|b| + sum_j |w_j| max(|lo_j|, |hi_j|)``: bounds the magnitude of every product and of
        every partial sum of the output, in any summation order (the exactness bound of the
        float32 graph in :func:`load` and of the batched engine's BLAS products).
    lo, hi : np.ndarray, object, shape (out,)
        Bounds of ``y``.
    """
    w, b = np.asarray(w).astype(object), np.asarray(b).astype(object)
    lo, hi = np.asarray(lo).astype(object), np.asarray(hi).astype(object)
    amax = np.maximum(np.abs(lo), np.abs(hi))
    pos, neg = np.where(w > 0, w, 0), np.where(w < 0, w, 0)
    return np.abs(w) @ amax + np.abs(b), neg @ hi + pos @ lo + b, pos @ hi + neg @ lo + b


def _rne_int(a: int, n: int) -> int:
    """:func:`rne_shift` of one Python int (any magnitude)."""
    if n <= 0:
        return a << -n
    q, r, h = a >> n, a & ((1 << n) - 1), 1 << (n - 1)
    return q + (r > h or (r == h and (q & 1) == 1))


def _build_plan(steps: list, n_inputs: int, source: str) -> _Plan:
    """Group the steps into block stages and choose the exact arithmetic (module docstring).

    Stages: the input (``float32(x)``, then at most a Relu and a Requant/Clip), then per Dense
    its product, bias and the Relu / Requant / Clip that follow it (at most one Relu, then one
    Requant or Clip), then a stage without product for any further element-wise step.
    """
    groups: list[list] = [[None, []]]
    for st in steps:
        g = groups[-1][1]
        if isinstance(st, Dense):
            groups.append([st, []])
        elif g and not (len(g) == 1 and isinstance(g[0], Relu) and not isinstance(st, Relu)):
            groups.append([None, [st]])
        else:
            g.append(st)

    # static bounds (Python ints) through every step; any doubt sends the model to int64
    lo = np.full(n_inputs, -(1 << 31), object)
    hi = np.full(n_inputs, 1 << 31, object)
    worst, ok, exact_vals = 0, True, []
    width = n_inputs
    for dense, elem in groups:
        if dense is not None:
            w = np.asarray(dense.weight, np.int64)
            if w.ndim != 2 or w.shape[1] != width:
                raise ValueError(f"{source}: node {dense.node!r} expects {w.shape[-1]} inputs, "
                                 f"gets {width}")
            wst, lo, hi = _dense_bounds(w, np.asarray(dense.bias, np.int64).reshape(-1), lo, hi)
            worst = max(worst, int(wst.max()) if wst.size else 0)
            exact_vals += [w.ravel(), np.asarray(dense.bias, np.int64).ravel()]
            width = w.shape[0]
        for st in elem:
            if isinstance(st, Relu):
                lo, hi = np.maximum(lo, 0), np.maximum(hi, 0)
                continue
            if st.lo > st.hi:
                ok = False                         # degenerate clip: reference semantics only
                continue
            exact_vals.append(np.array([st.lo, st.hi], np.int64))
            if isinstance(st, Requant):
                sh = np.broadcast_to(np.asarray(st.shift, np.int64), (width,))
                amax = np.maximum(np.abs(lo), np.abs(hi))
                if np.any(np.abs(sh) > _MAX_FLOAT_SHIFT) or any(
                        int(a) << max(-int(k), 0) >= _INT_LIMIT for a, k in zip(amax, sh)):
                    ok = False
                    continue
                lo = np.array([_rne_int(int(v), int(k)) for v, k in zip(lo, sh)], object)
                hi = np.array([_rne_int(int(v), int(k)) for v, k in zip(hi, sh)], object)
            lo, hi = np.clip(lo, st.lo, st.hi), np.clip(hi, st.lo, st.hi)
        if worst >= _INT_LIMIT:
            ok = False
        if not ok:
            break
    dtype = np.dtype(np.int64)
    vals = np.concatenate(exact_vals) if exact_vals else np.zeros(0, np.int64)
    ok = ok and bool(np.all((vals >= -_INT_LIMIT) & (vals <= _INT_LIMIT)))
    for ft, bound in ((np.float32, _F32_EXACT), (np.float64, _F64_EXACT)):
        if ok and worst <= bound and np.array_equal(vals.astype(ft).astype(np.int64), vals):
            dtype = np.dtype(ft)       # every weight, bias and clip bound held exactly
            break

    fl = dtype.kind == "f"
    low, high = (-np.inf, np.inf) if fl else (np.iinfo(np.int64).min, np.iinfo(np.int64).max)
    stages = []
    width = n_inputs
    for dense, elem in groups:
        if dense is not None:
            width = np.asarray(dense.weight).shape[0]
        floor, shift = np.full(width, low, object), np.zeros(width, np.int64)
        clo, chi = np.full(width, low, object), np.full(width, high, object)
        for st in elem:
            if isinstance(st, Relu):
                floor[:] = 0
                continue
            if isinstance(st, Requant):
                shift[:] = np.broadcast_to(np.asarray(st.shift, np.int64), (width,))
            clo[:], chi[:] = int(st.lo), int(st.hi)
        weight_t, bias = None, np.zeros(width, np.int64)
        if dense is not None:
            weight_t = np.asarray(dense.weight, np.int64).T
            bias = np.asarray(dense.bias, np.int64).reshape(-1)
        if fl:
            clo = np.maximum(clo, floor)                  # Relu into the clip (lo <= hi here)
            scale = np.ldexp(1.0, -shift)                 # exact powers of two
            if weight_t is not None:                      # the requant scale into the product
                weight_t, bias, scale = weight_t * scale, bias * scale, np.ones(width)
            params = (bias, np.zeros(width), scale, clo.astype(float), chi.astype(float))
        else:
            params = (bias, floor, shift, clo, chi)
        reps = _tile_rows(width)
        stages.append(_Stage(
            None if weight_t is None else np.ascontiguousarray(weight_t, dtype=dtype), width,
            *(np.tile(np.asarray(v).astype(dtype), reps) for v in params)))
    return _Plan(dtype, worst, tuple(stages))


def _tile_rows(c: int) -> int:
    """Rows per parameter tile for ``c`` channels: a multiple of 16 values, at least 512."""
    r = 16 // math.gcd(c, 16)
    return r * max(1, -(-512 // (r * c)))


def _fold(node, nm: str, vals: list):
    """Evaluate a node whose inputs are all constants (exact NumPy semantics of the ops used)."""
    op = node.op_type
    a = _attrs(node)
    if any(v is None for v in vals[:1]):
        raise UnsupportedGraphError(nm, f"constant {op} with a missing input")
    x = vals[0]
    if op == "Identity":
        return x
    if op == "Clip":
        lo = vals[1] if len(vals) > 1 and vals[1] is not None else a.get("min")
        hi = vals[2] if len(vals) > 2 and vals[2] is not None else a.get("max")
        return np.clip(x, lo if lo is not None else x.min(), hi if hi is not None else x.max()).astype(x.dtype)
    if op == "DequantizeLinear":
        s = np.asarray(vals[1], np.float64)
        zp = vals[2] if len(vals) > 2 and vals[2] is not None else 0
        _pow2_exponent(s, nm, "DequantizeLinear scale")
        if np.any(np.asarray(zp) != 0):
            raise UnsupportedGraphError(nm, "DequantizeLinear zero point is not zero")
        if s.size > 1:
            ax = a.get("axis", 1)
            shape = [1] * x.ndim
            shape[ax] = s.size
            s = s.reshape(shape)
        return (x.astype(np.float64) * s)
    if op == "Transpose":
        return np.transpose(x, a.get("perm"))
    raise UnsupportedGraphError(nm, f"op {op} is not supported by the integer engine")


def _layers(steps: list) -> list[dict]:
    """Group steps as ``[input requant] + [dense, relu?, requant?, clip?]*``: the view the gateware reads.

    Returns
    -------
    list of dict
        ``{"kind": "input", "shift": int64 (F,), "lo", "hi"}`` then per dense layer
        ``{"kind": "dense", "weight", "bias", "relu": bool, "shift": int64 (out,) or None,
        "lo", "hi"}`` (lo/hi of the output requantization, after any Clip).
    """
    out: list[dict] = []
    for st in steps:
        if isinstance(st, Dense):
            out.append({"kind": "dense", "weight": st.weight, "bias": st.bias, "relu": False,
                        "shift": None, "lo": None, "hi": None})
        elif not out:
            if not isinstance(st, Requant):
                return []          # not an MLP with an input quantizer: no layer view
            out.append({"kind": "input", "shift": st.shift, "lo": st.lo, "hi": st.hi})
        elif isinstance(st, Relu):
            out[-1]["relu"] = True
        elif isinstance(st, Requant):
            out[-1]["shift"], out[-1]["lo"], out[-1]["hi"] = st.shift, st.lo, st.hi
        elif isinstance(st, Clip):
            lo = st.lo if out[-1]["lo"] is None else max(st.lo, out[-1]["lo"])
            hi = st.hi if out[-1]["hi"] is None else min(st.hi, out[-1]["hi"])
            out[-1]["lo"], out[-1]["hi"] = lo, hi
    return out
