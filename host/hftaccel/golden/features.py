"""Golden fixed-point microstructure features: one int32 vector per book record.

Implements the contract of :mod:`hftaccel.spec.features` (formulas, formats, tables, state
reset) with a Numba hot loop over book records (:data:`hftaccel.spec.book.BOOK_RECORD_DTYPE`).
State is kept per stock locate and persists across :meth:`FeatureEngine.update` calls, so a
stream may be fed in chunks of any size with the same result as one call.
"""

from __future__ import annotations

import numba
import numpy as np
from numba.cpython.unsafe.numbers import leading_zeros

from hftaccel.spec import book as book_spec
from hftaccel.spec import features as fs
from hftaccel.spec import itch as itch_spec

__all__ = ["FeatureEngine", "compute_features", "round_shift", "saturate", "log2q",
           "imbalance", "to_ticks", "ANOMALY_KINDS"]

#: Kinds of input anomalies counted (never silent): ``time_reversal``: a record's timestamp is
#: earlier than the previous record of the same symbol (Δt taken as 0); ``trade_without_side``:
#: an E, C or P record whose side is neither B nor S (its signed volume counts as 0).
ANOMALY_KINDS = ("time_reversal", "trade_without_side")

_NQ = len(fs.WINDOW_QUANTITIES)
_RING = fs.WINDOW_RING
_RING_MASK = _RING - 1
assert _RING == fs.WINDOW_LONG and _RING & _RING_MASK == 0
_K_SHORT = fs.WINDOW_SHORT
_K_LONG = fs.WINDOW_LONG
_L = fs.OFI_LEVELS
_DL = fs.DEPTH_IMB_LEVELS
_NF = fs.N_FEATURES
_LOG2_M = fs.LOG2_MANT_BITS
_LOG2_F = fs.LOG2_FRAC_BITS
_LOG2_MASK = (1 << fs.LOG2_MANT_BITS) - 1
_IMB_ONE = fs.IMB_ONE
_IMB_SHIFT = fs.IMB_INDEX_SHIFT
_IMB_N = fs.IMB_TABLE_SIZE
_TICK_RECIP = fs.TICK_RECIP
_TICK_SHIFT = fs.TICK_RECIP_SHIFT
_DECAY_MIN = fs.DECAY_MIN_LOG2
_DECAY_LAST = fs.DECAY_BUCKETS - 1
_DECAY_F = fs.DECAY_FRAC_BITS
_I_ONE = 1 << fs.INTENSITY_FRAC_BITS
_AGE_NONE = fs.TRADE_AGE_NONE
_EMPTY_ASK = 1 << 32
_B = itch_spec.SIDE_BUY
_S = itch_spec.SIDE_SELL
_E, _C, _P = (ord(c) for c in fs.TRADE_MESSAGE_TYPES)


def _qrange(name):
    return fs.feature_min(name), fs.feature_max(name)


_SPREAD_LO, _SPREAD_HI = _qrange("spread")
_SPREAD_F = fs.FEATURE_Q["spread"][1]
_MPM_LO, _MPM_HI = _qrange("microprice_mid")
_MPM_SHIFT = fs.FEATURE_Q["spread"][1] + fs.IMB_FRAC_BITS + 1 - fs.FEATURE_Q["microprice_mid"][1]
_IMB_LO, _IMB_HI = _qrange("imb_l1")
_OFI_LO, _OFI_HI = _qrange(f"ofi_l1_k{_K_SHORT}")
_TV_LO, _TV_HI = _qrange(f"tvol_k{_K_SHORT}")
_DM_LO, _DM_HI = _qrange(f"dmid_k{_K_SHORT}")
_DM_F = fs.FEATURE_Q[f"dmid_k{_K_SHORT}"][1]
_RV_LO, _RV_HI = _qrange(f"rv_k{_K_SHORT}")
_IN_LO, _IN_HI = _qrange("intensity_buy")
_TA_LO, _TA_HI = _qrange("t_since_trade")
for _k in fs.WINDOWS:  # one format per windowed family (the loop below relies on it)
    for _m in range(1, _L + 1):
        assert _qrange(f"ofi_l{_m}_k{_k}") == (_OFI_LO, _OFI_HI)
    assert _qrange(f"tvol_k{_k}") == (_TV_LO, _TV_HI)
    assert _qrange(f"dmid_k{_k}") == (_DM_LO, _DM_HI)
    assert _qrange(f"rv_k{_k}") == (_RV_LO, _RV_HI)
    assert fs.FEATURE_Q[f"dmid_k{_k}"][1] == fs.FEATURE_Q[f"rv_k{_k}"][1] == _DM_F
