"""The field record shared by every wire-format table of the spec (ITCH, OUCH, SoupBinTCP)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Field"]


@dataclass(frozen=True)
class Field:
    """One fixed field of a binary message.

    Attributes
    ----------
    name : str
        snake_case field name used in decoded records and by the codecs.
    offset : int
        Byte offset from the start of the message (the type byte is offset 0).
    size : int
        Length in bytes.
    kind : str
        ``"u"`` unsigned big-endian integer; ``"i"`` signed big-endian integer; ``"alpha"``
        ASCII, left-justified and space-padded; ``"price4"`` / ``"price8"`` unsigned integer
        prices with 4 / 8 implied decimals (ITCH 5.0 Price(4) / Price(8)); ``"price"`` the
        8-byte unsigned OUCH 5.0 price with 4 implied decimals.
    """

    name: str
    offset: int
    size: int
    kind: str
