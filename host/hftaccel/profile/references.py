"""Published latency figures the report sets beside its own measurements, with their sources.

These are other people's numbers, measured on other hardware, under other definitions of
start and end points; they give orders of magnitude, not a like-for-like comparison. Each entry
quotes what the source says; ``verified`` is False where the figure could not be checked
against the source text when this table was written.
"""

from __future__ import annotations

__all__ = ["REFERENCES"]

#: ``what``, ``figure`` (as published), ``ns`` (the figure in ns, None when not a single
#: number), ``scope`` (what the number measures), ``source`` (title), ``url``, ``verified``.
REFERENCES = (
    {
        "what": "FPGA NASDAQ ITCH feed handler (Stone Ridge RDX-11, HDL + Impulse C)",
        "figure": "2.7 µs turnaround latency (CPU equivalent: 38 ± 22 µs)",
        "ns": 2700.0,
        "scope": "ITCH packet in -> outbound packet, whole handler, 2011",
        "source": "Pottathuparambil et al., Low-Latency FPGA Based Financial Data Feed "
                  "Handler, FCCM 2011, pp. 93-96, doi:10.1109/FCCM.2011.50",
        "url": "https://doi.org/10.1109/FCCM.2011.50",
        "verified": True,
    },
    {
        "what": "Open-source NASDAQ ITCH FPGA parser (M. Battyani)",
        "figure": "sub 25 ns (parser only)",
        "ns": 25.0,
        "scope": "ITCH message parsing inside the FPGA, upper bound stated by the author, 2021",
        "source": "A sub 25 nanoseconds Open Source NASDAQ ITCH FPGA Parser",
        "url": "https://github.com/mbattyani/sub-25-ns-nasdaq-itch-fpga-parser",
        "verified": True,
    },
    {
        "what": "STAC-T0 tick-to-trade, Exegy nxFramework on AMD Alveo UL3524",
        "figure": "13.9 ns actionable latency (previous record 24.2 ns)",
        "ns": 13.9,
        "scope": "UDP trigger field into the FPGA -> TCP order out, no trading logic, 10 GbE "
                 "with hardened MAC/PCS",
        "source": "A-Team Insight: Exegy and AMD Achieve Record-Breaking Tick-to-Trade Latency "
                  "in STAC-T0 Benchmark",
        "url": "https://a-teaminsight.com/blog/exegy-and-amd-achieve-record-breaking-tick-to-"
               "trade-latency-in-stac-t0-benchmark/",
        "verified": True,
    },
    {
        "what": "STAC-T0 tick-to-trade, LDA Technologies (2020 record)",
        "figure": "24.2 ns",
        "ns": 24.2,
        "scope": "UDP market data in -> TCP order out, no trading logic",
        "source": "S. Schweitzer, Trading in 24.2 Billionths of a Second (2020)",
        "url": "https://schweitzer-scott.medium.com/trading-in-24-2-billionths-of-a-second-"
               "306d8a821683",
        "verified": True,
    },
    {
        "what": "STAC-T1.EMINI (CME E-mini, with trading logic), ADHOC HFFT-02A on AMD Versal "
                "Premium",
        "figure": "115.07 ns mean, 140.04 ns p99, 163.88 ns max (SOM-to-SOF, 1x rate)",
        "ns": 115.07,
        "scope": "start of market data message -> start of order frame, FIX orders, 2024",
        "source": "STAC Report: STAC-T1 with ADHOC Teknoloji HFFT-02A",
        "url": "https://docs.stacresearch.com/news/ADHC240918",
        "verified": True,
    },
    {
        "what": "FINN int MLP IP on AMD Alveo UL3524 (xcvu2p), AMD reference design",
        "figure": "37 cycles at 320 MHz = 115.6 ns",
        "ns": 37 * 3.125,
        "scope": "first input beat (TVALID) -> first output beat of the MLP IP alone "
                 "(10 input beats of 60 bits), measured with an ILA",
        "source": "AMD Alveo UL3524 Ultra Low Latency Trading: FINN Latency Measurement Design",
        "url": "https://xilinx.github.io/Alveo-Cards/cards/ul3524/build/html/docs/"
               "FINN_Latency/Docs/design.html",
        "verified": True,
    },
    {
        "what": "AMD UL3524 GTF transceiver, 10G MAC mode",
        "figure": "5.44 ns base latency (RAW mode 2.34 ns)",
        "ns": 5.44,
        "scope": "transceiver TX -> RX near-end loopback, minimum measured in hardware",
        "source": "AMD Alveo UL3524: GTF Latency Benchmark Design",
        "url": "https://xilinx.github.io/Alveo-Cards/cards/ul3524/build/html/docs/"
               "GTF_Latency/README.html",
        "verified": True,
    },
)
