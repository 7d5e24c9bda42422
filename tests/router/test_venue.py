"""The venue simulator: fills against the replayed top of book with price-time priority,
reject rules, latency, Account Query, replay on login, and the ``hftaccel venue`` command."""

import asyncio
import subprocess
import sys
import time

import numpy as np
from router_helpers import ASK, BID, arun, buy, risk, sell, start_pair, stepped_market, stop_pair

from hftaccel.golden import ouch
from hftaccel.router import Market, Router, VenueConfig
from hftaccel.spec import book_record_dtype


def _decoded(venue, types):
    return [m for m in (ouch.decode("outbound", p) for p in venue.sessions["HFT"].log)
            if m["type"] in types]


def test_taker_fills_at_the_touch_up_to_displayed_size_then_ioc_cancels():
    async def main():
        venue, r = await start_pair(market=stepped_market())
        venue.now = 1500                           # ask ASK x 200
        a = buy(r, 150, ASK + 100)                 # better limit: still fills at the touch
        b = buy(r, 150, ASK)                       # same book state: only 50 left
        await r.wait_settled()
        assert (a.state, a.filled, b.filled, b.state) == ("filled", 150, 50, "canceled")
        execs = _decoded(venue, "E")
        assert [(e["quantity"], e["price"], e["liquidity_flag"]) for e in execs] == \
            [(150, ASK, b"R"), (50, ASK, b"R")]
        assert _decoded(venue, "C")[-1]["reason"] == b"I" and b.reason == "I"
        venue.now = 2500                           # next state: ask ASK-100 x 400, fresh size
        c = buy(r, 300, ASK)
        await r.wait_settled()
        assert c.filled == 300 and _decoded(venue, "E")[-1]["price"] == ASK - 100
        await stop_pair(venue, r)

    arun(main())


def test_resting_orders_fill_by_price_then_time_when_the_book_crosses_them():
    async def main():
        venue, r = await start_pair(market=stepped_market())
        venue.now = 1500
        s1 = sell(r, 200, BID + 200, tif="0")      # resting asks below the future bid
        s2 = sell(r, 200, BID + 100, tif="0")      # better price, later
        s3 = sell(r, 200, BID + 200, tif="0")      # same price as s1, later
        await r.wait_settled()
        assert all(o.state == "live" for o in (s1, s2, s3))
        venue.now = 3500                           # bid BID+300 x 300
        venue.sweep()
        await r.wait_for(lambda: s2.filled == 200 and s1.filled == 100, 3)
        assert s3.filled == 0 and s3.state == "live"
        assert [e["user_ref_num"] for e in _decoded(venue, "E")] == [s2.user_ref_num,
                                                                      s1.user_ref_num]
        assert _decoded(venue, "E")[0]["price"] == BID + 100   # passive: its own price
        assert _decoded(venue, "E")[0]["liquidity_flag"] == b"A"
        await stop_pair(venue, r)

    arun(main())


def test_reject_rules_and_latency():
    async def main():
        venue, r = await start_pair(venue_config=VenueConfig(reject_rate=1.0, latency_us=20_000))
        t0 = time.perf_counter()
        o = buy(r)
        await r.wait_settled()
        assert time.perf_counter() - t0 >= 0.02
        assert o.state == "rejected" and o.reason == 1
        assert venue.stats["rejects"] == 1 and r.risk.gross_notional == 0
        await stop_pair(venue, r)

    arun(main())


def test_login_replays_from_the_requested_sequence_number():
    async def main():
        venue, r = await start_pair()
        buy(r)
        await r.wait_settled()
        log = list(venue.sessions["HFT"].log)
        r.reconnect = False                        # the new login takes the session over
        got = []
        other = Router("127.0.0.1", venue.port, heartbeat_s=0.2)
        other._on_sequenced = lambda batch: got.extend(batch)
        other.next_seq = 2
        await other.start()
        await asyncio.sleep(0.05)
        assert [p for _, p, _ in got][:len(log) - 1] == log[1:]
        assert got[0][0] == 2
        await other.logout()
        await stop_pair(venue, r)

    arun(main())


def test_account_query_reports_the_next_user_ref_num():
    async def main():
        venue, r = await start_pair()
        buy(r)
        buy(r)
        await r.wait_settled()
        r._query_mark = r.risk.next_user_ref_num
        r._query_pending = True
        r._send_message({"type": "Q", "options": None}, 0, None)
        await r.wait_settled()
        q = [e for e in r.events if e["event"] == "account_query"]
        assert q[-1]["next_user_ref_num"] == 3
        await stop_pair(venue, r)

    arun(main())


def test_market_from_book_records():
    rec = np.zeros(3, book_record_dtype(8))
    rec["stock_locate"] = [5, 9, 5]
    rec["timestamp"] = [10, 20, 30]
    rec["bid_price"][:, 0] = [100, 200, 110]
    rec["ask_price"][:, 0] = [120, 220, 130]
    rec["bid_shares"][:, 0] = 7
    rec["ask_shares"][:, 0] = 8
    symbols = {5: b"AAA", 9: b"BBB"}
    m = Market.from_records(rec, symbols)
    assert m.symbols == {b"AAA     ": 5, b"BBB     ": 9}
    assert m.top(5, 9) == (-1, 0, 0, 0, 0)
    assert m.top(5, 29) == (0, 100, 7, 120, 8) and m.top(5, 30) == (1, 110, 7, 130, 8)
    assert m.top(9, 10 ** 9)[1] == 200 and m.start_ns == 10


def test_venue_command_serves_a_router(tmp_path):
    from hftaccel.feeds import synthetic

    itch = tmp_path / "day.itch"
    synthetic.write_itch(itch, 5000, n_symbols=3, seed=1)
    proc = subprocess.Popen([sys.executable, "-m", "hftaccel.cli", "venue", str(itch),
                             "--port", "0", "--speed", "1000"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        host, port = proc.stdout.readline().strip().rsplit(":", 1)

        async def main():
            r = Router(host, int(port), risk_config=risk(), heartbeat_s=0.2)
            await r.start()
            await r.wait_settled()
            o = r.submit("NOPE", 1, "B", 100, ASK, best_bid=BID, best_ask=ASK)
            await r.wait_settled()
            assert o.state == "rejected" and o.reason == 5      # no market for that symbol
            await r.close()

        arun(main())
    finally:
        proc.terminate()
        proc.wait(10)
