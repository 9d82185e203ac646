"""CBS sweeps end to end: a reference run sets the target, every point trains to it, then the report.

The protocol of Zhang et al. (2024), "How Does Critical Batch Size Scale in
Pre-training?", Sec. 3 and Appendix D:

1. For each setting (a model size and a Chinchilla ratio) a **reference run**
   at ``reference_batch_size`` trains for the Chinchilla step
   ``t_chin = ceil(ratio * N / (ctx_len * B_ref))`` (N: non-embedding
   parameters, ratio 20 tokens per parameter in the paper) with the hybrid
   evaluation schedule, which evaluates exactly at ``t_chin``. Its EWA eval
   loss there is the **target loss** (unless ``sweep.target_loss`` gives one).
2. Every **point** (batch size x LR x beta2 x tau x warm-up) trains with a
   constant LR after warm-up plus EWA until its EWA eval loss reaches the
   target. Its hybrid schedule expects ``n_B = t_chin * B_ref / B`` steps
   (linear scaling from the reference) and the run gives up at
   ``max_steps_factor * n_B`` steps, so saturated runs still stop.
3. ``bsjax.cbs.report`` fits Y(B) over the best run per batch size (fewest
   steps to target) and writes ``report/report.md``; the measured B* is printed.

The reference run doubles as the point at the reference batch size with the
reference hyper-parameters (the first value of every grid): training that
point would repeat the reference step for step (the trainer is
deterministic) and stop at the reference's first evaluation at or below the
target, which the sweep reads from the reference's metrics and adds to its
summary.json (``target_loss``, ``steps_to_target``, ``role: reference``).

Resumable: a run whose summary.json has a final status (target_reached,
max_steps, max_tokens, diverged) is never rerun; any other run folder is
handed back to the trainer, which resumes from its checkpoint. A finished run
whose config.json disagrees with the point it should hold is refused.

A sweep config (``configs/demo.py``, ``configs/sweep_paper.py``) has two
sections: ``base``, a full run config (``bsjax.config.base_config()``), and
``sweep`` (:func:`default_sweep_section` documents its keys).
``sweep.print_commands = True`` prints one ``bsjax train`` command per run for
a cluster instead of training.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import ml_collections

FINAL_STATUSES = ("target_reached", "max_steps", "max_tokens", "diverged")
RULES = ("grid", "half_life", "table", "table4")
SWEEP_FILE = "sweep.json"
BASE_CONFIG_FILE = "base_config.json"
# The run config file that turns base_config.json back into a ConfigDict for `bsjax train`.
POINT_CONFIG_FILE = Path(__file__).resolve().parents[2] / "configs" / "sweep_point.py"
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
MODEL_ABBREVIATIONS = {"d_model": "d", "n_layers": "l", "n_heads": "h", "d_ff": "ff", "ctx_len": "ctx"}


class SweepConfigError(ValueError):
    """A sweep that cannot run; the message lists every problem, each naming its key."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("invalid sweep:\n" + "\n".join(f"  - {p}" for p in self.problems))


def default_sweep_section() -> ml_collections.ConfigDict:
    """The ``sweep`` section of a sweep config, with the paper's defaults where it gives one.

    - batch_sizes: global batch sizes (sequences) to measure.
    - lr, b2, ewa_tau: grids (a list, or one value); every combination is a run.
    - b2_rule / ewa_tau_rule: "grid" (the values as given), "half_life" (each
      value holds at reference_batch_size and becomes ``v ** (B / B_ref)`` at
      batch B, keeping the half-life in tokens fixed) or "table" (one value per
      batch size from b2_table / ewa_tau_table, "B:value B:value", the entry
      with the largest B at or below the run's; the paper's Table 4 style), or
      "table4" (the paper's Table 4 values for the run's model preset, 85M to
      1.2B, from ``bsjax.batching.paper_tables``; its batch-64 row below 64).
    - warmup_fraction: grid of warm-up lengths as fractions of the reference
      run's tokens (paper: 0.25 of t_chin); or warmup_tokens: grid in tokens
      (set one of the two, the other empty).
    - reference_batch_size: B_ref of the reference run (paper: 256).
    - chinchilla_ratio: tokens per non-embedding parameter of the reference
      run (paper: 20); a list gives one setting (reference, target, curve) per ratio.
    - models: "" for the base model, or "key=value,..." overrides of the
      ``model`` section (e.g. "d_model=64,n_layers=4" or "preset=302M"); one
      setting per model. Run folders carry a setting prefix (model and ratio)
      unless the sweep has the base model only, at one ratio.
    - target_loss: 0 takes the target from the reference run; > 0 uses it as is.
    - max_steps_factor: a run gives up after this many times its expected steps.
    - min_expected_steps: floor of the expected steps of large batch sizes.
    - print_commands: print the cluster commands and train nothing.
    - analysis: options of the report: b_opt (0: reference_batch_size),
      overhead (rho, paper 0.2), alpha (1 or "fit"), bootstrap resamples, seed.
    """
    # Grids are tuples: ml_collections overrides tuples on the command line
    # (--config.sweep.batch_sizes='(8, 16, 32)') but not lists.
    return ml_collections.ConfigDict(
        dict(
            batch_sizes=(64, 128, 256, 512, 1024),
            lr=(3.16e-3,),
            b2=(0.99,),
            ewa_tau=(0.99,),
            b2_rule="grid",
            ewa_tau_rule="grid",
            b2_table="",
            ewa_tau_table="",
            warmup_fraction=(0.25,),
            warmup_tokens=(),
            reference_batch_size=256,
            chinchilla_ratio=20.0,
            models=("",),
            target_loss=0.0,
            max_steps_factor=4.0,
            min_expected_steps=100,
            print_commands=False,
            analysis=dict(b_opt=0.0, overhead=0.2, alpha="1", bootstrap=1000, seed=0),
        )
    )


