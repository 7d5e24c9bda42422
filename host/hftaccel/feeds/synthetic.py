"""Seeded synthetic ITCH 5.0 order flow: many symbols, self-consistent, bounded memory.

The generator simulates the order-level feed of a whole exchange: thousands of stock locates
with Zipf-distributed activity, each with a price-time book that the generated messages keep
consistent. Adds (A, F with MPID attribution) are priced on the one-cent grid (100 in
``Price(4)`` units, 1/10,000 USD) within a few ticks of a per-symbol reference price that
random-walks inside the spread, and never lock or cross the opposite best; executions (E, C)
hit an order at the touch (the best price of its side); cancels (X), deletes (D) and replaces
(U) name live orders with enough shares; hidden executions (P) print between the quotes and
leave the book alone. Symbols are drawn from the Zipf weights with Walker's alias method (Vose
1991, IEEE Trans. Softw. Eng. 17(9)).
Order reference numbers and match numbers are unique and increasing. Arrivals are a Poisson
process, or with ``hawkes=True`` a self-exciting Hawkes process with an exponential kernel,
simulated exactly (Dassios & Zhao 2013, "Exact simulation of Hawkes process with exponentially
decaying intensity", Electron. Commun. Probab. 18(62)).

The simulation core is one ``numba.njit`` loop over per-chunk column arrays; its state (order
slots, caches, RNG, clock) persists across chunks, so chunked output is byte-identical to
one-shot output and memory is bounded by the per-symbol live-order caps, not by the length.
The RNG is a private SplitMix64 stream (Steele, Lea & Flood 2014), so concurrent generators
do not disturb each other.

Message layouts come from :mod:`hftaccel.spec.itch`; the output is the "messages" dict of
:mod:`hftaccel.feeds.itch`.
"""

from __future__ import annotations

import gzip as _gzip
import math
import os

import numba
import numpy as np

from hftaccel.feeds import itch
from hftaccel.spec.book import MAX_LOCATES
from hftaccel.spec.itch import TICK_SIZE

__all__ = [
    "DEFAULT_MIX",
    "MPIDS",
    "TICK",
    "stock_names",
    "generate",
    "write_itch",
]

#: Price grid step in ``Price(4)`` units (1/10,000 USD): one cent.
TICK = TICK_SIZE

#: Default probabilities of the order-flow actions (before the consistency fallbacks: an action
#: on a symbol with no live order becomes an add, an add on a symbol at its live-order cap
#: becomes a delete, a partial cancel of a 1-share order becomes a delete).
DEFAULT_MIX = {"A": 0.425, "F": 0.045, "E": 0.055, "C": 0.010, "X": 0.055, "D": 0.335,
               "U": 0.050, "P": 0.025}

#: MPIDs used for the attribution of F messages.
MPIDS = (b"GSCO", b"MSCO", b"UBSS", b"CDRG", b"NITE", b"VIRT", b"JPMS", b"SUSQ")

# Action codes of the core; _TYPES[code] is the ITCH Message Type.
_TYPES = "AFECXDUP"
_A, _F, _E, _C, _X, _D, _U, _P = range(8)

# 1 / log(1 - p) of the geometric draws (sizes: p = 0.45, add prices: 0.35, replace moves: 0.5).
_G45, _G35, _G50 = (1.0 / math.log(1.0 - p) for p in (0.45, 0.35, 0.5))
# Per-symbol integer state columns.
_BASE, _CAP, _CNT, _MID, _BB, _BA, _NBB, _NBA = range(8)
# Scalar integer state.
_NEXT_REF, _NEXT_MATCH = range(2)
# Scalar float state.
_T, _LAM = range(2)
# Float parameters.
_RATE, _HAWKES, _BRANCH, _BETA, _PWALK, _PF_PRINT = range(6)

