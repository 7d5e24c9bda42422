"""hftaccel.sim: cocotb testbenches and the Verilator replay harness."""
