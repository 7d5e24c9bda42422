"""hftaccel.model.evaluate: mark-to-market of signals on hand-built books."""

import numpy as np
import pytest

from hftaccel.model.evaluate import mark_to_market
from hftaccel.spec import BOOK_RECORD_DTYPE


def _book(rows):
    """rows: (locate, bid, ask) per update."""
    rec = np.zeros(len(rows), BOOK_RECORD_DTYPE)
    for k, (loc, bid, ask) in enumerate(rows):
        rec[k]["seq"] = k
        rec[k]["stock_locate"] = loc
        rec[k]["bid_price"][0] = bid
        rec[k]["ask_price"][0] = ask
    return rec


def test_buy_and_sell_marked_gross_and_net():
    # one symbol; spread 2 ticks; the mid rises by 3 ticks between update 0 and 2
    rec = _book([(1, 1_000_000, 1_000_200), (1, 1_000_100, 1_000_300),
                 (1, 1_000_300, 1_000_500), (1, 1_000_300, 1_000_500)])
    side = np.array([1, -1, 0, 0])
    r = mark_to_market(rec, side, horizon=2, shares=100, tick_size=100)
    # buy at 0: gross = mid2 - mid0 = 1_000_400 - 1_000_100 = +300 -> 3 ticks;
    #           net = bid2 - ask0 = 1_000_300 - 1_000_200 = +100 -> 1 tick
    # sell at 1: gross = -(mid3 - mid1) = -(1_000_400 - 1_000_200) = -200 -> -2 ticks;
    #            net = bid1 - ask3 = 1_000_100 - 1_000_500 = -400 -> -4 ticks
    assert r["signals"] == 2 and r["buy"] == 1 and r["sell"] == 1 and r["unmarked"] == 0
    assert r["gross_ticks_per_share"] == pytest.approx((3 - 2) / 2)
    assert r["net_ticks_per_share"] == pytest.approx((1 - 4) / 2)
    assert r["net_hit_rate"] == 0.5
    assert r["gross_pnl_usd"] == pytest.approx((300 - 200) * 100 / 10_000)
    assert r["net_pnl_usd"] == pytest.approx((100 - 400) * 100 / 10_000)
    assert r["spread_cost_usd"] == pytest.approx(r["gross_pnl_usd"] - r["net_pnl_usd"])


def test_horizon_counts_updates_of_the_same_symbol_only():
    rec = _book([(1, 100, 300), (2, 5000, 5200), (2, 5100, 5300), (1, 200, 400),
                 (2, 0, 5300)])
    side = np.array([1, 0, 0, 0, 1])
    r = mark_to_market(rec, side, horizon=1, tick_size=100)
    # locate 1: entry 0 marked at update 3 (locate 2 updates in between do not count);
    # locate 2 signal at 4 has no later update -> unmarked
    assert r["signals"] == 1 and r["unmarked"] == 1
    assert r["gross_ticks_per_share"] == pytest.approx(1.0)


def test_missing_side_and_start():
    rec = _book([(1, 0, 300), (1, 100, 300), (1, 100, 300), (1, 100, 300)])
    side = np.array([1, 1, -1, 0])
    r = mark_to_market(rec, side, horizon=1, start=1)
    # index 0 before start; index 1 buy marked at 2; index 2 sell marked at 3
    assert (r["signals"], r["buy"], r["sell"]) == (2, 1, 1)
    r = mark_to_market(rec, np.array([1, 0, 0, 0]), horizon=1)
    assert r["signals"] == 0 and r["unmarked"] == 1  # empty bid at entry


def test_bad_arguments():
    rec = _book([(1, 100, 200)])
    with pytest.raises(ValueError, match="horizon must be >= 1"):
        mark_to_market(rec, np.zeros(1), horizon=0)
    with pytest.raises(ValueError, match="side has shape"):
        mark_to_market(rec, np.zeros(2), horizon=1)
