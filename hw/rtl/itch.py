"""ITCH 5.0 parser: one whole message in, one decoded-message struct out, one cycle later.

Source: NASDAQ TotalView-ITCH 5.0 specification, section 4. Field offsets and sizes are read
from :data:`hftaccel.spec.itch.LAYOUTS`; the decoded struct mirrors
:data:`hftaccel.spec.itch.ORDER_EVENT_DTYPE` (the order book's input record) with the fields
the System Event (S), Stock Trading Action (H) and Stock Directory (R) messages add. The
mapping of message fields onto event fields is the one ``hftaccel.feeds.itch.order_events``
applies (:data:`FIELD_ALIASES`).
"""

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hftaccel.spec import itch as spec

from .moldudp64 import MAX_MESSAGE, MESSAGE_META
from .stream import be_value, message_layout

__all__ = ["DECODED_TYPES", "FIELD_ALIASES", "DECODED_LAYOUT", "LEFT_OUT", "SKIP_REASONS",
           "ItchParser"]

#: Message types decoded into :data:`DECODED_LAYOUT`: every book-affecting type plus S, H, R.
DECODED_TYPES = spec.BOOK_MESSAGE_TYPES + "SHR"
#: (message type, spec field) -> decoded field, where the names differ (as ``order_events``).
FIELD_ALIASES = {
    ("E", "executed_shares"): "shares",
    ("C", "executed_shares"): "shares",
    ("X", "cancelled_shares"): "shares",
    ("C", "execution_price"): "price",
    ("U", "original_order_ref"): "order_ref",
}
#: Reasons a message is counted and not decoded (counter ``skipped_<reason>`` each).
SKIP_REASONS = ("other", "unknown_type", "bad_length", "zero_length")


def _decoded_layout() -> data.StructLayout:
    members = {}
    for name in spec.ORDER_EVENT_DTYPE.names:
        if name.startswith("_"):
            continue
        members[name] = unsigned(8 * spec.ORDER_EVENT_DTYPE.fields[name][0].itemsize)
    header = {f[0] for f in spec.HEADER_FIELDS}
    for t in "SHR":
        for f in spec.LAYOUTS[t].fields:
            if f.name not in header and f.name not in members:
                members[f.name] = unsigned(8 * f.size)
    return data.StructLayout(members)


#: Decoded message: ORDER_EVENT_DTYPE's fields (same names and widths; ``msg_type`` and
#: ``side`` ASCII, ``printable`` 1 unless a C message says otherwise) plus S/H/R fields.
#: Integer fields are numbers; alpha fields wider than one byte hold their bytes with the
#: first character in bits 0..7 (the little-endian view of the ASCII bytes).
DECODED_LAYOUT = _decoded_layout()


def _field_map():
    """``{decoded field: [(msg type, spec Field), ...]}`` and the per-type left-out fields."""
    fmap = {}
    left_out = {}
    for t in DECODED_TYPES:
        for f in spec.LAYOUTS[t].fields:
            if f.name == "msg_type":
                continue
            target = FIELD_ALIASES.get((t, f.name), f.name)
            if target == "printable":
                continue                    # a flag, computed below
            if target in DECODED_LAYOUT.members:
                fmap.setdefault(target, []).append((t, f))
            else:
                left_out.setdefault(t, []).append(f.name)
    return fmap, left_out


_FIELD_MAP, LEFT_OUT = _field_map()


