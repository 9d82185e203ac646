"""The ``batch`` config section: defaults, validation, and the resolved BatchPlan."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import ml_collections

from bsjax.batching.buckets import enumerate_buckets
from bsjax.batching.controller import OFF_BUCKET_MODES
from bsjax.batching.coupling import Coupling, DecayRule
from bsjax.batching.errors import BatchConfigError
from bsjax.batching.plan import BatchPlan
from bsjax.batching.policies.config import PolicySection, resolve_policy
from bsjax.batching.schedules import schedule_from_config
from bsjax.sections import Section, option, section_to_dict, subsection


@dataclasses.dataclass(frozen=True)
class BatchSection(Section):
    """The ``batch`` section: the global batch size over the run and what moves with it.

    Token counts are strings with optional K/M/B/T suffixes ("2M", "1.5B").
    Validation needs the context length, the data shards and the optimizer's
    bases, so it lives in ``validate_batch_config`` / ``plan_from_config``.
    """

    schedule: str = option("constant", "fixed schedule: constant | table | ramp | doubling")
    batch_size: int = option(
        64, "global batch in sequences (constant size; start of ramp/doubling)"
    )
    table: str = option("", "schedule 'table': token key : batch size, e.g. '0:64 2M:128'")
    ramp_increment: int = option(0, "schedule 'ramp': sequences added per increment")
    ramp_tokens: str = option("0", "schedule 'ramp': tokens over which the ramp reaches ramp_end")
    ramp_end: int = option(0, "schedule 'ramp': final batch size")
    doubling_tokens: str = option(
        "", "schedule 'doubling': token counts at which B doubles, e.g. '1M 4M'"
    )

    def check(self, path: str = "batch") -> list[str]:
        """Keys of one schedule kind given while another kind is chosen: they would be ignored."""
        used_by = dict(
            table=("table",),
            ramp_increment=("ramp",),
            ramp_tokens=("ramp",),
            ramp_end=("ramp",),
            doubling_tokens=("doubling",),
        )
        problems = []
        for key, kinds in used_by.items():
            if self.schedule not in kinds and self[key] != BatchSection()[key]:
                problems.append(
                    f"{path}.{key}={self[key]!r} is set but {path}.schedule={self.schedule!r} "
                    f"ignores it; set {path}.schedule={kinds[0]!r} or leave {path}.{key} out"
                )
        return problems

    micro_batch_per_device: int = option(16, "most sequences one device holds per micro-step")
    max_accum_steps: int = option(0, "most micro-steps per optimizer step (0: no limit)")
    lr_scaling: str = option(
        "none", "LR scaling with B relative to base_batch_size: none | sqrt | linear"
    )
    base_batch_size: int = option(
        0, "batch size at which the optimizer's LR/beta2/tau hold (0: the first)"
    )
    beta2_rule: str = option(
        "fixed", "Adam beta2 with B: fixed | table | half_life | table:<85M|151M|302M|604M|1.2B>"
    )
    beta2_table: str = option("", "beta2 table 'B:value ...' or a paper Table 4 preset name")
    tau_rule: str = option("fixed", "EWA tau with B: fixed | table | half_life | table:<preset>")
    tau_table: str = option("", "tau table 'B:value ...' or a paper Table 4 preset name")
    off_bucket: str = option(
        "round", "a policy's size without a bucket: round (down, warned) | error"
    )
    policy: PolicySection = subsection(PolicySection, "the batch-size policy (batch.policy.name)")


def default_batch_config() -> ml_collections.ConfigDict:
    """Defaults of the ``batch`` section as a ConfigDict (see ``BatchSection`` for each key)."""
    return ml_collections.ConfigDict(section_to_dict(BatchSection()))


KNOWN_KEYS = frozenset(default_batch_config().keys())


def _positive_int(value: Any, name: str, *, allow_zero: bool = False) -> list[str]:
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        return [f"{name}: must be an int >= {low}, got {value!r}"]
    return []


def _decay_coverage(rule: DecayRule, sizes: list[int]) -> list[str]:
    if rule.rule != "table":
        return []
    smallest = min(rule.table)
    below = [B for B in sizes if smallest > B]
    if not below:
        return []
    return [
        f"{rule.name}_table: no entry at or below batch size {below[0]} that the schedule "
        f"reaches (smallest entry is {smallest}); add an entry like '{below[0]}:VALUE'"
    ]


def _resolve(
    batch_cfg: Mapping[str, Any],
    ctx_len: int,
    data_shards: int,
    *,
    base_b2: float | None,
    base_ewa_tau: float | None,
    lr_schedule: Any,
    build_plan: bool,
) -> tuple[BatchPlan | None, list[str]]:
    """The plan (None when anything is wrong) and every problem, with the policy built once."""
    problems: list[str] = []
    unknown = sorted(set(batch_cfg.keys()) - KNOWN_KEYS)
    for key in unknown:
        problems.append(f"batch.{key}: unknown key; known keys: {', '.join(sorted(KNOWN_KEYS))}")
    problems += _positive_int(ctx_len, "ctx_len")
    shard_problems = _positive_int(data_shards, "data_shards")
    problems += shard_problems
    micro = batch_cfg.get("micro_batch_per_device", 16)
    max_accum = batch_cfg.get("max_accum_steps", 0)
    bucket_problems = _positive_int(micro, "micro_batch_per_device") + _positive_int(
        max_accum, "max_accum_steps", allow_zero=True
    )
    problems += bucket_problems

    schedule = None
    try:
        schedule = schedule_from_config(batch_cfg)
    except BatchConfigError as err:
        problems += err.problems
    if schedule is not None and not bucket_problems and not shard_problems:
        try:
            enumerate_buckets(schedule.sizes(), data_shards, micro, max_accum or None)
        except BatchConfigError as err:
            problems += err.problems

    try:
        coupling = Coupling.from_config(
            batch_cfg,
            base_b2=base_b2,
            base_ewa_tau=base_ewa_tau,
            check_bases=False,
            first_batch_size=None if schedule is None else schedule.batch_size_at(0),
        )
    except BatchConfigError as err:
        # A broken schedule already reported itself; do not repeat it.
        problems += [p for p in err.problems if p not in problems]
    else:
        if schedule is not None:
            problems += _decay_coverage(coupling.beta2, schedule.sizes())
            problems += _decay_coverage(coupling.tau, schedule.sizes())

    off_bucket = batch_cfg.get("off_bucket", "round")
    if off_bucket not in OFF_BUCKET_MODES:
        problems.append(
            f"off_bucket: unknown mode {off_bucket!r}; expected one of "
            f"{', '.join(OFF_BUCKET_MODES)}"
        )
    if schedule is None or bucket_problems or shard_problems or _positive_int(ctx_len, "ctx_len"):
        return None, problems
    policy, policy_problems = resolve_policy(
        batch_cfg,
        schedule,
        ctx_len=ctx_len,
        data_shards=data_shards,
        lr_schedule=lr_schedule,
        lr_schedule_required=build_plan,
    )
    problems += policy_problems
    if problems or policy is None or not build_plan:
        return None, problems  # validation leaves the bases of half_life rules open
    # A policy whose sizes are fixed in advance gives the plan its schedule.
    schedule = policy.planned_schedule() or schedule
    try:
        coupling = Coupling.from_config(
            batch_cfg,
            base_b2=base_b2,
            base_ewa_tau=base_ewa_tau,
            first_batch_size=policy.initial_batch_size(),
        )
    except BatchConfigError as err:
        return None, err.problems
    plan = BatchPlan(
        schedule=schedule,
        policy=policy,
        buckets=enumerate_buckets(policy.candidate_sizes(), data_shards, micro, max_accum or None),
        coupling=coupling,
        ctx_len=ctx_len,
        data_shards=data_shards,
        off_bucket=off_bucket,
    )
    return plan, []


def validate_batch_config(
    batch_cfg: Mapping[str, Any],
    ctx_len: int,
    data_shards: int,
    *,
    base_b2: float | None = None,
    base_ewa_tau: float | None = None,
    lr_schedule: Any = None,
) -> list[str]:
    """Every problem in the batch section, one message each; [] when it is usable.

    Checks: unknown keys, the schedule (kind, sizes > 0, table starts at 0 and
    is sorted, ramp/doubling arguments), that every size the schedule can reach
    fits a shape bucket on ``data_shards`` devices, the coupling rules and
    tables (beta2/tau in [0, 1), tables covering the schedule's sizes), and
    off_bucket, and the ``policy`` section (``resolve_policy``). Pass
    the optimizer's ``base_b2`` / ``base_ewa_tau`` to check them too (a
    ``half_life`` rule without them is not reported here), and its LR schedule
    to check a seesaw policy's sizes.
    """
    return _resolve(
        batch_cfg,
        ctx_len,
        data_shards,
        base_b2=base_b2,
        base_ewa_tau=base_ewa_tau,
        lr_schedule=lr_schedule,
        build_plan=False,
    )[1]


def plan_from_config(
    batch_cfg: Mapping[str, Any],
    ctx_len: int,
    data_shards: int,
    *,
    base_b2: float | None = None,
    base_ewa_tau: float | None = None,
    lr_schedule: Any = None,
) -> BatchPlan:
    """Validate the batch section and resolve it into a ``BatchPlan`` (the policy built once).

    ``base_b2`` / ``base_ewa_tau`` are the optimizer's beta2 and EWA tau at the
    base batch size; ``half_life`` rules need them and ``fixed`` returns them.
    ``lr_schedule`` (``bsjax.optim.LRSchedule``) is needed by the seesaw policy.
    The plan's policy is the one ``batch.policy`` names; a policy whose sizes
    are fixed in advance (wsd_es tokens, fsl, seesaw) also gives the plan its
    schedule, so ``switch_points()`` orders compilation by its switches.

    Raises:
      BatchConfigError listing every problem, before anything is compiled.
    """
    plan, problems = _resolve(
        batch_cfg,
        ctx_len,
        data_shards,
        base_b2=base_b2,
        base_ewa_tau=base_ewa_tau,
        lr_schedule=lr_schedule,
        build_plan=True,
    )
    if problems:
        raise BatchConfigError(problems)
    return plan
