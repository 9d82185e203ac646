"""The ``batch.policy`` config section: defaults, validation, and the policy it builds.

``batch.policy.name`` picks the policy; each policy reads its own subsection
(``batch.policy.<name>``) plus the shared ladder keys:

- ``sizes``: the batch sizes an adaptive policy moves between, e.g.
  "64 128 256 512" (must hold the start size ``batch.batch_size``); "" means
  doubling from the start size up to ``max_batch_size``.
- ``max_batch_size``: top of the doubling ladder (0: 8 x the start size).

Policies other than "schedule" start from ``batch.batch_size`` (except
``wsd_es``, which starts at its first target's B_opt) and need
``batch.schedule = "constant"``: the fixed schedule keys belong to "schedule".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ml_collections

from bsjax.batching.buckets import bucket_for, enumerate_buckets
from bsjax.batching.controller import BatchPolicy, ScheduledPolicy
from bsjax.batching.errors import BatchConfigError
from bsjax.batching.parsing import parse_count, parse_count_list
from bsjax.batching.policies.common import Ladder
from bsjax.batching.policies.fsl import fsl_policy
from bsjax.batching.policies.noise_scale import NoiseScalePolicy
from bsjax.batching.policies.probe import ProbePolicy
from bsjax.batching.policies.seesaw import SeesawPolicy
from bsjax.batching.policies.wsd_es import (
    LossTargetPolicy,
    parse_loss_targets,
    token_stepped_policy,
)
from bsjax.batching.schedules import Schedule, schedule_from_config
from bsjax.sections import Section, option, section_to_dict, subsection

POLICY_NAMES = ("schedule", "noise_scale", "probe", "wsd_es", "fsl", "seesaw")
WSD_MODES = ("loss", "tokens")
DEFAULT_LADDER_SPAN = 8  # max_batch_size = 0 means 8 x the start size


@dataclasses.dataclass(frozen=True)
class NoiseScaleSection(Section):
    """``batch.policy.noise_scale``: batch = multiple x B_simple (McCandlish et al. 2018)."""

    multiple: float = option(1.0, "batch = multiple x B_simple")
    ema: float = option(0.95, "EMA decay of the |G|^2 and tr(Sigma) estimates, in [0, 1)")
    decide_every: int = option(10, "steps between decisions")
    warmup_steps: int = option(20, "estimates to collect before the first decision")
    hysteresis: float = option(0.25, "fraction past the geometric midpoint needed to move")
    patience: int = option(2, "decisions in a row that must propose the same move")
    allow_decrease: bool = option(False, "let the batch shrink")


@dataclasses.dataclass(frozen=True)
class ProbeSection(Section):
    """``batch.policy.probe``: branched local-CBS probes (Merrill et al. 2025)."""

    factors: str = option("1 2 4", "branch factors k (branches at k B), increasing from 1")
    eps: float = option(0.01, "k passes within eps of every smaller k's loss")
    eps_mode: str = option("relative", "eps is relative | absolute")
    probe_tokens: str = option("100K", "tokens each branch trains on")
    every_tokens: str = option("1M", "tokens between probes")
    start_tokens: str = option("", "tokens before the first probe ('': every_tokens)")
    cbs_over: float = option(2.0, "double B when the measured CBS > cbs_over x B")


@dataclasses.dataclass(frozen=True)
class WsdEsSection(Section):
    """``batch.policy.wsd_es``: batch growth from WSD E(S) fits (Zhou et al. 2026)."""

    mode: str = option("loss", "loss (cross target losses) | tokens (a token table)")
    targets: str = option("", "mode loss: 'loss:B_opt ...' pairs from a WSD sweep")
    table: str = option("", "mode tokens: '0:B1 2M:B2' token table")
    loss_key: str = option(
        "loss", "running loss: loss (EMA of train loss) | eval_loss | ewa_eval_loss"
    )
    ema: float = option(0.9, "EMA decay of the train loss (loss_key 'loss')")
    min_steps: int = option(0, "no switch before this step")


@dataclasses.dataclass(frozen=True)
class FslSection(Section):
    """``batch.policy.fsl``: the functional-scaling-law late switch (Wang et al. 2026)."""

    s: float = option(0.0, "FSL source exponent s (> 0)")
    beta: float = option(0.0, "FSL capacity exponent beta (> 1)")
    sigma2: float = option(1.0, "FSL noise level")
    lr: float = option(0.5, "FSL intrinsic time per step (the model's LR)")
    budget_examples: str = option("0", "the run's data budget in examples (e.g. 8M)")


@dataclasses.dataclass(frozen=True)
class PolicySection(Section):
    """``batch.policy``: which policy decides the batch size, its ladder and its settings.

    noise_scale, probe, wsd_es and fsl read their own subsection; seesaw has
    none (it doubles along the ladder where the LR schedule halves).
    """

    name: str = option(
        "schedule", "schedule (the fixed batch.schedule) | " + " | ".join(POLICY_NAMES[1:])
    )
    sizes: str = option(
        "", "ladder of batch sizes, e.g. '64 128 256' ('': doubling to max_batch_size)"
    )
    max_batch_size: int = option(0, "top of the doubling ladder (0: 8 x the start size)")
    noise_scale: NoiseScaleSection = subsection(NoiseScaleSection, "noise_scale policy settings")
    probe: ProbeSection = subsection(ProbeSection, "probe policy settings")
    wsd_es: WsdEsSection = subsection(WsdEsSection, "wsd_es policy settings")
    fsl: FslSection = subsection(FslSection, "fsl policy settings")


def default_policy_config() -> ml_collections.ConfigDict:
    """Defaults of ``batch.policy`` as a ConfigDict: name "schedule" (the fixed ``batch.schedule``)."""
    return ml_collections.ConfigDict(section_to_dict(PolicySection()))


_DEFAULTS = default_policy_config()
SECTION_KEYS = {
    name: frozenset(_DEFAULTS[name].keys()) for name in ("noise_scale", "probe", "wsd_es", "fsl")
}
TOP_KEYS = frozenset(_DEFAULTS.keys())


def _section(policy_cfg: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The policy's subsection with defaults filled in."""
    merged = dict(_DEFAULTS[name])
    merged.update(dict(policy_cfg.get(name) or {}))
    return merged


