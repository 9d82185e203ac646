"""A sweep as independent cluster jobs: one ``bsjax train`` command per run, and the target tool.

  python -m bsjax.cbs.sweep target-loss RUN_DIR --step N

prints the EWA eval loss of a finished reference run at its Chinchilla step:
the point commands read their target with it when their job starts.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from bsjax.cbs.sweep.plan import Point, SweepPlan, run_overrides
from bsjax.cbs.sweep.runs import (
    BASE_CONFIG_FILE,
    FINAL_STATUSES,
    reference_target,
    run_status,
    write_plan_files,
)
from bsjax.cbs.sweep.spec import SweepConfigError

# The run config file that turns base_config.json back into a ConfigDict for `bsjax train`.
POINT_CONFIG_FILE = Path(__file__).resolve().parents[3] / "configs" / "sweep_point.py"


def _flag_value(value) -> str:
    return (
        repr(value) if isinstance(value, float) else str(value)
    )  # repr: floats round-trip exactly


def train_argv(
    plan: SweepPlan, point: Point, workdir: Path, target_loss: float | None
) -> list[str]:
    """The ``bsjax train`` command of ``point``, with this environment's interpreter.

    ``target_loss`` None leaves ``train.target_loss`` out (the cluster commands
    append a shell expression that reads it when the job starts). The config
    the command parses equals ``run_config(plan, point, target_loss)``: floats
    are written with ``repr``, which round-trips exactly.
    """
    base_arg = f"{POINT_CONFIG_FILE}:{(workdir / BASE_CONFIG_FILE).resolve()}"
    words = [
        sys.executable,
        "-m",
        "bsjax",
        "train",
        f"--config={base_arg}",
        f"--workdir={(workdir / point.name).resolve()}",
    ]
    for key, value in run_overrides(point, target_loss or 0.0).items():
        if key != "train.target_loss" or target_loss is not None:
            words.append(f"--config.{key}={_flag_value(value)}")
    return words


def cluster_commands(plan: SweepPlan, workdir: Path) -> list[str]:
    """Shell lines that run the sweep as independent jobs: references first, then every point.

    Writes ``workdir/base_config.json``, which ``configs/sweep_point.py`` turns
    back into the base run config; each command adds its point's overrides.
    Every command calls this environment's interpreter (``sys.executable``).
    When the target comes from a reference run, the point commands read it
    with ``python -m bsjax.cbs.sweep target-loss`` once that run has finished.
    Runs already finished in ``workdir`` get a comment instead of a command.
    """
    write_plan_files(
        plan, workdir, {s: plan.target_loss for s in plan.settings if plan.target_loss}
    )
    lines = [
        f"# {len(plan.runs())} runs of sweep {workdir}; each line is one job, runnable from any folder."
    ]
    python = shlex.quote(sys.executable)

    def command(point: Point, target_expr: str | None = None) -> str:
        given = None if target_expr is not None else plan.target_loss
        if point.is_reference:
            given = 0.0
        line = " ".join(shlex.quote(w) for w in train_argv(plan, point, workdir, given))
        if target_expr is not None:  # double quotes: the shell expands $(...) when the job starts
            line += f' "--config.train.target_loss={target_expr}"'
        return line

    def finished(point: Point) -> bool:
        if run_status(workdir / point.name) in FINAL_STATUSES:
            lines.append(f"# finished already: {point.name}")
            return True
        return False

    if plan.references:
        lines.append(
            "# 1. The reference runs (one per setting); their EWA eval loss at t_chin is the target."
        )
        lines += [command(ref) for ref in plan.references.values() if not finished(ref)]
        lines.append(
            "# 2. The points, independent of each other, once their setting's reference has finished."
        )
    done = {ref.name for ref in plan.references.values()}
    for point in plan.points:
        if point.name in done or finished(point):
            continue
        done.add(point.name)
        ref = plan.references.get(point.setting)
        if ref is None:
            lines.append(command(point))
        else:
            ref_dir = shlex.quote(str((workdir / ref.name).resolve()))
            t_chin = point.setting.t_chin
            lines.append(
                command(
                    point,
                    f"$({python} -m bsjax.cbs.sweep target-loss {ref_dir} --step {t_chin})",
                )
            )
    lines.append(
        "# 3. When every job has finished, the same `bsjax sweep` command again completes the reference "
        "summaries and writes the report."
    )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """``target-loss RUN_DIR --step N``: print the reference's EWA eval loss at step N (exit 2 if absent)."""
    parser = argparse.ArgumentParser(prog="python -m bsjax.cbs.sweep")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("target-loss", help="the target loss a finished reference run sets")
    p.add_argument("run_dir")
    p.add_argument(
        "--step", type=int, required=True, help="the Chinchilla step t_chin of the reference run"
    )
    args = parser.parse_args(argv)
    try:
        print(repr(reference_target(args.run_dir, args.step)))
    except SweepConfigError as exc:
        print(f"bsjax sweep: {exc}", file=sys.stderr)
        return 2
    return 0
