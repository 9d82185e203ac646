"""The batch.policy section: validation, the plan, off-bucket requests, resume mid-decision."""

import dataclasses
import json
import math
import re

import pytest

from bsjax.batching import (
    BatchConfigError,
    OffBucketWarning,
    PolicyContext,
    ScheduledPolicy,
    default_batch_config,
    plan_from_config,
    validate_batch_config,
)
from bsjax.batching.policies import (
    POLICY_NAMES,
    LossTargetPolicy,
    NoiseScalePolicy,
    ProbePolicy,
    SeesawPolicy,
    TablePolicy,
    policy_from_config,
    validate_policy_config,
)
from bsjax.optim import LRSchedule

CTX = 128
SHARDS = 8
COSINE = LRSchedule(peak_lr=1e-3, warmup_tokens=0, kind="cosine", total_tokens=64 * CTX * 400)


def _cfg(name, **policy):
    """A batch section for ``name`` that validates on 8 shards at ctx 128."""
    cfg = default_batch_config()
    cfg.micro_batch_per_device = 4  # K >= 2 everywhere, as noise_scale needs
    cfg.policy.name = name
    cfg.policy.max_batch_size = 512
    cfg.policy.wsd_es.targets = "4.0:64 3.5:128 3.2:256"
    cfg.policy.fsl.update(s=0.2, beta=2.0, budget_examples="16K")
    cfg.policy.noise_scale.update(decide_every=5, warmup_steps=10, patience=2)
    cfg.policy.probe.update(probe_tokens=str(64 * CTX * 4), every_tokens=str(64 * CTX * 30))
    if name == "probe":
        cfg.lr_scaling = "sqrt"
    for key, value in policy.items():
        section, _, field = key.partition("__")
        if field:
            cfg.policy[section][field] = value
        else:
            cfg.policy[key] = value
    return cfg


def test_default_section_is_the_fixed_schedule():
    cfg = default_batch_config()
    assert cfg.policy.name == "schedule"
    assert isinstance(policy_from_config(cfg, ctx_len=CTX), ScheduledPolicy)
    assert validate_policy_config(cfg, CTX, SHARDS) == []


@pytest.mark.parametrize(
    "name,kind",
    [
        ("noise_scale", NoiseScalePolicy),
        ("probe", ProbePolicy),
        ("wsd_es", LossTargetPolicy),
        ("fsl", TablePolicy),
        ("seesaw", SeesawPolicy),
    ],
)
def test_each_policy_validates_and_builds_into_a_plan(name, kind):
    cfg = _cfg(name)
    assert validate_batch_config(cfg, CTX, SHARDS, lr_schedule=COSINE) == []
    plan = plan_from_config(cfg, CTX, SHARDS, lr_schedule=COSINE)
    assert isinstance(plan.policy, kind)
    # Every size the policy may ask for, probe branches included, has a bucket.
    assert set(plan.policy.candidate_sizes()) <= set(plan.buckets)
    assert plan.coupling.base_batch_size == plan.policy.initial_batch_size()
    json.dumps(plan.policy.state_dict())


@pytest.mark.parametrize(
    "name,overrides,message",
    [
        ("bogus", {}, "batch.policy.name: 'bogus' is unknown; choose one of schedule, "),
        ("noise_scale", dict(extra=1), "batch.policy.extra: unknown key"),
        (
            "noise_scale",
            dict(noise_scale__speed=1.0),
            "batch.policy.noise_scale.speed: unknown key",
        ),
        ("noise_scale", dict(sizes="64 128 x"), "batch.policy.sizes: cannot read 'x'"),
        (
            "noise_scale",
            dict(sizes="128 256"),
            "batch.policy.sizes: .* must include the start size batch.batch_size=64",
        ),
        (
            "noise_scale",
            dict(max_batch_size=32),
            "batch.policy.max_batch_size=32 is below the start",
        ),
        (
            "noise_scale",
            dict(noise_scale__ema=1.0),
            r"batch.policy.noise_scale: .*ema decay must be in \[0, 1\)",
        ),
        ("probe", dict(probe__factors="1 3 2"), "batch.policy.probe: factors must be increasing"),
        (
            "probe",
            dict(probe__every_tokens="0"),
            "batch.policy.probe.every_tokens must be positive",
        ),
        (
            "probe",
            dict(probe__eps_mode="ratio"),
            "batch.policy.probe: eps_mode: unknown mode 'ratio'",
        ),
        (
            "probe",
            dict(max_batch_size=1024),
            "batch.policy.max_batch_size \\(policy 'probe'\\): batch "
            "size 2048 fits no shape bucket.*max_accum_steps=32",
        ),
        (
            "wsd_es",
            dict(wsd_es__targets="4.0:64 3.5:100"),
            "batch.policy.wsd_es.targets: batch size 100 fits no shape bucket.*nearest sizes that fit: "
            "96 or 104",
        ),
        (
            "wsd_es",
            dict(wsd_es__loss_key="val"),
            "batch.policy.wsd_es: loss_key: unknown key 'val'",
        ),
        (
            "fsl",
            dict(fsl__budget_examples="lots"),
            "batch.policy.fsl.budget_examples: cannot read 'lots'",
        ),
        ("noise_scale", dict(micro=16), "batch sizes \\[64, 128\\] run as one micro-step"),
    ],
)
def test_each_problem_gets_one_clear_message_naming_its_key(name, overrides, message):
    micro = overrides.pop("micro", None)
    cfg = _cfg(name, **overrides)
    if micro:
        cfg.micro_batch_per_device = micro
    if name == "probe" and "max_batch_size" in overrides:
        cfg.max_accum_steps = 32  # 1024 fits, the branch at 4 x 512 does not
    problems = validate_batch_config(cfg, CTX, SHARDS)
    assert len(problems) == 1, problems
    assert re.search(message, problems[0]), problems[0]


