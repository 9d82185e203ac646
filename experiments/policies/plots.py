"""The comparison's three PNGs (matplotlib, Agg backend).

``runs`` is ``{arm: {seed: run}}`` as ``summarize.read_run`` returns it: each
run has ``evals`` [(tokens, ewa_eval_loss, eval_loss, step)], ``batch`` [(tokens,
batch size)], ``steps`` and ``final_ewa``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

GRID_POINTS = 200
STYLE = dict(
    const_small=("#1f77b4", "-"),
    const_large=("#d62728", "-"),
    early_switch=("#ff7f0e", "--"),
    late_switch=("#2ca02c", "--"),
    noise_scale=("#9467bd", "-."),
    probe=("#8c564b", "-."),
    wsd_es=("#e377c2", ":"),
    seesaw=("#17becf", ":"),
    cosine_small=("#7f7f7f", "--"),
)


def _style(arm: str):
    return STYLE.get(arm, ("#7f7f7f", "-"))


def mean_curve(curves_S: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, ...]:
    """Mean, min and max over seeds on a common token grid (linear interpolation).

    The grid spans only the tokens every seed covers, so no curve is extrapolated.
    """
    lo = max(x[0] for x, _ in curves_S)
    hi = min(x[-1] for x, _ in curves_S)
    grid_G = np.linspace(lo, hi, GRID_POINTS if hi > lo else 1)
    ys_SG = np.stack([np.interp(grid_G, x, y) for x, y in curves_S])
    return grid_G, ys_SG.mean(0), ys_SG.min(0), ys_SG.max(0)


def loss_vs_tokens(runs: dict, path: Path, budget_tokens: int) -> None:
    """EWA eval loss against tokens, one line per arm (mean over seeds); right panel zooms."""
    fig, (ax_all, ax_end) = plt.subplots(1, 2, figsize=(13, 5))
    ends = []
    for arm, by_seed in runs.items():
        curves = [
            (np.array([e[0] for e in r["evals"]], float), np.array([e[1] for e in r["evals"]]))
            for r in by_seed.values()
        ]
        grid_G, mean_G, min_G, max_G = mean_curve(curves)
        color, ls = _style(arm)
        for ax in (ax_all, ax_end):
            ax.plot(
                grid_G / 1e6,
                mean_G,
                color=color,
                ls=ls,
                lw=1.8,
                marker="o" if len(grid_G) == 1 else None,
                label=f"{arm} (n={len(curves)})",
            )
            ax.fill_between(grid_G / 1e6, min_G, max_G, color=color, alpha=0.15, lw=0)
        ends.append(mean_G[-1])
    half = budget_tokens / 2e6
    ax_end.set_xlim(half, budget_tokens / 1e6 * 1.04)
    if ends:
        ax_end.set_ylim(min(ends) - 0.05, max(ends) + 0.25)
    ax_all.set_yscale("log")
    for ax, title in ((ax_all, "whole run (log y)"), (ax_end, "second half of the budget")):
        ax.set_xlabel("tokens (M)")
        ax.set_ylabel("EWA eval loss (nats/byte)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    ax_all.legend(fontsize=8)
    fig.suptitle("EWA eval loss vs tokens, mean over seeds (band: min..max)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def batch_vs_tokens(runs: dict, path: Path, budget_tokens: int) -> None:
    """Batch size against tokens for every run (seeds as thin lines of the arm's colour)."""
    fig, ax = plt.subplots(figsize=(9, 5))
    arms = list(runs)
    for i, (arm, by_seed) in enumerate(runs.items()):
        color, ls = _style(arm)
        for j, run in enumerate(by_seed.values()):
            x = np.array([0] + [t for t, _ in run["batch"]], float) / 1e6
            y = np.array([run["batch"][0][1]] + [b for _, b in run["batch"]], float)
            y = y * 2 ** (0.04 * (i - len(arms) / 2))  # small offsets so equal lines stay visible
            ax.step(
                x,
                y,
                where="pre",
                color=color,
                ls=ls,
                lw=1.5 if j == 0 else 0.8,
                label=arm if j == 0 else None,
            )
    ax.set_yscale("log", base=2)
    sizes = sorted(
        {b for by_seed in runs.values() for r in by_seed.values() for _, b in r["batch"]}
    )
    ax.set_yticks(sizes, labels=[str(b) for b in sizes])
    ax.set_xlim(0, budget_tokens / 1e6 * 1.04)
    ax.set_xlabel("tokens (M)")
    ax.set_ylabel("global batch (sequences; lines offset slightly)")
    ax.set_title("Batch size vs tokens, every run")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
