"""SoupBinTCP session behaviour of the router against the simulator: login, heartbeats, drop
and reconnect with the next expected sequence number, logout / end of session, the order state
machine, kill switch, and malformed venue messages."""

import asyncio
import struct

import pytest
from router_helpers import (ASK, BID, LOC, arun, buy, flat_market, risk, sell, start_pair,
                            stop_pair)

from hftaccel.router import (LoginRejected, Router, RouterError, SoupProtocolError, Venue,
                             VenueConfig)


def test_login_rejected_not_authorized_and_unknown_session():
    async def main():
        venue = Venue(flat_market(), VenueConfig(password="pw"))
        port = await venue.start()
        bad = Router("127.0.0.1", port, password="nope")
        with pytest.raises(LoginRejected) as e:
            await bad.start()
        assert e.value.code == "A"
        wrong = Router("127.0.0.1", port, password="pw", session=b"OTHER")
        with pytest.raises(LoginRejected) as e:
            await wrong.start()
        assert e.value.code == "S"
        ok = Router("127.0.0.1", port, password="pw")
        await ok.start()
        assert ok.session.strip() == b"SIM0000001" and ok.connected
        await stop_pair(venue, ok)

    arun(main())


def test_heartbeats_both_ways_keep_an_idle_session():
    async def main():
        venue, r = await start_pair(venue_config=VenueConfig(heartbeat_s=0.05),
                                    heartbeat_s=0.05, timeout_s=0.5)
        await asyncio.sleep(0.8)  # longer than the timeout: only heartbeats flow
        assert r.connected and r.counts["reconnects"] == 0
        assert r.client.heartbeats_received >= 5 and r.client.heartbeats_sent >= 5
        await stop_pair(venue, r)

    arun(main())


def test_silent_server_is_a_lost_link_and_the_router_reconnects():
    async def main():
        venue, r = await start_pair(venue_config=VenueConfig(heartbeat_s=60), heartbeat_s=0.05,
                                    timeout_s=0.3)
        await asyncio.sleep(0.6)
        assert r.counts["reconnects"] >= 1 and any(e["event"] == "closed" for e in r.events)
        await stop_pair(venue, r)

    arun(main())


def test_dropped_connection_resumes_at_next_sequence_number(tmp_path):
    async def main():
        venue, r = await start_pair(tmp_path)
        resting = buy(r, 100, BID, tif="0")      # rests below the ask
        filled = buy(r, 100)                     # takes the ask
        await r.wait_settled()
        assert resting.state == "live" and filled.state == "filled"
        seq_before = r.next_seq
        venue.drop("HFT")
        await asyncio.sleep(0.02)
        # while the router is away the market moves through its bid: the resting order fills
        venue.market.quotes[LOC] = tuple(a.copy() for a in venue.market.quotes[LOC])
        venue.market.quotes[LOC][3][0] = BID
        venue.sweep()
        await r.wait_for(lambda: r.connected and resting.state == "filled", 3)
        assert r.counts["reconnects"] == 1
        login = [e for e in r.events if e["event"] == "login"][-1]
        assert login["next_sequence_number"] == seq_before   # asked for, and got, the next one
        sess = venue.sessions["HFT"]
        assert r.next_seq == len(sess.log) + 1
        assert r.positions.by_locate[LOC]["position"] == 200 == venue.stats["filled_shares"]
        assert r.counts["executed"] == venue.stats["fills"] == 2   # nothing counted twice
        await stop_pair(venue, r)

    arun(main())


def test_logout_and_end_of_session_do_not_reconnect():
    async def main():
        venue, r = await start_pair()
        await r.logout()
        await asyncio.sleep(0.05)
        assert not r.connected and r.counts["reconnects"] == 0
        assert venue.sessions["HFT"].conn is None
        r2 = Router("127.0.0.1", venue.port, heartbeat_s=0.2)
        await r2.start()
        venue.end_session("HFT")
        await asyncio.sleep(0.05)
        assert not r2.connected and r2.counts["reconnects"] == 0
        assert r2.events[-1] == {"event": "closed", "reason": "end_of_session", "error": None}
        assert r2.submit("AMZN", LOC, "B", 100, ASK, best_bid=BID, best_ask=ASK) is None
        assert r2.last_reject == "not_connected"
        await stop_pair(venue, r2)

    arun(main())


