"""``bsjax report RUN_DIR``: the plots of one training run and a short report.md listing them.

From the run's live metrics history (``read_run_metrics``: lines a resume
superseded are dropped) it draws:

- loss against steps and against tokens: train loss, eval loss, EWA eval loss;
- batch size and LR against tokens, with the switches marked;
- the gradient-noise-scale estimates, when the run's policy logged them
  (``b_simple`` and the per-step ``trace_sigma / g_sq`` of ``noise_scale``,
  ``measured_cbs`` of ``probe``), against the batch size in use;
- step time and throughput against steps.

Every axis names its quantity and unit (loss is the next-token cross-entropy
in nats; batch sizes are sequences; time is wall-clock seconds).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bsjax.cbs import plots
from bsjax.errors import ProblemsError

LOSS_UNIT = "loss (nats/token)"
NOISE_KEYS = ("b_simple", "measured_cbs")


class RunReportError(ProblemsError):
    """A folder that holds no run to report on."""


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The run's metrics lines, resumed history resolved (one place to change the reader)."""
    from bsjax.train.metrics import read_run_metrics

    return read_run_metrics(run_dir)


def _number(value: Any) -> float:
    """A metric value as a float; the strings JSON stores for NaN and inf read back as such."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _series(lines: Sequence[dict], kind: str, key: str, x: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for line in lines:
        if line.get("kind") == kind and key in line:
            xs.append(_number(line[x]))
            ys.append(_number(line[key]))
    return xs, ys


def _step_start_series(lines: Sequence[dict], key: str) -> tuple[list[float], list[float]]:
    """``key`` of the train lines against the tokens consumed *before* each step.

    A train line records the position after its step; the batch size and LR
    held from the step's first token, so a switch shows where it happened.
    """
    xs, ys = [], []
    for line in lines:
        if line.get("kind") == "train" and key in line:
            examples, tokens = _number(line["examples"]), _number(line["tokens"])
            per_example = tokens / examples if examples > 0 else 0.0
            xs.append(tokens - _number(line.get("batch_size", 0)) * per_example)
            ys.append(_number(line[key]))
    return xs, ys


def _batch_size_steps(lines: Sequence[dict]) -> tuple[list[float], list[float]]:
    """The batch size against tokens: exact from the switch lines where there are any
    (train lines are logged only every ``log_every`` steps), else from the train lines."""
    xs, bs = _step_start_series(lines, "batch_size")
    switches = _switches(lines)
    if not switches or not xs:
        return xs, bs
    first = switches[0].get("old_batch_size", bs[0])
    px, pb = [0.0], [_number(first)]
    for s in switches:
        px.append(_number(s["tokens"]))
        pb.append(_number(s.get("new_batch_size")))
    end = max(_number(line.get("tokens", 0)) for line in lines)
    return px + [end], pb + [pb[-1]]


def _switches(lines: Sequence[dict]) -> list[dict]:
    return [line for line in lines if line.get("kind") == "switch"]


def _switch_labels(switches: Sequence[dict]) -> list[str]:
    return [f"{s.get('old_batch_size', '?')}->{s.get('new_batch_size', '?')}" for s in switches]


def plot_loss(lines: Sequence[dict], x: str, path: Path) -> Path:
    """Train, eval and EWA eval loss against ``x`` ("step" or "tokens")."""
    fig, (ax,) = plots.figure()
    for kind, key, name, color, style in (
        ("train", "loss", "train loss", plots.COLORS["train"], "-"),
        ("eval", "eval_loss", "eval loss", plots.COLORS["eval"], "o-"),
        ("eval", "ewa_eval_loss", "EWA eval loss", plots.COLORS["ewa"], "s-"),
    ):
        xs, ys = _series(lines, kind, key, x)
        if xs:
            ax.plot(xs, ys, style, color=color, label=name, markersize=3, alpha=0.9)
    switches = _switches(lines)
    plots.mark_switches(ax, [s[x] for s in switches], _switch_labels(switches))
    if x == "tokens":
        plots.count_axis(ax, "x")
        plots.label(ax, "tokens consumed", LOSS_UNIT, "loss against tokens")
    else:
        plots.label(ax, "optimizer step", LOSS_UNIT, "loss against steps")
    plots.legend(ax)
    return plots.save(fig, path)


def plot_batch_and_lr(lines: Sequence[dict], path: Path) -> Path:
    """Batch size and LR against tokens (two panels sharing the token axis), switches marked."""
    fig, (ax_b, ax_lr) = plots.figure(2, 1, sharex=True)
    xs, bs = _batch_size_steps(lines)
    ax_b.step(xs, bs, where="post", color=plots.COLORS["batch"], label="batch size B")
    xs, lrs = _step_start_series(lines, "lr")
    ax_lr.plot(xs, lrs, color=plots.COLORS["lr"], label="learning rate")
    switches = _switches(lines)
    for ax in (ax_b, ax_lr):
        plots.mark_switches(ax, [s["tokens"] for s in switches])
        plots.count_axis(ax, "x")
    for s, text in zip(switches, _switch_labels(switches)):
        reason = s.get("reason", "")
        ax_b.annotate(
            f"{text} {reason}".strip(),
            xy=(s["tokens"], s.get("new_batch_size", 0)),
            xytext=(3, 3),
            textcoords="offset points",
            fontsize=7,
            color=plots.COLORS["switch"],
        )
    plots.label(ax_b, "", "batch size B (sequences)", "batch size and learning rate")
    plots.label(ax_lr, "tokens consumed", "learning rate (per step)")
    return plots.save(fig, path)


def has_noise_estimates(lines: Sequence[dict]) -> bool:
    """True when train lines carry a gradient-noise-scale estimate."""
    return any(
        line.get("kind") == "train" and any(k in line for k in NOISE_KEYS + ("trace_sigma",))
        for line in lines
    )


def plot_noise_scale(lines: Sequence[dict], path: Path) -> Path:
    """The noise-scale estimates against tokens, beside the batch size in use (log scale)."""
    fig, (ax,) = plots.figure()
    raw_x, raw_y = [], []
    for line in lines:
        if line.get("kind") == "train" and "trace_sigma" in line and "g_sq" in line:
            g_sq = _number(line["g_sq"])
            if g_sq > 0:
                raw_x.append(_number(line["tokens"]))
                raw_y.append(_number(line["trace_sigma"]) / g_sq)
    if raw_x:
        ax.plot(
            raw_x,
            raw_y,
            ".",
            color=plots.COLORS["noise"],
            alpha=0.35,
            ms=3,
            label="per-step tr(Sigma) / |G|^2",
        )
    for key, name, style in (
        ("b_simple", "B_simple (EMA)", "-"),
        ("measured_cbs", "probe CBS", "o-"),
    ):
        xs, ys = _series(lines, "train", key, "tokens")
        keep = [(a, b) for a, b in zip(xs, ys) if b == b and b > 0]
        if keep:
            ax.plot(
                *zip(*keep),
                style,
                color=plots.COLORS["ewa"] if key == "b_simple" else "C6",
                label=name,
                markersize=3,
            )
    xs, bs = _batch_size_steps(lines)
    ax.step(xs, bs, where="post", color=plots.COLORS["batch"], label="batch size B")
    if raw_x or any(b > 0 for b in bs):
        ax.set_yscale("log")
    switches = _switches(lines)
    plots.mark_switches(ax, [s["tokens"] for s in switches], _switch_labels(switches))
    plots.count_axis(ax, "x")
    plots.label(
        ax, "tokens consumed", "batch size (sequences, log scale)", "gradient noise scale estimates"
    )
    plots.legend(ax)
    return plots.save(fig, path)


def plot_step_time(lines: Sequence[dict], path: Path) -> Path:
    """Wall time per step and tokens per second against steps, switches marked."""
    fig, (ax_t, ax_r) = plots.figure(2, 1, sharex=True)
    xs, ts = _series(lines, "train", "step_time_s", "step")
    ax_t.plot(xs, ts, ".-", color=plots.COLORS["time"], ms=3, label="step time")
    xs, rs = _series(lines, "train", "tokens_per_s", "step")
    ax_r.plot(xs, rs, ".-", color=plots.COLORS["train"], ms=3, label="throughput")
    switches = _switches(lines)
    for ax in (ax_t, ax_r):
        plots.mark_switches(ax, [s["step"] for s in switches])
    plots.count_axis(ax_r, "y")
    if ts and min(ts) > 0:
        ax_t.set_yscale("log")  # the first step (compilation) is often 100x a steady step
    plots.label(ax_t, "", "step time (s, log scale)", "step time and throughput")
    plots.label(ax_r, "optimizer step", "throughput (tokens/s)")
    return plots.save(fig, path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def write_run_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write the PNGs and report.md of one run; returns the path of report.md.

    Raises:
      RunReportError when ``run_dir`` holds no metrics lines.
    """
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir else run_dir / "report"
    if not run_dir.is_dir():
        raise RunReportError(f"{run_dir}: no such folder; give the --workdir of a bsjax train run")
    lines = read_metrics(run_dir)
    if not any(line.get("kind") in ("train", "eval") for line in lines):
        sweep_hint = (
            "; it looks like a sweep: use bsjax analyze"
            if any(p.is_dir() and (p / "metrics.jsonl").exists() for p in run_dir.iterdir())
            else ""
        )
        raise RunReportError(
            f"{run_dir}: no train or eval lines in metrics.jsonl; give the --workdir of a "
            f"bsjax train run that has logged at least one step{sweep_hint}"
        )
    figures = [
        (
            "loss_vs_steps.png",
            "Train, eval and EWA eval loss against optimizer steps.",
            lambda p: plot_loss(lines, "step", p),
        ),
        (
            "loss_vs_tokens.png",
            "The same losses against tokens consumed.",
            lambda p: plot_loss(lines, "tokens", p),
        ),
        (
            "batch_lr_vs_tokens.png",
            "Batch size and learning rate against tokens; dashed lines mark the switches.",
            lambda p: plot_batch_and_lr(lines, p),
        ),
    ]
    if has_noise_estimates(lines):
        figures.append(
            (
                "noise_scale_vs_tokens.png",
                "Gradient-noise-scale estimates of the policy beside the batch size in use.",
                lambda p: plot_noise_scale(lines, p),
            )
        )
    figures.append(
        (
            "step_time.png",
            "Wall time per step and throughput against steps.",
            lambda p: plot_step_time(lines, p),
        )
    )
    for name, _, draw in figures:
        draw(out / name)
    summary = _read_json(run_dir / "summary.json")
    (out / "report.md").write_text(_markdown(run_dir, summary, lines, figures))
    return out / "report.md"


