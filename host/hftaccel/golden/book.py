"""Golden order-level limit order book over ITCH 5.0 order events, all symbols at once (Numba).

The book consumes :data:`hftaccel.spec.itch.ORDER_EVENT_DTYPE` records (one per A F E C X D U P
message, sorted by sequence number) and writes one :func:`hftaccel.spec.book.book_record_dtype`
record after every message that changed the book, and after every P (trade, non-cross) print.
Source: NASDAQ TotalView-ITCH 5.0 sections 4.3 (Add Order A/F), 4.4 (Order Executed E, Executed
With Price C, Cancel X, Delete D, Replace U) and 4.5.1 (Trade, non-cross P).

State (persists across :meth:`Book.apply` calls, so a long stream can be fed in chunks):

- order table, two parts. ITCH order reference numbers are unique and assigned in increasing
  order over the day, so live orders are found by their reference directly:

  * window ring: ``R`` 8-byte slots (``R`` a power of two) covering the reference numbers
    ``lo .. lo + R - 1``; reference ``r`` of that window lives in slot ``r mod R``, holding
    ``remaining shares << 32 | (level node index + 1)`` (0 = no live order). No probing, no
    stored key, and a delete is one store. When an order arrives with a reference at or past
    ``lo + R`` the window slides forward to put it ``R/4`` below the new top, and the live
    orders it leaves behind move to the overflow table. ``R`` doubles, between Numba calls,
    before the live orders (both parts) exceed :data:`MAX_ORDER_LOAD` of it.
  * overflow table: open-addressing hash on the reference for live orders below ``lo``
    (long-lived orders overtaken by the window, or references that arrive out of order), a
    16-byte slot holding the reference, the remaining shares and the level node index
    (Fibonacci hashing of the reference's 16-wide block, linear probing, backward-shift
    deletion, power-of-two capacity, doubled between Numba calls before its load passes
    :data:`MAX_ORDER_LOAD`). It is usually empty and then never probed.

  The order's price, side and stock locate live in its level node (the locate of an E C X D U
  message's header is not used: the order's own locate is).
- price levels: a pool of 32-byte level nodes (recycled through a free list), one per occupied
  (stock locate, side, price), in a doubly linked list per (locate, side) sorted best first
  (highest bid, lowest ask), found by a second open-addressing hash on
  ``locate << 33 | side << 32 | price`` (used only by A F U, which name a price; E C X D reach
  the node through the order slot). A new level is linked in by walking from whichever end of
  its list is closer in price. A node also holds its position in the top-N snapshot of its
  list (-1 beyond it). The pool grows between Numba calls when it is full.
- top-N snapshot per stock locate: the first N levels of its bid list and of its ask list in
  record layout (bid prices, shares, orders, then the same for asks: exactly the tail of a
  record), kept in step with every level change (a change to a level outside the top N costs
  nothing), so writing a record is five header words and one contiguous copy.

The event loop prefetches the order slot and the snapshot row of the event a few positions
ahead (``llvm.prefetch``), so their cache misses overlap the work on the current events.

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
from llvmlite import ir as _ir
from numba.core import cgutils as _cgutils
from numba.core import types as _types
from numba.extending import intrinsic as _intrinsic

from hftaccel.spec.book import (BAD_REFERENCE_KINDS, BOOK_DEPTH, MAX_LOCATES, ORDER_TABLE_SIZE,
                                book_record_dtype)
from hftaccel.spec.itch import ORDER_EVENT_DTYPE, SIDE_BUY, SIDE_SELL

__all__ = ["Book", "replay", "FIRST_BAD_KEPT", "MAX_ORDER_LOAD"]

if sys.byteorder != "little":  # pragma: no cover - records are little-endian words
    raise ImportError("hftaccel.golden.book writes little-endian record words; big-endian host")

#: How many sequence numbers of the first bad references are kept per kind.
FIRST_BAD_KEPT = 8
#: The order window ring doubles before the live orders exceed this fraction of its slots; the
#: overflow table doubles before its load (live entries / slots) exceeds it.
MAX_ORDER_LOAD = 0.6

# One overflow-table slot (16 bytes): level == -1 marks an empty slot.
_ORDER_SLOT = np.dtype([("ref", "<u8"), ("shares", "<u4"), ("level", "<i4")])
# One price level node (32 bytes): ls = 2 * locate + side (side 0 bid, 1 ask); rank = position
# in the top-N snapshot of list ls, -1 beyond it; orders == 0 marks a free node, whose ``next``
# links the free list.
_LEVEL = np.dtype([("ls", "<i4"), ("rank", "<i4"), ("shares", "<i8"), ("price", "<u4"),
                   ("orders", "<i4"), ("prev", "<i4"), ("next", "<i4")])
# One level-hash slot (16 bytes): key = ls << 32 | price; node == -1 marks an empty slot.
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
_OVF_INITIAL = 64  # initial overflow-table slots
_PREFETCH_AHEAD = 16  # events between a prefetch and the use of what it fetched

# Indices of the int64 state vector.
_ST_LIVE, _ST_FREE, _ST_TOP, _ST_LEVELS, _ST_OVF = 0, 1, 2, 3, 4
# Kernel exit codes.
_DONE, _GROW_ORDERS, _GROW_LEVELS, _BAD_TYPE, _GROW_OVF = 0, 1, 2, 3, 4
# Where _order_find found an order.
_ABSENT, _IN_RING, _IN_OVF = 0, 1, 2
# Bad-reference counter indices, in spec order.
_UNKNOWN = BAD_REFERENCE_KINDS.index("unknown_order")
_OVER = BAD_REFERENCE_KINDS.index("over_execution")
_DUP = BAD_REFERENCE_KINDS.index("duplicate_order")
_BAD_SIDE = BAD_REFERENCE_KINDS.index("bad_side")
_ZERO = BAD_REFERENCE_KINDS.index("zero_shares")

_A, _F, _E, _C, _X, _D, _U, _P = (ord(c) for c in "AFECXDUP")
_SIDE_CODE = (SIDE_BUY, SIDE_SELL)

# Record layout the kernel writes as 8-byte words: word 0 timestamp, 1 seq, 2 order_ref,
# 3 shares | price << 32, 4 stock_locate | msg_type << 16 | side << 24 (pad 0), then the
# snapshot row (bid price, shares, orders, ask price, shares, orders) to the end.
_HEADER = (("timestamp", 0), ("seq", 8), ("order_ref", 16), ("shares", 24), ("price", 28),
           ("stock_locate", 32), ("msg_type", 34), ("side", 35), ("_pad", 36))
_HEADER_WORDS = 5
_TAIL = ("bid_price", "bid_shares", "bid_orders", "ask_price", "ask_shares", "ask_orders")


def _check_layout(dtype: np.dtype, depth: int) -> None:
    """Check the record packing the kernel's 8-byte word writes rely on."""
    off = {name: dtype.fields[name][1] for name in dtype.names}
    for name, at in _HEADER:
        if off[name] != at:
            raise ValueError(f"book record: field {name!r} at byte {off[name]}, the book kernel "
                             f"writes it at byte {at}")
    at = 8 * _HEADER_WORDS
    for name in _TAIL:
        if off[name] != at or dtype.fields[name][0].itemsize != 4 * depth:
            raise ValueError(f"book record: field {name!r} is not {depth} uint32 at byte {at}")
        at += 4 * depth
    if dtype.itemsize != at or at % 8:
        raise ValueError(f"book record: {dtype.itemsize} bytes, the book kernel writes {at}")


