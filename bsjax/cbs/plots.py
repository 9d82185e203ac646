"""One plotting style for bsjax's reports: labelled axes with units, token axes, switch marks.

Used by the one-run report (:mod:`bsjax.cbs.run_report`) and the sweep report
(:mod:`bsjax.cbs.report`). matplotlib runs on its Agg backend (no display);
every figure is a PNG at the same size and resolution.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

DPI = 120
PANEL_SIZE = (6.4, 3.6)  # inches per panel
STYLE = {
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "lines.linewidth": 1.4,
}
# One colour per quantity across every figure.
COLORS = {
    "train": "C0",
    "eval": "C1",
    "ewa": "C3",
    "batch": "C2",
    "lr": "C4",
    "noise": "C5",
    "time": "C7",
    "switch": "0.45",
}


def figure(rows: int = 1, cols: int = 1, *, sharex: bool = False, size=PANEL_SIZE):
    """``(fig, axes)`` in the house style; ``axes`` is always a flat list."""
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False, sharex=sharex
        )
    for ax in axes.flat:
        _apply_style(ax)
    return fig, list(axes.flat)


def panels(n: int, *, cols: int = 3, size=(4.6, 3.6)):
    """``(fig, axes)`` with ``n`` panels in rows of at most ``cols`` (spare cells hidden)."""
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig, axes = figure(rows, cols, size=size)
    for extra in axes[n:]:
        extra.set_visible(False)
    return fig, axes[:n]


def sequential_colors(n: int) -> list:
    """``n`` colours along one sequential colour map (for curves ordered by batch size)."""
    cmap = matplotlib.colormaps["viridis"]
    return [cmap(i / max(n - 1, 1)) for i in range(n)]


def _apply_style(ax) -> None:
    ax.grid(True, alpha=STYLE["grid.alpha"], linewidth=STYLE["grid.linewidth"])
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def label(ax, x: str, y: str, title: str = "") -> None:
    """Axis labels, each naming its quantity and unit, e.g. ``label(ax, "tokens", "loss (nats)")``."""
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if title:
        ax.set_title(title)


def count_text(value: float, _pos=None) -> str:
    """``2.5M`` style tick text for token and example counts."""
    value = float(value)
    for suffix, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def count_axis(ax, axis: str = "x") -> None:
    """Tick labels in K/M/B on ``axis`` (for tokens and examples)."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_formatter(FuncFormatter(count_text))


def mark_switches(ax, positions: Sequence[float], labels: Sequence[str] = ()) -> None:
    """Dashed vertical lines at batch-size switches, with a short label at the top."""
    for i, x in enumerate(positions):
        ax.axvline(x, color=COLORS["switch"], ls="--", lw=0.8, zorder=0)
        if i < len(labels) and labels[i]:
            ax.annotate(
                labels[i],
                xy=(x, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(2, -2),
                textcoords="offset points",
                fontsize=7,
                color=COLORS["switch"],
                va="top",
                rotation=90,
            )


def legend(ax) -> None:
    """A legend where the axes have labelled artists."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best")


def save(fig, path):
    """Write ``fig`` as a PNG (folders created) and close it.

    ``path`` is a str, a ``pathlib.Path`` or an ``etils.epath.Path``: the PNG is
    rendered in memory and written at once, so a report folder may be a bucket.
    """
    path = Path(path) if isinstance(path, str) else path
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=DPI)
    plt.close(fig)
    path.write_bytes(png.getvalue())
    return path
