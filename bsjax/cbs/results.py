"""Read a sweep folder into rows, and pick the best run per (setting, batch size).

A sweep folder holds one subfolder per run; a subfolder with ``summary.json``
is a run (docs/architecture.md, "A run's folder"). From each run we read:

* ``config.json``: the resolved config (nested, or flat with dotted keys);
  we use ``model.preset``, ``model.ctx_len``, ``optim.lr``, ``optim.b2``,
  ``optim.ewa_tau``, ``optim.warmup_tokens``, ``batch.batch_size``, ``seed``,
  ``train.target_loss`` (when the summary has none) and, when present,
  ``target.ref_tokens`` (tokens of the reference run that set the target
  loss: the data size D of the scaling law in D).
* ``summary.json``: status, steps, examples, tokens, steps_to_target,
  tokens_to_target, examples_to_target, target_loss, batch_size,
  model_params (non-embedding count), ctx_len, final losses, wall_s,
  ``corpus``, and optionally ``ref_tokens``.
* ``metrics.jsonl`` (only when needed): eval lines, to recompute steps to
  target when the summary lacks it, and for loss curves.

Runs are grouped into curves by (model, ctx_len, target loss): one Y(B)
curve each. In a curve, each batch size keeps its best run (fewest steps to
target). Runs that never reached the target are left out, with a warning
naming them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from bsjax import storage
from bsjax.train.eval_schedule import steps_to_target as _steps_to_target

SUMMARY = "summary.json"
CONFIG = "config.json"
METRICS = "metrics.jsonl"
REPORT_DIR = "report"


class SweepError(ValueError):
    """A sweep folder that cannot be read (missing, or holding no runs)."""


class SweepWarning(UserWarning):
    """A run left out of the fits, or a file that could not be read."""


def config_get(config: Mapping, dotted: str, default=None):
    """``config['a']['b']`` for ``'a.b'``; also accepts a flat dict with dotted keys."""
    if dotted in config:
        return config[dotted]
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


@dataclasses.dataclass
class RunRecord:
    """One run of a sweep, as read from its folder."""

    name: str
    path: Path
    status: str
    batch_size: int | None
    model_preset: str | None
    model_params: int | None
    ctx_len: int | None
    lr: float | None
    b2: float | None
    ewa_tau: float | None
    warmup_tokens: int | None
    seed: int | None
    steps: int | None
    examples: int | None
    tokens: int | None
    steps_to_target: int | None
    tokens_to_target: int | None
    examples_at_target: int | None
    target_loss: float | None
    ref_tokens: float | None
    final: dict
    wall_s: float | None
    corpus: dict | None
    config: dict
    summary: dict
    steps_to_target_source: str = "summary"

    @property
    def reached_target(self) -> bool:
        return self.steps_to_target is not None

    @property
    def examples_to_target(self) -> int | float | None:
        """Examples consumed at the target: from the summary, else tokens / ctx_len, else steps * B."""
        if self.steps_to_target is None:
            return None
        if self.examples_at_target is not None:
            return self.examples_at_target
        if self.tokens_to_target is not None and self.ctx_len:
            q, r = divmod(self.tokens_to_target, self.ctx_len)
            return q if r == 0 else self.tokens_to_target / self.ctx_len
        if self.batch_size:
            return self.steps_to_target * self.batch_size
        return None

    @property
    def model_label(self) -> str:
        if self.model_preset:
            return str(self.model_preset)
        if self.model_params:
            return f"{self.model_params / 1e6:.3g}M"
        return "model"

    @property
    def n_millions(self) -> float | None:
        return None if not self.model_params else self.model_params / 1e6

    @property
    def curve_key(self) -> tuple:
        return (self.model_label, self.model_params, self.ctx_len, self.target_loss)

    def row(self) -> dict:
        """A flat dict for results.csv."""
        out = {
            "run": self.name,
            "model": self.model_label,
            "model_params": self.model_params,
            "ctx_len": self.ctx_len,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "b2": self.b2,
            "ewa_tau": self.ewa_tau,
            "warmup_tokens": self.warmup_tokens,
            "seed": self.seed,
            "status": self.status,
            "target_loss": self.target_loss,
            "steps_to_target": self.steps_to_target,
            "tokens_to_target": self.tokens_to_target,
            "examples_to_target": self.examples_to_target,
            "steps": self.steps,
            "examples": self.examples,
            "tokens": self.tokens,
            "wall_s": self.wall_s,
            "steps_to_target_source": self.steps_to_target_source,
        }
        for k, v in sorted(self.final.items()):
            out[k] = v
        return out


@dataclasses.dataclass
class Curve:
    """Best runs of one setting (model, ctx_len, target loss), keyed by batch size."""

    model: str
    model_params: int | None
    ctx_len: int | None
    target_loss: float | None
    ref_tokens: float | None
    best: dict[int, RunRecord]

    @property
    def label(self) -> str:
        parts = [self.model]
        if self.target_loss is not None:
            parts.append(f"target {self.target_loss:.4g}")
        return ", ".join(parts)

    @property
    def n_millions(self) -> float | None:
        return None if not self.model_params else self.model_params / 1e6

    def batch_sizes(self) -> list[int]:
        return sorted(self.best)

    def steps(self) -> list[int]:
        return [self.best[b].steps_to_target for b in self.batch_sizes()]

    def examples(self) -> list[float]:
        return [self.best[b].examples_to_target for b in self.batch_sizes()]


@dataclasses.dataclass
class SweepResults:
    """All runs of a sweep, the curves built from the best ones, and what was left out."""

    sweep_dir: Path
    runs: list[RunRecord]
    curves: list[Curve]
    excluded: list[tuple[RunRecord, str]]
    warnings: list[str]

    def corpus_identities(self) -> list[dict]:
        """Distinct corpus identities over all runs (ideally exactly one)."""
        seen: list[dict] = []
        for run in self.runs:
            if run.corpus is not None and run.corpus not in seen:
                seen.append(run.corpus)
        return seen

    def is_best(self, run: RunRecord) -> bool:
        return any(c.best.get(run.batch_size) is run for c in self.curves)


def _read_json(path: Path) -> dict:
    data = json.loads(storage.as_path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    return data


def read_metrics(run_dir: Path | str, kinds: tuple[str, ...] | None = ("eval",)) -> Iterator[dict]:
    """Lines of the live history of ``metrics.jsonl`` whose ``kind`` is in ``kinds`` (all
    when None): ``bsjax.train.metrics.read_run_metrics``, which drops the lines a resume
    superseded and skips unparseable ones (a half-written last line of a running job).
    """
    from bsjax.train.metrics import read_run_metrics

    yield from read_run_metrics(run_dir, kinds)


def _opt_int(v):
    return None if v is None or isinstance(v, bool) else int(v)


def _opt_float(v):
    return None if v is None or isinstance(v, bool) else float(v)


def load_run(run_dir: Path | str) -> RunRecord:
    """Read one run folder. Raises ``SweepError`` if its summary.json is missing or unreadable."""
    run_dir = storage.as_path(run_dir)  # a local folder or a gs://, s3:// URL
    try:
        summary = _read_json(run_dir / SUMMARY)
    except (OSError, ValueError) as exc:
        raise SweepError(f"run {run_dir.name}: cannot read {SUMMARY}: {exc}") from None
    try:
        config = _read_json(run_dir / CONFIG)
    except FileNotFoundError:
        config = {}
    except (OSError, ValueError) as exc:
        raise SweepError(f"run {run_dir.name}: cannot read {CONFIG}: {exc}") from None

    final: dict = {}
    for k, v in summary.items():
        if k.startswith("final"):
            if isinstance(v, Mapping):
                final.update(
                    {
                        f"final_{kk}" if not str(kk).startswith("final") else kk: vv
                        for kk, vv in v.items()
                    }
                )
            else:
                final[k] = v

    batch_size = summary.get("batch_size", config_get(config, "batch.batch_size"))
    target_loss = _opt_float(summary.get("target_loss"))
    if target_loss is None:
        # The trainer writes train.target_loss = 0 for "no target".
        target_loss = _opt_float(config_get(config, "train.target_loss")) or None
    stt = summary.get("steps_to_target")
    source = "summary"
    if stt is None and target_loss is not None and (run_dir / METRICS).exists():
        # Older or interrupted runs may lack it; the eval lines decide.
        try:
            stt = _steps_to_target(read_metrics(run_dir), target_loss)
        except ValueError:
            stt = None
        source = "metrics" if stt is not None else "summary"
    model_params = summary.get("model_params")
    if model_params is None:
        counts = config.get("model_params")
        model_params = counts.get("non_embedding") if isinstance(counts, Mapping) else counts
    ref_tokens = summary.get("ref_tokens", config_get(config, "target.ref_tokens"))
    return RunRecord(
        name=run_dir.name,
        path=run_dir,
        status=str(summary.get("status", "unknown")),
        batch_size=_opt_int(batch_size),
        model_preset=config_get(config, "model.preset"),
        model_params=_opt_int(model_params),
        ctx_len=_opt_int(summary.get("ctx_len", config_get(config, "model.ctx_len"))),
        lr=_opt_float(config_get(config, "optim.lr")),
        b2=_opt_float(config_get(config, "optim.b2")),
        ewa_tau=_opt_float(config_get(config, "optim.ewa_tau")),
        warmup_tokens=_opt_int(config_get(config, "optim.warmup_tokens")),
        seed=_opt_int(config_get(config, "seed")),
        steps=_opt_int(summary.get("steps")),
        examples=_opt_int(summary.get("examples")),
        tokens=_opt_int(summary.get("tokens")),
        steps_to_target=_opt_int(stt),
        tokens_to_target=_opt_int(summary.get("tokens_to_target")),
        examples_at_target=_opt_int(summary.get("examples_to_target")),
        target_loss=target_loss,
        ref_tokens=_opt_float(ref_tokens),
        final=final,
        wall_s=_opt_float(summary.get("wall_s")),
        corpus=summary.get("corpus"),
        config=config,
        summary=summary,
        steps_to_target_source=source,
    )


def _exclusion_reason(run: RunRecord) -> str | None:
    if run.batch_size is None or run.batch_size <= 0:
        return "no batch size in summary.json or config.json (batch.batch_size)"
    if run.steps_to_target is None:
        if run.status == "running":
            return "still running and has not reached the target yet"
        if run.status == "diverged":
            return "diverged before reaching the target"
        if run.target_loss is None:
            return "no target_loss in summary.json"
        return f"never reached the target loss (status {run.status}, {run.steps} steps)"
    if run.steps_to_target <= 0:
        return f"steps_to_target={run.steps_to_target} is not positive"
    return None


def load_sweep(sweep_dir: Path | str) -> SweepResults:
    """Read every run of a sweep folder and build one curve per setting.

    Raises ``SweepError`` if the folder does not exist or holds no run.
    Warnings (also emitted as :class:`SweepWarning`) name every run left
    out of the fits and why, and every run folder that could not be read.
    """
    sweep_dir = storage.as_path(sweep_dir)  # a local folder or a gs://, s3:// URL
    if not sweep_dir.is_dir():
        raise SweepError(f"sweep folder {str(sweep_dir)!r} does not exist or is not a folder")
    notes: list[str] = []
    runs: list[RunRecord] = []
    for sub in sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name != REPORT_DIR):
        if not (sub / SUMMARY).exists():
            continue
        try:
            runs.append(load_run(sub))
        except SweepError as exc:
            notes.append(f"skipped {exc}")
    if not runs:
        raise SweepError(
            f"no runs in {str(sweep_dir)!r}: a run is a subfolder holding {SUMMARY}"
            + (f" ({'; '.join(notes)})" if notes else "")
        )

    excluded: list[tuple[RunRecord, str]] = []
    groups: dict[tuple, dict[int, RunRecord]] = {}
    for run in runs:
        reason = _exclusion_reason(run)
        if reason is not None:
            excluded.append((run, reason))
            notes.append(f"run {run.name} (B={run.batch_size}) left out of the fits: {reason}")
            continue
        best = groups.setdefault(run.curve_key, {})
        current = best.get(run.batch_size)
        if current is None or (run.steps_to_target, run.tokens_to_target or 0) < (
            current.steps_to_target,
            current.tokens_to_target or 0,
        ):
            best[run.batch_size] = run

    curves = []
    for key, best in groups.items():
        model, params, ctx_len, target = key
        refs = {r.ref_tokens for r in best.values() if r.ref_tokens is not None}
        curves.append(
            Curve(model, params, ctx_len, target, refs.pop() if len(refs) == 1 else None, best)
        )
    curves.sort(key=lambda c: (c.model_params or 0, c.model, -(c.target_loss or math.inf)))

    identities = []
    for run in runs:
        if run.corpus is not None and run.corpus not in identities:
            identities.append(run.corpus)
    if len(identities) > 1:
        notes.append(
            f"runs disagree on the corpus identity ({len(identities)} distinct): compare with care"
        )
    for note in notes:
        warnings.warn(note, SweepWarning, stacklevel=2)
    return SweepResults(sweep_dir, runs, curves, excluded, notes)
