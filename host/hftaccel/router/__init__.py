"""Order routing: OUCH 5.0 over SoupBinTCP 4.0 with risk gate, journal, recovery, venue sim.

``Router`` (:mod:`.router`) is the client session; ``Venue`` (:mod:`.venue`) the loopback
simulator; ``Journal`` (:mod:`.journal`) the fsync'd append-only record that makes a
``kill -9`` survivable; :mod:`.orders` holds the per-UserRefNum state machine and the
position / P&L keeper; :mod:`.soup` the SoupBinTCP connection; :mod:`.pipeline` sends a
replay's orders through a router.
"""

from .journal import Journal, JournalError, read_journal
from .orders import Order, OrderStateError, OrderTable, Positions
from .router import Router, RouterError
from .soup import LoginRejected, SoupClient, SoupError, SoupProtocolError
from .venue import REJECT_CODES, Market, Venue, VenueConfig, serve

__all__ = ["Journal", "JournalError", "read_journal", "Order", "OrderStateError", "OrderTable",
           "Positions", "Router", "RouterError", "LoginRejected", "SoupClient", "SoupError",
           "SoupProtocolError", "REJECT_CODES", "Market", "Venue", "VenueConfig", "serve"]
