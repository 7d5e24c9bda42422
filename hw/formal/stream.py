"""Stream handshake proofs: the skid buffer helper, and the stream ports of every stage.

* :class:`SkidHarness` proves :func:`hftaccel.rtl.stream.skid_output` (the registered, skid
  buffered output of the risk gate, the order table, the best-level windows and the hash
  tables) by k-induction: the output follows the AXI-Stream source rules, and the sequence of
  transfers out is exactly the sequence of beats the pipeline produced (nothing lost,
  duplicated or reordered), under any ready pattern.
* :class:`StageHandshake` wraps one stage of :mod:`hftaccel.rtl`: every input stream is
  driven by an environment that follows the rules (assumed), every output stream must follow
  them (asserted), other inputs are free constants (configuration is static while data flows),
  for every input sequence up to the bound.
"""

from __future__ import annotations

from amaranth.hdl import Array, Assert, Assume, Elaboratable, Module, Signal
from amaranth.lib import stream as lstream
from amaranth.lib import wiring

from hftaccel.rtl import stream as rtl_stream

from .props import (free, free_const, harness_domain, past, stream_sink_rules,
                    stream_source_rules)

__all__ = ["SkidHarness", "StageHandshake", "stream_ports"]


def _spy_skid(m, o, payload, valid, sk_valid):
    """Call ``skid_output`` and return the skid register it made (for the induction
    invariant: the harness must be able to say what the skid register holds)."""
    made = []
    real = rtl_stream.Signal

    def spy(*args, **kwargs):
        s = real(*args, **kwargs)
        made.append(s)
        return s
    rtl_stream.Signal = spy
    try:
        rtl_stream.skid_output(m, o, payload, valid, sk_valid)
    finally:
        rtl_stream.Signal = real
    (sk,) = made
    return sk


class SkidHarness(Elaboratable):
    """A ``stages``-deep pipeline that advances on ``~sk_valid`` (as the risk gate's does) in
    front of :func:`~hftaccel.rtl.stream.skid_output`, fed by a free source and drained by a
    free sink. A scoreboard numbers the beats accepted at the input; every beat leaving the
    output must carry the next number, and the beats in flight are counted exactly.

    Parameters
    ----------
    stages : int
        Pipeline registers before the output.
    width : int
        Payload bits (the scoreboard's sequence numbers wrap at ``2**width``).
    """

    def __init__(self, *, stages: int = 2, width: int = 4):
        self.stages, self.width = stages, width

    def elaborate(self, platform):
        m = Module()
        started = harness_domain(m)
        w, n = self.width, self.stages
        i = lstream.Signature(w).flip().create(path=("i",))
        o = lstream.Signature(w).create(path=("o",))
        m.d.comb += [i.valid.eq(free(m, 1, "f_i_valid")), i.payload.eq(free(m, w, "f_i_data")),
                     o.ready.eq(free(m, 1, "f_o_ready"))]
        stream_sink_rules(m, started, i, "i")
        sk_valid = Signal(name="skid_valid")
        adv = ~sk_valid
        m.d.comb += i.ready.eq(adv)
        vs = [Signal(name=f"s{k}_valid") for k in range(n)]
        ds = [Signal(w, name=f"s{k}_data") for k in range(n)]
        with m.If(adv):
            m.d.sync += [vs[0].eq(i.valid), ds[0].eq(i.payload)]
            for k in range(1, n):
                m.d.sync += [vs[k].eq(vs[k - 1]), ds[k].eq(ds[k - 1])]
        sk = _spy_skid(m, o, ds[-1], vs[-1] & adv, sk_valid)
        stream_source_rules(m, started, o, "o")

        # scoreboard: the source sends 0, 1, 2, ... (mod 2**w); the sink must see the same
        n_in, n_out = Signal(w, name="f_n_in"), Signal(w, name="f_n_out")
        m.d.comb += Assume(~i.valid | (i.payload == n_in))
        with m.If(i.valid & i.ready):
            m.d.sync += n_in.eq(n_in + 1)
        with m.If(o.valid & o.ready):
            m.d.sync += n_out.eq(n_out + 1)
            m.d.comb += Assert(o.payload == n_out)
        # induction invariant: what is in flight, in order from the output back
        slots = [(o.valid, o.payload), (sk_valid, sk)] + list(zip(reversed(vs), reversed(ds)))
        inflight = sum(v.as_unsigned() for v, _ in slots)
        cap = len(slots)
        m.d.comb += Assert(((n_in - n_out) % (1 << w)) == inflight)
        m.d.comb += Assert(cap < (1 << w))
        # the k-th valid slot (counting from the output) holds n_out + k
        k = Signal(range(cap + 1), name="f_k0")
        rank = 0
        for v, d in slots:
            m.d.comb += Assert(~v | (d == ((n_out + rank) % (1 << w))))
            rank = rank + v.as_unsigned()
        # the skid register is only used while the output is full
        m.d.comb += Assert(~sk_valid | o.valid)
        del k
        return m


def stream_ports(component) -> dict:
    """``{name: (flow, signature)}`` of a component's stream ports."""
    out = {}
    for name, member in component.signature.members.items():
        if member.is_port:
            continue
        sig = member.signature
        inner = sig.flip() if isinstance(sig, wiring.FlippedSignature) else sig
        if isinstance(inner, lstream.Signature):
            out[name] = (member.flow, inner)
    return out


class StageHandshake(Elaboratable):
    """The stream rules on every stream port of one stage.

    Parameters
    ----------
    make : callable
        Returns the stage (a ``wiring.Component``), e.g. ``lambda: RiskGate(num_locates=2)``.
    """

    def __init__(self, make):
        self.make = make

    def elaborate(self, platform):
        m = Module()
        started = harness_domain(m)
        m.submodules.dut = dut = self.make()
        for name, member in dut.signature.members.items():
            port = getattr(dut, name)
            if member.is_port:
                if member.flow == wiring.In:
                    m.d.comb += port.eq(free_const(m, port.shape(), f"f_{name}"))
                continue
            sig = member.signature
            inner = sig.flip() if isinstance(sig, wiring.FlippedSignature) else sig
            if isinstance(inner, lstream.Signature):
                if member.flow == wiring.In:      # the stage receives: drive it by the rules
                    m.d.comb += [port.valid.eq(free(m, 1, f"f_{name}_valid")),
                                 port.payload.eq(free(m, port.payload.shape(), f"f_{name}_p"))]
                    stream_sink_rules(m, started, port, name)
                else:
                    m.d.comb += port.ready.eq(free(m, 1, f"f_{name}_ready"))
                    stream_source_rules(m, started, port, name)
            else:
                _drive_free(m, sig, port, member.flow, name)
        return m


def _drive_free(m, sig, port, flow, path):
    """Free constants on every input port of a non-stream interface (recursively)."""
    for name, member in sig.members.items():
        sub = getattr(port, name)
        f = member.flow if flow == wiring.Out else member.flow.flip()
        if member.is_port:
            if f == wiring.In:
                m.d.comb += sub.eq(free_const(m, sub.shape(), f"f_{path}_{name}"))
        else:
            _drive_free(m, member.signature, sub, f, f"{path}_{name}")