# --------------------------------------------------------------------------------------------
# Prefetch (LLVM intrinsic)
# --------------------------------------------------------------------------------------------

@_intrinsic
def _prefetch(typingctx, arr, i, j):
    """Prefetch (read, keep in all cache levels) the cache line holding ``arr[i, j]``."""
    sig = _types.void(arr, i, j)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        idx = [args[1], args[2]][: aryty.ndim]
        ptr = _cgutils.get_item_pointer(context, builder, aryty, ary, idx, wraparound=False)
        i8p = _ir.IntType(8).as_pointer()
        i32 = _ir.IntType(32)
        fn = _cgutils.get_or_insert_function(
            builder.module, _ir.FunctionType(_ir.VoidType(), [i8p, i32, i32, i32]),
            "llvm.prefetch.p0")
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


# --------------------------------------------------------------------------------------------
# Hash tables (Numba)
# --------------------------------------------------------------------------------------------

@numba.njit(cache=True, _nrt=False, inline="always")
def _lslot(key, shift):
    """Home slot of a level key: Fibonacci hashing (top bits of key * 2**64/phi)."""
    return np.int64((key * _GOLD) >> shift)


@numba.njit(cache=True, _nrt=False, inline="always")
def _oslot(ref, shift, mask):
    """Home slot of an order reference in the overflow table: blocks of 2**_REF_BLOCK_BITS
    consecutive references share a Fibonacci-hashed base and occupy consecutive slots."""
    base = np.int64(((ref >> np.uint64(_REF_BLOCK_BITS)) * _GOLD) >> shift)
    return (base + np.int64(ref & np.uint64(_REF_BLOCK_MASK))) & mask