@numba.njit(cache=True, inline="always")
def _next_u64(rng):  # pragma: no cover - compiled
    rng[0] += np.uint64(0x9E3779B97F4A7C15)
    z = rng[0]
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True, inline="always")
def _uniform(rng):  # pragma: no cover - compiled
    """Uniform double in [0, 1)."""
    return np.float64(_next_u64(rng) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@numba.njit(cache=True, inline="always")
def _randint(rng, k):  # pragma: no cover - compiled
    """Uniform integer in [0, k), k >= 1."""
    return min(np.int64(_uniform(rng) * k), k - 1)


@numba.njit(cache=True, inline="always")
def _geometric(rng, inv_log_q, cap):  # pragma: no cover - compiled
    """Failures before the first success (``inv_log_q = 1 / log(1 - p)`` for success
    probability p), at most cap."""
    g = np.int64(math.log(1.0 - _uniform(rng)) * inv_log_q)
    return min(g, cap)


@numba.njit(cache=True, inline="always")
def _lot(rng):  # pragma: no cover - compiled
    """Order size in shares: 10% odd lots (1-99), else round lots of 100 (mostly 1-3 lots)."""
    if _uniform(rng) < 0.1:
        return 1 + _randint(rng, 99)
    return 100 * (1 + _geometric(rng, _G45, 29))


@numba.njit(cache=True)
def _rescan(sym, s, o_side, o_px, side):  # pragma: no cover - compiled
    """Recompute the best price (ticks, 0 when empty) of one side of symbol s and the number
    of orders at it, from the symbol's live slots."""
    base = sym[s, _BASE]
    best = 0
    n = 0
    for i in range(base, base + sym[s, _CNT]):
        if o_side[i] == side:
            p = o_px[i]
            if best == 0 or (side == 0 and p > best) or (side == 1 and p < best):
                best = p
                n = 1
            elif p == best:
                n += 1
    if side == 0:
        sym[s, _BB] = best
        sym[s, _NBB] = n
    else:
        sym[s, _BA] = best
        sym[s, _NBA] = n


@numba.njit(cache=True, inline="always")
def _note_removed(sym, s, o_side, o_px, side, px):  # pragma: no cover - compiled
    """Update the best-price cache after an order at ``px`` left ``side`` (its slot already
    vacated); rescan only when the best level emptied."""
    col = _BB if side == 0 else _BA
    ncol = _NBB if side == 0 else _NBA
    if sym[s, col] == px:
        sym[s, ncol] -= 1
        if sym[s, ncol] == 0:
            _rescan(sym, s, o_side, o_px, side)


@numba.njit(cache=True, inline="always")
def _note_added(sym, s, side, px):  # pragma: no cover - compiled
    if side == 0:
        if px > sym[s, _BB]:
            sym[s, _BB] = px
            sym[s, _NBB] = 1
        elif px == sym[s, _BB]:
            sym[s, _NBB] += 1
    elif sym[s, _BA] == 0 or px < sym[s, _BA]:
        sym[s, _BA] = px
        sym[s, _NBA] = 1
    elif px == sym[s, _BA]:
        sym[s, _NBA] += 1


@numba.njit(cache=True, inline="always")
def _remove_slot(sym, s, i, o_ref, o_side, o_px, o_sh):  # pragma: no cover - compiled
    """Swap-remove slot i of symbol s (slots stay packed)."""
    last = sym[s, _BASE] + sym[s, _CNT] - 1
    o_ref[i] = o_ref[last]
    o_side[i] = o_side[last]
    o_px[i] = o_px[last]
    o_sh[i] = o_sh[last]
    sym[s, _CNT] -= 1


@numba.njit(cache=True, inline="always")
def _add_price(rng, sym, s, side):  # pragma: no cover - compiled
    """Price (ticks) of a new order: a few ticks behind the reference, never locking or
    crossing the opposite best."""
    g = _geometric(rng, _G35, 40)
    mid = sym[s, _MID]
    if side == 0:
        px = max(mid - 1 - g, 1)
        ba = sym[s, _BA]
        if ba != 0 and px >= ba:
            px = ba - 1
    else:
        px = mid + 1 + g
        bb = sym[s, _BB]
        if px <= bb:
            px = bb + 1
    return px


@numba.njit(cache=True)
def _fill(n, rng, scal_i, scal_f, par, sym, alias_p, alias_i, cum_mix,
          o_ref, o_side, o_px, o_sh,
          kind, loc, ts, ref, nref, side_out, shares, price, match, aux):  # pragma: no cover
    """Generate n messages into the output columns; all state arguments are updated in place."""
    n_sym = alias_p.shape[0]
    rate = par[_RATE]
    hawkes = par[_HAWKES] != 0.0
    branch = par[_BRANCH]
    beta = par[_BETA]
    p_walk = par[_PWALK]
    p_nonprint = par[_PF_PRINT]
    mu = rate * (1.0 - branch)
    jump = branch * beta
    t = scal_f[_T]
    lam = scal_f[_LAM]
    for k in range(n):
        # ---- arrival time
        if hawkes:
            w = -math.log(1.0 - _uniform(rng)) / mu
            if lam > 1e-300:
                d = 1.0 + beta * math.log(1.0 - _uniform(rng)) / lam
                if d > 0.0:
                    w2 = -math.log(d) / beta
                    if w2 < w:
                        w = w2
            t += w
            lam = lam * math.exp(-beta * w) + jump
        else:
            t += -math.log(1.0 - _uniform(rng)) / rate
        ts[k] = np.uint64(t)

        # ---- symbol (Zipf weights) and action
        u = _uniform(rng) * n_sym                    # Walker's alias method
        s = min(np.int64(u), n_sym - 1)
        if u - s >= alias_p[s]:
            s = alias_i[s]
        u = _uniform(rng)
        a = np.searchsorted(cum_mix, u, side="right")
        if a > _P:
            a = _P
        cnt = sym[s, _CNT]
        if cnt == 0 and a != _A and a != _F and a != _P:
            a = _A
        elif cnt >= sym[s, _CAP] and (a == _A or a == _F):
            a = _D

        # ---- reference price walk, kept inside the spread
        if _uniform(rng) < p_walk:
            if _uniform(rng) < 0.5:
                sym[s, _MID] -= 1
            else:
                sym[s, _MID] += 1
        bb = sym[s, _BB]
        ba = sym[s, _BA]
        if bb != 0 and sym[s, _MID] < bb:
            sym[s, _MID] = bb
        if ba != 0 and sym[s, _MID] > ba:
            sym[s, _MID] = ba
        if sym[s, _MID] < 2:
            sym[s, _MID] = 2

        base = sym[s, _BASE]
        loc[k] = s + 1
        nref[k] = 0
        match[k] = 0
        aux[k] = 0
        if a == _A or a == _F:
            sd = _randint(rng, 2)
            px = _add_price(rng, sym, s, sd)
            sh = _lot(rng)
            i = base + cnt
            r = scal_i[_NEXT_REF]
            scal_i[_NEXT_REF] = r + 1
            o_ref[i] = r
            o_side[i] = sd
            o_px[i] = px
            o_sh[i] = sh
            sym[s, _CNT] = cnt + 1
            _note_added(sym, s, sd, px)
            ref[k] = r
            side_out[k] = sd
            shares[k] = sh
            price[k] = px
            if a == _F:
                aux[k] = _randint(rng, 8)
        elif a == _E or a == _C:
            sd = _randint(rng, 2)
            if (sd == 0 and bb == 0) or (sd == 1 and ba == 0):
                sd = 1 - sd
            best = bb if sd == 0 else ba
            # an order at the touch: scan the symbol's slots from a random start
            r0 = _randint(rng, cnt)
            j = base
            for q in range(cnt):
                i = base + (r0 + q) % cnt
                if o_side[i] == sd and o_px[i] == best:
                    j = i
                    break
            rem = o_sh[j]
            if rem >= 2 and _uniform(rng) < 0.5:
                ex = 1 + _randint(rng, rem - 1)
            else:
                ex = rem
            m = scal_i[_NEXT_MATCH]
            scal_i[_NEXT_MATCH] = m + 1
            ref[k] = o_ref[j]
            side_out[k] = sd
            shares[k] = ex
            price[k] = best
            match[k] = m
            if a == _C:
                aux[k] = 0 if _uniform(rng) < p_nonprint else 1
            if ex == rem:
                _remove_slot(sym, s, j, o_ref, o_side, o_px, o_sh)
                _note_removed(sym, s, o_side, o_px, sd, best)
            else:
                o_sh[j] = rem - ex
        elif a == _X or a == _D:
            j = base + _randint(rng, cnt)
            rem = o_sh[j]
            sd = o_side[j]
            px = o_px[j]
            ref[k] = o_ref[j]
            side_out[k] = sd
            price[k] = px
            if a == _X and rem >= 2:
                c = 1 + _randint(rng, rem - 1)
                o_sh[j] = rem - c
                shares[k] = c
            else:
                a = _D
                shares[k] = rem
                _remove_slot(sym, s, j, o_ref, o_side, o_px, o_sh)
                _note_removed(sym, s, o_side, o_px, sd, px)
        elif a == _U:
            j = base + _randint(rng, cnt)
            sd = o_side[j]
            old_px = o_px[j]
            r = scal_i[_NEXT_REF]
            scal_i[_NEXT_REF] = r + 1
            ref[k] = o_ref[j]
            nref[k] = r
            # the order leaves its level first, then re-enters near the reference price
            o_side[j] = 2
            _note_removed(sym, s, o_side, o_px, sd, old_px)
            step = _geometric(rng, _G50, 10)
            if _uniform(rng) < 0.5:
                step = -step
            px = old_px + step
            if px < 1:
                px = 1
            if sd == 0:
                if sym[s, _BA] != 0 and px >= sym[s, _BA]:
                    px = sym[s, _BA] - 1
            elif px <= sym[s, _BB]:
                px = sym[s, _BB] + 1
            sh = _lot(rng)
            o_ref[j] = r
            o_side[j] = sd
            o_px[j] = px
            o_sh[j] = sh
            _note_added(sym, s, sd, px)
            side_out[k] = sd
            shares[k] = sh
            price[k] = px
        else:  # _P: execution against a non-displayed order, printed between the quotes
            if bb != 0 and ba != 0:
                px = (bb + ba) // 2
            elif bb != 0:
                px = bb
            elif ba != 0:
                px = ba
            else:
                px = sym[s, _MID]
            m = scal_i[_NEXT_MATCH]
            scal_i[_NEXT_MATCH] = m + 1
            ref[k] = 0
            side_out[k] = 0
            shares[k] = _lot(rng)
            price[k] = px
            match[k] = m
        kind[k] = a
    scal_f[_T] = t
    scal_f[_LAM] = lam


def stock_names(n_symbols: int) -> np.ndarray:
    """Stock symbols of locates 1..n_symbols: ``b"SYM00001"`` ... (8 characters, unique).

    Returns
    -------
    np.ndarray of S8, shape (n_symbols,)
        Entry ``i`` is the symbol of stock locate ``i + 1``.
    """
    return np.array([f"SYM{i:05d}".encode() for i in range(1, n_symbols + 1)], dtype="S8")


def _check_args(n_messages, n_symbols, chunk_size, start_ns, rate_hz, zipf_exponent,
                hawkes_branching, hawkes_decay_ns, max_live_orders, mix):
    def need(ok, what, value):
        if not ok:
            raise ValueError(f"synthetic ITCH: {what}, got {value!r}")

    need(isinstance(n_messages, (int, np.integer)) and n_messages >= 0,
         "n_messages must be a non-negative integer", n_messages)
    need(isinstance(n_symbols, (int, np.integer)) and 1 <= n_symbols < MAX_LOCATES,
         f"n_symbols must be an integer in 1..{MAX_LOCATES - 1}", n_symbols)
    need(isinstance(chunk_size, (int, np.integer)) and chunk_size >= 1,
         "chunk_size must be a positive integer", chunk_size)
    need(isinstance(start_ns, (int, np.integer)) and 0 <= start_ns < 86_400_000_000_000,
         "start_ns must be ns since midnight (0 <= start_ns < 86,400e9)", start_ns)
    need(rate_hz > 0, "rate_hz must be positive", rate_hz)
    need(zipf_exponent >= 0, "zipf_exponent must be >= 0", zipf_exponent)
    need(0 <= hawkes_branching < 1, "hawkes_branching must be in [0, 1)", hawkes_branching)
    need(hawkes_decay_ns > 0, "hawkes_decay_ns must be positive", hawkes_decay_ns)
    need(isinstance(max_live_orders, (int, np.integer)) and max_live_orders >= 8 * n_symbols,
         "max_live_orders must be an integer >= 8 * n_symbols", max_live_orders)
    unknown = set(mix) - set(_TYPES)
    need(not unknown, f"mix keys must be among {_TYPES!r}", sorted(unknown))
    probs = np.array([float(mix.get(t, 0.0)) for t in _TYPES])
    need((probs >= 0).all() and probs.sum() > 0, "mix probabilities must be >= 0, not all 0",
         mix)
    need(probs[_A] + probs[_F] > 0, "mix must contain adds (A or F)", mix)
    return probs / probs.sum()


def _alias_table(weights: np.ndarray):
    """Walker's alias table (Vose's construction) for sampling index i with probability
    ``weights[i]`` (summing to 1) from one uniform draw.

    Returns
    -------
    prob : np.ndarray[float64], shape (n,)
        Probability of keeping column i.
    alias : np.ndarray[int64], shape (n,)
        Index taken otherwise.
    """
    n = weights.shape[0]
    scaled = weights * n
    prob = np.ones(n)
    alias = np.arange(n, dtype=np.int64)
    small = [i for i in range(n) if scaled[i] < 1.0]
    large = [i for i in range(n) if scaled[i] >= 1.0]
    while small and large:
        i, j = small.pop(), large.pop()
        prob[i] = scaled[i]
        alias[i] = j
        scaled[j] -= 1.0 - scaled[i]
        (small if scaled[j] < 1.0 else large).append(j)
    return prob, alias


class _State:
    """Order slots, caches, RNG and clock of one generator run."""

    def __init__(self, *, n_symbols, seed, start_ns, rate_hz, zipf_exponent, hawkes,
                 hawkes_branching, hawkes_decay_ns, max_live_orders, probs):
        ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, 0x5E17])
        setup = np.random.default_rng(ss)
        self.rng = ss.generate_state(1, dtype=np.uint64)
        # Zipf-like activity over a random permutation of the locates
        weights = 1.0 / np.arange(1, n_symbols + 1, dtype=np.float64) ** zipf_exponent
        weights = weights[setup.permutation(n_symbols)]
        weights /= weights.sum()
        self.alias_p, self.alias_i = _alias_table(weights)
        self.cum_mix = np.cumsum(probs)
        self.cum_mix[-1] = 1.0
        # live-order caps grow with activity: 8 .. 4096 per symbol, max_live_orders in all
        caps = np.clip(np.floor(weights * max_live_orders), 8, 4096).astype(np.int64)
        self.sym = np.zeros((n_symbols, 8), np.int64)
        self.sym[:, _CAP] = caps
        self.sym[1:, _BASE] = np.cumsum(caps)[:-1]
        # reference prices: log-uniform $5 .. $500, in ticks
        self.sym[:, _MID] = np.round(np.exp(setup.uniform(np.log(500), np.log(50_000),
                                                         n_symbols))).astype(np.int64)
        total = int(caps.sum())
        self.o_ref = np.zeros(total, np.uint64)
        self.o_side = np.zeros(total, np.uint8)
        self.o_px = np.zeros(total, np.int64)
        self.o_sh = np.zeros(total, np.int64)
        self.scal_i = np.array([1, 1], np.int64)
        self.scal_f = np.array([float(start_ns), 0.0])
        self.par = np.array([rate_hz * 1e-9, 1.0 if hawkes else 0.0, hawkes_branching,
                             1.0 / hawkes_decay_ns, 0.05, 0.1])

    def fill(self, n):
        cols = dict(kind=np.empty(n, np.uint8), loc=np.empty(n, np.uint16),
                    ts=np.empty(n, np.uint64), ref=np.empty(n, np.uint64),
                    nref=np.empty(n, np.uint64), side=np.empty(n, np.uint8),
                    shares=np.empty(n, np.uint32), match=np.empty(n, np.uint64),
                    aux=np.empty(n, np.uint8))
        # prices leave the core in ticks; they are scaled to Price(4) below
        px_ticks = np.empty(n, np.int64)
        _fill(n, self.rng, self.scal_i, self.scal_f, self.par, self.sym, self.alias_p, self.alias_i,
              self.cum_mix, self.o_ref, self.o_side, self.o_px, self.o_sh,
              cols["kind"], cols["loc"], cols["ts"], cols["ref"], cols["nref"], cols["side"],
              cols["shares"], px_ticks, cols["match"], cols["aux"])
        if n and px_ticks.max() * TICK > np.iinfo(np.uint32).max:
            raise ValueError("synthetic ITCH: a price walked past the Price(4) range")
        cols["price"] = (px_ticks * TICK).astype(np.uint32)
        return cols

    @property
    def now(self) -> int:
        return int(self.scal_f[_T])


