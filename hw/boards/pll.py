"""ECP5 PLL (EHXPLLL): divider search and the instance, one primary and up to three secondary
outputs.

f_out = f_in * CLKFB_DIV / CLKI_DIV / (CLKOP_DIV / output divider), with the feedback taken from
CLKOP, the phase-frequency detector at f_in / CLKI_DIV >= 3.125 MHz and the VCO at
f_out(CLKOP) * CLKOP_DIV in 400..800 MHz (Lattice FPGA-TN-02200, "ECP5 and ECP5-5G sysCLOCK
PLL/DLL Design and Usage Guide"; the same limits as Trellis' ``ecppll``).
"""

from dataclasses import dataclass, field

from amaranth.hdl import Instance, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PllConfig", "solve", "Ecp5Pll"]

_PFD_MIN, _PFD_MAX = 3.125e6, 400e6
_VCO_MIN, _VCO_MAX = 400e6, 800e6
_OUTPUTS = ("CLKOP", "CLKOS", "CLKOS2", "CLKOS3")


@dataclass(frozen=True)
class PllConfig:
    """Dividers of one EHXPLLL and the frequencies they give, Hz."""

    clki_div: int
    clkfb_div: int
    f_in: float
    vco: float
    dividers: tuple            # output divider per output, CLKOP first
    freqs: tuple               # achieved output frequencies, Hz
    requested: tuple = field(default=())

    def error_ppm(self) -> float:
        """Largest relative error over the outputs, ppm."""
        return max(abs(f - r) / r * 1e6 for f, r in zip(self.freqs, self.requested))


def solve(f_in: float, outputs) -> PllConfig:
    """Dividers giving ``outputs`` (Hz; the first is CLKOP, the feedback) from ``f_in`` Hz,
    exactly when possible, otherwise with the smallest worst-case error.

    Raises
    ------
    ValueError
        No output, more than four, or nothing within 0.1 %.
    """
    outputs = tuple(float(f) for f in outputs)
    if not 1 <= len(outputs) <= len(_OUTPUTS):
        raise ValueError(f"an EHXPLLL has 1..4 outputs, not {len(outputs)}")
    best = None
    for clki in range(1, 129):
        pfd = f_in / clki
        if not _PFD_MIN <= pfd <= _PFD_MAX:
            continue
        for fb in range(1, 81):
            f_op = pfd * fb
            for op_div in range(1, 129):
                vco = f_op * op_div
                if not _VCO_MIN <= vco <= _VCO_MAX:
                    continue
                divs, freqs, err = [op_div], [f_op], abs(f_op - outputs[0]) / outputs[0]
                for target in outputs[1:]:
                    d = min(128, max(1, round(vco / target)))
                    divs.append(d)
                    freqs.append(vco / d)
                    err = max(err, abs(vco / d - target) / target)
                key = (err, -vco)
                if best is None or key < best[0]:
                    best = (key, PllConfig(clki, fb, f_in, vco, tuple(divs), tuple(freqs),
                                           outputs))
    if best is None or best[0][0] > 1e-3:
        raise ValueError(f"no EHXPLLL setting gives {outputs} Hz from {f_in} Hz within 0.1 %")
    return best[1]


class Ecp5Pll(wiring.Component):
    """One EHXPLLL.

    Parameters
    ----------
    config : PllConfig
        From :func:`solve`.

    Attributes
    ----------
    clk_in : In(1)
        Reference clock.
    clk_out : Out(n)
        Outputs, bit 0 = CLKOP.
    locked : Out(1)
        PLL lock (asynchronous).
    """

    def __init__(self, config: PllConfig):
        self.config = config
        super().__init__({"clk_in": In(1), "clk_out": Out(len(config.freqs)),
                          "locked": Out(1)})

    def elaborate(self, platform):
        m = Module()
        c = self.config
        params = {
            "a_FREQUENCY_PIN_CLKI": f"{c.f_in / 1e6:.6f}",
            "a_ICP_CURRENT": "12", "a_LPF_RESISTOR": "8",
            "a_MFG_ENABLE_FILTEROPAMP": "1", "a_MFG_GMCREF_SEL": "2",
            "p_PLLRST_ENA": "DISABLED", "p_INTFB_WAKE": "DISABLED",
            "p_STDBY_ENABLE": "DISABLED", "p_DPHASE_SOURCE": "DISABLED",
            "p_OUTDIVIDER_MUXA": "DIVA", "p_OUTDIVIDER_MUXB": "DIVB",
            "p_OUTDIVIDER_MUXC": "DIVC", "p_OUTDIVIDER_MUXD": "DIVD",
            "p_CLKI_DIV": c.clki_div, "p_FEEDBK_PATH": "CLKOP", "p_CLKFB_DIV": c.clkfb_div,
            "i_RST": 0, "i_STDBY": 0, "i_CLKI": self.clk_in, "i_CLKFB": self.clk_out[0],
            "i_PHASESEL0": 0, "i_PHASESEL1": 0, "i_PHASEDIR": 1, "i_PHASESTEP": 1,
            "i_PHASELOADREG": 1, "i_PLLWAKESYNC": 0, "i_ENCLKOP": 0,
            "o_LOCK": self.locked,
        }
        for k, (name, div, f) in enumerate(zip(_OUTPUTS, c.dividers, c.freqs)):
            params.update({f"p_{name}_ENABLE": "ENABLED", f"p_{name}_DIV": div,
                           f"p_{name}_CPHASE": div - 1, f"p_{name}_FPHASE": 0,
                           f"a_FREQUENCY_PIN_{name}": f"{f / 1e6:.6f}",
                           f"o_{name}": self.clk_out[k]})
        m.submodules.pll = Instance("EHXPLLL", **params)
        return m
