"""The batch config section: one message per problem, and the resolved BatchPlan."""

import re

import ml_collections
import pytest

from bsjax.batching import (
    BatchConfigError,
    Bucket,
    OffBucketWarning,
    RampSchedule,
    ScheduledPolicy,
    default_batch_config,
    plan_from_config,
    validate_batch_config,
)


def _cfg(**overrides):
    cfg = default_batch_config()
    cfg.update(overrides)
    return cfg


def test_default_config_is_valid_and_type_locked():
    cfg = default_batch_config()
    assert isinstance(cfg, ml_collections.ConfigDict)
    assert validate_batch_config(cfg, ctx_len=512, data_shards=8) == []
    with pytest.raises(TypeError):
        cfg.batch_size = "64"


@pytest.mark.parametrize(
    "overrides,kwargs,message",
    [
        (dict(batch_size=0), {}, "batch_size: batch size must be positive, got 0"),
        (
            dict(schedule="table", table="0:64 8M:128 2M:256"),
            {},
            "strictly increasing, but 2M follows 8M",
        ),
        (dict(schedule="table", table="1M:64 2M:128"), {}, "must start at token 0"),
        (dict(schedule="table", table="0:64 2M:0"), {}, "must be positive, got 0"),
        (dict(schedule="warmup"), {}, "schedule: unknown kind 'warmup'"),
        (
            dict(batch_size=100),
            {},
            "batch size 100 fits no shape bucket: it is not divisible by the "
            "data-parallel width data_shards=8",
        ),
        (
            dict(schedule="table", table="0:64 1M:96 2M:100"),
            {},
            "nearest sizes that fit: 96 or 104",
        ),
        (dict(batch_size=8 * 127, max_accum_steps=4, micro_batch_per_device=8), {}, "no K fits"),
        (
            dict(schedule="ramp", ramp_increment=24, ramp_tokens="1M", ramp_end=250),
            {},
            "must be a multiple of ramp_increment",
        ),
        (
            dict(schedule="ramp", ramp_increment=64, ramp_tokens="x", ramp_end=256),
            {},
            "ramp_tokens: cannot read 'x'",
        ),
        (
            dict(schedule="doubling", doubling_tokens="4M 1M"),
            {},
            "doubling_tokens must be strictly increasing",
        ),
        (dict(micro_batch_per_device=0), {}, "micro_batch_per_device: must be an int >= 1"),
        (dict(max_accum_steps=-1), {}, "max_accum_steps: must be an int >= 0"),
        (dict(lr_scaling="quadratic"), {}, "lr_scaling: unknown rule 'quadratic'"),
        (dict(beta2_rule="adaptive"), {}, "beta2_rule: unknown rule 'adaptive'"),
        (
            dict(tau_rule="table", tau_table="64:1.0"),
            {},
            r"tau_table value at batch size 64 must be in \[0, 1\)",
        ),
        (
            dict(beta2_rule="table", beta2_table="64:1.5"),
            {},
            r"beta2_table value at batch size 64 must be in \[0, 1\)",
        ),
        (
            dict(tau_rule="table:151M", batch_size=32),
            {},
            "tau_table: no entry at or below batch size 32",
        ),
        (dict(base_batch_size=-1), {}, "base_batch_size must be an int >= 0"),
        (dict(off_bucket="nearest"), {}, "off_bucket: unknown mode 'nearest'"),
        (dict(), dict(ctx_len=0), "ctx_len: must be an int >= 1"),
        (dict(), dict(data_shards=0), "data_shards: must be an int >= 1"),
        (dict(), dict(base_b2=1.0), r"base beta2 must be in \[0, 1\)"),
        (dict(), dict(base_ewa_tau=-0.5), r"base tau must be in \[0, 1\)"),
    ],
)
def test_each_problem_gets_one_clear_message(overrides, kwargs, message):
    args = dict(ctx_len=512, data_shards=8)
    args.update(kwargs)
    problems = validate_batch_config(_cfg(**overrides), **args)
    assert len(problems) == 1, problems
    assert re.search(message, problems[0]), problems[0]