def _prefixed(problems: Sequence[str], prefix: str) -> list[str]:
    return [p if p.startswith("batch.") else f"{prefix}: {p}" for p in problems]


def ladder_from_config(policy_cfg: Mapping[str, Any] | None, start: int) -> Ladder:
    """The ladder of ``batch.policy.sizes`` / ``max_batch_size`` for a run starting at ``start``.

    Raises:
      BatchConfigError naming the key when the sizes are unreadable, unsorted,
      miss the start size, or ``max_batch_size`` is below it.
    """
    policy_cfg = {} if policy_cfg is None else policy_cfg
    spec = policy_cfg.get("sizes", "")
    if spec:
        try:
            sizes = parse_count_list(spec, name="batch.policy.sizes")
            ladder = Ladder(sizes, name="batch.policy.sizes")
        except BatchConfigError as err:
            raise BatchConfigError(_prefixed(err.problems, "batch.policy.sizes")) from None
        if start not in ladder.sizes:
            raise BatchConfigError(
                f"batch.policy.sizes: {ladder.sizes} must include the start "
                f"size batch.batch_size={start}"
            )
        return ladder
    top = policy_cfg.get("max_batch_size", 0)
    if isinstance(top, bool) or not isinstance(top, int) or top < 0:
        raise BatchConfigError(
            f"batch.policy.max_batch_size must be an int >= 0 (0: "
            f"{DEFAULT_LADDER_SPAN} x the start size), got {top!r}"
        )
    if top and top < start:
        raise BatchConfigError(
            f"batch.policy.max_batch_size={top} is below the start size batch.batch_size={start}"
        )
    return Ladder.doubling(start, top or DEFAULT_LADDER_SPAN * start)


def _count(value: Any, key: str, *, positive: bool = True) -> int:
    n = parse_count(value, name=key)
    if n < (1 if positive else 0):
        raise BatchConfigError(f"{key} must be {'positive' if positive else '>= 0'}, got {value!r}")
    return n