assert _qrange("imb_depth") == (_IMB_LO, _IMB_HI)
assert _qrange("intensity_sell") == (_IN_LO, _IN_HI)

_COL = fs.FEATURE_INDEX
_C_SPREAD = _COL["spread"]
_C_IMB1 = _COL["imb_l1"]
_C_IMBD = _COL["imb_depth"]
_C_MPM = _COL["microprice_mid"]
_C_OFI_S = _COL[f"ofi_l1_k{_K_SHORT}"]   # ofi_l1..l3, tvol, dmid, rv for the short window
_C_OFI_L = _COL[f"ofi_l1_k{_K_LONG}"]
_C_IBUY = _COL["intensity_buy"]
_C_ISELL = _COL["intensity_sell"]
_C_TAGE = _COL["t_since_trade"]
for _base, _k in ((_C_OFI_S, _K_SHORT), (_C_OFI_L, _K_LONG)):
    assert [fs.FEATURE_NAMES[_base + j] for j in range(_NQ)] == (
        [f"ofi_l{m}_k{_k}" for m in range(1, _L + 1)] + [f"tvol_k{_k}", f"dmid_k{_k}",
                                                          f"rv_k{_k}"])

# Per-symbol scalar state (int64 columns of the state matrix).
_S_COUNT, _S_LAST_TS, _S_LAST_MID2, _S_IBUY, _S_ISELL, _S_LAST_TRADE = range(6)
_S_PREV = 6                                  # 4 * OFI_LEVELS: bid p, bid q, ask p, ask q
_S_SUM_S = _S_PREV + 4 * _L                  # _NQ short-window sums
_S_SUM_L = _S_SUM_S + _NQ                    # _NQ long-window sums
_NS = _S_SUM_L + _NQ

_LOG2_TABLE = np.ascontiguousarray(fs.LOG2_MANT_TABLE, dtype=np.int64)
_TANH_TABLE = np.ascontiguousarray(fs.IMB_TANH_TABLE, dtype=np.int64)
_DECAY_TABLE = np.ascontiguousarray(fs.DECAY_TABLE, dtype=np.int64)


@numba.njit(cache=True, inline="always")
def round_shift(x, s):
    """Return ``x / 2**s`` rounded half away from zero (``s >= 0``); int64 in, int64 out."""
    if s == 0:
        return x
    h = np.int64(1) << (s - 1)
    if x >= 0:
        return (x + h) >> s
    return -((-x + h) >> s)


@numba.njit(cache=True, inline="always")
def saturate(x, lo, hi):
    """Clamp ``x`` to ``[lo, hi]`` (a feature's :func:`~hftaccel.spec.features.feature_min`,
    :func:`~hftaccel.spec.features.feature_max`)."""
    if x > hi:
        return hi
    if x < lo:
        return lo
    return x


@numba.njit(cache=True, inline="always")
def _bit_length(x):
    """Bits needed for ``x >= 0`` (0 for 0): 64 minus the leading-zero count."""
    if x <= 0:
        return 0
    return 64 - leading_zeros(np.uint64(x))


@numba.njit(cache=True)
def log2q(x, table):
    """Log2 of ``x >= 1`` in Q.LOG2_FRAC_BITS (leading-zero count + mantissa table)."""
    e = _bit_length(x) - 1
    if e >= _LOG2_M:
        m = (x >> (e - _LOG2_M)) & _LOG2_MASK
    else:
        m = (x << (_LOG2_M - e)) & _LOG2_MASK
    return e * (1 << _LOG2_F) + table[m]


@numba.njit(cache=True)
def imbalance(b, a, log2_table, tanh_table):
    """Division-free ``(b - a) / (b + a)`` in Q1.14 for sizes ``b, a >= 0`` (spec ``imbalance``)."""
    if b == a:
        return np.int64(0)
    if a == 0:
        return np.int64(_IMB_ONE)
    if b == 0:
        return np.int64(-_IMB_ONE)
    d = log2q(b, log2_table) - log2q(a, log2_table)
    k = (d if d >= 0 else -d) >> _IMB_SHIFT
    v = tanh_table[k] if k < _IMB_N else np.int64(_IMB_ONE)
    if d > 0:
        return v
    if d < 0:
        return -v
    return np.int64(0)