def test_adaptive_policies_leave_the_fixed_schedule_keys_alone():
    cfg = _cfg("noise_scale")
    cfg.schedule = "table"
    cfg.table = "0:64 1M:128"
    (problem,) = validate_policy_config(cfg, CTX, SHARDS)
    assert "batch.schedule='table' is for batch.policy.name='schedule'" in problem
    with pytest.raises(BatchConfigError, match="batch.schedule='table'"):
        plan_from_config(cfg, CTX, SHARDS)


@pytest.mark.parametrize("mode", ["round", "error"])
def test_a_request_without_a_bucket_is_rounded_with_a_warning_or_refused(mode):
    """The trainer's side: plan.resolve on whatever size a policy asks for."""
    cfg = _cfg("noise_scale", sizes="64 128 256")
    cfg.off_bucket = mode
    plan = plan_from_config(cfg, CTX, SHARDS)
    # A policy handed a finer ladder than the plan compiled asks for 192.
    rogue = NoiseScalePolicy(
        plan.policy.ladder.__class__([64, 128, 192, 256]),
        64,
        ema=0.0,
        decide_every=1,
        warmup_steps=1,
        patience=1,
    )
    plan = dataclasses.replace(plan, policy=rogue)
    metrics = dict(
        step=0,
        grad_sq=1.0 + 180.0 / 32,
        micro_grad_sq=1.0 + 180.0 / 8,
        micro_batch_size=8,
        accum_steps=4,
    )
    decision = plan.policy.maybe_decide(PolicyContext(1, 0, 64, metrics))
    assert decision.batch_size == 192
    if mode == "round":
        message = "192 has no compiled bucket; rounded down to 128"
        with pytest.warns(OffBucketWarning, match=message):
            assert plan.resolve(decision.batch_size) == 128
    else:
        with pytest.raises(
            BatchConfigError,
            match=r"batch size 192 has no compiled bucket "
            r"\(off_bucket='error'\).*nearest: 128 or 256",
        ):
            plan.resolve(decision.batch_size)


class _Prober:
    def probe(self, step, batch_size, factors, lr_multipliers, tokens):
        cbs = 100.0 * 2 ** (step / 80)
        return {k: 3.0 + 0.1 * max(0.0, math.log2(k * batch_size / cbs)) for k in factors}


def _metrics(step):
    """A scripted stream: loss falls, the noise scale grows."""
    b_noise = 40.0 * 2 ** (step / 70)
    M, K = 8, 4
    return dict(
        step=step,
        loss=3.0 + 2.0 * math.exp(-step / 60),
        grad_sq=1.0 + b_noise / (M * K),
        micro_grad_sq=1.0 + b_noise / M,
        micro_batch_size=M,
        accum_steps=K,
    )


def _build(name):
    policy = policy_from_config(_cfg(name), ctx_len=CTX, data_shards=SHARDS, lr_schedule=COSINE)
    if isinstance(policy, ProbePolicy):
        policy.attach_prober(_Prober())
    return policy


def _run(policy, start, stop, batch_size, tokens, log):
    for step in range(start, stop):
        decision = policy.maybe_decide(
            PolicyContext(step, tokens, batch_size, _metrics(step - 1) if step else {})
        )
        if decision is not None:
            log.append((step, decision.batch_size, decision.reason))
            batch_size = decision.batch_size
        tokens += batch_size * CTX
    return batch_size, tokens


@pytest.mark.parametrize("name", [n for n in POLICY_NAMES if n != "schedule"])
def test_state_survives_a_resume_mid_decision(name):
    straight_log = []
    straight = _build(name)
    _run(straight, 0, 400, straight.initial_batch_size(), 0, straight_log)
    assert straight_log, f"{name} never switched on the scripted stream"

    # Stop between two switches, where a decision is under way, and resume in a new policy.
    first = _build(name)
    log = []
    if len(straight_log) > 1:
        cut = (straight_log[0][0] + straight_log[1][0]) // 2
    else:
        cut = straight_log[0][0] - 1
    if name == "noise_scale":
        cut = straight_log[1][0] - 1  # one patience vote cast, the switch not yet made
    batch_size, tokens = _run(first, 0, cut, first.initial_batch_size(), 0, log)
    state = json.loads(json.dumps(first.state_dict()))
    if name == "noise_scale":
        assert state["pending_count"] == 1
    resumed = _build(name)
    resumed.load_state_dict(state)
    _run(resumed, cut, 400, batch_size, tokens, log)
    assert log == straight_log
    assert resumed.state_dict() == straight.state_dict()


def test_resume_under_a_changed_configuration_warns():
    policy = _build("noise_scale")
    state = policy.state_dict()
    changed = _cfg("noise_scale", noise_scale__multiple=2.0)
    other = policy_from_config(changed, ctx_len=CTX)
    with pytest.warns(UserWarning, match="checkpoint used 'noise_scale: 1 x B_simple"):
        other.load_state_dict(state)
