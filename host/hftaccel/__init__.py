"""hftaccel: an open tick-to-trade inference stack.

NASDAQ ITCH 5.0 over MoldUDP64 in, an order book rebuilt, fixed-point microstructure features,
a quantized MLP, a pre-trade risk gate and OUCH 5.0 orders out, as a CPU golden model, as
gateware and as GPU kernels that agree bit for bit.
"""

__version__ = "0.1.0"
