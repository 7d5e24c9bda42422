"""Quantized MLP scorer: int32 feature vector in, integer logits out, bit-exact with the engine.

Source: the integer steps that :func:`hftaccel.golden.mlp.load` compiles from the exported QCDQ
ONNX graph (``models/default.onnx`` by default; rules in :mod:`hftaccel.spec.quant`). The
gateware is generated from those steps -- input requantization, then per layer ``Dense``
(int8 weights, int32 bias) followed by its element-wise ops (``Relu``, ``Requant`` = round half
to even shift and clip, ``Clip``) in graph order -- so its scores equal ``IntegerMLP.run``.
A model given as a path is compiled with that loader at build time (a lazy import: the
gateware re-parses no ONNX, and nothing of the golden model ends up in the hardware).

Arithmetic
----------
* ``rne(v * 2**-n)`` for a constant ``n > 0`` is ``(v >> n) + up`` with
  ``up = v[n-1] & (v[:n-1] != 0 | (v >> n)[0])`` (the proof is in :mod:`hftaccel.golden.mlp`);
  ``n <= 0`` is an exact left shift. Accumulators are wide enough for any int8 weight and int32
  bias, so nothing wraps inside; only the scores are cut to 32 bits (a model the engine accepts
  keeps every accumulator within 2**24, ``hftaccel.spec.quant.FLOAT32_EXACT_BITS``).
* The graph's float32 input rounding (``float32(x)`` keeps 24 significant bits) is not built:
  the generator requires the input quantizer to saturate every ``|x| >= 2**24`` (true of every
  model whose input shifts are at most 17 with int8 activations), where both roundings give
  the clip bound. Other models raise ``ValueError``.

Folding (``macs_per_cycle``, reloadable weights)
------------------------------------------------
* ``None`` -- fully parallel: every MAC of a layer in one cycle, weights in registers. A layer
  sums its ``N`` products in a tree of :data:`TREE_FANIN`-input adders, one pipeline register
  per tree level, the last level adding the bias and applying the element-wise ops; so a layer
  takes ``ceil(log_16(N))`` cycles (1 for ``N <= 16``, 2 for ``N <= 256``). One vector per
  cycle (II = 1). Default model (19-32-16-3): latency 1 + 2 + 2 + 1 = 6 cycles.
* ``M`` (a power of two) -- FINN-style folding, every layer its own engine with
  ``S = min(M, N)`` MAC lanes (SIMD) and one neuron at a time (PE = 1). A layer's weights sit in
  a memory of ``O * ceil(N / S)`` words of ``S`` int8 lanes; it reads one word a cycle, so it
  takes ``O * ceil(N / S)`` cycles per vector, plus 2 (memory read, accumulate) of latency.
  Layers overlap (a layer starts the next vector as soon as it has read the last word of the
  current one), so ``II = max_k O_k * ceil(N_k / S_k)`` and
  ``latency = 1 + sum_k (O_k * ceil(N_k / S_k) + 2)``. Default model: M=1: II 608, latency
  1175; M=4: 160 / 307; M=16: 64 / 106.

Compiled weights (``weights="compiled"``)
-----------------------------------------
Weights are constants and every product is a shift-add network the generator emits itself
(no ``*``: Yosys maps any 2..18-bit product, constant operand or not, to a MULT18X18D), so the
build uses 0 DSP and no weight registers; one vector per cycle (II = 1).

* A layer's input ``x`` (range ``[lo, hi]``, ``w`` bits) enters as unsigned bits plus an offset
  (a signed ``x`` is ``(x ^ 2**(w-1)) - 2**(w-1)``: the sign bit inverted). Each weight is
  written in canonical signed digits (:func:`_csd`: at most 4 non-zero digits for int8, 2.1 on
  average for the default model); a digit ``+2**e`` adds the bits of ``x`` shifted by ``e``, a
  digit ``-2**e`` adds the inverted bits (``-(u << e) = (~u << e) - ((2**w - 1) << e)``).
  Zero weights add nothing. Every offset, the bias and, where a requantization by ``2**-n``
  follows, the half ``2**(n-1)`` fold into one constant of the neuron. The neuron's sum is then
  a dot diagram of bits (``cols[c]``: bits of weight ``2**c``), added modulo ``2**W`` with ``W``
  the signed width of its static range (exact, since the sum fits).
* Adder tree, one carry chain per stage: a stage splits every column into groups of at most
  ``_DADDA[STAGE_LEVELS]`` bits (9), reduces each group to two rows with at most
  :data:`STAGE_LEVELS` levels of full / half adders (Dadda's schedule; and/or/xor, which map to
  LUT4s), adds the two rows with one carry-propagate adder and registers the row. The next
  stage sees one bit per group in a column. All neurons of a layer leave together (those that
  finish early are carried along in registers).
* Requantization, no carry chain: ``b = s + 2**(n-1)`` comes out of the tree, ``b >> n`` is
  round half up, and the ties (low ``n`` bits of ``b`` all 0) go to even by clearing bit 0
  (:func:`_requant_logic`); saturation (and ReLU, a clamp at 0) compares ``b`` with constants
  in and/or trees. It opens the next layer's first stage, which therefore spends
  :data:`OPS_LEVELS` fewer full-adder levels. ReLU / Clip / Requant chains fold into one
  ``clip(rne(.))`` (:func:`_fold_ops`).
* The input quantizer is one stage: an incrementer over the 9 bits of ``x`` that reach the
  int8 result adds the half, ties from the low bits of ``x``, saturation from constant
  comparisons of ``x``.
* Default model (19-32-16-3): stages 1 (quantizer) + 2 + 3 + 2 = latency 8.

The weight port exists in compiled builds too (so a top wires either mode alike) but writes
nothing: the built model's scores stay.

Latency is counted in clock edges from the edge that accepts a vector on ``i`` to the edge that
hands its scores on from ``o`` without back-pressure (the fully parallel build: the vector
passes 6 registers, its scores are valid after the 5th edge and taken at the 6th); the cocotb
testbench measures both figures and checks them against :attr:`MLP.latency` and
:attr:`MLP.ii`.

Weight port and address map
---------------------------
Every weight and bias can be rewritten at run time through ``w_we``/``w_addr``/``w_data``, one
value a cycle, without re-synthesis (the power-up contents are the model's; reset does not
touch them). The flat map (:func:`weight_map`) holds, per dense layer ``k`` in order, a weight
section then a bias section. Each section spans a power of two of addresses and starts at a
multiple of its size:

* weights of layer ``k`` (``O`` outputs, ``N`` inputs): ``w[o, j]`` (``y = W @ x + b`` row
  ``o``, column ``j``) at ``base + (o << ceil_log2(N)) + j``; ``w_data[0:8]`` is the int8 value;
* biases of layer ``k``: ``b[o]`` at ``base + o``; ``w_data`` is the int32 value.

Addresses inside a section but past its rows or columns, and past the last section, are
ignored. :func:`weight_image` gives the value of every address (0 in the holes); writing it
loads another model whose integer steps differ from the built one's only in weights and biases
(same shapes, shifts, clips and ReLUs; :meth:`MLP.image` checks that). Vectors in flight while
the weights change see a mix of old and new values: stop the input while reloading.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hftaccel.spec import quant as qspec
from hftaccel.spec.risk import SCORED_UPDATE_DTYPE

__all__ = ["WEIGHT_MODES", "TREE_FANIN", "STAGE_LEVELS", "OPS_LEVELS", "WEIGHT_BITS", "BIAS_BITS", "SCORE_BITS", "weight_map", "weight_image",
           "MLP"]

#: Weight build modes: ``"reloadable"`` (weights in registers or memories, rewritten through the
#: weight port) and ``"compiled"`` (weights are constants of shift-add networks, 0 DSP).
WEIGHT_MODES = ("reloadable", "compiled")
#: Inputs summed per pipeline stage by the fully parallel adder tree.
TREE_FANIN = 16
#: Width of a weight register / lane (two's complement; ``w_data[0:8]``): the widest weight of
#: :mod:`hftaccel.spec.quant` (``MAX_BITS``).
WEIGHT_BITS = qspec.MAX_BITS
#: Width of a bias (two's complement; all of ``w_data``): :data:`hftaccel.spec.quant.BIAS_BITS`.
BIAS_BITS = qspec.BIAS_BITS
#: Width of a score on ``o`` (two's complement): the ``scores`` element of
#: :data:`hftaccel.spec.risk.SCORED_UPDATE_DTYPE`, what the risk stage takes.
SCORE_BITS = 8 * SCORED_UPDATE_DTYPE.fields["scores"][0].base.itemsize

_F32_EXACT = 1 << qspec.FLOAT32_EXACT_BITS       # float32 significand
_W_LO, _W_HI = -(1 << (WEIGHT_BITS - 1)), (1 << (WEIGHT_BITS - 1)) - 1
_B_LO, _B_HI = -(1 << (BIAS_BITS - 1)), (1 << (BIAS_BITS - 1)) - 1


# ----------------------------------------------------------------------------- model plan

@dataclass(frozen=True)
class _Op:
    """Element-wise op: ``relu``, ``requant`` (per-channel ``shift``, then clip) or ``clip``."""

    kind: str
    shift: tuple = ()
    lo: int | None = None
    hi: int | None = None


@dataclass(frozen=True)
class _Layer:
    weight: np.ndarray              # int64 (O, N)
    bias: np.ndarray                # int64 (O,)
    post: tuple                     # _Op applied after W @ x + b, in graph order


@dataclass(frozen=True)
class _Plan:
    n_inputs: int
    input_ops: tuple
    layers: tuple
    source: str

    def signature(self):
        """Everything but the weights and biases (what a reloaded model must share)."""
        return (self.n_inputs, self.input_ops,
                tuple((ly.weight.shape, ly.post) for ly in self.layers))


def _default_model() -> Path:
    from importlib import resources
    return Path(str(resources.files("hftaccel.models") / "default.onnx"))


def _plan(model) -> _Plan:
    """Read an ``IntegerMLP`` (or load an ONNX path with :func:`hftaccel.golden.mlp.load`) into
    the layer plan the generator builds; raise ``ValueError`` for what the gateware cannot do."""
    if model is None:
        model = _default_model()
    if isinstance(model, (str, Path)):
        from hftaccel.golden.mlp import load      # the compiler of the ONNX graph into steps
        model = load(model)
    if not (hasattr(model, "steps") and hasattr(model, "n_inputs")):
        raise TypeError(f"model must be an ONNX path or a hftaccel.golden.mlp.IntegerMLP, "
                        f"not {model!r}")
    src = getattr(model, "source", "<model>")
    n = int(model.n_inputs)
    width = n
    input_ops: list = []
    layers: list = []
    cur = input_ops
    for st in model.steps:
        kind = type(st).__name__
        if kind == "Dense":
            w = np.asarray(st.weight, np.int64)
            b = np.asarray(st.bias, np.int64).reshape(-1)
            if w.ndim != 2 or w.shape[1] != width or b.shape != (w.shape[0],):
                raise ValueError(f"{src}: layer {st.node!r} has weight {w.shape} and bias "
                                 f"{b.shape} for {width} inputs")
            if w.size and (w.min() < _W_LO or w.max() > _W_HI):
                raise ValueError(f"{src}: layer {st.node!r} weights span {int(w.min())}.."
                                 f"{int(w.max())}, outside int{WEIGHT_BITS}")
            if b.size and (b.min() < _B_LO or b.max() > _B_HI):
                raise ValueError(f"{src}: layer {st.node!r} biases span {int(b.min())}.."
                                 f"{int(b.max())}, outside int{BIAS_BITS}")
            layers.append([w, b, []])
            cur = layers[-1][2]
            width = w.shape[0]
        elif kind == "Relu":
            cur.append(_Op("relu"))
        elif kind == "Requant":
            sh = np.broadcast_to(np.asarray(st.shift, np.int64), (width,))
            cur.append(_Op("requant", tuple(int(s) for s in sh), int(st.lo), int(st.hi)))
        elif kind == "Clip":
            cur.append(_Op("clip", (), int(st.lo), int(st.hi)))
        else:
            raise ValueError(f"{src}: step {st!r} is not supported by the gateware")
    if not layers:
        raise ValueError(f"{src}: the model has no dense layer")
    if not input_ops or input_ops[0].kind != "requant":
        raise ValueError(f"{src}: the model must start with an input quantizer, not "
                         f"{input_ops[:1]!r}")
    q = input_ops[0]
    for f, s in enumerate(q.shift):
        # float32(x) == x for |x| < 2**24; beyond, both must saturate (rne is monotonic)
        if _rne(_F32_EXACT, s) < q.hi or _rne(-_F32_EXACT, s) > q.lo:
            raise ValueError(f"{src}: input shift {s} of feature {f} does not saturate "
                             f"|x| >= 2**24 into [{q.lo}, {q.hi}]; the float32 input rounding "
                             f"of the graph is not built")
    return _Plan(n, tuple(input_ops),
                 tuple(_Layer(w, b, tuple(p)) for w, b, p in layers), src)


def _rne(a: int, n: int) -> int:
    """Python-int round-half-even shift (the golden ``rne_shift``)."""
    if n <= 0:
        return a << -n
    q, r, h = a >> n, a & ((1 << n) - 1), 1 << (n - 1)
    return q + (r > h or (r == h and q & 1))


def _ops_range(ops, lo: int, hi: int, channels=None) -> tuple[int, int]:
    """Static value range after ``ops`` of a value in ``[lo, hi]`` (over ``channels``)."""
    for op in ops:
        if op.kind == "relu":
            lo, hi = max(lo, 0), max(hi, 0)
        else:
            if op.kind == "requant":
                sh = op.shift if channels is None else [op.shift[c] for c in channels]
                lo, hi = min(_rne(lo, s) for s in sh), max(_rne(hi, s) for s in sh)
            lo, hi = max(lo, op.lo), min(hi, op.hi)
            if lo > hi:
                lo = hi = op.lo if hi < op.lo else op.hi
    return lo, hi


def _shape(lo: int, hi: int) -> Shape:
    return Shape.cast(range(lo, hi + 1))


# ----------------------------------------------------------------------------- address map

def _clog2(n: int) -> int:
    return max(0, (n - 1).bit_length())


def _sections(plan: _Plan) -> list[dict]:
    out = []
    end = 0
    for k, ly in enumerate(plan.layers):
        o, n = ly.weight.shape
        for kind, rows, cols in (("weight", o, n), ("bias", o, 1)):
            col_bits = _clog2(cols)
            bits = _clog2(rows) + col_bits
            base = -(-end // (1 << bits)) << bits
            out.append({"layer": k, "kind": kind, "base": base, "rows": rows, "cols": cols,
                        "col_bits": col_bits, "bits": bits})
            end = base + (1 << bits)
    return out


def weight_map(model=None) -> list[dict]:
    """The flat weight address map of a model (see the module docstring).

    Parameters
    ----------
    model : str, Path or hftaccel.golden.mlp.IntegerMLP, optional
        Default ``models/default.onnx``.

    Returns
    -------
    list of dict
        Per section, in address order: ``layer`` (dense layer index), ``kind`` (``"weight"`` or
        ``"bias"``), ``base`` (first address), ``rows`` (outputs ``O``), ``cols`` (inputs ``N``;
        1 for biases), ``col_bits`` (element ``[o, j]`` is at ``base + (o << col_bits) + j``)
        and ``bits`` (the section spans ``2**bits`` addresses).
    """
    return _sections(model if isinstance(model, _Plan) else _plan(model))


def _image(plan: _Plan) -> np.ndarray:
    secs = _sections(plan)
    img = np.zeros(secs[-1]["base"] + (1 << secs[-1]["bits"]), np.int64)
    for s in secs:
        ly = plan.layers[s["layer"]]
        v = ly.weight if s["kind"] == "weight" else ly.bias[:, None]
        for o in range(s["rows"]):
            a = s["base"] + (o << s["col_bits"])
            img[a:a + s["cols"]] = v[o]
    return img


def weight_image(model=None) -> np.ndarray:
    """Value of every address of the weight port for ``model``.

    Parameters
    ----------
    model : str, Path or hftaccel.golden.mlp.IntegerMLP, optional
        Default ``models/default.onnx``.

    Returns
    -------
    np.ndarray, int64, shape (end,)
        ``end`` is the first address past the last section (at most ``2**MLP.addr_width``);
        int8 weights and int32 biases as signed integers, 0 in the holes. Write
        ``value & 0xFFFFFFFF`` to ``w_data`` at each address (holes may be skipped).
    """
    return _image(model if isinstance(model, _Plan) else _plan(model))


# ----------------------------------------------------------------------------- datapath pieces

def _payload(elem_shape, n: int, meta, name: str = "x") -> data.StructLayout:
    members = {name: data.ArrayLayout(elem_shape, n)}
    if meta is not None:
        members["meta"] = meta
    return data.StructLayout(members)


def _tree_sum(values: list):
    """Balanced sum of Amaranth values (adds pairwise)."""
    values = list(values)
    if not values:
        return Const(0, 1)
    while len(values) > 1:
        values = [values[i] + values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]


def _rne_shift(v, n: int):
    """Amaranth ``rne(v * 2**-n)`` for a constant ``n`` (``v`` signed or unsigned)."""
    if n <= 0:
        return v << -n
    if n + 1 >= len(v):                   # extend so that bits n-1 and n exist
        k = n + 2 - len(v)
        v = (Cat(v, v[-1].replicate(k)).as_signed() if v.shape().signed
             else Cat(v, Const(0, k)))
    q = v >> n
    rest = v[:n - 1].any() if n > 1 else Const(0, 1)
    return q + (v[n - 1] & (rest | q[0]))


def _apply_ops(m: Module, v, lo: int, hi: int, ops, channel, name: str):
    """Element-wise ``ops`` on value ``v`` (range ``[lo, hi]``) of output channel ``channel``
    (an int, or a Signal selecting among ``range(len(shift))``); returns (signal, lo, hi)."""
    for k, op in enumerate(ops):
        if op.kind == "relu":
            nlo, nhi = max(lo, 0), max(hi, 0)
            r = Mux(v < 0, 0, v)
        else:
            if op.kind == "requant":
                chans = [channel] if isinstance(channel, int) else range(len(op.shift))
                nlo, nhi = _ops_range([op], lo, hi, chans)
                shifts = sorted({op.shift[c] for c in chans})
                if len(shifts) == 1:
                    r = _rne_shift(v, shifts[0])
                else:                             # per-channel shift, channel chosen at run time
                    by = {s: _rne_shift(v, s) for s in shifts}
                    r = Array(by[op.shift[c]] for c in chans)[channel]
                rlo = min(_rne(lo, s) for s in shifts)
                rhi = max(_rne(hi, s) for s in shifts)
            else:
                nlo, nhi = _ops_range([op], lo, hi)
                r, rlo, rhi = v, lo, hi
            if op.lo is not None and rlo < op.lo:
                r = Mux(r < op.lo, op.lo, r)
            if op.hi is not None and rhi > op.hi:
                r = Mux(r > op.hi, op.hi, r)
        s = Signal(_shape(nlo, nhi), name=f"{name}_op{k}")
        m.d.comb += s.eq(r)
        v, lo, hi = s, nlo, nhi
    return v, lo, hi


def _product_range(alo: int, ahi: int) -> tuple[int, int]:
    c = [alo * _W_LO, alo * _W_HI, ahi * _W_LO, ahi * _W_HI]
    return min(c), max(c)


def _acc_range(n: int, alo: int, ahi: int) -> tuple[int, int]:
    plo, phi = _product_range(alo, ahi)
    return n * plo + _B_LO, n * phi + _B_HI


class _Quantizer(wiring.Component):
    """One register stage applying the input ops per channel (int32 in, activations out)."""

    def __init__(self, ops, n: int, meta, out_range):
        self._ops, self._n, self._meta, self._range = ops, n, meta, out_range
        super().__init__({
            "i": In(stream.Signature(_payload(signed(32), n, meta))),
            "o": Out(stream.Signature(_payload(_shape(*out_range), n, meta))),
        })

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        ys = [_apply_ops(m, self.i.payload.x[f], -(1 << 31), (1 << 31) - 1, self._ops, f,
                         f"q{f}")[0] for f in range(self._n)]
        with m.If(self.i.ready):
            m.d.sync += self.o.valid.eq(self.i.valid)
            if self._meta is not None:
                m.d.sync += self.o.payload.meta.eq(self.i.payload.meta)
            m.d.sync += [self.o.payload.x[f].eq(y) for f, y in enumerate(ys)]
        return m


class _LayerBase(wiring.Component):
    """Ports shared by both dense engines: activation streams and the layer's write port."""

    def __init__(self, layer: _Layer, meta, in_range, name: str):
        self._ly, self._meta, self._name = layer, meta, name
        self.n_out, self.n_in = layer.weight.shape
        self.in_range = in_range
        self.acc_range = _acc_range(self.n_in, *in_range)
        self.out_range = _ops_range(layer.post, *self.acc_range)
        self._rb, self._cb = max(1, _clog2(self.n_out)), max(1, _clog2(self.n_in))
        super().__init__({
            "i": In(stream.Signature(_payload(_shape(*in_range), self.n_in, meta))),
            "o": Out(stream.Signature(_payload(_shape(*self.out_range), self.n_out, meta))),
            "w_we": In(1),                # write weight [w_row, w_col] = w_data[0:8]
            "b_we": In(1),                # write bias [w_row] = w_data
            "w_row": In(self._rb),
            "w_col": In(self._cb),
            "w_data": In(32),
        })


