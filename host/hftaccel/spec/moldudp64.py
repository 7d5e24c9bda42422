"""MoldUDP64 1.00 downstream packet layout, as data.

Source: NASDAQ MoldUDP64 Protocol Specification, version 1.00 (sections 2 and 3). A downstream
packet is a 20-byte header (Session, Sequence Number, Message Count) followed by Message Count
message blocks, each a 2-byte big-endian Message Length and that many bytes of payload (one
ITCH message). The Sequence Number is that of the first message in the packet; the following
messages are numbered consecutively. A Message Count of 0 is a heartbeat (the Sequence Number
is the next expected one); 0xFFFF marks the End of Session.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "SESSION_SIZE",
    "HEADER_SIZE",
    "HEADER_DTYPE",
    "BLOCK_LENGTH_SIZE",
    "HEARTBEAT_COUNT",
    "END_OF_SESSION_COUNT",
    "MAX_PAYLOAD",
    "DEFAULT_UDP_PORT",
]

#: Session: 10 bytes, alphanumeric, identifies the session (spec 2).
SESSION_SIZE = 10
#: Header: Session(10) + Sequence Number(8, big-endian) + Message Count(2, big-endian).
HEADER_SIZE = 20
#: Packed big-endian view of the header.
HEADER_DTYPE = np.dtype([("session", "S10"), ("sequence_number", ">u8"),
                         ("message_count", ">u2")])
assert HEADER_DTYPE.itemsize == HEADER_SIZE
#: Each message block starts with a 2-byte big-endian Message Length.
BLOCK_LENGTH_SIZE = 2
#: Message Count values with special meaning (spec 3).
HEARTBEAT_COUNT = 0
END_OF_SESSION_COUNT = 0xFFFF
#: Largest UDP payload the writer emits by default: a 1500-byte Ethernet MTU less IPv4 (20) and
#: UDP (8) headers.
MAX_PAYLOAD = 1472
#: Destination UDP port used by the writer and the demo capture (NASDAQ assigns per feed).
DEFAULT_UDP_PORT = 26400
