"""Payload layouts and small helpers shared by the packet-stream stages of the gateware.

Two kinds of stream run through the front end:

* **Packet streams** (Ethernet frames, UDP payloads): 64-bit beats, byte lane ``i`` of ``data``
  (bits ``8*i .. 8*i+7``) carries byte ``8*k + i`` of the packet in beat ``k`` (AXI4-Stream byte
  order). ``keep`` has one bit per lane; every beat but the last is full and the last one's
  ``keep`` is contiguous from lane 0 (``0b00000111`` = 3 bytes). ``last`` marks the final beat;
  ``abort`` (only meaningful with ``last``) says the packet was cut short upstream, so a consumer
  drops whatever is incomplete. Per-packet fields (addresses, ports) live in ``meta`` and are
  held constant over all beats of a packet, apart from the per-beat ``data``/``keep``/``last``,
  as LiteEth does.
* **Message streams** (one MoldUDP64 message block, i.e. one ITCH message, per beat): the whole
  message arrives in one wide beat so that the ITCH parser can decode it in one cycle and keep
  line rate on back-to-back minimum-size messages; see :func:`message_layout`.

Source: Amaranth ``lib.stream`` / ``lib.data`` conventions; AXI4-Stream byte order (ARM IHI 0051).
"""

from amaranth.hdl import Cat, Const, Signal, unsigned
from amaranth.lib import data

__all__ = [
    "BEAT_BYTES",
    "packet_layout",
    "message_layout",
    "keep_count",
    "keep_mask",
    "beat_byte",
    "be_value",
    "skid_output",
]

#: Bytes per beat of a packet stream (64-bit data path).
BEAT_BYTES = 8


def packet_layout(meta: data.Layout | None = None) -> data.StructLayout:
    """Beat layout of a packet stream.

    Parameters
    ----------
    meta : amaranth.lib.data.Layout, optional
        Per-packet fields, constant over the beats of one packet; ``None`` for none.

    Returns
    -------
    amaranth.lib.data.StructLayout
        ``data`` (64 bits, lane i = bits 8i..8i+7), ``keep`` (8 bits, one per lane), ``last``
        (1), ``abort`` (1, valid with ``last``: packet cut short upstream) and ``meta``.
    """
    members = {
        "data": unsigned(8 * BEAT_BYTES),
        "keep": unsigned(BEAT_BYTES),
        "last": unsigned(1),
        "abort": unsigned(1),
    }
    if meta is not None:
        if not isinstance(meta, data.Layout):
            raise TypeError(f"meta must be an amaranth.lib.data.Layout, not {meta!r}")
        members["meta"] = meta
    return data.StructLayout(members)


def message_layout(max_bytes: int, meta: data.Layout | None = None) -> data.StructLayout:
    """Beat layout of a message stream: one whole message per beat.

    Parameters
    ----------
    max_bytes : int
        Capacity of ``data``, bytes (the longest message the consumer decodes).
    meta : amaranth.lib.data.Layout, optional
        Per-message fields (sequence number ...).

    Returns
    -------
    amaranth.lib.data.StructLayout
        ``data`` (array of ``max_bytes`` bytes, element 0 = first byte of the message),
        ``length`` (16 bits: the message's true length in bytes; bytes at and beyond
        ``min(length, max_bytes)`` are don't-care, a longer message is cut to ``max_bytes``)
        and ``meta``.

    Raises
    ------
    ValueError
        ``max_bytes`` is not a positive integer.
    """
    if not isinstance(max_bytes, int) or max_bytes <= 0:
        raise ValueError(f"max_bytes must be a positive integer, not {max_bytes!r}")
    members = {
        "data": data.ArrayLayout(unsigned(8), max_bytes),
        "length": unsigned(16),
    }
    if meta is not None:
        members["meta"] = meta
    return data.StructLayout(members)


def keep_count(keep):
    """Number of valid bytes of a beat whose ``keep`` is contiguous from lane 0 (0..8)."""
    n = Const(0, range(BEAT_BYTES + 1))
    for i in range(BEAT_BYTES):
        n = n + keep[i]
    return n


def keep_mask(n):
    """``keep`` value with the low ``n`` lanes set (``n`` in 0..8)."""
    return (Const((1 << BEAT_BYTES) - 1, BEAT_BYTES) << n)[BEAT_BYTES:2 * BEAT_BYTES]


def beat_byte(value, lane: int):
    """Byte lane ``lane`` (0 = first byte on the wire) of a 64-bit beat value."""
    return value[8 * lane:8 * lane + 8]


def be_value(byte_values):
    """Big-endian integer from a sequence of byte values (first element most significant)."""
    return Cat(*reversed(list(byte_values)))


def skid_output(m, o, payload, valid, sk_valid):
    """Registered stream output ``o`` behind a one-entry skid buffer, for pipelines that advance
    together on ``~sk_valid`` (so their enable comes from a register, not from ``o.ready``).

    ``payload`` / ``valid`` are the beat leaving the pipeline this cycle; when ``o`` is full
    and not taken, the beat goes to the skid register and ``sk_valid`` (a 1-bit register of the
    caller, its stall) rises until ``o`` takes it. Adds the logic to module ``m``."""
    sk = Signal(payload.shape(), name="sk")
    o_free = ~o.valid | o.ready
    with m.If(o_free):
        with m.If(sk_valid):
            m.d.sync += [o.payload.eq(sk), o.valid.eq(1), sk_valid.eq(0)]
        with m.Else():
            m.d.sync += [o.payload.eq(payload), o.valid.eq(valid)]
    with m.Elif(~sk_valid & valid):
        m.d.sync += [sk.eq(payload), sk_valid.eq(1)]