def _build_noise_scale(batch_cfg, policy_cfg, start, sizes, ctx_len, data_shards, lr_schedule):
    c = _section(policy_cfg, "noise_scale")
    ladder = Ladder(sizes) if sizes is not None else ladder_from_config(policy_cfg, start)
    buckets = None
    if data_shards:
        try:
            buckets = enumerate_buckets(
                ladder.sizes,
                data_shards,
                batch_cfg.get("micro_batch_per_device", 16),
                batch_cfg.get("max_accum_steps", 0) or None,
            )
        except BatchConfigError:
            buckets = None  # reported by the bucket check of validation
    return NoiseScalePolicy(
        ladder,
        start,
        multiple=c["multiple"],
        ema=c["ema"],
        decide_every=c["decide_every"],
        warmup_steps=c["warmup_steps"],
        hysteresis=c["hysteresis"],
        patience=c["patience"],
        allow_decrease=c["allow_decrease"],
        buckets=buckets,
    )


def _build_probe(batch_cfg, policy_cfg, start, sizes, ctx_len, data_shards, lr_schedule):
    c = _section(policy_cfg, "probe")
    ladder = Ladder(sizes) if sizes is not None else ladder_from_config(policy_cfg, start)
    problems = []
    values = {}
    for key in ("probe_tokens", "every_tokens"):
        try:
            values[key] = _count(c[key], f"batch.policy.probe.{key}")
        except BatchConfigError as err:
            problems += err.problems
    start_tokens = None
    if c["start_tokens"] not in ("", None):
        try:
            start_tokens = _count(
                c["start_tokens"], "batch.policy.probe.start_tokens", positive=False
            )
        except BatchConfigError as err:
            problems += err.problems
    try:
        factors = parse_count_list(c["factors"], name="batch.policy.probe.factors")
    except BatchConfigError as err:
        problems += err.problems
        factors = []
    if problems:
        raise BatchConfigError(problems)
    return ProbePolicy(
        ladder,
        start,
        ctx_len=ctx_len,
        factors=factors,
        probe_tokens=values["probe_tokens"],
        every_tokens=values["every_tokens"],
        start_tokens=start_tokens,
        eps=c["eps"],
        eps_mode=c["eps_mode"],
        cbs_over=c["cbs_over"],
        lr_rule=batch_cfg.get("lr_scaling", "none"),
    )


def _build_wsd_es(batch_cfg, policy_cfg, start, sizes, ctx_len, data_shards, lr_schedule):
    c = _section(policy_cfg, "wsd_es")
    if c["mode"] == "tokens":
        return token_stepped_policy(c["table"])
    if c["mode"] != "loss":
        raise BatchConfigError(
            f"batch.policy.wsd_es.mode: unknown mode {c['mode']!r}; "
            f"expected one of {', '.join(WSD_MODES)}"
        )
    targets = parse_loss_targets(c["targets"], name="batch.policy.wsd_es.targets")
    return LossTargetPolicy(targets, loss_key=c["loss_key"], ema=c["ema"], min_steps=c["min_steps"])


def _build_fsl(batch_cfg, policy_cfg, start, sizes, ctx_len, data_shards, lr_schedule):
    c = _section(policy_cfg, "fsl")
    ladder = Ladder(sizes) if sizes is not None else ladder_from_config(policy_cfg, start)
    phases = [B for B in ladder.sizes if start <= B]
    budget = parse_count(c["budget_examples"], name="batch.policy.fsl.budget_examples")
    if budget <= 0:
        raise BatchConfigError(
            "batch.policy.fsl.budget_examples must be set to the run's data "
            "budget in examples (e.g. train.max_tokens / model.ctx_len), got "
            f"{c['budget_examples']!r}"
        )
    if len(phases) < 2:
        raise BatchConfigError(
            f"batch.policy.sizes: fsl needs at least two phase sizes from "
            f"batch.batch_size={start} on, got {phases}"
        )
    return fsl_policy(
        phases, budget, ctx_len=ctx_len, s=c["s"], beta=c["beta"], sigma2=c["sigma2"], lr=c["lr"]
    )


