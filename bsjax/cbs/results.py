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

Steps to target is interpolated between the two evaluations that bracket
the target (``bsjax.train.eval_schedule.target_crossing``) whenever the eval
lines are there; the first-evaluation step the trainer stopped on is kept
beside it, with the bracket.

Runs are grouped into curves by (model, ctx_len, target loss): one Y(B)
curve each. At each batch size, the runs of one hyper-parameter variant
(lr, beta2, tau, warm-up) that differ only in ``seed`` are seeds: their steps
are averaged (geometric mean); of the variants, the one with the fewest
averaged steps is the point of the curve. A finished run that stopped before
the target (step cap, token cap, divergence) is **censored**: not a point,
but listed with its status, steps and last loss, and shown in the fits and
plots as a lower bound. Runs still in progress are left out, with a warning.
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
from bsjax.train.eval_schedule import EvalScheduleError, target_crossing

SUMMARY = "summary.json"
CONFIG = "config.json"
METRICS = "metrics.jsonl"
REPORT_DIR = "report"
# Final statuses of a run that stopped without reaching its target: censored.
CENSORED_STATUSES = ("max_steps", "max_tokens", "diverged")


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
    steps_to_target: float | None
    tokens_to_target: float | None
    examples_at_target: float | None
    target_loss: float | None
    ref_tokens: float | None
    final: dict
    wall_s: float | None
    corpus: dict | None
    config: dict
    summary: dict
    steps_to_target_source: str = "summary"
    # The first evaluated step at or below the target (the trainer's stop), and the bracket.
    first_eval_steps_to_target: int | None = None
    bracket_before_step: int | None = None
    bracket_before_loss: float | None = None
    bracket_after_step: int | None = None
    bracket_after_loss: float | None = None
    last_eval_step: int | None = None
    last_eval_loss: float | None = None
    max_steps: int | None = None  # the step cap the run stops at (train.max_steps; 0: none)

    @property
    def reached_target(self) -> bool:
        return self.steps_to_target is not None

    @property
    def censored(self) -> bool:
        """Finished without reaching its target: steps to target is above ``steps``."""
        return (
            self.steps_to_target is None
            and self.target_loss is not None
            and self.status in CENSORED_STATUSES
        )

    @property
    def variant(self) -> str:
        """The hyper-parameters that make a run a variant (runs differing only in seed are seeds)."""
        return (
            f"lr={_g(self.lr)},b2={_g(self.b2)},tau={_g(self.ewa_tau)},wu={_g(self.warmup_tokens)}"
        )

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
            "variant": self.variant,
            "steps_to_target": self.steps_to_target,
            "tokens_to_target": self.tokens_to_target,
            "examples_to_target": self.examples_to_target,
            "steps_to_target_first_eval": self.first_eval_steps_to_target,
            "bracket_before_step": self.bracket_before_step,
            "bracket_before_loss": self.bracket_before_loss,
            "bracket_after_step": self.bracket_after_step,
            "bracket_after_loss": self.bracket_after_loss,
            "censored": self.censored,
            "last_eval_step": self.last_eval_step,
            "last_eval_loss": self.last_eval_loss,
            "max_steps": self.max_steps,
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
    """The points of one setting (model, ctx_len, target loss), keyed by batch size.

    ``seeds[B]`` are the runs of the best variant at B (its seeds), ``best[B]``
    the one of them closest to their average (the run the loss plot shows),
    ``runs[B]`` every run at target at B (all variants), and ``censored`` the
    runs that stopped before the target.
    """

    model: str
    model_params: int | None
    ctx_len: int | None
    target_loss: float | None
    ref_tokens: float | None
    best: dict[int, RunRecord]
    seeds: dict[int, list[RunRecord]] = dataclasses.field(default_factory=dict)
    runs: dict[int, list[RunRecord]] = dataclasses.field(default_factory=dict)
    censored: list[RunRecord] = dataclasses.field(default_factory=list)

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

    def _seeds(self, b: int) -> list[RunRecord]:
        return self.seeds.get(b) or [self.best[b]]

    def steps(self) -> list[float]:
        """Steps to target per batch size: the geometric mean over the best variant's seeds."""
        return [
            _geometric_mean([r.steps_to_target for r in self._seeds(b)]) for b in self.batch_sizes()
        ]

    def examples(self) -> list[float | None]:
        out = []
        for b in self.batch_sizes():
            values = [r.examples_to_target for r in self._seeds(b)]
            out.append(None if any(v is None for v in values) else _geometric_mean(values))
        return out

    def n_seeds(self) -> list[int]:
        return [len(self._seeds(b)) for b in self.batch_sizes()]

    def fit_rows(self) -> tuple[list[int], list[float], list, list[str]]:
        """Every run at target as (batch sizes, steps, seeds, variants): what the fit groups."""
        rows = [r for b in self.batch_sizes() for r in (self.runs.get(b) or self._seeds(b))]
        return (
            [r.batch_size for r in rows],
            [r.steps_to_target for r in rows],
            [r.seed if r.seed is not None else r.name for r in rows],
            [r.variant for r in rows],
        )


