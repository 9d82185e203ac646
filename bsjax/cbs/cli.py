"""Entry points of ``bsjax fit-cbs`` and ``bsjax analyze`` (wired into the ``bsjax`` command elsewhere).

Both take ``argv`` without the subcommand name and return an exit status:
0 on success, 2 for bad usage or input (with one message on stderr).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import warnings
from pathlib import Path

from bsjax.cbs.fits import (
    DEFAULT_B_OPT,
    DEFAULT_OVERHEAD,
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


def read_steps_csv(path: Path | str) -> tuple[list[float], list[float]]:
    """Read ``batch_size`` and ``steps`` columns (a header row is required; other columns are ignored)."""
    path = Path(path)
    if not path.is_file():
        raise CsvInputError(f"CSV file {str(path)!r} does not exist")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise CsvInputError(
                f"{path}: missing column(s) {', '.join(missing)}; the header must name "
                f"{','.join(REQUIRED_COLUMNS)} (found: {','.join(header) or 'no header'})"
            )
        sizes, steps = [], []
        for line_no, row in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            if not any(row.values()):
                continue
            try:
                sizes.append(float(row["batch_size"]))
                steps.append(float(row["steps"]))
            except ValueError:
                raise CsvInputError(
                    f"{path} line {line_no}: batch_size={row['batch_size']!r}, steps={row['steps']!r} are not both numbers"
                ) from None
    return sizes, steps


def _fit_cbs_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bsjax fit-cbs",
        description="Fit log Y = log(a + b / B^alpha) to steps to target Y at batch sizes B and print the "
        "critical batch size at the given overhead over linear scaling from B_opt.",
    )
    p.add_argument(
        "csv",
        metavar="FILE.csv",
        help="CSV with columns batch_size,steps (repeated sizes keep the fewest steps)",
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
        sizes, steps = read_steps_csv(args.csv)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CbsFitWarning)
            fit = fit_steps_curve(
                sizes,
                steps,
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
        description="Fit the critical batch size of every setting in a sweep folder and write DIR/report/.",
    )
    p.add_argument(
        "dir", metavar="DIR", help="sweep folder: one subfolder with summary.json per run"
    )
    p.add_argument("--b-opt", type=_positive_float, default=DEFAULT_B_OPT)
    p.add_argument("--overhead", type=_positive_float, default=DEFAULT_OVERHEAD)
    p.add_argument("--alpha", type=_alpha, default=1.0)
    p.add_argument(
        "--bootstrap",
        type=_non_negative_int,
        default=1000,
        help="bootstrap resamples (default 1000)",
    )
    p.add_argument("--seed", type=int, default=0)
    return p


def analyze_main(argv: list[str]) -> int:
    """``bsjax analyze DIR``: write DIR/report/report.md and print its path and the measured B*."""
    args, code = _parse(_analyze_parser(), argv)
    if args is None:
        return code
    from bsjax.cbs.analysis import analyze_sweep  # scipy only when needed
    from bsjax.cbs.report import render_report  # matplotlib only when needed
    from bsjax.cbs.results import SweepError

    try:
        analysis = analyze_sweep(
            args.dir,
            b_opt=args.b_opt,
            overhead=args.overhead,
            alpha=args.alpha,
            bootstrap=args.bootstrap,
            seed=args.seed,
        )
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


__all__ = ["fit_cbs_main", "analyze_main", "read_steps_csv", "CsvInputError"]
