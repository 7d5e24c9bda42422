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


def _adjust(nib: Value) -> Value:
    """Double dabble's add-3 step of one BCD digit (``nib + 3`` if ``nib >= 5``; the digit is
    always 0..9) as sum-of-products, so that it maps onto LUTs rather than a carry chain."""
    b0, b1, b2, b3 = nib[0], nib[1], nib[2], nib[3]
    ge5 = b3 | (b2 & (b1 | b0))
    return Cat((~ge5 & b0) | (b2 & b1 & ~b0) | (b3 & ~b0),
               (~ge5 & b1) | (b2 & b1 & b0) | (b3 & ~b0),
               (b2 & ~b1 & ~b0) | (b3 & b0),
               ge5)


def _bcd_pipeline(m: Module, value: Value, bits_per_stage, *, first_en: Value) -> list:
    """Decimal digits of ``value`` (least significant first) by double dabble, most significant
    bit first, cut into stages of ``bits_per_stage[k]`` bits each; a register ends every stage
    but the last (the first loads only with ``first_en``, the others every cycle, so the result
    is valid ``len(bits_per_stage) - 1`` cycles after ``first_en`` and stays valid until the
    next ``first_en``). Each bit costs one LUT level; only the digits the partial value can
    reach are adjusted."""
    width = len(value)
    assert sum(bits_per_stage) == width
    digits = len(str((1 << width) - 1))
    bcd = Const(0, 4 * digits)
    rest = value                           # bits not shifted in yet, most significant on top
    done = 0                               # bits shifted in
    for k, n in enumerate(bits_per_stage):
        for _ in range(n):
            top = (1 << done) - 1          # the largest value the digits can hold now
            nibs = []
            for d in range(digits):
                nib = bcd[4 * d:4 * d + 4]
                nibs.append(_adjust(nib) if top >= 5 * 10 ** d else nib)
            step = Signal(4 * digits, name=f"bcd_{done}")
            m.d.comb += step.eq(Cat(rest[-1], *nibs)[:4 * digits])
            bcd = step
            rest = rest[:-1] if len(rest) > 1 else Const(0, 1)
            done += 1
        if k == len(bits_per_stage) - 1:
            break
        reg_bcd = Signal(4 * digits, name=f"bcd_s{k + 1}")
        reg_rest = Signal(max(width - done, 1), name=f"bcd_rest_s{k + 1}")
        dom = m.d.sync
        if k == 0:
            with m.If(first_en):
                dom += [reg_bcd.eq(bcd), reg_rest.eq(rest)]
        else:
            dom += [reg_bcd.eq(bcd), reg_rest.eq(rest)]
        bcd, rest = reg_bcd, reg_rest
    return [bcd[4 * d:4 * d + 4] for d in range(digits)]


#: Bits of UserRefNum converted to decimal in each cycle: the conversion starts in the cycle
#: an order starts (from the order register or straight from ``i``) and its digits are ready
#: ``len(_BCD_STAGES) - 1`` cycles later, in time for the first beat that carries one.
_BCD_STAGES = (9, 6, 6, 6, 5)


