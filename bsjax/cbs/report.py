"""Report of a sweep folder: report.md, results.csv, fits.json and PNG plots.

The figures use the house style of :mod:`bsjax.cbs.plots` (Agg backend, so it
runs headless), as the one-run report does. ``write_report(sweep_dir)`` fits and renders;
``render_report(analysis)`` renders an :class:`SweepAnalysis` already made.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from bsjax.cbs import plots
from bsjax.cbs.analysis import SweepAnalysis, analyze_sweep
from bsjax.cbs.fits import Interval
from bsjax.cbs.results import REPORT_DIR, censored_reason, read_metrics

FIG_STEPS = "steps_vs_batch.png"
FIG_LOSS = "ewa_eval_loss.png"
FIG_TRADEOFF = "steps_examples.png"
FIG_SCALING = "scaling_{}.png"
FORECAST_FACTORS = (2, 4, 8)
_SIZE_UNITS = {"N": "million parameters", "D": "billion tokens"}


def write_report(sweep_dir: Path | str, **options: Any) -> Path:
    """Fit the sweep in ``sweep_dir`` and write ``sweep_dir/report/``; returns the path of report.md.

    ``options`` go to :func:`bsjax.cbs.analysis.analyze_sweep` (b_opt,
    overhead, alpha, bootstrap, seed, ci_level).
    """
    return render_report(analyze_sweep(sweep_dir, **options))


def render_report(analysis: SweepAnalysis) -> Path:
    """Write report.md, results.csv, fits.json and the plots of ``analysis``."""
    out_dir = analysis.sweep_dir / REPORT_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_csv(analysis, out_dir / "results.csv")
    (out_dir / "fits.json").write_text(
        json.dumps(_fits_json(analysis), indent=2) + "\n", encoding="utf-8"
    )
    figures = {}
    if analysis.curves:
        figures["steps"] = _plot_steps(analysis, out_dir / FIG_STEPS)
        figures["loss"] = _plot_loss(analysis, out_dir / FIG_LOSS)
    if any(c.tradeoff is not None for c in analysis.curves):
        figures["tradeoff"] = _plot_tradeoff(analysis, out_dir / FIG_TRADEOFF)
    for variable, _law in analysis.scaling.items():
        figures[f"scaling_{variable}"] = _plot_scaling(
            analysis, variable, out_dir / FIG_SCALING.format(variable)
        )
    path = out_dir / "report.md"
    path.write_text(_markdown(analysis, figures), encoding="utf-8")
    return path


# --------------------------------------------------------------------------
# Formatting helpers


def _num(x: float | None, digits: int = 4) -> str:
    """Numbers for tables: integers with separators, floats to ``digits`` significant digits."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "∞"
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return f"{x:,}"
    if 10 ** (digits - 1) <= abs(x) < 1e6:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def _with_ci(value: float, interval: Interval | None, digits: int = 4) -> str:
    if interval is None:
        return _num(value, digits)
    return f"{_num(value, digits)} [{_num(interval.low, digits)}, {_num(interval.high, digits)}]"


def _log2_ci(fit) -> str:
    interval = fit.ci.get("critical_batch_size")
    text = f"{fit.log2:.2f}"
    if interval is not None and interval.low > 0:
        text += f" [{math.log2(interval.low):.2f}, {math.log2(interval.high):.2f}]"
    return text


def _pow2_axis(ax, values, axis: str = "x") -> None:
    lo = math.floor(math.log2(min(values)))
    hi = math.ceil(math.log2(max(values)))
    step = max(1, math.ceil((hi - lo + 1) / 9))
    ticks = [2.0**k for k in range(lo, hi + 1, step)]
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(FixedLocator(ticks))
    target.set_major_formatter(
        FuncFormatter(lambda v, _: f"$2^{{{int(round(math.log2(v)))}}}$" if v > 0 else "")
    )
    target.set_minor_locator(NullLocator())


