"""Lattice ECP5-5G Versa (LFE5UM5G-45F, speed grade 8): the core between its two RGMII PHYs.

PHY 0 (amaranth-boards ``eth_rgmii`` 0) receives feed A; PHY 1 receives feed B
and sends the orders as UDP datagrams; PHY 0's transmitter is idle. Reference clock: the 100 MHz
oscillator; reset: the board's reset button. UART bridge on the FTDI's second channel
(``uart`` 0). LEDs 0..5: heartbeat, PLL lock, feed A / feed B frames, orders sent.
"""

from .board import BoardTop

__all__ = ["DEVICE", "make_top", "make_platform"]

DEVICE = "LFE5UM5G-45F"


def make_platform():
    from amaranth_boards.versa_ecp5_5g import VersaECP55GPlatform
    return VersaECP55GPlatform()



def make_top(core, **kwargs):
    """:class:`~hftaccel.boards.board.BoardTop` wired for the Versa (keyword arguments go to
    it: ``core_hz``, ``baud``, ``build_id``)."""
    return BoardTop(core=core, clk=("clk100", 100e6),
                    feeds={"a": ("eth_rgmii", 0), "b": ("eth_rgmii", 1)},
                    orders=("eth_rgmii", 1), idle_tx=[("eth_rgmii", 0)], reset="rst",
                    **kwargs)
