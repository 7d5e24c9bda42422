"""The streaming replay: chunked runs equal the one-shot run, at every chunk size."""

import dataclasses
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from hftaccel.backends import cpu
from hftaccel.backends.output import RunWriter
from hftaccel.feeds import itch, source, synthetic
from hftaccel.model.evaluate import mark_to_market

ONE_SHOT = {"chunk_bytes": 1 << 30, "chunk_events": 1 << 26}
TIMING = ("throughput_msgs_per_s", "stage_seconds")


def _same(a: cpu.RunResult, b: cpu.RunResult) -> None:
    sa = {k: v for k, v in a.summary.items() if k not in TIMING}
    sb = {k: v for k, v in b.summary.items() if k not in TIMING}
    assert sa == sb
    assert a.records.tobytes() == b.records.tobytes()
    x, y = a.extra["scoring"], b.extra["scoring"]
    for f in ("features", "logits", "decisions", "orders"):
        assert getattr(x, f).tobytes() == getattr(y, f).tobytes(), f
    assert x.ouch == y.ouch
    assert np.array_equal(a.feed.events, b.feed.events)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "small.itch"
    synthetic.write_itch(path, 3_000, n_symbols=7, seed=5)
    return path


@pytest.fixture(scope="module")
def medium(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "medium.itch.gz"
    synthetic.write_itch(path, 60_000, n_symbols=40, seed=2)
    return path


@pytest.mark.parametrize("chunk_bytes,chunk_events", [(1, 1), (7, 3), (33, 1000), (4096, 5)])
def test_tiny_chunks_cut_inside_messages(small, chunk_bytes, chunk_events):
    """Chunks of 1, 7 and 33 bytes end inside length prefixes and message bodies."""
    _same(cpu.run(small, **ONE_SHOT), cpu.run(small, chunk_bytes=chunk_bytes,
                                              chunk_events=chunk_events))


@pytest.mark.parametrize("chunk_bytes,chunk_events", [(10_007, 999), (1 << 16, 65_536),
                                                      (250_001, 4_096)])
def test_gzip_stream_chunks(medium, chunk_bytes, chunk_events):
    one = cpu.run(medium, **ONE_SHOT)
    assert one.summary["orders"] > 0 and one.summary["streamed"]
    _same(one, cpu.run(medium, chunk_bytes=chunk_bytes, chunk_events=chunk_events))


def test_one_shot_equals_the_whole_file_decoder(medium):
    """The chunked reader yields what read_file decodes at once, and the evaluation equals
    mark_to_market on the whole day."""
    whole = itch.read_file(medium, events=True)
    parts = list(itch.read_chunks(medium, chunk_bytes=777, events=True))
    assert np.array_equal(np.concatenate([p.result.events for p in parts]), whole.events)
    msgs = itch.concat([p.result.messages for p in parts])
    assert msgs.keys() == whole.messages.keys()
    for t in msgs:
        assert np.array_equal(msgs[t], whole.messages[t])
    res = cpu.run(medium, chunk_bytes=5_000, chunk_events=333)
    sc = res.extra["scoring"]
    side = np.where(sc.decisions["intent"] == 1, 1, np.where(sc.decisions["intent"] == 2, -1, 0))
    ev = res.summary["evaluation"]
    want = mark_to_market(res.records, side, horizon=ev["horizon"], start=ev["start"])
    assert {k: ev[k] for k in want} == want


def test_lenient_errors_name_whole_file_offsets(tmp_path, small):
    data = bytearray(small.read_bytes())
    data[2 + 12 * 0 + 0] = ord("?")       # first message type unknown (after S)
    bad = tmp_path / "bad.itch"
    bad.write_bytes(bytes(data[:-3]))     # and a truncated tail
    with pytest.raises(itch.ItchError) as one:
        cpu.run(bad, **ONE_SHOT)
    with pytest.raises(itch.ItchError) as chunked:
        cpu.run(bad, chunk_bytes=50, chunk_events=7)
    assert str(one.value) == str(chunked.value)
    _same(cpu.run(bad, lenient=True, **ONE_SHOT), cpu.run(bad, lenient=True, chunk_bytes=50,
                                                        chunk_events=7))


def test_sample_pcap_in_steps():
    """The embedded capture (LOBSTER book check and test-split evaluation) in small steps."""
    one = cpu.run(None, **ONE_SHOT)
    assert one.summary["book_check"]["mismatches"] == 0
    _same(one, cpu.run(None, chunk_bytes=50_000, chunk_events=777))


def test_symbols_as_of_each_order():
    """A Stock Directory message in the middle of a step names the orders after it only, and
    one after the step's last event waits for the next step."""
    from hftaccel.spec.risk import DECISION_DTYPE

    dec = np.zeros(4, DECISION_DTYPE)
    dec["seq"] = [1, 5, 9, 12]
    dec["verdict"] = 1
    dec["stock_locate"] = 3
    dec["user_ref_num"] = [1, 2, 3, 4]
    dec["side"], dec["shares"], dec["price"] = ord("B"), 100, 1_000_000
    r = itch.empty("R", 2)
    r["seq"], r["stock_locate"], r["stock"] = [4, 20], 3, [b"NEW     ", b"LATER   "]
    events = np.zeros(12, itch.spec.ORDER_EVENT_DTYPE)
    events["seq"] = np.arange(1, 13)
    base = cpu.symbol_table({})
    orders, table, rest = cpu._orders(dec, base, r, events)
    assert [o.strip() for o in orders["symbol"]] == [b"L00003", b"NEW", b"NEW", b"NEW"]
    assert table[3].strip() == b"NEW" and base[3] == b"L00003" and rest["seq"].tolist() == [20]


def test_interrupted_run_leaves_valid_outputs(tmp_path, medium):
    calls = []
    writer = RunWriter(tmp_path, records="bbo")
    res = cpu.run(medium, chunk_bytes=100_000, sink=writer, keep=False,
                  stop=lambda: calls.append(1) or len(calls) >= 3)
    s = res.summary
    assert s["complete"] is False and len(calls) == 3
    writer.finish(s)
    full = cpu.run(medium, keep=False).summary
    assert 0 < s["book_updates"] < full["book_updates"]
    book = pq.read_table(tmp_path / "book.parquet")
    signals = pq.read_table(tmp_path / "signals.parquet")
    assert book.num_rows == signals.num_rows == s["book_updates"]
    assert int((signals.column("verdict").to_numpy() == 1).sum()) == s["orders"]
    assert len((tmp_path / "orders.ouch").read_bytes()) == 50 * s["orders"]
    assert json.loads((tmp_path / "summary.json").read_text())["complete"] is False


def test_sigterm_stops_the_cli_with_partial_outputs(tmp_path):
    path = tmp_path / "day.itch"
    synthetic.write_itch(path, 1_500_000, n_symbols=100, seed=9)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "hftaccel.cli", "run", str(path), "--out",
                             str(out), "--chunk-mb", "0.02", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (out / "signals.parquet").exists() and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr.decode()[-2000:]
    s = json.loads(stdout)
    assert s["complete"] is False and 0 < s["messages"] < 1_500_000
    assert json.loads((out / "summary.json").read_text()) == s
    assert pq.read_table(out / "signals.parquet").num_rows == s["book_updates"]
    assert pq.read_metadata(out / "book.parquet").num_rows == s["book_updates"]
