"""`hftaccel run --live` part files and `dash --follow`'s tailing of them."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from hftaccel.cli import app
from hftaccel.dash.data import Run
from hftaccel.dash.live import LiveWriter

runner = CliRunner()


def _table(path):
    t = pq.read_table(path)
    return {c: t.column(c).to_numpy() for c in t.column_names}


def test_live_run_writes_the_same_rows_as_parts(tmp_path, synth_run):
    itch = synth_run.parent / "synth.itch"
    out = tmp_path / "live"
    res = runner.invoke(app, ["run", str(itch), "--out", str(out), "--live"])
    assert res.exit_code == 0, res.output
    status = json.loads((out / "live.json").read_text())
    assert status["state"] == "done"
    for stem in ("book", "signals"):
        parts = sorted((out / stem).glob("part-*.parquet"))
        assert len(parts) == status["parts"] >= 1
        assert all(pq.ParquetFile(p).metadata.num_row_groups == 1 for p in parts)
        live = pq.read_table(out / stem).to_pydict()       # a folder of parts is a dataset
        plain = pq.read_table(synth_run / f"{stem}.parquet").to_pydict()
        assert live == plain
    assert (out / "orders.ouch").read_bytes() == (synth_run / "orders.ouch").read_bytes()
    s = json.loads((out / "summary.json").read_text())
    assert s["book_updates"] == status["book_rows"] == status["signals_rows"]
    r = Run(out)
    assert r.problems == [] and r.timestamp.size == s["book_updates"]


def test_live_needs_out():
    res = runner.invoke(app, ["run", "--live"])
    assert res.exit_code == 2 and "--live needs --out" in res.output


def test_follow_reads_parts_as_they_land(tmp_path, synth_run):
    import pyarrow as pa

    book = pq.read_table(synth_run / "book.parquet")
    signals = pq.read_table(synth_run / "signals.parquet")
    out = tmp_path / "growing"
    w = LiveWriter(out, rows_per_part=1000)
    r = Run(out)
    assert r.book is None and r.problems == []       # a live run that has not written yet
    assert r.live["state"] == "replaying"
    v = r.version
    w.append(book.slice(0, 2500), signals.slice(0, 1200))
    assert r.refresh() and r.version > v
    assert r.timestamp.size == 2500 and r.intent.size == 1200
    assert not r.refresh()                            # nothing new
    w.append(book.slice(2500, 1500), signals.slice(1200, 2800))
    assert r.refresh()
    assert r.timestamp.size == 4000 and r.intent.size == 4000
    assert np.array_equal(r.timestamp, book.column("timestamp").to_numpy()[:4000])
    assert np.array_equal(r.verdict, signals.column("verdict").to_numpy()[:4000])
    assert len(list((out / "book").glob("part-*.parquet"))) == 5
    n = book.num_rows
    w.append(book.slice(4000), signals.slice(4000))
    w.finish(json.loads((synth_run / "summary.json").read_text()),
             (synth_run / "orders.ouch").read_bytes())
    assert r.refresh()
    assert r.live["state"] == "done" and r.summary is not None and r.problems == []
    assert r.timestamp.size == n and r.orders is not None
    win = r.window(r.symbols()[0][0], *r.span())
    assert win.rows.size == r.symbols()[0][2]
    with pytest.raises(ValueError, match="ahead"):
        w.append(None, pa.table({"seq": [1]}))
