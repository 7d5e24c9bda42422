"""`hftaccel run`: the main job on the embedded sample and on every kind of input."""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from hftaccel.cli import app
from hftaccel.feeds import source
from hftaccel.golden import ouch
from hftaccel.spec.risk import REJECT_REASONS

DATA = Path(__file__).resolve().parents[1] / "data"
runner = CliRunner()

REQUIRED_KEYS = {"messages", "messages_by_type", "book_updates", "bad_references", "gaps",
                 "duplicates", "throughput_msgs_per_s", "book_check",
                 "signals", "orders", "risk_rejects", "model"}


def _run_json(*args):
    res = runner.invoke(app, ["run", *map(str, args), "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def sample_summary():
    return _run_json()


def test_demo_replays_the_amzn_day_exactly(sample_summary):
    s = sample_summary
    assert REQUIRED_KEYS <= set(s)
    assert s["kind"] == "pcap" and s["input"].endswith("AMZN_2012-06-21.pcap")
    assert s["book_check"]["rows"] == 57_515
    assert s["book_check"]["mismatches"] == 0
    assert sum(s["bad_references"].values()) == 0
    assert s["gaps"] == [] and s["duplicates"] == 0
    by_type = s["messages_by_type"]
    # every LOBSTER row became one message: E for visible executions, P for hidden ones, ...
    assert by_type["P"] > 0 and by_type["E"] > 0 and by_type["A"] > 0 and by_type["D"] > 0
    assert s["messages"] == sum(by_type.values())
    assert s["book_updates"] == sum(by_type.get(t, 0) for t in "AFECXDUP")
    assert s["throughput_msgs_per_s"] > 0


def test_lobster_input_directly(tmp_path):
    for kind in ("message", "orderbook"):
        name = f"AMZN_2012-06-21_34200000_57600000_{kind}_1.csv.gz"
        shutil.copy(source.embedded_sample().parent / name, tmp_path / name)
    s = _run_json(tmp_path / "AMZN_2012-06-21_34200000_57600000_message_1.csv.gz")
    assert s["kind"] == "lobster"
    assert s["book_check"] == {"rows": 57_515, "mismatches": 0, "first_mismatch": None}
    assert s["synthesized"]["total"] > 0


def test_demo_scores_and_orders(sample_summary):
    s = sample_summary
    assert s["signals"]["total"] == s["signals"]["buy"] + s["signals"]["sell"] > 0
    rejected = sum(s["risk_rejects"].values())
    assert s["orders"] > 0 and s["orders"] + rejected == s["signals"]["total"]
    assert set(s["risk_rejects"]) == set(REJECT_REASONS)
    card = Path(s["model"]["card"])
    assert card.name == "default.json"
    assert s["model"]["card_sha256"] == hashlib.sha256(card.read_bytes()).hexdigest()
    assert s["model"]["onnx_sha256"] == hashlib.sha256(
        Path(s["model"]["path"]).read_bytes()).hexdigest()
    ev = s["evaluation"]
    assert ev["basis"].startswith("model test split") and ev["horizon"] == 20
    assert ev["signals"] > 0 and ev["orders"]["signals"] <= ev["signals"]
    assert ev["spread_cost_usd"] == pytest.approx(ev["gross_pnl_usd"] - ev["net_pnl_usd"])


def test_kill_switch_blocks_every_order():
    s = _run_json("--kill-switch")
    assert s["orders"] == 0
    assert s["risk_rejects"]["kill_switch"] == s["signals"]["total"] > 0


def test_out_folder_gets_json_and_parquet(tmp_path, sample_summary):
    res = runner.invoke(app, ["run", "--out", str(tmp_path), "--records", "all"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["book_updates"] == sample_summary["book_updates"]
    # the OUCH 5.0 Enter Orders as they would leave on the SoupBinTCP session
    orders = ouch.decode_stream("inbound", (tmp_path / "orders.ouch").read_bytes())
    assert len(orders) == summary["orders"]
    assert {o["type"] for o in orders} == {"O"} and orders[0]["symbol"].strip() == b"AMZN"
    assert [o["user_ref_num"] for o in orders] == list(range(1, len(orders) + 1))
    signals = pq.read_table(tmp_path / "signals.parquet")
    assert signals.num_rows == summary["book_updates"]
    assert int((signals.column("verdict").to_numpy() == 1).sum()) == summary["orders"]
    table = pq.read_table(tmp_path / "book.parquet")
    assert table.num_rows == summary["book_updates"]
    assert {"seq", "timestamp", "bid_price_1", "ask_shares_8", "msg_type"} <= set(
        table.column_names)
    bid = table.column("bid_price_1").to_numpy()
    ask = table.column("ask_price_1").to_numpy()
    both = (bid > 0) & (ask > 0)
    assert np.all(bid[both] < ask[both])  # never crossed


def test_real_itch_file():
    s = _run_json(DATA / "itch" / "nasdaq_itch50_2019_first1000msgs.itch")
    assert s["kind"] == "itch" and s["messages"] == 1000
    assert s["messages_by_type"] == {"S": 1, "R": 993, "H": 3, "Y": 3}
    assert s["book_updates"] == 0 and s["book_check"] is None


def test_real_pcap_capture():
    s = _run_json(DATA / "itch_pcap" / "AddOrderNoMpidAttributionMessage.pcap")
    assert s["kind"] == "pcap" and s["messages_by_type"] == {"A": 1}
    assert s["book_updates"] == 1


def test_malformed_input_is_named(tmp_path):
    bad = tmp_path / "bad.itch"
    data = (DATA / "itch" / "nasdaq_itch50_2019_first1000msgs.itch").read_bytes()
    bad.write_bytes(data[:-5])
    res = runner.invoke(app, ["run", str(bad), "--json"])
    assert res.exit_code == 2
    assert "bad.itch" in res.output and "byte offset" in res.output
    s = _run_json(bad, "--lenient")
    assert s["messages"] == 999 and s["skipped"]["truncated"] == 1


def test_missing_input():
    res = runner.invoke(app, ["run", "/nonexistent/x.itch"])
    assert res.exit_code == 2 and "no such input file" in res.output


def test_convert_then_run_checks_the_book(tmp_path):
    """LOBSTER -> MoldUDP64 pcap with the CLI, then replay it: the LOBSTER files beside it are
    found and the book is checked on every row."""
    for kind in ("message", "orderbook"):
        name = f"AMZN_2012-06-21_34200000_57600000_{kind}_1.csv.gz"
        shutil.copy(source.embedded_sample().parent / name, tmp_path / name)
    pcap = tmp_path / "AMZN_2012-06-21_vlan.pcapng"
    res = runner.invoke(app, ["convert", str(tmp_path / "AMZN_2012-06-21_34200000_57600000_"
                                               "message_1.csv.gz"), str(pcap)])
    assert res.exit_code == 0, res.output
    s = _run_json(pcap)
    assert s["kind"] == "pcap" and s["book_check"]["mismatches"] == 0
    assert s["book_check"]["rows"] == 57_515


def test_generate_then_run(tmp_path):
    out = tmp_path / "synth.itch.gz"
    res = runner.invoke(app, ["generate", str(out), "--messages", "20000", "--symbols", "50",
                              "--seed", "3"])
    assert res.exit_code == 0, res.output
    s = _run_json(out)
    assert s["kind"] == "itch" and s["book_check"] is None
    assert sum(s["bad_references"].values()) == 0
    assert s["messages_by_type"]["R"] == 50
    assert s["book_updates"] == sum(s["messages_by_type"].get(t, 0) for t in "AFECXDUP")


def test_records_modes(tmp_path, sample_summary):
    """--records bbo writes level 1 only, none no book file, all (today's default) every
    level; signals and orders are the same whatever the mode, and book.parquet has one zstd
    row group per step."""
    runner.invoke(app, ["run", "--out", str(tmp_path / "all")])
    for mode in ("bbo", "none"):
        args = ["run", "--out", str(tmp_path / mode), "--records", mode]
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
        for name in ("signals.parquet", "orders.ouch"):
            assert (tmp_path / mode / name).read_bytes() == (tmp_path / "all" / name).read_bytes()
    assert not (tmp_path / "none" / "book.parquet").exists()
    bbo = pq.ParquetFile(tmp_path / "bbo" / "book.parquet")
    assert "bid_price_1" in bbo.schema.names and "bid_price_2" not in bbo.schema.names
    assert bbo.metadata.num_rows == sample_summary["book_updates"]
    assert bbo.metadata.num_row_groups > 1
    assert bbo.metadata.row_group(0).column(0).compression == "ZSTD"
    full = pq.read_table(tmp_path / "all" / "book.parquet")
    assert pq.read_table(tmp_path / "bbo" / "book.parquet").equals(
        full.select(bbo.schema.names))
    res = runner.invoke(app, ["run", "--records", "some"])
    assert res.exit_code == 2 and "--records" in res.output
