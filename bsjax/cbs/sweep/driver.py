"""Running a sweep: references, then their points, through an executor; then the report."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path

import ml_collections

from bsjax.cbs.sweep import executors as executors_lib
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
from bsjax.errors import EXIT_DIVERGED, EXIT_OK


@dataclasses.dataclass
class SweepOutcome:
    """What a sweep did: targets, runs trained, skipped and failed, the report and the measured B*."""

    workdir: Path
    targets: dict[str, float]  # setting label ("" for a single setting) -> target loss
    trained: list[str]
    skipped: list[str]
    report: Path | None  # None when a preemption stopped the sweep or no run finished
    critical_batch_sizes: dict[str, float]  # curve label -> B*
    wall_s: float
    failed: dict[str, str] = dataclasses.field(default_factory=dict)  # run -> its log path
    blocked: list[str] = dataclasses.field(default_factory=list)  # runs whose reference failed


def _print(line: str) -> None:
    print(line, flush=True)


@contextlib.contextmanager
def _absl_warnings_only():
    """Keep the progress lines readable: checkpointing and step-rate INFO lines
    (orbax) go through absl's logger, several per run; WARNING and above stay."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _stop_on_sigterm(executor, on_signal: Callable[[], None]):
    """SIGTERM of the sweep reaches its runs (each saves and ends 'preempted'); the sweep waits."""
    previous = None

    def handle(signum, frame):
        on_signal()
        executor.stop_all()

    try:
        previous = signal.signal(signal.SIGTERM, handle)
    except ValueError:  # not the main thread: no handler
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def run_sweep(
    config: ml_collections.ConfigDict, workdir: str | Path, *, out: Callable[[str], None] = _print
) -> SweepOutcome | list[str]:
    """Run (or resume) every run of a sweep config in ``workdir``, then write the report.

    The runs are launched by the executor of ``sweep.executor``
    (:mod:`bsjax.cbs.sweep.executors`): references first, each setting's points
    once its reference has set the target. Returns a :class:`SweepOutcome`;
    with ``sweep.print_commands`` it trains nothing and returns the cluster
    commands it printed. Raises :class:`SweepConfigError` for a bad config
    (before anything is written) and for a run folder that holds a run of
    another config.
    """
    with _absl_warnings_only():
        launch = executors_lib.read_launch_spec(config.sweep)
        num_devices = None
        if launch.executor == "local" and launch.parallel > 1:
            num_devices = executors_lib.local_slots(launch.parallel)[2]
        plan = plan_sweep(config, num_devices)
        workdir = Path(workdir).resolve()
        if plan.spec.print_commands:
            from bsjax.cbs.sweep.commands import cluster_commands

            commands = cluster_commands(plan, workdir)
            for line in commands:
                out(line)
            return commands
        return _Sweep(plan, launch, workdir, out).run()


