"""UART register bridge: the host reads and writes the core's registers over a serial line.

Framing (8N1, ``baud`` bits/s; every multi-byte field big-endian):

=========  ===========================================  ==============================
host sends                                              board answers
=========  ===========================================  ==============================
read       ``'R'`` (0x52), address (2 bytes)            data (4 bytes)
write      ``'W'`` (0x57), address (2 bytes), data (4)  ``'K'`` (0x4B)
=========  ===========================================  ==============================

Addresses are 32-bit word addresses of the board's register space (the core's
:class:`hftaccel.rtl.csr.CsrBank` first, then the board's own bank; the build writes the whole
map to ``csr_map.json``). Any other command byte is ignored, and a command whose bytes stop
arriving for ``timeout_bits`` bit times is abandoned, so a host that lost sync recovers by
waiting a moment. Wide registers follow the bank's rules (read the low word first: it
snapshots the rest).

The gateware (:class:`UartBridge`) and the host client (:class:`BridgeClient`) both take the
framing from :func:`encode_read`, :func:`encode_write` and the constants here.
"""

import os
import time

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

__all__ = ["CMD_READ", "CMD_WRITE", "ACK", "encode_read", "encode_write", "UartBridge",
           "BridgeClient", "BridgeError", "open_serial"]

CMD_READ = 0x52     # 'R'
CMD_WRITE = 0x57    # 'W'
ACK = 0x4B          # 'K'
ADDR_BYTES = 2
DATA_BYTES = 4


def encode_read(addr: int) -> bytes:
    """Bytes of a read of word ``addr``."""
    return bytes([CMD_READ]) + int(addr).to_bytes(ADDR_BYTES, "big")


def encode_write(addr: int, value: int) -> bytes:
    """Bytes of a write of ``value`` (32 bits) to word ``addr``."""
    return (bytes([CMD_WRITE]) + int(addr).to_bytes(ADDR_BYTES, "big")
            + (int(value) & 0xFFFFFFFF).to_bytes(DATA_BYTES, "big"))


# ----------------------------------------------------------------------------- gateware

