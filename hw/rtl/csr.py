"""Control and status register bank: 32-bit word bus, registers described as data.

The host (or a board's UART/Ethernet bridge) reaches every limit, threshold, counter and the
model weights of the pipeline through one simple bus: ``addr`` selects a 32-bit word; a write
takes effect at the rising edge where ``w_stb`` is high; ``r_data`` shows the addressed word
one cycle after ``r_stb``. Registers wider than 32 bits take consecutive words, low word first.

Register kinds (``Register.access``):

* ``"rw"`` — configuration: an ``Out(width)`` port driven by the register, reset to ``reset``.
* ``"ro"`` — status: an ``In(width)`` port, read as is. A multi-word status register is
  *snapshotted* when its low word is read, so the high words read afterwards belong to the same
  value (the free-running cycle counter and 64-bit counters need this).
* ``"wo"`` — a write strobe: an ``Out(width)`` data port and an ``Out(1)`` ``<name>_we`` port
  high for one cycle on each write of the register's last word (its low words are staged).

The register map is plain data (:func:`address_map`) written next to every build as JSON, so the
host needs no restatement of addresses. Source: the register-bank pattern of LiteX's CSR bus
(word-addressed, snapshot of wide status registers on the low word).
"""

from dataclasses import dataclass

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Register", "address_map", "CsrBank", "WORD_BITS"]

#: Bus word width, bits.
WORD_BITS = 32


@dataclass(frozen=True)
class Register:
    """One register of a :class:`CsrBank`.

    Parameters
    ----------
    name : str
        Port name (a Python identifier); also the name in the address map.
    width : int
        Bits, 1..256; takes ``ceil(width / 32)`` words.
    access : str
        ``"rw"``, ``"ro"`` or ``"wo"`` (see the module docstring).
    reset : int
        Reset value of an ``"rw"`` register (two's complement for negative values).
    doc : str
        One line for the address map.
    """

    name: str
    width: int
    access: str = "rw"
    reset: int = 0
    doc: str = ""

    @property
    def words(self) -> int:
        return -(-self.width // WORD_BITS)


def address_map(registers) -> list:
    """``[{name, addr, words, width, access, reset, doc}]`` with word addresses in map order.

    Raises
    ------
    ValueError
        A name repeats, is not an identifier, or a width/access is out of range.
    """
    out, addr, seen = [], 0, set()
    for r in registers:
        if not isinstance(r, Register):
            raise TypeError(f"registers must be Register objects, not {r!r}")
        if not r.name.isidentifier() or r.name in seen:
            raise ValueError(f"register name {r.name!r} is not a unique identifier")
        if not isinstance(r.width, int) or not 1 <= r.width <= 256:
            raise ValueError(f"register {r.name!r}: width must be in 1..256, not {r.width!r}")
        if r.access not in ("rw", "ro", "wo"):
            raise ValueError(f"register {r.name!r}: access must be rw, ro or wo, not "
                             f"{r.access!r}")
        seen.add(r.name)
        out.append({"name": r.name, "addr": addr, "words": r.words, "width": r.width,
                    "access": r.access, "reset": r.reset & ((1 << r.width) - 1), "doc": r.doc})
        addr += r.words
    return out


class CsrBank(wiring.Component):
    """A word-addressed register bank generated from a list of :class:`Register`.

    Parameters
    ----------
    registers : sequence of Register
        The map, in address order (:func:`address_map`).

    Attributes
    ----------
    addr : In(range(words))
        Word address.
    w_stb : In(1)
        Write ``w_data`` to the addressed word at this edge.
    w_data : In(32)
        Write data.
    r_stb : In(1)
        Read request: ``r_data`` holds the word from the next cycle on.
    r_data : Out(32)
        Read data (registered).
    <name> : Out(width) for ``rw`` and ``wo``, In(width) for ``ro``
        The register's value.
    <name>_we : Out(1), ``wo`` registers only
        One-cycle pulse: the register's last word was written (its value is valid with it).
    map : list
        :func:`address_map` of ``registers``.
    """

    #: Cycles from ``r_stb`` to ``r_data`` (registered read), and one access a cycle.
    latency = 1
    ii = 1

    def __init__(self, *, registers):
        self.map = address_map(registers)
        self._regs = list(registers)
        self.words = sum(r.words for r in self._regs)
        members = {
            "addr": In(range(max(self.words, 2))),
            "w_stb": In(1),
            "w_data": In(WORD_BITS),
            "r_stb": In(1),
            "r_data": Out(WORD_BITS),
        }
        for r in self._regs:
            if r.access == "ro":
                members[r.name] = In(r.width)
            else:
                members[r.name] = Out(r.width, init=r.reset & ((1 << r.width) - 1)
                                      if r.access == "rw" else 0)
            if r.access == "wo":
                members[f"{r.name}_we"] = Out(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        read_mux = []                           # (addr, value of the word)
        for r, entry in zip(self._regs, self.map):
            port = getattr(self, r.name)
            base = entry["addr"]
            if r.access == "ro":
                if r.words > 1:
                    snap = Signal(unsigned(r.width - WORD_BITS), name=f"{r.name}_snap")
                    with m.If(self.r_stb & (self.addr == base)):
                        m.d.sync += snap.eq(port[WORD_BITS:])
                    read_mux.append((base, port[:WORD_BITS]))
                    for k in range(1, r.words):
                        read_mux.append((base + k, snap[(k - 1) * WORD_BITS:k * WORD_BITS]))
                else:
                    read_mux.append((base, port))
                continue
            if r.access == "rw":
                for k in range(r.words):
                    lo, hi = k * WORD_BITS, min((k + 1) * WORD_BITS, r.width)
                    with m.If(self.w_stb & (self.addr == base + k)):
                        m.d.sync += port[lo:hi].eq(self.w_data[:hi - lo])
                    read_mux.append((base + k, port[lo:hi]))
            else:                               # wo: low words staged, last word commits
                we = getattr(self, f"{r.name}_we")
                m.d.sync += we.eq(0)
                staged = Signal(unsigned(max((r.words - 1) * WORD_BITS, 1)), name=f"{r.name}_stage")
                for k in range(r.words):
                    lo, hi = k * WORD_BITS, min((k + 1) * WORD_BITS, r.width)
                    with m.If(self.w_stb & (self.addr == base + k)):
                        if k == r.words - 1:
                            m.d.sync += we.eq(1)
                            if k:
                                m.d.sync += port.eq(
                                    (self.w_data[:hi - lo] << lo) | staged[:lo])
                            else:
                                m.d.sync += port.eq(self.w_data[:hi - lo])
                        else:
                            m.d.sync += staged[lo:hi].eq(self.w_data)
        # read mux: a binary tree over the address bits (a Switch becomes a $pmux with one
        # address comparator per word: ~3x the LUTs and a wide OR at the end)
        words = [0] * (1 << len(self.addr))
        for addr, word in read_mux:
            words[addr] = word
        level = words
        for bit in range(len(self.addr)):
            level = [Mux(self.addr[bit], hi, lo) for lo, hi in zip(level[0::2], level[1::2])]
        with m.If(self.r_stb):
            m.d.sync += self.r_data.eq(level[0])
        return m