def test_order_state_machine_replace_cancel_and_rejects():
    async def main():
        venue, r = await start_pair(venue_config=VenueConfig(reject_symbols=("BAD",),
                                                             max_quantity=500))
        o = buy(r, 100, BID - 100, tif="0")
        await r.wait_settled()
        assert (o.state, o.leaves, o.accepted) == ("live", 100, True)
        assert int(r.risk.open_buy[LOC]) == 100
        new = r.replace(o.user_ref_num, 300, BID, best_bid=BID, best_ask=ASK)
        assert o.state == "pending_replace"
        await r.wait_settled()
        assert (o.state, new.state, new.leaves) == ("replaced", "live", 300)
        assert int(r.risk.open_buy[LOC]) == 300      # the original's 100 were released
        r.cancel(new.user_ref_num, 100)             # reduce to 100 (spec 2.3: new size)
        await r.wait_settled()
        assert (new.state, new.leaves) == ("live", 100)
        r.cancel(new.user_ref_num)
        await r.wait_settled()
        assert new.state == "canceled" and int(r.risk.open_buy[LOC]) == 0
        with pytest.raises(RouterError):
            r.cancel(new.user_ref_num)
        big = buy(r, 600)                            # venue's max quantity: Rejected (3.8)
        await r.wait_settled()
        assert big.state == "rejected" and big.reason == 3
        bad = r.submit("BAD", LOC, "B", 100, ASK, best_bid=BID, best_ask=ASK)
        await r.wait_settled()
        assert bad.state == "rejected" and bad.reason == 2
        assert int(r.risk.open_buy[LOC]) == 0 and r.risk.gross_notional == 0
        await stop_pair(venue, r)

    arun(main())


def test_kill_switch_cancels_every_open_order_and_blocks_new_ones(tmp_path):
    async def main():
        venue, r = await start_pair(tmp_path)
        opened = [buy(r, 100, BID - 100 * k, tif="0") for k in range(3)]
        opened += [sell(r, 100, ASK + 100 * k, tif="0") for k in range(2)]
        await r.wait_settled()
        assert all(o.state == "live" for o in opened)
        assert r.kill() == 5
        await r.wait_settled()
        assert all(o.state == "canceled" and o.reason == "U" for o in opened)
        assert not venue.sessions["HFT"].orders
        assert buy(r) is None and r.last_reject == "kill_switch"
        assert int(r.risk.open_buy[LOC]) == int(r.risk.open_sell[LOC]) == 0
        await stop_pair(venue, r)

    arun(main())


def test_pre_trade_gate_blocks_before_anything_is_sent():
    async def main():
        venue, r = await start_pair(risk_config=risk(max_order_size=200, max_position=300))
        assert buy(r, 300) is None and r.last_reject == "max_order_size"
        assert buy(r, 100, ASK + 100 * 60) is None and r.last_reject == "price_collar"
        assert r.submit("AMZN", LOC, "B", 100, ASK, best_bid=0, best_ask=ASK) is None
        assert r.last_reject == "bad_quote"
        a, b = buy(r, 200, BID - 100, tif="0"), buy(r, 100, BID - 100, tif="0")
        assert a and b and buy(r, 100, BID - 100, tif="0") is None
        assert r.last_reject == "max_position"   # worst case: 300 open buys
        await r.wait_settled()
        assert venue.stats["orders"] == 2        # the blocked ones never left
        await stop_pair(venue, r)

    arun(main())


def test_malformed_ouch_message_is_named_and_the_session_kept():
    async def main():
        venue, r = await start_pair()
        seq = len(venue.sessions["HFT"].log) + 1
        venue.inject_sequenced("HFT", b"E\x00\x00")              # truncated Order Executed
        venue.inject_sequenced("HFT", b"\xfe")                   # no such message type
        venue.inject_sequenced("HFT", b"C" + struct.pack(">QII", 1, 999, 5) + b"U")  # no order
        await r.wait_for(lambda: len(r.errors) == 3, 3)
        e1, e2, e3 = r.errors
        assert e1["seq"] == seq and "sequenced message" in e1["error"]
        assert "truncated" in e1["error"] and f"@ byte {e1['offset']}" in e1["error"]
        assert e2["seq"] == seq + 1 and "unknown OUCH 5.0 outbound message type" in e2["error"]
        assert e3["seq"] == seq + 2 and "UserRefNum 999" in e3["error"]
        assert r.connected and r.next_seq == seq + 3
        o = buy(r)                                               # still trading
        await r.wait_settled()
        assert o.state == "filled"
        await stop_pair(venue, r)

    arun(main())


def test_malformed_framing_closes_the_session_cleanly():
    async def main():
        venue, r = await start_pair()
        o = buy(r, 100, BID - 100, tif="0")
        await r.wait_settled()
        venue.inject_raw("HFT", b"\x00\x01H" + b"\x00\x00")      # heartbeat, then Length 0
        with pytest.raises(RouterError) as e:
            await r.wait_for(lambda: False, 3)
        assert isinstance(r.fatal, SoupProtocolError)
        assert "Packet Length 0" in str(e.value) and "@ byte" in str(e.value)
        assert f"next sequence number {r.next_seq}" in str(r.fatal)
        assert not r.connected and r.counts["reconnects"] == 0
        assert o.state == "live"                                  # state kept for recovery
        await asyncio.sleep(0.05)
        assert venue.sessions["HFT"].conn is None                 # the venue saw us leave
        await stop_pair(venue, r)

    arun(main())
