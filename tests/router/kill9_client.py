"""Router process for the kill -9 recovery test (run as a script; not a test module).

usage: kill9_client.py PORT JOURNAL

Sends orders one at a time (resting buys below the touch and marketable IOC sells, in turn),
prints ``ACK <UserRefNum> <state>`` once the venue answered each (after it was journaled) and
keeps going until it is killed.
"""

import asyncio
import sys

from router_helpers import ASK, BID, LOC, risk

from hftaccel.router import Router


async def main(port: int, journal: str) -> None:
    r = Router("127.0.0.1", port, risk_config=risk(max_position=100_000), journal=journal,
               heartbeat_s=0.2)
    await r.start()
    await r.wait_settled()
    k = 0
    while True:
        if k % 2 == 0:
            o = r.submit("AMZN", LOC, "B", 100, BID - 100 * (k % 7), best_bid=BID, best_ask=ASK,
                         time_in_force="0")
        else:
            o = r.submit("AMZN", LOC, "S", 100, BID, best_bid=BID, best_ask=ASK)
        await r.wait_settled([o.user_ref_num])
        print(f"ACK {o.user_ref_num} {o.state}", flush=True)
        k += 1


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