def _label_2_and_5(value: float, _pos=None) -> str:
    """Minor-tick labels of a log axis at 2x and 5x powers of ten only (keeps the axis uncluttered)."""
    if value <= 0:
        return ""
    exponent = math.floor(math.log10(value) + 1e-9)
    mantissa = round(value / 10**exponent, 6)
    return f"{mantissa:g}e{exponent}" if mantissa in (2, 5) else ""


# --------------------------------------------------------------------------
# Plots


def _plot_steps(analysis: SweepAnalysis, path: Path) -> Path:
    """Steps to target relative to the reference batch against batch size (log-log)."""
    fig, axes = plots.panels(len(analysis.curves))
    for ax, ca in zip(axes, analysis.curves):
        sizes = np.array(ca.curve.batch_sizes(), dtype=float)
        steps = np.array(ca.curve.steps(), dtype=float)
        fit = ca.fit
        # Censored runs count too: a curve may hold nothing else.
        all_b = np.concatenate([sizes, [float(r.batch_size) for r in ca.curve.censored]])
        if fit is not None:
            ref_b, ref_y = fit.b_opt, float(fit.predict(fit.b_opt))
        elif sizes.size:
            ref_b, ref_y = sizes[0], steps[0]
        else:
            ref_b, ref_y = all_b[0], float(ca.curve.censored[0].steps or 1)
        lo_b = min(all_b.min(), ref_b)
        hi_b = max(
            all_b.max(),
            fit.critical_batch_size * 1.5
            if fit is not None and math.isfinite(fit.critical_batch_size)
            else 0,
        )
        grid_b = np.geomspace(lo_b / 1.3, hi_b * 1.3, 200)
        ax.plot(grid_b, ref_b / grid_b, "--", color="0.45", lw=1.2, label="linear scaling")
        seed_b = [r.batch_size for b in sizes for r in ca.curve.seeds.get(int(b), [])]
        seed_y = [r.steps_to_target for b in sizes for r in ca.curve.seeds.get(int(b), [])]
        if len(seed_b) > len(sizes):
            ax.scatter(
                seed_b, np.array(seed_y) / ref_y, s=10, color="0.55", zorder=2, label="seeds"
            )
        ax.scatter(
            sizes,
            steps / ref_y,
            color="C0",
            zorder=3,
            label="measured (seed mean)" if len(seed_b) > len(sizes) else "measured",
        )
        if ca.curve.censored:
            ax.scatter(
                [r.batch_size for r in ca.curve.censored],
                [(r.steps or 0) / ref_y for r in ca.curve.censored],
                marker="^",
                s=48,
                facecolors="white",
                edgecolors="C3",
                zorder=3,
                label="censored (> steps run)",
            )
        if fit is not None:
            ax.plot(
                grid_b,
                (1 + fit.overhead) * ref_b / grid_b,
                ":",
                color="0.6",
                lw=1.0,
                label=f"linear scaling +{fit.overhead:.0%}",
            )
            ax.plot(
                grid_b,
                fit.predict(grid_b) / ref_y,
                "-",
                color="C1",
                lw=1.6,
                label=f"fit $a + b/B^{{{fit.alpha:.2f}}}$",
            )
            b_star = fit.critical_batch_size
            interval = fit.ci.get("critical_batch_size")
            if interval is not None:
                ax.axvspan(interval.low, interval.high, color="C3", alpha=0.12, lw=0)
            if math.isfinite(b_star):
                ax.axvline(b_star, color="C3", lw=1.2)
                ax.scatter(
                    [b_star],
                    [fit.predict(b_star) / ref_y],
                    marker="*",
                    s=140,
                    color="C3",
                    zorder=4,
                    label=f"$B^* = 2^{{{fit.log2:.2f}}}$",
                )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        _pow2_axis(ax, grid_b)
        plots.label(
            ax,
            "batch size B (sequences)",
            f"steps to target / steps at B={ref_b:g}",
            ca.curve.label,
        )
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    return plots.save(fig, path)