_SIDE_CODES = np.array([b"B", b"S", b"B"], dtype="S1")
_MPID_CODES = np.array(MPIDS, dtype="S4")


def _messages(cols: dict, seq0: int, names: np.ndarray) -> dict:
    """Columns of the core -> messages dict of decoded ITCH arrays."""
    kind = cols["kind"]
    seqs = np.arange(seq0, seq0 + kind.shape[0], dtype=np.uint64)
    out = {}
    for code, t in enumerate(_TYPES):
        sel = np.flatnonzero(kind == code)
        if sel.shape[0] == 0:
            continue
        arr = itch.empty(t, sel.shape[0])
        arr["seq"] = seqs[sel]
        loc = cols["loc"][sel]
        arr["stock_locate"] = loc
        arr["timestamp"] = cols["ts"][sel]
        if t == "U":
            arr["original_order_ref"] = cols["ref"][sel]
            arr["new_order_ref"] = cols["nref"][sel]
        else:
            arr["order_ref"] = cols["ref"][sel]
        if t in "AFP":
            arr["side"] = _SIDE_CODES[cols["side"][sel]]
            arr["stock"] = names[loc.astype(np.int64) - 1]
        if t in "AFUP":
            arr["shares"] = cols["shares"][sel]
            arr["price"] = cols["price"][sel]
        if t in "ECP":
            arr["match_number"] = cols["match"][sel]
        if t in "EC":
            arr["executed_shares"] = cols["shares"][sel]
        if t == "C":
            arr["execution_price"] = cols["price"][sel]
            arr["printable"] = np.where(cols["aux"][sel] == 1, b"Y", b"N")
        if t == "X":
            arr["cancelled_shares"] = cols["shares"][sel]
        if t == "F":
            arr["attribution"] = _MPID_CODES[cols["aux"][sel]]
        out[t] = arr
    return out


