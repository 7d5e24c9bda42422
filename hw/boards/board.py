"""What every ECP5 board top shares: PLL and resets, RGMII MACs around the core, the UART
register bridge, the board's own registers and the status LEDs.

Clock domains: ``sync`` — the core clock from the PLL (156.25 MHz by default: 64 bits a cycle
carry 10 Gb/s); ``eth_tx`` — 125 MHz from the same PLL for the order transmitter;
``eth_rx_<n>`` — each PHY's own RGMII receive clock. Each domain's reset is the PLL's lock
(and the board's reset button, where it has one) through a reset synchronizer.

Register space seen by the UART bridge: the core's bank (``Top.csr_map``) at word 0, then the
board's bank (:data:`BOARD_REGISTERS` plus one counter set per MAC) at ``core words``;
:meth:`BoardTop.address_map` gives the merged map the build writes to ``csr_map.json``.

``core=None`` builds the board shell alone (feed A frames looped back out as orders' UDP
payloads): the bring-up bitstream and the quick CI build.
"""

from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Module, Mux, Signal
from amaranth.lib import io, wiring
from amaranth.lib.cdc import ResetSynchronizer

from hftaccel.rtl.csr import CsrBank, Register

from .mac import MacRx, MacTx, RgmiiRx, RgmiiTx
from .pll import Ecp5Pll, solve
from .uart import UartBridge

__all__ = ["BOARD_REGISTERS", "UDP_DEFAULTS", "BoardTop"]

ETH_HZ = 125e6

#: Order-path UDP header defaults (rw registers ``udp_<field>``): locally administered MACs,
#: 10.0.0.0/24 addresses, ports 40001 -> 40002.
UDP_DEFAULTS = {"dst_mac": 0xFFFF_FFFF_FFFF, "src_mac": 0x02_48_46_54_00_01,
                "src_ip": 0x0A_00_00_02, "dst_ip": 0x0A_00_00_01,
                "src_port": 40001, "dst_port": 40002}
_UDP_WIDTHS = {"dst_mac": 48, "src_mac": 48, "src_ip": 32, "dst_ip": 32, "src_port": 16,
               "dst_port": 16}

#: Board registers before the per-MAC counters.
BOARD_REGISTERS = [
    Register("build_id", 32, access="ro", doc="low 32 bits of the build's source hash"),
    Register("core_hz", 32, access="ro", doc="core clock frequency, Hz"),
    Register("pll_locked", 1, access="ro"),
    *[Register(f"udp_{k}", _UDP_WIDTHS[k], reset=v, doc=f"order UDP header: {k}")
      for k, v in UDP_DEFAULTS.items()],
]


