"""The sweep section of a sweep config: defaults, and the checked values a plan is built from.

A sweep config has two sections: ``base``, a full run config
(``bsjax.config.base_config()``), and ``sweep``, whose keys
:func:`default_sweep_section` documents. :func:`read_spec` checks both before
anything is built, and raises one :class:`SweepConfigError` naming every bad key.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import ml_collections

from bsjax.errors import ProblemsError

RULES = ("grid", "half_life", "table", "table4")
ANALYSIS_KEYS = ("b_opt", "overhead", "alpha", "bootstrap", "seed")


class SweepConfigError(ProblemsError):
    """A sweep that cannot run; the message lists every problem, each naming its key."""

    heading = "invalid sweep"


def default_sweep_section() -> ml_collections.ConfigDict:
    """The ``sweep`` section of a sweep config, with the paper's defaults where it gives one.

    - batch_sizes: global batch sizes (sequences) to measure.
    - lr, b2, ewa_tau: grids (a tuple, or one value); every combination is a run.
    - b2_rule / ewa_tau_rule: "grid" (the values as given), "half_life" (each
      value holds at reference_batch_size and becomes ``v ** (B / B_ref)`` at
      batch B, keeping the half-life in tokens fixed), "table" (one value per
      batch size from b2_table / ewa_tau_table, "B:value B:value", the entry
      with the largest B at or below the run's; the paper's Table 4 style), or
      "table4" (the paper's Table 4 values for the run's model preset, 85M to
      1.2B, from ``bsjax.batching.paper_tables``; its batch-64 row below 64).
    - warmup_fraction: grid of warm-up lengths as fractions of the reference
      run's tokens (paper: 0.25 of t_chin); or warmup_tokens: grid in tokens
      (set one of the two, the other empty).
    - reference_batch_size: B_ref of the reference run (paper: 256).
    - chinchilla_ratio: tokens per non-embedding parameter of the reference
      run (paper: about 20); a tuple gives one setting (reference, target,
      curve) per ratio.
    - models: "" for the base model, or "key=value,..." overrides of the
      ``model`` section (e.g. "d_model=64,n_layers=4" or "preset=302M"); one
      setting per model. Run folders carry a setting prefix (model and ratio)
      unless the sweep has the base model only, at one ratio.
    - seeds: () trains each point once with the base config's seeds; (0, 1, 2)
      trains each point once per seed (``seed`` and ``data.shuffle_seed`` both
      set to it; folders end in ``_s<seed>``). The fit then resamples seeds
      within each batch size for its interval. The reference run keeps the base
      seeds.
    - target_loss: 0 takes the target from the reference run; > 0 uses it as is.
    - max_steps_factor: a run gives up after this many times its expected steps.
    - min_expected_steps: floor of the expected steps of large batch sizes.
    - print_commands: print the cluster commands and train nothing.
    - executor, parallel, retry_failed, slurm: how the runs are launched
      (``bsjax.cbs.sweep.executors`` documents and checks these keys).
    - analysis: options of the report: b_opt (0: reference_batch_size),
      overhead (rho, paper 0.2), alpha ("1" or "fit"), bootstrap resamples, seed.
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
            seeds=(),
            target_loss=0.0,
            max_steps_factor=4.0,
            min_expected_steps=100,
            print_commands=False,
            # Launch keys, checked by bsjax.cbs.sweep.executors (not part of the plan).
            executor="local",
            parallel=0,
            retry_failed=False,
            slurm=dict(SLURM_DEFAULTS),
            analysis=dict(b_opt=0.0, overhead=0.2, alpha="1", bootstrap=1000, seed=0),
        )
    )


# The sweep.slurm keys and their defaults (bsjax.cbs.sweep.executors checks and uses them).
SLURM_DEFAULTS: dict[str, Any] = dict(
    cluster="slurm",
    partition="",
    timeout_min=240,
    gpus_per_node=0,
    cpus_per_task=0,
    mem_gb=0,
    array_parallelism=0,
    setup="",
)