def _system_events(codes: str, seq0: int, ts: int) -> np.ndarray:
    arr = itch.empty("S", len(codes))
    arr["seq"] = np.arange(seq0, seq0 + len(codes), dtype=np.uint64)
    arr["timestamp"] = ts
    arr["event_code"] = np.array([c.encode() for c in codes], dtype="S1")
    return arr


def _directory(names: np.ndarray, seq0: int, ts: int) -> np.ndarray:
    n = names.shape[0]
    arr = itch.empty("R", n)
    arr["seq"] = np.arange(seq0, seq0 + n, dtype=np.uint64)
    arr["stock_locate"] = np.arange(1, n + 1, dtype=np.uint16)
    arr["timestamp"] = ts
    arr["stock"] = names
    arr["market_category"] = b"Q"
    arr["financial_status_indicator"] = b"N"
    arr["round_lot_size"] = 100
    arr["round_lots_only"] = b"N"
    arr["issue_classification"] = b"C"
    arr["issue_sub_type"] = b"Z "
    arr["authenticity"] = b"P"
    arr["short_sale_threshold_indicator"] = b"N"
    arr["ipo_flag"] = b"N"
    arr["luld_reference_price_tier"] = b"2"
    arr["etp_flag"] = b"N"
    arr["inverse_indicator"] = b"N"
    return arr