class BoardTop(Elaboratable):
    """Board top: PLL, resets, MACs, UART bridge, LEDs around the core.

    Parameters
    ----------
    core : hftaccel.rtl.top.Top or None
        The core (None: the board shell with a loopback, see the module docstring).
    clk : (str, int)
        Reference clock resource and its frequency, Hz.
    feeds : dict
        ``{"a": (resource, number), "b": ...}``: RGMII PHYs whose receive side feeds the core
        (a missing ``"b"`` ties feed B off).
    orders : (str, int)
        RGMII PHY whose transmit side sends the orders (UDP). It may be a feed PHY.
    idle_tx : sequence of (str, int)
        RGMII PHYs whose transmitter is held idle.
    core_hz : float
        Core clock, Hz.
    baud : int
        UART bridge rate.
    build_id : int
        32-bit value readable as register ``build_id`` (the build writes its source hash).
    reset : str, optional
        Reset button resource (active when pressed).
    leds : int
        Number of ``led`` resources to drive (0..8).
    """

    def __init__(self, *, core, clk, feeds, orders, idle_tx=(), core_hz=156.25e6,
                 baud=115200, build_id=0, reset=None, leds=8):
        if "a" not in feeds:
            raise ValueError(f"feeds must name feed 'a', got {feeds!r}")
        self.core, self.clk, self.feeds, self.orders = core, clk, dict(feeds), orders
        self.idle_tx, self.core_hz, self.baud = tuple(idle_tx), float(core_hz), baud
        self.build_id, self.reset, self.leds = build_id & 0xFFFFFFFF, reset, leds
        self.pll_config = solve(clk[1], [self.core_hz, ETH_HZ])
        regs = list(BOARD_REGISTERS)
        for feed in sorted(self.feeds):
            regs += [Register(f"mac_{feed}_{n}", 32, access="ro")
                     for n in ("frames", "fcs_errors", "errors", "overflows")]
        regs += [Register(f"mac_tx_{n}", 32, access="ro") for n in ("frames", "underflows")]
        self.board_csr = CsrBank(registers=regs)
        self.core_words = core.csr.words if core is not None else 0

    def lpf_preferences(self) -> str:
        """Extra LPF lines (the RGMII receive clocks, 125 MHz at their pins); call after
        elaboration (``platform.prepare`` passes them as ``add_preferences``)."""
        return "\n".join(f'FREQUENCY PORT "{p}" {ETH_HZ / 1e6:.3f} MHZ;'
                         for p in self.rx_clock_ports())

    def rx_clock_ports(self) -> list:
        """LPF port names of the RGMII receive clock pins."""
        return [f"{res}_{num}__rx_clk__io" for _, (res, num) in sorted(self.feeds.items())]

    def address_map(self) -> list:
        """The bridge's whole register map: core entries then board entries (word addresses),
        each with ``bank`` = ``"core"`` or ``"board"``."""
        core = [dict(e, bank="core") for e in (self.core.csr_map if self.core else [])]
        board = [dict(e, addr=e["addr"] + self.core_words, bank="board")
                 for e in self.board_csr.map]
        return core + board

    def elaborate(self, platform):
        m = Module()
        # clocks and resets
        ref = m.submodules.ref_clk = io.Buffer("i", platform.request(self.clk[0], 0, dir="-"))
        pll = m.submodules.pll = Ecp5Pll(self.pll_config)
        m.d.comb += pll.clk_in.eq(ref.i)
        arst = Signal()
        m.d.comb += arst.eq(~pll.locked)
        if self.reset is not None:
            btn = m.submodules.reset_button = io.Buffer(
                "i", platform.request(self.reset, 0, dir="-"))
            m.d.comb += arst.eq(~pll.locked | btn.i)
        core_clk, eth_clk = Signal(name="core_clk"), Signal(name="eth_clk")
        m.d.comb += [core_clk.eq(pll.clk_out[0]), eth_clk.eq(pll.clk_out[1])]
        for name, clk, hz in (("sync", core_clk, self.pll_config.freqs[0]),
                              ("eth_tx", eth_clk, self.pll_config.freqs[1])):
            m.domains += ClockDomain(name)
            m.d.comb += ClockSignal(name).eq(clk)
            m.submodules[f"rst_{name}"] = ResetSynchronizer(arst, domain=name)
            platform.add_clock_constraint(clk, hz)

        # PHYs
        pads = {}

        def phy(key):
            if key not in pads:
                p = pads[key] = platform.request(key[0], key[1], dir="-")
                rst = m.submodules[f"phy_rst_{key[1]}"] = io.Buffer("o", p.rst)
                m.d.comb += rst.o.eq(arst)         # PHY held in reset until the PLL locks
            return pads[key]

        macs = {}
        for feed, key in sorted(self.feeds.items()):
            p = phy(key)
            dom = f"eth_rx_{feed}"
            rxc = m.submodules[f"rx_clk_{feed}"] = io.Buffer("i", p.rx_clk)
            rx_clk = Signal(name=f"rx_clk_{feed}")
            m.d.comb += rx_clk.eq(rxc.i)
            m.domains += ClockDomain(dom)
            m.d.comb += ClockSignal(dom).eq(rx_clk)
            m.submodules[f"rst_{dom}"] = ResetSynchronizer(arst, domain=dom)
            # constrained at the pin (LPF FREQUENCY PORT, see lpf_preferences): the buffer's
            # output net does not keep its name through synthesis
            prx = m.submodules[f"rgmii_rx_{feed}"] = RgmiiRx(p, domain=dom)
            mac = m.submodules[f"mac_rx_{feed}"] = MacRx(domain=dom)
            m.d.comb += [mac.rxd.eq(prx.rxd), mac.rx_dv.eq(prx.rx_dv), mac.rx_er.eq(prx.rx_er)]
            macs[feed] = mac
        ptx = m.submodules.rgmii_tx = RgmiiTx(phy(self.orders), domain="eth_tx")
        mtx = m.submodules.mac_tx = MacTx(domain="eth_tx", udp=True)
        m.d.comb += [ptx.txd.eq(mtx.txd), ptx.tx_en.eq(mtx.tx_en), ptx.tx_er.eq(mtx.tx_er)]
        for k, key in enumerate(self.idle_tx):
            p = phy(key)
            for sub in ("tx_ctl", "tx_ctrl"):
                if hasattr(p, sub):
                    b = m.submodules[f"idle_tx_{k}"] = io.Buffer("o", getattr(p, sub))
                    m.d.comb += b.o.eq(0)

        # board registers
        regs = m.submodules.board_csr = self.board_csr
        m.d.comb += [regs.build_id.eq(self.build_id), regs.core_hz.eq(int(self.core_hz)),
                     regs.pll_locked.eq(pll.locked)]
        for field in UDP_DEFAULTS:
            m.d.comb += getattr(mtx, field).eq(getattr(regs, f"udp_{field}"))
        for feed, mac in macs.items():
            for n in ("frames", "fcs_errors", "errors", "overflows"):
                m.d.comb += getattr(regs, f"mac_{feed}_{n}").eq(getattr(mac, n))
        m.d.comb += [regs.mac_tx_frames.eq(mtx.frames), regs.mac_tx_underflows.eq(mtx.underflows)]

        # core (or the shell's loopback)
        if self.core is not None:
            core = m.submodules.core = self.core
            wiring.connect(m, macs["a"].o, core.i_a)
            if "b" in macs:
                wiring.connect(m, macs["b"].o, core.i_b)
            else:
                m.d.comb += core.i_b.valid.eq(0)
            wiring.connect(m, core.o, mtx.i)
            m.d.comb += core.o_event.ready.eq(1)
        else:
            wiring.connect(m, macs["a"].o, mtx.i)
            for feed, mac in macs.items():
                if feed != "a":
                    m.d.comb += mac.o.ready.eq(1)

        # UART bridge -> core bank | board bank
        uart = platform.request("uart", 0, dir="-")
        u_rx = m.submodules.uart_rx = io.Buffer("i", uart.rx)
        u_tx = m.submodules.uart_tx = io.Buffer("o", uart.tx)
        br = m.submodules.bridge = UartBridge(clk_freq=self.pll_config.freqs[0], baud=self.baud,
                                              read_latency=2)
        m.d.comb += [br.rx.eq(u_rx.i), u_tx.o.eq(br.tx)]
        # one register stage between the bridge and both banks (bank select, address offset,
        # strobes), so that the banks' read multiplexers start from flip-flops
        to_board, read_board = Signal(), Signal()
        b_addr, w_data = Signal(16), Signal(32)
        w_stb, r_stb = Signal(), Signal()
        m.d.sync += [to_board.eq(br.addr >= self.core_words),
                     b_addr.eq(br.addr - self.core_words), w_data.eq(br.w_data),
                     w_stb.eq(br.w_stb), r_stb.eq(br.r_stb)]
        with m.If(r_stb):
            m.d.sync += read_board.eq(to_board)
        m.d.comb += [regs.addr.eq(b_addr), regs.w_data.eq(w_data),
                     regs.w_stb.eq(w_stb & to_board), regs.r_stb.eq(r_stb & to_board)]
        if self.core is not None:
            c_addr = Signal(16)
            m.d.sync += c_addr.eq(br.addr)
            m.d.comb += [core.csr_addr.eq(c_addr), core.csr_w_data.eq(w_data),
                         core.csr_w_stb.eq(w_stb & ~to_board),
                         core.csr_r_stb.eq(r_stb & ~to_board),
                         br.r_data.eq(Mux(read_board, regs.r_data, core.csr_r_data))]
        else:
            m.d.comb += br.r_data.eq(regs.r_data)

        # LEDs: heartbeat, PLL lock, frame activity per feed, order activity
        if self.leds:
            beat = Signal(27)
            m.d.sync += beat.eq(beat + 1)
            status = [beat[-1], pll.locked]
            for feed in sorted(macs):
                status.append(self._activity(m, macs[feed].frames[0], f"led_{feed}"))
            status.append(self._activity(m, mtx.frames[0], "led_tx"))
            for k, value in enumerate(status[:self.leds]):
                led = m.submodules[f"led_{k}"] = io.Buffer("o", platform.request("led", k,
                                                                                 dir="-"))
                m.d.comb += led.o.eq(value)
        return m

    @staticmethod
    def _activity(m, toggle, name):
        """A ~50 ms light after each change of ``toggle`` (a counter's low bit)."""
        last = Signal(name=f"{name}_last")
        timer = Signal(23, name=f"{name}_timer")
        m.d.sync += last.eq(toggle)
        with m.If(last != toggle):
            m.d.sync += timer.eq(~0)
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        return timer != 0

