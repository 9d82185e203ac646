"""Launching a sweep's runs: parallel subprocesses here, or Slurm jobs through submitit.

Every run is one ``bsjax train`` command of the environment's own interpreter
(``sys.executable -m bsjax train --config=configs/sweep_point.py:BASE --workdir=RUN
--config.KEY=VALUE ...``, built by :mod:`bsjax.cbs.sweep.commands`), with its
output in ``WORKDIR/logs/RUN.log``. The keys of the sweep section that choose
how (checked by :func:`read_launch_spec`):

- ``executor``: ``"local"`` (default): subprocesses on this machine, up to
  ``parallel`` at a time; ``"slurm"``: one submitit job per run.
- ``parallel``: runs at once (local). 0 picks one per core on a CPU backend
  (a tiny run is bound by one Python thread dispatching steps) and one per
  device group on an accelerator (each run's mesh spans all the devices it
  sees: 1). On GPUs ``parallel=N`` splits the devices into N groups through
  ``CUDA_VISIBLE_DEVICES``, and the runs are validated for that many devices.
- ``retry_failed``: a run that failed (non-zero exit, or no final status)
  leaves ``logs/RUN.failed.json``; later sweeps report it with its log path
  and do not rerun it unless this is True.
- ``slurm``: ``cluster`` (``"slurm"``; submitit's ``"local"`` runs the same jobs
  as local processes, which the tests use), ``partition``, ``timeout_min``,
  ``gpus_per_node``, ``cpus_per_task``, ``mem_gb`` (0: the cluster's default),
  ``array_parallelism`` (most jobs queued at once, 0: no limit), ``setup``
  (shell lines run before each job, e.g. ``module load cuda``; ``;``-separated).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bsjax.cbs.sweep.spec import SLURM_DEFAULTS, SweepConfigError

EXECUTORS = ("local", "slurm")
SLURM_CLUSTERS = ("slurm", "local", "debug")
LOG_DIR = "logs"


@dataclasses.dataclass(frozen=True)
class LaunchSpec:
    """The checked launch keys of a sweep section."""

    executor: str = "local"
    parallel: int = 0
    retry_failed: bool = False
    slurm: Mapping[str, Any] = dataclasses.field(default_factory=lambda: dict(SLURM_DEFAULTS))


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def read_launch_spec(sweep) -> LaunchSpec:
    """The launch keys of ``sweep`` (a sweep section); raises :class:`SweepConfigError` naming each bad one."""
    problems = []
    get = sweep.get if hasattr(sweep, "get") else lambda k, d=None: getattr(sweep, k, d)
    executor = get("executor", "local")
    if executor not in EXECUTORS:
        problems.append(f"sweep.executor={executor!r} must be one of {', '.join(EXECUTORS)}")
    parallel = get("parallel", 0)
    if not (_is_int(parallel) and parallel >= 0):
        problems.append(
            f"sweep.parallel={parallel!r} must be an int >= 0 (0: one run per core or device group)"
        )
    retry = get("retry_failed", False)
    if not isinstance(retry, bool):
        problems.append(f"sweep.retry_failed={retry!r} must be True or False")
    given = dict(get("slurm", None) or {})
    for key in sorted(set(given) - set(SLURM_DEFAULTS)):
        problems.append(
            f"sweep.slurm.{key}: unknown key; known keys: {', '.join(sorted(SLURM_DEFAULTS))}"
        )
    slurm = {**SLURM_DEFAULTS, **{k: v for k, v in given.items() if k in SLURM_DEFAULTS}}
    if slurm["cluster"] not in SLURM_CLUSTERS:
        problems.append(
            f"sweep.slurm.cluster={slurm['cluster']!r} must be one of {', '.join(SLURM_CLUSTERS)}"
        )
    for key in ("timeout_min", "gpus_per_node", "cpus_per_task", "mem_gb", "array_parallelism"):
        value = slurm[key]
        low = 1 if key == "timeout_min" else 0
        if not (_is_int(value) and value >= low):
            problems.append(f"sweep.slurm.{key}={value!r} must be an int >= {low}")
    for key in ("partition", "setup"):
        if not isinstance(slurm[key], str):
            problems.append(f"sweep.slurm.{key}={slurm[key]!r} must be a string")
    if problems:
        raise SweepConfigError(problems)
    return LaunchSpec(executor, parallel, retry, slurm)


@dataclasses.dataclass
class Launch:
    """One run to start: its name, command line, log file and environment additions."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = dataclasses.field(default_factory=dict)


class PointJob:
    """Runs one command with its output in a log file; returns the exit code.

    A module-level class so that submitit can pickle it for a cluster job.
    """

    def __init__(self, argv: list[str], log_path: str, env: dict[str, str] | None = None):
        self.argv, self.log_path, self.env = list(argv), str(log_path), dict(env or {})

    def __call__(self) -> int:
        env = {**os.environ, **self.env}
        with open(self.log_path, "ab") as log:
            return subprocess.call(self.argv, stdout=log, stderr=subprocess.STDOUT, env=env)


def failure_path(workdir: Path, name: str) -> Path:
    return Path(workdir) / LOG_DIR / f"{name}.failed.json"


def log_path(workdir: Path, name: str) -> Path:
    return Path(workdir) / LOG_DIR / f"{name}.log"