def _geometric_mean(values) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _g(x) -> str:
    return "-" if x is None else f"{x:.6g}"


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
        """Whether ``run`` is one of the seeds behind a curve's point."""
        return any(
            any(r is run for r in c._seeds(run.batch_size))
            for c in self.curves
            if run.batch_size in c.best
        )


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
    stt = _opt_float(summary.get("steps_to_target"))
    tokens_tt = _opt_float(summary.get("tokens_to_target"))
    examples_tt = _opt_float(summary.get("examples_to_target"))
    first_eval = _opt_int(summary.get("steps_to_target"))
    source = "summary"
    bracket: dict[str, Any] = {}
    evals = list(read_metrics(run_dir)) if (run_dir / METRICS).exists() else []
    finite = [r for r in evals if isinstance(r.get("ewa_eval_loss"), (int, float))]
    if finite:
        last = max(finite, key=lambda r: r.get("step", 0))
        bracket.update(
            last_eval_step=_opt_int(last.get("step")), last_eval_loss=last["ewa_eval_loss"]
        )
    if target_loss is not None and evals:
        try:
            hit = target_crossing(evals, target_loss)
        except EvalScheduleError:
            hit = None
        if hit is not None:
            stt, source, first_eval = hit.steps, hit.method, hit.after_step
            tokens_tt, examples_tt = hit.tokens, hit.examples
            bracket.update(
                bracket_before_step=hit.before_step,
                bracket_before_loss=hit.before_loss,
                bracket_after_step=hit.after_step,
                bracket_after_loss=hit.after_loss,
            )
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
        steps_to_target=stt,
        tokens_to_target=tokens_tt,
        examples_at_target=examples_tt,
        target_loss=target_loss,
        ref_tokens=_opt_float(ref_tokens),
        final=final,
        wall_s=_opt_float(summary.get("wall_s")),
        corpus=summary.get("corpus"),
        config=config,
        summary=summary,
        steps_to_target_source=source,
        first_eval_steps_to_target=first_eval,
        max_steps=_opt_int(config_get(config, "train.max_steps")),
        **bracket,
    )


def _exclusion_reason(run: RunRecord) -> str | None:
    if run.batch_size is None or run.batch_size <= 0:
        return "no batch size in summary.json or config.json (batch.batch_size)"
    if run.steps_to_target is None:
        if run.target_loss is None:
            return "no target_loss in summary.json"
        if run.censored:
            return censored_reason(run)
        if run.status == "running":
            return "still running and has not reached the target yet"
        return f"has not reached the target loss (status {run.status}, {run.steps} steps)"
    if run.steps_to_target <= 0:
        return f"steps_to_target={run.steps_to_target} is not positive"
    return None


def censored_reason(run: RunRecord) -> str:
    """Why a censored run has no steps to target: its status, steps, cap and last loss."""
    why = {
        "max_steps": "stopped at its step cap",
        "max_tokens": "stopped at its token cap",
        "diverged": "diverged",
    }.get(run.status, f"stopped ({run.status})")
    cap = f" (cap {run.max_steps:,} steps)" if run.max_steps else ""
    loss = (
        f", last EWA eval loss {run.last_eval_loss:.5g} at step {run.last_eval_step:,}"
        if run.last_eval_loss is not None and run.last_eval_step is not None
        else ""
    )
    return (
        f"censored: {why} after {run.steps or 0:,} steps{cap} without reaching the target "
        f"{run.target_loss:.5g}{loss}; steps to target > {run.steps or 0:,}"
    )


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
    groups: dict[tuple, dict[int, list[RunRecord]]] = {}
    censored: dict[tuple, list[RunRecord]] = {}
    for run in runs:
        reason = _exclusion_reason(run)
        if reason is not None:
            excluded.append((run, reason))
            if run.censored and run.batch_size:
                censored.setdefault(run.curve_key, []).append(run)
                notes.append(f"run {run.name} (B={run.batch_size}) {reason}")
            else:
                notes.append(f"run {run.name} (B={run.batch_size}) left out of the fits: {reason}")
            continue
        groups.setdefault(run.curve_key, {}).setdefault(run.batch_size, []).append(run)

    curves = []
    for key in list(groups) + [k for k in censored if k not in groups]:
        model, params, ctx_len, target = key
        by_size = groups.get(key, {})
        seeds, best = {}, {}
        for b, at_b in sorted(by_size.items()):
            variants: dict[str, list[RunRecord]] = {}
            for run in at_b:
                variants.setdefault(run.variant, []).append(run)
            # Fewest averaged steps wins; ties go to the variant listed first.
            chosen = min(
                variants.values(), key=lambda rs: _geometric_mean([r.steps_to_target for r in rs])
            )
            mean = _geometric_mean([r.steps_to_target for r in chosen])
            seeds[b] = sorted(chosen, key=lambda r: (r.seed is None, r.seed, r.name))
            best[b] = min(seeds[b], key=lambda r: abs(math.log(r.steps_to_target / mean)))
        members = [r for rs in by_size.values() for r in rs] + censored.get(key, [])
        refs = {r.ref_tokens for r in members if r.ref_tokens is not None}
        curves.append(
            Curve(
                model,
                params,
                ctx_len,
                target,
                refs.pop() if len(refs) == 1 else None,
                best,
                seeds,
                dict(sorted(by_size.items())),
                sorted(censored.get(key, []), key=lambda r: (r.batch_size, r.name)),
            )
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
