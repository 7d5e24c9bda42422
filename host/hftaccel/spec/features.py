"""Microstructure feature contract: feature list, fixed-point formats, windows, tables, latencies.

After every book record (:data:`hftaccel.spec.book.BOOK_RECORD_DTYPE`, one per A F E C X D U P
message) the features stage emits one vector of :data:`N_FEATURES` signed integers, laid out as
an ``(n, N_FEATURES)`` ``int32`` matrix (row = book record, column = :data:`FEATURE_NAMES`
order; :data:`FEATURE_RECORD_DTYPE` is the same bytes with named fields). The golden model
(``hftaccel.golden.features``), the gateware (``hftaccel.rtl.features``) and the GPU kernels
must reproduce these integers bit for bit; this module is the contract they share. State is
kept per stock locate, so many symbols may be interleaved in one record stream.

Integer primitives (every feature uses exactly these; nothing else rounds or clips)
---------------------------------------------------------------------------------
``round_shift(x, s)``
    Divide a signed integer by ``2**s`` (``s >= 0``) and round half away from zero:
    ``x >= 0 -> (x + 2**(s-1)) >> s``; ``x < 0 -> -((-x + 2**(s-1)) >> s)``; ``s == 0 -> x``.
    All intermediate values are exact (at most 58 significant bits, see each feature).
``saturate(x, q)``
    Clamp to the two's-complement range of the feature's format ``q = (int_bits, frac_bits)``:
    ``[-2**(int_bits+frac_bits), 2**(int_bits+frac_bits) - 1]`` (a ``1 + int_bits + frac_bits``
    bit signed number). Every feature's last step is ``saturate``.
``log2q(x)``
    Log2 of a positive integer in Q.:data:`LOG2_FRAC_BITS` from a leading-zero count and a
    mantissa table: ``e = bit_length(x) - 1``; ``m`` = the :data:`LOG2_MANT_BITS` bits right below
    the leading one (``(x >> (e - M)) & (2**M - 1)`` if ``e >= M`` else
    ``(x << (M - e)) & (2**M - 1)``; truncation); ``log2q = e * 2**LOG2_FRAC_BITS +
    LOG2_MANT_TABLE[m]``. Error against ``log2(x) * 2**LOG2_FRAC_BITS``: within +0.5 / -1.94.
``imbalance(b, a)``
    Division-free ``(b - a) / (b + a)`` in Q1.14 (``IMB_ONE = 2**14`` is 1.0) for sizes
    ``b, a >= 0``: if ``b == a`` (both empty included) -> 0; if ``a == 0`` -> ``+IMB_ONE``;
    if ``b == 0`` -> ``-IMB_ONE``; else ``d = log2q(b) - log2q(a)``,
    ``k = |d| >> IMB_INDEX_SHIFT``, ``v = IMB_TANH_TABLE[k]`` if ``k < IMB_TABLE_SIZE`` else
    ``IMB_ONE``, result ``sign(d) * v``. This uses ``(b-a)/(b+a) = tanh(ln(b/a)/2)``; the
    table holds ``round(2**14 * tanh((k + 1/2) * 2**IMB_INDEX_SHIFT / 2**LOG2_FRAC_BITS *
    ln(2) / 2))``. Absolute error against the exact ratio is at most
    :data:`IMB_MAX_ABS_ERROR` (units of 2**-14).
``to_ticks(x, frac_bits, half)``
    Price difference ``x`` (1/10,000 USD; ``half=1`` when ``x`` is a sum of two prices, i.e. a
    mid-price times two) to ticks in Q.``frac_bits`` without a divider:
    ``round_shift(x * TICK_RECIP, TICK_RECIP_SHIFT - frac_bits + half)`` with
    ``TICK_RECIP = round(2**TICK_RECIP_SHIFT / TICK_SIZE)``. Exact (equal to
    ``round(x * 2**frac_bits / (TICK_SIZE * 2**half))``) for whole-tick ``x`` below
    ``2**(19 - frac_bits)`` ticks (2**15 for the Q.4 features; ``TICK_RECIP * TICK_SIZE`` is
    ``2**24 - 16``); the product needs at most 57 bits. Because every output saturates at or below
    2**20, an implementation may clamp ``x`` to ``±2**31`` before the multiply with identical
    results.

Book conventions
----------------
Level ``i`` (0-based, best first) of a side is *empty* when its price is 0 (its shares are 0
too). ``bid1``/``ask1`` are level 0. The book is *two-sided* when both ``bid1`` and ``ask1`` are
non-zero; ``mid2 = bid1 + ask1`` (twice the mid, exact) is defined only then. Crossed
(``ask1 < bid1``) and locked (``ask1 == bid1``) books are *not* special cases: the same
formulas apply and give negative or zero spreads. For OFI comparisons an empty ask level's
price counts as ``2**32`` (above every price) and an empty bid level's as 0.

Per-symbol state and windows
----------------------------
State is per stock locate and starts at reset as: previous book empty (all levels empty),
no valid previous mid, window rings all zero, intensities 0, no trade seen, no previous event.
Windowed features sum a per-event quantity over the last ``K`` events of the symbol, the current
event included (events before the first count as 0). Each quantity has one ring of
:data:`WINDOW_RING` = max(:data:`WINDOWS`) entries and one running sum per window:
``S_K += v_n - v_{n-K}``; sums are exact (int64) and saturated only on output.

Per-event quantities of event ``n`` of a symbol:

* ``ofi_l{m}`` (levels m = 1..3, Cont, Kukanov & Stoikov 2014 eq. 10, extended to level m as in
  Xu, Gould & Howison 2018): with ``Pb, qb, Pa, qa`` level-m price and shares now and
  ``Pb', qb', Pa', qa'`` for the previous record of the symbol::

      e = [Pb >= Pb'] qb - [Pb <= Pb'] qb' - [Pa <= Pa'] qa + [Pa >= Pa'] qa'

* ``tvol``: signed traded shares. E, C and P records: ``-shares`` when ``side == 'B'`` (a
  resting buy order was hit: seller-initiated), ``+shares`` when ``side == 'S'``; 0 otherwise
  (and for all other message types).
* ``dmid2``: if the book is two-sided and a previous valid ``mid2`` exists,
  ``mid2 - last_mid2``; else 0. ``last_mid2`` is the last valid ``mid2`` of the symbol (a
  one-sided interlude does not reset it); it is updated to ``mid2`` whenever the book is
  two-sided.
* ``adm2``: ``|dmid2|``.

Intensities (Hawkes-style, exponential decay)
---------------------------------------------
``dt = timestamp - previous timestamp of the symbol`` (0 for the first event of a symbol or
when time goes backwards; the latter is counted). ``bucket(dt) = 0`` if ``dt < 2**DECAY_MIN_LOG2``
else ``min(bit_length(dt) - DECAY_MIN_LOG2, DECAY_BUCKETS - 1)``. For each side::

    I <- saturate(round_shift(I * DECAY_TABLE[bucket(dt)], DECAY_FRAC_BITS)
                  + (2**INTENSITY_FRAC_BITS if record side is that side else 0), Q_intensity)

``DECAY_TABLE[0] = 2**15`` (no decay under 1 µs); entry ``k >= 1`` is
``round(2**15 * 2**(-2**(k + DECAY_MIN_LOG2 - 0.5) / DECAY_HALF_LIFE_NS))`` (decay over the
geometric centre of ``[2**(k+9), 2**(k+10))`` ns). Buy-side events are records whose ``side``
is ``'B'`` (any message type), sell-side ``'S'``.

Time since the last trade
-------------------------
``bit_length(max(timestamp - last trade timestamp, 0))`` where trades are E, C and P records,
the current one included (a trade gives 0); :data:`TRADE_AGE_NONE` (48, larger than any
bit length of a day's nanoseconds, < 2**47) before the symbol's first trade.

Gateware latency
----------------
``FEATURE_LATENCY_CYCLES[name]`` is the number of clock cycles from the book record (and the
symbol's state word, with forwarding for back-to-back records of one symbol) being valid at the
input of ``hftaccel.rtl.features`` to the feature being registered at its output, for a fully
pipelined stage (one record per cycle). The stage's latency is :data:`FEATURES_LATENCY_CYCLES`
(the maximum: outputs are aligned). Budget per primitive: ``log2q`` 2 (leading-zero count and
normalise, mantissa ROM), table ROM 1, DSP multiply 2, add / compare / select / round /
saturate 1 each, a 4- or 5-input adder tree 2 or 3, a window update ``S += v - v_old`` 1 (the
ring read is issued when the record enters, its address being the symbol's event count).
For example ``spread`` = subtract 1 + multiply 2 + round 1 + saturate 1 = 5; ``imb_l1`` =
log2q 2 + subtract 1 + ROM 1 + sign/saturate 1 = 5; ``microprice_mid`` = spread 5 + multiply 2
+ round 1 + saturate 1 = 9; ``intensity_*`` = dt 1 + leading-zero bucket 1 + ROM 1 + multiply 2
+ round 1 + add 1 + saturate 1 = 8; ``ofi_*`` = compare/select 1 + adder tree 2 + window 1 +
saturate 1 = 5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .itch import TICK_SIZE as _ITCH_TICK_SIZE

__all__ = [
    "FEATURE_SPEC_VERSION",
    "TICK_SIZE", "TICK_RECIP_SHIFT", "TICK_RECIP",
    "LOG2_MANT_BITS", "LOG2_FRAC_BITS", "LOG2_MANT_TABLE",
    "IMB_FRAC_BITS", "IMB_ONE", "IMB_INDEX_SHIFT", "IMB_TABLE_SIZE", "IMB_TANH_TABLE",
    "IMB_MAX_ABS_ERROR",
    "DEPTH_IMB_LEVELS", "OFI_LEVELS", "WINDOWS", "WINDOW_SHORT", "WINDOW_LONG", "WINDOW_RING",
    "WINDOW_QUANTITIES",
    "DECAY_HALF_LIFE_NS", "DECAY_MIN_LOG2", "DECAY_BUCKETS", "DECAY_FRAC_BITS", "DECAY_TABLE",
    "INTENSITY_FRAC_BITS", "TRADE_AGE_NONE", "TRADE_MESSAGE_TYPES",
    "FeatureSpec", "FEATURES", "FEATURE_NAMES", "N_FEATURES", "FEATURE_INDEX", "FEATURE_Q",
    "FEATURE_UNITS", "FEATURE_LATENCY_CYCLES", "FEATURES_LATENCY_CYCLES", "FEATURE_DTYPE",
    "FEATURE_RECORD_DTYPE", "feature_min", "feature_max", "feature_scale",
]

#: Version of this contract; bump on any change to a formula, format, table or ordering.
FEATURE_SPEC_VERSION = "hftaccel-features-1.0"

# --- ticks -----------------------------------------------------------------------------------
#: Tick size in ITCH Price(4) units (1/10,000 USD), from :data:`hftaccel.spec.itch.TICK_SIZE`.
TICK_SIZE = _ITCH_TICK_SIZE
#: Shift of the reciprocal-multiply that turns price differences into ticks.
TICK_RECIP_SHIFT = 24
#: ``round(2**TICK_RECIP_SHIFT / TICK_SIZE)`` = 167772 (an 18-bit constant: one DSP multiply).
TICK_RECIP = round((1 << TICK_RECIP_SHIFT) / TICK_SIZE)

# --- log2 and imbalance ----------------------------------------------------------------------
#: Mantissa bits below the leading one that index :data:`LOG2_MANT_TABLE`.
LOG2_MANT_BITS = 8
#: Fractional bits of ``log2q`` results.
LOG2_FRAC_BITS = 8
#: ``LOG2_MANT_TABLE[m] = round(log2(1 + m / 2**LOG2_MANT_BITS) * 2**LOG2_FRAC_BITS)``, int32.
LOG2_MANT_TABLE = np.array(
    [round(math.log2(1.0 + m / (1 << LOG2_MANT_BITS)) * (1 << LOG2_FRAC_BITS))
     for m in range(1 << LOG2_MANT_BITS)], dtype=np.int32)
LOG2_MANT_TABLE.flags.writeable = False

#: Fractional bits of imbalances (Q1.14).
IMB_FRAC_BITS = 14
#: 1.0 in Q1.14.
IMB_ONE = 1 << IMB_FRAC_BITS
#: ``|log2q(b) - log2q(a)| >> IMB_INDEX_SHIFT`` indexes :data:`IMB_TANH_TABLE` (1/64 log2 steps).
IMB_INDEX_SHIFT = 2
#: Entries of :data:`IMB_TANH_TABLE`; covers ``|log2(b/a)| < 16`` (beyond it the ratio is 1.0).
IMB_TABLE_SIZE = 1024
#: ``round(2**14 * tanh((k + 0.5) * 2**IMB_INDEX_SHIFT / 2**LOG2_FRAC_BITS * ln2 / 2))``, int32.
IMB_TANH_TABLE = np.array(
    [round(IMB_ONE * math.tanh((k + 0.5) * (1 << IMB_INDEX_SHIFT) / (1 << LOG2_FRAC_BITS)
                               * math.log(2.0) / 2.0))
     for k in range(IMB_TABLE_SIZE)], dtype=np.int32)
IMB_TANH_TABLE.flags.writeable = False
#: Bound on ``|imbalance(b, a) - 2**14 * (b - a) / (b + a)|`` over all ``b, a`` (Q1.14 units,
#: i.e. 0.61 %): log2q errors (-1.94..+0.5 / 256 each side, so 2.45 / 256 on the difference)
#: plus half an index step (2 / 256), times the largest slope of 2**14 tanh(ln2 x / 2)
#: (5678 per log2 unit), plus 0.5 for the table's rounding: 99.2.
IMB_MAX_ABS_ERROR = 100

# --- depth, levels, windows ------------------------------------------------------------------
#: Levels in the depth-weighted imbalance; level i (0-based) has weight 2**(DEPTH_IMB_LEVELS-1-i).
DEPTH_IMB_LEVELS = 5
#: Levels with an order-flow-imbalance feature (1..OFI_LEVELS).
OFI_LEVELS = 3
#: Window lengths K (events of one symbol); powers of two.
WINDOW_SHORT = 16
WINDOW_LONG = 64
WINDOWS = (WINDOW_SHORT, WINDOW_LONG)
#: Ring length per windowed quantity (one ring serves both windows).
WINDOW_RING = max(WINDOWS)
#: Per-event windowed quantities, in ring order.
WINDOW_QUANTITIES = tuple(f"ofi_l{m}" for m in range(1, OFI_LEVELS + 1)) + ("tvol", "dmid2",
                                                                             "adm2")

# --- intensities -----------------------------------------------------------------------------
#: Half-life of the event intensities, ns (1 ms).
DECAY_HALF_LIFE_NS = 1_000_000
#: ``dt < 2**DECAY_MIN_LOG2`` ns (1.024 µs) falls in bucket 0 (no decay).
DECAY_MIN_LOG2 = 10
#: Entries of :data:`DECAY_TABLE`.
DECAY_BUCKETS = 16
#: Fractional bits of :data:`DECAY_TABLE` (2**15 is 1.0).
DECAY_FRAC_BITS = 15
#: Decay factor per Δt bucket, Q0.15 (see the module docstring for the formula; a test
#: recomputes it from :data:`DECAY_HALF_LIFE_NS`).
DECAY_TABLE = np.array([32768, 32735, 32702, 32637, 32506, 32246, 31732, 30729,
                        28817, 25343, 19600, 11723, 4194, 537, 9, 0], dtype=np.int32)
DECAY_TABLE.flags.writeable = False
#: Fractional bits of intensities (1 event = 2**16).
INTENSITY_FRAC_BITS = 16

# --- trades ----------------------------------------------------------------------------------
#: Book record message types that are trades (executions and non-cross trades).
TRADE_MESSAGE_TYPES = "ECP"
#: ``t_since_trade`` before the first trade of a symbol.
TRADE_AGE_NONE = 48

assert len(DECAY_TABLE) == DECAY_BUCKETS
assert all(k & (k - 1) == 0 for k in WINDOWS)


@dataclass(frozen=True)
class FeatureSpec:
    """One feature column.

    Attributes
    ----------
    name : str
        Column name (snake_case).
    int_bits, frac_bits : int
        Signed fixed-point format Q``int_bits``.``frac_bits``: a ``1 + int_bits + frac_bits``
        bit two's-complement integer whose value is ``code / 2**frac_bits`` in ``units``.
    units : str
    definition : str
        The integer algorithm, in terms of the primitives of this module's docstring.
    source : str
        Where the quantity comes from (paper / spec section).
    latency_cycles : int
        Gateware latency, cycles (see "Gateware latency" in the module docstring).
    """

    name: str
    int_bits: int
    frac_bits: int
    units: str
    definition: str
    source: str
    latency_cycles: int


_Q_TICKS = (15, 4)


def _windowed(k: int) -> tuple:
    return (
        *(FeatureSpec(f"ofi_l{m}_k{k}", 31, 0, "shares",
                      f"saturate(sum of ofi_l{m} over the last {k} events of the symbol)",
                      "Cont, Kukanov & Stoikov (2014), J. Financial Econometrics 12(1), eq. 10; "
                      "level m as in Xu, Gould & Howison (2018), 'Multi-level order-flow "
                      "imbalance in a limit order book'", 5)
          for m in range(1, OFI_LEVELS + 1)),
        FeatureSpec(f"tvol_k{k}", 31, 0, "shares (+ buyer-initiated)",
                    f"saturate(sum of tvol over the last {k} events)",
                    "ITCH 5.0 sections 4.5.1-4.5.2, 4.6.1 (E, C, P)", 3),
        FeatureSpec(f"dmid_k{k}", *_Q_TICKS, "ticks",
                    f"saturate(to_ticks(sum of dmid2 over the last {k} events, 4, half=1)) "
                    f"= mid now - mid {k} events ago",
                    "mid-price return over a fixed event count", 7),
        FeatureSpec(f"rv_k{k}", *_Q_TICKS, "ticks",
                    f"saturate(to_ticks(sum of |dmid2| over the last {k} events, 4, half=1))",
                    "realized variation (sum of absolute mid changes)", 8),
    )


#: The feature columns, in output order.
FEATURES = (
    FeatureSpec("spread", 12, 4, "ticks",
                "two-sided: saturate(to_ticks(ask1 - bid1, 4, half=0)); a side empty: "
                "feature_max (an unbounded spread); crossed books give negative values",
                "quoted spread, book record levels", 5),
    FeatureSpec("imb_l1", 1, IMB_FRAC_BITS, "fraction of level-1 size, [-1, 1]",
                "imbalance(bid1 shares, ask1 shares)",
                "level-1 queue imbalance (Cartea, Donnelly & Jaimungal 2018; Gould & Bonart 2016)",
                5),
    FeatureSpec("imb_depth", 1, IMB_FRAC_BITS, "fraction of weighted depth, [-1, 1]",
                f"imbalance(B, A), B = sum_(i<{DEPTH_IMB_LEVELS}) bid_shares[i] << "
                f"({DEPTH_IMB_LEVELS - 1} - i), A likewise (empty levels add 0; below 2**37)",
                "depth-weighted order book imbalance (Cao, Hansch & Wang 2009)", 8),
    FeatureSpec("microprice_mid", 11, 6, "ticks",
                "two-sided: saturate(round_shift(spread * imb_l1, 4 + 14 + 1 - 6)) "
                "(micro-price minus mid = spread/2 * imbalance, with the saturated spread "
                "code); a side empty: 0",
                "Stoikov (2018) weighted mid price, 'The micro-price', Quantitative Finance 18(12)",
                9),
    *_windowed(WINDOW_SHORT),
    *_windowed(WINDOW_LONG),
    FeatureSpec("intensity_buy", 15, INTENSITY_FRAC_BITS, "events (decayed count)",
                "I_buy after this event (see Intensities)",
                "exponential-kernel Hawkes intensity (Bacry, Mastromatteo & Muzy 2015)", 8),
    FeatureSpec("intensity_sell", 15, INTENSITY_FRAC_BITS, "events (decayed count)",
                "I_sell after this event (see Intensities)",
                "exponential-kernel Hawkes intensity (Bacry, Mastromatteo & Muzy 2015)", 8),
    FeatureSpec("t_since_trade", 6, 0, "log2 ns bucket",
                "bit_length(timestamp - last trade timestamp); TRADE_AGE_NONE before any trade",
                "ITCH 5.0 timestamps (section 1.3)", 3),
)

#: Column names in output order.
FEATURE_NAMES = tuple(f.name for f in FEATURES)
#: Number of feature columns.
N_FEATURES = len(FEATURES)
#: Column index by name.
FEATURE_INDEX = {f.name: i for i, f in enumerate(FEATURES)}
#: Q format by name: ``(int_bits, frac_bits)``.
FEATURE_Q = {f.name: (f.int_bits, f.frac_bits) for f in FEATURES}
#: Units by name.
FEATURE_UNITS = {f.name: f.units for f in FEATURES}
#: Gateware latency by name, cycles.
FEATURE_LATENCY_CYCLES = {f.name: f.latency_cycles for f in FEATURES}
#: Latency of the whole features stage (outputs aligned to the slowest feature), cycles.
FEATURES_LATENCY_CYCLES = max(FEATURE_LATENCY_CYCLES.values())
#: Element dtype of the ``(n, N_FEATURES)`` feature matrix.
FEATURE_DTYPE = np.dtype("<i4")
#: One feature vector with named fields; ``matrix.view(FEATURE_RECORD_DTYPE)[:, 0]``.
FEATURE_RECORD_DTYPE = np.dtype([(name, "<i4") for name in FEATURE_NAMES])

assert len(set(FEATURE_NAMES)) == N_FEATURES
assert all(1 + f.int_bits + f.frac_bits <= 32 for f in FEATURES)


def feature_max(name: str) -> int:
    """Largest code of feature ``name``: ``2**(int_bits + frac_bits) - 1``."""
    i, f = FEATURE_Q[name]
    return (1 << (i + f)) - 1


def feature_min(name: str) -> int:
    """Smallest code of feature ``name``: ``-2**(int_bits + frac_bits)``."""
    i, f = FEATURE_Q[name]
    return -(1 << (i + f))


def feature_scale(name: str) -> float:
    """Real value of one code of feature ``name`` (``2**-frac_bits``), in its units."""
    return 2.0 ** -FEATURE_Q[name][1]