def sweep_config(base: ml_collections.ConfigDict, **sweep_values: Any) -> ml_collections.ConfigDict:
    """A sweep config: ``base`` (a run config) and the default sweep section updated by ``sweep_values``.

    Lists become tuples (the type the command line can override).
    """
    values = default_sweep_section().to_dict()
    for key, value in sweep_values.items():
        if key == "analysis" and isinstance(value, Mapping):
            values["analysis"].update(value)
        else:  # a plain dict, so a value may change type (e.g. one ratio -> a tuple of them)
            values[key] = tuple(value) if isinstance(value, list) else value
    return ml_collections.ConfigDict(dict(base=base, sweep=values))


# --------------------------------------------------------------------------
# The plan: settings, points, their run configs


@dataclasses.dataclass(frozen=True)
class Setting:
    """One model at one Chinchilla ratio: one reference run, one target loss, one Y(B) curve."""

    label: str  # folder-name prefix; "" when the sweep has a single setting
    model: tuple[tuple[str, Any], ...]  # overrides of the model section
    ratio: float
    n_params: int  # non-embedding
    ctx_len: int
    ref_batch_size: int
    t_chin: int  # the Chinchilla step of the reference run
    target_from_reference: bool = True  # False when sweep.target_loss gives the target

    @property
    def ref_tokens(self) -> int:
        return self.t_chin * self.ref_batch_size * self.ctx_len


@dataclasses.dataclass(frozen=True)
class Point:
    """One run of the sweep: a setting and its hyper-parameters."""

    setting: Setting
    batch_size: int
    lr: float
    b2: float
    ewa_tau: float
    warmup_tokens: int
    expected_steps: int
    max_steps: int
    is_reference: bool = False

    @property
    def name(self) -> str:
        prefix = f"{self.setting.label}_" if self.setting.label else ""
        return (
            f"{prefix}bs{self.batch_size:04d}_lr{_sci(self.lr)}_b2{self.b2:.6g}"
            f"_tau{self.ewa_tau:.6g}_wu{self.warmup_tokens}"
        )


@dataclasses.dataclass
class SweepPlan:
    """Everything a sweep will run, resolved and validated."""

    base: ml_collections.ConfigDict
    settings: list[Setting]
    points: list[Point]
    references: dict[Setting, Point]  # the run that sets each setting's target
    target_loss: float  # 0: from the reference runs
    analysis: dict[str, Any]

    def runs(self) -> list[Point]:
        """The reference runs, then every other point, each run once."""
        seen, out = set(), []
        for point in list(self.references.values()) + self.points:
            if point.name not in seen:
                seen.add(point.name)
                out.append(point)
        return out


def _sci(x: float) -> str:
    """3.16e-3 style: three significant digits, no padding in the exponent."""
    mantissa, exponent = f"{x:.2e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def _as_list(value) -> list:
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _parse_table(text: str, key: str, problems: list[str]) -> dict[int, float]:
    table: dict[int, float] = {}
    for entry in str(text).split():
        try:
            b, v = entry.split(":")
            table[int(b)] = float(v)
        except ValueError:
            problems.append(f"sweep.{key}: entry {entry!r} is not 'B:value' (e.g. '64:0.999 1024:0.95')")
            return {}
    if not table:
        problems.append(f"sweep.{key} is empty; give entries like '64:0.999 1024:0.95'")
    return table


def _table_value(table: Mapping[int, float], batch_size: int) -> float | None:
    keys = [b for b in table if b <= batch_size]
    return table[max(keys)] if keys else None


