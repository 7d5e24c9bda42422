"""Tests of hftaccel.model.labels: direction labels, horizon / threshold edges, time splits, balance."""

import numpy as np
import pytest

from hftaccel.model import labels as L
from hftaccel.spec import BOOK_RECORD_DTYPE

D, F, U, N = L.DOWN, L.FLAT, L.UP, L.NO_LABEL


def brute(mid, k, alpha, method):
    """Direct transcription of the FI-2010 definition with Python fractions-free loops."""
    n = len(mid)
    out = []
    for t in range(n):
        if t + k >= n:
            out.append(N)
            continue
        if method == "mean":
            win = mid[t + 1:t + k + 1]
            if not np.all(np.isfinite(win)) or not np.isfinite(mid[t]):
                out.append(N)
                continue
            rel = (sum(win) - k * mid[t]) / (k * mid[t])
        else:
            if not (np.isfinite(mid[t]) and np.isfinite(mid[t + k])):
                out.append(N)
                continue
            rel = (mid[t + k] - mid[t]) / mid[t]
        out.append(U if rel > alpha else D if rel < -alpha else F)
    return np.array(out, dtype=np.int8)


def test_hand_series_point():
    mid = np.array([100.0, 101.0, 100.0, 99.0, 99.0, 102.0])
    # k = 1: changes +1 %, -0.99 %, -1 %, 0, +3.03 %
    got = L.direction_labels(mid, L.LabelConfig(horizon=1, alpha=0.005, method="point"))
    assert got.tolist() == [U, D, D, F, U, N]
    got = L.direction_labels(mid, L.LabelConfig(horizon=2, alpha=0.005, method="point"))
    assert got.tolist() == [F, D, D, U, N, N]


def test_hand_series_mean():
    mid = np.array([100.0, 100.0, 102.0, 98.0, 100.0])
    # t=0, k=2: mean(100, 102) = 101 -> +1 %; t=1: mean(102, 98) = 100 -> 0; t=2: mean(98,100)=99 -> -2.9 %
    got = L.direction_labels(mid, L.LabelConfig(horizon=2, alpha=0.005, method="mean"))
    assert got.tolist() == [U, F, D, N, N]


def test_threshold_is_strict():
    # change of exactly alpha is flat, just above is up, just below -alpha is down
    mid = np.array([100.0, 101.0, 100.0, 99.0])
    got = L.direction_labels(mid, L.LabelConfig(horizon=1, alpha=0.01, method="point"))
    assert got[0] == F                                   # +1 % == alpha
    assert L.direction_labels(mid, L.LabelConfig(1, 0.0099, "point"))[0] == U
    assert L.direction_labels(np.array([100.0, 99.0]), L.LabelConfig(1, 0.01, "point"))[0] == F
    assert L.direction_labels(np.array([100.0, 99.0]), L.LabelConfig(1, 0.0099, "point"))[0] == D
    # alpha = 0: any change counts, no change is flat
    assert L.direction_labels(np.array([5.0, 5.0, 5.5]), L.LabelConfig(1, 0.0, "point")).tolist() == [F, U, N]


def test_horizon_edges():
    mid = np.arange(1.0, 11.0)
    for k in (1, 3, 9):
        got = L.direction_labels(mid, L.LabelConfig(horizon=k, alpha=0.0))
        assert (got[:10 - k] == U).all() and (got[10 - k:] == N).all()
    assert (L.direction_labels(mid, L.LabelConfig(horizon=10, alpha=0.0)) == N).all()
    assert (L.direction_labels(mid, L.LabelConfig(horizon=50, alpha=0.0)) == N).all()


def test_invalid_mid_masks_its_window():
    mid = np.array([10.0, 10.0, np.nan, 10.0, 11.0, 11.0, 11.0])
    got = L.direction_labels(mid, L.LabelConfig(horizon=2, alpha=0.0, method="mean"))
    # windows touching index 2 (t=0,1,2) are undefined
    assert got.tolist() == [N, N, N, U, F, N, N]
    got = L.direction_labels(mid, L.LabelConfig(horizon=2, alpha=0.0, method="point"))
    assert got.tolist() == [N, F, N, U, F, N, N]