@numba.njit(cache=True, inline="always")
def to_ticks(x, frac_bits, half):
    """Price difference ``x`` (1/10,000 USD; ``half=1`` for mid*2 sums) to ticks in Q.frac_bits."""
    return round_shift(x * _TICK_RECIP, _TICK_SHIFT - frac_bits + half)


@numba.njit(cache=True)
def _ofi_event(pb, qb, pa, qa, pb0, qb0, pa0, qa0):
    # pa, pa0 already mapped: empty ask -> 2**32
    e = np.int64(0)
    if pb >= pb0:
        e += qb
    if pb <= pb0:
        e -= qb0
    if pa <= pa0:
        e -= qa
    if pa >= pa0:
        e += qa0
    return e


@numba.njit(cache=True)
def _run(start, ts_col, loc_col, mt_col, side_col, sh_col, bp, bq, ap, aq, slot_of, n_slots,
         state, ring, log2_table, tanh_table, decay_table, out, anomalies):
    """Process records ``start..``; return ``(next record, slots in use)``. Stops early (next
    record < n) when a new symbol needs a slot and ``state`` is full: the caller grows it."""
    n = ts_col.shape[0]
    cap = state.shape[0]
    for r in range(start, n):
        loc = loc_col[r]
        s = slot_of[loc]
        if s < 0:
            if n_slots == cap:
                return r, n_slots
            s = n_slots
            slot_of[loc] = s
            n_slots += 1
        ts = np.int64(ts_col[r])
        mt = mt_col[r]
        side = side_col[r]
        shares = np.int64(sh_col[r])
        bid1 = np.int64(bp[r, 0])
        ask1 = np.int64(ap[r, 0])
        two_sided = bid1 != 0 and ask1 != 0

        # spread, imbalances, micro-price
        if two_sided:
            spread = saturate(to_ticks(ask1 - bid1, _SPREAD_F, 0), _SPREAD_LO, _SPREAD_HI)
        else:
            spread = np.int64(_SPREAD_HI)
        out[r, _C_SPREAD] = spread
        imb1 = imbalance(np.int64(bq[r, 0]), np.int64(aq[r, 0]), log2_table, tanh_table)
        out[r, _C_IMB1] = saturate(imb1, _IMB_LO, _IMB_HI)
        bw = np.int64(0)
        aw = np.int64(0)
        for i in range(_DL):
            bw += np.int64(bq[r, i]) << (_DL - 1 - i)
            aw += np.int64(aq[r, i]) << (_DL - 1 - i)
        out[r, _C_IMBD] = saturate(imbalance(bw, aw, log2_table, tanh_table), _IMB_LO, _IMB_HI)
        if two_sided:
            out[r, _C_MPM] = saturate(round_shift(spread * imb1, _MPM_SHIFT), _MPM_LO, _MPM_HI)
        else:
            out[r, _C_MPM] = 0

        # per-event windowed quantities, ring update and window sums
        cnt = state[s, _S_COUNT]
        pos = cnt & _RING_MASK
        pos_s = (cnt - _K_SHORT) & _RING_MASK
        dm = np.int64(0)
        for m in range(_L + 3):
            if m < _L:
                pb = np.int64(bp[r, m])
                qb = np.int64(bq[r, m])
                pa = np.int64(ap[r, m])
                qa = np.int64(aq[r, m])
                if pa == 0:
                    pa = _EMPTY_ASK
                v = _ofi_event(pb, qb, pa, qa, state[s, _S_PREV + m], state[s, _S_PREV + _L + m],
                               state[s, _S_PREV + 2 * _L + m], state[s, _S_PREV + 3 * _L + m])
                state[s, _S_PREV + m] = pb
                state[s, _S_PREV + _L + m] = qb
                state[s, _S_PREV + 2 * _L + m] = pa
                state[s, _S_PREV + 3 * _L + m] = qa
            elif m == _L:                      # signed traded volume
                v = np.int64(0)
                if mt == _E or mt == _C or mt == _P:
                    if side == _B:
                        v = -shares
                    elif side == _S:
                        v = shares
                    else:
                        anomalies[1] += 1
            elif m == _L + 1:                  # mid change (x2)
                v = np.int64(0)
                if two_sided:
                    mid2 = bid1 + ask1
                    if state[s, _S_LAST_MID2] != 0:
                        v = mid2 - state[s, _S_LAST_MID2]
                    state[s, _S_LAST_MID2] = mid2
                dm = v
            else:                              # |mid change| (x2)
                v = dm if dm >= 0 else -dm
            state[s, _S_SUM_S + m] += v - ring[s, pos_s, m]
            state[s, _S_SUM_L + m] += v - ring[s, pos, m]   # the value K_LONG events ago
            ring[s, pos, m] = v
        for w in range(2):
            base = _C_OFI_S if w == 0 else _C_OFI_L
            sb = _S_SUM_S if w == 0 else _S_SUM_L
            for m in range(_L):
                out[r, base + m] = saturate(state[s, sb + m], _OFI_LO, _OFI_HI)
            out[r, base + _L] = saturate(state[s, sb + _L], _TV_LO, _TV_HI)
            out[r, base + _L + 1] = saturate(to_ticks(state[s, sb + _L + 1], _DM_F, 1),
                                             _DM_LO, _DM_HI)
            out[r, base + _L + 2] = saturate(to_ticks(state[s, sb + _L + 2], _DM_F, 1),
                                             _RV_LO, _RV_HI)

        # intensities
        dt = np.int64(0)
        if cnt > 0:
            dt = ts - state[s, _S_LAST_TS]
            if dt < 0:
                anomalies[0] += 1
                dt = 0
        if dt < (np.int64(1) << _DECAY_MIN):
            bucket = 0
        else:
            bucket = min(_bit_length(dt) - _DECAY_MIN, _DECAY_LAST)
        dec = decay_table[bucket]
        ib = round_shift(state[s, _S_IBUY] * dec, _DECAY_F)
        isl = round_shift(state[s, _S_ISELL] * dec, _DECAY_F)
        if side == _B:
            ib += _I_ONE
        elif side == _S:
            isl += _I_ONE
        ib = saturate(ib, _IN_LO, _IN_HI)
        isl = saturate(isl, _IN_LO, _IN_HI)
        state[s, _S_IBUY] = ib
        state[s, _S_ISELL] = isl
        out[r, _C_IBUY] = ib
        out[r, _C_ISELL] = isl

        # time since the last trade (current one included)
        if mt == _E or mt == _C or mt == _P:
            state[s, _S_LAST_TRADE] = ts
        last_trade = state[s, _S_LAST_TRADE]
        if last_trade < 0:
            out[r, _C_TAGE] = _AGE_NONE
        else:
            age = ts - last_trade
            if age < 0:
                age = 0
            out[r, _C_TAGE] = saturate(_bit_length(age), _TA_LO, _TA_HI)

        state[s, _S_LAST_TS] = ts
        state[s, _S_COUNT] = cnt + 1
    return n, n_slots