def _parse_model_spec(spec: str, model_keys: Iterable[str], problems: list[str]) -> tuple[tuple[str, Any], ...]:
    """'d_model=64,n_layers=4' -> (('d_model', 64), ('n_layers', 4))."""
    out = []
    known = set(model_keys)
    for part in str(spec).split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, raw = part.partition("=")
        key = key.strip()
        if not sep or key not in known:
            problems.append(
                f"sweep.models: {part!r} is not 'key=value' with a key of the model section "
                f"({', '.join(sorted(known))})"
            )
            continue
        raw = raw.strip()
        try:
            value: Any = int(raw)
        except ValueError:
            value = raw
        out.append((key, value))
    return tuple(out)


def _model_label(base_model: Mapping, overrides: tuple[tuple[str, Any], ...]) -> str:
    preset = dict(overrides).get("preset", base_model["preset"])
    parts = [str(preset)] + [f"{MODEL_ABBREVIATIONS.get(k, k)}{v}" for k, v in overrides if k != "preset"]
    return "-".join(parts)


def _check_grid(sweep, key: str, ok: Callable[[Any], bool], wanted: str, problems: list[str]) -> list:
    """The values of grid ``sweep.<key>`` (a list or one value); [] with a problem if any fails ``ok``."""
    values = _as_list(sweep[key])
    if not values or not all(ok(v) for v in values):
        problems.append(f"sweep.{key}={values!r} must be a non-empty list of {wanted}")
        return []
    return values