def _markdown(run_dir: Path, summary: dict, lines: Sequence[dict], figures) -> str:
    evals = [line for line in lines if line.get("kind") == "eval"]
    switches = _switches(lines)
    rows = [
        ("status", summary.get("status", "unknown (no summary.json)")),
        ("steps", summary.get("steps", max((l.get("step", 0) for l in lines), default=0))),
        ("tokens", summary.get("tokens", max((l.get("tokens", 0) for l in lines), default=0))),
        ("non-embedding parameters", summary.get("model_params", "?")),
        ("final train loss", summary.get("final_train_loss", "?")),
        ("final EWA eval loss", evals[-1].get("ewa_eval_loss", "?") if evals else "?"),
        ("switches", len(switches)),
        ("wall time (s)", summary.get("wall_s", "?")),
    ]
    if summary.get("steps_to_target") is not None:
        rows.append(("steps to target", summary["steps_to_target"]))
    out = [f"# Run report: {run_dir}", "", "| | |", "| --- | --- |"]
    out += [f"| {k} | {_fmt(v)} |" for k, v in rows]
    if switches:
        out += [
            "",
            "Switches:",
            "",
            "| step | tokens | B | K x M | reason | stall (s) |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        out += [
            f"| {s['step']} | {s['tokens']} | {s.get('old_batch_size')} -> "
            f"{s.get('new_batch_size')} | {s.get('new_K')} x {s.get('new_M')} | "
            f"{s.get('reason', '')} | {_fmt(s.get('stall_s', '?'))} |"
            for s in switches
        ]
    out += ["", "Figures:", ""]
    for name, caption, _ in figures:
        out += [f"- `{name}`: {caption}", "", f"![{name}]({name})", ""]
    return "\n".join(out)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def report_main(argv: list[str]) -> int:
    """``bsjax report RUN_DIR [--out DIR]``."""
    parser = argparse.ArgumentParser(
        prog="bsjax report",
        description="Plots of one training run (loss, batch size, LR, noise scale, step time) "
        "and a report.md listing them.",
    )
    parser.add_argument("run_dir", help="the --workdir of a bsjax train run")
    parser.add_argument("--out", default="", help="output folder (default: RUN_DIR/report)")
    args = parser.parse_args(argv)
    try:
        path = write_run_report(args.run_dir, args.out or None)
    except RunReportError as err:
        print(f"bsjax report: {err}")
        return 2
    print(f"report: {path}")
    for png in sorted(path.parent.glob("*.png")):
        print(f"  {png}")
    return 0