def _plot_loss(analysis: SweepAnalysis, path: Path) -> Path:
    """EWA eval loss against step, one line per batch size (best runs)."""
    fig, axes = plots.panels(len(analysis.curves))
    for ax, ca in zip(axes, analysis.curves):
        sizes = ca.curve.batch_sizes()
        colors = plots.sequential_colors(len(sizes))
        for i, b in enumerate(sizes):
            run = ca.curve.best[b]
            recs = sorted(
                (r for r in read_metrics(run.path) if r.get("ewa_eval_loss") is not None),
                key=lambda r: r["step"],
            )
            if not recs:
                continue
            color = colors[i]
            steps = np.array([r["step"] for r in recs], dtype=float)
            loss = np.array([r["ewa_eval_loss"] for r in recs], dtype=float)
            keep = steps > 0
            ax.plot(steps[keep], loss[keep], "-", color=color, lw=1.2, label=f"B={b}")
            if run.steps_to_target and ca.curve.target_loss is not None:
                ax.scatter(
                    [run.steps_to_target], [ca.curve.target_loss], color=color, s=18, zorder=3
                )
        if ca.curve.target_loss is not None:
            ax.axhline(ca.curve.target_loss, color="C3", ls="--", lw=1.0, label="target")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
        plots.label(ax, "optimizer step", "EWA eval loss (nats, log scale)", ca.curve.label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, ncol=2, loc="upper right")
    return plots.save(fig, path)


def _plot_tradeoff(analysis: SweepAnalysis, path: Path) -> Path:
    """Examples against steps to target with the fitted hyperbola and its asymptotes."""
    fitted = [c for c in analysis.curves if c.tradeoff is not None]
    fig, axes = plots.panels(len(fitted))
    for ax, ca in zip(axes, fitted):
        tr = ca.tradeoff
        s_arr = np.array(ca.curve.steps(), dtype=float)
        e_arr = np.array(ca.curve.examples(), dtype=float)
        s_grid = np.geomspace(tr.s_min * 1.01, max(s_arr.max(), tr.s_min * 2) * 1.5, 300)
        ax.plot(
            s_grid,
            tr.examples_at_steps(s_grid),
            "-",
            color="C1",
            lw=1.6,
            label=r"$(S/S_{min}-1)(E/E_{min}-1)=1$",
        )
        ax.scatter(s_arr, e_arr, color="C0", zorder=3, label="measured")
        for s, e, b in zip(s_arr, e_arr, ca.curve.batch_sizes()):
            ax.annotate(
                str(b), (s, e), textcoords="offset points", xytext=(4, 3), fontsize=7, color="0.3"
            )
        ax.axvline(tr.s_min, color="0.5", ls="--", lw=1.0, label=f"$S_{{min}}$ = {_num(tr.s_min)}")
        ax.axhline(tr.e_min, color="0.5", ls=":", lw=1.0, label=f"$E_{{min}}$ = {_num(tr.e_min)}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(tr.e_min * 0.8, max(e_arr.max(), tr.e_min) * 2.5)
        ax.xaxis.set_minor_formatter(FuncFormatter(_label_2_and_5))
        ax.yaxis.set_minor_formatter(FuncFormatter(_label_2_and_5))
        plots.label(ax, "steps to target S (optimizer steps)", "examples to target E (sequences)")
        ax.set_title(
            f"{ca.curve.label}: $B_{{crit}} = E_{{min}}/S_{{min}}$ = {_num(tr.b_crit)}", fontsize=9
        )
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    return plots.save(fig, path)


def _plot_scaling(analysis: SweepAnalysis, variable: str, path: Path) -> Path:
    """Measured B* against N or D with the fitted law, its band, and forecasts."""
    law = analysis.scaling[variable]
    fig, (ax,) = plots.figure(size=(5.6, 4.2))
    x = np.array(law.x)
    y = np.array(law.critical_batch_sizes)
    x_fore = [x.max() * f for f in FORECAST_FACTORS]
    grid_x = np.geomspace(x.min() / 1.2, max(x_fore) * 1.2, 200)
    if law.samples is not None and len(law.samples):
        preds = law.samples[:, 2:3] + law.samples[:, 0:1] * grid_x[None, :] ** law.samples[:, 1:2]
        level = next(iter(law.ci.values())).level
        lo, hi = np.percentile(preds, [100 * (1 - level) / 2, 100 * (1 + level) / 2], axis=0)
        ax.fill_between(
            grid_x, lo, hi, color="C1", alpha=0.15, lw=0, label=f"{level:.0%} bootstrap band"
        )
    ax.plot(grid_x, law.predict(grid_x), "-", color="C1", lw=1.6, label=law.formula())
    yerr = None
    measured_ci = _measured_ci(analysis, variable)
    if measured_ci is not None:
        yerr = np.abs(np.array(measured_ci).T - y[None, :])
    ax.errorbar(x, y, yerr=yerr, fmt="o", color="C0", capsize=3, zorder=3, label="measured $B^*$")
    fore = law.forecast(x_fore)
    ax.errorbar(
        [f.x for f in fore],
        [f.critical_batch_size for f in fore],
        yerr=(
            None
            if fore[0].ci is None
            else np.abs(
                np.array([[f.ci.low, f.ci.high] for f in fore]).T
                - np.array([f.critical_batch_size for f in fore])[None, :]
            )
        ),
        fmt="s",
        mfc="white",
        color="C3",
        capsize=3,
        zorder=3,
        label="forecast",
    )
    ax.set_xscale("log")
    ax.set_yscale("log", base=2)
    _pow2_axis(
        ax,
        np.concatenate([y, [f.critical_batch_size for f in fore], law.predict(grid_x)]),
        axis="y",
    )
    plots.label(
        ax,
        f"{variable} ({_SIZE_UNITS.get(variable, '')})",
        "critical batch size $B^*$ (sequences)",
        f"Critical batch size against {variable}",
    )
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7)
    return plots.save(fig, path)