@numba.njit(cache=True, _nrt=False, inline="always")
def _order_probe(ovf, ref, shift, mask):
    """Slot of ``ref`` in the overflow table (found=True) or the empty slot where it would go."""
    h = _oslot(ref, shift, mask)
    while ovf[h].level >= 0:
        if ovf[h].ref == ref:
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
def _ovf_delete(ovf, i, shift, mask):
    """Empty slot ``i`` of the overflow table, shifting its probe chain back (no tombstones)."""
    j = i
    while True:
        j = (j + 1) & mask
        if ovf[j].level < 0:
            break
        if not _stays(i, j, _oslot(ovf[j].ref, shift, mask)):
            ovf[i].ref = ovf[j].ref
            ovf[i].shares = ovf[j].shares
            ovf[i].level = ovf[j].level
            i = j
    ovf[i].level = -1


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
# Order table: window ring + overflow hash (Numba)
# --------------------------------------------------------------------------------------------

@numba.njit(cache=True, _nrt=False, inline="always")
def _ring_word(shares, level):
    return (np.uint64(shares) << np.uint64(32)) | np.uint64(level + 1)


@numba.njit(cache=True, _nrt=False, inline="always")
def _order_find(ring, win, ovf, oshift, st, ref):
    """Find live order ``ref``: (where, slot, word) with where one of _ABSENT, _IN_RING,
    _IN_OVF and word = shares << 32 | (level + 1) as in the ring."""
    rsize = np.uint64(ring.shape[0])
    lo = win[0]
    if ref >= lo and ref - lo < rsize:  # lo <= ref < lo + R (which may pass 2**64 - 1)
        s = np.int64(ref & (rsize - np.uint64(1)))
        w = ring[s]
        return (_IN_RING if w != 0 else _ABSENT), s, w
    if ref < lo and st[_ST_OVF] > 0:
        found, h = _order_probe(ovf, ref, oshift, ovf.shape[0] - 1)
        if found:
            return _IN_OVF, h, _ring_word(ovf[h].shares, np.int64(ovf[h].level))
    return _ABSENT, np.int64(0), np.uint64(0)


@numba.njit(cache=True, _nrt=False, inline="always")
def _order_remove(ring, ovf, oshift, st, where, s):
    if where == _IN_RING:
        ring[s] = 0
    else:
        _ovf_delete(ovf, s, oshift, ovf.shape[0] - 1)
        st[_ST_OVF] -= 1


