"""PNG plots of the theory-lab results (matplotlib, Agg backend; imported only by the CLI and scripts)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_cbs_scaling(results, path) -> Path:
    """log-log ``B*(D)`` for one or more :class:`~bsjax.theory.cbs_scaling.CBSScaling` with fits."""
    results = results if isinstance(results, (list, tuple)) else [results]
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for res in results:
        D = np.array([p.data_size for p in res.points], float)
        B = np.array([p.critical_batch_size for p in res.points])
        if res.plateau is not None:
            label = (
                f"a={res.a:g}, b={res.b:g}: slope (finite-size drift) {res.plateau.slope:.3f}, "
                f"Cor. 6 plateau; {'' if res.plateau.consistent else 'not '}flat within "
                f"x{res.plateau.band:.2f}"
            )
        else:
            label = (
                f"a={res.a:g}, b={res.b:g}: measured {res.measured_exponent:.3f}, "
                f"Cor. 6 {res.predicted_exponent:.3f}"
            )
        line = ax.loglog(D, B, "o", label=label)[0]
        ax.loglog(
            D, res.measured_prefactor * D**res.measured_exponent, "-", color=line.get_color(), lw=1
        )
        ref = B[0] * (D / D[0]) ** res.predicted_exponent
        ax.loglog(D, ref, ":", color=line.get_color(), lw=1)
    ax.set_xlabel("data size D (examples)")
    ax.set_ylabel(f"critical batch size B* (risk within x{results[0].risk_factor:g})")
    ax.set_title(
        "CBS against data size, exact linear-regression risk\n(solid: fit, dotted: Corollary 6 slope)"
    )
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def plot_optimal_schedule(continuous, bucketed, path, constant=None) -> Path:
    """Batch size against the fraction of the data budget consumed, continuous and bucketed."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    D = continuous.data_size
    ax.semilogy(
        continuous.examples_N / D,
        continuous.batch_N,
        "-",
        label=f"continuous b(t), loss {continuous.loss:.4g}",
    )
    if bucketed is not None:
        x, y, used = [], [], 0
        for seg in bucketed.schedule.segments:
            x += [used / D, (used + seg.steps * seg.batch) / D]
            y += [seg.batch, seg.batch]
            used += seg.steps * seg.batch
        ax.semilogy(x, y, "-", drawstyle="steps-post", label=f"buckets, loss {bucketed.loss:.4g}")
    if constant is not None:
        ax.axhline(
            constant[0],
            color="gray",
            ls=":",
            label=f"best constant B={constant[0]}, loss {constant[1]:.4g}",
        )
    ax.set_xlabel("fraction of the data budget used")
    ax.set_ylabel("batch size")
    ax.set_title(f"FSL-optimal schedule, D = {D:g} ({continuous.measured_class} by shape)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def plot_catch_up(results, path, labels=None) -> Path:
    """Relative loss gap after the switch against steps since the switch (log-log)."""
    results = results if isinstance(results, (list, tuple)) else [results]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for i, cu in enumerate(results):
        lab = labels[i] if labels else f"switch at {cu.switch_step}"
        rel = np.maximum(cu.relative_gap_R, 1e-12)
        ax.loglog(cu.steps_after_R, rel, "-", label=lab)
    ax.axhline(results[0].tolerance, color="k", ls="--", lw=1, label="tolerance")
    ax.set_xlabel("steps since the switch")
    ax.set_ylabel("(L_switched - L_large) / L_large")
    ax.set_title("Catch-up after a small-to-large batch switch")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def plot_fsl_ratio(comparison, path) -> Path:
    """Exact risk, FSL prediction and their ratio along training."""
    fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(6.4, 6), sharex=True)
    s = np.maximum(comparison.steps_R, 1)
    for g, name in enumerate(comparison.names):
        line = ax0.loglog(s, comparison.exact_GR[g], "-", label=f"{name} exact")[0]
        ax0.loglog(s, comparison.fsl_GR[g], "--", color=line.get_color(), label=f"{name} FSL")
        ax1.semilogx(s[1:], comparison.ratio_GR[g, 1:], "-", color=line.get_color(), label=name)
    ax0.set_ylabel("excess risk (last iterate)")
    ax0.legend(fontsize=7)
    ax1.set_ylabel("FSL / exact")
    ax1.set_xlabel("steps")
    ax1.axhline(1.0, color="k", lw=0.8)
    for ax in (ax0, ax1):
        ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def plot_switch_scaling(results, path) -> Path:
    """``(D - P*)/D`` against ``D`` for two-phase schedules, with the predicted slopes."""
    results = results if isinstance(results, (list, tuple)) else [results]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for res in results:
        D = np.array([p.data_size for p in res.points], float)
        f = np.array([p.remaining_fraction for p in res.points])
        line = ax.loglog(
            D,
            f,
            "o-",
            label=f"s={res.s:g}, beta={res.beta:g} ({res.task_class}): "
            f"{res.measured_exponent:.3f} vs {res.predicted_exponent:.3f}",
        )[0]
        ax.loglog(D, f[-1] * (D / D[-1]) ** res.predicted_exponent, ":", color=line.get_color())
    ax.set_xlabel("data budget D")
    ax.set_ylabel("(D - P*) / D  (fraction after the switch)")
    ax.set_title("Two-phase switch point (dotted: docs/science.md section 4 slope)")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)
