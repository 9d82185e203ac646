"""The plan of a sweep: its settings, its points, and the run config of each.

A **setting** is one model at one Chinchilla ratio: one reference run, one
target loss, one Y(B) curve. A **point** is one run: a setting, a batch size
and its hyper-parameters. The run config of a point is the base config plus
:func:`run_overrides` (the same overrides the cluster commands pass).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import ml_collections

from bsjax.cbs.sweep.spec import SweepConfigError, SweepSpec, read_spec, table_value
from bsjax.config import TargetSection
from bsjax.sections import section_to_dict

MODEL_ABBREVIATIONS = {
    "d_model": "d",
    "n_layers": "l",
    "n_heads": "h",
    "d_ff": "ff",
    "ctx_len": "ctx",
}


@dataclasses.dataclass(frozen=True)
class Setting:
    """One model at one Chinchilla ratio: one reference run, one target loss, one Y(B) curve."""

    label: str  # folder-name prefix; "" when the sweep has the base model at one ratio
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
    seed: int | None = None  # None: the base config's seed and data order

    @property
    def name(self) -> str:
        prefix = f"{self.setting.label}_" if self.setting.label else ""
        suffix = f"_s{self.seed}" if self.seed is not None else ""
        return (
            f"{prefix}bs{self.batch_size:04d}_lr{_sci(self.lr)}_b2{self.b2:.6g}"
            f"_tau{self.ewa_tau:.6g}_wu{self.warmup_tokens}{suffix}"
        )


@dataclasses.dataclass
class SweepPlan:
    """Everything a sweep will run, resolved and validated."""

    base: ml_collections.ConfigDict
    spec: SweepSpec
    settings: list[Setting]
    points: list[Point]
    references: dict[
        Setting, Point
    ]  # the run that sets each setting's target (none for a given target)

    @property
    def target_loss(self) -> float:
        """The given target (0: each setting's reference run sets it)."""
        return self.spec.target_loss

    @property
    def analysis(self) -> dict[str, Any]:
        return self.spec.analysis

    def runs(self) -> list[Point]:
        """The reference runs, then every other point, each folder once.

        The point at the reference batch size with the reference's
        hyper-parameters has the reference's folder: the reference run is
        that point (see the package docstring).
        """
        seen, out = set(), []
        for point in list(self.references.values()) + self.points:
            if point.name not in seen:
                seen.add(point.name)
                out.append(point)
        return out


def _sci(x: float) -> str:
    """3.16e-3 style: three significant digits, no padding in the exponent."""
    mantissa, exponent = f"{x:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _unlocked_copy(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(copy.deepcopy(config.to_dict()))


def _model_label(base_model, overrides: tuple[tuple[str, Any], ...]) -> str:
    preset = dict(overrides).get("preset", base_model["preset"])
    return "-".join(
        [str(preset)]
        + [f"{MODEL_ABBREVIATIONS.get(k, k)}{v}" for k, v in overrides if k != "preset"]
    )


def table4_size(preset: str) -> str | None:
    """The paper's model size whose Table 4 row a preset uses ('604M-depth' -> '604M'), or None."""
    from bsjax.batching.paper_tables import PRESET_NAMES

    size = str(preset).split("-")[0]
    return size if size in PRESET_NAMES else None


def _settings(base, spec: SweepSpec) -> list[Setting]:
    from bsjax import config as config_lib
    from bsjax import model as model_lib

    problems, settings = [], []
    single = spec.models == ((),) and len(spec.ratios) == 1
    for overrides in spec.models:
        run = _unlocked_copy(base)
        try:
            for key, value in overrides:
                run.model[key] = value
            n_params = model_lib.count_params(config_lib.model_config(run, vocab_size=1))[
                "non_embedding"
            ]
        except (ValueError, TypeError) as exc:  # an unknown preset, a value of the wrong type
            problems.append(f"sweep.models={dict(overrides)!r}: {exc}")
            continue
        if "table4" in (spec.b2_rule, spec.ewa_tau_rule) and table4_size(run.model.preset) is None:
            problems.append(
                "sweep.b2_rule / ewa_tau_rule 'table4' needs a model preset of the paper (85M, 151M, 302M, "
                f"604M, 1.2B); model {dict(overrides) or 'base'} has preset {run.model.preset!r}"
            )
        ctx, b_ref = run.model.ctx_len, spec.reference_batch_size
        for ratio in spec.ratios:
            t_chin = max(1, math.ceil(ratio * n_params / (ctx * b_ref)))
            label = "" if single else f"{_model_label(base.model, overrides)}_r{ratio:g}"
            settings.append(
                Setting(label, overrides, ratio, n_params, ctx, b_ref, t_chin, not spec.target_loss)
            )
    if problems:
        raise SweepConfigError(problems)
    return settings


def _values(
    spec: SweepSpec, key: str, batch_size: int, setting: Setting, base_preset: str
) -> list[float]:
    """The beta2 (key 'b2') or tau ('ewa_tau') values a batch size runs with, by the sweep's rule."""
    rule, grid = (spec.b2_rule, spec.b2) if key == "b2" else (spec.ewa_tau_rule, spec.ewa_tau)
    if rule == "table4":
        from bsjax.batching import paper_tables

        size = table4_size(dict(setting.model).get("preset", base_preset))
        table = (paper_tables.table4_beta2 if key == "b2" else paper_tables.table4_tau)(size)
        value = table_value(table, batch_size)
        return [value if value is not None else table[min(table)]]
    if rule == "table":
        return [table_value(spec.tables[key], batch_size)]
    if rule == "half_life":
        return [v ** (batch_size / spec.reference_batch_size) for v in grid]
    return list(grid)


def expected_steps(batch_size: int, setting: Setting, floor: int) -> int:
    """``n_B``: linear scaling from the reference, ``t_chin * B_ref / B``, floored for large batches."""
    from bsjax.train.eval_schedule import expected_steps_for

    # The floor never lifts the reference batch size above t_chin: its run must
    # evaluate exactly at t_chin, the dense grid's last point.
    return expected_steps_for(
        batch_size, setting.ref_batch_size, setting.t_chin, floor=min(floor, setting.t_chin)
    )


def _points(
    base, spec: SweepSpec, settings: list[Setting]
) -> tuple[list[Point], dict[Setting, Point]]:
    def point(setting, B, lr, b2, tau, wu, is_reference=False, seed=None) -> Point:
        n = expected_steps(B, setting, spec.min_expected_steps)
        cap = setting.t_chin if is_reference else math.ceil(spec.max_steps_factor * n)
        return Point(
            setting, B, float(lr), float(b2), float(tau), int(wu), n, cap, is_reference, seed
        )

    points, references = [], {}
    preset = base.model.preset
    for s in settings:
        warmups = list(
            dict.fromkeys(
                spec.warmup_tokens or [round(f * s.ref_tokens) for f in spec.warmup_fraction]
            )
        )
        b_ref = spec.reference_batch_size
        if not spec.target_loss:  # the reference takes the first value of every grid
            b2, tau = (
                _values(spec, "b2", b_ref, s, preset)[0],
                _values(spec, "ewa_tau", b_ref, s, preset)[0],
            )
            references[s] = point(s, b_ref, spec.lr[0], b2, tau, warmups[0], is_reference=True)
        for B in spec.batch_sizes:
            for lr in spec.lr:
                for b2 in _values(spec, "b2", B, s, preset):
                    for tau in _values(spec, "ewa_tau", B, s, preset):
                        points += [
                            point(s, B, lr, b2, tau, wu, seed=seed)
                            for wu in warmups
                            for seed in spec.seeds or (None,)
                        ]
    return points, references


def plan_sweep(config: ml_collections.ConfigDict, num_devices: int | None = None) -> SweepPlan:
    """Resolve and validate a sweep config; raises :class:`SweepConfigError` listing every problem.

    Every run config is validated (``bsjax.config.validate``) on
    ``num_devices`` devices (default: this machine's) before anything is
    compiled or written.
    """
    spec = read_spec(config)
    settings = _settings(config.base, spec)
    points, references = _points(config.base, spec, settings)
    problems = []
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        problems.append(
            "two points share a folder name (grid values equal to 6 significant digits); dedupe the grids"
        )
    plan = SweepPlan(config.base, spec, settings, points, references)
    problems += _validate_run_configs(plan, num_devices)
    if problems:
        raise SweepConfigError(problems)
    return plan


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
            **(
                {"seed": point.seed, "data.shuffle_seed": point.seed}
                if point.seed is not None
                else {}
            ),
            "train.target_loss": 0.0 if point.is_reference else float(target_loss),
            "train.eval_schedule": "hybrid",
            "train.expected_steps": point.expected_steps,
            "train.max_steps": point.max_steps,
            "train.max_tokens": 0,
            # The data size D of the scaling law in D: none when the target was given.
            "target.ref_tokens": s.ref_tokens if s.target_from_reference else 0,
            "target.ref_batch_size": s.ref_batch_size,
            "target.ref_steps": s.t_chin,
            "target.chinchilla_ratio": s.ratio,
        }
    )
    return out