@numba.njit(cache=True, _nrt=False, inline="always")
def _order_set_shares(ring, ovf, where, s, shares, level):
    if where == _IN_RING:
        ring[s] = _ring_word(shares, level)
    else:
        ovf[s].shares = shares


@numba.njit(cache=True, _nrt=False, inline="always")
def _order_put(ring, win, ovf, oshift, st, ref, shares, level):
    """Store new order ``ref`` (not live; below lo + R; overflow room checked by the caller)."""
    if ref >= win[0]:
        ring[np.int64(ref & np.uint64(ring.shape[0] - 1))] = _ring_word(shares, level)
    else:
        _found, h = _order_probe(ovf, ref, oshift, ovf.shape[0] - 1)
        ovf[h].ref = ref
        ovf[h].shares = shares
        ovf[h].level = level
        st[_ST_OVF] += 1


@numba.njit(cache=True, _nrt=False)
def _slide(ring, win, ovf, oshift, st, ref, ovf_limit):
    """Slide the window so that ``ref`` (>= lo + R) lies R/4 below its top (less when that
    would pass 2**64 - 1), moving the live orders it leaves behind to the overflow table.
    Returns False when the overflow table filled first (the window then stops where it got
    to; call again after growing it)."""
    rsize = np.uint64(ring.shape[0])
    rmask = rsize - np.uint64(1)
    lo = win[0]
    head = rsize >> np.uint64(2)
    room = np.uint64(0xFFFFFFFFFFFFFFFF) - ref
    if room < head:
        head = room
    new_lo = ref - (rmask - head)
    end = new_lo if new_lo - lo < rsize else lo + rsize
    omask = ovf.shape[0] - 1
    r = lo
    while r < end:
        s = np.int64(r & rmask)
        w = ring[s]
        if w != 0:
            if st[_ST_OVF] >= ovf_limit:
                win[0] = r
                return False
            _found, h = _order_probe(ovf, r, oshift, omask)
            ovf[h].ref = r
            ovf[h].shares = np.uint32(w >> np.uint64(32))
            ovf[h].level = np.int32(np.int64(w & np.uint64(_U4_MAX)) - 1)
            st[_ST_OVF] += 1
            ring[s] = 0
        r += np.uint64(1)
    win[0] = new_lo
    return True


# --------------------------------------------------------------------------------------------
# Top-N snapshot per stock locate (Numba)
#
# snap[locate] holds, in record layout, the first min(N, levels) levels of the bid list
# (ls = 2 * locate: N prices, N aggregate shares, N order counts) then of the ask list
# (ls = 2 * locate + 1) at word offset 3N; snode[ls] holds their node indices, scnt[ls] their
# number, and each such node's ``rank`` its position. Positions past scnt are zero.
# --------------------------------------------------------------------------------------------

@numba.njit(cache=True, _nrt=False, inline="always")
def _snap_qty(snap, depth, ls, j, levels, n):
    """Copy node ``n``'s shares and order count into snapshot position ``j`` of list ``ls``."""
    row = ls >> 1
    b = (ls & 1) * 3 * depth + j
    sh = levels[n].shares
    snap[row, b + depth] = np.uint32(sh if sh < _U4_MAX else _U4_MAX)
    snap[row, b + 2 * depth] = np.uint32(levels[n].orders)


@numba.njit(cache=True, _nrt=False, inline="always")
def _snap_set(snap, snode, depth, ls, j, levels, n):
    snap[ls >> 1, (ls & 1) * 3 * depth + j] = levels[n].price
    _snap_qty(snap, depth, ls, j, levels, n)
    snode[ls, j] = n
    levels[n].rank = j


@numba.njit(cache=True, _nrt=False, inline="always")
def _snap_move(snap, snode, depth, ls, dst, src, levels):
    row = ls >> 1
    b = (ls & 1) * 3 * depth
    snap[row, b + dst] = snap[row, b + src]
    snap[row, b + depth + dst] = snap[row, b + depth + src]
    snap[row, b + 2 * depth + dst] = snap[row, b + 2 * depth + src]
    m = snode[ls, src]
    snode[ls, dst] = m
    levels[m].rank = dst


