"""``bsjax theory SUBCOMMAND ...``: the theory lab from the command line; JSON on stdout.

Subcommands:
  cbs-exponent      B*(D) on the exact linear-regression risk against Corollary 6 (the exponent
                    for b > a; for b <= a a plateau test, the slope only a finite-size drift)
  optimal-schedule  FSL-optimal batch schedules under a data budget (continuous, bucketed, two-phase)
  switch-point      two-phase switch point P*(D) and the exponent of (D - P*)/D
  catch-up          loss gap after a small-to-large switch, catch-up time, its dependence on (s, beta)
  fsl               the FSL against the exact risk along training (constant and switched schedules)
  risk              the exact risk curve of one constant schedule

Output is one JSON object, indented by default; ``--json`` prints it on one line. Bad parameters
print one ``error:`` line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from bsjax.theory.errors import TheoryInputError


def main(argv: list[str] | None = None) -> int:
    """Run one theory subcommand; returns the exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on bad syntax
        return int(exc.code or 0)
    try:
        result = args.run(args)
    except TheoryInputError as exc:
        print(f"bsjax theory {args.command}: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(_jsonable(result), indent=None if args.json else 2))
    return 0


# ---------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bsjax theory",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")

    def add(name, fn, help_, description=None):
        sp = sub.add_parser(name, help=help_, description=description or help_)
        sp.add_argument("--json", action="store_true", help="print the JSON on one line")
        sp.set_defaults(run=fn)
        return sp

    c = add(
        "cbs-exponent",
        _cmd_cbs,
        "critical batch size against data size (Corollary 6)",
        "critical batch size against data size (Corollary 6): measured against predicted "
        "exponent for b > a; for b <= a a plateau test (is B* flat within a band over the D "
        "range?) with the slope shown as a finite-size drift. The output says the regime, the "
        "predicted behaviour and a verdict.",
    )
    _linreg_args(c, required=True)
    c.add_argument(
        "--data-sizes",
        type=_int_list,
        default=None,
        help="comma-separated data sizes (default 2^10,2^12,...,2^18)",
    )
    c.add_argument(
        "--risk-factor",
        type=float,
        default=2.0,
        help="B* is the largest batch with best risk <= factor * optimal risk (default 2)",
    )
    c.add_argument("--with-batches", action="store_true", help="include every batch's best risk")
    c.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    c.add_argument("--plot-dir", type=Path, default=None)

    o = add("optimal-schedule", _cmd_optimal, "FSL-optimal batch schedule under a data budget")
    _fsl_args(o)
    o.add_argument("--lr", type=float, default=0.1)
    o.add_argument("--data-size", type=_int, required=True)
    o.add_argument("--min-batch", type=_int, default=1)
    o.add_argument("--max-batch", type=_int, default=1024)
    o.add_argument(
        "--buckets",
        type=_int_list,
        default=None,
        help="comma-separated bucket sizes (default: powers of 2 from min to max batch)",
    )
    o.add_argument(
        "--batch2",
        type=_int,
        default=None,
        help="large batch of the two-phase comparison (default: max batch)",
    )
    o.add_argument("--plot-dir", type=Path, default=None)

    s = add("switch-point", _cmd_switch, "two-phase switch point P*(D) and its exponent")
    _fsl_args(s)
    s.add_argument("--lr", type=float, default=0.1)
    s.add_argument("--batch1", type=_int, default=1)
    s.add_argument("--batch2", type=_int, default=64)
    s.add_argument("--data-sizes", type=_int_list, default=[10**k for k in (8, 10, 12, 14)])
    s.add_argument("--plot-dir", type=Path, default=None)

    u = add("catch-up", _cmd_catch_up, "loss gap after a small-to-large batch switch")
    _fsl_args(u)
    u.add_argument(
        "--exact",
        action="store_true",
        help="use the exact linear-regression risk (needs --a/--b) instead of the FSL",
    )
    u.add_argument("--lr", type=float, default=0.1)
    u.add_argument("--batch-small", type=_int, default=1)
    u.add_argument("--batch-large", type=_int, default=16)
    u.add_argument("--switch-step", type=_int, default=100_000)
    u.add_argument(
        "--horizon", type=_int, default=None, help="steps after the switch (default: switch step)"
    )
    u.add_argument("--tolerance", type=float, default=0.05)
    u.add_argument(
        "--switch-steps",
        type=_int_list,
        default=None,
        help="several switch steps: also fit catch-up time against switch time",
    )
    u.add_argument("--plot-dir", type=Path, default=None)

    f = add("fsl", _cmd_fsl, "FSL against the exact risk along training")
    _linreg_args(f, required=True)
    f.add_argument("--lr", type=float, default=0.2)
    f.add_argument("--batch", type=_int, default=1)
    f.add_argument("--batch2", type=_int, default=16)
    f.add_argument("--steps", type=_int, default=20_000)
    f.add_argument("--switch-step", type=_int, default=None, help="default: 3/4 of --steps")
    f.add_argument("--num-records", type=_int, default=60)
    f.add_argument("--plot-dir", type=Path, default=None)

    r = add("risk", _cmd_risk, "exact risk curve of one constant schedule")
    _linreg_args(r, required=True)
    r.add_argument("--lr", type=float, required=True)
    r.add_argument("--batch", type=_int, required=True)
    g = r.add_mutually_exclusive_group(required=True)
    g.add_argument("--steps", type=_int)
    g.add_argument("--data-size", type=_int)
    r.add_argument("--average-from", type=_int, default=0)
    r.add_argument("--num-records", type=_int, default=50)
    r.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    return p


def _linreg_args(p, required: bool):
    p.add_argument("--a", type=float, required=required, help="capacity: lambda_i = i^-a (a > 1)")
    p.add_argument(
        "--b", type=float, required=required, help="source: lambda_i <v_i,w*>^2 = i^-b (b > 1)"
    )
    p.add_argument("--noise", type=float, default=1.0, help="label-noise variance sigma^2")
    p.add_argument(
        "--dim", type=_int, default=None, help="dimension (default depends on the command)"
    )


def _fsl_args(p):
    p.add_argument("--s", type=float, default=None, help="FSL source exponent s > 0")
    p.add_argument("--beta", type=float, default=None, help="FSL capacity exponent beta > 1")
    _linreg_args(p, required=False)


def _int(text: str) -> int:
    x = float(text)
    if not x.is_integer():
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    return int(x)


def _int_list(text: str) -> list[int]:
    return [_int(t) for t in text.split(",") if t.strip()]


def _fsl_from(args):
    from bsjax.theory.fsl import FSL
    from bsjax.theory.linreg import LinRegProblem

    by_fsl = args.s is not None or args.beta is not None
    by_lr = args.a is not None or args.b is not None
    if by_fsl == by_lr:
        raise TheoryInputError(
            "give either --s and --beta (an FSL) or --a and --b (matched to "
            "linear regression), not both and not neither"
        )
    if by_fsl:
        if args.s is None or args.beta is None:
            raise TheoryInputError("--s and --beta must be given together")
        return FSL(s=args.s, beta=args.beta, noise=args.noise), None
    if args.a is None or args.b is None:
        raise TheoryInputError("--a and --b must be given together")
    problem = LinRegProblem(a=args.a, b=args.b, noise=args.noise, dim=args.dim or 4096)
    return FSL.from_linreg(problem), problem


def _fsl_json(fsl) -> dict:
    return {
        "s": fsl.s,
        "beta": fsl.beta,
        "noise": fsl.noise,
        "signal_scale": fsl.signal_scale,
        "signal_offset": fsl.signal_offset,
        "kernel_scale": fsl.kernel_scale,
        "kernel_offset": fsl.kernel_offset,
        "task_class": fsl.task_class,
        "easy_if": "s >= 1 - 1/beta",
        "boundary_s": 1.0 - 1.0 / fsl.beta,
    }


# ---------------------------------------------------------------------------------------------
def _cmd_cbs(args):
    from bsjax.theory.cbs_scaling import cbs_scaling

    res = cbs_scaling(
        args.a,
        args.b,
        noise=args.noise,
        data_sizes=args.data_sizes,
        dim=args.dim,
        risk_factor=args.risk_factor,
        dtype=args.dtype,
    )
    out = res.to_json(with_batches=args.with_batches)
    out["formula"] = "B* ~ D^(1 - a / min(b, 2a + 1)) for b > a; B* = 1 for b <= a (Corollary 6)"
    if args.b <= args.a:
        out["critical_batch_size"] = 1
        out["risk_optimal_batches"] = [p.optimal_batch for p in res.points]
    out["fit_points"] = [
        {
            "log_data_size": math.log(p.data_size),
            "log_critical_batch_size": math.log(p.critical_batch_size),
        }
        for p in res.points
    ]
    if args.plot_dir:
        from bsjax.theory import plots

        out["plots"] = [str(plots.plot_cbs_scaling(res, args.plot_dir / "cbs_exponent.png"))]
    return out


def _cmd_optimal(args):
    from bsjax.theory.optimal import (
        optimal_bucket_schedule,
        optimal_continuous_schedule,
        optimal_switch,
    )
    from bsjax.theory.schedules import Schedule

    fsl, _ = _fsl_from(args)
    D = args.data_size
    if args.max_batch < args.min_batch:
        raise TheoryInputError(
            f"--max-batch must be >= --min-batch={args.min_batch}; got {args.max_batch}"
        )
    buckets = args.buckets or [
        2**k
        for k in range(int(math.log2(args.min_batch)), int(math.log2(args.max_batch)) + 1)
        if args.min_batch <= 2**k <= args.max_batch
    ]
    cont = optimal_continuous_schedule(
        fsl, lr=args.lr, data_size=D, min_batch=args.min_batch, max_batch=args.max_batch
    )
    buck = optimal_bucket_schedule(fsl, lr=args.lr, data_size=D, buckets=buckets)
    consts = [
        (b, fsl.final_loss(Schedule.constant(args.lr, b, examples=D))) for b in buckets if b <= D
    ]
    best_const = min(consts, key=lambda x: x[1])
    b2 = args.batch2 or max(buckets)
    two = (
        optimal_switch(fsl, lr=args.lr, batch1=min(buckets), batch2=b2, data_size=D)
        if b2 > min(buckets)
        else None
    )
    fr = [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99]
    idx = np.clip(np.searchsorted(cont.examples_N / D, fr), 0, len(cont.batch_N) - 1)
    out = {
        "fsl": _fsl_json(fsl),
        "task_class_predicted": fsl.task_class,
        "task_class_measured": cont.measured_class,
        "lr": args.lr,
        "data_size": D,
        "continuous": {
            "loss": cont.loss,
            "total_steps": cont.total_steps,
            "total_time": cont.total_time,
            "examples_used": cont.examples_used,
            "fraction_of_time_at_min_batch": cont.fraction_at_min,
            "batch_at_data_fraction": {str(f): float(cont.batch_N[i]) for f, i in zip(fr, idx)},
        },
        "buckets": buck.to_json(),
        "best_constant": {"batch": best_const[0], "loss": best_const[1]},
        "two_phase": None
        if two is None
        else {
            "batch1": min(buckets),
            "batch2": b2,
            "switch_examples": two.switch_examples,
            "remaining_fraction": two.remaining_fraction,
            "loss": two.loss,
            "loss_constant_small": two.loss_constant_small,
            "loss_constant_large": two.loss_constant_large,
        },
    }
    if args.plot_dir:
        from bsjax.theory import plots

        out["plots"] = [
            str(
                plots.plot_optimal_schedule(
                    cont, buck, args.plot_dir / "optimal_schedule.png", constant=best_const
                )
            )
        ]
    return out


def _cmd_switch(args):
    from bsjax.theory.optimal import switch_scaling

    fsl, _ = _fsl_from(args)
    res = switch_scaling(
        fsl, lr=args.lr, batch1=args.batch1, batch2=args.batch2, data_sizes=args.data_sizes
    )
    out = res.to_json()
    out["fsl"] = _fsl_json(fsl)
    out["formula"] = (
        "(D - P*)/D ~ D^-((1 - 1/beta - s)/(2 - 1/beta)) for hard tasks (docs/science.md section 4)"
    )
    D = np.array([p.data_size for p in res.points], float)
    f = np.array([p.remaining_fraction for p in res.points])
    out["local_exponents"] = (np.diff(np.log(f)) / np.diff(np.log(D))).tolist()
    if args.plot_dir:
        from bsjax.theory import plots

        out["plots"] = [str(plots.plot_switch_scaling(res, args.plot_dir / "switch_point.png"))]
    return out


def _cmd_catch_up(args):
    from bsjax.theory.catchup import catch_up, catch_up_scaling, exact_loss_fn

    fsl, problem = _fsl_from(args)
    if args.exact:
        if problem is None:
            raise TheoryInputError("--exact needs --a and --b (a linear-regression problem)")
        if args.dim is None:
            problem = type(problem)(a=problem.a, b=problem.b, noise=problem.noise, dim=1000)
        loss_fn = exact_loss_fn(problem)
    else:
        loss_fn = fsl
    cu = catch_up(
        loss_fn,
        lr=args.lr,
        batch_small=args.batch_small,
        batch_large=args.batch_large,
        switch_step=args.switch_step,
        horizon_steps=args.horizon,
        tolerance=args.tolerance,
    )
    out = {
        "model": "exact linear regression" if args.exact else "FSL",
        "fsl": _fsl_json(fsl),
        **cu.to_json(),
    }
    if args.exact:
        out["predicted_decay_exponent"] = -(1.0 - 1.0 / fsl.beta)
    runs = [cu]
    if args.switch_steps:
        if args.exact:
            raise TheoryInputError("--switch-steps works with the FSL only (drop --exact)")
        sc = catch_up_scaling(
            fsl,
            lr=args.lr,
            batch_small=args.batch_small,
            batch_large=args.batch_large,
            switch_steps=args.switch_steps,
            tolerance=args.tolerance,
        )
        out["scaling"] = sc.to_json()
        runs = list(sc.runs)
    if args.plot_dir:
        from bsjax.theory import plots

        out["plots"] = [str(plots.plot_catch_up(runs, args.plot_dir / "catch_up.png"))]
    return out


def _cmd_fsl(args):
    from bsjax.theory.fsl_check import compare_fsl_exact
    from bsjax.theory.linreg import LinRegProblem
    from bsjax.theory.schedules import Schedule, Segment

    problem = LinRegProblem(a=args.a, b=args.b, noise=args.noise, dim=args.dim or 2000)
    n = args.steps
    sw = args.switch_step if args.switch_step is not None else (3 * n) // 4
    if not 0 < sw < n:
        raise TheoryInputError(
            f"--switch-step must be between 1 and --steps - 1 = {n - 1}; got {sw}"
        )
    scheds = [
        Schedule.constant(args.lr, args.batch, steps=n),
        Schedule.constant(args.lr, args.batch2, steps=n),
        Schedule((Segment(sw, args.lr, args.batch), Segment(n - sw, args.lr, args.batch2))),
    ]
    names = [
        f"constant B={args.batch}",
        f"constant B={args.batch2}",
        f"switch {args.batch}->{args.batch2} at step {sw}",
    ]
    cmp = compare_fsl_exact(problem, scheds, names, num_records=args.num_records)
    out = {"a": args.a, "b": args.b, "dim": problem.dim, "lr": args.lr, **cmp.to_json()}
    if args.plot_dir:
        from bsjax.theory import plots

        out["plots"] = [str(plots.plot_fsl_ratio(cmp, args.plot_dir / "fsl_vs_exact.png"))]
    return out


def _cmd_risk(args):
    from bsjax.theory.linreg import LinRegProblem, risk_curves
    from bsjax.theory.schedules import Schedule

    problem = LinRegProblem(a=args.a, b=args.b, noise=args.noise, dim=args.dim or 1000)
    sched = Schedule.constant(args.lr, args.batch, steps=args.steps, examples=args.data_size)
    c = risk_curves(
        problem,
        sched,
        average_from=args.average_from,
        num_records=args.num_records,
        dtype=args.dtype,
    )
    return {
        "a": args.a,
        "b": args.b,
        "noise": args.noise,
        "dim": problem.dim,
        "lr": args.lr,
        "batch": args.batch,
        "steps": sched.num_steps,
        "examples": sched.num_examples,
        "record_steps": c.steps_R.tolist(),
        "last_iterate_risk": c.last_GR[0].tolist(),
        "averaged_risk": c.averaged_GR[0].tolist(),
        "final_averaged_risk": float(c.final_averaged_G[0]),
    }


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, (np.integer,)):
        return int(x)
    return x


if __name__ == "__main__":
    raise SystemExit(main())