def base_with_target_section(base: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy of ``base`` with the ``target`` section every run records (read by ``cbs.results``)."""
    c = _unlocked_copy(base)
    c.target = ml_collections.ConfigDict(section_to_dict(TargetSection()))
    return c


def run_config(plan: SweepPlan, point: Point, target_loss: float) -> ml_collections.ConfigDict:
    """The full run config of ``point`` (a reference run gets target 0 whatever ``target_loss`` is)."""
    c = base_with_target_section(plan.base)
    for key, value in run_overrides(point, target_loss).items():
        if "." in key:
            section, name = key.split(".")
            c[section][name] = value
        else:  # a top-level key (seed)
            c[key] = value
    return c


def _validate_run_configs(plan: SweepPlan, num_devices: int | None) -> list[str]:
    """Problems of the run configs, one line per distinct problem naming the runs it hits."""
    from bsjax import config as config_lib

    if num_devices is None:
        import jax

        num_devices = jax.device_count()
    runs_of: dict[str, list[str]] = {}
    checked = set()
    for point in plan.runs():
        key = (point.setting.model, point.batch_size)  # the other point values were range-checked
        if key in checked:
            continue
        checked.add(key)
        for problem in config_lib.validate(
            run_config(plan, point, plan.target_loss or 1.0), num_devices
        ):
            runs_of.setdefault(problem, []).append(point.name)
    out = []
    for problem, names in runs_of.items():
        if len(names) == len(checked):
            out.append(f"every run: {problem}")
        else:
            more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
            out.append(f"run {names[0]}{more}: {problem}")
    return out
