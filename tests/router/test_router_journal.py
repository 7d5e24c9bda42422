"""Journal format, torn tails, corruption, and recovery after a crash (in process and kill -9)."""

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from router_helpers import (ASK, BID, LOC, arun, buy, flat_market, risk, sell, start_pair,
                            stop_pair)

from hftaccel.router import Journal, JournalError, Router, Venue, VenueConfig, read_journal

HERE = Path(__file__).resolve().parent


def test_records_round_trip_and_a_torn_tail_is_cut(tmp_path):
    path = tmp_path / "j"
    j = Journal(path)
    j.append("L", Journal.login_body(b"  SESSION1", 7))
    j.append("S", Journal.sequenced_body(7, b"S" + bytes(9)))
    j.sync()
    j.append("K", b"\x01")
    j.sync()
    j.close()
    recs, end, torn = read_journal(path)
    assert [r.kind for r in recs] == ["L", "S", "K"] and torn is None
    assert Journal.parse_login(recs[0].body) == (b"  SESSION1", 7)
    assert Journal.parse_sequenced(recs[1].body) == (7, b"S" + bytes(9))
    data = path.read_bytes()
    path.write_bytes(data[:-1])                       # a crash in the middle of the last write
    recs, end, torn = read_journal(path)
    assert [r.kind for r in recs] == ["L", "S"] and "torn tail" in torn
    assert f"@ byte {recs[1].offset + 9 + 18}" in torn   # 8 header + kind + 8 seq + 10 payload
    j = Journal(path)                                 # reopening truncates, then appends
    assert j.torn is not None and os.path.getsize(path) == end
    j.append("K", b"\x00")
    j.close()
    assert [r.kind for r in read_journal(path)[0]] == ["L", "S", "K"]


def test_corruption_before_good_records_is_an_error(tmp_path):
    path = tmp_path / "j"
    j = Journal(path)
    for k in range(3):
        j.append("K", bytes([k % 2]))
    j.close()
    data = bytearray(path.read_bytes())
    data[8 + 8] ^= 0xFF                               # first record's kind byte
    path.write_bytes(bytes(data))
    with pytest.raises(JournalError, match="@ byte 8: corrupt record: CRC mismatch"):
        read_journal(path)
    path.write_bytes(b"NOTAJRNL" + bytes(10))
    with pytest.raises(JournalError, match="not an hftaccel journal"):
        read_journal(path)


def _state(r: Router) -> dict:
    return {
        "orders": {u: (o.state, o.leaves, o.filled, o.accepted)
                   for u, o in r.orders.orders.items()},
        "position": r.positions.summary()["by_symbol"],
        "risk": (r.risk.position[LOC], r.risk.open_buy[LOC], r.risk.open_sell[LOC],
                 r.risk.gross_notional, r.risk.next_user_ref_num, r.risk.kill_switch,
                 tuple(r.risk.ring[:8]), tuple(r.risk.scalars)),
        "next_seq": r.next_seq, "session": r.session,
    }


def test_restart_from_the_journal_rebuilds_the_same_router(tmp_path):
    async def main():
        venue, a = await start_pair(tmp_path)
        rest = [buy(a, 100, BID - 100 * k, tif="0") for k in range(3)]
        buy(a, 150)
        sell(a, 300)
        await a.wait_settled()
        a.replace(rest[0].user_ref_num, 200, BID, best_bid=BID, best_ask=ASK)
        a.cancel(rest[1].user_ref_num)
        await a.wait_settled()
        a.kill()
        await a.wait_settled()
        before = _state(a)
        a.reconnect = False
        a.drop_connection()                           # crash: no logout, nothing flushed
        b = Router("127.0.0.1", venue.port, risk_config=risk(), journal=tmp_path / "router.journal",
                   heartbeat_s=0.2)
        assert _state(b) == before and b.replayed["torn"] is None
        await b.start()
        await b.wait_settled()
        assert b.next_seq == len(venue.sessions["HFT"].log) + 1 == before["next_seq"] + 1
        assert buy(b) is None and b.last_reject == "kill_switch"   # the kill switch survived
        await stop_pair(venue, b)

    arun(main())