@numba.njit(cache=True, _nrt=False)
def _snap_inserted(snap, snode, scnt, depth, ls, levels, n, sgn):
    """Level node ``n`` was linked into list ``ls`` (sgn: +1 bids, -1 asks)."""
    c = scnt[ls]
    v = sgn * np.int64(levels[n].price)
    b = (ls & 1) * 3 * depth
    row = ls >> 1
    j = 0
    while j < c and sgn * np.int64(snap[row, b + j]) > v:
        j += 1
    if j >= depth:
        return
    if c == depth:  # the last snapshot level drops out
        levels[snode[ls, depth - 1]].rank = -1
    last = c if c < depth else depth - 1
    for q in range(last, j, -1):
        _snap_move(snap, snode, depth, ls, q, q - 1, levels)
    _snap_set(snap, snode, depth, ls, j, levels, n)
    scnt[ls] = last + 1


@numba.njit(cache=True, _nrt=False)
def _snap_removed(snap, snode, scnt, depth, ls, levels, head, n):
    """Level node ``n`` (in the snapshot) was unlinked from list ``ls`` (links updated)."""
    j = levels[n].rank
    levels[n].rank = -1
    c0 = scnt[ls]
    for q in range(j, c0 - 1):
        _snap_move(snap, snode, depth, ls, q, q + 1, levels)
    c = c0 - 1
    if c0 == depth:  # levels beyond the snapshot may exist: pull the next one in
        nxt = levels[snode[ls, c - 1]].next if c > 0 else head[ls]
        if nxt >= 0:
            _snap_set(snap, snode, depth, ls, c, levels, nxt)
            c += 1
    if c < c0:
        row = ls >> 1
        b = (ls & 1) * 3 * depth + c
        snap[row, b] = 0
        snap[row, b + depth] = 0
        snap[row, b + 2 * depth] = 0
    scnt[ls] = c


# --------------------------------------------------------------------------------------------
# Price levels (Numba)
# --------------------------------------------------------------------------------------------

@numba.njit(cache=True, _nrt=False, inline="always")
def _level_add(levels, lhash, head, tail, snap, snode, scnt, depth, st, ls, price, shares,
               lshift):
    """Add one order of ``shares`` at level (ls, price); return the level node index."""
    key = (np.uint64(ls) << np.uint64(32)) | np.uint64(price)
    lmask = lhash.shape[0] - 1
    h = _lslot(key, lshift)
    while lhash[h].node >= 0:
        if lhash[h].key == key:
            n = np.int64(lhash[h].node)
            levels[n].shares += shares
            levels[n].orders += 1
            j = levels[n].rank
            if j >= 0:
                _snap_qty(snap, depth, ls, j, levels, n)
            return n
        h = (h + 1) & lmask
    return _level_new(levels, lhash, head, tail, snap, snode, scnt, depth, st, ls, price,
                      shares, key, h)


@numba.njit(cache=True, _nrt=False)
def _level_new(levels, lhash, head, tail, snap, snode, scnt, depth, st, ls, price, shares,
               key, h):
    """Create level (ls, price) holding one order, at empty level-hash slot ``h``."""
    n = st[_ST_FREE]  # a node from the free list or the untouched top of the pool
    if n != _NO_FREE:
        st[_ST_FREE] = levels[n].next
    else:
        n = st[_ST_TOP]
        st[_ST_TOP] = n + 1
    st[_ST_LEVELS] += 1
    lhash[h].key = key
    lhash[h].node = n
    levels[n].ls = ls
    levels[n].rank = -1
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
    ls = np.int64(levels[n].ls)
    levels[n].shares -= shares
    if remove_order:
        levels[n].orders -= 1
    if levels[n].orders > 0:
        j = levels[n].rank
        if j >= 0:
            _snap_qty(snap, depth, ls, j, levels, n)
        return
    _level_free(levels, lhash, head, tail, snap, snode, scnt, depth, st, n, ls, lshift)


