"""Entry points of ``bsjax fit-cbs`` and ``bsjax analyze`` (wired into the ``bsjax`` command elsewhere).

Both take ``argv`` without the subcommand name and return an exit status:
0 on success, 2 for bad usage or input (with one message on stderr).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import math
import sys
import warnings
from pathlib import Path

from bsjax.cbs.fits import (
    DEFAULT_B_OPT,
    DEFAULT_OVERHEAD,
    INTERVALS,
    CbsFitWarning,
    CurveFitError,
    fit_steps_curve,
)

REQUIRED_COLUMNS = ("batch_size", "steps")


class CsvInputError(ValueError):
    """A CSV file that cannot be read as ``batch_size,steps`` rows."""


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _alpha(text: str) -> str | float:
    if text.strip().lower() == "fit":
        return "fit"
    try:
        value = _positive_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected 1 (or another positive number) or 'fit', got {text!r}"
        ) from None
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


@dataclasses.dataclass
class StepsTable:
    """The rows of a steps CSV: batch sizes, steps, and the optional seed and variant labels."""

    batch_sizes: list[float]
    steps: list[float]
    seeds: list[str] | None = None
    variants: list[str] | None = None


def read_steps_csv(
    path: Path | str, seeds_column: str | None = None, variant_column: str | None = None
) -> StepsTable:
    """Read ``batch_size`` and ``steps`` columns (a header row is required; other columns are ignored).

    ``seeds_column`` / ``variant_column`` name optional label columns (seeds
    are averaged, variants minimised by the fit). Raises :class:`CsvInputError`
    for a missing, empty, binary or non-CSV file, a missing column or a
    non-numeric cell.
    """
    path = Path(path)
    if not path.is_file():
        raise CsvInputError(f"CSV file {str(path)!r} does not exist")
    raw = path.read_bytes()
    if not raw.strip():
        raise CsvInputError(f"{path} is empty; expected a CSV with a header row batch_size,steps")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        raise CsvInputError(
            f"{path} is not a text CSV file (binary content); expected a header row batch_size,steps "
            "and one row per run"
        )
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
    except csv.Error as exc:
        raise CsvInputError(f"{path} is not a readable CSV file: {exc}") from None
    wanted = list(REQUIRED_COLUMNS) + [c for c in (seeds_column, variant_column) if c]
    missing = [c for c in wanted if c not in header]
    if missing:
        raise CsvInputError(
            f"{path}: missing column(s) {', '.join(missing)}; the header must name "
            f"{','.join(wanted)} (found: {','.join(header) or 'no header'})"
        )
    table = StepsTable([], [], [] if seeds_column else None, [] if variant_column else None)
    try:
        for line_no, row in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
            if not any(row.values()):
                continue
            try:
                table.batch_sizes.append(float(row["batch_size"]))
                table.steps.append(float(row["steps"]))
            except ValueError:
                raise CsvInputError(
                    f"{path} line {line_no}: batch_size={row['batch_size']!r}, steps={row['steps']!r} are not both numbers"
                ) from None
            if seeds_column:
                table.seeds.append(row[seeds_column])
            if variant_column:
                table.variants.append(row[variant_column])
    except csv.Error as exc:
        raise CsvInputError(f"{path} is not a readable CSV file: {exc}") from None
    return table


def _fit_cbs_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bsjax fit-cbs",
        description="Fit log Y = log(a + b / B^alpha) to steps to target Y at batch sizes B and print the "
        "critical batch size at the given overhead over linear scaling from B_opt.",
    )
    p.add_argument(
        "csv",
        metavar="FILE.csv",
        help="CSV with columns batch_size,steps, one row per run; see --seeds-column and "
        "--variant-column for repeated batch sizes",
    )
    p.add_argument(
        "--seeds-column",
        metavar="NAME",
        default=None,
        help="column labelling each run's seed: runs of one variant at a batch size that differ "
        "in it are averaged (mean of log steps). Without it and without --variant-column, "
        "repeated batch sizes count as hyper-parameter variants and keep the fewest steps",
    )
    p.add_argument(
        "--variant-column",
        metavar="NAME",
        default=None,
        help="column labelling each run's hyper-parameter variant (e.g. lr): at each batch size the "
        "variant with the fewest (seed-averaged) steps is kept, as in the paper",
    )
    p.add_argument(
        "--interval",
        choices=INTERVALS,
        default="parametric",
        help="bootstrap kind: 'parametric' (default; points redrawn around the fit with the noise "
        "scale from the residuals and seed scatter; calibrated with one run per size) or "
        "'seeds' (resample seeds within each batch size; too narrow with 2-3 seeds)",
    )
    p.add_argument(
        "--b-opt",
        type=_positive_float,
        default=DEFAULT_B_OPT,
        help="batch size in the linear-scaling regime (default 256)",
    )
    p.add_argument(
        "--overhead",
        type=_positive_float,
        default=DEFAULT_OVERHEAD,
        help="tolerated overhead rho over linear scaling (default 0.2)",
    )
    p.add_argument(
        "--alpha",
        type=_alpha,
        default=1.0,
        help="'1' (default) to hold alpha at 1, or 'fit' to fit it",
    )
    p.add_argument(
        "--bootstrap",
        type=_non_negative_int,
        default=0,
        help="bootstrap resamples for 95%% intervals (default 0: none)",
    )
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object")
    return p


def _parse(parser: argparse.ArgumentParser, argv: list[str]):
    try:
        return parser.parse_args(argv), None
    except SystemExit as exc:  # argparse has printed its message
        return None, int(exc.code or 0)


def fit_cbs_main(argv: list[str]) -> int:
    """``bsjax fit-cbs FILE.csv [--b-opt N] [--overhead R] [--alpha 1|fit] [--json] [--bootstrap N]``."""
    args, code = _parse(_fit_cbs_parser(), argv)
    if args is None:
        return code
    try:
        table = read_steps_csv(args.csv, args.seeds_column, args.variant_column)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CbsFitWarning)
            fit = fit_steps_curve(
                table.batch_sizes,
                table.steps,
                seeds=table.seeds,
                variants=table.variants,
                interval=args.interval,
                alpha=args.alpha,
                b_opt=args.b_opt,
                overhead=args.overhead,
                bootstrap=args.bootstrap,
                seed=args.seed,
            )
    except (CsvInputError, CurveFitError) as exc:
        print(f"bsjax fit-cbs: error: {exc}", file=sys.stderr)
        return 2
    for w in caught:
        print(f"bsjax fit-cbs: warning: {w.message}", file=sys.stderr)
    if args.json:
        print(fit.to_json())
        return 0
    rows = [
        ("a", f"{fit.a:.6g}"),
        ("b", f"{fit.b:.6g}"),
        ("alpha", f"{fit.alpha:.4g}" + (" (fitted)" if fit.alpha_fitted else " (fixed)")),
        ("b_opt", f"{fit.b_opt:.6g}"),
        ("overhead", f"{fit.overhead:.4g}"),
        ("critical_batch_size", f"{fit.critical_batch_size:.6g}"),
        ("log2_critical_batch_size", f"{fit.log2:.4f}"),
        ("points", f"{fit.n_points} batch sizes from {fit.n_runs} rows"),
        ("seeds_per_point", ",".join(str(n) for n in fit.seeds_per_point)),
        ("noise_sigma_log_steps", f"{fit.noise_sigma:.4g} ({fit.noise_dof} dof)"),
        ("rms_log_residual", f"{fit.rms_log_residual:.4g}"),
    ]
    for name, interval in fit.ci.items():
        rows.append(
            (
                f"{name}_ci{int(round(100 * interval.level))}",
                f"[{interval.low:.6g}, {interval.high:.6g}]",
            )
        )
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def _analyze_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bsjax analyze",
        description="Fit the critical batch size of every setting in a sweep folder and write DIR/report/. "
        "The options default to those the sweep recorded in DIR/sweep.json, so without options the report "
        "is the sweep's own; a folder without sweep.json is refused.",
    )
    p.add_argument(
        "dir",
        metavar="DIR",
        help="sweep folder written by bsjax sweep (sweep.json and one subfolder per run)",
    )
    p.add_argument(
        "--b-opt", type=_positive_float, default=None, help="default: the sweep's (else 256)"
    )
    p.add_argument(
        "--overhead", type=_positive_float, default=None, help="default: the sweep's (else 0.2)"
    )
    p.add_argument("--alpha", type=_alpha, default=None, help="default: the sweep's (else 1)")
    p.add_argument(
        "--bootstrap",
        type=_non_negative_int,
        default=None,
        help="bootstrap resamples (default: the sweep's, else 1000)",
    )
    p.add_argument("--seed", type=int, default=None, help="default: the sweep's (else 0)")
    p.add_argument("--interval", choices=INTERVALS, default=None, help="default: parametric")
    return p


def analyze_main(argv: list[str]) -> int:
    """``bsjax analyze DIR``: write DIR/report/report.md and print its path and the measured B*."""
    args, code = _parse(_analyze_parser(), argv)
    if args is None:
        return code
    from bsjax.cbs.analysis import analyze_sweep, sweep_options  # scipy only when needed
    from bsjax.cbs.report import render_report  # matplotlib only when needed
    from bsjax.cbs.results import SweepError

    try:
        options = sweep_options(args.dir)
        for key in ("b_opt", "overhead", "alpha", "bootstrap", "seed", "interval"):
            if getattr(args, key) is not None:
                options[key] = getattr(args, key)
        analysis = analyze_sweep(args.dir, **options)
    except (SweepError, CurveFitError) as exc:
        print(f"bsjax analyze: error: {exc}", file=sys.stderr)
        return 2
    path = render_report(analysis)
    for note in dict.fromkeys(analysis.notes + [n for c in analysis.curves for n in c.notes]):
        print(f"bsjax analyze: warning: {note}", file=sys.stderr)
    print(f"report: {path}")
    measured = analysis.measured()
    if not measured:
        print("B*: not measured (see the warnings above and the report)")
    for ca in measured:
        interval = ca.fit.ci.get("critical_batch_size")
        ci = f" [{interval.low:.5g}, {interval.high:.5g}]" if interval else ""
        print(f"B* ({ca.curve.label}): {ca.fit.critical_batch_size:.5g}{ci} = 2^{ca.fit.log2:.2f}")
    for _variable, law in analysis.scaling.items():
        print(f"scaling law: {law.formula()}")
    return 0


__all__ = ["fit_cbs_main", "analyze_main", "read_steps_csv", "CsvInputError", "StepsTable"]
