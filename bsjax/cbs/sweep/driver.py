"""Running a sweep here, one run after another: references, points, then the report."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path

import ml_collections

from bsjax.cbs.sweep.plan import Point, Setting, SweepPlan, plan_sweep, run_config
from bsjax.cbs.sweep.progress import Progress, duration
from bsjax.cbs.sweep.runs import (
    FINAL_STATUSES,
    complete_reference_summary,
    config_mismatches,
    read_json,
    reference_target,
    run_status,
    write_plan_files,
)
from bsjax.cbs.sweep.spec import SweepConfigError


@dataclasses.dataclass
class SweepOutcome:
    """What a sweep did: targets, runs trained and skipped, the report and the measured B*."""

    workdir: Path
    targets: dict[str, float]  # setting label ("" for a single setting) -> target loss
    trained: list[str]
    skipped: list[str]
    report: Path | None  # None when a preemption stopped the sweep
    critical_batch_sizes: dict[str, float]  # curve label -> B*
    wall_s: float


def _print(line: str) -> None:
    print(line, flush=True)


@contextlib.contextmanager
def _absl_warnings_only():
    """Keep the progress lines readable: checkpointing and step-rate INFO lines
    (orbax, clu) go through absl's logger, several per run; WARNING and above stay."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def run_sweep(
    config: ml_collections.ConfigDict, workdir: str | Path, *, out: Callable[[str], None] = _print
) -> SweepOutcome | list[str]:
    """Run (or resume) every run of a sweep config in ``workdir``, then write the report.

    Returns a :class:`SweepOutcome`; with ``sweep.print_commands`` it trains
    nothing and returns the cluster commands it printed. Raises
    :class:`SweepConfigError` for a bad config (before anything is written)
    and for a run folder that holds a run of another config.
    """
    with _absl_warnings_only():
        plan = plan_sweep(config)
        workdir = Path(workdir)
        if plan.spec.print_commands:
            from bsjax.cbs.sweep.commands import cluster_commands

            commands = cluster_commands(plan, workdir)
            for line in commands:
                out(line)
            return commands
        return _Sweep(plan, workdir, out).run()