def _merge(*parts: dict) -> dict:
    """Join messages dicts whose sequence ranges are disjoint and ascending, part by part."""
    out = {}
    for part in parts:
        for t, arr in part.items():
            out[t] = arr if t not in out else np.concatenate([out[t], arr])
    return out


def generate(n_messages: int, *, n_symbols: int = 1000, seed: int = 0,
             chunk_size: int = 1_000_000, hawkes: bool = False,
             start_ns: int = 34_200_000_000_000, framing: bool = True,
             rate_hz: float = 100_000.0, zipf_exponent: float = 1.0,
             hawkes_branching: float = 0.8, hawkes_decay_ns: float = 200_000.0,
             max_live_orders: int | None = None, mix: dict | None = None):
    """Generate a synthetic, self-consistent ITCH 5.0 order-flow stream chunk by chunk.

    Parameters
    ----------
    n_messages : int
        Order-flow messages (A F E C X D U P) to generate; the framing messages come on top.
    n_symbols : int
        Stock locates 1..n_symbols, with Zipf-like activity (weight ``1 / rank**zipf_exponent``
        over a seeded random permutation of the locates).
    seed : int
        Seed; the same seed and arguments give the same messages, byte for byte.
    chunk_size : int
        Order-flow messages per yielded chunk. Output does not depend on it.
    hawkes : bool
        False: Poisson arrivals at ``rate_hz``. True: a Hawkes process with exponential kernel
        ``branching / decay * exp(-t / decay)`` and baseline ``rate_hz * (1 - branching)``, so
        the long-run rate is still ``rate_hz`` but arrivals cluster.
    start_ns : int
        Timestamp of the framing messages and origin of the arrival clock, ns since midnight
        (default 09:30:00).
    framing : bool
        Prepend System Events O, S, Q and one Stock Directory (R) per symbol to the first chunk
        (O, R..., S, Q) and append System Events M, E, C to the last chunk.
    rate_hz : float
        Mean message rate, messages per second.
    zipf_exponent : float
        Exponent of the activity weights (0: uniform).
    hawkes_branching : float
        Branching ratio of the Hawkes process, in [0, 1).
    hawkes_decay_ns : float
        Decay time of the Hawkes kernel, ns.
    max_live_orders : int, optional
        Total live-order budget, split over the symbols by activity (at least 8 and at most
        4096 per symbol). Default ``max(200_000, 8 * n_symbols)``. It bounds the memory.
    mix : dict, optional
        Probabilities of the actions by Message Type (keys from ``"AFECXDUP"``, normalized);
        default :data:`DEFAULT_MIX`.

    Yields
    ------
    dict[str, np.ndarray]
        A messages dict (see :mod:`hftaccel.feeds.itch`) per chunk; ``seq`` runs on from
        chunk to chunk starting at 0, ``offset`` is 0. Prices are multiples of :data:`TICK`
        (1/10,000 USD), timestamps (ns since midnight) are non-decreasing, order reference
        numbers and match numbers start at 1 and increase; P messages carry order reference
        0 and side B as NASDAQ sends them.

    Raises
    ------
    ValueError
        An argument is out of range (the message quotes it), or a reference price walked past
        the ``Price(4)`` range.
    """
    mix = DEFAULT_MIX if mix is None else mix
    if max_live_orders is None:
        max_live_orders = max(200_000, 8 * int(n_symbols))
    probs = _check_args(n_messages, n_symbols, chunk_size, start_ns, rate_hz, zipf_exponent,
                        hawkes_branching, hawkes_decay_ns, max_live_orders, mix)
    return _generate(int(n_messages), int(n_symbols), int(seed), int(chunk_size), bool(hawkes),
                     int(start_ns), bool(framing), float(rate_hz), float(zipf_exponent),
                     float(hawkes_branching), float(hawkes_decay_ns), int(max_live_orders),
                     probs)