# One line per key of the sweep section (``bsjax sweep --help`` shows them).
SWEEP_KEY_HELP = {
    "batch_sizes": "global batch sizes (sequences) to measure",
    "lr": "grid of peak learning rates (a tuple, or one value)",
    "b2": "grid of Adam beta2 values (with b2_rule 'grid' or 'half_life')",
    "ewa_tau": "grid of EWA decays tau (with ewa_tau_rule 'grid' or 'half_life')",
    "b2_rule": "grid (values as given) | half_life (v at B_ref, v**(B/B_ref) at B) | table",
    "ewa_tau_rule": "grid | half_life | table, as b2_rule",
    "b2_table": "b2_rule 'table': 'B:value ...' (the entry at or below each B), or a preset name",
    "ewa_tau_table": "ewa_tau_rule 'table': 'B:value ...', or a preset name",
    "warmup_fraction": "grid of warm-up lengths as fractions of the reference run's tokens",
    "warmup_tokens": "grid of warm-up lengths in tokens (instead of warmup_fraction)",
    "reference_batch_size": "B_ref of the reference run that sets the target (paper: 256)",
    "chinchilla_ratio": "tokens per non-embedding parameter of the reference run (a tuple: one "
    "setting per ratio)",
    "models": "'' for the base model, or 'key=value,...' model overrides (one setting each)",
    "seeds": "() one run per point; (0, 1, 2) one per seed (seed and data.shuffle_seed)",
    "target_loss": "0: the reference run's EWA loss at its Chinchilla step; > 0: this target",
    "max_steps_factor": "a run gives up (censored) after this many times its expected steps",
    "min_expected_steps": "floor of the expected steps of large batch sizes",
    "print_commands": "print the cluster commands and train nothing",
    "executor": "local (subprocesses of this machine) | slurm (through submitit)",
    "parallel": "local runs at once (0: one per free device group)",
    "retry_failed": "train runs that failed before again (else they are reported and skipped)",
    "slurm.cluster": "submitit cluster: slurm, or local/debug to test the path",
    "slurm.partition": "Slurm partition ('' : the cluster's default)",
    "slurm.timeout_min": "wall-time limit of each job in minutes",
    "slurm.gpus_per_node": "GPUs per job (0: none)",
    "slurm.cpus_per_task": "CPUs per job (0: the cluster's default)",
    "slurm.mem_gb": "memory per job in GB (0: the cluster's default)",
    "slurm.array_parallelism": "most jobs of the array running at once (0: no limit)",
    "slurm.setup": "shell lines run before each job, ';'-separated (module load, venv)",
    "analysis.b_opt": "B_opt of the CBS definition (0: reference_batch_size)",
    "analysis.overhead": "rho, the allowed step overhead over linear scaling (paper: 0.2)",
    "analysis.alpha": "'1' or 'fit': the exponent of Y(B)",
    "analysis.bootstrap": "bootstrap resamples of the confidence intervals",
    "analysis.seed": "seed of the bootstrap",
}


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


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """The checked values of a sweep section."""

    batch_sizes: tuple[int, ...]
    lr: tuple[float, ...]
    b2: tuple[float, ...]
    ewa_tau: tuple[float, ...]
    b2_rule: str
    ewa_tau_rule: str
    tables: dict[str, dict[int, float]]  # "b2" / "ewa_tau" -> batch size -> value, for rule "table"
    warmup_tokens: tuple[int, ...]  # one of these two is empty
    warmup_fraction: tuple[float, ...]
    reference_batch_size: int
    ratios: tuple[float, ...]
    models: tuple[tuple[tuple[str, Any], ...], ...]  # model-section overrides per model
    seeds: tuple[int, ...]  # () : one run per point with the base config's seeds
    target_loss: float
    max_steps_factor: float
    min_expected_steps: int
    print_commands: bool
    analysis: dict[str, Any]


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def table_value(table: Mapping[int, float], batch_size: int) -> float | None:
    """The entry with the largest batch size at or below ``batch_size`` (None if there is none)."""
    keys = [b for b in table if b <= batch_size]
    return table[max(keys)] if keys else None


def _check_grid(
    sweep, key: str, ok: Callable[[Any], bool], wanted: str, problems: list[str]
) -> tuple:
    """The values of grid ``sweep.<key>`` (a tuple or one value); () with a problem if any fails ``ok``."""
    values = _as_list(sweep[key])
    if not values or not all(ok(v) for v in values):
        problems.append(f"sweep.{key}={values!r} must be a non-empty tuple of {wanted}")
        return ()
    return tuple(values)