class _Sweep:
    """One invocation: trains what is left, in order, and keeps the tallies."""

    def __init__(self, plan: SweepPlan, workdir: Path, out: Callable[[str], None]):
        self.plan, self.workdir, self.out = plan, workdir, out
        self.t0 = time.perf_counter()
        self.targets: dict[Setting, float] = {
            s: plan.target_loss for s in plan.settings if plan.target_loss
        }
        self.trained: list[str] = []
        self.skipped: list[str] = []
        runs = plan.runs()
        to_train = sum(run_status(workdir / p.name) not in FINAL_STATUSES for p in runs)
        self.progress = Progress(len(runs), to_train, out)

    def run(self) -> SweepOutcome:
        plan = self.plan
        write_plan_files(plan, self.workdir, self.targets)
        sizes = sorted({p.batch_size for p in plan.points})
        self.out(
            f"sweep {self.workdir}: {len(plan.runs())} runs over batch sizes {sizes}, "
            f"{self.progress.to_train} to train"
        )
        for setting, ref in plan.references.items():
            label = f" ({setting.label})" if setting.label else ""
            self.out(
                f"reference{label}: B={ref.batch_size}, N={setting.n_params} non-embedding parameters, "
                f"t_chin={setting.t_chin} steps ({setting.ratio:g} tokens per parameter, {setting.ref_tokens} tokens)"
            )
            if self._train_or_skip(ref, 0.0).get("status") == "preempted":
                return self._outcome(None, {}, preempted=True)
            self.targets[setting] = reference_target(self.workdir / ref.name, setting.t_chin)
            complete_reference_summary(self.workdir / ref.name, ref, self.targets[setting])
            self.out(
                f"target loss{label}: {self.targets[setting]:.6g} "
                f"(EWA eval loss of {ref.name} at step {setting.t_chin})"
            )
        write_plan_files(plan, self.workdir, self.targets)

        done = {ref.name for ref in plan.references.values()}
        for point in plan.points:
            if point.name in done:
                continue
            done.add(point.name)
            if self._train_or_skip(point, self.targets[point.setting]).get("status") == "preempted":
                return self._outcome(None, {}, preempted=True)
        report, b_star = _report(plan, self.workdir, self.out)
        return self._outcome(report, b_star)

    def _train_or_skip(self, point: Point, target: float) -> dict:
        from bsjax.train.loop import train

        run_dir = self.workdir / point.name
        config = run_config(self.plan, point, target)
        mismatched = config_mismatches(run_dir, config)
        if mismatched:
            raise SweepConfigError(
                [
                    f"run folder {run_dir} holds a run of another config ({'; '.join(mismatched[:4])}); "
                    "use a fresh --workdir or remove that folder"
                ]
            )
        status = run_status(run_dir)
        if status in FINAL_STATUSES:
            summary = read_json(run_dir / "summary.json") or {}
            stt = summary.get("steps_to_target")
            self.progress.skipped(
                point.name, f"finished ({status}" + (f", {stt} steps to target)" if stt else ")")
            )
            self.skipped.append(point.name)
            return summary
        resuming = (run_dir / "checkpoints").exists() or status is not None
        what = (
            f"reference, B={point.batch_size}, to the Chinchilla step {point.max_steps}"
            if point.is_reference
            else f"B={point.batch_size}, target {target:.5g}, expected {point.expected_steps} steps, "
            f"gives up at {point.max_steps}"
        )
        started = self.progress.started(point.name, what + (", resuming" if resuming else ""))
        summary = train(config, run_dir)
        self.trained.append(point.name)
        self.progress.finished(point.name, summary, started)
        return summary

    def _outcome(self, report, b_star, preempted=False) -> SweepOutcome:
        wall = time.perf_counter() - self.t0
        if preempted:  # SIGTERM reached the run in progress: it saved; the sweep stops too
            self.out(
                f"sweep preempted: the run in progress saved a checkpoint; the same command resumes it "
                f"({self.workdir})"
            )
        else:
            self.out(
                f"sweep wall time: {duration(wall)} ({len(self.trained)} run(s) trained, "
                f"{len(self.skipped)} skipped)"
            )
        targets = {s.label: v for s, v in self.targets.items()}
        return SweepOutcome(
            self.workdir, targets, self.trained, self.skipped, report, b_star, round(wall, 3)
        )


def _report(
    plan: SweepPlan, workdir: Path, out: Callable[[str], None]
) -> tuple[Path, dict[str, float]]:
    """Fit and write report/; print its path, the warnings and every measured B*."""
    from bsjax.cbs.analysis import analyze_sweep
    from bsjax.cbs.report import render_report

    a = plan.analysis
    alpha = str(a["alpha"]).strip().lower()
    analysis = analyze_sweep(
        workdir,
        b_opt=float(a["b_opt"]) or float(plan.spec.reference_batch_size),
        overhead=float(a["overhead"]),
        alpha="fit" if alpha == "fit" else float(alpha),
        bootstrap=int(a["bootstrap"]),
        seed=int(a["seed"]),
    )
    path = render_report(analysis)
    for note in dict.fromkeys(analysis.notes + [n for c in analysis.curves for n in c.notes]):
        out(f"warning: {note}")
    out(f"report: {path}")
    b_star = {}
    for ca in analysis.measured():
        fit = ca.fit
        interval = fit.ci.get("critical_batch_size")
        ci = f" [{interval.low:.4g}, {interval.high:.4g}]" if interval else ""
        b_star[ca.curve.label] = fit.critical_batch_size
        out(
            f"B* ({ca.curve.label}): {fit.critical_batch_size:.4g}{ci} = 2^{fit.log2:.2f} sequences"
        )
    if not b_star:
        out("B*: not measured (see the warnings above and the report)")
    return path, b_star
