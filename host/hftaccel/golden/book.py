"""Golden order-level limit order book over ITCH 5.0 order events, all symbols at once (Numba).

The book consumes :data:`hftaccel.spec.itch.ORDER_EVENT_DTYPE` records (one per A F E C X D U P
message, sorted by sequence number) and writes one :func:`hftaccel.spec.book.book_record_dtype`
record after every message that changed the book, and after every P (trade, non-cross) print.
Source: NASDAQ TotalView-ITCH 5.0 sections 4.3 (Add Order A/F), 4.4 (Order Executed E, Executed
With Price C, Cancel X, Delete D, Replace U) and 4.5.1 (Trade, non-cross P).

State (persists across :meth:`Book.apply` calls, so a long stream can be fed in chunks):

- order table: open-addressing hash on the order reference number (Fibonacci hashing of the
  reference's 16-wide block, so nearly sequential exchange references stay in a few cache
  lines; linear probing, backward-shift deletion, power-of-two capacity, doubled between Numba
  calls before its load passes :data:`MAX_ORDER_LOAD`); a 16-byte slot holds the reference,
  the remaining shares and the index of the order's price level node. The order's price, side
  and stock locate live in the level node (the locate of an E C X D U message's header is not
  used: the order's own locate is).
- price levels: a pool of level nodes (recycled through a free list), one per occupied
  (stock locate, side, price), in a doubly linked list per (locate, side) sorted best first
  (highest bid, lowest ask), found by a second open-addressing hash on
  ``locate << 33 | side << 32 | price``. A new level is linked in by walking from whichever
  end of its list is closer in price. The pool grows between Numba calls when it is full.
- top-N snapshot per (locate, side): the first N levels of each list in record layout, kept in
  step with every level change, so writing a record copies two contiguous rows.

Per-order time priority is not modelled (records carry only level aggregates); a replace goes
through remove + add, as the spec's loss of priority implies.

Rejected events (counted by kind in :data:`hftaccel.spec.book.BAD_REFERENCE_KINDS`, no record,
no change to any order) -- checks in this order:

- A/F: ``bad_side`` (side not B/S), ``zero_shares``, ``duplicate_order`` (reference live).
- E/C/X/D: ``unknown_order``.
- U: ``unknown_order`` (original), ``zero_shares``, ``duplicate_order`` (new reference live and
  not the original). A rejected replace leaves the original order on the book untouched.

Accepted with a count: E/C/X whose shares exceed the order's remaining shares count one
``over_execution``; the order is removed and the record's ``shares`` is the remaining shares
actually taken off the book. Every accepted E/C/X/D/U/A/F and every P writes a record (an E,
C or X of 0 shares is accepted and leaves the book unchanged). Aggregate level shares are kept
in 64 bits and saturate at 2**32 - 1 in records.

The kernels are compiled without Numba's reference counting (``_nrt=False``): they never
allocate, and the per-call array increfs otherwise cost more than the book logic.
"""

from __future__ import annotations

import sys

import numba
import numpy as np

from hftaccel.spec.book import (BAD_REFERENCE_KINDS, BOOK_DEPTH, MAX_LOCATES, ORDER_TABLE_SIZE,
                                book_record_dtype)
from hftaccel.spec.itch import ORDER_EVENT_DTYPE, SIDE_BUY, SIDE_SELL

__all__ = ["Book", "replay", "FIRST_BAD_KEPT", "MAX_ORDER_LOAD"]

if sys.byteorder != "little":  # pragma: no cover - records are little-endian words
    raise ImportError("hftaccel.golden.book writes little-endian record words; big-endian host")

#: How many sequence numbers of the first bad references are kept per kind.
FIRST_BAD_KEPT = 8
#: The order table doubles before its load (live orders / slots) exceeds this fraction.
MAX_ORDER_LOAD = 0.6

# One order-table slot (16 bytes): level == -1 marks an empty slot.
_ORDER_SLOT = np.dtype([("ref", "<u8"), ("shares", "<u4"), ("level", "<i4")])
# One price level node (32 bytes): key = locate << 33 | side << 32 | price (side 0 bid, 1 ask);
# orders == 0 marks a free node, whose ``next`` links the free list.
_LEVEL = np.dtype([("key", "<u8"), ("shares", "<i8"), ("price", "<u4"), ("orders", "<i4"),
                   ("prev", "<i4"), ("next", "<i4")])
