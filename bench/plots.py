"""PNG plots of a suite result (matplotlib, headless)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .suite import OURS, OURS_LOCAL, PYSPARK  # noqa: E402

if TYPE_CHECKING:
    from .report import Summary

PEERS = (OURS.name, OURS_LOCAL.name, PYSPARK.name)


def throughput_plot(s: Summary, path: Path) -> Path:
    workloads = s.data["settings"]["workloads"]
    series = {p: [s.throughput(w, p) or 0.0 for w in workloads] for p in PEERS}
    series["ceiling (2 cores)"] = [s.ceiling(w) or 0.0 for w in workloads]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        xs = [j + i * width for j in range(len(workloads))]
        ax.bar(xs, [v / 1e3 for v in values], width, label=name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(workloads))], workloads)
    ax.set_ylabel("sustainable throughput (k events/s)")
    ax.set_title("Sustainable throughput at a 1 s batch interval (0 = not sustainable / not run)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def processing_plot(s: Summary, path: Path) -> Path:
    workloads = s.data["settings"]["workloads"]
    fig, axes = plt.subplots(1, len(workloads), figsize=(4.2 * len(workloads), 4), squeeze=False)
    for ax, w in zip(axes[0], workloads, strict=True):
        for peer in PEERS:
            points = [(r.size, r.median) for r in s.sizes(w, peer) if not math.isinf(r.median)]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=peer)
        ax.axhline(s.plan.interval, color="grey", linestyle="--", linewidth=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(w)
        ax.set_xlabel("events per batch (N)")
        ax.set_ylabel("median processing time (s)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def latency_plot(s: Summary, path: Path) -> Path | None:
    lat = s.data["latency"]
    runs = [r for r in lat.get("runs", []) if r.get("available")]
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in runs:
        qs = list(r["latency_s"])
        ax.plot(qs, [r["latency_s"][q] * 1e3 for q in qs], marker="o",
                label=f"batch {r['interval']:g} s at {r['rate'] / 1e3:.0f}k/s")
    ax.set_ylabel("event-to-output latency (ms)")
    ax.set_yscale("log")
    ax.set_title("W4 latency percentiles (aiostream local[2])")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_all(s: Summary, out: Path) -> list[Path]:
    made = [
        throughput_plot(s, out / "throughput.png"),
        processing_plot(s, out / "processing_vs_n.png"),
        latency_plot(s, out / "latency.png"),
    ]
    return [p for p in made if p is not None]