class _Sweep:
    """One invocation: launches what is left, references before their points, and keeps the tallies."""

    def __init__(
        self,
        plan: SweepPlan,
        launch: executors_lib.LaunchSpec,
        workdir: Path,
        out: Callable[[str], None],
    ):
        self.plan, self.launch, self.workdir, self.out = plan, launch, workdir, out
        self.t0 = time.perf_counter()
        self.targets: dict[Setting, float] = {
            s: plan.target_loss for s in plan.settings if plan.target_loss
        }
        self.trained: list[str] = []
        self.skipped: list[str] = []
        self.failed: dict[str, str] = {}
        self.blocked: list[str] = []
        self.preempted = False
        runs = plan.runs()
        to_train = sum(run_status(workdir / p.name) not in FINAL_STATUSES for p in runs)
        self.executor = executors_lib.make_executor(launch, workdir, max(1, to_train))
        self.progress = Progress(len(runs), to_train, out, self.executor.slots)
        self._started: dict[str, float] = {}

    # ------------------------------------------------------------ bookkeeping
    def _target_of(self, point: Point) -> float:
        return 0.0 if point.is_reference else self.targets[point.setting]

    def _check_folder(self, point: Point) -> None:
        run_dir = self.workdir / point.name
        mismatched = config_mismatches(
            run_dir, run_config(self.plan, point, self._target_of(point))
        )
        if mismatched:
            raise SweepConfigError(
                [
                    f"run folder {run_dir} holds a run of another config ({'; '.join(mismatched[:4])}); "
                    "use a fresh --workdir or remove that folder"
                ]
            )

    def _set_target(self, setting: Setting, ref: Point) -> None:
        label = f" ({setting.label})" if setting.label else ""
        self.targets[setting] = reference_target(self.workdir / ref.name, setting.t_chin)
        complete_reference_summary(self.workdir / ref.name, ref, self.targets[setting])
        write_plan_files(self.plan, self.workdir, self.targets)
        self.out(
            f"target loss{label}: {self.targets[setting]:.6g} "
            f"(EWA eval loss of {ref.name} at step {setting.t_chin})"
        )

    def _skip_if_done(self, point: Point) -> bool:
        """True when ``point`` needs no launch: finished, or failed before and not retried."""
        self._check_folder(point)  # a finished run of another config is refused, not reused
        run_dir = self.workdir / point.name
        status = run_status(run_dir)
        if status in FINAL_STATUSES:
            summary = read_json(run_dir / "summary.json") or {}
            stt = summary.get("steps_to_target")
            self.progress.skipped(
                point.name, f"finished ({status}" + (f", {stt} steps to target)" if stt else ")")
            )
            self.skipped.append(point.name)
            return True
        failure = executors_lib.read_failure(self.workdir, point.name)
        if failure is None:
            return False
        if self.launch.retry_failed:
            executors_lib.failure_path(self.workdir, point.name).unlink()
            return False
        self.progress.skipped(
            point.name,
            f"failed before (exit {failure.get('returncode')}, log {failure.get('log')}); "
            "--config.sweep.retry_failed=True retries it",
        )
        self.failed[point.name] = str(failure.get("log"))
        return True

    def _launch(self, executor, point: Point) -> None:
        from bsjax.cbs.sweep.commands import train_argv

        self._check_folder(point)
        run_dir = self.workdir / point.name
        status = run_status(run_dir)
        resuming = (run_dir / "checkpoints").exists() or status is not None
        target = self._target_of(point)
        what = (
            f"reference, B={point.batch_size}, to the Chinchilla step {point.max_steps}"
            if point.is_reference
            else f"B={point.batch_size}, target {target:.5g}, expected {point.expected_steps} steps, "
            f"gives up at {point.max_steps}"
        )
        log = executors_lib.log_path(self.workdir, point.name)
        log.parent.mkdir(parents=True, exist_ok=True)
        self._started[point.name] = self.progress.started(
            point.name, what + (", resuming" if resuming else "")
        )
        argv = train_argv(self.plan, point, self.workdir, target)
        executor.start(executors_lib.Launch(point.name, argv, log))

    def _ended(self, point: Point, launch: executors_lib.Launch, returncode: int) -> bool:
        """Book a run that ended; True when it finished (a final status)."""
        run_dir = self.workdir / point.name
        summary = read_json(run_dir / "summary.json") or {}
        status = summary.get("status")
        if status == "preempted":
            self.preempted = True
            self.progress.finished(point.name, summary, self._started[point.name])
            return False
        if returncode in (EXIT_OK, EXIT_DIVERGED) and status in FINAL_STATUSES:
            self.trained.append(point.name)
            self.progress.finished(point.name, summary, self._started[point.name])
            return True
        executors_lib.record_failure(self.workdir, launch, returncode, status)
        self.failed[point.name] = str(launch.log_path)
        self.progress.failed(
            point.name, f"exit {returncode}, status {status!r}, log {launch.log_path}"
        )
        return False

    # ------------------------------------------------------------------- run
    def run(self) -> SweepOutcome:
        plan = self.plan
        write_plan_files(plan, self.workdir, self.targets)
        sizes = sorted({p.batch_size for p in plan.points})
        executor = self.executor
        self.out(
            f"sweep {self.workdir}: {len(plan.runs())} runs over batch sizes {sizes}, "
            f"{self.progress.to_train} to train ({executor.describe()})"
        )
        for setting, ref in plan.references.items():
            label = f" ({setting.label})" if setting.label else ""
            self.out(
                f"reference{label}: B={ref.batch_size}, N={setting.n_params} non-embedding parameters, "
                f"t_chin={setting.t_chin} steps ({setting.ratio:g} tokens per parameter, {setting.ref_tokens} tokens)"
            )

        # Ready queue: every reference, and every point whose target is known.
        ref_names = {ref.name: s for s, ref in plan.references.items()}
        waiting: dict[Setting, list[Point]] = {}
        ready: list[Point] = []
        for setting, ref in plan.references.items():
            if self._skip_if_done(ref):
                if ref.name in self.failed:
                    continue
                self._set_target(setting, ref)
            else:
                ready.append(ref)
        for point in plan.runs():
            if point.name in ref_names:
                continue
            if point.setting in self.targets:
                ready.append(point)
            else:
                waiting.setdefault(point.setting, []).append(point)
        for setting, ref in plan.references.items():  # a failed reference blocks its points
            if ref.name in self.failed:
                self._block(waiting.pop(setting, []), ref)

        queue = []
        for point in ready:
            if point.name in ref_names or not self._skip_if_done(point):
                queue.append(point)
        by_name = {p.name: p for p in plan.runs()}
        try:
            with _stop_on_sigterm(executor, self._preempt):
                while queue or executor.running():
                    while queue and executor.free() > 0 and not self.preempted:
                        self._launch(executor, queue.pop(0))
                    if not executor.running():
                        break
                    for launch, rc in executor.wait():
                        point = by_name[launch.name]
                        finished = self._ended(point, launch, rc)
                        setting = ref_names.get(point.name)
                        if setting is None:
                            continue
                        if finished:
                            self._set_target(setting, point)
                            queue += [
                                p for p in waiting.pop(setting, []) if not self._skip_if_done(p)
                            ]
                        elif not self.preempted:
                            self._block(waiting.pop(setting, []), point)
        except BaseException:
            executor.stop_all()  # the runs save and stop; a rerun resumes them
            while executor.running():
                executor.wait()
            raise
        if self.preempted:
            return self._outcome(None, {}, preempted=True)
        if self.failed or self.blocked:
            finished = [
                p for p in plan.runs() if run_status(self.workdir / p.name) in FINAL_STATUSES
            ]
            if not finished:
                self.out("report: not written (no run of the sweep has finished)")
                return self._outcome(None, {})
        report, b_star = _report(self.workdir, self.out)
        return self._outcome(report, b_star)

    def _preempt(self) -> None:
        self.preempted = True

    def _block(self, points: list[Point], ref: Point) -> None:
        for point in points:
            self.blocked.append(point.name)
            self.progress.skipped(point.name, f"waits for its reference {ref.name}, which failed")

    def _outcome(self, report, b_star, preempted=False) -> SweepOutcome:
        wall = time.perf_counter() - self.t0
        if preempted:  # SIGTERM reached the runs in progress: they saved; the sweep stops too
            self.out(
                f"sweep preempted: the runs in progress saved a checkpoint; the same command resumes them "
                f"({self.workdir})"
            )
        else:
            self.out(
                f"sweep wall time: {duration(wall)} ({len(self.trained)} run(s) trained, "
                f"{len(self.skipped)} skipped, {len(self.failed)} failed)"
            )
        for name, log in self.failed.items():
            self.out(f"failed: {name} (log {log}); --config.sweep.retry_failed=True retries it")
        targets = {s.label: v for s, v in self.targets.items()}
        return SweepOutcome(
            self.workdir,
            targets,
            self.trained,
            self.skipped,
            report,
            b_star,
            round(wall, 3),
            dict(self.failed),
            list(self.blocked),
        )


def _report(workdir: Path, out: Callable[[str], None]) -> tuple[Path, dict[str, float]]:
    """Fit and write report/; print its path, the warnings and every measured B*."""
    from bsjax.cbs.analysis import analyze_sweep, sweep_options
    from bsjax.cbs.report import render_report

    # The options sweep.json recorded, as `bsjax analyze` reads them: the same report.
    analysis = analyze_sweep(workdir, **sweep_options(workdir))
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
