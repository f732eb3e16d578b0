"""Plots for evaluation reports (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def plot_curve(report: dict[str, Any], path: str | Path, *, title: str | None = None) -> None:
    """Score vs. budget, one line per method with its fitted curve, the full-data line and
    each method's recommended budget marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.asarray(report["grid_percent"], dtype=float)
    metric = report.get("metric", "accuracy")
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    xs = np.geomspace(max(grid.min() / 2, 0.1), grid.max(), 200)
    palette = plt.get_cmap("tab10" if len(report["methods"]) <= 10 else "tab20")
    for i, m in enumerate(report["methods"]):
        color = palette(i % palette.N)
        acc = np.asarray(m[metric], dtype=float)
        ax.errorbar(grid, acc, yerr=m.get(f"{metric}_ci_half_width", m["ci_half_width"]),
                    fmt="o", color=color, capsize=3,
                    label=f"{m['method']}" + (f" ({m['seeds']} seeds)" if m["seeds"] > 1
                                             else ""))
        fit = m.get("fit")
        if fit:
            ys = fit["r"] - (fit["r"] - fit["a"]) * np.exp(-fit["b"] * xs)
            ax.plot(xs, ys, color=color, alpha=0.6, lw=1)
            rec = m.get("recommended_budget_percent")
            if rec is not None:
                ax.axvline(rec, color=color, ls=":", alpha=0.7)
    ax.axhline(report["full"][metric], color="k", ls="--", lw=1, label="full data")
    length = report.get("length")
    if length and metric == "accuracy":
        ax.axhline(length["length_rule_accuracy"], color="0.5", ls=":", lw=1,
                   label="length rule (longer wins)")
    ax.set_xscale("log")
    ax.set_xlabel("budget (% of the pool, log scale)")
    ax.set_ylabel(("length-balanced " if metric == "balanced_accuracy" else "")
                  + "probe pairwise accuracy on held-out pairs")
    ax.set_title(title or f"Budget curve: {report['pool_pairs']:,} pool pairs, "
                 f"{report['eval_pairs']:,} eval pairs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_evaluation(report: dict[str, Any], path: str | Path) -> None:
    """The subset's probe accuracy next to the full pool's, with 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sub, full = report["subset"], report["full"]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    names = [f"{report['method']}\n{report['pairs']:,} pairs", "full pool"]
    for offset, key, label in ((-0.2, "", "accuracy"),
                               (0.2, "balanced_", "length-balanced accuracy")):
        acc = [sub.get(f"{key}accuracy"), full.get(f"{key}accuracy")]
        if None in acc:
            continue
        pairs = list(zip(acc, (sub, full), strict=True))
        err = [[max(0.0, a - d.get(f"{key}ci_low", a)) for a, d in pairs],
               [max(0.0, d.get(f"{key}ci_high", a) - a) for a, d in pairs]]
        ax.bar(np.arange(2) + offset, acc, width=0.4, yerr=err, capsize=5, label=label)
    ax.set_xticks(np.arange(2), names)
    length = report.get("length")
    if length:
        ax.axhline(length["length_rule_accuracy"], color="0.4", lw=1, ls="--",
                   label="length rule")
    ax.axhline(0.5, color="k", lw=0.8, ls=":")
    ax.legend(fontsize=8)
    ax.set_ylim(0.3, 1.0)
    ax.set_ylabel("probe pairwise accuracy (held-out)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