@pytest.mark.parametrize("method", L.LABEL_METHODS)
@pytest.mark.parametrize("k", [1, 2, 7])
def test_matches_brute_force(method, k):
    rng = np.random.default_rng(k)
    mid = 2_000_000 + np.cumsum(rng.choice([-50.0, 0.0, 0.0, 50.0], size=400))
    mid[rng.integers(0, 400, 5)] = np.nan
    for alpha in (0.0, 1e-5, 3e-5):
        cfg = L.LabelConfig(horizon=k, alpha=alpha, method=method)
        np.testing.assert_array_equal(L.direction_labels(mid, cfg), brute(mid, k, alpha, method))


def test_config_validation():
    with pytest.raises(ValueError, match="horizon"):
        L.LabelConfig(horizon=0)
    with pytest.raises(ValueError, match="alpha"):
        L.LabelConfig(alpha=-1e-3)
    with pytest.raises(ValueError, match="method"):
        L.LabelConfig(method="median")


def test_mid_prices_and_per_symbol_labels():
    rec = np.zeros(6, dtype=BOOK_RECORD_DTYPE)
    rec["stock_locate"] = [1, 2, 1, 2, 1, 2]
    rec["bid_price"][:, 0] = [100, 500, 101, 0, 102, 490]
    rec["ask_price"][:, 0] = [102, 502, 103, 505, 104, 492]
    mid, valid = L.mid_prices(rec)
    assert valid.tolist() == [True, True, True, False, True, True]
    np.testing.assert_array_equal(mid[valid], [101.0, 501.0, 102.0, 103.0, 491.0])
    lab = L.labels_from_records(rec, L.LabelConfig(horizon=1, alpha=0.0, method="point"))
    # symbol 1: 101 -> 102 -> 103 up, up, none; symbol 2: 501 -> nan -> 491
    assert lab.tolist() == [U, N, U, N, N, N]


def test_chronological_split_is_ordered_and_disjoint():
    s = L.chronological_split(1000, (0.6, 0.2, 0.2), gap=10)
    assert s.train[0] == 0 and s.test[-1] == 999
    for a, b in ((s.train, s.validation), (s.validation, s.test)):
        assert np.all(np.diff(a) == 1) and a[-1] + 10 < b[0]
    assert len(np.intersect1d(s.train, s.validation)) == 0
    assert len(np.intersect1d(s.validation, s.test)) == 0
    assert len(s.train) + len(s.validation) + len(s.test) == 1000 - 20
    assert abs(len(s.train) - 0.6 * 980) <= 1
    with pytest.raises(ValueError):
        L.chronological_split(1000, (0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="empty"):
        L.chronological_split(30, (0.6, 0.2, 0.2), gap=14)


def test_gap_stops_label_leakage():
    # a training label at the last train event looks k events ahead: never into validation
    k = 7
    s = L.chronological_split(500, gap=k)
    assert s.train[-1] + k < s.validation[0]
    assert s.validation[-1] + k < s.test[0]


def test_walk_forward():
    folds = list(L.walk_forward(1000, 3, min_train=0.4, gap=5))
    assert len(folds) == 3
    for i, f in enumerate(folds):
        assert f.train[0] == 0
        assert f.train[-1] + 5 < f.validation[0] and f.validation[-1] + 5 < f.test[0]
        if i:
            assert len(f.train) > len(folds[i - 1].train)
            assert f.test[0] > folds[i - 1].test[0]


def test_class_balance():
    b = L.class_balance(np.array([D, D, F, U, U, U, N, N], dtype=np.int8))
    assert b["n"] == 6 and b["undefined"] == 2
    assert b["counts"] == {"down": 2, "flat": 1, "up": 3}
    assert b["fractions"]["up"] == 0.5
    assert L.class_balance(np.array([N]))["fractions"] == {"down": 0.0, "flat": 0.0, "up": 0.0}