def _build_seesaw(batch_cfg, policy_cfg, start, sizes, ctx_len, data_shards, lr_schedule):
    ladder = Ladder(sizes) if sizes is not None else ladder_from_config(policy_cfg, start)
    _check_doubling(ladder, start)
    if lr_schedule is None:
        raise BatchConfigError(
            "batch.policy.name='seesaw' needs the LR schedule: pass "
            "lr_schedule=bsjax.optim.lr_schedule_from_config(config.optim)"
        )
    return SeesawPolicy(lr_schedule, start, ladder.largest)


def _check_doubling(ladder: Ladder, start: int) -> None:
    expected = [start * 2**i for i in range(len(ladder))]
    if ladder.sizes != expected:
        raise BatchConfigError(
            f"batch.policy.sizes: seesaw doubles the batch at each step, so "
            f"the ladder must be {expected[:4]}..., got {ladder.sizes}"
        )


_BUILDERS: dict[str, Callable[..., BatchPolicy]] = {
    "noise_scale": _build_noise_scale,
    "probe": _build_probe,
    "wsd_es": _build_wsd_es,
    "fsl": _build_fsl,
    "seesaw": _build_seesaw,
}


def policy_from_config(
    batch_cfg: Mapping[str, Any],
    schedule: Schedule | None = None,
    sizes: Sequence[int] | None = None,
    *,
    ctx_len: int,
    data_shards: int | None = None,
    lr_schedule: Any = None,
) -> BatchPolicy:
    """The policy ``batch_cfg.policy.name`` names, built from its section.

    Args:
      batch_cfg: the ``batch`` config section (``policy`` may be missing: "schedule").
      schedule: the fixed schedule of ``batch_cfg`` (built here when None);
        "schedule" wraps it, the others take their start size from it.
      sizes: a ladder to use instead of ``batch.policy.sizes`` / ``max_batch_size``.
      ctx_len: tokens per sequence (token-keyed tables, branch step counts).
      data_shards: data-parallel width; with it, noise_scale knows each size's
        (K, M) when the trainer's metrics do not say.
      lr_schedule: ``bsjax.optim.LRSchedule`` (anything with ``halving_tokens()``,
        ``peak_lr``, ``warmup_tokens``); seesaw needs it.

    Raises:
      BatchConfigError listing the problems, each naming its key.
    """
    policy_cfg = batch_cfg.get("policy")
    policy_cfg = {} if policy_cfg is None else policy_cfg
    name = policy_cfg.get("name", "schedule")
    if schedule is None:
        schedule = schedule_from_config(batch_cfg)
    if name == "schedule":
        return ScheduledPolicy(schedule)
    if name not in _BUILDERS:
        raise BatchConfigError(
            f"batch.policy.name: unknown policy {name!r}; expected one of {', '.join(POLICY_NAMES)}"
        )
    try:
        return _BUILDERS[name](
            batch_cfg,
            policy_cfg,
            schedule.batch_size_at(0),
            None if sizes is None else list(sizes),
            ctx_len,
            data_shards,
            lr_schedule,
        )
    except BatchConfigError as err:
        raise BatchConfigError(_prefixed(err.problems, f"batch.policy.{name}")) from None


def _key_problems(policy_cfg: Mapping[str, Any]) -> list[str]:
    problems = [
        f"batch.policy.{key}: unknown key; known keys: {', '.join(sorted(TOP_KEYS))}"
        for key in sorted(set(policy_cfg.keys()) - TOP_KEYS)
    ]
    for section, known in SECTION_KEYS.items():
        sub = policy_cfg.get(section)
        if sub is None:
            continue
        problems += [
            f"batch.policy.{section}.{key}: unknown key; known keys: {', '.join(sorted(known))}"
            for key in sorted(set(sub.keys()) - known)
        ]
    return problems


def _noise_scale_accum_problems(policy: NoiseScalePolicy, batch_cfg, data_shards: int) -> list[str]:
    """The estimator needs K >= 2 micro-steps at every ladder size."""
    micro = batch_cfg.get("micro_batch_per_device", 16)
    max_accum = batch_cfg.get("max_accum_steps", 0) or None
    single = []
    for B in policy.ladder.sizes:
        try:
            if bucket_for(B, data_shards, micro, max_accum).K < 2:
                single.append(B)
        except BatchConfigError:
            continue  # the bucket check reports it
    if not single:
        return []
    fix = min(single) // (2 * data_shards)
    remedy = (
        f"set batch.micro_batch_per_device <= {fix}"
        if fix >= 1
        else f"the smallest size must be at least {2 * data_shards} (two micro-steps on "
        f"{data_shards} data shards)"
    )
    return [
        f"batch.policy.name='noise_scale' measures the noise scale from >= 2 micro-steps "
        f"per step, but batch sizes {single} run as one micro-step (K=1) with "
        f"batch.micro_batch_per_device={micro} on {data_shards} data shards; {remedy}"
    ]