# One level-hash slot (16 bytes): node == -1 marks an empty slot.
_LEVEL_SLOT = np.dtype([("key", "<u8"), ("node", "<i4"), ("pad", "<u4")])
# The event record as Numba sees it: ORDER_EVENT_DTYPE without its void padding field.
_EVENT_VIEW = np.dtype({
    "names": [n for n in ORDER_EVENT_DTYPE.names if not n.startswith("_")],
    "formats": [ORDER_EVENT_DTYPE.fields[n][0] for n in ORDER_EVENT_DTYPE.names
                if not n.startswith("_")],
    "offsets": [ORDER_EVENT_DTYPE.fields[n][1] for n in ORDER_EVENT_DTYPE.names
                if not n.startswith("_")],
    "itemsize": ORDER_EVENT_DTYPE.itemsize,
})

_GOLD = np.uint64(0x9E3779B97F4A7C15)  # 2**64 / golden ratio: Fibonacci hashing
_REF_BLOCK_BITS = 4  # runs of 16 consecutive order references hash to consecutive slots
_REF_BLOCK_MASK = (1 << _REF_BLOCK_BITS) - 1
_U4_MAX = 0xFFFFFFFF
_NO_FREE = -1

# Indices of the int64 state vector.
_ST_LIVE, _ST_FREE, _ST_TOP, _ST_LEVELS = 0, 1, 2, 3
# Kernel exit codes.
_DONE, _GROW_ORDERS, _GROW_LEVELS, _BAD_TYPE = 0, 1, 2, 3
# Bad-reference counter indices, in spec order.
_UNKNOWN = BAD_REFERENCE_KINDS.index("unknown_order")
_OVER = BAD_REFERENCE_KINDS.index("over_execution")
_DUP = BAD_REFERENCE_KINDS.index("duplicate_order")
_BAD_SIDE = BAD_REFERENCE_KINDS.index("bad_side")
_ZERO = BAD_REFERENCE_KINDS.index("zero_shares")

_A, _F, _E, _C, _X, _D, _U, _P = (ord(c) for c in "AFECXDUP")
_SIDE_CODE = (SIDE_BUY, SIDE_SELL)

# Word (uint32) positions of the record fields; ``wo`` vector layout passed to the kernel.
_WO_NAMES = ("timestamp", "seq", "order_ref", "shares", "price", "stock_locate", "_pad",
             "bid_price", "ask_price")


