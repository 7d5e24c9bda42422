"""Board-free tick-to-trade core: Ethernet frames (feeds A and B) in, OUCH 5.0 orders out.

eth (x2) -> moldudp64 (A/B arbitration) -> itch -> book -> features -> mlp -> risk -> ouch,
with a register bank (:mod:`hftaccel.rtl.csr`) holding every limit, threshold, filter, counter,
the kill switch, the model weights and a free-running cycle counter. This is what simulation
runs; a board top (``hw/boards``) adds the MAC/PHY, clocks and pins.

Latency is stamped in hardware: the cycle each ITCH message leaves the MoldUDP64 de-framer is
written into a stamp memory indexed by its MoldUDP64 sequence number; when the OUCH order that
message triggered puts its first byte on ``o``, ``cycle - stamp`` is the message-to-order
latency, kept as last / min / max / sum / count registers. Simulation adds the wire side: the
cycle the beat with the message's last byte entered (see ``hftaccel.sim.replay``).
"""

from pathlib import Path

from amaranth.hdl import Module, Shape, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hftaccel.spec import book as book_spec
from hftaccel.spec import risk as risk_spec

from . import book, csr, eth, features, itch, mlp, moldudp64, ouch, risk
from .stream import packet_layout

__all__ = ["SCORE_META_LAYOUT", "TAPS", "ORDER_OUT_LAYOUT", "OrderLookup", "LatencyMeter", "Top",
           "placeholder_symbol"]

#: Book record fields the decision stage needs, carried beside the scores through the MLP.
SCORE_META_LAYOUT = data.StructLayout({
    name: shape for name, shape in risk.SCORED_LAYOUT.members.items() if name != "scores"})

#: Internal streams exposed as ``tap_<name>`` / ``tap_<name>_valid`` ports (a transfer happened
#: this cycle) for scoreboards; nothing on a board reads them, so synthesis removes them.
TAPS = ("message", "decoded", "record", "features", "scores", "decision")

_STAMP_BITS = 32
#: Orders the OUCH serializer can hold at once (accepted, first beat not yet sent), at most.
_PENDING_ORDERS = 4


def placeholder_symbol(locate: int) -> bytes:
    """The 8-byte symbol of a locate no Stock Directory message named: ``L`` + 5 digits (as
    :func:`hftaccel.backends.cpu.symbol_table`)."""
    return f"L{locate:05d}".encode().ljust(8)


#: An approved order for the OUCH serializer and the de-framer stamp of the message behind it.
ORDER_OUT_LAYOUT = data.StructLayout({"order": ouch.ORDER_LAYOUT,
                                      "stamp": unsigned(_STAMP_BITS)})


