"""The router's bytes on the wire, checked against layouts written out by hand from the specs.

SoupBinTCP 4.0: every packet is Packet Length (2 bytes, big-endian, counts the type and the
payload) + Packet Type (1 byte) + payload (section 1.1 / 2). Login Request (2.3.1): Username
alpha 6, Password alpha 10, Requested Session alpha 10, Requested Sequence Number numeric 20
(ASCII digits, space padded). Login Accepted (2.2.1): Session 10 + Sequence Number 20.
OUCH 5.0 Enter Order (2.1), Replace (2.2), Cancel (2.3), Account Query (2.8); Order Accepted
(3.2), Executed (3.6), Canceled (3.4): big-endian integers, 8-byte prices with 4 decimals.
"""

import asyncio
import struct

from router_helpers import ASK, BID, LOC, arun, buy, risk

from hftaccel.router import Router


def soup(ptype: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">H", len(payload) + 1) + ptype + payload


def enter_order(urn, side, qty, sym, price, tif, clordid):
    return (b"O" + struct.pack(">I", urn) + side + struct.pack(">I", qty) + sym.ljust(8)
            + struct.pack(">Q", price) + tif + b"Y" + b"P" + b"N" + b"N" + clordid.ljust(14)
            + struct.pack(">H", 0))


def accepted(ts, urn, side, qty, sym, price, ref, clordid):
    return (b"A" + struct.pack(">QI", ts, urn) + side + struct.pack(">I", qty) + sym.ljust(8)
            + struct.pack(">Q", price) + b"3" + b"Y" + struct.pack(">Q", ref) + b"P" + b"N"
            + b"N" + b"L" + clordid.ljust(14) + struct.pack(">H", 0))


class FakeVenue:
    """A raw TCP server that records every byte and answers with hand-built packets."""

    def __init__(self, answers):
        self.received = bytearray()
        self.answers = answers  # list of (trigger bytes seen so far -> bytes to send)
        self.got_bytes = asyncio.Event()

    async def start(self):
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def handle(self, reader, writer):
        self.writer = writer
        while True:
            data = await reader.read(4096)
            if not data:
                return
            self.received += data
            self.got_bytes.set()
            while self.answers and self.answers[0][0] in self.received:
                writer.write(self.answers.pop(0)[1])


async def _wait(pred, timeout=3.0):
    t0 = asyncio.get_event_loop().time()
    while not pred():
        if asyncio.get_event_loop().time() - t0 > timeout:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


def test_bytes_both_ways_match_the_specs():
    login = soup(b"L", b"HFT   " + b"secret    " + b" " * 10 + b"1".rjust(20))
    login_ok = soup(b"A", b"  SESSION1" + b"1".rjust(20))
    query = soup(b"U", b"Q")
    order = enter_order(1, b"B", 100, b"AMZN", ASK, b"3", b"C1")
    ack = soup(b"S", accepted(5, 1, b"B", 100, b"AMZN", ASK, 77, b"C1"))
    fill = soup(b"S", b"E" + struct.pack(">QII", 6, 1, 40) + struct.pack(">Q", ASK) + b"R"
                + struct.pack(">Q", 9) + struct.pack(">H", 0))
    cxl = soup(b"S", b"C" + struct.pack(">QII", 7, 1, 60) + b"I")
    qresp = soup(b"S", b"Q" + struct.pack(">QI", 4, 1))

    async def main():
        fake = FakeVenue([(login, login_ok + qresp), (order, ack + fill + cxl)])
        port = await fake.start()
        r = Router("127.0.0.1", port, risk_config=risk(), username="HFT", password="secret",
                   heartbeat_s=0.05)
        await r.start()
        await _wait(lambda: r.next_seq == 2)
        o = buy(r, cl_ord_id="C1")
        await r.wait_settled([o.user_ref_num])
        assert bytes(fake.received) == login + query + soup(b"U", order)
        assert o.state == "canceled" and o.filled == 40 and o.order_ref_num == 77
        assert r.positions.by_locate[LOC]["position"] == 40
        assert int(r.risk.open_buy[LOC]) == 0 and int(r.risk.position[LOC]) == 40
        # Client Heartbeat (2.3.3) when idle: Packet Length 1, type R
        n = len(fake.received)
        await _wait(lambda: soup(b"R") in bytes(fake.received[n:]))
        # Replace (2.2) and Cancel (2.3) of a resting order
        fake.answers += [(soup(b"U", enter_order(2, b"S", 200, b"AMZN", ASK + 500, b"0", b"")),
                          soup(b"S", accepted(8, 2, b"S", 200, b"AMZN", ASK + 500, 78, b"")))]
        o2 = r.submit("AMZN", LOC, "S", 200, ASK + 500, best_bid=BID, best_ask=ASK,
                      time_in_force="0")
        await r.wait_settled([o2.user_ref_num])
        assert o2.state == "live"
        replace = (b"U" + struct.pack(">III", 2, 3, 150) + struct.pack(">Q", ASK + 400) + b"0"
                   + b"Y" + b"N" + b" " * 14 + struct.pack(">H", 0))
        rejected = soup(b"S", b"J" + struct.pack(">QIH", 9, 3, 6) + b" " * 14)  # 3.8
        fake.answers += [(soup(b"U", replace), rejected)]
        new = r.replace(2, 150, ASK + 400, best_bid=BID, best_ask=ASK)
        await r.wait_settled([2, new.user_ref_num])
        assert new.state == "rejected" and new.reason == 6 and r.orders[2].state == "live"
        mark = len(fake.received)
        r.cancel(2)
        await _wait(lambda: soup(b"U", b"X" + struct.pack(">II", 2, 0))
                    in bytes(fake.received[mark:]))
        mark = len(fake.received)
        fake.answers += [(soup(b"O"), b"")]
        logout = asyncio.ensure_future(r.logout())
        await _wait(lambda: soup(b"O") in bytes(fake.received[mark:]))  # Logout Request 2.3.4
        fake.writer.close()  # the server ends the connection
        await logout
        assert not r.connected
        fake.server.close()

    arun(main())
