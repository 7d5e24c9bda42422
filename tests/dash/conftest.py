"""Runs the dashboard tests read: the AMZN day (routed through the venue simulator, so fills,
position and P&L exist) and a small 4-symbol synthetic day, each made once per session by
``hftaccel run --out`` on the cpu backend, plus a tick-to-trade report in the format of
``build/sim/latency.json``."""

import json

import pytest
from typer.testing import CliRunner

from hftaccel.cli import app
from hftaccel.feeds import synthetic

#: tick-to-trade of the AMZN day through the RTL (`make sim`, README), latency.json format
LATENCY = {
    "input": "AMZN_2012-06-21.pcap", "events": 86859, "book_updates": 86852,
    "tick_to_trade_cycles": {"n": 3529, "min": 27, "median": 29.0, "p99": 51.0, "max": 60,
                             "mean": 31.07},
    "clock_mhz": 156.25,
    "tick_to_trade_ns": {"n": 3529, "min": 172.8, "median": 185.6, "p99": 326.4, "max": 384.0,
                         "mean": 198.8},
}


def _run(*args):
    res = CliRunner().invoke(app, ["run", *map(str, args)])
    assert res.exit_code == 0, res.output


@pytest.fixture(scope="session")
def amzn_run(tmp_path_factory):
    """Folder of `hftaccel run --venue-sim --out DIR` on the embedded AMZN day."""
    out = tmp_path_factory.mktemp("amzn") / "run"
    _run("--venue-sim", "--out", out)
    return out


@pytest.fixture(scope="session")
def synth_run(tmp_path_factory):
    """Folder of `hftaccel run --out DIR` on 20,000 synthetic messages over 4 symbols."""
    d = tmp_path_factory.mktemp("synth")
    synthetic.write_itch(d / "synth.itch", 20_000, n_symbols=4, seed=1)
    _run(d / "synth.itch", "--out", d / "run")
    return d / "run"


@pytest.fixture(scope="session")
def latency_json(tmp_path_factory):
    p = tmp_path_factory.mktemp("latency") / "latency.json"
    p.write_text(json.dumps(LATENCY))
    return p
