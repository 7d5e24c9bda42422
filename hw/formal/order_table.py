"""Formal properties of the book's order table (:class:`hftaccel.rtl.order_table.OrderTable`).

A free request stream (any operation, references up to twice the stored range so that
``RANGE`` is reached too, small share counts) under a free sink. One reference ``R`` (a free
constant below ``2**ref_bits``) is shadowed from the results: whether it is live, its shares
and its handle. Every result must echo its request (``op``, ``ref``: one result per request,
in order) and, for ``R``:

* a FIND / TAKE / DELETE of ``R`` returns ``OK`` with ``R``'s own handle and shares when ``R``
  is live, and ``UNKNOWN`` when it is not: a lookup never returns an entry whose tag differs
  from the reference (another order sharing ``R``'s row);
* TAKE takes ``min(shares, remaining)``, DELETE all; an INSERT of ``R`` is ``ZERO`` (0 shares),
  ``DUPLICATE`` while ``R`` is live, else ``OK`` or ``FULL``;
* the output follows the AXI-Stream rules (the input's are assumed of the environment).

Small parameters: 2 rows x 2 ways, 4-bit references (3-bit tags), 2-bit handles.
"""

from __future__ import annotations

from amaranth.hdl import Array, Assert, Assume, Elaboratable, Module, Mux, Signal

from hftaccel.rtl.order_table import Op, OrderTable, Status

from .props import free, free_const, harness_domain, stream_sink_rules, stream_source_rules

__all__ = ["OrderTableHarness"]

_FIFO = 16


class OrderTableHarness(Elaboratable):
    def __init__(self, *, rows: int = 2, ways: int = 2, ref_bits: int = 4, handle_bits: int = 2,
                 share_bits: int = 3):
        self.p = dict(rows=rows, ways=ways, ref_bits=ref_bits, handle_bits=handle_bits)
        self.share_bits = share_bits

    def elaborate(self, platform):
        m = Module()
        started = harness_domain(m)
        m.submodules.dut = dut = OrderTable(**self.p)
        rb, hb = self.p["ref_bits"], self.p["handle_bits"]
        i, o = dut.i, dut.o
        q = i.payload
        m.d.comb += [i.valid.eq(free(m, 1, "f_i_valid")), o.ready.eq(free(m, 1, "f_o_ready")),
                     q.op.eq(free(m, 2, "f_op")), q.ref.eq(free(m, 64, "f_ref")),
                     q.shares.eq(free(m, 32, "f_shares")), q.handle.eq(free(m, hb, "f_handle")),
                     Assume(q.ref < (2 << rb)), Assume(q.shares < (1 << self.share_bits))]
        stream_sink_rules(m, started, i, "i")
        stream_source_rules(m, started, o, "o")

        ref_r = free_const(m, rb, "f_R")
        f_op = Array(Signal(2, name=f"f_q_op{k}") for k in range(_FIFO))
        f_ref = Array(Signal(64, name=f"f_q_ref{k}") for k in range(_FIFO))
        f_sh = Array(Signal(32, name=f"f_q_sh{k}") for k in range(_FIFO))
        f_h = Array(Signal(hb, name=f"f_q_h{k}") for k in range(_FIFO))
        wp, rp = Signal(range(_FIFO), name="f_wp"), Signal(range(_FIFO), name="f_rp")
        inflight = Signal(range(_FIFO + 1), name="f_inflight")
        take_in, take_out = i.valid & i.ready, o.valid & o.ready
        with m.If(take_in):
            m.d.sync += [f_op[wp].eq(q.op), f_ref[wp].eq(q.ref), f_sh[wp].eq(q.shares),
                         f_h[wp].eq(q.handle), wp.eq(wp + 1)]
        with m.If(take_out):
            m.d.sync += rp.eq(rp + 1)
        m.d.sync += inflight.eq(inflight + take_in - take_out)
        m.d.comb += Assert(inflight < _FIFO)

        live = Signal(name="f_R_live")
        shares = Signal(32, name="f_R_shares")
        handle = Signal(hb, name="f_R_handle")
        r = o.payload
        op, ref, sh, hd = f_op[rp], f_ref[rp], f_sh[rp], f_h[rp]
        taken = Mux(op == Op.DELETE, shares, Mux(sh < shares, sh, shares))
        with m.If(take_out):
            m.d.comb += [Assert(r.op.as_value() == op), Assert(r.ref == ref)]
            with m.If(ref == ref_r):
                with m.If(op == Op.INSERT):
                    with m.If(sh == 0):
                        m.d.comb += Assert(r.status == Status.ZERO)
                    with m.Elif(live):
                        m.d.comb += Assert(r.status == Status.DUPLICATE)
                    with m.Else():
                        m.d.comb += Assert((r.status == Status.OK) | (r.status == Status.FULL))
                        with m.If(r.status == Status.OK):
                            m.d.comb += Assert(r.handle == hd)
                            m.d.sync += [live.eq(1), shares.eq(sh), handle.eq(hd)]
                with m.Else():
                    with m.If(live):
                        m.d.comb += [Assert(r.status == Status.OK), Assert(r.handle == handle)]
                        with m.If(op != Op.FIND):
                            m.d.comb += [Assert(r.taken == taken),
                                         Assert(r.remaining == shares - taken)]
                            m.d.sync += shares.eq(shares - taken)
                            with m.If(shares == taken):
                                m.d.sync += live.eq(0)
                        with m.Else():
                            m.d.comb += Assert(r.remaining == shares)
                    with m.Else():
                        m.d.comb += Assert(r.status == Status.UNKNOWN)
            with m.Elif(ref >= (1 << rb)):
                m.d.comb += Assert(r.status == Status.RANGE)
        return m
