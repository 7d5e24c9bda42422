"""Board MAC (hftaccel.boards.mac): cocotb testbench hw/sim/test_mac.py on Verilator, against
cocotbext-eth's GMII and RGMII PHY models (frames in and out, FCS errors counted and dropped,
FIFO overflow, padding, inter-frame gap, the UDP header of the order path)."""

import pytest

pytestmark = pytest.mark.sim

amaranth = pytest.importorskip("amaranth", reason="amaranth not installed (pip install .[hw])")
cocotb = pytest.importorskip("cocotb", reason="cocotb not installed (pip install .[hw])")
pytest.importorskip("cocotbext.eth", reason="cocotbext-eth not installed (pip install .[hw])")

from hftaccel.sim.common import run_testbench  # noqa: E402


@pytest.mark.parametrize("params", [{"phy": "gmii", "udp": False}, {"phy": "rgmii", "udp": True}],
                         ids=["gmii-raw", "rgmii-udp"])
def test_mac_verilator(params):
    run_testbench("mac", "verilator", params=params)