def test_kill_9_loses_no_acknowledged_order_or_fill(tmp_path):
    journal = tmp_path / "router.journal"

    async def main():
        venue = Venue(flat_market(size=10 ** 6), VenueConfig(heartbeat_s=0.2))
        port = await venue.start()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(HERE / "kill9_client.py"), str(port), str(journal),
            stdout=asyncio.subprocess.PIPE, cwd=str(HERE))
        acked = {}
        while len(acked) < 40:
            line = await asyncio.wait_for(proc.stdout.readline(), 20)
            assert line, "the client died"
            _, urn, state = line.decode().split()
            acked[int(urn)] = state
        proc.send_signal(signal.SIGKILL)              # mid-stream: an order may be in flight
        await proc.wait()
        assert proc.returncode == -signal.SIGKILL
        sess = venue.sessions["HFT"]
        await asyncio.sleep(0.05)
        # while the router is dead the market comes down through the resting bids
        venue.market.quotes[LOC] = tuple(a.copy() for a in venue.market.quotes[LOC])
        venue.market.quotes[LOC][3][0] = BID - 300
        venue.sweep()
        r = Router("127.0.0.1", port, risk_config=risk(max_position=100_000), journal=journal,
                   heartbeat_s=0.2)
        await r.start()
        await r.wait_settled()
        # every order the client saw acknowledged is there, with at least that much progress
        for urn, state in acked.items():
            assert urn in r.orders and r.orders[urn].accepted
        # the router's view equals the venue's: every order, every fill, the sequence number
        assert r.next_seq == len(sess.log) + 1
        assert r.counts["executed"] == venue.stats["fills"]
        assert r.positions.by_locate[LOC]["position"] == sum(
            (1 if r.orders[u].side == "B" else -1) * r.orders[u].filled for u in r.orders.orders)
        filled = sum(o.filled for o in r.orders.orders.values())
        assert filled == venue.stats["filled_shares"]
        assert not any(o.is_pending for o in r.orders.orders.values())
        venue_open = sum(o.leaves for o in sess.orders.values() if o.side == "B")
        assert int(r.risk.open_buy[LOC]) == venue_open
        assert sorted(u for u, o in r.orders.orders.items() if o.state == "live") == \
            sorted(sess.orders)
        await stop_pair(venue, r)

    arun(main(), 60)


def test_journaled_order_that_never_reached_the_venue_is_voided(tmp_path):
    async def main():
        venue, a = await start_pair(tmp_path)
        sent = buy(a, 100, BID - 100, tif="0")
        await a.wait_settled()
        a.client.send = lambda payload: None          # the next order dies on the wire
        lost = buy(a, 200, BID - 200, tif="0")
        # the group commit: journaled, fsync'd, "sent"; an fsync still in flight for the first
        # order's answers defers it by a worker thread's turn, so wait for it (a loaded machine
        # takes more than one turn of the event loop)
        while a._outq or a._flush_handle is not None or a._fsync_future is not None:
            await asyncio.sleep(0.001)
        assert int(a.risk.open_buy[LOC]) == 300
        a.reconnect = False
        a.drop_connection()
        b = Router("127.0.0.1", venue.port, risk_config=risk(), journal=tmp_path / "router.journal",
                   heartbeat_s=0.2)
        assert b.orders[lost.user_ref_num].state == "pending_new"
        await b.start()
        await b.wait_settled()
        assert b.orders[lost.user_ref_num].state == "void" and b.counts["voided"] == 1
        assert b.orders[sent.user_ref_num].state == "live"
        assert int(b.risk.open_buy[LOC]) == 100       # the lost order's risk was released
        assert b.risk.gross_notional == 100 * (BID - 100)
        assert buy(b, 100, BID - 100, tif="0").user_ref_num == lost.user_ref_num + 1
        await b.wait_settled()
        c = Router("127.0.0.1", venue.port, risk_config=risk(), journal=tmp_path / "router.journal")
        assert c.orders[lost.user_ref_num].state == "void"   # the V record replays
        await stop_pair(venue, b)

    arun(main())