class ItchParser(wiring.Component):
    """Decode ITCH 5.0 messages (one a beat) into :data:`DECODED_LAYOUT` records.

    A message of a type in :data:`DECODED_TYPES` with its specified length is decoded and
    presented on ``o`` the cycle after it is accepted; every other message is counted by reason
    (:data:`SKIP_REASONS`: another ITCH type, a byte that is no ITCH type, a length that
    disagrees with the type's, an empty message) and dropped. One message a cycle. The output
    register has a skid register behind it, so ``i.ready`` is a register (low only while a
    record waits in the skid) and never depends combinationally on ``o.ready``. Fields of
    decoded types that the record has no room for are listed in :data:`LEFT_OUT` (match
    numbers, attribution, ...).

    Parameters
    ----------
    max_message : int
        Byte capacity of the input beats (at least the longest ITCH message).

    Attributes
    ----------
    i : In(stream.Signature(message_layout(max_message, MESSAGE_META)))
        Messages with their MoldUDP64 sequence number.
    o : Out(stream.Signature(DECODED_LAYOUT))
        Decoded records; ``seq`` is the message's sequence number.
    decoded : Out(32)
        Records delivered.
    skipped_<reason> : Out(32)
        Messages skipped, one counter per :data:`SKIP_REASONS` entry.
    latency : int
        Cycles from a message accepted on ``i`` to its record on ``o`` (no back-pressure): 1.
    ii : int
        Cycles per message: 1 (a message can be accepted every cycle).
    """

    latency = 1
    ii = 1

    def __init__(self, *, max_message: int = MAX_MESSAGE):
        longest = max(spec.MESSAGE_LENGTH.values())
        if not isinstance(max_message, int) or max_message < longest:
            raise ValueError(f"max_message must be an integer >= {longest} (the longest "
                             f"ITCH 5.0 message), not {max_message!r}")
        self._cap = max_message
        members = {
            "i": In(stream.Signature(message_layout(max_message, MESSAGE_META))),
            "o": Out(stream.Signature(DECODED_LAYOUT)),
            "decoded": Out(32),
        }
        for r in SKIP_REASONS:
            members[f"skipped_{r}"] = Out(32)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        msg = self.i.payload.data
        length = self.i.payload.length
        mtype = msg[0]

        def field_value(f):
            raw = [msg[f.offset + k] for k in range(f.size)]
            return Cat(*raw) if f.kind == "alpha" and f.size > 1 else be_value(raw)

        is_type = {t: Signal(name=f"is_{t}") for t in spec.LAYOUTS}
        for t, s in is_type.items():
            m.d.comb += s.eq(mtype == ord(t))
        len_ok = Signal()
        m.d.comb += len_ok.eq(Cat(*[is_type[t] & (length == spec.MESSAGE_LENGTH[t])
                                    for t in spec.LAYOUTS]).any())
        known = Signal()
        m.d.comb += known.eq(Cat(*is_type.values()).any())
        wanted = Signal()
        m.d.comb += wanted.eq(Cat(*[is_type[t] for t in DECODED_TYPES]).any())
        reason = {r: Signal(name=f"skip_{r}") for r in SKIP_REASONS}
        ok = Signal()
        m.d.comb += [
            reason["zero_length"].eq(length == 0),
            reason["unknown_type"].eq((length != 0) & ~known),
            reason["bad_length"].eq((length != 0) & known & ~len_ok),
            reason["other"].eq((length != 0) & known & len_ok & ~wanted),
            ok.eq((length != 0) & wanted & len_ok),
        ]

        rec = Signal(DECODED_LAYOUT)
        for name, sources in _FIELD_MAP.items():
            target = rec[name]
            v = 0
            for t, f in sources:
                v = Mux(is_type[t], field_value(f), v)
            m.d.comb += target.eq(v)
        m.d.comb += [
            rec.seq.eq(self.i.payload.meta.seq),
            rec.msg_type.eq(mtype),
            rec.printable.eq(Mux(is_type["C"],
                                 msg[spec.LAYOUTS["C"].field("printable").offset] == ord("Y"),
                                 Cat(*[is_type[t] for t in spec.BOOK_MESSAGE_TYPES]).any())),
        ]

        # Output register with a skid register behind it: ``i.ready`` is a register (the skid
        # is empty), so it never chains combinationally from ``o.ready``; the record registers
        # load whenever the output is free, whatever the input, so their clock enable does not
        # depend on the decode (``o.valid`` says whether they hold a record).
        accept = Signal()
        rec_valid = Signal()
        skid = Signal(DECODED_LAYOUT)
        skid_valid = Signal()
        o_free = ~self.o.valid | self.o.ready
        m.d.comb += [self.i.ready.eq(~skid_valid), accept.eq(self.i.valid & self.i.ready),
                     rec_valid.eq(accept & ok)]
        with m.If(~skid_valid):
            m.d.sync += skid.eq(rec)
        with m.If(o_free):
            m.d.sync += [self.o.payload.eq(Mux(skid_valid, skid, rec)),
                         self.o.valid.eq(skid_valid | rec_valid), skid_valid.eq(0)]
        with m.Elif(rec_valid):
            m.d.sync += skid_valid.eq(1)
        with m.If(rec_valid):
            m.d.sync += self.decoded.eq(self.decoded + 1)
        with m.If(accept):
            for r in SKIP_REASONS:
                ctr = getattr(self, f"skipped_{r}")
                with m.If(reason[r]):
                    m.d.sync += ctr.eq(ctr + 1)
        return m