@numba.njit(cache=True, _nrt=False)
def _level_free(levels, lhash, head, tail, snap, snode, scnt, depth, st, n, ls, lshift):
    """Unlink the emptied level node ``n`` of list ``ls`` and return it to the free list."""
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
    if levels[n].rank >= 0:
        _snap_removed(snap, snode, scnt, depth, ls, levels, head, n)
    key = (np.uint64(ls) << np.uint64(32)) | np.uint64(levels[n].price)
    _lhash_delete(lhash, key, lshift, lhash.shape[0] - 1)
    levels[n].shares = 0
    levels[n].next = st[_ST_FREE]
    st[_ST_FREE] = n
    st[_ST_LEVELS] -= 1


# --------------------------------------------------------------------------------------------
# Records and the event loop (Numba)
# --------------------------------------------------------------------------------------------

@numba.njit(cache=True, _nrt=False, inline="always")
def _write_record(out, k, ev, ref, shares, price, locate, side_code, snap64):
    """Write record ``k`` as 8-byte words (layout checked by :func:`_check_layout`)."""
    out[k, 0] = ev.timestamp
    out[k, 1] = ev.seq
    out[k, 2] = ref
    out[k, 3] = np.uint64(shares) | (np.uint64(price) << np.uint64(32))
    out[k, 4] = (np.uint64(locate) | (np.uint64(ev.msg_type) << np.uint64(16))
                 | (np.uint64(side_code) << np.uint64(24)))
    row = np.int64(locate)
    nw = snap64.shape[1]
    for w in range(nw):
        out[k, _HEADER_WORDS + w] = snap64[row, w]


@numba.njit(cache=True, _nrt=False, inline="always")
def _bad(bad_count, bad_seq, kind, seq):
    c = bad_count[kind]
    if c < bad_seq.shape[1]:
        bad_seq[kind, c] = seq
    bad_count[kind] = c + 1