class _UartRx(wiring.Component):
    """8N1 receiver: ``data`` valid with a one-cycle ``stb``."""

    rx: In(1)
    data: Out(8)
    stb: Out(1)

    def __init__(self, divisor: int):
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, rx, init=1)
        timer = Signal(range(self.divisor * 3 // 2 + 1))
        bits = Signal(range(10))
        shreg = Signal(8)
        with m.FSM(name="uart_rx"):
            with m.State("IDLE"):
                with m.If(~rx):                      # start bit: sample mid data bit 0
                    m.d.sync += [timer.eq(self.divisor * 3 // 2 - 1), bits.eq(0)]
                    m.next = "BITS"
            with m.State("BITS"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(self.divisor - 1), bits.eq(bits + 1)]
                    with m.If(bits == 8):            # stop bit
                        m.d.comb += self.stb.eq(rx)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += shreg.eq(Cat(shreg[1:], rx))
        m.d.comb += self.data.eq(shreg)
        return m


class _UartTx(wiring.Component):
    """8N1 transmitter: takes ``data`` when ``stb`` and not ``busy``."""

    tx: Out(1, init=1)
    data: In(8)
    stb: In(1)
    busy: Out(1)

    def __init__(self, divisor: int):
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divisor))
        shreg = Signal(10, init=0x3FF)
        bits = Signal(range(11))
        m.d.comb += [self.tx.eq(shreg[0]), self.busy.eq(bits != 0)]
        with m.If(bits == 0):
            with m.If(self.stb):
                m.d.sync += [shreg.eq(Cat(0, self.data, 1)), bits.eq(10),
                             timer.eq(self.divisor - 1)]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
            with m.If(timer == 0):
                m.d.sync += [shreg.eq(Cat(shreg[1:], 1)), bits.eq(bits - 1),
                             timer.eq(self.divisor - 1)]
        return m


class UartBridge(wiring.Component):
    """Serial line to register bus master (framing in the module docstring).

    Parameters
    ----------
    clk_freq : int or float
        Frequency of ``sync``, Hz.
    baud : int
        Bits per second (115200 default; the divisor must be >= 4).
    timeout_bits : int
        Abandon a command after this many bit times without a byte.
    read_latency : int
        Cycles from ``r_stb`` to valid ``r_data`` (1 for a bare :class:`CsrBank`).

    Attributes
    ----------
    rx : In(1), tx : Out(1)
        Serial lines (idle high).
    addr : Out(16), w_stb : Out(1), w_data : Out(32), r_stb : Out(1)
        Bus requests (as :class:`hftaccel.rtl.csr.CsrBank`).
    r_data : In(32)
        Read data, ``read_latency`` cycles after ``r_stb``.

    ``addr`` and ``w_data`` come straight from registers and hold from one cycle before a
    strobe until the command's answer is sent.
    """

    rx: In(1)
    tx: Out(1)
    addr: Out(8 * ADDR_BYTES)
    w_stb: Out(1)
    w_data: Out(8 * DATA_BYTES)
    r_stb: Out(1)
    r_data: In(8 * DATA_BYTES)

    def __init__(self, *, clk_freq, baud: int = 115200, timeout_bits: int = 200,
                 read_latency: int = 1):
        divisor = int(round(clk_freq / baud))
        if divisor < 4:
            raise ValueError(f"baud {baud!r} is too fast for a {clk_freq!r} Hz clock")
        if not isinstance(read_latency, int) or not 1 <= read_latency <= 8:
            raise ValueError(f"read_latency must be an integer in 1..8, not {read_latency!r}")
        self.divisor, self.timeout = divisor, divisor * timeout_bits
        self.read_latency = read_latency
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        urx = m.submodules.rx = _UartRx(self.divisor)
        utx = m.submodules.tx = _UartTx(self.divisor)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]
        # bytes that arrive while an answer is going out wait here (a host may send its next
        # command before the last answer is complete)
        rxq = m.submodules.rx_fifo = SyncFIFOBuffered(width=8, depth=16)
        m.d.comb += [rxq.w_en.eq(urx.stb), rxq.w_data.eq(urx.data)]
        got = Signal()
        byte = rxq.r_data

        cmd = Signal(8)
        need = Signal(range(8))                 # bytes of the command still to come
        shreg = Signal(8 * (ADDR_BYTES + DATA_BYTES))
        out = Signal(8 * DATA_BYTES)            # answer bytes, most significant first
        left = Signal(range(DATA_BYTES + 1))    # answer bytes still to send
        idle = Signal(range(self.timeout + 1))

        with m.If(urx.stb):
            m.d.sync += idle.eq(0)
        with m.Elif(idle != self.timeout):
            m.d.sync += idle.eq(idle + 1)

        addr_w = 8 * ADDR_BYTES
        addr = Signal(addr_w)
        data = Signal(8 * DATA_BYTES)
        wait = Signal(range(self.read_latency + 1))
        m.d.comb += [self.addr.eq(addr), self.w_data.eq(data)]
        with m.FSM(name="bridge"):
            with m.State("CMD"):
                m.d.comb += [rxq.r_en.eq(1), got.eq(rxq.r_rdy)]
                with m.If(got & ((byte == CMD_READ) | (byte == CMD_WRITE))):
                    m.d.sync += [cmd.eq(byte),
                                 need.eq(ADDR_BYTES + (byte == CMD_WRITE) * DATA_BYTES)]
                    m.next = "ARGS"
            with m.State("ARGS"):
                m.d.comb += [rxq.r_en.eq(1), got.eq(rxq.r_rdy)]
                with m.If(got):
                    m.d.sync += [shreg.eq(Cat(byte, shreg[:-8])), need.eq(need - 1)]
                    with m.If(need == 1):
                        m.next = "LATCH"
                with m.Elif((idle == self.timeout) & ~rxq.r_rdy):
                    m.next = "CMD"
            with m.State("LATCH"):                  # address and data into their registers
                with m.If(cmd == CMD_READ):
                    m.d.sync += addr.eq(shreg[:addr_w])
                with m.Else():
                    m.d.sync += [addr.eq(shreg[8 * DATA_BYTES:8 * DATA_BYTES + addr_w]),
                                 data.eq(shreg[:8 * DATA_BYTES])]
                m.next = "EXEC"
            with m.State("EXEC"):
                with m.If(cmd == CMD_READ):
                    m.d.comb += self.r_stb.eq(1)
                    m.d.sync += wait.eq(self.read_latency - 1)
                    m.next = "READ"
                with m.Else():
                    m.d.comb += self.w_stb.eq(1)
                    m.d.sync += [out.eq(ACK << 24), left.eq(1)]
                    m.next = "SEND"
            with m.State("READ"):
                with m.If(wait == 0):
                    m.d.sync += [out.eq(self.r_data), left.eq(DATA_BYTES)]
                    m.next = "SEND"
                with m.Else():
                    m.d.sync += wait.eq(wait - 1)
            with m.State("SEND"):
                with m.If(left == 0):
                    m.next = "CMD"
                with m.Elif(~utx.busy):
                    m.d.comb += [utx.data.eq(out[-8:]), utx.stb.eq(1)]
                    m.d.sync += [out.eq(out << 8), left.eq(left - 1)]
        return m


# ----------------------------------------------------------------------------- host side

class BridgeError(RuntimeError):
    """The board did not answer as the framing says (no board, wrong port or baud rate)."""


def open_serial(port: str, baud: int = 115200, timeout: float = 0.5):
    """Open ``port`` 8N1 raw: pyserial when installed, else POSIX termios. Returns an object
    with ``read(n)``, ``write(b)`` and ``close()``."""
    try:
        import serial
        return serial.Serial(port, baud, timeout=timeout)
    except ImportError:
        pass
    import termios
    import tty

    rate = getattr(termios, f"B{baud}", None)
    if rate is None:
        raise ValueError(f"baud rate {baud!r} not supported by termios here (install pyserial)")
    fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    attrs = termios.tcgetattr(fd)
    attrs[4] = attrs[5] = rate
    attrs[6][termios.VMIN] = 0
    attrs[6][termios.VTIME] = max(1, int(timeout * 10))
    termios.tcsetattr(fd, termios.TCSANOW, attrs)

    class _Port:
        def read(self, n):
            return os.read(fd, n)

        def write(self, b):
            return os.write(fd, b)

        def close(self):
            os.close(fd)
    return _Port()


class BridgeClient:
    """Register access over the UART bridge.

    Parameters
    ----------
    port : file-like
        From :func:`open_serial` (anything with ``read(n)`` / ``write(b)``).
    csr_map : list, optional
        The build's ``csr_map.json`` entries (``name, addr, words, width, access``), for
        :meth:`read_reg` / :meth:`read_all`.
    """

    def __init__(self, port, csr_map=None):
        self.port = port
        self.map = {e["name"]: e for e in (csr_map or [])}

    def _read_exact(self, n: int) -> bytes:
        buf = b""
        deadline = time.monotonic() + 2.0
        while len(buf) < n and time.monotonic() < deadline:
            buf += self.port.read(n - len(buf)) or b""
        if len(buf) != n:
            raise BridgeError(f"expected {n} bytes from the board, got {len(buf)} "
                              f"({buf.hex() or 'nothing'}): is the bitstream loaded and the "
                              "baud rate right?")
        return buf

    def read(self, addr: int) -> int:
        """One 32-bit word."""
        self.port.write(encode_read(addr))
        return int.from_bytes(self._read_exact(DATA_BYTES), "big")

    def write(self, addr: int, value: int) -> None:
        self.port.write(encode_write(addr, value))
        ack = self._read_exact(1)
        if ack[0] != ACK:
            raise BridgeError(f"write of word {addr}: answer {ack.hex()}, expected {ACK:02x}")

    def read_reg(self, name: str) -> int:
        """A whole register (low word first, as the bank's snapshot rule needs)."""
        e = self.map[name]
        value = 0
        for k in range(e["words"]):
            value |= self.read(e["addr"] + k) << (32 * k)
        return value & ((1 << e["width"]) - 1)

    def write_reg(self, name: str, value: int) -> None:
        e = self.map[name]
        for k in range(e["words"]):
            self.write(e["addr"] + k, (value >> (32 * k)) & 0xFFFFFFFF)

    def read_all(self, access=("ro", "rw")) -> dict:
        """``{name: value}`` of every register whose access is in ``access``."""
        return {n: self.read_reg(n) for n, e in self.map.items() if e["access"] in access}