def record_failure(workdir: Path, launch: Launch, returncode: int, status: str | None) -> Path:
    """Write ``logs/RUN.failed.json`` (exit code, status, log, command); returns its path."""
    path = failure_path(workdir, launch.name)
    record = dict(
        run=launch.name,
        returncode=returncode,
        status=status,
        log=str(launch.log_path),
        command=launch.argv,
        time=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return path


def read_failure(workdir: Path, name: str) -> dict | None:
    try:
        return json.loads(failure_path(workdir, name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class LocalExecutor:
    """Up to ``slots`` runs at once as subprocesses of this machine."""

    kind = "local"

    def __init__(self, slots: int, slot_env: list[dict[str, str]] | None = None):
        self.slots = max(1, slots)
        # Per-slot environment (e.g. CUDA_VISIBLE_DEVICES of a device group).
        self._slot_env = slot_env or [{} for _ in range(self.slots)]
        self._running: dict[int, tuple[Launch, subprocess.Popen, Any]] = {}

    def free(self) -> int:
        return self.slots - len(self._running)

    def running(self) -> int:
        return len(self._running)

    def start(self, launch: Launch) -> None:
        slot = next(i for i in range(self.slots) if i not in self._running)
        env = {**os.environ, **self._slot_env[slot], **launch.env}
        log = open(launch.log_path, "ab")
        proc = subprocess.Popen(launch.argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        self._running[slot] = (launch, proc, log)

    def wait(self, poll_s: float = 0.2) -> list[tuple[Launch, int]]:
        """Block until at least one run ends; return the ended ones with their exit codes."""
        while True:
            done = []
            for slot, (launch, proc, log) in list(self._running.items()):
                rc = proc.poll()
                if rc is not None:
                    log.close()
                    del self._running[slot]
                    done.append((launch, rc))
            if done or not self._running:
                return done
            time.sleep(poll_s)

    def stop_all(self) -> None:
        """SIGTERM every run (each saves a checkpoint and ends 'preempted')."""
        for _launch, proc, _log in self._running.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def describe(self) -> str:
        return f"local executor, up to {self.slots} run(s) at once"


class SlurmExecutor:
    """One submitit job per run; ``wait`` polls the jobs."""

    kind = "slurm"

    def __init__(self, workdir: Path, slurm: Mapping[str, Any]):
        import submitit

        self.folder = Path(workdir) / "slurm"
        self.cluster = slurm["cluster"]
        self._executor = submitit.AutoExecutor(folder=str(self.folder), cluster=self.cluster)
        params: dict[str, Any] = dict(timeout_min=slurm["timeout_min"], name="bsjax-sweep")
        for key in ("gpus_per_node", "cpus_per_task", "mem_gb"):
            if slurm[key]:
                params[key] = slurm[key]
        if self.cluster == "slurm":
            if slurm["partition"]:
                params["slurm_partition"] = slurm["partition"]
            if slurm["array_parallelism"]:
                params["slurm_array_parallelism"] = slurm["array_parallelism"]
            if slurm["setup"]:
                params["slurm_setup"] = [s.strip() for s in slurm["setup"].split(";") if s.strip()]
        self._executor.update_parameters(**params)
        self.slots = slurm["array_parallelism"] or 10**6  # queued at once; the cluster decides
        self._jobs: list[tuple[Launch, Any]] = []

    def free(self) -> int:
        return self.slots - len(self._jobs)

    def running(self) -> int:
        return len(self._jobs)

    def start(self, launch: Launch) -> None:
        job = self._executor.submit(PointJob(launch.argv, str(launch.log_path), launch.env))
        self._jobs.append((launch, job))

    def wait(self, poll_s: float = 2.0) -> list[tuple[Launch, int]]:
        while True:
            done, keep = [], []
            for launch, job in self._jobs:
                if job.done():
                    try:
                        rc = int(job.result())
                    except Exception as exc:  # the job died outside the command: say where
                        with open(launch.log_path, "a", encoding="utf-8") as log:
                            log.write(
                                f"\nsubmitit job {job.job_id} failed: {exc}\n"
                                f"submitit logs: {job.paths.stdout} {job.paths.stderr}\n"
                            )
                        rc = -1
                    done.append((launch, rc))
                else:
                    keep.append((launch, job))
            self._jobs = keep
            if done or not self._jobs:
                return done
            time.sleep(poll_s)

    def stop_all(self) -> None:
        """Cancel the jobs (Slurm sends SIGTERM: each run saves and ends 'preempted')."""
        for _launch, job in self._jobs:
            job.cancel(check=False)

    def describe(self) -> str:
        return f"slurm executor (submitit, cluster {self.cluster!r}, logs of submitit in {self.folder})"


def backend_devices() -> tuple[str, int]:
    """The default JAX backend and its device count in this process."""
    import jax

    return jax.default_backend(), jax.device_count()


def local_slots(parallel: int) -> tuple[int, list[dict[str, str]], int]:
    """(slots, per-slot environment, devices each run sees) of a local executor."""
    backend, devices = backend_devices()
    if backend == "cpu":
        return max(1, parallel or (os.cpu_count() or 1)), [], devices
    if not parallel or parallel == 1:
        return 1, [], devices
    if backend != "gpu" or devices % parallel:
        raise SweepConfigError(
            [
                f"sweep.parallel={parallel}: on {backend} with {devices} devices the runs can only be split "
                "into GPU groups of equal size (a divisor of the GPU count); use 0 or 1 here"
            ]
        )
    per = devices // parallel
    groups = [
        {"CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in range(g * per, (g + 1) * per))}
        for g in range(parallel)
    ]
    return parallel, groups, per


def make_executor(spec: LaunchSpec, workdir: Path, num_runs: int):
    """The executor a launch spec asks for (local slots sized to this machine)."""
    if spec.executor == "slurm":
        return SlurmExecutor(workdir, spec.slurm)
    slots, groups, _ = local_slots(spec.parallel)
    if not groups:  # CPU slots share the machine: no more than there are runs
        slots = max(1, min(slots, num_runs))
    return LocalExecutor(slots, groups or None)