def _parse_table(text: str, key: str, problems: list[str]) -> dict[int, float]:
    table: dict[int, float] = {}
    for entry in str(text).split():
        try:
            b, v = entry.split(":")
            table[int(b)] = float(v)
        except ValueError:
            problems.append(
                f"sweep.{key}: entry {entry!r} is not 'B:value' (e.g. '64:0.999 1024:0.95')"
            )
            return {}
    if not table:
        problems.append(f"sweep.{key} is empty; give entries like '64:0.999 1024:0.95'")
    elif any(not 0 <= v < 1 for v in table.values()):
        problems.append(f"sweep.{key}: values must be in [0, 1)")
        return {}
    return table


def _parse_model_spec(
    spec: str, model_keys: Iterable[str], problems: list[str]
) -> tuple[tuple[str, Any], ...]:
    """'d_model=64,n_layers=4' -> (('d_model', 64), ('n_layers', 4))."""
    out = []
    known = set(model_keys)
    for part in str(spec).split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, raw = part.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or key not in known:
            problems.append(
                f"sweep.models: {part!r} is not 'key=value' with a key of the model section "
                f"({', '.join(sorted(known))})"
            )
            continue
        try:
            value: Any = int(raw)
        except ValueError:
            value = raw
        out.append((key, value))
    return tuple(out)


def _rules(sweep, sizes, problems) -> dict[str, dict[int, float]]:
    tables: dict[str, dict[int, float]] = {}
    for key, rule_key, table_key in (
        ("b2", "b2_rule", "b2_table"),
        ("ewa_tau", "ewa_tau_rule", "ewa_tau_table"),
    ):
        rule = sweep[rule_key]
        if rule not in RULES:
            problems.append(f"sweep.{rule_key}={rule!r} must be one of {', '.join(RULES)}")
        elif rule == "table":
            table = _parse_table(sweep[table_key], table_key, problems)
            below = [b for b in sizes if table and table_value(table, b) is None]
            if below:
                problems.append(
                    f"sweep.{table_key} has no entry at or below batch size {min(below)}; "
                    f"add one like '{min(below)}:VALUE'"
                )
            tables[key] = table
        elif sweep[table_key]:
            problems.append(
                f"sweep.{table_key} is set but sweep.{rule_key}={rule!r}; set {rule_key}='table'"
            )
    return tables


def _check_analysis(analysis: dict) -> list[str]:
    problems = []
    for key in sorted(set(analysis) - set(ANALYSIS_KEYS)):
        problems.append(
            f"sweep.analysis.{key}: unknown key; known keys: {', '.join(ANALYSIS_KEYS)}"
        )
    if not (_is_number(analysis.get("b_opt")) and analysis["b_opt"] >= 0):
        problems.append(
            f"sweep.analysis.b_opt={analysis.get('b_opt')!r} must be >= 0 (0: the reference batch size)"
        )
    if not (_is_number(analysis.get("overhead")) and analysis["overhead"] > 0):
        problems.append(
            f"sweep.analysis.overhead={analysis.get('overhead')!r} must be > 0 (paper: 0.2)"
        )
    alpha = str(analysis.get("alpha")).strip().lower()
    try:
        if alpha != "fit" and not float(alpha) > 0:
            raise ValueError
    except ValueError:
        problems.append(
            f"sweep.analysis.alpha={analysis.get('alpha')!r} must be 'fit' or a number > 0"
        )
    if not (_is_int(analysis.get("bootstrap")) and analysis["bootstrap"] >= 0):
        problems.append(
            f"sweep.analysis.bootstrap={analysis.get('bootstrap')!r} must be an int >= 0"
        )
    if not _is_int(analysis.get("seed")):
        problems.append(f"sweep.analysis.seed={analysis.get('seed')!r} must be an int")
    return problems


def _check_base(base) -> list[str]:
    """The run-config choices the protocol needs: a constant LR and one fixed batch size per run."""
    problems = []
    o, b = base.optim, base.batch
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
    return problems