def _measured_ci(analysis: SweepAnalysis, variable: str):
    """(low, high) of each measured B* in the order the scaling law holds them, if all have one."""
    out = []
    for ca in analysis.scaling_sources.get(variable, []):
        interval = ca.fit.ci.get("critical_batch_size")
        if interval is None:
            return None
        out.append((interval.low, interval.high))
    return out or None


# --------------------------------------------------------------------------
# Tables and files


def _write_csv(analysis: SweepAnalysis, path: Path) -> None:
    rows = []
    excluded = {id(run): reason for run, reason in analysis.results.excluded}
    for run in analysis.results.runs:
        row = run.row()
        row["best"] = analysis.results.is_best(run)
        row["excluded_reason"] = excluded.get(id(run), "")
        rows.append(row)
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    path.write_text(text.getvalue(), encoding="utf-8")


def _fits_json(analysis: SweepAnalysis) -> dict:
    return {
        "sweep_dir": str(analysis.sweep_dir),
        "options": analysis.options,
        "curves": [
            {
                "model": ca.curve.model,
                "model_params": ca.curve.model_params,
                "ctx_len": ca.curve.ctx_len,
                "target_loss": ca.curve.target_loss,
                "ref_tokens": ca.curve.ref_tokens,
                "steps_curve": None if ca.fit is None else ca.fit.to_dict(),
                "tradeoff": None if ca.tradeoff is None else ca.tradeoff.to_dict(),
                "notes": ca.notes,
            }
            for ca in analysis.curves
        ],
        "scaling": {
            v: {
                **law.to_dict(),
                "forecasts": [
                    f.to_dict() for f in law.forecast([max(law.x) * k for k in FORECAST_FACTORS])
                ],
            }
            for v, law in analysis.scaling.items()
        },
        "notes": analysis.notes,
    }


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _markdown(analysis: SweepAnalysis, figures: dict) -> str:
    res = analysis.results
    opts = analysis.options
    n_reached = sum(r.reached_target for r in res.runs)
    measured = analysis.measured()
    alpha_text = (
        "fitted" if str(opts["alpha"]).lower() == "fit" else f"fixed at {float(opts['alpha']):g}"
    )
    out: list[str] = [f"# Critical batch size: `{analysis.sweep_dir.name}`", ""]
    out.append(
        f"Sweep folder `{analysis.sweep_dir}`: {len(res.runs)} runs, {n_reached} reached their target loss, "
        f"{len(analysis.curves)} setting(s), {len(measured)} with a measured critical batch size."
    )
    out += [
        "",
        "**Protocol.** Constant learning rate after warm-up with an exponential weight average (EWA) of the "
        "parameters; steps to target is where the EWA eval loss crosses the target, interpolated linearly in "
        "log-steps between the two evaluations that bracket it (the first evaluation at or below the target "
        "is listed beside it); the evaluation grid is geometric around each run's expected crossing (ratio "
        "1.05), so the bracket is equally narrow at every batch size. Y(B) at a batch size is the geometric "
        "mean over the seeds of its best hyper-parameter variant (fewest averaged steps). Runs that stopped "
        "before the target are censored: listed, plotted as lower bounds, not fitted. "
        f"Fit: log Y = log(a + b / B^α) by least squares in log space, α {alpha_text}. "
        f"B* is the batch size above B_opt = {float(opts['b_opt']):g} at which the examples to target exceed "
        f"linear scaling from B_opt by {opts['overhead']:.0%} "
        "(for α = 1, B* = (1+ρ)·B_opt + ρ·b/a). "
        + (
            f"Brackets: {opts['ci_level']:.0%} percentile bootstrap intervals "
            + (
                "(parametric: each point redrawn around the fit with the noise scale of log steps "
                "estimated from the residuals and the seed scatter, that scale itself redrawn from its "
                "chi-square distribution; "
                if opts.get("interval", "parametric") == "parametric"
                else "(seeds resampled within each batch size and variant; "
            )
            + f"{opts['bootstrap']} resamples, seed {opts['seed']})."
            if opts["bootstrap"]
            else "No bootstrap intervals (bootstrap = 0)."
        ),
        "",
    ]

    out += ["## Critical batch size", ""]
    if measured:
        rows = []
        for ca in analysis.curves:
            fit, tr = ca.fit, ca.tradeoff
            if fit is None:
                continue
            rows.append(
                [
                    ca.curve.model,
                    _num(ca.curve.n_millions),
                    _num(ca.curve.ctx_len),
                    _num(ca.curve.target_loss),
                    str(fit.n_points),
                    _with_ci(fit.a, fit.ci.get("a")),
                    _with_ci(fit.b, fit.ci.get("b")),
                    _with_ci(fit.alpha, fit.ci.get("alpha"), 3),
                    _with_ci(fit.critical_batch_size, fit.ci.get("critical_batch_size")),
                    _log2_ci(fit),
                    "–" if tr is None else _with_ci(tr.b_crit, tr.ci.get("b_crit")),
                    f"{fit.rms_log_residual:.3f}",
                ]
            )
        out.append(
            _md_table(
                [
                    "model",
                    "N (M)",
                    "ctx",
                    "target loss",
                    "batch sizes",
                    "a",
                    "b",
                    "α",
                    "B*",
                    "log2 B*",
                    "B_crit = E_min/S_min",
                    "rms log resid.",
                ],
                rows,
            )
        )
    else:
        out.append(
            "**No critical batch size could be measured.** "
            + " ".join(n for ca in analysis.curves for n in ca.notes)
            + (" No run reached its target loss." if not n_reached else "")
        )
    if "steps" in figures:
        out += [
            "",
            f"![steps to target against batch size]({FIG_STEPS})",
            "",
            "*Figure 1. Steps to reach the target loss relative to the fitted steps at B_opt, against batch size "
            "(log-log). Dashed: linear scaling (doubling B halves the steps); dotted: linear scaling plus the "
            "overhead; orange: the fit; red star and line: B*, shaded: its bootstrap interval.*",
        ]

    if analysis.scaling:
        out += ["", "## Scaling laws", ""]
        for variable, law in analysis.scaling.items():
            unit = _SIZE_UNITS.get(variable, "")
            out.append(
                f"- **B\\* = {_with_ci(law.c, law.ci.get('c'))} × {variable}^{_with_ci(law.beta, law.ci.get('beta'), 3)}**"
                + (f" + {_num(law.offset)}" if law.form == "offset" else "")
                + f" ({variable} in {unit}; {law.n_points} points; rms log residual "
                f"{float(np.sqrt(np.mean(np.square(law.residuals)))):.3f})"
            )
            fore = law.forecast([max(law.x) * k for k in FORECAST_FACTORS])
            out += [
                "",
                _md_table(
                    [f"{variable} ({unit})", "forecast B*", "log2 B*"],
                    [
                        [_num(f.x), _with_ci(f.critical_batch_size, f.ci), f"{f.log2:.2f}"]
                        for f in fore
                    ],
                ),
                "",
            ]
            key = f"scaling_{variable}"
            if key in figures:
                out += [
                    f"![B* against {variable}]({FIG_SCALING.format(variable)})",
                    "",
                    f"*Figure. Measured B\\* (with bootstrap intervals) against {variable}, the fitted law with its "
                    "bootstrap band, and forecasts at larger sizes (squares).*",
                    "",
                ]

    out += ["", "## Steps to target", ""]
    for ca in analysis.curves:
        fit = ca.fit
        out += [f"**{ca.curve.label}**", ""]
        rows = []
        for b, steps, examples, n_seeds in zip(
            ca.curve.batch_sizes(), ca.curve.steps(), ca.curve.examples(), ca.curve.n_seeds()
        ):
            run = ca.curve.best[b]
            predicted = float(fit.predict(b)) if fit is not None else None
            rows.append(
                [
                    str(b),
                    f"`{run.name}`",
                    str(n_seeds),
                    f"{steps:,.1f}",
                    _num(examples),
                    _bracket(run),
                    _num(predicted),
                    "–" if predicted is None else f"{100 * (steps / predicted - 1):+.1f}%",
                    _num(run.lr),
                    _num(run.b2),
                    _num(run.ewa_tau),
                ]
            )
        for run in ca.curve.censored:
            rows.append(
                [
                    str(run.batch_size),
                    f"`{run.name}`",
                    "1",
                    f"> {_num(run.steps)} (censored)",
                    "–",
                    "–",
                    "–" if fit is None else _num(float(fit.predict(run.batch_size))),
                    "–",
                    _num(run.lr),
                    _num(run.b2),
                    _num(run.ewa_tau),
                ]
            )
        out += [
            _md_table(
                [
                    "B",
                    "run shown",
                    "seeds",
                    "steps to target",
                    "examples",
                    "bracket: first eval (loss) ← before (loss)",
                    "fitted steps",
                    "residual",
                    "lr",
                    "β2",
                    "τ",
                ],
                rows,
            ),
            "",
        ]
        if ca.curve.censored:
            out += [
                "Censored runs (stopped before the target; a lower bound on steps, not fitted):",
                "",
            ]
            out += [
                f"- `{r.name}` (B={r.batch_size}): {censored_reason(r)}" for r in ca.curve.censored
            ]
            out.append("")
    if "loss" in figures:
        out += [
            f"![EWA eval loss]({FIG_LOSS})",
            "",
            "*Figure 2. EWA eval loss of one run at each batch size (the seed closest to the mean) against step; "
            "dashed: the target loss; dots: the interpolated crossing.*",
            "",
        ]

    if "tradeoff" in figures:
        out += [
            "## Steps–examples trade-off",
            "",
            "Fit of (S/S_min − 1)(E/E_min − 1) = 1 (McCandlish et al. 2018) to the best runs; "
            "B_crit = E_min / S_min.",
            "",
        ]
        rows = [
            [
                ca.curve.label,
                _with_ci(ca.tradeoff.s_min, ca.tradeoff.ci.get("s_min")),
                _with_ci(ca.tradeoff.e_min, ca.tradeoff.ci.get("e_min")),
                _with_ci(ca.tradeoff.b_crit, ca.tradeoff.ci.get("b_crit")),
            ]
            for ca in analysis.curves
            if ca.tradeoff is not None
        ]
        out += [
            _md_table(["setting", "S_min (steps)", "E_min (examples)", "B_crit"], rows),
            "",
            f"![steps-examples trade-off]({FIG_TRADEOFF})",
            "",
            "*Figure 3. Examples against steps to target; the curve is the fitted hyperbola, dashed and dotted "
            "lines its asymptotes S_min and E_min; labels are batch sizes.*",
            "",
        ]

    notes = list(analysis.notes) + [n for ca in analysis.curves for n in ca.notes]
    if notes:
        out += (
            ["## Warnings and excluded runs", ""] + [f"- {n}" for n in dict.fromkeys(notes)] + [""]
        )

    out += ["## Corpus", ""]
    identities = res.corpus_identities()
    if not identities:
        out.append("No corpus identity recorded in the runs' summary.json.")
    for i, ident in enumerate(identities):
        if len(identities) > 1:
            out.append(f"Identity {i + 1} of {len(identities)}:")
        out += ["```json", json.dumps(ident, indent=2, sort_keys=True), "```"]
    out += ["", "## Appendix: runs and their configs", ""]
    out.append(_runs_table(analysis))
    out += ["", _config_appendix(sorted(res.runs, key=_run_order)), ""]
    return "\n".join(out)


