"""hftaccel.rtl: Amaranth gateware, one pipeline stage per file."""
