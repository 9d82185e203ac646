"""The ``batch.policy`` config section, the registry of policies, and the policy it builds.

``batch.policy.name`` picks the policy; each policy reads its own subsection
(``batch.policy.<name>``) plus the shared ladder keys:

- ``sizes``: the batch sizes an adaptive policy moves between, e.g.
  "64 128 256 512" (must hold the start size ``batch.batch_size``); "" means
  doubling from the start size up to ``max_batch_size``.
- ``max_batch_size``: top of the doubling ladder (0: 8 x the start size).

Policies other than "schedule" start from ``batch.batch_size`` (except
``wsd_es``, which starts at its first target's B_opt) and need
``batch.schedule = "constant"``: the fixed schedule keys belong to "schedule".

A new policy is one module that defines its section, its ``build`` and a
``SPEC`` (``common.PolicySpec``), plus one entry in ``POLICIES`` below: the
config section, the help text and the validation follow from the spec.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from bsjax.batching import buckets as buckets_lib
from bsjax.batching.controller import BatchPolicy, ScheduledPolicy
from bsjax.batching.errors import BatchConfigError
from bsjax.batching.policies import fsl, noise_scale, probe, seesaw, wsd_es
from bsjax.batching.policies.common import BuildContext, LRScheduleMissingError, PolicySpec
from bsjax.batching.schedules import Schedule, schedule_from_config
from bsjax.sections import Section, at_least, one_of, option, parse_section, subsection

POLICIES: tuple[PolicySpec, ...] = (
    noise_scale.SPEC,
    probe.SPEC,
    wsd_es.SPEC,
    fsl.SPEC,
    seesaw.SPEC,
)
REGISTRY: dict[str, PolicySpec] = {spec.name: spec for spec in POLICIES}
POLICY_NAMES = ("schedule", *REGISTRY)


def _check_policy_section(self, path: str = "batch.policy") -> list[str]:
    problems = one_of(f"{path}.name", self.name, POLICY_NAMES)
    return problems + at_least(
        f"{path}.max_batch_size", self.max_batch_size, 0, " (0: 8 x the start size)"
    )


PolicySection = dataclasses.make_dataclass(
    "PolicySection",
    [
        (
            "name",
            str,
            option("schedule", "schedule (the fixed batch.schedule) | " + " | ".join(REGISTRY)),
        ),
        (
            "sizes",
            str,
            option("", "ladder of batch sizes, e.g. '64 128 256' ('': doubling to max_batch_size)"),
        ),
        ("max_batch_size", int, option(0, "top of the doubling ladder (0: 8 x the start size)")),
    ]
    + [
        (spec.name, spec.section, subsection(spec.section, spec.help))
        for spec in POLICIES
        if spec.section is not None
    ],
    bases=(Section,),
    frozen=True,
    namespace={
        "__doc__": "``batch.policy``: which policy decides the batch size, its ladder and the "
        "settings of each registered policy (one subsection per policy that has settings).",
        "__module__": __name__,
        "check": _check_policy_section,
    },
)


def _prefixed(problems: Sequence[str], prefix: str) -> list[str]:
    return [p if p.startswith("batch.") else f"{prefix}: {p}" for p in problems]


def resolve_policy(
    batch_cfg: Mapping[str, Any],
    schedule: Schedule,
    *,
    ctx_len: int,
    data_shards: int | None = None,
    lr_schedule: Any = None,
    sizes: Sequence[int] | None = None,
    lr_schedule_required: bool = True,
) -> tuple[BatchPolicy | None, list[str]]:
    """The policy ``batch_cfg.policy`` names, built once, and every problem found on the way.

    Checks the section's keys and types, the chosen policy's settings (by building
    it), that the fixed schedule keys are left alone by adaptive policies and,
    with ``data_shards``, that every size the policy may ask for fits a shape
    bucket. Without ``lr_schedule`` and with ``lr_schedule_required=False``, a
    policy that needs it (seesaw) is checked but not built (policy None, no
    problem).
    """
    problems: list[str] = []
    section = parse_section(PolicySection, batch_cfg.get("policy"), "batch.policy", problems)
    if problems:
        return None, problems
    if section.name == "schedule":
        return ScheduledPolicy(schedule), []
    if batch_cfg.get("schedule", "constant") != "constant":
        return None, [
            f"batch.schedule={batch_cfg.get('schedule')!r} is for "
            f"batch.policy.name='schedule'; policy {section.name!r} sets the sizes itself "
            f"(from batch.batch_size): set batch.schedule='constant'"
        ]
    spec = REGISTRY[section.name]
    ctx = BuildContext(
        start=schedule.batch_size_at(0),
        ctx_len=ctx_len,
        data_shards=data_shards,
        micro_batch_per_device=batch_cfg.get("micro_batch_per_device", 16),
        max_accum_steps=batch_cfg.get("max_accum_steps", 0) or None,
        lr_scaling=batch_cfg.get("lr_scaling", "none"),
        lr_schedule=lr_schedule,
        sizes=section.sizes,
        max_batch_size=section.max_batch_size,
        sizes_override=None if sizes is None else tuple(sizes),
    )
    own = section[spec.name] if spec.section is not None else None
    try:
        policy = spec.build(own, ctx)
    except LRScheduleMissingError:
        if lr_schedule_required:
            raise
        return None, []
    except BatchConfigError as err:
        return None, _prefixed(err.problems, f"batch.policy.{spec.name}")
    if data_shards:
        try:
            buckets_lib.enumerate_buckets(
                policy.candidate_sizes(),
                data_shards,
                ctx.micro_batch_per_device,
                ctx.max_accum_steps,
            )
        except BatchConfigError as err:
            key = (
                spec.sizes_key(own, ctx)
                if spec.sizes_key
                else f"{ctx.sizes_key()} (policy {spec.name!r})"
            )
            problems += _prefixed(err.problems, key)
    return policy, problems


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
        (K, M) when the trainer's metrics do not say, and every size is checked
        against the shape buckets.
      lr_schedule: ``bsjax.optim.LRSchedule`` (anything with ``halving_tokens()``,
        ``peak_lr``, ``warmup_tokens``); seesaw needs it.

    Raises:
      BatchConfigError listing the problems, each naming its key.
    """
    if schedule is None:
        schedule = schedule_from_config(batch_cfg)
    policy, problems = resolve_policy(
        batch_cfg,
        schedule,
        ctx_len=ctx_len,
        data_shards=data_shards,
        lr_schedule=lr_schedule,
        sizes=sizes,
    )
    if problems:
        raise BatchConfigError(problems)
    return policy


def validate_policy_config(
    batch_cfg: Mapping[str, Any], ctx_len: int, data_shards: int, *, lr_schedule: Any = None
) -> list[str]:
    """Every problem of ``batch.policy``, one message each; [] when it is usable.

    Seesaw's sizes depend on the LR schedule; without ``lr_schedule`` only its
    ladder and LR-scaling rule are checked. (The probe's branch LRs follow
    ``batch.lr_scaling``: "sqrt" is the paper's rule.)
    """
    try:
        schedule = schedule_from_config(batch_cfg)
    except BatchConfigError:
        return []  # the schedule check of the batch section reports it
    return resolve_policy(
        batch_cfg,
        schedule,
        ctx_len=ctx_len,
        data_shards=data_shards,
        lr_schedule=lr_schedule,
        lr_schedule_required=False,
    )[1]