def _new_state(n: int) -> np.ndarray:
    st = np.zeros((n, _NS), dtype=np.int64)
    st[:, _S_LAST_TRADE] = -1
    st[:, _S_PREV + 2 * _L:_S_PREV + 3 * _L] = _EMPTY_ASK   # previous ask levels empty
    return st


class FeatureEngine:
    """Stateful feature computer: feed book records in order, chunk by chunk.

    Per-symbol state (previous top levels, window rings and sums, intensities, last trade and
    last event times) is allocated on a symbol's first record and kept across :meth:`update`
    calls; memory grows with the number of distinct stock locates seen (about 3.3 KiB each).

    Attributes
    ----------
    anomalies : dict[str, int]
        Counts of :data:`ANOMALY_KINDS` seen so far.
    n_records : int
        Records processed so far.
    """

    def __init__(self) -> None:
        self._slot_of = np.full(book_spec.MAX_LOCATES, -1, dtype=np.int32)
        self._n_slots = 0
        self._state = _new_state(16)
        self._ring = np.zeros((16, _RING, _NQ), dtype=np.int64)
        self._anomalies = np.zeros(len(ANOMALY_KINDS), dtype=np.int64)
        self.n_records = 0

    @property
    def anomalies(self) -> dict:
        return {k: int(v) for k, v in zip(ANOMALY_KINDS, self._anomalies)}

    @property
    def symbols(self) -> np.ndarray:
        """Stock locates seen so far, in order of first appearance, ``(k,)`` uint16."""
        locs = np.nonzero(self._slot_of >= 0)[0]
        return locs[np.argsort(self._slot_of[locs])].astype(np.uint16)

    def _grow(self) -> None:
        cap = 2 * self._state.shape[0]
        st = _new_state(cap)
        st[:self._n_slots] = self._state[:self._n_slots]
        ring = np.zeros((cap, _RING, _NQ), dtype=np.int64)
        ring[:self._n_slots] = self._ring[:self._n_slots]
        self._state, self._ring = st, ring

    def update(self, records: np.ndarray) -> np.ndarray:
        """Compute the feature vector after each record and advance the per-symbol state.

        Parameters
        ----------
        records : np.ndarray, shape (n,), dtype ``book_record_dtype(depth)``
            Book records in stream order (``depth >= DEPTH_IMB_LEVELS``); prices 1/10,000 USD,
            sizes shares, timestamps ns since midnight. Symbols may be interleaved.

        Returns
        -------
        np.ndarray, shape (n, N_FEATURES), int32
            Column ``j`` is feature ``FEATURE_NAMES[j]`` in its Q format
            (:data:`hftaccel.spec.features.FEATURE_Q`).

        Raises
        ------
        TypeError
            ``records`` is not a 1-D array of a book record dtype.
        ValueError
            The depth is below ``DEPTH_IMB_LEVELS``, or a record's ``msg_type`` is not one of
            A F E C X D U P (the message names its index and sequence number).
        """
        _check_records(records)
        n = records.shape[0]
        out = np.zeros((n, _NF), dtype=fs.FEATURE_DTYPE)
        if n == 0:
            return out
        cols = (records["timestamp"], records["stock_locate"], records["msg_type"],
                records["side"], records["shares"], records["bid_price"],
                records["bid_shares"], records["ask_price"], records["ask_shares"])
        done = 0
        while True:
            done, self._n_slots = _run(done, *cols, self._slot_of, self._n_slots, self._state,
                                       self._ring, _LOG2_TABLE, _TANH_TABLE, _DECAY_TABLE,
                                       out, self._anomalies)
            if done == n:
                break
            self._grow()
        self.n_records += n
        return out