def _generate(n_messages, n_symbols, seed, chunk_size, hawkes, start_ns, framing, rate_hz,
              zipf_exponent, hawkes_branching, hawkes_decay_ns, max_live_orders, probs):
    state = _State(n_symbols=n_symbols, seed=seed, start_ns=start_ns, rate_hz=rate_hz,
                   zipf_exponent=zipf_exponent, hawkes=hawkes,
                   hawkes_branching=hawkes_branching, hawkes_decay_ns=hawkes_decay_ns,
                   max_live_orders=max_live_orders, probs=probs)
    names = stock_names(n_symbols)
    seq = 0
    head = {}
    if framing:
        head = {"S": _system_events("O", 0, start_ns), "R": _directory(names, 1, start_ns)}
        head["S"] = np.concatenate([head["S"], _system_events("SQ", n_symbols + 1, start_ns)])
        seq = n_symbols + 3
    done = 0
    first = True
    while first or done < n_messages:
        n = min(chunk_size, n_messages - done)
        chunk = _messages(state.fill(n), seq, names)
        seq += n
        done += n
        if first:
            chunk = _merge(head, chunk)
            first = False
        if framing and done >= n_messages:
            chunk = _merge(chunk, {"S": _system_events("MEC", seq, state.now)})
            seq += 3
        yield chunk


def write_itch(path, n_messages: int, *, compress: bool | None = None, **kw) -> int:
    """Write a synthetic stream as a length-framed ITCH 5.0 file, chunk by chunk.

    Parameters
    ----------
    path : str or os.PathLike
        Output file.
    n_messages : int
        Order-flow messages, as in :func:`generate`.
    compress : bool, optional
        gzip the file; default: when ``path`` ends in ``.gz``.
    **kw
        Keyword arguments of :func:`generate` (``n_symbols``, ``seed``, ``chunk_size``, ...).

    Returns
    -------
    int
        Bytes written (uncompressed).

    Raises
    ------
    ValueError
        See :func:`generate`.
    OSError
        The file cannot be written.
    """
    path = os.fspath(path)
    if compress is None:
        compress = path.endswith(".gz")
    chunks = generate(n_messages, **kw)   # validates before the file is opened
    opener = _gzip.open if compress else open
    total = 0
    with opener(path, "wb") as fh:
        for chunk in chunks:
            data = itch.frame(*itch.encode(chunk))
            fh.write(data)
            total += len(data)
    return total
