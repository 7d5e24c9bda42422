"""Radiona ULX3S-85F (LFE5U-85F, speed grade 6): the core with one RGMII PHY on the GPIO header.

The ULX3S has no Ethernet PHY of its own; this target expects an RGMII PHY module (an RTL8211
class breakout) on header ``gpio`` 0, pins as in :data:`RGMII_ADDON` (check them against your
module's pinout before programming). The PHY receives feed A and sends the orders; feed B is
tied off. Reference clock: the 25 MHz oscillator; UART bridge on the FTDI (``uart`` 0).
LEDs 0..3: heartbeat, PLL lock, feed A frames, orders sent.
"""

from amaranth.build import Attrs, Pins, PinsN, Resource, Subsignal

from .board import BoardTop

__all__ = ["DEVICE", "RGMII_ADDON", "make_top", "make_platform"]

DEVICE = "LFE5U-85F"

#: RGMII PHY module on the ULX3S ``gpio`` 0 header (LVCMOS33).
RGMII_ADDON = Resource(
    "eth_rgmii", 0,
    Subsignal("rst", PinsN("0+", dir="o", conn=("gpio", 0))),
    Subsignal("mdc", Pins("0-", dir="o", conn=("gpio", 0))),
    Subsignal("mdio", Pins("1+", dir="io", conn=("gpio", 0))),
    Subsignal("tx_clk", Pins("1-", dir="o", conn=("gpio", 0))),
    Subsignal("tx_ctl", Pins("2+", dir="o", conn=("gpio", 0))),
    Subsignal("tx_data", Pins("2- 3+ 3- 4+", dir="o", conn=("gpio", 0))),
    Subsignal("rx_clk", Pins("4-", dir="i", conn=("gpio", 0))),
    Subsignal("rx_ctl", Pins("5+", dir="i", conn=("gpio", 0))),
    Subsignal("rx_data", Pins("5- 6+ 6- 7+", dir="i", conn=("gpio", 0))),
    Attrs(IO_TYPE="LVCMOS33", SLEWRATE="FAST"),
)


def make_platform():
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    platform = ULX3S_85F_Platform()
    platform.add_resources([RGMII_ADDON])
    return platform


def make_top(core, **kwargs):
    """:class:`~hftaccel.boards.board.BoardTop` wired for the ULX3S with the add-on PHY."""
    return BoardTop(core=core, clk=("clk25", 25e6), feeds={"a": ("eth_rgmii", 0)},
                    orders=("eth_rgmii", 0), leds=4, **kwargs)