_VALID_MT = np.zeros(256, dtype=bool)
_VALID_MT[[ord(c) for c in itch_spec.BOOK_MESSAGE_TYPES]] = True


def _check_records(records) -> None:
    if not isinstance(records, np.ndarray) or records.ndim != 1 or records.dtype.names is None:
        raise TypeError("records must be a 1-D structured array of "
                        f"hftaccel.spec.book.book_record_dtype(depth), got {type(records)!r}"
                        + (f" of dtype {records.dtype}" if isinstance(records, np.ndarray)
                           else ""))
    depth = records.dtype["bid_price"].shape[0] if "bid_price" in records.dtype.names else 0
    if depth < 1 or records.dtype != book_spec.book_record_dtype(depth):
        raise TypeError(f"records dtype {records.dtype} is not a book record dtype")
    if depth < fs.DEPTH_IMB_LEVELS:
        raise ValueError(f"book depth {depth} < DEPTH_IMB_LEVELS = {fs.DEPTH_IMB_LEVELS}")
    bad = ~_VALID_MT[records["msg_type"]]
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"book record {i} (seq {int(records['seq'][i])}) has msg_type "
                         f"{int(records['msg_type'][i])!r}, not one of "
                         f"{itch_spec.BOOK_MESSAGE_TYPES}")


def compute_features(records: np.ndarray) -> np.ndarray:
    """Features of a whole record stream from reset state.

    Parameters
    ----------
    records : np.ndarray, shape (n,), dtype ``book_record_dtype(depth)``

    Returns
    -------
    np.ndarray, shape (n, N_FEATURES), int32

    Raises
    ------
    TypeError, ValueError
        As :meth:`FeatureEngine.update`.
    """
    return FeatureEngine().update(records)