class OuchTx(wiring.Component):
    """Serialize approved orders into OUCH 5.0 Enter Order messages (empty appendage).

    The message (optionally inside a SoupBinTCP Unsequenced Data packet) leaves 8 bytes a
    beat: 6 beats for the bare 47-byte message, 7 for the 50-byte framed one. An order is
    accepted into a one-order holding register (``i.ready`` is that register being empty, a
    register itself, so it never depends combinationally on ``o.ready``) or, when the output
    is free, straight into the message: its first beat is on ``o`` the next cycle
    (:attr:`latency`). A held order starts in the cycle the previous message's last beat
    leaves, so back-to-back orders come out without idle beats (:attr:`ii` cycles each).
    The output beat is a register loaded from the order's fields by a one-hot beat pointer.
    ClOrdID is ``cl_ord_id_prefix`` + the UserRefNum in decimal, zero padded to 14
    characters, converted by a pipelined double dabble that runs alongside the first beats.

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
        Messages started (counted when their first beat is loaded onto ``o``).
    latency : int
        Cycles from an order accepted on ``i`` to its first beat on ``o`` when the output is
        free and nothing is held: 1.
    ii : int
        Cycles per order at full rate (no back-pressure): the message's beats, 7 framed, 6 bare.
    """

    latency = 1

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

    @property
    def ii(self) -> int:
        n_bytes = spec.ENTER_ORDER_LENGTH + (spec.SOUP_HEADER_SIZE if self._soup else 0)
        return -(-n_bytes // BEAT_BYTES)

    def message_bytes(self, order, digits) -> list:
        """8-bit values of the message on the wire (framing included) for ``order``, with
        ``digits`` the UserRefNum's decimal digits (least significant first)."""
        out = []
        if self._soup:
            length = spec.ENTER_ORDER_LENGTH + 1
            out += [Const(b, 8) for b in length.to_bytes(spec.SOUP_LENGTH_SIZE, "big")]
            out.append(Const(ord(_SOUP_UNSEQUENCED), 8))
        for f in _ENTER.fields:
            if f.name == "type":
                out.append(Const(ord(_ENTER.type), 8))
            elif f.name == "cl_ord_id":
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

    def _beats(self, order, digits) -> list:
        """The message's beats (64-bit values, unused lanes of the last one zero)."""
        msg = self.message_bytes(order, digits)
        msg += [Const(0, 8)] * (-len(msg) % BEAT_BYTES)
        return [Cat(*msg[b:b + BEAT_BYTES]) for b in range(0, len(msg), BEAT_BYTES)]

    def elaborate(self, platform):
        m = Module()
        beats = self.ii
        n_bytes = spec.ENTER_ORDER_LENGTH + (spec.SOUP_HEADER_SIZE if self._soup else 0)
        tail = n_bytes - (beats - 1) * BEAT_BYTES
        # beat k loads k cycles after the first: no digit may be needed before it is converted
        assert self._first_digit() // BEAT_BYTES >= len(_BCD_STAGES) - 1

        held = Signal(ORDER_LAYOUT)            # the accepted order waiting for the output
        held_valid = Signal()
        cur = Signal(ORDER_LAYOUT)             # the order whose message is on the output
        sel = Signal(beats, init=1 << (beats - 1))   # one-hot: beat on o.payload.data
        o_free = Signal()                      # o.payload may load this cycle
        start = Signal()                       # a new message's first beat loads now
        accept = Signal()
        src = Signal(ORDER_LAYOUT)             # the order that starts: held, else i
        m.d.comb += [
            self.framed.eq(int(self._soup)),
            self.i.ready.eq(~held_valid),
            accept.eq(self.i.valid & ~held_valid),
            o_free.eq(~self.o.valid | self.o.ready),
            start.eq(o_free & sel[beats - 1] & (held_valid | self.i.valid)),
            src.eq(Mux(held_valid, held, self.i.payload)),
        ]
        digits = _bcd_pipeline(m, src.user_ref_num, _BCD_STAGES, first_en=start)

        with m.If(~held_valid):
            m.d.sync += held.eq(self.i.payload)
        with m.If(accept & ~start):
            m.d.sync += held_valid.eq(1)
        with m.Elif(start):
            m.d.sync += held_valid.eq(0)

        first = self._beats(src, digits)[0]
        rest = self._beats(cur, digits)
        nxt = 0
        for j in range(beats - 1):
            nxt = nxt | Mux(sel[j], rest[j + 1], 0)
        with m.If(start):
            m.d.sync += [cur.eq(src), self.orders.eq(self.orders + 1)]
        with m.If(o_free):
            m.d.sync += [
                self.o.payload.data.eq(Mux(sel[beats - 1], first, nxt)),
                sel.eq(Mux(sel[beats - 1], Mux(start, 1, sel), sel << 1)),
                self.o.valid.eq(~sel[beats - 1] | start),
                self.o.payload.last.eq(sel[beats - 2] if beats > 1 else 1),
                self.o.payload.keep.eq(Mux(sel[beats - 2], keep_mask(tail),
                                           keep_mask(BEAT_BYTES))),
            ]
        return m

    def _first_digit(self) -> int:
        """Byte offset in the message of the UserRefNum's first decimal digit."""
        f = _ENTER.field("cl_ord_id")
        return ((spec.SOUP_HEADER_SIZE if self._soup else 0) + f.offset + f.size
                - len(str((1 << len(self.i.payload.user_ref_num)) - 1)))
