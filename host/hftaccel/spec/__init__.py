"""hftaccel.spec: the single source of message layouts, record dtypes, formats and sizes.

Submodules: :mod:`.itch` (ITCH 5.0), :mod:`.moldudp64` (MoldUDP64), :mod:`.book` (book depth,
table sizes, book record), :mod:`.features` (feature list, Q formats, tables), :mod:`.quant`
(quantization contract, model card schema), :mod:`.risk` (decision and risk gate records),
:mod:`.ouch` (OUCH 5.0 and SoupBinTCP 4.0 layouts). The gateware, the golden model, the kernels and the test models read
their constants from here; nothing is restated by hand.
"""

from . import book, features, itch, moldudp64, ouch, quant, risk
from .book import BAD_REFERENCE_KINDS, BOOK_DEPTH, BOOK_RECORD_DTYPE, book_record_dtype
from .itch import (BOOK_MESSAGE_TYPES, LAYOUTS, MESSAGE_LENGTH, ORDER_EVENT_DTYPE,
                   PRICE4_SCALE, SIDE_BUY, SIDE_SELL, decoded_dtype, wire_dtype)

__all__ = [
    "book", "features", "itch", "moldudp64", "ouch", "quant", "risk",
    "BAD_REFERENCE_KINDS", "BOOK_DEPTH", "BOOK_RECORD_DTYPE", "book_record_dtype",
    "BOOK_MESSAGE_TYPES", "LAYOUTS", "MESSAGE_LENGTH", "ORDER_EVENT_DTYPE", "PRICE4_SCALE",
    "SIDE_BUY", "SIDE_SELL", "decoded_dtype", "wire_dtype",
]