def _sizes_key(policy_cfg: Mapping[str, Any], name: str) -> str:
    """The key a policy's batch sizes come from, for messages."""
    if name == "wsd_es":
        mode = _section(policy_cfg, "wsd_es")["mode"]
        return "batch.policy.wsd_es.table" if mode == "tokens" else "batch.policy.wsd_es.targets"
    key = "batch.policy.sizes" if policy_cfg.get("sizes", "") else "batch.policy.max_batch_size"
    return f"{key} (policy {name!r})"


def validate_policy_config(
    batch_cfg: Mapping[str, Any], ctx_len: int, data_shards: int, *, lr_schedule: Any = None
) -> list[str]:
    """Every problem of ``batch.policy``, one message each; [] when it is usable.

    Checks unknown keys, the chosen policy's section (by building it), that
    every size it may ask for (branches included) fits a shape bucket, that
    noise_scale gets K >= 2 micro-steps at every size, that the fixed schedule
    keys are left alone by adaptive policies, and that seesaw is not combined
    with an LR scaling rule (it sets the LR itself). Seesaw's sizes depend on
    the LR schedule; without ``lr_schedule`` only its ladder is checked. (The
    probe's branch LRs follow ``batch.lr_scaling``: "sqrt" is the paper's rule.)
    """
    policy_cfg = batch_cfg.get("policy")
    if policy_cfg is None:
        return []
    problems = _key_problems(policy_cfg)
    name = policy_cfg.get("name", "schedule")
    if name not in POLICY_NAMES:
        return problems + [
            f"batch.policy.name: unknown policy {name!r}; expected one of {', '.join(POLICY_NAMES)}"
        ]
    if name == "schedule":
        return problems
    if batch_cfg.get("schedule", "constant") != "constant":
        problems.append(
            f"batch.schedule={batch_cfg.get('schedule')!r} is for "
            f"batch.policy.name='schedule'; policy {name!r} sets the sizes itself "
            f"(from batch.batch_size): set batch.schedule='constant'"
        )
        return problems
    try:
        schedule = schedule_from_config(batch_cfg)
    except BatchConfigError:
        return problems  # the schedule check reports it
    start = schedule.batch_size_at(0)
    if name == "seesaw" and batch_cfg.get("lr_scaling", "none") != "none":
        problems.append(
            f"batch.lr_scaling={batch_cfg.get('lr_scaling')!r} with "
            f"batch.policy.name='seesaw': seesaw sets the LR itself (x 1/sqrt(2) per "
            f"doubling); set batch.lr_scaling='none'"
        )
    policy = None
    try:
        if name == "seesaw" and lr_schedule is None:
            ladder = ladder_from_config(policy_cfg, start)
            _check_doubling(ladder, start)
            sizes = ladder.sizes
        else:
            policy = policy_from_config(
                batch_cfg,
                schedule,
                ctx_len=ctx_len,
                data_shards=data_shards,
                lr_schedule=lr_schedule,
            )
            sizes = policy.candidate_sizes()
    except BatchConfigError as err:
        return problems + _prefixed(err.problems, f"batch.policy.{name}")
    micro = batch_cfg.get("micro_batch_per_device", 16)
    max_accum = batch_cfg.get("max_accum_steps", 0) or None
    if isinstance(micro, int) and micro > 0 and isinstance(data_shards, int) and data_shards > 0:
        try:
            enumerate_buckets(sizes, data_shards, micro, max_accum)
        except BatchConfigError as err:
            problems += _prefixed(err.problems, _sizes_key(policy_cfg, name))
        except TypeError:
            pass
        if isinstance(policy, NoiseScalePolicy):
            problems += _noise_scale_accum_problems(policy, batch_cfg, data_shards)
    return problems