def test_unknown_key_is_reported():
    cfg = dict(default_batch_config().to_dict(), batchsize=64)
    problems = validate_batch_config(cfg, 512, 8)
    assert problems == [problems[0]] and problems[0].startswith("batch.batchsize: unknown key")


def test_every_problem_is_reported_together():
    cfg = _cfg(
        schedule="table",
        table="0:64 1M:100 2M:96",
        lr_scaling="cube",
        off_bucket="x",
        tau_rule="table",
        tau_table="64:1.2",
    )
    problems = validate_batch_config(cfg, 512, 8)
    assert len(problems) == 4, problems
    with pytest.raises(BatchConfigError) as info:
        plan_from_config(cfg, 512, 8)
    assert info.value.problems == problems


def test_plan_for_a_ramp_on_an_odd_mesh():
    cfg = _cfg(
        schedule="ramp",
        batch_size=30,
        ramp_increment=30,
        ramp_tokens="1.5M",
        ramp_end=150,
        micro_batch_per_device=4,
        lr_scaling="sqrt",
        beta2_rule="half_life",
        tau_rule="table",
        tau_table="16:0.999 90:0.99",
    )
    plan = plan_from_config(cfg, ctx_len=256, data_shards=5, base_b2=0.99, base_ewa_tau=0.999)
    assert plan.schedule == RampSchedule(30, 30, 1_500_000, 150)
    assert isinstance(plan.policy, ScheduledPolicy)
    assert plan.available_sizes() == [30, 60, 90, 120, 150]
    assert plan.bucket(30) == Bucket(2, 15) and plan.bucket(60) == Bucket(3, 20)
    for B, bucket in plan.buckets.items():
        assert bucket.global_batch == B and bucket.M % 5 == 0 and bucket.M // 5 <= 4
    hp = plan.coupling.hparams_for(120)
    assert hp == pytest.approx({"lr_scale": 2.0, "b2": 0.99**4, "ewa_tau": 0.99})
    assert [p.batch_size for p in plan.switch_points()] == [30, 60, 90, 120, 150]
    assert "B=30: K=2 x M=15" in plan.describe()


def test_plan_resolve_follows_off_bucket():
    plan = plan_from_config(_cfg(schedule="doubling", doubling_tokens="1M 2M"), 512, 8)
    assert plan.available_sizes() == [64, 128, 256]
    with pytest.warns(OffBucketWarning):
        assert plan.resolve(200) == 128
    strict = plan_from_config(
        _cfg(schedule="doubling", doubling_tokens="1M 2M", off_bucket="error"), 512, 8
    )
    with pytest.raises(BatchConfigError, match="off_bucket='error'"):
        strict.resolve(200)
    with pytest.raises(BatchConfigError, match="batch size 200 has no bucket"):
        plan.bucket(200)


def test_plan_needs_base_for_half_life_that_validation_leaves_open():
    cfg = _cfg(tau_rule="half_life")
    assert validate_batch_config(cfg, 512, 8) == []
    with pytest.raises(
        BatchConfigError, match="tau_rule='half_life' needs the optimizer's base tau"
    ):
        plan_from_config(cfg, 512, 8)
    plan = plan_from_config(cfg, 512, 8, base_ewa_tau=0.999)
    assert plan.coupling.hparams_for(128)["ewa_tau"] == pytest.approx(0.999**2)


def test_token_counts_with_suffixes_override_through_config():
    cfg = default_batch_config()
    cfg.schedule = "table"
    cfg.table = "0:64 1.5M:128"
    plan = plan_from_config(cfg, 512, 8)
    assert plan.schedule.batch_size_at(1_499_999) == 64
    assert plan.schedule.batch_size_at(1_500_000) == 128


def test_batching_imports_no_jax_and_no_io_library():
    import subprocess
    import sys

    code = (
        "import sys, bsjax.batching; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'jax', 'tensorflow', 'tensorflow_datasets', 'orbax', 'clu', 'matplotlib', 'grain'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
