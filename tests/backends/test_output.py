"""The run folder writer: its columns equal the record fields, its Parquet layout."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from hftaccel.backends import cpu
from hftaccel.backends.output import (STATISTICS_COLUMNS, RunWriter, _field_columns,
                                      records_table, scoring_table)
from hftaccel.spec import book_record_dtype
from hftaccel.spec.features import FEATURE_NAMES


@pytest.fixture(scope="module")
def sample():
    res = cpu.run(None)
    return res.records, res.extra["scoring"]


def _naive_records(records, levels):
    cols = {}
    for name in records.dtype.names:
        if name.startswith("_"):
            continue
        col = records[name]
        if col.ndim == 2:
            for k in range(min(levels, col.shape[1])):
                cols[f"{name}_{k + 1}"] = col[:, k].tolist()
        elif name in ("msg_type", "side"):
            cols[name] = col.view("S1").astype(str).tolist()
        else:
            cols[name] = col.tolist()
    return cols


@pytest.mark.parametrize("levels", [1, 3, 8])
def test_records_columns_are_the_fields(sample, levels):
    records, _ = sample
    part = records[1234:1234 + 3000]     # not a multiple of the gather's 64-row blocks
    table = records_table(part, levels)
    assert table.to_pydict() == _naive_records(part, levels)
    assert [table.schema.field(f"bid_price_{levels}").type.bit_width,
            table.schema.field("seq").type.bit_width] == [32, 64]


def test_scoring_columns_are_the_arrays(sample):
    records, sc = sample
    n = 777
    t = scoring_table(records[:n], cpu.Scoring(sc.features[:n], sc.logits[:n],
                                               sc.decisions[:n], sc.orders, b""))
    assert t.column("seq").to_pylist() == records["seq"][:n].tolist()
    for k, name in enumerate(FEATURE_NAMES):
        assert t.column(name).to_pylist() == sc.features[:n, k].tolist(), name
    assert t.column("logit_up").to_pylist() == sc.logits[:n, 2].tolist()
    for name in ("intent", "verdict", "reason", "price", "shares", "user_ref_num"):
        assert t.column(name).to_pylist() == sc.decisions[name][:n].tolist(), name
    assert str(t.schema.field("price").type) == "int64"


def test_empty_and_misaligned():
    empty = np.zeros(0, book_record_dtype(8))
    assert records_table(empty, 1).num_rows == 0
    odd = np.zeros(3, np.dtype([("a", "<u2"), ("b", "<u4", (1,)), ("c", "u1"), ("_p", "V1")]))
    with pytest.raises(ValueError, match="aligned"):
        _field_columns(odd, [("b", "b", 0)])
    with pytest.raises(ValueError, match="multiple of 8"):
        _field_columns(np.zeros(2, np.dtype([("a", "<u2")])), [("a", "a", None)])


def test_parquet_layout(tmp_path, sample):
    """One zstd row group per step; min/max statistics on the index columns only (the writer
    holds every row group's metadata until the footer, so memory stays flat)."""
    records, sc = sample
    w = RunWriter(tmp_path, records="bbo")
    for a in (0, 1000, 2500):
        b = a + 1000 if a < 2500 else 4000
        w(records[a:b], cpu.Scoring(sc.features[a:b], sc.logits[a:b], sc.decisions[a:b],
                                    sc.orders[:0], b""))
    w.finish({"complete": True})
    for name in ("book.parquet", "signals.parquet"):
        md = pq.ParquetFile(tmp_path / name).metadata
        assert [md.row_group(g).num_rows for g in range(md.num_row_groups)] == [1000, 1000, 1500]
        rg = md.row_group(1)
        for c in range(rg.num_columns):
            col = rg.column(c)
            assert col.compression == "ZSTD"
            assert col.is_stats_set == (col.path_in_schema in STATISTICS_COLUMNS), \
                col.path_in_schema
        seq = [rg.column(c) for c in range(rg.num_columns)
               if rg.column(c).path_in_schema == "seq"][0]
        assert seq.statistics.min == int(records["seq"][1000])
