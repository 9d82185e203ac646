"""A sweep's folder on disk: run status, the config check, the reference's target, plan files.

Each run has its own folder (docs/architecture.md, "A run's folder"); the sweep folder
adds ``base_config.json`` (the base run config, for the cluster commands) and
``sweep.json`` (settings, targets and every run's overrides).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import ml_collections

from bsjax.cbs.sweep.plan import Point, Setting, SweepPlan, base_with_target_section, run_overrides
from bsjax.cbs.sweep.spec import SweepConfigError

FINAL_STATUSES = ("target_reached", "max_steps", "max_tokens", "diverged")
SWEEP_FILE = "sweep.json"
BASE_CONFIG_FILE = "base_config.json"
# Keys of config.json that decide what a finished run measured; a finished run
# whose values differ from the point's is refused rather than silently reused.
CHECKED_SECTIONS = ("model", "data", "optim", "batch", "target")
CHECKED_TRAIN_KEYS = (
    "target_loss",
    "max_steps",
    "max_tokens",
    "eval_schedule",
    "expected_steps",
    "eval_every",
    "eval_batches",
    "eval_batch_size",
)


def read_json(path: Path) -> dict | None:
    """A JSON object from ``path``, or None when missing or unreadable (e.g. half written)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_status(run_dir: Path) -> str | None:
    """The status in ``run_dir/summary.json`` (None when there is none)."""
    summary = read_json(Path(run_dir) / "summary.json")
    return None if summary is None else summary.get("status")


def _normalised(value):
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def config_mismatches(run_dir: Path, expected: ml_collections.ConfigDict) -> list[str]:
    """Keys whose value in ``run_dir/config.json`` differs from ``expected`` (``[]`` if no config.json)."""
    stored = read_json(Path(run_dir) / "config.json")
    if stored is None:
        return []
    from bsjax.config import parse, to_dict

    want = to_dict(parse(expected))  # config.json holds the resolved config (preset sizes)
    pairs = [(s, stored.get(s), want.get(s)) for s in CHECKED_SECTIONS]
    pairs += [
        (f"train.{k}", stored.get("train", {}).get(k), want["train"].get(k))
        for k in CHECKED_TRAIN_KEYS
    ]
    pairs.append(("seed", stored.get("seed"), want.get("seed")))
    out = []
    for key, have, need in pairs:
        have, need = _normalised(have), _normalised(need)
        if isinstance(need, dict) and isinstance(have, dict):
            out += [
                f"{key}.{k}: {have.get(k)!r} != {need[k]!r}" for k in need if have.get(k) != need[k]
            ]
        elif have != need:
            out.append(f"{key}: {have!r} != {need!r}")
    return out


def reference_target(run_dir: Path | str, t_chin: int) -> float:
    """The EWA eval loss of the reference run in ``run_dir`` at step ``t_chin``: the target loss.

    Raises :class:`SweepConfigError` when the run has no finite evaluation at ``t_chin``.
    """
    from bsjax.cbs.results import read_metrics

    run_dir = Path(run_dir)
    at_step = [
        r
        for r in read_metrics(run_dir, ("eval",))
        if r.get("step") == t_chin and "ewa_eval_loss" in r
    ]
    value = at_step[-1]["ewa_eval_loss"] if at_step else None
    if value is None or not math.isfinite(value):
        summary = read_json(run_dir / "summary.json") or {}
        raise SweepConfigError(
            [
                f"reference run {run_dir.name} has no finite EWA eval loss at its Chinchilla step {t_chin} "
                f"(status {summary.get('status')!r}, {summary.get('steps')} steps); lower its LR (first value "
                "of sweep.lr) or give sweep.target_loss"
            ]
        )
    return float(value)


def complete_reference_summary(run_dir: Path, point: Point, target: float) -> dict:
    """Add the target and the reference's own steps to target to its summary.json (idempotent).

    The trainer's keys stay as they are (status ``max_steps``: it stopped at
    t_chin); the added ones make the reference the sweep's point at B_ref.
    """
    from bsjax.cbs.results import read_metrics
    from bsjax.train.eval_schedule import first_eval_at_target
    from bsjax.train.metrics import write_json_atomic

    path = Path(run_dir) / "summary.json"
    summary = read_json(path) or {}
    before = dict(summary)
    hit = first_eval_at_target(read_metrics(run_dir, ("eval",)), target)
    summary.update(
        role="reference",
        target_loss=target,
        target_from_step=point.setting.t_chin,
        steps_to_target=None if hit is None else int(hit["step"]),
        tokens_to_target=None if hit is None else int(hit["tokens"]),
        examples_to_target=None if hit is None else int(hit["examples"]),
        ref_tokens=point.setting.ref_tokens,
        ref_batch_size=point.setting.ref_batch_size,
        ref_steps=point.setting.t_chin,
    )
    if summary != before:  # a rerun leaves a completed summary (and its mtime) alone
        write_json_atomic(path, summary)
    return summary


def write_plan_files(plan: SweepPlan, workdir: Path, targets: Mapping[Setting, float]) -> None:
    """``base_config.json`` and ``sweep.json`` in ``workdir`` (created if needed)."""
    from bsjax.train.metrics import write_json_atomic

    workdir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(workdir / BASE_CONFIG_FILE, base_with_target_section(plan.base).to_dict())
    settings = [
        dict(
            label=s.label,
            model=dict(s.model),
            chinchilla_ratio=s.ratio,
            model_params=s.n_params,
            ctx_len=s.ctx_len,
            ref_batch_size=s.ref_batch_size,
            t_chin=s.t_chin,
            ref_tokens=s.ref_tokens,
            reference_run=plan.references[s].name if s in plan.references else None,
            target_loss=targets.get(s, plan.target_loss or None),
        )
        for s in plan.settings
    ]
    runs = [
        dict(name=p.name, **run_overrides(p, targets.get(p.setting, plan.target_loss)))
        for p in plan.runs()
    ]
    write_json_atomic(
        workdir / SWEEP_FILE, dict(settings=settings, runs=runs, analysis=plan.analysis)
    )