def _word_offsets(dtype: np.dtype) -> np.ndarray:
    """Word (4-byte) offsets of the record fields, checking the packing the kernel relies on."""
    off = {name: dtype.fields[name][1] for name in dtype.names}
    if off["msg_type"] != off["stock_locate"] + 2 or off["side"] != off["stock_locate"] + 3:
        raise ValueError("book record: stock_locate, msg_type, side must share one 4-byte word")
    if dtype.fields["_pad"][0].itemsize != 4 or dtype.itemsize % 8:
        raise ValueError("book record: expected a 4-byte pad and a size multiple of 8 bytes")
    for s in ("bid", "ask"):
        width = dtype.fields[f"{s}_price"][0].itemsize
        if (off[f"{s}_shares"] != off[f"{s}_price"] + width
                or off[f"{s}_orders"] != off[f"{s}_price"] + 2 * width):
            raise ValueError(f"book record: {s}_price, {s}_shares, {s}_orders must be adjacent")
    words = []
    for name in _WO_NAMES:
        if off[name] % 4:
            raise ValueError(f"book record field {name!r} is not 4-byte aligned")
        words.append(off[name] // 4)
    return np.array(words, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# Hash tables (Numba)
# --------------------------------------------------------------------------------------------

@numba.njit(cache=True, _nrt=False, inline="always")
def _lslot(key, shift):
    """Home slot of a level key: Fibonacci hashing (top bits of key * 2**64/phi)."""
    return np.int64((key * _GOLD) >> shift)


@numba.njit(cache=True, _nrt=False, inline="always")
def _oslot(ref, shift, mask):
    """Home slot of an order reference: blocks of 2**_REF_BLOCK_BITS consecutive references
    share a Fibonacci-hashed base and occupy consecutive slots (exchange-assigned references
    are nearly sequential, so new and recent orders stay in a few cache lines)."""
    base = np.int64(((ref >> np.uint64(_REF_BLOCK_BITS)) * _GOLD) >> shift)
    return (base + np.int64(ref & np.uint64(_REF_BLOCK_MASK))) & mask


@numba.njit(cache=True, _nrt=False, inline="always")
def _order_probe(orders, ref, shift, mask):
    """Slot of live order ``ref`` (found=True) or the empty slot where it would go."""
    h = _oslot(ref, shift, mask)
    while orders[h].level >= 0:
        if orders[h].ref == ref:
            return True, h
        h = (h + 1) & mask
    return False, h


@numba.njit(cache=True, _nrt=False, inline="always")
def _stays(i, j, k):
    """Whether an entry at slot j with home slot k must stay when slot i (before j) empties."""
    if i <= j:
        return i < k and k <= j
    return i < k or k <= j


@numba.njit(cache=True, _nrt=False)
def _order_delete(orders, i, shift, mask):
    """Empty slot ``i`` of the order table, shifting its probe chain back (no tombstones)."""
    j = i
    while True:
        j = (j + 1) & mask
        if orders[j].level < 0:
            break
        if not _stays(i, j, _oslot(orders[j].ref, shift, mask)):
            orders[i].ref = orders[j].ref
            orders[i].shares = orders[j].shares
            orders[i].level = orders[j].level
            i = j
    orders[i].level = -1


@numba.njit(cache=True, _nrt=False)
def _lhash_delete(lhash, key, shift, mask):
    """Remove level ``key`` (which must be present) from the level hash."""
    i = _lslot(key, shift)
    while lhash[i].key != key or lhash[i].node < 0:
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        if lhash[j].node < 0:
            break
        if not _stays(i, j, _lslot(lhash[j].key, shift)):
            lhash[i].key = lhash[j].key
            lhash[i].node = lhash[j].node
            i = j
    lhash[i].node = -1


# --------------------------------------------------------------------------------------------
# Top-N snapshot per (locate, side) (Numba)
#
# snap[ls] holds the first min(N, levels) levels of list ls in record layout (N prices, N
# aggregate shares, N order counts), snode[ls] their node indices and scnt[ls] their number.
# It is kept in step with the lists, so a record copies two contiguous rows instead of chasing
# 2N list pointers.
# --------------------------------------------------------------------------------------------

@numba.njit(cache=True, _nrt=False, inline="always")
def _snap_set(snap, snode, depth, ls, j, levels, n):
    snap[ls, j] = levels[n].price
    sh = levels[n].shares
    snap[ls, depth + j] = np.uint32(sh if sh < _U4_MAX else _U4_MAX)
    snap[ls, 2 * depth + j] = np.uint32(levels[n].orders)
    snode[ls, j] = n


@numba.njit(cache=True, _nrt=False, inline="always")
def _snap_move(snap, snode, depth, ls, dst, src):
    snap[ls, dst] = snap[ls, src]
    snap[ls, depth + dst] = snap[ls, depth + src]
    snap[ls, 2 * depth + dst] = snap[ls, 2 * depth + src]
    snode[ls, dst] = snode[ls, src]


@numba.njit(cache=True, _nrt=False, inline="always")
def _snap_find(snode, scnt, ls, n):
    for j in range(scnt[ls]):
        if snode[ls, j] == n:
            return j
    return -1


@numba.njit(cache=True, _nrt=False, inline="always")
def _snap_changed(snap, snode, scnt, depth, ls, levels, n):
    """Level node ``n`` changed its shares or order count."""
    j = _snap_find(snode, scnt, ls, n)
    if j >= 0:
        _snap_set(snap, snode, depth, ls, j, levels, n)


@numba.njit(cache=True, _nrt=False)
def _snap_inserted(snap, snode, scnt, depth, ls, levels, n, sgn):
    """Level node ``n`` was linked into list ``ls`` (sgn: +1 bids, -1 asks)."""
    c = scnt[ls]
    v = sgn * np.int64(levels[n].price)
    j = 0
    while j < c and sgn * np.int64(snap[ls, j]) > v:
        j += 1
    if j >= depth:
        return
    last = c if c < depth else depth - 1
    for q in range(last, j, -1):
        _snap_move(snap, snode, depth, ls, q, q - 1)
    _snap_set(snap, snode, depth, ls, j, levels, n)
    scnt[ls] = last + 1


@numba.njit(cache=True, _nrt=False)
def _snap_removed(snap, snode, scnt, depth, ls, levels, head, n):
    """Level node ``n`` was unlinked from list ``ls`` (the other links already updated)."""
    j = _snap_find(snode, scnt, ls, n)
    if j < 0:
        return
    c = scnt[ls]
    for q in range(j, c - 1):
        _snap_move(snap, snode, depth, ls, q, q + 1)
    c -= 1
    if scnt[ls] == depth:  # levels beyond the snapshot may exist: pull the next one in
        nxt = levels[snode[ls, c - 1]].next if c > 0 else head[ls]
        if nxt >= 0:
            _snap_set(snap, snode, depth, ls, c, levels, nxt)
            c += 1
    for q in range(c, depth):
        snap[ls, q] = 0
        snap[ls, depth + q] = 0
        snap[ls, 2 * depth + q] = 0
    scnt[ls] = c


# --------------------------------------------------------------------------------------------
# Price levels (Numba)
# --------------------------------------------------------------------------------------------

@numba.njit(cache=True, _nrt=False)
def _level_add(levels, lhash, head, tail, snap, snode, scnt, depth, st, key, price, shares,
               lshift):
    """Add one order of ``shares`` at level ``key``; return the level node index."""
    lmask = lhash.shape[0] - 1
    ls = np.int64(key >> np.uint64(32))
    h = _lslot(key, lshift)
    while lhash[h].node >= 0:
        if lhash[h].key == key:
            n = np.int64(lhash[h].node)
            levels[n].shares += shares
            levels[n].orders += 1
            _snap_changed(snap, snode, scnt, depth, ls, levels, n)
            return n
        h = (h + 1) & lmask
    # New level: take a node from the free list or the untouched top of the pool.
    n = st[_ST_FREE]
    if n != _NO_FREE:
        st[_ST_FREE] = levels[n].next
    else:
        n = st[_ST_TOP]
        st[_ST_TOP] = n + 1
    st[_ST_LEVELS] += 1
    lhash[h].key = key
    lhash[h].node = n
    levels[n].key = key
    levels[n].shares = shares
    levels[n].price = price
    levels[n].orders = 1
    sgn = np.int64(1) if (ls & 1) == 0 else np.int64(-1)  # bids: higher is better
    v = sgn * np.int64(price)
    hd = head[ls]
    if hd < 0:
        head[ls] = n
        tail[ls] = n
        levels[n].prev = -1
        levels[n].next = -1
    else:
        tl = tail[ls]
        if sgn * np.int64(levels[hd].price) - v <= v - sgn * np.int64(levels[tl].price):
            cur = hd  # walk from the best end; insert before the first worse level
            while sgn * np.int64(levels[cur].price) > v:
                cur = levels[cur].next
            p = levels[cur].prev
            levels[n].prev = p
            levels[n].next = cur
            levels[cur].prev = n
            if p >= 0:
                levels[p].next = n
            else:
                head[ls] = n
        else:
            cur = tl  # walk from the worst end; insert after the first better level
            while sgn * np.int64(levels[cur].price) < v:
                cur = levels[cur].prev
            nx = levels[cur].next
            levels[n].prev = cur
            levels[n].next = nx
            levels[cur].next = n
            if nx >= 0:
                levels[nx].prev = n
            else:
                tail[ls] = n
    _snap_inserted(snap, snode, scnt, depth, ls, levels, n, sgn)
    return n


@numba.njit(cache=True, _nrt=False, inline="always")
def _level_take(levels, lhash, head, tail, snap, snode, scnt, depth, st, n, shares,
                remove_order, lshift):
    """Take ``shares`` (and one order if ``remove_order``) off level node ``n``."""
    key = levels[n].key
    ls = np.int64(key >> np.uint64(32))
    levels[n].shares -= shares
    if remove_order:
        levels[n].orders -= 1
    if levels[n].orders > 0:
        _snap_changed(snap, snode, scnt, depth, ls, levels, n)
        return
    p = levels[n].prev
    nx = levels[n].next
    if p >= 0:
        levels[p].next = nx
    else:
        head[ls] = nx
    if nx >= 0:
        levels[nx].prev = p
    else:
        tail[ls] = p
    _snap_removed(snap, snode, scnt, depth, ls, levels, head, n)
    _lhash_delete(lhash, key, lshift, lhash.shape[0] - 1)
    levels[n].shares = 0
    levels[n].next = st[_ST_FREE]
    st[_ST_FREE] = n
    st[_ST_LEVELS] -= 1


# --------------------------------------------------------------------------------------------
# Records and the event loop (Numba)
# --------------------------------------------------------------------------------------------

@numba.njit(cache=True, _nrt=False, inline="always")
def _put_u8(out, k, w, x):
    out[k, w] = np.uint32(x & np.uint64(0xFFFFFFFF))
    out[k, w + 1] = np.uint32(x >> np.uint64(32))


@numba.njit(cache=True, _nrt=False, inline="always")
def _write_record(out, k, wo, depth, ev, ref, shares, price, locate, side_code, snap):
    _put_u8(out, k, wo[0], ev.timestamp)
    _put_u8(out, k, wo[1], ev.seq)
    _put_u8(out, k, wo[2], ref)
    out[k, wo[3]] = np.uint32(shares)
    out[k, wo[4]] = np.uint32(price)
    out[k, wo[5]] = (np.uint32(locate) | (np.uint32(ev.msg_type) << np.uint32(16))
                     | (np.uint32(side_code) << np.uint32(24)))
    out[k, wo[6]] = 0
    ls = 2 * np.int64(locate)
    wb = wo[7]
    wa = wo[8]
    for w in range(3 * depth):
        out[k, wb + w] = snap[ls, w]
    for w in range(3 * depth):
        out[k, wa + w] = snap[ls + 1, w]


@numba.njit(cache=True, _nrt=False, inline="always")
def _bad(bad_count, bad_seq, kind, seq):
    c = bad_count[kind]
    if c < bad_seq.shape[1]:
        bad_seq[kind, c] = seq
    bad_count[kind] = c + 1


@numba.njit(cache=True, _nrt=False)
def _apply_kernel(ev, start, k, out, wo, depth, orders, oshift, order_limit, levels, lhash,
                  lshift, head, tail, snap, snode, scnt, st, bad_count, bad_seq):
    """Apply events ``ev[start:]``, writing records from ``out[k]``.

    Returns (exit code, index of the event to resume at, number of records written so far).
    It stops before an event that might need a larger order table or level pool.
    """
    omask = orders.shape[0] - 1
    pool = levels.shape[0]
    n = ev.shape[0]
    for i in range(start, n):
        e = ev[i]
        t = e.msg_type
        if t == _A or t == _F:
            if e.side == SIDE_BUY:
                sb = 0
            elif e.side == SIDE_SELL:
                sb = 1
            else:
                _bad(bad_count, bad_seq, _BAD_SIDE, e.seq)
                continue
            if e.shares == 0:
                _bad(bad_count, bad_seq, _ZERO, e.seq)
                continue
            if st[_ST_LIVE] >= order_limit:
                return _GROW_ORDERS, i, k
            if st[_ST_FREE] == _NO_FREE and st[_ST_TOP] >= pool:
                return _GROW_LEVELS, i, k
            found, h = _order_probe(orders, e.order_ref, oshift, omask)
            if found:
                _bad(bad_count, bad_seq, _DUP, e.seq)
                continue
            key = ((np.uint64(e.stock_locate) << np.uint64(33)) | (np.uint64(sb) << np.uint64(32))
                   | np.uint64(e.price))
            lv = _level_add(levels, lhash, head, tail, snap, snode, scnt, depth, st, key,
                            e.price, np.int64(e.shares), lshift)
            orders[h].ref = e.order_ref
            orders[h].shares = e.shares
            orders[h].level = lv
            st[_ST_LIVE] += 1
            _write_record(out, k, wo, depth, e, e.order_ref, e.shares, e.price, e.stock_locate,
                          e.side, snap)
            k += 1
        elif t == _E or t == _C or t == _X or t == _D:
            found, h = _order_probe(orders, e.order_ref, oshift, omask)
            if not found:
                _bad(bad_count, bad_seq, _UNKNOWN, e.seq)
                continue
            lv = orders[h].level
            rem = orders[h].shares
            key = levels[lv].key
            price = levels[lv].price if t != _C else e.price
            if t == _D:
                x = rem
            else:
                x = e.shares
                if x > rem:
                    _bad(bad_count, bad_seq, _OVER, e.seq)
                    x = rem
            if x == rem:
                _level_take(levels, lhash, head, tail, snap, snode, scnt, depth, st, lv,
                            np.int64(x), True, lshift)
                _order_delete(orders, h, oshift, omask)
                st[_ST_LIVE] -= 1
            else:
                orders[h].shares = rem - x
                _level_take(levels, lhash, head, tail, snap, snode, scnt, depth, st, lv,
                            np.int64(x), False, lshift)
            sb = np.int64((key >> np.uint64(32)) & np.uint64(1))
            _write_record(out, k, wo, depth, e, e.order_ref, x, price,
                          np.uint16(key >> np.uint64(33)), SIDE_BUY if sb == 0 else SIDE_SELL,
                          snap)
            k += 1
        elif t == _U:
            found, h = _order_probe(orders, e.order_ref, oshift, omask)
            if not found:
                _bad(bad_count, bad_seq, _UNKNOWN, e.seq)
                continue
            if e.shares == 0:
                _bad(bad_count, bad_seq, _ZERO, e.seq)
                continue
            if e.new_order_ref != e.order_ref:
                dup, _h2 = _order_probe(orders, e.new_order_ref, oshift, omask)
                if dup:
                    _bad(bad_count, bad_seq, _DUP, e.seq)
                    continue
            if st[_ST_FREE] == _NO_FREE and st[_ST_TOP] >= pool:
                return _GROW_LEVELS, i, k
            lv = orders[h].level
            key = levels[lv].key
            _level_take(levels, lhash, head, tail, snap, snode, scnt, depth, st, lv,
                        np.int64(orders[h].shares), True, lshift)
            _order_delete(orders, h, oshift, omask)
            key = (key & ~np.uint64(0xFFFFFFFF)) | np.uint64(e.price)
            lv = _level_add(levels, lhash, head, tail, snap, snode, scnt, depth, st, key,
                            e.price, np.int64(e.shares), lshift)
            _found, h = _order_probe(orders, e.new_order_ref, oshift, omask)
            orders[h].ref = e.new_order_ref
            orders[h].shares = e.shares
            orders[h].level = lv
            sb = np.int64((key >> np.uint64(32)) & np.uint64(1))
            _write_record(out, k, wo, depth, e, e.new_order_ref, e.shares, e.price,
                          np.uint16(key >> np.uint64(33)), SIDE_BUY if sb == 0 else SIDE_SELL,
                          snap)
            k += 1
        elif t == _P:
            _write_record(out, k, wo, depth, e, np.uint64(0), e.shares, e.price, e.stock_locate,
                          e.side, snap)
            k += 1
        else:
            return _BAD_TYPE, i, k
    return _DONE, n, k


@numba.njit(cache=True, _nrt=False)
def _rehash_orders(old, new, shift):
    mask = new.shape[0] - 1
    for i in range(old.shape[0]):
        if old[i].level >= 0:
            _found, h = _order_probe(new, old[i].ref, shift, mask)
            new[h].ref = old[i].ref
            new[h].shares = old[i].shares
            new[h].level = old[i].level


@numba.njit(cache=True, _nrt=False)
def _rebuild_lhash(levels, top, lhash, shift):
    mask = lhash.shape[0] - 1
    for n in range(top):
        if levels[n].orders > 0:
            h = _lslot(levels[n].key, shift)
            while lhash[h].node >= 0:
                h = (h + 1) & mask
            lhash[h].key = levels[n].key
            lhash[h].node = n


@numba.njit(cache=True, _nrt=False)
def _side_levels(levels, head, ls, out):
    n = head[ls]
    k = 0
    while n >= 0:
        if k == out.shape[0]:
            return -1
        out[k, 0] = levels[n].price
        out[k, 1] = levels[n].shares
        out[k, 2] = levels[n].orders
        n = levels[n].next
        k += 1
    return k


# --------------------------------------------------------------------------------------------
# Python API
# --------------------------------------------------------------------------------------------

def _pow2_at_least(n: int) -> int:
    return 1 << max(4, int(n - 1).bit_length())


def _shift(capacity: int) -> np.uint64:
    return np.uint64(64 - (capacity.bit_length() - 1))


class Book:
    """Order-level book for every stock locate, fed incrementally with order events.

    Parameters
    ----------
    depth : int, keyword-only
        Levels per side in each record (N of :func:`hftaccel.spec.book.book_record_dtype`).
    order_capacity : int, keyword-only
        Initial order-table slots (rounded up to a power of two, at least 16). The table
        doubles, between Numba calls, before more than :data:`MAX_ORDER_LOAD` of it is live.

    Raises
    ------
    ValueError
        ``depth`` or ``order_capacity`` is not a positive integer.

    Notes
    -----
    Source: NASDAQ TotalView-ITCH 5.0, sections 4.3-4.5.1; record layout
    :mod:`hftaccel.spec.book`. Semantics of every message and of rejected events: see the
    module docstring.
    """

    def __init__(self, *, depth: int = BOOK_DEPTH, order_capacity: int = ORDER_TABLE_SIZE):
        self._dtype = book_record_dtype(depth)
        if not isinstance(order_capacity, (int, np.integer)) or order_capacity < 1:
            raise ValueError(f"order_capacity must be a positive integer, got {order_capacity!r}")
        self.depth = depth
        self._wo = _word_offsets(self._dtype)
        cap = _pow2_at_least(int(order_capacity))
        self._orders = np.zeros(cap, _ORDER_SLOT)
        self._orders["level"] = -1
        self._st = np.array([0, _NO_FREE, 0, 0], np.int64)
        self._new_levels(max(64, cap // 64), None)
        self._head = np.full(2 * MAX_LOCATES, -1, np.int32)
        self._tail = np.full(2 * MAX_LOCATES, -1, np.int32)
        # Top-N snapshot per (locate, side), in record layout (see _snap_* kernels).
        self._snap = np.zeros((2 * MAX_LOCATES, 3 * depth), np.uint32)
        self._snode = np.zeros((2 * MAX_LOCATES, depth), np.int32)
        self._scnt = np.zeros(2 * MAX_LOCATES, np.int32)
        self._bad_count = np.zeros(len(BAD_REFERENCE_KINDS), np.int64)
        self._bad_seq = np.zeros((len(BAD_REFERENCE_KINDS), FIRST_BAD_KEPT), np.uint64)
        self._last_seq = -1
        self._updates = 0

    # -- growth ----------------------------------------------------------------------------
    def _new_levels(self, pool: int, old) -> None:
        levels = np.zeros(pool, _LEVEL)
        if old is not None:
            levels[: old.shape[0]] = old
        lhash = np.zeros(2 * pool, _LEVEL_SLOT)
        lhash["node"] = -1
        self._levels, self._lhash = levels, lhash
        if old is not None:
            _rebuild_lhash(levels, int(self._st[_ST_TOP]), lhash, _shift(lhash.shape[0]))

    def _grow_orders(self) -> None:
        new = np.zeros(2 * self._orders.shape[0], _ORDER_SLOT)
        new["level"] = -1
        _rehash_orders(self._orders, new, _shift(new.shape[0]))
        self._orders = new

    # -- feeding ---------------------------------------------------------------------------
    def apply(self, events: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
        """Apply order events and return the book records they produced.

        Parameters
        ----------
        events : np.ndarray, shape (n,), dtype :data:`hftaccel.spec.itch.ORDER_EVENT_DTYPE`
            A F E C X D U P events with strictly increasing ``seq``, continuing after the last
            ``seq`` of the previous call.
        out : np.ndarray, optional, keyword-only
            C-contiguous array of ``book_record_dtype(depth)`` with at least n records to write
            into (reuse one buffer across calls to avoid page faults on fresh memory).

        Returns
        -------
        np.ndarray, shape (m,), dtype ``book_record_dtype(depth)``
            One record per accepted event (book changed) and per P, in event order, m <= n;
            ``out[:m]`` when ``out`` is given.

        Raises
        ------
        TypeError
            ``events`` is not a 1-D array of ``ORDER_EVENT_DTYPE``, or ``out`` is not a
            C-contiguous record array of this book's dtype with room for n records.
        ValueError
            ``seq`` does not increase (names the sequence numbers), or an event's ``msg_type``
            is not one of A F E C X D U P (names its sequence number). Events before the
            offending one have been applied.
        """
        if not isinstance(events, np.ndarray) or events.dtype != ORDER_EVENT_DTYPE \
                or events.ndim != 1:
            raise TypeError("Book.apply expects a 1-D array of hftaccel.spec.itch.ORDER_EVENT_DTYPE"
                            f", got {getattr(events, 'dtype', type(events))!r}")
        n = events.shape[0]
        if out is not None and (not isinstance(out, np.ndarray) or out.dtype != self._dtype
                                or out.ndim != 1 or out.shape[0] < n
                                or not out.flags.c_contiguous):
            raise TypeError(f"out must be a C-contiguous 1-D array of {n} or more "
                            f"book_record_dtype({self.depth}) records")
        if n == 0:
            return np.zeros(0, self._dtype) if out is None else out[:0]
        seq = events["seq"]
        if self._last_seq >= 0 and int(seq[0]) <= self._last_seq:
            raise ValueError(f"order events out of sequence: seq {int(seq[0])} follows "
                             f"seq {self._last_seq} of the previous chunk")
        if n > 1:
            bad = np.flatnonzero(seq[1:] <= seq[:-1])
            if bad.size:
                j = int(bad[0])
                raise ValueError(f"order events out of sequence: seq {int(seq[j + 1])} follows "
                                 f"seq {int(seq[j])} (event index {j + 1})")
        ev = np.ascontiguousarray(events).view(_EVENT_VIEW)
        rec = np.empty(n, self._dtype) if out is None else out[:n]
        words = rec.view(np.uint32).reshape(n, self._dtype.itemsize // 4)
        i = k = 0
        while True:
            limit = int(MAX_ORDER_LOAD * self._orders.shape[0])
            code, i, k = _apply_kernel(
                ev, i, k, words, self._wo, self.depth, self._orders,
                _shift(self._orders.shape[0]), limit, self._levels, self._lhash,
                _shift(self._lhash.shape[0]), self._head, self._tail, self._snap, self._snode,
                self._scnt, self._st, self._bad_count, self._bad_seq)
            if code == _DONE:
                break
            if code == _GROW_ORDERS:
                self._grow_orders()
            elif code == _GROW_LEVELS:
                self._new_levels(2 * self._levels.shape[0], self._levels)
            else:
                self._updates += k
                self._last_seq = int(seq[i - 1]) if i else self._last_seq
                raise ValueError(f"order event seq {int(seq[i])}: message type "
                                 f"{chr(events['msg_type'][i])!r} (code {events['msg_type'][i]})"
                                 " is not a book message (A F E C X D U P)")
        self._updates += k
        self._last_seq = int(seq[-1])
        if out is not None or k == n:
            return rec[:k]
        return rec[:k].copy()

    # -- inspection ------------------------------------------------------------------------
    @property
    def bad_references(self) -> dict:
        """Counts of rejected or clamped events by kind, keys :data:`BAD_REFERENCE_KINDS`."""
        return {kind: int(c) for kind, c in zip(BAD_REFERENCE_KINDS, self._bad_count)}

    @property
    def first_bad(self) -> list:
        """(kind, seq) of the first :data:`FIRST_BAD_KEPT` bad references of each kind, by seq."""
        out = []
        for j, kind in enumerate(BAD_REFERENCE_KINDS):
            for s in self._bad_seq[j, : min(int(self._bad_count[j]), FIRST_BAD_KEPT)]:
                out.append((kind, int(s)))
        return sorted(out, key=lambda x: x[1])

    @property
    def live_orders(self) -> int:
        """Number of orders on the book, all locates."""
        return int(self._st[_ST_LIVE])

    @property
    def price_levels(self) -> int:
        """Number of occupied (locate, side, price) levels, all locates."""
        return int(self._st[_ST_LEVELS])

    @property
    def book_updates(self) -> int:
        """Records emitted so far by :meth:`apply`."""
        return self._updates

    @property
    def order_capacity(self) -> int:
        """Current number of order-table slots (a power of two)."""
        return int(self._orders.shape[0])

    def levels(self, locate: int, side) -> np.ndarray:
        """All levels of one side of one symbol, best first.

        Parameters
        ----------
        locate : int
            Stock locate, 0..MAX_LOCATES-1.
        side : str or int
            ``"B"``/``"S"`` or their ASCII codes.

        Returns
        -------
        np.ndarray, shape (levels, 3), dtype int64
            Columns: price (1/10,000 USD), aggregate shares, order count.

        Raises
        ------
        ValueError
            ``locate`` out of range or ``side`` not B/S.
        """
        code = ord(side) if isinstance(side, str) and len(side) == 1 else side
        if code not in _SIDE_CODE:
            raise ValueError(f"side must be 'B' or 'S', got {side!r}")
        if not 0 <= int(locate) < MAX_LOCATES:
            raise ValueError(f"stock locate {locate!r} out of range 0..{MAX_LOCATES - 1}")
        out = np.zeros((int(self._st[_ST_LEVELS]), 3), np.int64)
        k = _side_levels(self._levels, self._head, 2 * int(locate) + _SIDE_CODE.index(code), out)
        assert k >= 0, "level list longer than the number of levels: corrupted book"
        return out[:k]


def replay(events: np.ndarray, *, depth: int = BOOK_DEPTH) -> tuple:
    """Replay a whole event stream through a fresh :class:`Book`.

    Parameters
    ----------
    events : np.ndarray, shape (n,), dtype :data:`hftaccel.spec.itch.ORDER_EVENT_DTYPE`
    depth : int, keyword-only
        Levels per side in each record.

    Returns
    -------
    records : np.ndarray, shape (m,), dtype ``book_record_dtype(depth)``
    bad_references : dict[str, int]
        Counts by kind, keys :data:`hftaccel.spec.book.BAD_REFERENCE_KINDS`.

    Raises
    ------
    TypeError, ValueError
        As :meth:`Book.apply`.
    """
    book = Book(depth=depth)
    records = book.apply(events)
    return records, book.bad_references
