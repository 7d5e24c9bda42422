"""GPU backend: features and int8 MLP scores from CUDA C kernels, bit-exact with the golden model.

The order book is sequential, so it is built on the CPU (``hftaccel.golden.book``); the
features of every book record and the MLP logits are computed by the kernels of
``gpu/kernels`` (``features.cu``, ``mlp.cu``; package ``hftaccel.kernels``); the decision, the
risk gate and the OUCH orders then run on the CPU as in :func:`hftaccel.backends.cpu.run`.
The summary is the CPU backend's, with ``backend: "gpu"``.

Devices (``device=``):

``"cuda"``
    CuPy: each ``.cu`` file is compiled by NVRTC into a :class:`cupy.RawModule`; record chunks
    go through pinned host buffers, every launch and copy of a chunk is queued on one
    non-blocking stream, and the host prepares chunk ``k + 1`` (symbol-major permutation,
    segments) while the device works on chunk ``k`` (two sets of pinned buffers, an event each).
``"emulated"``
    The same ``.cu`` sources compiled for the CPU with g++ through ``hft_emu.cuh`` (every thread
    of a block is a fiber; shared memory and ``__syncthreads`` behave as on a device) into a
    shared library cached under ``build/gpu-emu/<hash>/``, launched through ctypes with the
    same grid, block and arguments. It exists to verify the kernels without a GPU (tests) and
    is slow: it is not a performance path.

When CuPy, a CUDA device or the NVRTC compile is missing, :func:`run` says so once (a
:class:`GpuFallbackWarning`) and replays on the CPU backend; ``strict=True`` raises
:class:`GpuUnavailableError` instead. The environment variable ``HFTACCEL_GPU_DEVICE``
(``cuda`` or ``emulated``) overrides the default device of :func:`run`.

Parallelism. Records are regrouped per symbol (a stable sort by stock locate, on the host);
every kernel is parallel over records or symbols. Over time: window sums are block-local prefix
scans (the sum of the last K values is ``P[n] - P[n-K]``, exact in integers); the "last valid
mid" and "last trade" look-backs are max-scans of indices. The decayed intensities round and
saturate at every step (``I <- sat(round_shift(I * d) + b)``): the composition of two steps
is not an affine map with integer rounding, so a scan would not reproduce the golden integers;
they run sequentially per symbol, split into independent runs at exact resets (a Δt bucket
whose decay factor is 0) — the honest answer for bit-exactness.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import warnings
from importlib import resources
from pathlib import Path

import numpy as np

from hftaccel.spec import book as book_spec
from hftaccel.spec import features as fs
from hftaccel.spec import itch as itch_spec
from hftaccel.spec.quant import FLOAT32_EXACT_BITS

__all__ = [
    "GpuUnavailableError", "GpuFallbackWarning", "DEVICES", "KERNEL_FILES",
    "kernel_dir", "kernel_names", "spec_defines", "compile_options", "emulation_library",
    "open_device", "mlp_program", "GpuPipeline", "features", "score", "run",
]

#: Device kinds of :func:`open_device`.
DEVICES = ("cuda", "emulated")
#: Kernel sources, one RawModule each.
KERNEL_FILES = ("features.cu", "mlp.cu")

#: Threads per block of the feature kernels (also the window tile) and elements per thread of
#: the max-scan; kernel tuning, passed to the kernels with the spec constants.
FEAT_BLOCK = 256
SCAN_ITEMS = 4
#: Limits of the MLP kernel's shared-memory staging (i32 words, entries).
MLP_MAX_WORDS = 4096
MLP_MAX_BIAS = 1024
MLP_MAX_SHIFTS = 1280
MLP_MAX_WIDTH = 256
MLP_MAX_LAYERS = 16
MLP_LAYER_FIELDS = 9
MLP_BLOCK = 128
#: Largest chunk: ext positions (records + 63 per symbol) and row offsets stay within int32.
MAX_CHUNK = 1 << 24
#: Records per chunk by default (device memory per chunk: about 400 bytes a record).
DEFAULT_CHUNK = 1 << 20

_HISTORY = fs.WINDOW_LONG - 1
_NQ = len(fs.WINDOW_QUANTITIES)
_NS = 6 + 4 * fs.OFI_LEVELS
_S_LAST_TRADE = 5
_S_PREV_ASK = 6 + 2 * fs.OFI_LEVELS
_EMPTY_ASK = 1 << 32


class GpuUnavailableError(RuntimeError):
    """No usable GPU path: CuPy, a CUDA device, the kernel compiler or model support missing."""


class GpuFallbackWarning(UserWarning):
    """The GPU backend fell back to the CPU (said once per reason and process)."""


_said: set[str] = set()


def _say_once(msg: str) -> None:
    if msg not in _said:
        _said.add(msg)
        warnings.warn(msg, GpuFallbackWarning, stacklevel=3)


# ----------------------------------------------------------------------------- sources

def kernel_dir() -> Path:
    """Folder of the ``.cu`` / ``.cuh`` sources (package ``hftaccel.kernels``)."""
    return Path(str(resources.files("hftaccel.kernels")))


def kernel_names(path: Path | None = None) -> list[str]:
    """``extern "C" __global__`` entry points of one ``.cu`` file (all of them when None)."""
    paths = [path] if path is not None else [kernel_dir() / f for f in KERNEL_FILES]
    names = []
    for p in paths:
        names += re.findall(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(', Path(p).read_text())
    return names


def spec_defines() -> dict[str, str]:
    """The ``-D`` definitions every kernel compile gets: spec constants and kernel limits.

    Returns
    -------
    dict[str, str]
        Macro name -> value (C integer literal).
    """
    col = fs.FEATURE_INDEX
    ks, kl = fs.WINDOW_SHORT, fs.WINDOW_LONG

    def rng(name):
        return fs.feature_min(name), fs.feature_max(name)

    for k in fs.WINDOWS:                       # the kernels treat each family as one format
        assert all(
            fs.FEATURE_NAMES[col[f"ofi_l1_k{k}"] + j] == nm for j, nm in enumerate(
                [f"ofi_l{m}_k{k}" for m in range(1, fs.OFI_LEVELS + 1)]
                + [f"tvol_k{k}", f"dmid_k{k}", f"rv_k{k}"]))
        assert rng(f"ofi_l{fs.OFI_LEVELS}_k{k}") == rng(f"ofi_l1_k{ks}")
        assert rng(f"tvol_k{k}") == rng(f"tvol_k{ks}") and rng(f"dmid_k{k}") == rng(f"dmid_k{ks}")
        assert rng(f"rv_k{k}") == rng(f"rv_k{ks}")
        assert fs.FEATURE_Q[f"dmid_k{k}"][1] == fs.FEATURE_Q[f"rv_k{k}"][1]
    assert fs.WINDOW_QUANTITIES[:fs.OFI_LEVELS] == tuple(
        f"ofi_l{m}" for m in range(1, fs.OFI_LEVELS + 1))
    assert fs.WINDOW_QUANTITIES[fs.OFI_LEVELS:] == ("tvol", "dmid2", "adm2")
    assert rng("imb_l1") == rng("imb_depth") and rng("intensity_buy") == rng("intensity_sell")
    spread_f = fs.FEATURE_Q["spread"][1]
    vals = {
        "HFT_SPEC_DEFINES": 1,
        "HFT_N_FEATURES": fs.N_FEATURES,
        "HFT_C_SPREAD": col["spread"], "HFT_C_IMB1": col["imb_l1"], "HFT_C_IMBD": col["imb_depth"],
        "HFT_C_MPM": col["microprice_mid"], "HFT_C_WIN_S": col[f"ofi_l1_k{ks}"],
        "HFT_C_WIN_L": col[f"ofi_l1_k{kl}"], "HFT_C_IBUY": col["intensity_buy"],
        "HFT_C_ISELL": col["intensity_sell"], "HFT_C_TAGE": col["t_since_trade"],
        "HFT_NQ": _NQ, "HFT_OFI_LEVELS": fs.OFI_LEVELS,
        "HFT_DEPTH_IMB_LEVELS": fs.DEPTH_IMB_LEVELS,
        "HFT_WINDOW_SHORT": ks, "HFT_WINDOW_LONG": kl,
        "HFT_LOG2_MANT_BITS": fs.LOG2_MANT_BITS, "HFT_LOG2_FRAC_BITS": fs.LOG2_FRAC_BITS,
        "HFT_IMB_ONE": fs.IMB_ONE, "HFT_IMB_INDEX_SHIFT": fs.IMB_INDEX_SHIFT,
        "HFT_IMB_TABLE_SIZE": fs.IMB_TABLE_SIZE,
        "HFT_TICK_RECIP": fs.TICK_RECIP, "HFT_TICK_RECIP_SHIFT": fs.TICK_RECIP_SHIFT,
        "HFT_DECAY_MIN_LOG2": fs.DECAY_MIN_LOG2, "HFT_DECAY_BUCKETS": fs.DECAY_BUCKETS,
        "HFT_DECAY_FRAC_BITS": fs.DECAY_FRAC_BITS,
        "HFT_INTENSITY_FRAC_BITS": fs.INTENSITY_FRAC_BITS,
        "HFT_TRADE_AGE_NONE": fs.TRADE_AGE_NONE,
        "HFT_SPREAD_FRAC": spread_f,
        "HFT_MPM_SHIFT": spread_f + fs.IMB_FRAC_BITS + 1 - fs.FEATURE_Q["microprice_mid"][1],
        "HFT_DM_FRAC": fs.FEATURE_Q[f"dmid_k{ks}"][1],
        "HFT_SIDE_BUY": itch_spec.SIDE_BUY, "HFT_SIDE_SELL": itch_spec.SIDE_SELL,
        "HFT_MT_E": ord(fs.TRADE_MESSAGE_TYPES[0]), "HFT_MT_C": ord(fs.TRADE_MESSAGE_TYPES[1]),
        "HFT_MT_P": ord(fs.TRADE_MESSAGE_TYPES[2]),
        "HFT_FLOAT32_EXACT_BITS": FLOAT32_EXACT_BITS,
        "HFT_FEAT_BLOCK": FEAT_BLOCK, "HFT_SCAN_ITEMS": SCAN_ITEMS,
        "HFT_MLP_MAX_WORDS": MLP_MAX_WORDS, "HFT_MLP_MAX_BIAS": MLP_MAX_BIAS,
        "HFT_MLP_MAX_SHIFTS": MLP_MAX_SHIFTS, "HFT_MLP_MAX_WIDTH": MLP_MAX_WIDTH,
        "HFT_MLP_MAX_PROG": 4 + MLP_LAYER_FIELDS * MLP_MAX_LAYERS,
        "HFT_MLP_LAYER_FIELDS": MLP_LAYER_FIELDS,
    }
    for macro, name in (("SPREAD", "spread"), ("IMB", "imb_l1"), ("MPM", "microprice_mid"),
                        ("OFI", f"ofi_l1_k{ks}"), ("TV", f"tvol_k{ks}"), ("DM", f"dmid_k{ks}"),
                        ("RV", f"rv_k{ks}"), ("IN", "intensity_buy"), ("TA", "t_since_trade")):
        lo, hi = rng(name)
        vals[f"HFT_{macro}_LO"] = lo
        vals[f"HFT_{macro}_HI"] = hi
    return {k: (f"({v}LL)" if abs(v) >= 1 << 31 else str(v)) for k, v in vals.items()}


def compile_options() -> list[str]:
    """Compiler options shared by NVRTC, nvcc and g++: ``-I`` the kernel folder, the ``-D``s."""
    return [f"-I{kernel_dir()}"] + [f"-D{k}={v}" for k, v in spec_defines().items()]


def _sources_digest() -> str:
    h = hashlib.sha256()
    for p in sorted(kernel_dir().glob("*.cu*")):
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    h.update(repr(sorted(spec_defines().items())).encode())
    return h.hexdigest()[:16]


def _build_root() -> Path:
    env = os.environ.get("HFTACCEL_BUILD_DIR")
    if env:
        return Path(env)
    repo = kernel_dir().parents[1]
    if (repo / "pyproject.toml").is_file():
        return repo / "build"
    return Path.home() / ".cache" / "hftaccel"


_EMU_FLAGS = ("-O2", "-std=c++17", "-shared", "-fPIC", "-fno-strict-aliasing")
_emu_lib = None


def emulation_library() -> ctypes.CDLL:
    """The kernels compiled for the CPU (g++ through ``hft_emu.cuh``), built once per source hash.

    Returns
    -------
    ctypes.CDLL
        Exports ``hftemu_<kernel>(const hftemu_cfg*, void** args)`` for every kernel.

    Raises
    ------
    GpuUnavailableError
        No C++ compiler, or the build failed (the message holds the compiler's output).
    """
    global _emu_lib
    if _emu_lib is not None:
        return _emu_lib
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        raise GpuUnavailableError("no C++ compiler (g++) for the kernel emulation")
    flags = _EMU_FLAGS
    digest = hashlib.sha256((_sources_digest() + " ".join(flags)).encode()).hexdigest()[:16]
    out = _build_root() / "gpu-emu" / digest
    lib = out / "libhftemu.so"
    if not lib.is_file():
        out.mkdir(parents=True, exist_ok=True)
        entry = "".join(f'#include "{f}"\n' for f in KERNEL_FILES)
        entry += "".join(f"HFT_EMU_EXPORT({k})\n" for k in kernel_names())
        # unique names: parallel test workers may build the same library at the same time
        fd, src = tempfile.mkstemp(dir=out, prefix="emu_entry_", suffix=".cpp")
        with os.fdopen(fd, "w") as fh:
            fh.write("// generated by hftaccel.backends.gpu: emulation entry points\n" + entry)
        fd, tmp = tempfile.mkstemp(dir=out, suffix=".so")
        os.close(fd)
        try:
            proc = subprocess.run([cxx, *flags, *compile_options(), src, "-o", tmp],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise GpuUnavailableError(
                    f"kernel emulation build failed:\n{proc.stderr[-4000:]}")
            os.replace(tmp, lib)
        finally:
            os.unlink(src)
            if os.path.exists(tmp):
                os.unlink(tmp)
    _emu_lib = ctypes.CDLL(str(lib))
    return _emu_lib


# ----------------------------------------------------------------------------- devices

class _HftemuCfg(ctypes.Structure):
    _fields_ = [("grid", ctypes.c_uint * 3), ("block", ctypes.c_uint * 3)]


_EMU_LOCK = threading.Lock()
_CTYPE = {np.dtype(np.int32): ctypes.c_int32, np.dtype(np.int64): ctypes.c_int64}


class _EmulatedDevice:
    """Device memory = NumPy arrays; launches run the g++-compiled kernels (synchronous)."""

    name = "emulated"
    xp = np

    def __init__(self):
        self.lib = emulation_library()
        self._fn = {k: getattr(self.lib, f"hftemu_{k}") for k in kernel_names()}
        for f in self._fn.values():
            f.restype = None
            f.argtypes = [ctypes.POINTER(_HftemuCfg), ctypes.c_void_p]

    def describe(self) -> dict:
        return {"device": "emulated", "name": "CPU emulation (g++, hft_emu.cuh)"}

    def h2d(self, slot, name, a):
        return np.array(a, copy=True, order="C")

    def d2h(self, slot, name, a):
        return a

    def to_host(self, a):
        return np.array(a, copy=True)

    def empty(self, shape, dtype):
        return np.empty(shape, dtype)

    def asarray(self, a):
        return np.array(a, copy=True, order="C")

    def launch(self, name, grid, block, args):
        # the emulator's fiber scheduler is process-global, and ctypes releases the GIL
        with _EMU_LOCK:
            self._launch(name, grid, block, args)

    def _launch(self, name, grid, block, args):
        keep = []
        for a in args:
            if isinstance(a, np.ndarray):
                keep.append(ctypes.c_void_p(a.ctypes.data))
            else:
                keep.append(_CTYPE[np.asarray(a).dtype](int(a)))
        argv = (ctypes.c_void_p * len(keep))(*[ctypes.addressof(k) for k in keep])
        cfg = _HftemuCfg((ctypes.c_uint * 3)(int(grid), 1, 1),
                         (ctypes.c_uint * 3)(int(block), 1, 1))
        self._fn[name](ctypes.byref(cfg), argv)

    def ordered(self):
        return contextlib.nullcontext()

    def record(self, slot):
        pass

    def wait(self, slot):
        pass


class _CudaDevice:
    """CuPy: RawModules from the .cu files, one non-blocking stream, pinned staging buffers."""

    name = "cuda"

    def __init__(self):
        try:
            import cupy as cp
            import cupyx
        except Exception as exc:  # ImportError, or a broken CUDA install under CuPy
            raise GpuUnavailableError(f"CuPy is not importable ({exc}); install the 'gpu' "
                                      "extra (cupy-cuda13x)") from exc
        try:
            n = cp.cuda.runtime.getDeviceCount()
        except Exception as exc:
            raise GpuUnavailableError(f"no CUDA device ({type(exc).__name__}: {exc})") from exc
        if n < 1:
            raise GpuUnavailableError("no CUDA device (0 devices)")
        self.cp, self.cupyx, self.xp = cp, cupyx, cp
        try:
            self.stream = cp.cuda.Stream(non_blocking=True)
            opts = ("-std=c++17", *compile_options())
            self._fn = {}
            for f in KERNEL_FILES:
                path = kernel_dir() / f
                mod = cp.RawModule(code=path.read_text(), options=opts)
                for k in kernel_names(path):
                    self._fn[k] = mod.get_function(k)
        except Exception as exc:
            raise GpuUnavailableError(f"CUDA kernels unavailable ({type(exc).__name__}: "
                                      f"{exc})") from exc
        self._pinned = {}
        self._events = {}

    def describe(self) -> dict:
        props = self.cp.cuda.runtime.getDeviceProperties(self.cp.cuda.Device().id)
        name = props["name"]
        return {"device": "cuda", "name": name.decode() if isinstance(name, bytes) else name,
                "compute_capability": f"{props['major']}.{props['minor']}"}

    def _pin(self, slot, name, shape, dtype):
        buf = self._pinned.get((slot, name))
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if buf is None or buf.nbytes < nbytes:
            buf = self.cupyx.empty_pinned(max(nbytes, 1), np.uint8)
            self._pinned[(slot, name)] = buf
        return buf[:nbytes].view(dtype).reshape(shape)

    def ordered(self):
        return self.stream

    def h2d(self, slot, name, a):
        a = np.ascontiguousarray(a)
        pinned = self._pin(slot, name, a.shape, a.dtype)
        np.copyto(pinned, a)
        with self.stream:
            d = self.cp.empty(a.shape, a.dtype)
        d.set(pinned, stream=self.stream)
        return d

    def d2h(self, slot, name, a):
        pinned = self._pin(slot, name + "@out", a.shape, a.dtype)
        a.get(stream=self.stream, out=pinned, blocking=False)
        return pinned

    def to_host(self, a):
        return a.get(stream=self.stream)       # waits for the stream

    def empty(self, shape, dtype):
        with self.stream:
            return self.cp.empty(shape, dtype)

    def asarray(self, a):
        with self.stream:
            return self.cp.asarray(a)

    def launch(self, name, grid, block, args):
        with self.stream:
            self._fn[name]((int(grid),), (int(block),), tuple(args))

    def record(self, slot):
        self._events[slot] = self.stream.record()

    def wait(self, slot):
        ev = self._events.pop(slot, None)
        if ev is not None:
            ev.synchronize()


def open_device(kind: str = "cuda"):
    """Open a device for the kernels.

    Parameters
    ----------
    kind : {"cuda", "emulated"}

    Raises
    ------
    ValueError
        Unknown ``kind``.
    GpuUnavailableError
        The device cannot be used (the message says why).
    """
    if kind == "cuda":
        return _CudaDevice()
    if kind == "emulated":
        return _EmulatedDevice()
    raise ValueError(f"device must be one of {DEVICES}, got {kind!r}")


# ----------------------------------------------------------------------------- model

def mlp_program(model) -> dict:
    """The MLP kernel's view of an :class:`hftaccel.golden.mlp.IntegerMLP`.

    Parameters
    ----------
    model : hftaccel.golden.mlp.IntegerMLP

    Returns
    -------
    dict
        ``prog`` (i32 program, see ``mlp.cu``), ``weights`` (i32 packed int8 words), ``bias``
        (i32), ``shifts`` (i32), ``n_in``, ``n_out``.

    Raises
    ------
    GpuUnavailableError
        The model's steps are not ``Requant, (Dense, Relu?, Requant?, Clip?)+`` with int8
        weights and int8 activations between layers, or exceed the kernel's limits.
    """
    from hftaccel.golden.mlp import Clip, Dense, Relu, Requant

    steps = list(model.steps)

    def bad(why):
        return GpuUnavailableError(f"model {model.source} not supported by the MLP kernel: {why}")

    if not steps or not isinstance(steps[0], Requant):
        raise bad("no input quantizer")
    n_in = model.n_inputs
    inp = steps[0]
    shifts = [np.broadcast_to(np.asarray(inp.shift, np.int64), (n_in,))]
    prog = [0, n_in, int(inp.lo), int(inp.hi)]
    if inp.lo < -128 or inp.hi > 127:
        raise bad("input activations wider than int8")
    words, biases = [], []
    n_w = n_b = 0
    n_s = n_in
    width = n_in
    i = 1
    layers = 0
    while i < len(steps):
        d = steps[i]
        if not isinstance(d, Dense):
            raise bad(f"step {d.node!r} is not a Dense layer where one is expected")
        i += 1
        relu = post = 0
        lo, hi = -(1 << 31), (1 << 31) - 1
        shift = np.zeros(d.weight.shape[0], np.int64)
        if i < len(steps) and isinstance(steps[i], Relu):
            relu, i = 1, i + 1
        if i < len(steps) and isinstance(steps[i], Requant):
            rq = steps[i]
            post, lo, hi, i = 1, int(rq.lo), int(rq.hi), i + 1
            shift = np.broadcast_to(np.asarray(rq.shift, np.int64), (d.weight.shape[0],))
        if i < len(steps) and isinstance(steps[i], Clip):
            post = post or 2
            lo, hi, i = max(lo, int(steps[i].lo)), min(hi, int(steps[i].hi)), i + 1
        w = np.asarray(d.weight, np.int64)
        b = np.asarray(d.bias, np.int64)
        out_w, in_w = w.shape
        if in_w != width:
            raise bad(f"layer {d.node!r} expects {in_w} inputs, gets {width}")
        if w.min(initial=0) < -128 or w.max(initial=0) > 127:
            raise bad(f"layer {d.node!r} weights are not int8")
        if b.min(initial=0) < -(1 << 31) or b.max(initial=0) >= 1 << 31:
            raise bad(f"layer {d.node!r} biases are not int32")
        if np.any(shift < -31) or np.any(shift > 62):
            raise bad(f"layer {d.node!r} requantization shift out of range")
        if out_w > MLP_MAX_WIDTH or in_w > MLP_MAX_WIDTH:
            raise bad(f"layer {d.node!r} wider than {MLP_MAX_WIDTH}")
        pad = np.zeros((out_w, -in_w % 4), np.int64)
        packed = np.concatenate([w, pad], axis=1).astype(np.int8)
        prog += [in_w, out_w, relu, post, lo, hi, n_w, n_b, n_s]
        words.append(np.ascontiguousarray(packed).view("<i4").reshape(-1))
        biases.append(b)
        shifts.append(shift)
        n_w += words[-1].size
        n_b += out_w
        n_s += out_w
        width = out_w
        layers += 1
        last = i >= len(steps)
        if not last and (post == 0 or lo < -128 or hi > 127):
            raise bad(f"layer {d.node!r} output is not requantized to int8")
    if layers == 0 or layers > MLP_MAX_LAYERS:
        raise bad(f"{layers} dense layers (1..{MLP_MAX_LAYERS} supported)")
    prog[0] = layers
    res = {"prog": np.asarray(prog, np.int64), "weights": np.concatenate(words),
           "bias": np.concatenate(biases), "shifts": np.concatenate(shifts),
           "n_in": n_in, "n_out": width}
    if (res["weights"].size > MLP_MAX_WORDS or res["bias"].size > MLP_MAX_BIAS
            or res["shifts"].size > MLP_MAX_SHIFTS):
        raise bad("model larger than the kernel's shared-memory staging")
    if n_in > MLP_MAX_WIDTH:
        raise bad(f"more than {MLP_MAX_WIDTH} inputs")
    for k in ("prog", "bias", "shifts"):
        v = res[k]
        if v.size and (v.min() < -(1 << 31) or v.max() >= 1 << 31):
            raise bad(f"{k} do not fit int32")
        res[k] = v.astype(np.int32)
    res["weights"] = res["weights"].astype(np.int32)
    return res


# ----------------------------------------------------------------------------- pipeline

def _i32(v):
    return np.int32(v)


def _blocks(n, block):
    return max((int(n) + block - 1) // block, 1)


class GpuPipeline:
    """Features (and MLP logits) of book record streams on a device, state kept across calls.

    Like :class:`hftaccel.golden.features.FeatureEngine`, per-symbol state (previous levels,
    the last ``WINDOW_LONG - 1`` window values, last mid, last trade, intensities) persists
    between :meth:`run` calls and between the chunks of one call, on the device.

    Parameters
    ----------
    device : str or device object
        ``"cuda"`` or ``"emulated"`` (see :func:`open_device`).
    chunk_records : int
        Records per chunk.
    """

    def __init__(self, device="cuda", *, chunk_records: int = DEFAULT_CHUNK):
        if not isinstance(chunk_records, int) or not 1 <= chunk_records <= MAX_CHUNK:
            raise ValueError(f"chunk_records must be an integer in [1, {MAX_CHUNK}], got "
                             f"{chunk_records!r}")
        self.dev = open_device(device) if isinstance(device, str) else device
        self.chunk_records = chunk_records
        self._slot_of = np.full(book_spec.MAX_LOCATES, -1, np.int32)
        self._n_slots = 0
        self._cap = 0
        self._st = self._ring = None
        self._grow(16)
        self._log2 = self.dev.asarray(np.asarray(fs.LOG2_MANT_TABLE, np.int32))
        self._tanh = self.dev.asarray(np.asarray(fs.IMB_TANH_TABLE, np.int32))
        self._decay = self.dev.asarray(np.asarray(fs.DECAY_TABLE, np.int32))
        zero = np.flatnonzero(np.asarray(fs.DECAY_TABLE) == 0)
        self._reset_bucket = int(zero[0]) if zero.size else -1
        self._anom = self.dev.asarray(np.zeros(2, np.uint64))
        self._mlp_key = None
        self._mlp = None
        self.n_records = 0

    @property
    def device(self) -> str:
        return self.dev.name

    @property
    def anomalies(self) -> dict:
        """Counts of :data:`hftaccel.golden.features.ANOMALY_KINDS` seen so far."""
        from hftaccel.golden.features import ANOMALY_KINDS

        a = self.dev.to_host(self._anom)
        return {k: int(v) for k, v in zip(ANOMALY_KINDS, a)}

    def _grow(self, need: int) -> None:
        cap = max(self._cap, 16)
        while cap < need:
            cap *= 2
        if cap == self._cap:
            return
        st = np.zeros((cap, _NS), np.int64)
        st[:, _S_LAST_TRADE] = -1
        st[:, _S_PREV_ASK:_S_PREV_ASK + fs.OFI_LEVELS] = _EMPTY_ASK
        st_d = self.dev.asarray(st)
        ring_d = self.dev.asarray(np.zeros((cap, _HISTORY, _NQ), np.int64))
        if self._st is not None and self._n_slots:
            with self.dev.ordered():              # after the kernels already queued
                st_d[:self._n_slots] = self._st[:self._n_slots]
                ring_d[:self._n_slots] = self._ring[:self._n_slots]
        self._st, self._ring, self._cap = st_d, ring_d, cap

    def _set_model(self, model) -> None:
        if self._mlp_key is model:
            return
        p = mlp_program(model)
        if p["n_in"] != fs.N_FEATURES:
            raise GpuUnavailableError(f"model {model.source} takes {p['n_in']} inputs, the "
                                      f"features are {fs.N_FEATURES}")
        self._mlp = {k: (self.dev.asarray(v) if isinstance(v, np.ndarray) else v)
                     for k, v in p.items()}
        self._mlp_key = model

    def run(self, records: np.ndarray, model=None) -> tuple[np.ndarray, np.ndarray | None]:
        """Features (and logits) after every record, advancing the per-symbol state.

        Parameters
        ----------
        records : np.ndarray, shape (n,), dtype ``book_record_dtype(depth)``, depth >= 5
        model : hftaccel.golden.mlp.IntegerMLP, optional
            When given, its logits are computed on the device from the features (fused path).

        Returns
        -------
        features : np.ndarray, int32, shape (n, N_FEATURES)
        logits : np.ndarray, int32, shape (n, n_outputs), or None without a model

        Raises
        ------
        TypeError, ValueError
            As :meth:`hftaccel.golden.features.FeatureEngine.update`.
        GpuUnavailableError
            The model cannot run on the MLP kernel.
        """
        from hftaccel.golden.features import _check_records

        _check_records(records)
        if model is not None:
            self._set_model(model)
        n = records.shape[0]
        feats = np.zeros((n, fs.N_FEATURES), fs.FEATURE_DTYPE)
        logits = None if model is None else np.zeros((n, self._mlp["n_out"]), np.int32)
        pending = {}
        starts = list(range(0, n, self.chunk_records))
        for k, start in enumerate(starts):
            slot = k % 2
            self.dev.wait(slot)                       # this slot's buffers are free again
            self._collect(pending.pop(slot, None), feats, logits)
            stop = min(start + self.chunk_records, n)
            pending[slot] = self._chunk(slot, records[start:stop], start, model is not None)
            self.dev.record(slot)
        for slot in sorted(pending):
            self.dev.wait(slot)
            self._collect(pending[slot], feats, logits)
        self.n_records += n
        return feats, logits

    @staticmethod
    def _collect(job, feats, logits) -> None:
        if job is None:
            return
        start, stop, f, lg = job
        feats[start:stop] = f
        if lg is not None:
            logits[start:stop] = lg

    def _chunk(self, slot, rc: np.ndarray, start: int, with_model: bool):
        dev = self.dev
        n = rc.shape[0]
        loc = rc["stock_locate"]
        u = np.unique(loc)
        new = u[self._slot_of[u] < 0]
        if new.size:
            self._grow(self._n_slots + new.size)
            self._slot_of[new] = np.arange(self._n_slots, self._n_slots + new.size,
                                           dtype=np.int32)
            self._n_slots += new.size
        perm = np.argsort(loc, kind="stable").astype(np.int32)
        sl = loc[perm]
        heads = np.flatnonzero(np.r_[True, sl[1:] != sl[:-1]])
        nseg = heads.size
        seg_start = np.r_[heads, n].astype(np.int32)
        seg_slot = self._slot_of[sl[heads]].astype(np.int32)
        seg_of = np.repeat(np.arange(nseg, dtype=np.int32), np.diff(seg_start))
        m = n + _HISTORY * nseg
        dt = rc.dtype
        lay = np.array([dt.itemsize, dt.fields["timestamp"][1], dt.fields["shares"][1],
                        dt.fields["msg_type"][1], dt.fields["side"][1], dt.fields["bid_price"][1],
                        dt.fields["bid_shares"][1], dt.fields["ask_price"][1],
                        dt.fields["ask_shares"][1]], np.int32)

        d_rec = dev.h2d(slot, "rec", np.ascontiguousarray(rc).view(np.uint8))
        d_lay = dev.h2d(slot, "lay", lay)
        d_perm = dev.h2d(slot, "perm", perm)
        d_seg_of = dev.h2d(slot, "seg_of", seg_of)
        d_seg_start = dev.h2d(slot, "seg_start", seg_start)
        d_seg_slot = dev.h2d(slot, "seg_slot", seg_slot)
        out = dev.empty((n, fs.N_FEATURES), np.int32)
        bucket = dev.empty(n, np.int32)
        # window values, mid2, last-valid-mid index, timestamp, last-trade index, record index
        ext = tuple(dev.empty(shape, dtype) for shape, dtype in (
            ((m, _NQ), np.int64), (m, np.int64), (m, np.int32), (m, np.int64), (m, np.int32),
            (m, np.int32)))
        ext_v, ext_mid2, ext_midx, ext_trade, ext_tidx, ext_elem = ext
        B = FEAT_BLOCK

        dev.launch("hft_feat_history", _blocks(nseg * _HISTORY, B), B,
                   (_i32(nseg), d_seg_start, d_seg_slot, self._st, self._ring, *ext))
        dev.launch("hft_feat_point", _blocks(n, B), B,
                   (_i32(n), d_rec, d_lay, d_perm, d_seg_of, d_seg_start, d_seg_slot, self._st,
                    self._log2, self._tanh, out, *ext, bucket, self._anom))
        tile = B * SCAN_ITEMS
        nb = _blocks(m, tile)
        agg = dev.empty(nb, np.int32)
        for arr in (ext_midx, ext_tidx):
            dev.launch("hft_scan_max_block", nb, B, (np.int64(m), arr, agg))
            dev.launch("hft_scan_max_carry", 1, B, (_i32(nb), agg))
            dev.launch("hft_scan_max_apply", _blocks(m, B), B, (np.int64(m), arr, agg))
        dev.launch("hft_feat_mid", _blocks(n, B), B,
                   (_i32(n), d_perm, d_seg_of, d_seg_start, ext_mid2, ext_midx, ext_trade,
                    ext_tidx, ext_v, out))
        dev.launch("hft_feat_windows", _blocks(m, B), B,
                   (np.int64(m), ext_v, ext_elem, d_perm, out))
        dev.launch("hft_feat_intensity", _blocks(n, B), B,
                   (_i32(n), d_rec, d_lay, d_perm, d_seg_of, d_seg_start, d_seg_slot, self._st,
                    bucket, self._decay, _i32(self._reset_bucket), out))
        dev.launch("hft_feat_carry", _blocks(nseg, B), B,
                   (_i32(nseg), d_rec, d_lay, d_perm, d_seg_start, d_seg_slot, ext_v, ext_mid2,
                    ext_midx, ext_trade, ext_tidx, out, self._st, self._ring))
        lg = None
        if with_model:
            p = self._mlp
            d_logits = dev.empty((n, p["n_out"]), np.int32)
            dev.launch("hft_mlp_int8", min(_blocks(n, MLP_BLOCK), 4096), MLP_BLOCK,
                       (_i32(n), out, _i32(fs.N_FEATURES), d_logits, p["prog"],
                        _i32(p["prog"].size), p["weights"], _i32(p["weights"].size), p["bias"],
                        _i32(p["bias"].size), p["shifts"], _i32(p["shifts"].size)))
            lg = dev.d2h(slot, "logits", d_logits)
        f = dev.d2h(slot, "features", out)
        return start, start + n, f, lg


def features(records: np.ndarray, *, device: str = "cuda",
             chunk_records: int = DEFAULT_CHUNK) -> np.ndarray:
    """Features of a whole record stream from reset state, on ``device`` (no fallback).

    Returns
    -------
    np.ndarray, int32, shape (n, N_FEATURES)
        Equal to :func:`hftaccel.golden.features.compute_features`.
    """
    return GpuPipeline(device, chunk_records=chunk_records).run(records)[0]


def score(records: np.ndarray, model, *, device: str = "cuda",
          chunk_records: int = DEFAULT_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Features and MLP logits of a record stream on ``device`` (no fallback).

    Returns
    -------
    features : np.ndarray, int32, shape (n, N_FEATURES)
    logits : np.ndarray, int32, shape (n, n_outputs)
        Equal to ``model.run(features)``.
    """
    return GpuPipeline(device, chunk_records=chunk_records).run(records, model)


def run(path=None, *, strict: bool = False, device: str | None = None,
        chunk_records: int = DEFAULT_CHUNK, **kwargs):
    """Replay ``path`` with features and scores on the GPU; the rest as :func:`cpu.run`.

    Parameters
    ----------
    path, **kwargs
        As :func:`hftaccel.backends.cpu.run` (``lenient``, ``depth``, ``model``,
        ``risk_config``, ``threshold_logit``, ``kill_switch``, ``chunk_events``,
        ``chunk_bytes``, ``progress``, ``sink``, ``keep``, ``stop``): the same chunked reader
        and streaming loop, with the features and logits of each step on the device.
    strict : bool
        Raise :class:`GpuUnavailableError` when the GPU path cannot run, instead of saying so
        once (:class:`GpuFallbackWarning`) and replaying on the CPU backend.
    device : {"cuda", "emulated"}, optional
        Default: ``$HFTACCEL_GPU_DEVICE`` or ``"cuda"``.
    chunk_records : int
        Book records per device chunk.

    Returns
    -------
    hftaccel.backends.cpu.RunResult
        The CPU backend's summary with ``backend: "gpu"``, bit-identical otherwise (timings
        aside); ``extra["gpu"]`` holds the device description. After a fallback the summary is
        the CPU backend's (``backend: "cpu"``) and ``extra["gpu"]`` says why.

    Raises
    ------
    GpuUnavailableError
        ``strict`` and no usable GPU path.
    """
    from hftaccel.backends import cpu

    kind = device or os.environ.get("HFTACCEL_GPU_DEVICE") or "cuda"
    try:
        from hftaccel.golden import mlp

        dev = open_device(kind)
        model_path = kwargs.get("model")
        mlp_program(mlp.load(Path(model_path) if model_path is not None else cpu.default_model()))
    except GpuUnavailableError as exc:
        if strict:
            raise
        _say_once(f"GPU backend unavailable, running on the CPU backend: {exc}")
        res = cpu.run(path, **kwargs)
        res.extra["gpu"] = {"fallback": str(exc)}
        return res

    # one pipeline per replay, fed step by step: its per-symbol state starts from reset like
    # the golden FeatureEngine's and carries across the chunks of the streaming replay
    infer = GpuPipeline(dev, chunk_records=chunk_records).run

    res = cpu.run(path, infer=infer, **kwargs)
    res.summary["backend"] = "gpu"
    res.extra["gpu"] = dev.describe()
    return res