def _unlocked_copy(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(copy.deepcopy(config.to_dict()))


def plan_sweep(config: ml_collections.ConfigDict, num_devices: int | None = None) -> SweepPlan:
    """Resolve and validate a sweep config; raises :class:`SweepConfigError` listing every problem.

    Every run config is validated (``bsjax.config.validate``) on
    ``num_devices`` devices (default: this machine's) before anything is
    compiled or written.
    """
    from bsjax import config as config_lib
    from bsjax import model as model_lib

    problems: list[str] = []
    for section in ("base", "sweep"):
        if section not in config:
            problems.append(f"the sweep config has no '{section}' section; build it with bsjax.cbs.sweep.sweep_config(base)")
    if problems:
        raise SweepConfigError(problems)
    base, sweep = config.base, config.sweep
    known = set(default_sweep_section().keys())
    for key in sorted(set(sweep.keys()) - known):
        problems.append(f"sweep.{key}: unknown key; known keys: {', '.join(sorted(known))}")
    for key in sorted(known - set(sweep.keys())):
        problems.append(f"sweep.{key} is missing (start from bsjax.cbs.sweep.default_sweep_section())")
    if problems:
        raise SweepConfigError(problems)

    sizes = _as_list(sweep.batch_sizes)
    if not sizes or not all(_is_int(b) and b > 0 for b in sizes) or len(set(sizes)) != len(sizes):
        problems.append(f"sweep.batch_sizes={sizes!r} must be a non-empty list of distinct ints > 0")
        sizes = []
    lrs = _check_grid(sweep, "lr", lambda v: _is_number(v) and v > 0, "numbers > 0", problems)
    b2s = _check_grid(sweep, "b2", lambda v: _is_number(v) and 0 <= v < 1, "numbers in [0, 1)", problems)
    taus = _check_grid(sweep, "ewa_tau", lambda v: _is_number(v) and 0 <= v < 1, "numbers in [0, 1)", problems)
    b_ref = sweep.reference_batch_size
    if not (_is_int(b_ref) and b_ref > 0):
        problems.append(f"sweep.reference_batch_size={b_ref!r} must be an int > 0")
        b_ref = None

    tables: dict[str, dict[int, float]] = {}
    for key, rule_key, table_key in (("b2", "b2_rule", "b2_table"), ("ewa_tau", "ewa_tau_rule", "ewa_tau_table")):
        rule = sweep[rule_key]
        if rule not in RULES:
            problems.append(f"sweep.{rule_key}={rule!r} must be one of {', '.join(RULES)}")
        elif rule == "table":
            table = _parse_table(sweep[table_key], table_key, problems)
            if table and any(not 0 <= v < 1 for v in table.values()):
                problems.append(f"sweep.{table_key}: values must be in [0, 1)")
            elif table and sizes:
                below = [b for b in sizes if _table_value(table, b) is None]
                if below:
                    problems.append(
                        f"sweep.{table_key} has no entry at or below batch size {min(below)}; "
                        f"add one like '{min(below)}:VALUE'"
                    )
            tables[key] = table
        elif rule == "table4":
            tables[key] = {}  # per setting, from the model preset (checked below)
        elif sweep[table_key]:
            problems.append(f"sweep.{table_key} is set but sweep.{rule_key}={rule!r}; set {rule_key}='table'")

    wu_tokens, wu_fraction = _as_list(sweep.warmup_tokens), _as_list(sweep.warmup_fraction)
    if bool(wu_tokens) == bool(wu_fraction):
        problems.append(
            "set exactly one of sweep.warmup_fraction (fractions of the reference tokens) and "
            f"sweep.warmup_tokens; got warmup_fraction={wu_fraction!r}, warmup_tokens={wu_tokens!r}"
        )
    elif wu_tokens:
        wu_tokens = _check_grid(sweep, "warmup_tokens", lambda v: _is_int(v) and v >= 0, "ints >= 0", problems)
    else:
        wu_fraction = _check_grid(
            sweep, "warmup_fraction", lambda v: _is_number(v) and 0 <= v <= 1, "fractions in [0, 1]", problems
        )

    ratios = _as_list(sweep.chinchilla_ratio)
    if not ratios or not all(_is_number(r) and r > 0 for r in ratios):
        problems.append(f"sweep.chinchilla_ratio={sweep.chinchilla_ratio!r} must be a number > 0 (or a list of them)")
        ratios = []
    target = sweep.target_loss
    if not (_is_number(target) and target >= 0):
        problems.append(f"sweep.target_loss={target!r} must be >= 0 (0: from the reference run)")
        target = 0.0
    factor = sweep.max_steps_factor
    if not (_is_number(factor) and factor >= 1):
        problems.append(f"sweep.max_steps_factor={factor!r} must be a number >= 1")
    floor = sweep.min_expected_steps
    if not (_is_int(floor) and floor >= 1):
        problems.append(f"sweep.min_expected_steps={floor!r} must be an int >= 1")
    if not isinstance(sweep.print_commands, bool):
        problems.append(f"sweep.print_commands={sweep.print_commands!r} must be True or False")
    analysis = dict(sweep.analysis)
    problems += _check_analysis(analysis)

    models = [_parse_model_spec(spec, base.model.keys(), problems) for spec in _as_list(sweep.models) or [""]]
    if len(set(models)) != len(models):
        problems.append(f"sweep.models={list(sweep.models)!r} lists a model twice")
    o, b, t = base.optim, base.batch, base.train
    if o.schedule != "constant":
        problems.append(
            f"base.optim.schedule={o.schedule!r}: training to a target loss needs 'constant' "
            "(constant LR after warm-up plus EWA, the paper's protocol)"
        )
    if b.schedule != "constant" or b.policy.name != "schedule":
        problems.append(
            f"base.batch.schedule={b.schedule!r}, base.batch.policy.name={b.policy.name!r}: each sweep run "
            "needs one fixed batch size ('constant' and 'schedule')"
        )
    if b.beta2_rule != "fixed" or b.tau_rule != "fixed" or b.lr_scaling != "none":
        problems.append(
            "base.batch.beta2_rule, tau_rule and lr_scaling must be 'fixed', 'fixed', 'none': the sweep sets "
            "beta2, tau and the LR of each run itself (use sweep.b2_rule / ewa_tau_rule)"
        )
    if problems:
        raise SweepConfigError(problems)

    settings: list[Setting] = []
    single = models == [()] and len(ratios) == 1
    for overrides in models:
        run_model = _unlocked_copy(base).model
        for key, value in overrides:
            run_model[key] = value
        try:
            n_params = model_lib.count_params(config_lib.model_config(ml_collections.ConfigDict(dict(model=run_model)), 1))[
                "non_embedding"
            ]
        except Exception as exc:  # an unknown preset; validate() names it below
            problems.append(f"sweep.models={dict(overrides)!r}: {exc}")
            continue
        ctx = run_model.ctx_len
        if "table4" in (sweep.b2_rule, sweep.ewa_tau_rule) and _table4_size(run_model.preset) is None:
            problems.append(
                f"sweep.b2_rule / ewa_tau_rule 'table4' needs a model preset of the paper "
                f"(85M, 151M, 302M, 604M, 1.2B); model {dict(overrides) or 'base'} has preset {run_model.preset!r}"
            )
        for ratio in ratios:
            t_chin = max(1, math.ceil(ratio * n_params / (ctx * b_ref)))
            label = "" if single else f"{_model_label(base.model, overrides)}_r{ratio:g}"
            settings.append(Setting(label, overrides, float(ratio), n_params, ctx, b_ref, t_chin, not target))
    if problems:
        raise SweepConfigError(problems)

    def values_for(key, grid, rule, batch_size, setting):
        if rule == "table4":
            from bsjax.batching import paper_tables

            size = _table4_size(dict(setting.model).get("preset", base.model.preset))
            table = (paper_tables.table4_beta2 if key == "b2" else paper_tables.table4_tau)(size)
            value = _table_value(table, batch_size)
            return [value if value is not None else table[min(table)]]
        if rule == "table":
            return [_table_value(tables[key], batch_size)]
        if rule == "half_life":
            return [v ** (batch_size / b_ref) for v in grid]
        return list(grid)

    def make_point(setting: Setting, B: int, lr, b2, tau, wu, is_reference=False) -> Point:
        expected = _expected_steps(B, setting, floor)
        cap = setting.t_chin if is_reference else math.ceil(factor * expected)
        return Point(setting, B, float(lr), float(b2), float(tau), int(wu), expected, cap, is_reference)

    points: list[Point] = []
    references: dict[Setting, Point] = {}
    for setting in settings:
        warmups = wu_tokens or [int(round(f * setting.ref_tokens)) for f in wu_fraction]
        first = dict(
            lr=lrs[0],
            b2=values_for("b2", b2s, sweep.b2_rule, b_ref, setting)[0],
            tau=values_for("ewa_tau", taus, sweep.ewa_tau_rule, b_ref, setting)[0],
            wu=warmups[0],
        )
        if not target:
            references[setting] = make_point(setting, b_ref, **first, is_reference=True)
        for B in sizes:
            for lr in lrs:
                for b2 in values_for("b2", b2s, sweep.b2_rule, B, setting):
                    for tau in values_for("ewa_tau", taus, sweep.ewa_tau_rule, B, setting):
                        for wu in dict.fromkeys(warmups):
                            points.append(make_point(setting, B, lr, b2, tau, wu))
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        problems.append("two points share a folder name (grid values equal to 6 significant digits); dedupe the grids")

    plan = SweepPlan(base, settings, points, references, float(target), analysis)
    problems += _validate_run_configs(plan, num_devices)
    if problems:
        raise SweepConfigError(list(dict.fromkeys(problems)))
    return plan


def _table4_size(preset: str) -> str | None:
    """The paper's model size whose Table 4 row a preset uses ('604M-depth' -> '604M'), or None."""
    from bsjax.batching.paper_tables import PRESET_NAMES

    size = str(preset).split("-")[0]
    return size if size in PRESET_NAMES else None


def _expected_steps(batch_size: int, setting: Setting, floor: int) -> int:
    from bsjax.cbs.eval_schedule import expected_steps_for

    # The floor never lifts the reference batch size above t_chin: its run must
    # evaluate exactly at t_chin, the dense grid's last point.
    return expected_steps_for(batch_size, setting.ref_batch_size, setting.t_chin, floor=min(floor, setting.t_chin))


def _check_analysis(analysis: dict) -> list[str]:
    problems = []
    known = {"b_opt", "overhead", "alpha", "bootstrap", "seed"}
    for key in sorted(set(analysis) - known):
        problems.append(f"sweep.analysis.{key}: unknown key; known keys: {', '.join(sorted(known))}")
    if not (_is_number(analysis.get("b_opt")) and analysis["b_opt"] >= 0):
        problems.append(f"sweep.analysis.b_opt={analysis.get('b_opt')!r} must be >= 0 (0: the reference batch size)")
    if not (_is_number(analysis.get("overhead")) and analysis["overhead"] > 0):
        problems.append(f"sweep.analysis.overhead={analysis.get('overhead')!r} must be > 0 (paper: 0.2)")
    alpha = str(analysis.get("alpha")).strip().lower()
    if alpha != "fit":
        try:
            if float(alpha) <= 0:
                raise ValueError
        except ValueError:
            problems.append(f"sweep.analysis.alpha={analysis.get('alpha')!r} must be 'fit' or a number > 0")
    if not (_is_int(analysis.get("bootstrap")) and analysis["bootstrap"] >= 0):
        problems.append(f"sweep.analysis.bootstrap={analysis.get('bootstrap')!r} must be an int >= 0")
    if not _is_int(analysis.get("seed")):
        problems.append(f"sweep.analysis.seed={analysis.get('seed')!r} must be an int")
    return problems


def run_overrides(point: Point, target_loss: float) -> dict[str, Any]:
    """The dotted keys (and values) that turn the base config into ``point``'s run config."""
    s = point.setting
    out: dict[str, Any] = {f"model.{k}": v for k, v in s.model}
    out.update(
        {
            "batch.batch_size": point.batch_size,
            "optim.lr": point.lr,
            "optim.b2": point.b2,
            "optim.ewa_tau": point.ewa_tau,
            "optim.warmup_tokens": point.warmup_tokens,
            "train.target_loss": 0.0 if point.is_reference else float(target_loss),
            "train.eval_schedule": "hybrid",
            "train.expected_steps": point.expected_steps,
            "train.max_steps": point.max_steps,
            "train.max_tokens": 0,
            # The data size D of the scaling law: none when the target was given.
            "target.ref_tokens": s.ref_tokens if s.target_from_reference else 0,
            "target.ref_batch_size": s.ref_batch_size,
            "target.ref_steps": s.t_chin,
            "target.chinchilla_ratio": s.ratio,
        }
    )
    return out


def base_with_target_section(base: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy of ``base`` with the ``target`` section the runs record (reference data size D)."""
    c = _unlocked_copy(base)
    c.target = ml_collections.ConfigDict(dict(ref_tokens=0, ref_batch_size=0, ref_steps=0, chinchilla_ratio=0.0))
    return c


def run_config(plan: SweepPlan, point: Point, target_loss: float) -> ml_collections.ConfigDict:
    """The full run config of ``point`` (target 0 for a reference run)."""
    c = base_with_target_section(plan.base)
    for key, value in run_overrides(point, target_loss).items():
        section, name = key.split(".")
        c[section][name] = value
    return c


def _validate_run_configs(plan: SweepPlan, num_devices: int | None) -> list[str]:
    """Problems of the run configs, one line per distinct problem naming the runs it hits."""
    from bsjax import config as config_lib

    if num_devices is None:
        import jax

        num_devices = jax.device_count()
    runs_of: dict[str, list[str]] = {}
    checked = set()
    runs = plan.runs()
    for point in runs:
        key = (point.setting.model, point.batch_size)  # the other point keys are range-checked above
        if key in checked:
            continue
        checked.add(key)
        for problem in config_lib.validate(run_config(plan, point, plan.target_loss or 1.0), num_devices):
            runs_of.setdefault(problem, []).append(point.name)
    out = []
    for problem, names in runs_of.items():
        if len(names) == len(checked):
            out.append(f"every run: {problem}")
        else:
            out.append(f"run {names[0]}" + (f" (and {len(names) - 1} more)" if len(names) > 1 else "") + f": {problem}")
    return out


# --------------------------------------------------------------------------
# Run folders: status, config check, the reference target


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
    want = expected.to_dict()
    pairs = [(s, stored.get(s), want.get(s)) for s in CHECKED_SECTIONS]
    pairs += [(f"train.{k}", stored.get("train", {}).get(k), want["train"].get(k)) for k in CHECKED_TRAIN_KEYS]
    pairs.append(("seed", stored.get("seed"), want.get("seed")))
    out = []
    for key, have, need in pairs:
        have, need = _normalised(have), _normalised(need)
        if isinstance(need, dict) and isinstance(have, dict):
            out += [f"{key}.{k}: {have.get(k)!r} != {need[k]!r}" for k in need if have.get(k) != need[k]]
        elif have != need:
            out.append(f"{key}: {have!r} != {need!r}")
    return out


def reference_target(run_dir: Path | str, t_chin: int) -> float:
    """The EWA eval loss of the reference run in ``run_dir`` at step ``t_chin`` (the target loss).

    Raises :class:`SweepConfigError` when the run has no evaluation at ``t_chin``.
    """
    from bsjax.cbs.results import read_metrics

    run_dir = Path(run_dir)
    at_step = [r for r in read_metrics(run_dir, ("eval",)) if r.get("step") == t_chin and "ewa_eval_loss" in r]
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
    """Add the target and the reference's own steps to target to its summary.json (idempotent)."""
    from bsjax.cbs.eval_schedule import first_eval_at_target
    from bsjax.cbs.results import read_metrics
    from bsjax.train.metrics import write_json_atomic

    path = Path(run_dir) / "summary.json"
    summary = read_json(path) or {}
    hit = first_eval_at_target(read_metrics(run_dir, ("eval",)), target)
    before = dict(summary)
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


# --------------------------------------------------------------------------
# Progress lines


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    m, s = divmod(seconds, 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class Progress:
    """One line per run start and finish, with elapsed time and an ETA.

    The ETA is the mean wall time of the runs trained so far in this
    invocation times the runs still to train (runs differ in length, so it is
    rough until a few have finished).
    """

    def __init__(self, total: int, out: Callable[[str], None]):
        self.total, self.out = total, out
        self.index = 0
        self.start = time.perf_counter()
        self.walls: list[float] = []
        self.to_train = 0

    def _tag(self) -> str:
        return f"[{self.index}/{self.total}]"

    def skipped(self, name: str, why: str) -> None:
        self.index += 1
        self.out(f"{self._tag()} {name}: {why}, skipped")

    def started(self, name: str, what: str) -> float:
        self.index += 1
        self.out(f"{self._tag()} {name}: start ({what})")
        return time.perf_counter()

    def finished(self, name: str, summary: Mapping, started: float) -> None:
        wall = time.perf_counter() - started
        self.walls.append(wall)
        self.to_train -= 1
        stt = summary.get("steps_to_target")
        result = f"{summary.get('status')} after {summary.get('steps')} steps" + (
            f", {stt} steps to target" if stt is not None else ""
        )
        if summary.get("status") == "preempted":
            eta = "stopping"
        elif self.to_train <= 0:
            eta = "done"
        else:
            eta = f"ETA {_duration(self.to_train * sum(self.walls) / len(self.walls))}"
        self.out(
            f"{self._tag()} {name}: {result} in {wall:.1f}s | elapsed {_duration(time.perf_counter() - self.start)}, "
            f"{eta} ({max(self.to_train, 0)} run(s) left)"
        )


# --------------------------------------------------------------------------
# The sweep


@dataclasses.dataclass
class SweepOutcome:
    """What a sweep did: targets, runs trained and skipped, the report and measured B*."""

    workdir: Path
    targets: dict[str, float]  # setting label ("" for a single one) -> target loss
    trained: list[str]
    skipped: list[str]
    report: Path | None
    critical_batch_sizes: dict[str, float]  # curve label -> B*
    wall_s: float


def _print(line: str) -> None:
    print(line, flush=True)


def _write_plan_files(plan: SweepPlan, workdir: Path, targets: Mapping[Setting, float]) -> None:
    from bsjax.train.metrics import write_json_atomic

    workdir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(workdir / BASE_CONFIG_FILE, base_with_target_section(plan.base).to_dict())
    write_json_atomic(
        workdir / SWEEP_FILE,
        dict(
            settings=[
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
            ],
            runs=[dict(name=p.name, **run_overrides(p, targets.get(p.setting, plan.target_loss))) for p in plan.runs()],
            analysis=plan.analysis,
        ),
    )


def _train_or_skip(plan, point, target, workdir, progress, trained, skipped) -> dict:
    from bsjax.train.loop import train

    run_dir = workdir / point.name
    config = run_config(plan, point, target)
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
        progress.skipped(point.name, f"finished ({status}" + (f", {stt} steps to target)" if stt else ")"))
        skipped.append(point.name)
        return summary
    resuming = (run_dir / "checkpoints").exists() or status is not None
    what = (
        f"reference, B={point.batch_size}, to the Chinchilla step {point.max_steps}"
        if point.is_reference
        else f"B={point.batch_size}, target {target:.5g}, expected {point.expected_steps} steps, "
        f"gives up at {point.max_steps}"
    )
    started = progress.started(point.name, what + (", resuming" if resuming else ""))
    summary = train(config, run_dir)
    trained.append(point.name)
    progress.finished(point.name, summary, started)
    return summary


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
    nothing and returns the cluster commands it printed.
    """
    with _absl_warnings_only():
        return _run_sweep(config, workdir, out)


def _run_sweep(config, workdir, out) -> SweepOutcome | list[str]:
    plan = plan_sweep(config)
    workdir = Path(workdir)
    if config.sweep.print_commands:
        commands = cluster_commands(plan, workdir)
        for line in commands:
            out(line)
        return commands
    t0 = time.perf_counter()
    targets: dict[Setting, float] = {s: plan.target_loss for s in plan.settings} if plan.target_loss else {}
    _write_plan_files(plan, workdir, targets)
    runs = plan.runs()
    progress = Progress(len(runs), out)
    progress.to_train = sum(run_status(workdir / p.name) not in FINAL_STATUSES for p in runs)
    trained: list[str] = []
    skipped: list[str] = []
    out(
        f"sweep {workdir}: {len(runs)} runs over batch sizes {sorted({p.batch_size for p in plan.points})}, "
        f"{progress.to_train} to train"
    )

    for setting, ref in plan.references.items():
        label = f" ({setting.label})" if setting.label else ""
        out(
            f"reference{label}: B={ref.batch_size}, N={setting.n_params} non-embedding parameters, "
            f"t_chin={setting.t_chin} steps ({setting.ratio:g} tokens per parameter, {setting.ref_tokens} tokens)"
        )
        summary = _train_or_skip(plan, ref, 0.0, workdir, progress, trained, skipped)
        if summary.get("status") == "preempted":
            return _preempted(workdir, targets, trained, skipped, t0, out)
        targets[setting] = reference_target(workdir / ref.name, setting.t_chin)
        complete_reference_summary(workdir / ref.name, ref, targets[setting])
        out(f"target loss{label}: {targets[setting]:.6g} (EWA eval loss of {ref.name} at step {setting.t_chin})")
    _write_plan_files(plan, workdir, targets)

    done = {ref.name for ref in plan.references.values()}
    for point in plan.points:
        if point.name in done:
            continue
        done.add(point.name)
        summary = _train_or_skip(plan, point, targets[point.setting], workdir, progress, trained, skipped)
        if summary.get("status") == "preempted":
            return _preempted(workdir, targets, trained, skipped, t0, out)

    report, b_star = _report(plan, workdir, out)
    wall = time.perf_counter() - t0
    out(f"sweep wall time: {_duration(wall)} ({len(trained)} run(s) trained, {len(skipped)} skipped)")
    return SweepOutcome(
        workdir, {s.label: v for s, v in targets.items()}, trained, skipped, report, b_star, round(wall, 3)
    )


def _preempted(workdir, targets, trained, skipped, t0, out) -> SweepOutcome:
    """SIGTERM reached the run in progress: it has saved; the sweep stops too (rerun to resume)."""
    out(f"sweep preempted: the run in progress saved a checkpoint; the same command resumes it ({workdir})")
    wall = round(time.perf_counter() - t0, 3)
    return SweepOutcome(workdir, {s.label: v for s, v in targets.items()}, trained, skipped, None, {}, wall)


def _report(plan: SweepPlan, workdir: Path, out: Callable[[str], None]) -> tuple[Path, dict[str, float]]:
    """Fit and write report/; print its path, the warnings and every measured B*."""
    from bsjax.cbs.analysis import analyze_sweep
    from bsjax.cbs.report import render_report

    a = plan.analysis
    alpha = str(a["alpha"]).strip().lower()
    analysis = analyze_sweep(
        workdir,
        b_opt=float(a["b_opt"]) or float(plan.settings[0].ref_batch_size),
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
        out(f"B* ({ca.curve.label}): {fit.critical_batch_size:.4g}{ci} = 2^{fit.log2:.2f} sequences")
    if not b_star:
        out("B*: not measured (see the warnings above and the report)")
    return path, b_star


# --------------------------------------------------------------------------
# Cluster commands


def cluster_commands(plan: SweepPlan, workdir: Path) -> list[str]:
    """Shell lines that run the sweep as independent jobs: references first, then every point.

    Writes ``workdir/base_config.json``, which ``configs/sweep_point.py`` turns
    back into the base run config; each command adds its point's overrides.
    When the target comes from a reference run, the point commands read it
    with ``python -m bsjax.cbs.sweep target-loss`` once that run has finished.
    """
    targets = {s: plan.target_loss for s in plan.settings} if plan.target_loss else {}
    _write_plan_files(plan, workdir, targets)
    base_arg = f"{POINT_CONFIG_FILE}:{(workdir / BASE_CONFIG_FILE).resolve()}"

    def command(point: Point, target_expr: str | None = None) -> str:
        words = ["bsjax", "train", f"--config={base_arg}", f"--workdir={(workdir / point.name).resolve()}"]
        for key, value in run_overrides(point, plan.target_loss).items():
            if key != "train.target_loss" or target_expr is None:
                words.append(f"--config.{key}={_flag_value(value)}")
        line = " ".join(shlex.quote(w) for w in words)
        if target_expr is not None:  # double quotes: the shell expands $(...) when the job starts
            line += f' "--config.train.target_loss={target_expr}"'
        return line

    def finished(point: Point) -> bool:
        if run_status(workdir / point.name) in FINAL_STATUSES:
            lines.append(f"# finished already: {point.name}")
            return True
        return False

    lines = [f"# {len(plan.runs())} runs of sweep {workdir}; each line is one job, runnable from any folder."]
    if plan.references:
        lines.append("# 1. The reference runs (one per setting); their EWA eval loss at t_chin is the target.")
        lines += [command(ref) for ref in plan.references.values() if not finished(ref)]
        lines.append("# 2. The points, independent of each other, once their setting's reference has finished.")
    done = {ref.name for ref in plan.references.values()}
    for point in plan.points:
        if point.name in done:
            continue
        done.add(point.name)
        ref = plan.references.get(point.setting)
        if finished(point):
            continue
        if ref is None:
            lines.append(command(point))
        else:
            ref_dir = shlex.quote(str((workdir / ref.name).resolve()))
            lines.append(command(point, f"$(python -m bsjax.cbs.sweep target-loss {ref_dir} --step {point.setting.t_chin})"))
    lines.append(
        "# 3. When every job has finished, the same `bsjax sweep` command again completes the reference "
        "summaries and writes the report."
    )
    return lines


def _flag_value(value) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


# --------------------------------------------------------------------------
# python -m bsjax.cbs.sweep target-loss RUN_DIR --step N


def main(argv: Sequence[str] | None = None) -> int:
    """``target-loss RUN_DIR --step N``: print the reference's EWA eval loss at step N (exit 2 if absent)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bsjax.cbs.sweep")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("target-loss", help="the target loss a finished reference run sets")
    p.add_argument("run_dir")
    p.add_argument("--step", type=int, required=True, help="the Chinchilla step t_chin of the reference run")
    args = parser.parse_args(argv)
    try:
        print(repr(reference_target(args.run_dir, args.step)))
    except SweepConfigError as exc:
        print(f"bsjax sweep: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