def _bracket(run) -> str:
    """The first evaluation at or below the target and the one before it, with their losses."""
    if run.bracket_after_step is None:
        return (
            "–" if run.first_eval_steps_to_target is None else f"{run.first_eval_steps_to_target:,}"
        )
    text = f"{run.bracket_after_step:,} ({run.bracket_after_loss:.4f})"
    if run.bracket_before_step is not None:
        text += f" ← {run.bracket_before_step:,} ({run.bracket_before_loss:.4f})"
    return text


def _run_order(run) -> tuple:
    return (run.model_params or 0, run.model_label, run.batch_size or 0, run.name)


def _runs_table(analysis: SweepAnalysis) -> str:
    res = analysis.results
    excluded = {id(run): reason for run, reason in res.excluded}
    rows = []
    for run in sorted(res.runs, key=_run_order):
        rows.append(
            [
                f"`{run.name}`",
                run.model_label,
                _num(run.batch_size),
                _num(run.lr),
                _num(run.b2),
                _num(run.ewa_tau),
                _num(run.warmup_tokens),
                _num(run.seed),
                run.status,
                "–" if run.steps_to_target is None else f"{run.steps_to_target:,.1f}",
                _num(run.steps),
                _num(run.wall_s),
                "yes"
                if res.is_best(run)
                else (
                    "censored" if run.censored else ("excluded" if id(run) in excluded else "no")
                ),
            ]
        )
    return _md_table(
        [
            "run",
            "model",
            "B",
            "lr",
            "β2",
            "τ",
            "warmup tokens",
            "seed",
            "status",
            "steps to target",
            "steps",
            "wall s",
            "in fit",
        ],
        rows,
    )


def _config_appendix(runs) -> str:
    """The configuration shared by all runs once, then the keys that differ, per run."""
    flat = {run.name: _flatten(run.config) for run in runs}
    keys = sorted({k for f in flat.values() for k in f})
    common, varying = {}, []
    for key in keys:
        values = [
            json.dumps(f[key], sort_keys=True, default=str) if key in f else None
            for f in flat.values()
        ]
        if len(set(values)) == 1 and values[0] is not None:
            common[key] = next(iter(flat.values()))[key]
        else:
            varying.append(key)
    parts = [
        "**Configuration shared by all runs** (resolved config.json):",
        "",
        "```json",
        json.dumps(common, indent=1, sort_keys=True, default=str),
        "```",
        "",
    ]
    if varying:
        parts += ["**Keys that differ between runs:**", ""]
        rows = [
            [f"`{name}`"] + [json.dumps(f.get(k), default=str) if k in f else "–" for k in varying]
            for name, f in flat.items()
        ]
        parts.append(_md_table(["run"] + [f"`{k}`" for k in varying], rows))
    return "\n".join(parts)
