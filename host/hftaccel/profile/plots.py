"""The report's PNG plots (matplotlib, Agg backend): RTL per-stage histograms and CDF, CPU
per-event histogram and CDF, GPU per-batch latency, wire-to-wire bars, and our numbers beside the
published figures (coloured apart)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .references import REFERENCES

__all__ = ["write_plots"]


def write_plots(report: dict, out: Path) -> dict:
    """Write the PNG plots a report's numbers allow; ``{name: path}``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = {}

    def save(fig, name):
        p = out / f"{name}.png"
        fig.tight_layout()
        fig.savefig(p, dpi=96)
        plt.close(fig)
        made[name] = p

    b = report["backends"]
    clock = report["clock"]
    rtl = b["rtl"]
    if rtl.get("measured") and rtl.get("samples"):
        smp = rtl["samples"]
        names = [k for k in smp if len(smp[k])]
        if names:
            cols = 4
            rows = -(-len(names) // cols)
            fig, axes = plt.subplots(rows, cols, figsize=(13, 2.8 * rows), squeeze=False)
            for ax, name in zip(axes.flat, names):
                v = smp[name]
                lo, hi = int(v.min()), int(v.max())
                bins = np.arange(lo, hi + 2) - 0.5 if hi - lo <= 120 else 60
                ax.hist(v, bins=bins, color="#2a6f97" if name != "tick_to_trade" else "#c0392b")
                ax.set_title(f"{name} (n={len(v):,})", fontsize=9)
                ax.set_xlabel(f"cycles  (1 cycle = {clock['period_ns']:.2f} ns)", fontsize=8)
                ax.tick_params(labelsize=7)
            for ax in list(axes.flat)[len(names):]:
                ax.axis("off")
            fig.suptitle("RTL latency per stage and tick-to-trade (cycle-accurate simulation)",
                         fontsize=10)
            save(fig, "rtl_histograms")
            fig, ax = plt.subplots(figsize=(8, 4.5))
            for name in names:
                v = np.sort(smp[name]) * clock["period_ns"]
                ax.step(np.r_[v[0], v], np.r_[0.0, np.arange(1, len(v) + 1) / len(v)],
                        where="post", label=name, lw=2.2 if name == "tick_to_trade" else 1.2)
            ax.set_xlabel(f"ns at {clock['mhz']:g} MHz" + (" (nominal)" if clock["nominal"]
                                                           else ""))
            ax.set_ylabel("fraction of events")
            ax.set_xlim(left=0)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
            ax.set_title("RTL latency CDF", fontsize=10)
            save(fig, "rtl_cdf")
    cpu = b["cpu"]
    if cpu.get("measured"):
        smp = {k: v for k, v in cpu["samples_ns"].items() if len(v)}
        fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
        allv = np.concatenate(list(smp.values()))
        bins = np.logspace(np.log10(max(allv.min(), 1)), np.log10(max(allv.max(), 10)), 70)
        for name, v in smp.items():
            axes[0].hist(v / 1e3, bins=bins / 1e3, histtype="step", label=name,
                         lw=2 if name.startswith("event") else 1)
            s = np.sort(v)
            axes[1].step(s / 1e3, np.arange(1, len(s) + 1) / len(s), where="post", label=name,
                         lw=2 if name.startswith("event") else 1)
        for ax in axes:
            ax.set_xscale("log")
            ax.set_xlabel("µs (perf_counter_ns)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        axes[0].set_ylabel("events")
        axes[1].set_ylabel("fraction of events")
        axes[0].set_title("CPU golden pipeline per event: histogram", fontsize=10)
        axes[1].set_title("CPU golden pipeline per event: CDF", fontsize=10)
        save(fig, "cpu_latency")
    gpu = b["gpu"]
    if gpu.get("per_batch_ns") and gpu.get("measured"):
        sizes = [int(s) for s in gpu["per_batch_ns"]]
        med = [gpu["per_batch_ns"][str(s)]["median"] / 1e3 for s in sizes]
        p99 = [gpu["per_batch_ns"][str(s)]["p99"] / 1e3 for s in sizes]
        thr = [gpu["throughput_records_per_s"][str(s)] for s in sizes]
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.plot(sizes, med, "o-", label="median per batch")
        ax.plot(sizes, p99, "s--", label="p99 per batch")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("batch (book records)")
        ax.set_ylabel("µs")
        ax2 = ax.twinx()
        ax2.plot(sizes, thr, "^:", color="gray", label="records/s")
        ax2.set_yscale("log")
        ax2.set_ylabel("records/s")
        ax.legend(loc="upper left", fontsize=8)
        ax.set_title("GPU features + MLP per batch", fontsize=10)
        save(fig, "gpu_batches")
    w = rtl.get("wire_to_wire") if rtl.get("measured") else None
    if w:
        parts = (("in_wire_ns", "market data frame on the wire", "#8ecae6"),
                 ("core_ns", "core tick-to-trade (median)", "#c0392b"),
                 ("out_wire_ns", "order frame on the wire", "#ffb703"))
        fig, axes = plt.subplots(len(w["median"]), 1, figsize=(8, 1.3 * len(w["median"]) + 1.2))
        for ax, x in zip(np.atleast_1d(axes), w["median"]):
            left = 0.0
            for key, lab, col in parts:
                ax.barh([0], [x[key]], left=left, label=lab, color=col)
                left += x[key]
            ax.text(left, 0, f" {left:,.0f} ns", va="center", fontsize=8)
            ax.set_yticks([0], [f"{x['rate_gbps']} GbE"])
            ax.set_xlim(0, left * 1.15)
        ax.set_xlabel("ns (each line rate on its own scale)")
        np.atleast_1d(axes)[0].legend(fontsize=7, loc="upper center", ncol=3,
                                      bbox_to_anchor=(0.5, 1.6), frameon=False)
        fig.suptitle("Wire-to-wire estimate (median; MAC/PHY not included)", fontsize=10, y=0.99)
        save(fig, "wire_to_wire")
    # measured vs published, on one log axis, told apart by colour and label
    bars = []
    if rtl.get("measured") and rtl.get("tick_to_trade_ns", {}).get("n"):
        bars.append((f"measured: RTL tick-to-trade median (core, {clock['mhz']:g} MHz"
                     f"{' nominal' if clock['nominal'] else ''})",
                     rtl["tick_to_trade_ns"]["median"], "measured"))
        if w:
            ten = [x for x in w["median"] if x["rate_gbps"] == 10][0]
            bars.append(("estimate: RTL wire-to-wire at 10 GbE", ten["total_ns"], "estimate"))
    if cpu.get("measured"):
        e = cpu["per_event_ns"]["event_to_order"]
        e = e if e.get("n") else cpu["per_event_ns"]["event_to_decision"]
        what = "order" if cpu["per_event_ns"]["event_to_order"].get("n") else "decision"
        bars.append((f"measured: CPU golden model, event -> {what} median", e["median"],
                     "measured"))
    for r in REFERENCES:
        if r["ns"]:
            bars.append((f"published: {r['what'][:75]}", r["ns"], "published"))
    if bars:
        colors = {"measured": "#c0392b", "estimate": "#e67e22", "published": "#7f8c8d"}
        fig, ax = plt.subplots(figsize=(11, 0.42 * len(bars) + 1.2))
        ys = np.arange(len(bars))[::-1]
        ax.barh(ys, [x[1] for x in bars], color=[colors[x[2]] for x in bars])
        ax.set_yticks(ys, [x[0] for x in bars], fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("ns (log)")
        for y, x in zip(ys, bars):
            ax.text(x[1], y, f" {x[1]:,.1f}", va="center", fontsize=7)
        from matplotlib.patches import Patch
        ax.legend(handles=[Patch(color=colors["measured"], label="measured here"),
                           Patch(color=colors["estimate"], label="estimated here"),
                           Patch(color=colors["published"],
                                 label="published elsewhere (other hardware and definitions)")],
                  fontsize=7, loc="lower right")
        ax.set_title("Our numbers beside published figures", fontsize=10)
        save(fig, "comparison")
    return made