class OrderLookup(wiring.Component):
    """Decisions in, approved orders out, with the symbol and the latency stamp looked up.

    The top's own pipeline stage between the risk gate and the OUCH serializer: a decision
    whose verdict is not :data:`hftaccel.spec.risk.VERDICT_APPROVED` is consumed and dropped; an
    approved one is registered together with two synchronous block-RAM reads issued in the
    cycle it is accepted: the 8-byte symbol of its stock locate (a table written from Stock
    Directory messages, placeholders :func:`placeholder_symbol` until then) and the cycle its
    ITCH message left the MoldUDP64 de-framer (a stamp memory indexed by the low
    ``stamp_bits`` of the MoldUDP64 sequence number). Every path is one EBR read or one gate of
    handshake between registers; ``i.ready`` is ``~o.valid | o.ready``.

    Parameters
    ----------
    num_locates : int
        Symbol table entries (power of two; locate modulo this).
    stamp_bits : int
        log2 of the stamp memory entries (messages in flight between de-framer and order).

    Attributes
    ----------
    i : In(stream.Signature(risk.DECISION_LAYOUT))
        Every decision of the risk gate.
    o : Out(stream.Signature(ORDER_OUT_LAYOUT))
        Approved orders (``order``: :data:`hftaccel.rtl.ouch.ORDER_LAYOUT`) and their stamps
        (cycles, the low 32 bits of the cycle counter).
    sym_we, sym_addr, sym_data : In
        Symbol table write (``sym_data``: 8 ASCII bytes, first character in bits 0..7).
    st_we, st_addr, st_data : In
        Stamp memory write.
    latency, ii : int
        1 cycle from a decision accepted to its order on ``o``; one decision a cycle.
    """

    latency = 1
    ii = 1

    def __init__(self, *, num_locates: int = 256, stamp_bits: int = 10):
        if not isinstance(num_locates, int) or num_locates < 2 or num_locates & (num_locates - 1):
            raise ValueError(f"num_locates must be a power of two >= 2, not {num_locates!r}")
        if not isinstance(stamp_bits, int) or not 4 <= stamp_bits <= 16:
            raise ValueError(f"stamp_bits must be an integer in 4..16, not {stamp_bits!r}")
        self.num_locates, self.stamp_bits = num_locates, stamp_bits
        self._loc_bits = (num_locates - 1).bit_length()
        super().__init__({
            "i": In(stream.Signature(risk.DECISION_LAYOUT)),
            "o": Out(stream.Signature(ORDER_OUT_LAYOUT)),
            "sym_we": In(1), "sym_addr": In(self._loc_bits), "sym_data": In(64),
            "st_we": In(1), "st_addr": In(stamp_bits), "st_data": In(_STAMP_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        init = [int.from_bytes(placeholder_symbol(k), "little") for k in range(self.num_locates)]
        m.submodules.symbols = symbols = Memory(shape=unsigned(64), depth=self.num_locates,
                                                init=init)
        m.submodules.stamps = stamps = Memory(shape=unsigned(_STAMP_BITS),
                                              depth=1 << self.stamp_bits, init=[])
        sy_w, sy_r = symbols.write_port(), symbols.read_port()
        st_w, st_r = stamps.write_port(), stamps.read_port()
        m.d.comb += [sy_w.en.eq(self.sym_we), sy_w.addr.eq(self.sym_addr),
                     sy_w.data.eq(self.sym_data),
                     st_w.en.eq(self.st_we), st_w.addr.eq(self.st_addr),
                     st_w.data.eq(self.st_data)]
        d, o = self.i.payload, self.o.payload
        take = self.i.valid & self.i.ready
        m.d.comb += [self.i.ready.eq(~self.o.valid | self.o.ready),
                     sy_r.en.eq(take), sy_r.addr.eq(d.stock_locate[:self._loc_bits]),
                     st_r.en.eq(take), st_r.addr.eq(d.seq[:self.stamp_bits]),
                     o.order.symbol.as_value().eq(sy_r.data), o.stamp.eq(st_r.data)]
        with m.If(take):
            m.d.sync += [self.o.valid.eq(d.verdict == risk_spec.VERDICT_APPROVED),
                         o.order.user_ref_num.eq(d.user_ref_num), o.order.side.eq(d.side),
                         o.order.quantity.eq(d.shares), o.order.price.eq(d.price)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m


class LatencyMeter(wiring.Component):
    """Message-to-order latency statistics, measured in hardware.

    The stamps of the orders the OUCH serializer has accepted wait in a FIFO (at most
    ``max_pending`` orders between acceptance and first beat); at each message's first beat
    one is popped and ``cycle - stamp`` is registered, then folded into last / min / max / sum /
    count in the next cycle, so every path holds one carry chain.

    Parameters
    ----------
    max_pending : int
        Orders the serializer can hold at once.

    Attributes
    ----------
    cycle : In(64)
        Free-running cycle counter.
    push, stamp : In(1), In(32)
        An order entered the serializer; the de-framer cycle (low 32 bits) of its message.
    sent : In(1)
        The first beat of an order's message left the core.
    last, min, max, count : Out(32)
        Cycles of the last order, the least and the most; orders measured.
    sum : Out(64)
        Sum of the cycles of every order measured.
    """

    #: Cycles from ``sent`` to the statistics holding that order; one order a cycle.
    latency = 2
    ii = 1

    def __init__(self, *, max_pending: int = _PENDING_ORDERS):
        if not isinstance(max_pending, int) or max_pending < 1:
            raise ValueError(f"max_pending must be a positive integer, not {max_pending!r}")
        self.max_pending = max_pending
        super().__init__({
            "cycle": In(64), "push": In(1), "stamp": In(_STAMP_BITS), "sent": In(1),
            "last": Out(_STAMP_BITS), "min": Out(_STAMP_BITS, init=(1 << _STAMP_BITS) - 1),
            "max": Out(_STAMP_BITS), "sum": Out(64), "count": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.pending = pending = SyncFIFO(width=_STAMP_BITS, depth=self.max_pending)
        m.d.comb += [pending.w_en.eq(self.push), pending.w_data.eq(self.stamp),
                     pending.r_en.eq(self.sent)]
        lat = Signal(_STAMP_BITS)
        lat_valid = Signal()
        m.d.sync += [lat.eq(self.cycle[:_STAMP_BITS] - pending.r_data),
                     lat_valid.eq(self.sent & pending.r_rdy)]
        with m.If(lat_valid):
            m.d.sync += [self.last.eq(lat), self.sum.eq(self.sum + lat),
                         self.count.eq(self.count + 1)]
            with m.If(lat < self.min):
                m.d.sync += self.min.eq(lat)
            with m.If(lat > self.max):
                m.d.sync += self.max.eq(lat)
        return m


class Top(wiring.Component):
    """The whole pipeline with its register bank.

    Parameters
    ----------
    depth : int
        Book levels per side in records (features read 5).
    order_slots, max_probe, book_symbols, levels : int
        :class:`hftaccel.rtl.book.OrderBook` capacities (orders, ways per row, subscribed
        locates, price levels per side).
    feature_symbols : int
        Per-symbol feature state entries (power of two; locate modulo this).
    feature_latency : int
        Features stage latency, cycles (default its minimum: every per-symbol recurrence is
        computed in its first stage, the rest are alignment registers that add no timing slack).
    num_locates : int
        Risk state and symbol table entries (power of two; locate modulo this).
    max_throttle : int
        Risk throttle ring capacity.
    model : str, Path or hftaccel.golden.mlp.IntegerMLP, optional
        ONNX QCDQ model for the MLP ROM (default ``models/default.onnx``).
    macs_per_cycle : int, optional
        MLP folding (None: fully parallel).
    risk_config : hftaccel.spec.risk.RiskConfig, optional
        Reset values of the risk registers (default: what ``hftaccel run`` uses).
    stamp_bits : int
        log2 of the stamp memory entries (messages in flight between de-framer and order).

    Attributes
    ----------
    i_a, i_b : In(stream.Signature(packet_layout()))
        Ethernet frames of feeds A and B (64-bit beats, AXI4-Stream byte order).
    o : Out(stream.Signature(packet_layout()))
        OUCH 5.0 Enter Order messages, SoupBinTCP framed.
    o_event : Out(stream.Signature(moldudp64.EVENT_LAYOUT))
        MoldUDP64 gap / end-of-session events for the host.
    csr_addr, csr_w_stb, csr_w_data, csr_r_stb : In
        Register bus (:class:`hftaccel.rtl.csr.CsrBank`).
    csr_r_data : Out(32)
        Register read data.
    cycle : Out(64)
        Free-running cycle counter (also register ``cycle``).
    tap_<name>, tap_<name>_valid : Out
        For each of :data:`TAPS`: the stream's payload and its transfer strobe.
    csr_map : list
        Register address map (:func:`hftaccel.rtl.csr.address_map`).
    """

    def __init__(self, *, depth: int = book_spec.BOOK_DEPTH, order_slots: int = 4096,
                 max_probe: int = 8, book_symbols: int = 1, levels: int = 16,
                 feature_symbols: int = 1, feature_latency: int = features.MIN_LATENCY,
                 num_locates: int = 256, max_throttle: int = 16,
                 model=None, macs_per_cycle=None, risk_config=None, stamp_bits: int = 10):
        from hftaccel.backends import cpu
        from hftaccel.golden import mlp as golden_mlp

        if not isinstance(stamp_bits, int) or not 4 <= stamp_bits <= 16:
            raise ValueError(f"stamp_bits must be an integer in 4..16, not {stamp_bits!r}")
        engine = model if isinstance(model, golden_mlp.IntegerMLP) else golden_mlp.load(
            Path(model) if model is not None else cpu.default_model())
        self.mlp_engine = engine
        self.risk_config = risk_config or cpu.default_risk_config(engine)
        self.stamp_bits = stamp_bits
        self.eth_a, self.eth_b = eth.EthRx(), eth.EthRx()
        self.mold = moldudp64.MoldRx()
        self.parser = itch.ItchParser()
        self.book = book.OrderBook(depth=depth, order_slots=order_slots, max_probe=max_probe,
                                   n_symbols=book_symbols, levels=levels)
        self.features = features.FeatureEngine(depth=depth, n_symbols=feature_symbols,
                                               latency=feature_latency)
        self.mlp = mlp.MLP(model=engine, macs_per_cycle=macs_per_cycle,
                           meta_layout=SCORE_META_LAYOUT)
        self.risk = risk.RiskGate(num_locates=num_locates, max_throttle=max_throttle)
        self.ouch = ouch.OuchTx()
        self.lookup = OrderLookup(num_locates=num_locates, stamp_bits=stamp_bits)
        self.meter = LatencyMeter()
        self.num_locates = num_locates
        self.book_symbols = book_symbols
        self.csr = csr.CsrBank(registers=self._registers())
        self.csr_map = self.csr.map
        members = {
            "i_a": In(stream.Signature(packet_layout())),
            "i_b": In(stream.Signature(packet_layout())),
            "o": Out(stream.Signature(packet_layout())),
            "o_event": Out(stream.Signature(moldudp64.EVENT_LAYOUT)),
            "csr_addr": In(range(max(self.csr.words, 2))),
            "csr_w_stb": In(1),
            "csr_w_data": In(csr.WORD_BITS),
            "csr_r_stb": In(1),
            "csr_r_data": Out(csr.WORD_BITS),
            "cycle": Out(64),
        }
        for name, layout in self._tap_layouts().items():
            members[f"tap_{name}"] = Out(layout)
            members[f"tap_{name}_valid"] = Out(1)
        super().__init__(members)

    # ------------------------------------------------------------------ register map
    def _counters(self):
        """``[(register name, stage component, port name)]`` of every 32-bit status counter."""
        out = []
        for prefix, comp in (("eth_a", self.eth_a), ("eth_b", self.eth_b), ("mold", self.mold),
                             ("itch", self.parser), ("book", self.book),
                             ("features", self.features), ("risk", self.risk),
                             ("ouch", self.ouch)):
            for pname, member in comp.signature.members.items():
                if (member.is_port and member.flow == Out
                        and Shape.cast(member.shape) == unsigned(32)):
                    out.append((f"{prefix}_{pname}", comp, pname))
        return out

    def _registers(self):
        R = csr.Register
        regs = []
        for feed in "ab":
            regs += [R(f"{feed}_dst_ip", 32, doc=f"feed {feed.upper()}: IPv4 destination "
                       "accepted (with ip_filter)"),
                     R(f"{feed}_dst_port", 16, doc=f"feed {feed.upper()}: UDP destination "
                       "port accepted (with port_filter)"),
                     R(f"{feed}_ip_filter", 1), R(f"{feed}_port_filter", 1)]
        cfg = self.risk_config.to_record()
        for name in risk.CONFIG_LAYOUT.members:
            regs.append(R(f"risk_{name}", 64, reset=int(cfg[name]),
                          doc=f"RiskConfig.{name} (hftaccel.spec.risk)"))
        sym_bits = max(1, (self.book_symbols - 1).bit_length())
        regs += [
            R("book_symbol", 17 + sym_bits, access="wo",
              doc="subscribe: bits 0..15 stock locate, bit 16 enable, bits 17.. book entry"),
            R("mlp_weight_addr", 32, access="wo", doc="MLP weight/bias address of the next "
              "mlp_weight_data write (hftaccel.rtl.mlp.weight_image)"),
            R("mlp_weight_data", 32, access="wo", doc="write one weight/bias word, then the "
              "address increments"),
            R("cycle", 64, access="ro", doc="free-running cycle counter"),
            R("mold_expected", 64, access="ro", doc="next expected MoldUDP64 sequence number"),
            R("mold_synced", 1, access="ro"), R("mold_end_of_session", 1, access="ro"),
            R("risk_gross_notional", 64, access="ro", doc="1/10,000 USD"),
            R("risk_cfg_error", 1, access="ro"), R("risk_clearing", 1, access="ro"),
            R("latency_last", 32, access="ro", doc="cycles, message out of the de-framer to "
              "the first OUCH byte, last order"),
            R("latency_min", 32, access="ro"), R("latency_max", 32, access="ro"),
            R("latency_sum", 64, access="ro"), R("latency_count", 32, access="ro"),
        ]
        for name, _, _ in self._counters():
            regs.append(R(name, 32, access="ro"))
        return regs

    def _tap_layouts(self):
        return {
            "message": data.StructLayout({"seq": unsigned(64), "length": unsigned(16)}),
            "decoded": itch.DECODED_LAYOUT,
            "record": self.book.record_layout,
            "features": self.features.o.payload.shape().members["x"],
            "scores": risk.SCORED_LAYOUT,
            "decision": risk.DECISION_LAYOUT,
        }

    # ------------------------------------------------------------------ wiring
    def elaborate(self, platform):
        m = Module()
        for name in ("eth_a", "eth_b", "mold", "parser", "book", "features", "mlp", "risk",
                     "lookup", "ouch", "meter", "csr"):
            m.submodules[name] = getattr(self, name)
        regs = self.csr

        # register bus
        m.d.comb += [regs.addr.eq(self.csr_addr), regs.w_stb.eq(self.csr_w_stb),
                     regs.w_data.eq(self.csr_w_data), regs.r_stb.eq(self.csr_r_stb),
                     self.csr_r_data.eq(regs.r_data)]
        cycle = Signal(64)
        m.d.sync += cycle.eq(cycle + 1)
        m.d.comb += [self.cycle.eq(cycle), regs.cycle.eq(cycle)]

        # front end
        wiring.connect(m, wiring.flipped(self.i_a), self.eth_a.i)
        wiring.connect(m, wiring.flipped(self.i_b), self.eth_b.i)
        for feed, e in (("a", self.eth_a), ("b", self.eth_b)):
            m.d.comb += [e.dst_ip.eq(getattr(regs, f"{feed}_dst_ip")),
                         e.dst_port.eq(getattr(regs, f"{feed}_dst_port")),
                         e.ip_filter.eq(getattr(regs, f"{feed}_ip_filter")),
                         e.port_filter.eq(getattr(regs, f"{feed}_port_filter"))]
        wiring.connect(m, self.eth_a.o, self.mold.i_a)
        wiring.connect(m, self.eth_b.o, self.mold.i_b)
        wiring.connect(m, self.mold.o_event, wiring.flipped(self.o_event))
        wiring.connect(m, self.mold.o, self.parser.i)
        wiring.connect(m, self.parser.o, self.book.i)
        m.d.comb += [regs.mold_expected.eq(self.mold.expected),
                     regs.mold_synced.eq(self.mold.synced),
                     regs.mold_end_of_session.eq(self.mold.end_of_session)]

        # book subscriptions (register book_symbol)
        sym = regs.book_symbol
        m.d.comb += [self.book.sym_we.eq(regs.book_symbol_we),
                     self.book.sym_locate.eq(sym[:16]), self.book.sym_enable.eq(sym[16]),
                     self.book.sym_index.eq(sym[17:])]

        # stamp memory (de-framer output cycle by sequence number) and symbol table (Stock
        # Directory messages), both in the order lookup stage
        lk = self.lookup
        msg_fire = self.mold.o.valid & self.mold.o.ready
        dec = self.parser.o
        m.d.comb += [lk.st_we.eq(msg_fire),
                     lk.st_addr.eq(self.mold.o.payload.meta.seq[:self.stamp_bits]),
                     lk.st_data.eq(cycle[:_STAMP_BITS]),
                     lk.sym_we.eq(dec.valid & dec.ready & (dec.payload.msg_type == ord("R"))),
                     lk.sym_addr.eq(dec.payload.stock_locate[:len(lk.sym_addr)]),
                     lk.sym_data.eq(dec.payload.stock)]

        # book -> features -> mlp (with the scored-update fields as meta) -> risk
        wiring.connect(m, self.book.o, self.features.i)
        fo = self.features.o
        rec = fo.payload.rec
        m.d.comb += [self.mlp.i.valid.eq(fo.valid), fo.ready.eq(self.mlp.i.ready),
                     self.mlp.i.payload.x.eq(fo.payload.x),
                     self.mlp.i.payload.meta.timestamp.eq(rec.timestamp),
                     self.mlp.i.payload.meta.seq.eq(rec.seq),
                     self.mlp.i.payload.meta.stock_locate.eq(rec.stock_locate),
                     self.mlp.i.payload.meta.best_bid.eq(rec.bid_price[0]),
                     self.mlp.i.payload.meta.best_ask.eq(rec.ask_price[0])]
        mo = self.mlp.o
        ri = self.risk.i
        m.d.comb += [ri.valid.eq(mo.valid), mo.ready.eq(ri.ready),
                     ri.payload.scores.eq(mo.payload.scores)]
        for name in SCORE_META_LAYOUT.members:
            m.d.comb += ri.payload[name].eq(mo.payload.meta[name])
        cfg = self.risk.cfg
        for name in risk.CONFIG_LAYOUT.members:
            m.d.comb += cfg[name].eq(getattr(regs, f"risk_{name}"))
        m.d.comb += [regs.risk_gross_notional.eq(self.risk.gross_notional),
                     regs.risk_cfg_error.eq(self.risk.cfg_error),
                     regs.risk_clearing.eq(self.risk.clearing)]

        # decisions -> approved orders with symbol and stamp -> OUCH
        wiring.connect(m, self.risk.o, lk.i)
        oi = self.ouch.i
        m.d.comb += [oi.valid.eq(lk.o.valid), lk.o.ready.eq(oi.ready),
                     oi.payload.eq(lk.o.payload.order)]
        wiring.connect(m, self.ouch.o, wiring.flipped(self.o))

        # message-to-order latency
        meter = self.meter
        o_fire = self.o.valid & self.o.ready
        first = Signal(init=1)
        with m.If(o_fire):
            m.d.sync += first.eq(self.o.payload.last)
        m.d.comb += [meter.cycle.eq(cycle), meter.push.eq(oi.valid & oi.ready),
                     meter.stamp.eq(lk.o.payload.stamp), meter.sent.eq(o_fire & first),
                     regs.latency_last.eq(meter.last), regs.latency_min.eq(meter.min),
                     regs.latency_max.eq(meter.max), regs.latency_sum.eq(meter.sum),
                     regs.latency_count.eq(meter.count)]

        # MLP weight reload through the register bank
        w_addr = Signal.like(self.mlp.w_addr)
        with m.If(regs.mlp_weight_addr_we):
            m.d.sync += w_addr.eq(regs.mlp_weight_addr)
        with m.Elif(regs.mlp_weight_data_we):
            m.d.sync += w_addr.eq(w_addr + 1)
        m.d.comb += [self.mlp.w_we.eq(regs.mlp_weight_data_we), self.mlp.w_addr.eq(w_addr),
                     self.mlp.w_data.eq(regs.mlp_weight_data)]

        # counters
        for name, comp, pname in self._counters():
            m.d.comb += getattr(regs, name).eq(getattr(comp, pname))

        # taps
        taps = {
            "message": (self.mold.o, None),
            "decoded": (self.parser.o, None),
            "record": (self.book.o, None),
            "features": (self.features.o, "x"),
            "scores": (self.risk.i, None),
            "decision": (self.risk.o, None),
        }
        for name, (s, member) in taps.items():
            m.d.comb += getattr(self, f"tap_{name}_valid").eq(s.valid & s.ready)
            if name == "message":
                m.d.comb += [self.tap_message.seq.eq(s.payload.meta.seq),
                             self.tap_message.length.eq(s.payload.length)]
            else:
                m.d.comb += getattr(self, f"tap_{name}").eq(
                    s.payload[member] if member else s.payload)
        return m
