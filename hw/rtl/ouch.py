"""OUCH 5.0 Enter Order serializer: one approved order in, its wire bytes out as 64-bit beats.

Source: NASDAQ OUCH 5.0 specification section 2.1 (Enter Order) and SoupBinTCP 4.0 section 2.3
(Unsequenced Data packet), as tables in :mod:`hftaccel.spec.ouch`; the bytes are those of the
golden ``hftaccel.golden.ouch.encode_enter_orders`` / ``frame_enter_orders`` applied to
``orders_from_decisions`` records.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hftaccel.spec import ouch as spec

from .stream import BEAT_BYTES, keep_mask, packet_layout

__all__ = ["ORDER_FIELDS", "ORDER_LAYOUT", "OuchTx"]

_ENTER = spec.INBOUND["O"]
#: Enter Order fields that come with each order; the others are constants of the block.
ORDER_FIELDS = ("user_ref_num", "side", "quantity", "symbol", "price")


def _order_layout() -> data.StructLayout:
    members = {}
    for name in ORDER_FIELDS:
        f = _ENTER.field(name)
        members[name] = (data.ArrayLayout(unsigned(8), f.size) if f.kind == "alpha" and f.size > 1
                         else unsigned(8 * f.size))
    return data.StructLayout(members)


#: One order: UserRefNum, Side (ASCII), Quantity (shares), Symbol (8 ASCII bytes, element 0
#: first, space padded, as the ITCH Stock Directory gives it) and Price (1/10,000 USD).
ORDER_LAYOUT = _order_layout()
_SOUP_UNSEQUENCED = next(k for k, v in spec.SOUP_FROM_CLIENT.items() if v == "Unsequenced Data")


def _bcd(value, digits: int, m: Module):
    """Decimal digits of ``value`` (least significant first), by double dabble."""
    bcd = Const(0, 4 * digits)
    for i in reversed(range(len(value))):
        adj = []
        for d in range(digits):
            nib = bcd[4 * d:4 * d + 4]
            adj.append(Mux(nib >= 5, nib + 3, nib)[:4])
        step = Signal(4 * digits, name=f"bcd_{i}")
        m.d.comb += step.eq(Cat(value[i], *adj)[:4 * digits])
        bcd = step
    return [bcd[4 * d:4 * d + 4] for d in range(digits)]


class OuchTx(wiring.Component):
    """Serialize approved orders into OUCH 5.0 Enter Order messages (empty appendage).

    The whole message (optionally inside a SoupBinTCP Unsequenced Data packet) is built in the
    cycle an order is accepted and sent from the next cycle on, 8 bytes a beat: 6 beats for
    the bare 47-byte message, 7 for the 50-byte framed one. A new order is accepted in the
    cycle the previous message's last beat leaves, so the output carries no idle beats.
    ClOrdID is ``cl_ord_id_prefix`` + the UserRefNum in decimal, zero padded to 14 characters
    (converted by a combinational double dabble).

    Parameters
    ----------
    soup : bool
        Frame each message as a SoupBinTCP Unsequenced Data packet (Packet Length + ``U``).
    time_in_force, display, capacity, intermarket_sweep, cross_type : str
        One-character OUCH codes of every order (those of ``orders_from_decisions``).
    cl_ord_id_prefix : str
        ASCII prefix of ClOrdID, at most 4 characters.

    Attributes
    ----------
    i : In(stream.Signature(ORDER_LAYOUT))
        Approved orders.
    o : Out(stream.Signature(packet_layout()))
        Message bytes; ``last`` on each message's final beat, ``abort`` always 0.
    framed : Out(1)
        The ``soup`` parameter.
    orders : Out(32)
        Messages sent (counted at their first beat).
    """

    def __init__(self, *, soup: bool = True, time_in_force: str = "3", display: str = "Y",
                 capacity: str = "P", intermarket_sweep: str = "N", cross_type: str = "N",
                 cl_ord_id_prefix: str = ""):
        codes = {"time_in_force": (time_in_force, spec.TIME_IN_FORCE),
                 "display": (display, spec.DISPLAY), "capacity": (capacity, spec.CAPACITY),
                 "intermarket_sweep": (intermarket_sweep, spec.INTERMARKET_SWEEP),
                 "cross_type": (cross_type, spec.CROSS_TYPE)}
        for name, (v, allowed) in codes.items():
            if v not in allowed:
                raise ValueError(f"{name} must be one of {sorted(allowed)}, not {v!r}")
        width = _ENTER.field("cl_ord_id").size
        if (not isinstance(cl_ord_id_prefix, str) or not cl_ord_id_prefix.isascii()
                or width - len(cl_ord_id_prefix) < 10):
            raise ValueError(f"cl_ord_id_prefix must be ASCII of at most {width - 10} "
                             f"characters, not {cl_ord_id_prefix!r}")
        self._soup = bool(soup)
        self._codes = {k: v for k, (v, _) in codes.items()}
        self._prefix = cl_ord_id_prefix
        super().__init__({
            "i": In(stream.Signature(ORDER_LAYOUT)),
            "o": Out(stream.Signature(packet_layout())),
            "framed": Out(1),
            "orders": Out(32),
        })

    def message_bytes(self, m: Module, order) -> list:
        """8-bit values of the message on the wire (framing included) for ``order``."""
        out = []
        if self._soup:
            length = spec.ENTER_ORDER_LENGTH + 1
            out += [Const(b, 8) for b in length.to_bytes(spec.SOUP_LENGTH_SIZE, "big")]
            out.append(Const(ord(_SOUP_UNSEQUENCED), 8))
        for f in _ENTER.fields:
            if f.name == "type":
                out.append(Const(ord(_ENTER.type), 8))
            elif f.name == "cl_ord_id":
                digits = _bcd(order.user_ref_num, 10, m)
                text = [Const(ord(c), 8) for c in self._prefix]
                text += [Const(ord("0"), 8)] * (f.size - len(self._prefix) - len(digits))
                text += [Cat(d, Const(3, 4)) for d in reversed(digits)]   # '0' + d
                out += text
            elif f.name in self._codes:
                out.append(Const(ord(self._codes[f.name]), 8))
            elif f.kind == "alpha" and f.size > 1:
                out += [order[f.name][k] for k in range(f.size)]
            else:
                v = Value.cast(order[f.name])
                out += [v[8 * k:8 * k + 8] for k in reversed(range(f.size))]
        out += [Const(0, 8)] * spec.APPENDAGE_LENGTH_SIZE       # empty appendage
        return out

    def elaborate(self, platform):
        m = Module()
        msg = self.message_bytes(m, self.i.payload)
        n_bytes = len(msg)
        beats = -(-n_bytes // BEAT_BYTES)
        tail = n_bytes - (beats - 1) * BEAT_BYTES

        buf = Signal(8 * BEAT_BYTES * beats)
        k = Signal(range(beats))
        last = Signal()
        m.d.comb += [
            self.framed.eq(int(self._soup)),
            last.eq(k == beats - 1),
            self.o.payload.data.eq(buf.word_select(k, 8 * BEAT_BYTES)),
            self.o.payload.keep.eq(Mux(last, keep_mask(tail), keep_mask(BEAT_BYTES))),
            self.o.payload.last.eq(last),
            self.i.ready.eq(~self.o.valid | (self.o.ready & last)),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += k.eq(k + 1)
            with m.If(last):
                m.d.sync += [self.o.valid.eq(0), k.eq(0)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [buf.eq(Cat(*msg)), self.o.valid.eq(1), k.eq(0),
                         self.orders.eq(self.orders + 1)]
        return m
