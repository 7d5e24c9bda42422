"""``hftaccel run --venue-sim`` / ``--route HOST:PORT``: the pipeline's orders through the router;
the summary gains fills, position and P&L."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from hftaccel.cli import app
from hftaccel.router import Router
from hftaccel.spec.risk import RiskConfig

runner = CliRunner()


def _run_json(*args):
    res = runner.invoke(app, ["run", *map(str, args), "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("route")
    return _run_json("--venue-sim", "--threshold", "1.5", "--out", out), out


def test_venue_sim_summary_has_fills_position_and_pnl(sim_run):
    s, out = sim_run
    r = s["routing"]
    m = r["messages"]
    assert s["orders"] > 0 and m["enter"] + sum(r["risk_rejects"].values()) == s["orders"]
    assert m["accepted"] + m["rejected"] == m["enter"]
    assert s["fills"] == r["fills"] == r["venue_stats"]["fills"] > 0
    assert r["filled_shares"] == r["venue_stats"]["filled_shares"]
    assert set(s["position"]) == {"AMZN"} and s["position"] == r["position"]
    assert isinstance(s["pnl_usd"], float) and r["n_errors"] == 0 and r["fatal"] is None
    assert not any(k in r["order_states"] for k in ("pending_new", "live", "pending_cancel"))
    assert json.loads((out / "summary.json").read_text())["routing"]["fills"] == s["fills"]


def test_journal_of_the_run_replays_to_the_same_fills(sim_run):
    s, out = sim_run
    # replay only (never connects); recovery needs the run's risk config
    again = Router("127.0.0.1", 1, risk_config=RiskConfig(**s["risk_config"]),
                   journal=out / "router.journal")
    assert again.positions.fills == s["fills"]
    assert again.summary()["position"] == s["position"]


def test_kill_switch_routes_nothing_and_the_table_shows_routing(tmp_path):
    res = runner.invoke(app, ["run", "--venue-sim", "--kill-switch", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["orders"] == 0 and s["fills"] == 0 and s["position"] == {}
    assert s["routing"]["messages"]["enter"] == 0
    for row in ("routed to", "router risk rejects", "fills", "position", "P&L"):
        assert row in res.stdout


def test_bad_route_arguments():
    res = runner.invoke(app, ["run", "--route", "nowhere", "--json"])
    assert res.exit_code == 2 and "HOST:PORT" in res.output
    res = runner.invoke(app, ["run", "--route", "127.0.0.1:1", "--venue-sim", "--json"])
    assert res.exit_code == 2 and "not both" in res.output


def test_route_to_a_running_venue_command():
    proc = subprocess.Popen([sys.executable, "-m", "hftaccel.cli", "venue", "--port", "0",
                             "--speed", "100000"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        where = proc.stdout.readline().strip()
        s = _run_json("--route", where, "--threshold", "2.0")
        r = s["routing"]
        assert r["venue"] == where and r["messages"]["enter"] > 0
        assert r["messages"]["accepted"] + r["messages"]["rejected"] == r["messages"]["enter"]
        assert s["fills"] == r["fills"] and r["fatal"] is None
    finally:
        proc.terminate()
        proc.wait(10)