class _DenseParallel(_LayerBase):
    """Every MAC in one cycle: weights in registers, pipelined 16-input adder tree."""

    def elaborate(self, platform):
        m = Module()
        ly, nm = self._ly, self._name
        O, N = self.n_out, self.n_in
        # one wide register per layer (weights row-major) and one for the biases: the write
        # port is a single indexed store, which keeps the generated Verilog (and Verilator's
        # C++) small
        wv = Signal(data.ArrayLayout(signed(WEIGHT_BITS), O * N), reset_less=True,
                    init=[int(v) for v in ly.weight.reshape(-1)], name=f"{nm}_weights")
        bv = Signal(data.ArrayLayout(signed(BIAS_BITS), O), reset_less=True,
                    init=[int(v) for v in ly.bias], name=f"{nm}_biases")
        inside = (self.w_row < O) & (self.w_col < N)
        with m.If(self.w_we & inside):
            m.d.sync += wv[self.w_row * N + self.w_col].eq(self.w_data[:WEIGHT_BITS])
        with m.If(self.b_we & (self.w_row < O)):
            m.d.sync += bv[self.w_row].eq(self.w_data)
        w = [[wv[o * N + j] for j in range(N)] for o in range(O)]
        b = [bv[o] for o in range(O)]

        adv = Signal()
        m.d.comb += [adv.eq(~self.o.valid | self.o.ready), self.i.ready.eq(adv)]
        x = self.i.payload.x
        plo, phi = _product_range(*self.in_range)
        terms = []                         # per neuron: [(value, lo, hi)]
        for o in range(O):
            row = [(x[j] * w[o][j], plo, phi) for j in range(N)]
            terms.append(row)
        valid, meta = self.i.valid, self.i.payload.meta if self._meta is not None else None
        level = 0
        while max(len(t) for t in terms) > TREE_FANIN:
            v_r = Signal(name=f"{nm}_valid{level}")
            m_r = Signal(self._meta, name=f"{nm}_meta{level}") if meta is not None else None
            new_terms = []
            with m.If(adv):
                m.d.sync += v_r.eq(valid)
                if m_r is not None:
                    m.d.sync += m_r.eq(meta)
                for o in range(O):
                    row = []
                    for g in range(0, len(terms[o]), TREE_FANIN):
                        grp = terms[o][g:g + TREE_FANIN]
                        lo, hi = sum(t[1] for t in grp), sum(t[2] for t in grp)
                        s = Signal(_shape(lo, hi), name=f"{nm}_s{level}_{o}_{g // TREE_FANIN}")
                        m.d.sync += s.eq(_tree_sum(t[0] for t in grp))
                        row.append((s, lo, hi))
                    new_terms.append(row)
            terms, valid, meta, level = new_terms, v_r, m_r, level + 1
        ys = []
        for o in range(O):
            lo = sum(t[1] for t in terms[o]) + _B_LO
            hi = sum(t[2] for t in terms[o]) + _B_HI
            acc = Signal(_shape(lo, hi), name=f"{nm}_acc{o}")
            m.d.comb += acc.eq(_tree_sum([t[0] for t in terms[o]] + [b[o]]))
            ys.append(_apply_ops(m, acc, lo, hi, ly.post, o, f"{nm}_y{o}")[0])
        with m.If(adv):
            m.d.sync += self.o.valid.eq(valid)
            if meta is not None:
                m.d.sync += self.o.payload.meta.eq(meta)
            m.d.sync += [self.o.payload.x[o].eq(y) for o, y in enumerate(ys)]
        return m

    @property
    def latency(self) -> int:
        n, stages = self.n_in, 1
        while n > TREE_FANIN:
            n, stages = -(-n // TREE_FANIN), stages + 1
        return stages


class _DenseFolded(_LayerBase):
    """``simd`` MACs a cycle, one neuron at a time; weights and biases in memories."""

    def __init__(self, layer, meta, in_range, name, *, simd: int):
        super().__init__(layer, meta, in_range, name)
        self.simd = simd
        self.chunks = -(-self.n_in // simd)
        self.words = self.n_out * self.chunks

    @property
    def latency(self) -> int:
        return self.words + 2

    def elaborate(self, platform):
        m = Module()
        ly, nm = self._ly, self._name
        O, N, S, C, OC = self.n_out, self.n_in, self.simd, self.chunks, self.words
        has_meta = self._meta is not None

        init = []
        for o in range(O):
            for c in range(C):
                word = 0
                for lane in range(S):
                    j = c * S + lane
                    if j < N:
                        word |= (int(ly.weight[o, j]) & 0xFF) << (WEIGHT_BITS * lane)
                init.append(word)
        m.submodules.wmem = wmem = Memory(shape=unsigned(WEIGHT_BITS * S), depth=OC, init=init)
        m.submodules.bmem = bmem = Memory(shape=signed(BIAS_BITS), depth=O,
                                          init=[int(v) for v in ly.bias])
        wrd = wmem.read_port(domain="sync")
        brd = bmem.read_port(domain="sync")
        wwr = wmem.write_port(granularity=WEIGHT_BITS)
        bwr = bmem.write_port()

        # write port: flat [row, col] -> word row * C + col // S, lane col % S
        lane_bits = _clog2(S)
        col = self.w_col
        chunk = col[lane_bits:] if C > 1 else Const(0, 1)
        lane = col[:lane_bits] if C > 1 else col
        inside = (self.w_row < O) & (col < N)
        m.d.comb += [
            wwr.addr.eq(self.w_row * C + chunk),
            wwr.data.eq(Cat(*[self.w_data[:WEIGHT_BITS]] * S)),
            wwr.en.eq(Mux(self.w_we & inside, Const(1, S) << lane, 0)),
            bwr.addr.eq(self.w_row),
            bwr.data.eq(self.w_data),
            bwr.en.eq(self.b_we & (self.w_row < O)),
        ]

        # issue: one weight word (neuron o, chunk c) a cycle
        busy = Signal()
        cnt = Signal(range(OC + 1))
        nxt_o = Signal(range(O))
        nxt_c = Signal(range(C))
        in_x = Signal(data.ArrayLayout(_shape(*self.in_range), N))
        in_meta = Signal(self._meta) if has_meta else None
        # stage P (weight word on the read port) and stage A (accumulate)
        p = {k: Signal(range(max(O, C)), name=f"p_{k}") if k in ("o", "c")
             else Signal(name=f"p_{k}") for k in ("valid", "first", "last", "final", "o", "c")}
        a = {k: Signal(range(O), name=f"a_{k}") if k == "o" else Signal(name=f"a_{k}")
             for k in ("valid", "first", "last", "final", "o")}
        p_meta = Signal(self._meta) if has_meta else None
        a_meta = Signal(self._meta) if has_meta else None
        plo, phi = _product_range(*self.in_range)
        a_psum = Signal(_shape(S * min(plo, 0), S * max(phi, 0)))
        a_bias = Signal(signed(BIAS_BITS))
        acc = Signal(_shape(*self.acc_range))
        work = Signal(data.ArrayLayout(_shape(*self.out_range), O))

        run = Signal()
        accept = Signal()
        issue = Signal()
        cur_o = Signal(range(O))
        cur_c = Signal(range(C))
        final_here = a["valid"] & a["last"] & a["final"]
        m.d.comb += [
            run.eq(~(final_here & self.o.valid & ~self.o.ready)),
            self.i.ready.eq(run & ~busy),
            accept.eq(self.i.valid & self.i.ready),
            issue.eq(accept | (run & busy)),
            cur_o.eq(Mux(accept, 0, nxt_o)),
            cur_c.eq(Mux(accept, 0, nxt_c)),
            wrd.addr.eq(Mux(accept, 0, cnt)),
            wrd.en.eq(run),
            brd.addr.eq(cur_o),
            brd.en.eq(run),
        ]
        with m.If(run):
            last_c = cur_c == C - 1
            last_o = cur_o == O - 1
            m.d.sync += [p["valid"].eq(issue), p["first"].eq(cur_c == 0), p["last"].eq(last_c),
                         p["final"].eq(last_c & last_o), p["o"].eq(cur_o), p["c"].eq(cur_c)]
            if has_meta:
                m.d.sync += p_meta.eq(Mux(accept, self.i.payload.meta, in_meta))
            with m.If(accept):
                m.d.sync += in_x.eq(self.i.payload.x)
                if has_meta:
                    m.d.sync += in_meta.eq(self.i.payload.meta)
            with m.If(issue):
                with m.If(last_c & last_o):
                    m.d.sync += [busy.eq(0), cnt.eq(0), nxt_o.eq(0), nxt_c.eq(0)]
                with m.Else():
                    m.d.sync += [busy.eq(1), cnt.eq(Mux(accept, 1, cnt + 1))]
                    with m.If(last_c):
                        m.d.sync += [nxt_c.eq(0), nxt_o.eq(cur_o + 1)]
                    with m.Else():
                        m.d.sync += nxt_c.eq(cur_c + 1)

        # stage P: S products of the word and the chunk's inputs
        prods = []
        for lane in range(S):
            opts = [in_x[c * S + lane] if c * S + lane < N else Const(0, 1) for c in range(C)]
            xv = opts[0] if C == 1 else Array(opts)[p["c"]]
            wv = wrd.data[WEIGHT_BITS * lane:WEIGHT_BITS * (lane + 1)].as_signed()
            pr = Signal(_shape(plo, phi), name=f"prod{lane}")
            m.d.comb += pr.eq(xv * wv)
            prods.append(pr)
        with m.If(run):
            m.d.sync += [a["valid"].eq(p["valid"]), a["first"].eq(p["first"]),
                         a["last"].eq(p["last"]), a["final"].eq(p["final"]), a["o"].eq(p["o"]),
                         a_psum.eq(_tree_sum(prods)), a_bias.eq(brd.data)]
            if has_meta:
                m.d.sync += a_meta.eq(p_meta)

        # stage A: accumulate; at a neuron's last chunk apply the element-wise ops
        acc_new = Signal(_shape(*self.acc_range))
        m.d.comb += acc_new.eq(Mux(a["first"], a_bias, acc) + a_psum)
        y, _, _ = _apply_ops(m, acc_new, *self.acc_range, ly.post, a["o"], f"{nm}_y")
        with m.If(run & a["valid"]):
            m.d.sync += acc.eq(acc_new)
            with m.If(a["last"]):
                with m.Switch(a["o"]):
                    for o in range(O - 1):
                        with m.Case(o):
                            m.d.sync += work[o].eq(y)
        with m.If(run & final_here):
            m.d.sync += self.o.valid.eq(1)
            m.d.sync += [self.o.payload.x[o].eq(work[o]) for o in range(O - 1)]
            m.d.sync += self.o.payload.x[O - 1].eq(y)
            if has_meta:
                m.d.sync += self.o.payload.meta.eq(a_meta)
        with m.Elif(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m


# ----------------------------------------------------------------------------- compiled weights

#: Full-adder (3:2 counter) levels a stage of the compiled build spends before its one
#: carry-propagate adder: a stage sums up to ``_DADDA[STAGE_LEVELS]`` bits of a column into one
#: row per group (Dadda's height sequence).
STAGE_LEVELS = 4
#: Logic levels charged to the requantization (rounding, saturation, ReLU) that opens the first
#: stage of a layer fed by a layer with element-wise ops.
OPS_LEVELS = 2
_DADDA = (2, 3, 4, 6, 9, 13, 19, 28, 42, 63, 94, 141, 211, 316, 474, 711)
_INF = float("inf")


def _csd(w: int) -> list:
    """Canonical signed digits of ``w``: ``[(sign, exponent)]``, ``w = sum sign * 2**exponent``,
    no two adjacent digits non-zero (the fewest non-zero digits of any signed-digit form)."""
    out, e = [], 0
    while w:
        if w & 1:
            d = 2 - (w & 3)                  # +1 where w = 1 (mod 4), -1 where w = 3 (mod 4)
            out.append((d, e))
            w -= d
        w >>= 1
        e += 1
    return out


def _fold_ops(ops, width: int, src: str):
    """Fold element-wise ops into ``clip(rne(v * 2**-shift[c]), lo[c], hi[c])`` per channel.

    ReLU and Clip are clamps; a clamp before a rounding shift moves through it (``rne`` is
    monotonic: ``rne(clamp(v, a, b)) == clamp(rne(v), rne(a), rne(b))``). Returns ``(shift,
    lo, hi)``: ``shift`` a tuple or None (no Requant), ``lo`` / ``hi`` lists (``-inf`` / ``inf``
    where unbounded). Two Requants in one chain (double rounding) raise ``ValueError``."""
    shift, lo, hi = None, [-_INF] * width, [_INF] * width

    def clamp(a, b):
        if a > b:
            raise ValueError(f"{src}: clip [{a}, {b}] is empty; the compiled build needs lo <= hi")
        for c in range(width):
            lo[c], hi[c] = min(max(lo[c], a), b), max(min(hi[c], b), a)

    for op in ops:
        if op.kind == "relu":
            clamp(0, _INF)
        elif op.kind == "clip":
            clamp(-_INF if op.lo is None else op.lo, _INF if op.hi is None else op.hi)
        else:
            if shift is not None:
                raise ValueError(f"{src}: two requantizations in a row are not built in "
                                 f"compiled mode")
            shift = op.shift
            lo = [v if abs(v) == _INF else _rne(int(v), s) for v, s in zip(lo, shift)]
            hi = [v if abs(v) == _INF else _rne(int(v), s) for v, s in zip(hi, shift)]
            clamp(op.lo, op.hi)
    return shift, lo, hi


def _folded_range(tlo: int, thi: int, n, lo, hi) -> tuple[int, int]:
    """Range of ``clip(rne(v * 2**-n), lo, hi)`` for ``v`` in ``[tlo, thi]``."""
    if n is not None:
        tlo, thi = _rne(tlo, n), _rne(thi, n)
    return int(min(max(tlo, lo), hi)), int(max(min(thi, hi), lo))


def _thresholds(n, lo, hi) -> tuple:
    """``(xl, xh)``: the least / greatest ``v`` with ``lo <= rne(v * 2**-n) <= hi`` (None where
    unbounded); saturation is ``v < xl`` / ``v > xh``, comparisons with constants."""
    xl = xh = None
    if hi != _INF:
        hi = int(hi)
        if not n:
            xh = hi
        elif n > 0:
            xh = (hi << n) + (1 << (n - 1)) - (hi & 1)          # the tie rounds to even
        else:
            xh = hi >> -n
        assert _rne(xh, n or 0) <= hi < _rne(xh + 1, n or 0)
    if lo != -_INF:
        lo = int(lo)
        if not n:
            xl = lo
        elif n > 0:
            xl = (lo << n) - (1 << (n - 1)) + (lo & 1)
        else:
            xl = -((-lo) >> -n)
        assert _rne(xl - 1, n or 0) < lo <= _rne(xl, n or 0)
    return xl, xh


def _signed_width(lo: int, hi: int) -> int:
    return Shape.cast(range(min(lo, -1), max(hi, 0) + 1)).width


def _gt_const(v, c: int):
    """``v > c`` for a constant ``c`` as and/or logic (no comparator, so no carry chain)."""
    w, signed_ = len(v), v.shape().signed
    vmin, vmax = (-(1 << (w - 1)), (1 << (w - 1)) - 1) if signed_ else (0, (1 << w) - 1)
    if c >= vmax:
        return Const(0, 1)
    if c < vmin:
        return Const(1, 1)
    if signed_:                              # order-preserving map onto unsigned
        c += 1 << (w - 1)
    g = Const(0, 1)
    for i in range(w):
        b = ~v[i] if signed_ and i == w - 1 else v[i]
        g = (b & g) if (c >> i) & 1 else (b | g)
    return g


def _lt_const(v, c: int):
    """``v < c`` for a constant ``c`` (see :func:`_gt_const`)."""
    return ~_gt_const(v, c - 1)


def _bit(v, i: int):
    """Bit ``i`` of ``v``, sign- or zero-extended past its width."""
    if i < len(v):
        return v[i]
    return v[-1] if v.shape().signed else Const(0, 1)


def _requant_logic(m: Module, v, tlo: int, thi: int, n, lo, hi, *, biased: bool, name: str):
    """``clip(rne(s * 2**-n), lo, hi)`` of a value ``s`` in ``[tlo, thi]``, one carry chain at
    most: ``v`` is ``s + 2**(n-1)`` when ``biased`` (the half added in the adder tree's
    constant), else ``s`` itself, and then the half is added by a short incrementer over the
    bits that reach the result.

    Round half to even from the biased value ``b = s + 2**(n-1)``: ``b >> n`` is round half up;
    the ties (``s = q * 2**n + 2**(n-1)``, so the low ``n`` bits of ``b`` are 0) go to the even
    neighbour by clearing bit 0 of ``b >> n``. Saturation compares ``s`` with the constants of
    :func:`_thresholds` (or-and trees), beside the adder. Returns ``(signal, lo, hi)``."""
    olo, ohi = _folded_range(tlo, thi, n, lo, hi)
    shape = _shape(olo, ohi)
    y = Signal(shape, name=name)
    if olo == ohi:
        m.d.comb += y.eq(olo)
        return y, olo, ohi
    wo = shape.width
    xl, xh = _thresholds(n, lo, hi)
    half = (1 << (n - 1)) if n and n > 0 else 0
    off = half if biased else 0
    sat_hi = _gt_const(v, xh + off) if xh is not None and xh < thi else Const(0, 1)
    sat_lo = _lt_const(v, xl + off) if xl is not None and xl > tlo else Const(0, 1)
    if n and n > 0:
        if biased:
            qb = [_bit(v, n + i) for i in range(wo)]
            tie = ~Cat(*[v[i] for i in range(n)]).any()
        else:
            t = Cat(*[_bit(v, n - 1 + i) for i in range(wo + 1)]) + 1
            qb = [t[1 + i] for i in range(wo)]
            tie = v[n - 1] & ~(Cat(*[v[i] for i in range(n - 1)]).any() if n > 1 else Const(0, 1))
        qb[0] = qb[0] & ~tie
    elif n and n < 0:
        qb = ([Const(0, 1)] * -n + [_bit(v, i) for i in range(wo)])[:wo]
    else:
        qb = [_bit(v, i) for i in range(wo)]
    q = Cat(*qb).as_signed() if shape.signed else Cat(*qb)
    r = q
    if xl is not None and xl > tlo:
        r = Mux(sat_lo, int(lo), r)
    if xh is not None and xh < thi:
        r = Mux(sat_hi, int(hi), r)
    m.d.comb += y.eq(r)
    return y, olo, ohi


class _Net:
    """Bit-level adder-tree builder. With a module it emits full / half adders (and/or/xor,
    which Yosys maps to LUTs), carry-propagate adders (``+``: one carry chain) and pipeline
    registers enabled by ``adv``; without one (``m=None``) it only counts, so the stage
    schedule (and so the latency) is known before elaboration."""

    def __init__(self, m=None, adv=None):
        self.m, self.adv, self.n, self.k = m, adv, 0, 0

    def const1(self):
        return Const(1, 1) if self.m is not None else True

    def inv(self, b):
        return ~b if self.m is not None else b

    def _wire(self, value, width: int = 1):
        """A named combinational signal for ``value`` (every gate output is one, so the
        netlist is a DAG of signals, not a tree of re-emitted expressions)."""
        self.k += 1
        w = Signal(width, name=f"t{self.k}")
        self.m.d.comb += w.eq(value)
        return w

    def fa(self, a, b, c):
        if self.m is None:
            return a, a
        return self._wire(a ^ b ^ c), self._wire((a & b) | (a & c) | (b & c))

    def ha(self, a, b):
        if self.m is None:
            return a, a
        return self._wire(a ^ b), self._wire(a & b)

    def cpa(self, x: list, y: list, width: int) -> list:
        if self.m is None:
            return [True] * width
        s = self._wire((Cat(*x) + Cat(*y))[:width], width)
        return [s[i] for i in range(width)]

    def reg(self, bits: list, name: str) -> list:
        if self.m is None or not bits:
            return list(bits)
        self.n += 1
        r = Signal(len(bits), name=f"{name}_{self.n}")
        with self.m.If(self.adv):
            self.m.d.sync += r.eq(Cat(*bits))
        return [r[i] for i in range(len(bits))]

    def zero(self):
        return Const(0, 1) if self.m is not None else True


def _dadda(net: _Net, cols: list) -> list:
    """Reduce a dot diagram (``cols[c]``: bits of weight ``2**c``, truncated to ``len(cols)``
    columns) to at most two bits a column with full and half adders, Dadda's schedule."""
    h = max(len(c) for c in cols)
    j = next(k for k, d in enumerate(_DADDA) if d >= h)
    for d in reversed(_DADDA[:j]):
        new = [[] for _ in cols]
        for c, bits in enumerate(cols):
            bits = list(bits)
            while len(bits) + len(new[c]) > d:
                if len(bits) + len(new[c]) - d >= 2 and len(bits) >= 3:
                    s, cy = net.fa(bits.pop(), bits.pop(), bits.pop())
                else:
                    s, cy = net.ha(bits.pop(), bits.pop())
                new[c].append(s)
                if c + 1 < len(cols):
                    new[c + 1].append(cy)
            new[c] += bits
        cols = new
    return cols


def _tree_stage(net: _Net, cols: list, levels: int, name: str) -> tuple[list, bool]:
    """One pipeline stage of a multi-operand sum: split the columns into groups of at most
    ``_DADDA[levels]`` bits, reduce each to two rows (``levels`` full-adder levels at most), add
    them (one carry chain) and register the group's row. Returns the new dot diagram and
    whether it is a single row (the sum)."""
    width = len(cols)
    h = max((len(c) for c in cols), default=0)
    if h <= 1:
        rows = [[c[0] if c else net.zero() for c in cols]]
        groups = []
    else:
        ng = -(-h // _DADDA[levels])
        g = -(-h // ng)
        groups = [[c[k * g:(k + 1) * g] for c in cols] for k in range(ng)]
        rows = []
    out = [[] for _ in range(width)]
    for grp in groups:
        grp = _dadda(net, grp)
        used = [c for c in range(width) if grp[c]]
        c0, c1 = used[0], used[-1] + 1
        a = [grp[c][0] if grp[c] else net.zero() for c in range(c0, c1)]
        if any(len(grp[c]) > 1 for c in range(c0, c1)):
            b = [grp[c][1] if len(grp[c]) > 1 else net.zero() for c in range(c0, c1)]
            a = net.cpa(a, b, min(width - c0, c1 - c0 + 1))
        for i, bit in enumerate(net.reg(a, name)):
            out[c0 + i].append(bit)
    if not groups:
        for c, bit in enumerate(net.reg(rows[0], name)):
            out[c].append(bit)
    return out, len(groups) <= 1


def _compiled(net: _Net, plan: _Plan, xs) -> tuple[list, list]:
    """Build (or, with a counting net, schedule) the compiled pipeline: the input quantizer
    stage, then per dense layer the stages of its adder trees; returns ``(outputs, stages)``
    where ``outputs`` are ``(value, lo, hi)`` of the scores and ``stages`` the cycles of each
    step (quantizer, layers, final element-wise stage if any)."""
    m = net.m
    n_in = plan.n_inputs
    shift, lo, hi = _fold_ops(plan.input_ops, n_in, plan.source)
    acts = []                                # (value, lo, hi) of the current activations
    for f in range(n_in):
        n = shift[f] if shift is not None else None
        if m is None:
            acts.append((None, *_folded_range(-(1 << 31), (1 << 31) - 1, n, lo[f], hi[f])))
            continue
        y, ylo, yhi = _requant_logic(m, xs[f], -(1 << 31), (1 << 31) - 1, n, lo[f], hi[f],
                                     biased=False, name=f"q{f}_y")
        r = Signal(y.shape(), name=f"q{f}")
        with m.If(net.adv):
            m.d.sync += r.eq(y)
        acts.append((r, ylo, yhi))
    stages = [1]
    pending = None                           # element-wise ops of the previous layer
    for k, ly in enumerate(plan.layers):
        O, N = ly.weight.shape
        pshift, plo, phi = _fold_ops(ly.post, O, plan.source)
        halves = [(1 << (s - 1)) if pshift is not None and s > 0 else 0
                  for s in (pshift or [0] * O)]
        if pending is not None:              # open the stage with the previous layer's ops
            sh, qlo, qhi = pending
            new = []
            for j, (v, tlo, thi, h) in enumerate(acts):
                n = sh[j] if sh is not None else None
                if m is None:
                    new.append((None, *_folded_range(tlo - h, thi - h, n, qlo[j], qhi[j])))
                else:
                    new.append(_requant_logic(m, v, tlo - h, thi - h, n, qlo[j], qhi[j],
                                              biased=bool(h), name=f"l{k}_x{j}"))
            acts = new
        # activations as unsigned bits plus an offset: a signed w-bit x is (x ^ 2**(w-1)) -
        # 2**(w-1)
        ins = []
        for v, alo, ahi in acts:
            w = _shape(alo, ahi).width
            if m is None:
                bits = [True] * w
            else:
                bits = [v[i] for i in range(w)]
            if alo < 0:
                bits[-1] = net.inv(bits[-1])
                ins.append((bits, -(1 << (w - 1)), alo, ahi))
            else:
                ins.append((bits, 0, alo, ahi))
        trees, ranges = [], []
        for o in range(O):
            wrow = [int(v) for v in ly.weight[o]]
            tlo = int(ly.bias[o]) + sum(min(w * a[2], w * a[3]) for w, a in zip(wrow, ins))
            thi = int(ly.bias[o]) + sum(max(w * a[2], w * a[3]) for w, a in zip(wrow, ins))
            h = halves[o]
            width = _signed_width(tlo + h, thi + h)
            const = int(ly.bias[o]) + h + sum(w * a[1] for w, a in zip(wrow, ins))
            cols = [[] for _ in range(width)]
            for w, (bits, _, _, _) in zip(wrow, ins):
                for sgn, e in _csd(w):
                    for i, b in enumerate(bits):
                        if e + i < width:
                            cols[e + i].append(b if sgn > 0 else net.inv(b))
                    if sgn < 0:
                        const -= ((1 << len(bits)) - 1) << e
            const %= 1 << width
            for c in range(width):
                if const >> c & 1:
                    cols[c].append(net.const1())
            trees.append(cols)
            ranges.append((tlo + h, thi + h, h))
        done = [False] * O
        t = 0
        while not all(done):
            levels = max(0, STAGE_LEVELS - OPS_LEVELS) if t == 0 and pending else STAGE_LEVELS
            for o in range(O):
                if done[o]:                  # finished early: carry the sum along
                    row = net.reg([c[0] if c else net.zero() for c in trees[o]], f"l{k}_d{o}")
                    trees[o] = [[b] for b in row]
                else:
                    trees[o], done[o] = _tree_stage(net, trees[o], levels, f"l{k}_t{o}")
            t += 1
        stages.append(t)
        acts = []
        for o in range(O):
            lo_, hi_, h = ranges[o]
            if m is None:
                acts.append((None, lo_, hi_, h))
            else:
                bits = [c[0] if c else Const(0, 1) for c in trees[o]]
                acts.append((Cat(*bits).as_signed(), lo_, hi_, h))
        if ly.post:
            pending = (pshift, plo, phi)
        else:                                # no ops: the sum itself (no half was added)
            pending = None
            acts = [(v, lo_, hi_) for v, lo_, hi_, _ in acts]
    # scores
    outs = []
    if pending is not None:
        sh, qlo, qhi = pending
        for j, (v, tlo, thi, h) in enumerate(acts):
            n = sh[j] if sh is not None else None
            if m is None:
                outs.append((None, *_folded_range(tlo - h, thi - h, n, qlo[j], qhi[j])))
            else:
                y, ylo, yhi = _requant_logic(m, v, tlo - h, thi - h, n, qlo[j], qhi[j],
                                             biased=bool(h), name=f"out{j}_y")
                r = Signal(y.shape(), name=f"out{j}")
                with m.If(net.adv):
                    m.d.sync += r.eq(y)
                outs.append((r, ylo, yhi))
        stages.append(1)
    else:
        outs = acts
    return outs, stages


# ----------------------------------------------------------------------------- the component

class MLP(wiring.Component):
    """The scoring MLP: one int32 feature vector in, one vector of int32 scores out.

    Generated from the integer steps of the model (see the module docstring for the arithmetic,
    the folding and the weight address map). ``scores`` equal
    ``hftaccel.golden.mlp.load(model).run(x)`` (the graph's float logits are
    ``scores * 2**output_exp``).

    Parameters
    ----------
    model : str, Path or hftaccel.golden.mlp.IntegerMLP, optional
        The QCDQ ONNX model (loaded with :func:`hftaccel.golden.mlp.load`) or its loaded engine;
        default ``models/default.onnx``. Its weights and biases are the power-up contents.
    weights : str
        ``"reloadable"`` (default): weights in registers (fully parallel) or memories (folded),
        rewritable through the weight port. ``"compiled"``: weights are constants of
        shift-add adder trees (0 DSP, II 1, fully parallel; the weight port is ignored).
    macs_per_cycle : int or None
        ``None``: fully parallel (weights in registers, II = 1). Otherwise a power of two ``M``:
        every layer multiplies ``min(M, N)`` weights a cycle (weights in memories).
    meta_layout : amaranth.lib.data.Layout or shape-castable, optional
        Opaque payload carried beside the vector unchanged (book record fields, cycle stamps);
        ``None`` leaves ``meta`` out of both payloads.

    Attributes
    ----------
    i : In(stream.Signature(StructLayout({"x": ArrayLayout(signed(32), n_inputs), "meta": ...})))
        Feature vectors (:mod:`hftaccel.spec.features` integers), any values of int32.
    o : Out(stream.Signature(StructLayout({"scores": ArrayLayout(signed(32), n_outputs),
        "meta": ...})))
        Integer logits in class order (:data:`hftaccel.spec.quant.CLASS_NAMES`), ``meta`` of the
        same vector. In input order.
    w_we : In(1)
        Write ``w_data`` to address ``w_addr`` of the weight map this cycle.
    w_addr : In(addr_width)
        Address in the flat weight map (:func:`weight_map`).
    w_data : In(32)
        Value: a weight in bits 0..7 (int8), a bias in all 32 bits (int32).
    latency : int
        Cycles from a vector's acceptance on ``i`` to its scores being valid on ``o``.
    ii : int
        Cycles between vectors accepted back to back (without back-pressure).
    addr_width : int
        Width of ``w_addr``, bits.
    n_inputs, n_outputs : int
        Features in, scores out.

    Raises
    ------
    TypeError
        ``model`` or ``meta_layout`` of the wrong type.
    ValueError
        ``weights`` not in :data:`WEIGHT_MODES`, or ``"compiled"`` with ``macs_per_cycle``;
        ``macs_per_cycle`` not ``None`` or a positive power of two; a model step the gateware
        does not build (weights beyond int8, biases beyond int32, an input quantizer that
        does not saturate ``|x| >= 2**24``, ops other than Dense / Relu / Requant / Clip).
    """

    def __init__(self, *, model=None, weights: str = "reloadable",
                 macs_per_cycle: int | None = None, meta_layout=None):
        if weights not in WEIGHT_MODES:
            raise ValueError(f"weights must be one of {WEIGHT_MODES}, not {weights!r}")
        if weights == "compiled" and macs_per_cycle is not None:
            raise ValueError(f"compiled weights are fully parallel; macs_per_cycle must be "
                             f"None, not {macs_per_cycle!r}")
        if macs_per_cycle is not None and (
                not isinstance(macs_per_cycle, int) or isinstance(macs_per_cycle, bool)
                or macs_per_cycle < 1 or macs_per_cycle & (macs_per_cycle - 1)):
            raise ValueError(f"macs_per_cycle must be None or a positive power of two, "
                             f"not {macs_per_cycle!r}")
        if meta_layout is not None:
            try:
                Shape.cast(meta_layout)
            except TypeError:
                raise TypeError(f"meta_layout must be a Layout or shape-castable, "
                                f"not {meta_layout!r}") from None
        self._plan = _plan(model)
        self._macs = macs_per_cycle
        self._weights = weights
        self._meta = meta_layout
        secs = _sections(self._plan)
        self._sections = secs
        self.addr_width = max(1, _clog2(secs[-1]["base"] + (1 << secs[-1]["bits"])))
        self.n_inputs = self._plan.n_inputs
        self.n_outputs = self._plan.layers[-1].weight.shape[0]
        # build the stage objects now: latency / ii are known before elaboration
        q = self._plan.input_ops
        rng = _ops_range(q, -(1 << 31), (1 << 31) - 1)
        self._quant = (_Quantizer(q, self.n_inputs, meta_layout, rng)
                       if weights == "reloadable" else None)
        self._layers = []
        self._stages = None
        if weights == "compiled":            # schedule the adder trees (counting only)
            _, self._stages = _compiled(_Net(), self._plan, None)
        for k, ly in enumerate(self._plan.layers if weights == "reloadable" else ()):
            if macs_per_cycle is None:
                eng = _DenseParallel(ly, meta_layout, rng, f"l{k}")
            else:
                eng = _DenseFolded(ly, meta_layout, rng, f"l{k}",
                                   simd=min(macs_per_cycle, ly.weight.shape[1]))
            self._layers.append(eng)
            rng = eng.out_range
        super().__init__({
            "i": In(stream.Signature(_payload(signed(32), self.n_inputs, meta_layout))),
            "o": Out(stream.Signature(_payload(signed(SCORE_BITS), self.n_outputs, meta_layout,
                                               "scores"))),
            "w_we": In(1),
            "w_addr": In(self.addr_width),
            "w_data": In(32),
        })

    @property
    def weights(self) -> str:
        """The weight build mode (``"reloadable"`` or ``"compiled"``)."""
        return self._weights

    @property
    def macs_per_cycle(self) -> int | None:
        """The folding parameter (``None``: fully parallel)."""
        return self._macs

    @property
    def latency(self) -> int:
        """Cycles from acceptance on ``i`` to scores valid on ``o``."""
        if self._stages is not None:
            return sum(self._stages)
        return 1 + sum(eng.latency for eng in self._layers)

    @property
    def ii(self) -> int:
        """Initiation interval, cycles (1 fully parallel; the slowest layer's words folded)."""
        if self._macs is None:
            return 1
        return max(1, max(eng.words for eng in self._layers))

    @property
    def layer_cycles(self) -> list[int]:
        """Latency of each dense layer, cycles (the input quantizer adds 1; in compiled mode
        a last layer with element-wise ops adds 1 more)."""
        if self._stages is not None:
            return list(self._stages[1:1 + len(self._plan.layers)])
        return [eng.latency for eng in self._layers]

    def weight_map(self) -> list[dict]:
        """This instance's address map (:func:`weight_map`)."""
        return [dict(s) for s in self._sections]

    def image(self, model=None) -> np.ndarray:
        """:func:`weight_image` of ``model`` (default: the built one) after checking that it
        differs from the built model only in weights and biases.

        Raises
        ------
        ValueError
            Shapes, shifts, clips or ReLUs differ from the built model's.
        """
        plan = self._plan if model is None else _plan(model)
        if plan.signature() != self._plan.signature():
            raise ValueError(f"model {plan.source!r} differs from the built "
                             f"{self._plan.source!r} in more than weights and biases")
        return _image(plan)

    def _elaborate_compiled(self):
        m = Module()
        adv = Signal()
        m.d.comb += [adv.eq(~self.o.valid | self.o.ready), self.i.ready.eq(adv)]
        net = _Net(m, adv)
        outs, stages = _compiled(net, self._plan, [self.i.payload.x[f]
                                                    for f in range(self.n_inputs)])
        assert stages == self._stages
        valid, meta = self.i.valid, self.i.payload.meta if self._meta is not None else None
        for t in range(sum(stages)):
            v = Signal(name=f"valid{t}")
            with m.If(adv):
                m.d.sync += v.eq(valid)
            valid = v
            if meta is not None:
                r = Signal(self._meta, name=f"meta{t}")
                with m.If(adv):
                    m.d.sync += r.eq(meta)
                meta = r
        m.d.comb += self.o.valid.eq(valid)
        m.d.comb += [self.o.payload.scores[k].eq(v) for k, (v, _, _) in enumerate(outs)]
        if meta is not None:
            m.d.comb += self.o.payload.meta.eq(meta)
        return m

    def elaborate(self, platform):
        if self._weights == "compiled":
            return self._elaborate_compiled()
        m = Module()
        m.submodules.quant = self._quant
        wiring.connect(m, wiring.flipped(self.i), self._quant.i)
        prev = self._quant.o
        for k, eng in enumerate(self._layers):
            m.submodules[f"layer{k}"] = eng
            wiring.connect(m, prev, eng.i)
            prev = eng.o
            ws, bs = self._sections[2 * k], self._sections[2 * k + 1]

            def hit(s):
                return self.w_addr[s["bits"]:] == (s["base"] >> s["bits"])
            cb = ws["col_bits"]
            m.d.comb += [
                eng.w_we.eq(self.w_we & hit(ws)),
                eng.b_we.eq(self.w_we & hit(bs)),
                eng.w_row.eq(Mux(hit(ws), self.w_addr[cb:ws["bits"]], self.w_addr[:bs["bits"]])),
                eng.w_col.eq(self.w_addr[:cb]),
                eng.w_data.eq(self.w_data),
            ]
        m.d.comb += [
            self.o.valid.eq(prev.valid),
            prev.ready.eq(self.o.ready),
        ]
        m.d.comb += [self.o.payload.scores[k].eq(prev.payload.x[k])
                     for k in range(self.n_outputs)]
        if self._meta is not None:
            m.d.comb += self.o.payload.meta.eq(prev.payload.meta)
        return m