@numba.njit(cache=True, _nrt=False)
def _apply_kernel(ev, start, k, out, depth, ring, win, ovf, oshift, order_limit, ovf_limit,
                  levels, lhash, lshift, head, tail, snap, snap64, snode, scnt, st, bad_count,
                  bad_seq):
    """Apply events ``ev[start:]``, writing records from ``out[k]``.

    Returns (exit code, index of the event to resume at, number of records written so far).
    It stops before an event that might need a larger order ring, overflow table or level
    pool (the window may have slid part of the way: that changes no order).
    """
    rmask = np.uint64(ring.shape[0] - 1)
    pool = levels.shape[0]
    nw = snap64.shape[1]
    n = ev.shape[0]
    for i in range(start, n):
        if i + _PREFETCH_AHEAD < n:
            ef = ev[i + _PREFETCH_AHEAD]
            _prefetch(ring, np.int64(ef.order_ref & rmask), 0)
            row = np.int64(ef.stock_locate)
            for w in range(0, nw, 8):
                _prefetch(snap64, row, w)
            _prefetch(snap64, row, nw - 1)
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
            ref = e.order_ref
            where, _s, _w = _order_find(ring, win, ovf, oshift, st, ref)
            if where != _ABSENT:
                _bad(bad_count, bad_seq, _DUP, e.seq)
                continue
            if ref < win[0]:
                if st[_ST_OVF] >= ovf_limit:
                    return _GROW_OVF, i, k
            elif ref - win[0] > rmask:
                if not _slide(ring, win, ovf, oshift, st, ref, ovf_limit):
                    return _GROW_OVF, i, k
            ls = 2 * np.int64(e.stock_locate) + sb
            lv = _level_add(levels, lhash, head, tail, snap, snode, scnt, depth, st, ls,
                            e.price, np.int64(e.shares), lshift)
            _order_put(ring, win, ovf, oshift, st, ref, e.shares, lv)
            st[_ST_LIVE] += 1
            _write_record(out, k, e, ref, e.shares, e.price, e.stock_locate, e.side, snap64)
            k += 1
        elif t == _E or t == _C or t == _X or t == _D:
            where, s, w = _order_find(ring, win, ovf, oshift, st, e.order_ref)
            if where == _ABSENT:
                _bad(bad_count, bad_seq, _UNKNOWN, e.seq)
                continue
            lv = np.int64(w & np.uint64(_U4_MAX)) - 1
            rem = np.uint32(w >> np.uint64(32))
            ls = np.int64(levels[lv].ls)
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
                _order_remove(ring, ovf, oshift, st, where, s)
                st[_ST_LIVE] -= 1
            else:
                _order_set_shares(ring, ovf, where, s, rem - x, lv)
                _level_take(levels, lhash, head, tail, snap, snode, scnt, depth, st, lv,
                            np.int64(x), False, lshift)
            _write_record(out, k, e, e.order_ref, x, price, ls >> 1,
                          SIDE_BUY if (ls & 1) == 0 else SIDE_SELL, snap64)
            k += 1
        elif t == _U:
            where, s, w = _order_find(ring, win, ovf, oshift, st, e.order_ref)
            if where == _ABSENT:
                _bad(bad_count, bad_seq, _UNKNOWN, e.seq)
                continue
            if e.shares == 0:
                _bad(bad_count, bad_seq, _ZERO, e.seq)
                continue
            nref = e.new_order_ref
            if nref != e.order_ref:
                dup, _s2, _w2 = _order_find(ring, win, ovf, oshift, st, nref)
                if dup != _ABSENT:
                    _bad(bad_count, bad_seq, _DUP, e.seq)
                    continue
            if st[_ST_FREE] == _NO_FREE and st[_ST_TOP] >= pool:
                return _GROW_LEVELS, i, k
            if nref < win[0]:
                if st[_ST_OVF] >= ovf_limit:
                    return _GROW_OVF, i, k
            elif nref - win[0] > rmask:
                if not _slide(ring, win, ovf, oshift, st, nref, ovf_limit):
                    return _GROW_OVF, i, k
                # the original order may have moved to the overflow table
                where, s, w = _order_find(ring, win, ovf, oshift, st, e.order_ref)
            lv = np.int64(w & np.uint64(_U4_MAX)) - 1
            ls = np.int64(levels[lv].ls)
            _level_take(levels, lhash, head, tail, snap, snode, scnt, depth, st, lv,
                        np.int64(w >> np.uint64(32)), True, lshift)
            _order_remove(ring, ovf, oshift, st, where, s)
            lv = _level_add(levels, lhash, head, tail, snap, snode, scnt, depth, st, ls,
                            e.price, np.int64(e.shares), lshift)
            _order_put(ring, win, ovf, oshift, st, nref, e.shares, lv)
            _write_record(out, k, e, nref, e.shares, e.price, ls >> 1,
                          SIDE_BUY if (ls & 1) == 0 else SIDE_SELL, snap64)
            k += 1
        elif t == _P:
            _write_record(out, k, e, np.uint64(0), e.shares, e.price, e.stock_locate, e.side,
                          snap64)
            k += 1
        else:
            return _BAD_TYPE, i, k
    return _DONE, n, k


@numba.njit(cache=True, _nrt=False)
def _regrow_ring(old, new, lo):
    """Move the live orders of ring ``old`` (window lo .. lo + len(old) - 1) into ``new``."""
    omask = np.uint64(old.shape[0] - 1)
    nmask = np.uint64(new.shape[0] - 1)
    for s in range(old.shape[0]):
        w = old[s]
        if w != 0:
            ref = lo + ((np.uint64(s) - lo) & omask)
            new[np.int64(ref & nmask)] = w


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
            key = (np.uint64(levels[n].ls) << np.uint64(32)) | np.uint64(levels[n].price)
            h = _lslot(key, shift)
            while lhash[h].node >= 0:
                h = (h + 1) & mask
            lhash[h].key = key
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


