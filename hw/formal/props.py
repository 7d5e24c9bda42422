"""Building blocks of the formal harnesses: free inputs, past values, the stream rules.

A harness is an Elaboratable with no ports, in the ``sync`` domain of the top that
:func:`~.sby.run_sby` puts around it (reset tied off: every register starts at its ``init``
value, as after a reset; the clock is the top's one port), the device under test as a submodule, every
input of the device an ``AnySeq`` (free every cycle) or ``AnyConst`` (free once), assumptions on
what the environment may do and assertions on what the device must.
"""

from __future__ import annotations

from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Assert, Assume, Signal, Value

__all__ = ["harness_domain", "past", "free", "free_const", "stream_source_rules",
           "stream_sink_rules"]


def harness_domain(m) -> Signal:
    """A 1-bit register of module ``m`` that is 0 in the first cycle, 1 after. (The ``sync``
    domain itself, its reset tied off, comes from :func:`hw.formal.sby.run_sby`'s top.)"""
    started = Signal(name="f_started")
    m.d.sync += started.eq(1)
    return started


def past(m, value, name: str = "f_past") -> Signal:
    """A register holding ``value`` of the previous cycle (its init value in the first)."""
    value = Value.cast(value)
    reg = Signal(value.shape(), name=name)
    m.d.sync += reg.eq(value)
    return reg


def free(m, shape, name: str = "f_any") -> Signal:
    """A signal free in every cycle."""
    s = Signal(shape, name=name)
    m.d.comb += s.eq(AnySeq(Value.cast(s).shape()))
    return s


def free_const(m, shape, name: str = "f_const") -> Signal:
    """A signal free in the first cycle and constant after."""
    s = Signal(shape, name=name)
    m.d.comb += s.eq(AnyConst(Value.cast(s).shape()))
    return s


def _rules(m, started, port, check, what):
    """``check`` (Assert or Assume) the AXI-Stream source rules on ``port``: once ``valid``
    is high and not taken, ``valid`` stays high and the payload stays the same."""
    held = past(m, port.valid & ~port.ready, f"f_{what}_held")
    pay = past(m, Value.cast(port.payload), f"f_{what}_payload")
    m.d.comb += check(~(started & held) | port.valid, f"{what}: valid dropped before ready")
    m.d.comb += check(~(started & held) | (Value.cast(port.payload) == pay),
                      f"{what}: payload changed while valid & ~ready")


def stream_source_rules(m, started, port, name: str):
    """Assert the rules on a stream the device drives (its output)."""
    _rules(m, started, port, Assert, name)


def stream_sink_rules(m, started, port, name: str):
    """Assume the rules of the environment on a stream the device receives (its input)."""
    _rules(m, started, port, Assume, name)