def read_spec(config: ml_collections.ConfigDict) -> SweepSpec:
    """Check a sweep config's sections; raises :class:`SweepConfigError` listing every problem."""
    missing = [s for s in ("base", "sweep") if s not in config]
    if missing:
        raise SweepConfigError(
            [
                f"the sweep config has no '{s}' section; build it with bsjax.cbs.sweep.sweep_config(base)"
                for s in missing
            ]
        )
    base, sweep = config.base, config.sweep
    known = set(default_sweep_section().keys())
    problems = [
        f"sweep.{k}: unknown key; known keys: {', '.join(sorted(known))}"
        for k in sorted(set(sweep) - known)
    ]
    problems += [
        f"sweep.{k} is missing (see default_sweep_section())" for k in sorted(known - set(sweep))
    ]
    if problems:
        raise SweepConfigError(problems)

    sizes = _as_list(sweep.batch_sizes)
    if not sizes or not all(_is_int(b) and b > 0 for b in sizes) or len(set(sizes)) != len(sizes):
        problems.append(
            f"sweep.batch_sizes={sizes!r} must be a non-empty tuple of distinct ints > 0"
        )
        sizes = []
    in_unit = lambda v: _is_number(v) and 0 <= v < 1  # noqa: E731
    lrs = _check_grid(sweep, "lr", lambda v: _is_number(v) and v > 0, "numbers > 0", problems)
    b2s = _check_grid(sweep, "b2", in_unit, "numbers in [0, 1)", problems)
    taus = _check_grid(sweep, "ewa_tau", in_unit, "numbers in [0, 1)", problems)
    tables = _rules(sweep, sizes, problems)
    b_ref = sweep.reference_batch_size
    if not (_is_int(b_ref) and b_ref > 0):
        problems.append(f"sweep.reference_batch_size={b_ref!r} must be an int > 0")

    wu_tokens, wu_fraction = _as_list(sweep.warmup_tokens), _as_list(sweep.warmup_fraction)
    if bool(wu_tokens) == bool(wu_fraction):
        problems.append(
            "set exactly one of sweep.warmup_fraction (fractions of the reference tokens) and "
            f"sweep.warmup_tokens; got warmup_fraction={wu_fraction!r}, warmup_tokens={wu_tokens!r}"
        )
    elif wu_tokens:
        wu_tokens = _check_grid(
            sweep, "warmup_tokens", lambda v: _is_int(v) and v >= 0, "ints >= 0", problems
        )
    else:
        wu_fraction = _check_grid(
            sweep,
            "warmup_fraction",
            lambda v: _is_number(v) and 0 <= v <= 1,
            "fractions in [0, 1]",
            problems,
        )

    ratios = _as_list(sweep.chinchilla_ratio)
    if not ratios or not all(_is_number(r) and r > 0 for r in ratios):
        problems.append(
            f"sweep.chinchilla_ratio={sweep.chinchilla_ratio!r} must be a number > 0 (or a tuple of them)"
        )
    seeds = _as_list(sweep.get("seeds", ()))
    if not all(_is_int(v) and v >= 0 for v in seeds) or len(set(seeds)) != len(seeds):
        problems.append(
            f"sweep.seeds={seeds!r} must be distinct ints >= 0 (or () for the base config's seed)"
        )
        seeds = []
    target = sweep.target_loss
    if not (_is_number(target) and target >= 0):
        problems.append(f"sweep.target_loss={target!r} must be >= 0 (0: from the reference run)")
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
    models = tuple(
        _parse_model_spec(spec, base.model.keys(), problems)
        for spec in _as_list(sweep.models) or [""]
    )
    if len(set(models)) != len(models):
        problems.append(f"sweep.models={list(sweep.models)!r} lists a model twice")
    problems += _check_base(base)
    if problems:
        raise SweepConfigError(problems)
    return SweepSpec(
        tuple(sizes),
        lrs,
        b2s,
        taus,
        sweep.b2_rule,
        sweep.ewa_tau_rule,
        tables,
        tuple(wu_tokens),
        tuple(wu_fraction),
        b_ref,
        tuple(float(r) for r in ratios),
        models,
        tuple(seeds),
        float(target),
        float(factor),
        floor,
        sweep.print_commands,
        analysis,
    )