def _empty_ovf(slots: int) -> np.ndarray:
    ovf = np.zeros(slots, _ORDER_SLOT)
    ovf["level"] = -1
    return ovf


class Book:
    """Order-level book for every stock locate, fed incrementally with order events.

    Parameters
    ----------
    depth : int, keyword-only
        Levels per side in each record (N of :func:`hftaccel.spec.book.book_record_dtype`).
    order_capacity : int, keyword-only
        Initial slots of the order window ring (rounded up to a power of two, at least 16):
        the span of order reference numbers found directly. The ring doubles, between Numba
        calls, before more than :data:`MAX_ORDER_LOAD` of it is live; live orders overtaken by
        the window go to the overflow table, which grows the same way.

    Raises
    ------
    ValueError
        ``depth`` or ``order_capacity`` is not a positive integer.

    Notes
    -----
    Source: NASDAQ TotalView-ITCH 5.0, sections 4.3-4.5.1; record layout
    :mod:`hftaccel.spec.book`. Semantics of every message, of rejected events and the data
    structures: see the module docstring.
    """

    def __init__(self, *, depth: int = BOOK_DEPTH, order_capacity: int = ORDER_TABLE_SIZE):
        self._dtype = book_record_dtype(depth)
        if not isinstance(order_capacity, (int, np.integer)) or order_capacity < 1:
            raise ValueError(f"order_capacity must be a positive integer, got {order_capacity!r}")
        _check_layout(self._dtype, depth)
        self.depth = depth
        cap = _pow2_at_least(int(order_capacity))
        self._ring = np.zeros(cap, np.uint64)
        self._win = np.zeros(1, np.uint64)  # lo: the first reference number of the window
        self._ovf = _empty_ovf(_OVF_INITIAL)
        self._st = np.array([0, _NO_FREE, 0, 0, 0], np.int64)
        self._new_levels(max(64, cap // 64), None)
        self._head = np.full(2 * MAX_LOCATES, -1, np.int32)
        self._tail = np.full(2 * MAX_LOCATES, -1, np.int32)
        # Top-N snapshot per locate in record layout (see the _snap_* kernels); pages of
        # locates never seen are never touched.
        self._snap = np.zeros((MAX_LOCATES, 6 * depth), np.uint32)
        self._snap64 = self._snap.view(np.uint64)
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
        new = np.zeros(2 * self._ring.shape[0], np.uint64)
        _regrow_ring(self._ring, new, self._win[0])
        self._ring = new

    def _grow_ovf(self) -> None:
        new = _empty_ovf(2 * self._ovf.shape[0])
        _rehash_orders(self._ovf, new, _shift(new.shape[0]))
        self._ovf = new

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
        words = rec.view(np.uint64).reshape(n, self._dtype.itemsize // 8)
        i = k = 0
        while True:
            code, i, k = _apply_kernel(
                ev, i, k, words, self.depth, self._ring, self._win, self._ovf,
                _shift(self._ovf.shape[0]), int(MAX_ORDER_LOAD * self._ring.shape[0]),
                int(MAX_ORDER_LOAD * self._ovf.shape[0]), self._levels, self._lhash,
                _shift(self._lhash.shape[0]), self._head, self._tail, self._snap, self._snap64,
                self._snode, self._scnt, self._st, self._bad_count, self._bad_seq)
            if code == _DONE:
                break
            if code == _GROW_ORDERS:
                self._grow_orders()
            elif code == _GROW_OVF:
                self._grow_ovf()
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
        """Current number of order window ring slots (a power of two)."""
        return int(self._ring.shape[0])

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
