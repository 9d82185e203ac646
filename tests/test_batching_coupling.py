"""Coupled hyper-parameters: LR scaling, beta2 and EWA tau rules, the paper's Table 4."""

import math

import pytest

from bsjax.batching import (
    TABLE4,
    BatchConfigError,
    Coupling,
    DecayRule,
    default_batch_config,
    half_life_decay,
    half_life_tokens,
    lr_scale,
    table_value,
)


@pytest.mark.parametrize(
    "rule,B,expected",
    [
        ("none", 1024, 1.0),
        ("sqrt", 1024, 2.0),
        ("sqrt", 128, math.sqrt(0.5)),
        ("linear", 1024, 4.0),
        ("linear", 64, 0.25),
        ("sqrt", 256, 1.0),
        ("linear", 256, 1.0),
    ],
)
def test_lr_scale(rule, B, expected):
    assert lr_scale(B, 256, rule) == pytest.approx(expected)


def test_lr_scale_unknown_rule():
    with pytest.raises(BatchConfigError, match="lr_scaling: unknown rule 'cube'"):
        lr_scale(64, 64, "cube")


@pytest.mark.parametrize("base", [0.95, 0.999, 0.9995])
@pytest.mark.parametrize("B", [64, 96, 1000])
def test_half_life_identity_two_steps_at_B_equal_one_at_2B(base, B):
    one_step_at_B = half_life_decay(base, B, 256)
    one_step_at_2B = half_life_decay(base, 2 * B, 256)
    assert one_step_at_B**2 == pytest.approx(one_step_at_2B, rel=1e-12)
    # Same half-life in tokens at every batch size.
    assert half_life_tokens(one_step_at_B, B, 512) == pytest.approx(
        half_life_tokens(one_step_at_2B, 2 * B, 512), rel=1e-9
    )
    assert half_life_tokens(one_step_at_B, B, 512) == pytest.approx(
        half_life_tokens(base, 256, 512), rel=1e-9
    )


def test_half_life_decay_at_base_is_base():
    assert half_life_decay(0.99, 256, 256) == 0.99
    assert half_life_decay(0.99, 512, 256) == pytest.approx(0.9801)


def test_table_value_is_nearest_lower_entry():
    table = {64: 0.999, 1024: 0.95, 4096: 0.99}
    assert table_value(table, 64, name="beta2_table") == 0.999
    assert table_value(table, 1023, name="beta2_table") == 0.999
    assert table_value(table, 1024, name="beta2_table") == 0.95
    assert table_value(table, 3000, name="beta2_table") == 0.95
    assert table_value(table, 100000, name="beta2_table") == 0.99
    with pytest.raises(BatchConfigError, match="beta2_table: no entry at or below batch size 32"):
        table_value(table, 32, name="beta2_table")


def test_table4_spot_values():
    assert TABLE4["85M"][64] == (0.999, 0.9995)
    assert TABLE4["151M"][1024] == (0.95, 0.95)
    assert TABLE4["604M"][16384] == (0.99, 0.995)
    assert TABLE4["1.2B"][2048] == (0.95, 0.998)
    assert set(TABLE4) == {"85M", "151M", "302M", "604M", "1.2B"}
    assert all(sorted(t) == [2**i for i in range(6, 15)] for t in TABLE4.values())


def _cfg(**overrides):
    cfg = default_batch_config()
    cfg.update(overrides)
    return cfg


def test_coupling_presets_from_rule_and_from_table_key():
    by_rule = Coupling.from_config(_cfg(beta2_rule="table:302M", tau_rule="table:151M"))
    by_key = Coupling.from_config(
        _cfg(beta2_rule="table", beta2_table="302M", tau_rule="table", tau_table="table:151M")
    )
    for B, b2_302, tau_151 in [
        (256, 0.995, 0.998),
        (1024, 0.99, 0.95),
        (1536, 0.99, 0.95),
        (16384, 0.99, 0.99),
    ]:
        for coupling in (by_rule, by_key):
            hp = coupling.hparams_for(B)
            assert hp["b2"] == b2_302 and hp["ewa_tau"] == tau_151


def test_coupling_explicit_table_and_sqrt_lr():
    cfg = _cfg(
        batch_size=128,
        lr_scaling="sqrt",
        beta2_rule="table",
        beta2_table="64:0.999 1K:0.95",
        tau_rule="half_life",
    )
    coupling = Coupling.from_config(cfg, base_b2=0.95, base_ewa_tau=0.999)
    assert coupling.base_batch_size == 128  # 0 means the first batch size
    hp = coupling.hparams_for(512)
    assert hp == pytest.approx({"lr_scale": 2.0, "b2": 0.999, "ewa_tau": 0.999**4})
    assert coupling.hparams_for(999)["b2"] == 0.999  # "1K" is 1000, not 1024
    assert coupling.hparams_for(1000)["b2"] == 0.95


def test_coupling_fixed_returns_base_or_none():
    assert Coupling.from_config(_cfg()).hparams_for(512) == {
        "lr_scale": 1.0,
        "b2": None,
        "ewa_tau": None,
    }
    hp = Coupling.from_config(
        _cfg(base_batch_size=256, lr_scaling="linear"), base_b2=0.99, base_ewa_tau=0.998
    ).hparams_for(512)
    assert hp == {"lr_scale": 2.0, "b2": 0.99, "ewa_tau": 0.998}


def test_beta2_half_life_against_explicit_base():
    coupling = Coupling.from_config(_cfg(base_batch_size=256, beta2_rule="half_life"), base_b2=0.95)
    assert coupling.hparams_for(128)["b2"] == pytest.approx(0.95**0.5)
    assert coupling.hparams_for(256)["b2"] == pytest.approx(0.95)


@pytest.mark.parametrize(
    "overrides,kwargs,message",
    [
        (
            dict(tau_rule="table", tau_table="64:1.0"),
            {},
            r"tau_table value at batch size 64 must be in \[0, 1\)",
        ),
        (
            dict(beta2_rule="table", beta2_table="64:-0.1"),
            {},
            r"beta2_table value at batch size 64 must be in \[0, 1\)",
        ),
        (
            dict(beta2_rule="table", beta2_table="1K:0.9 64:0.99"),
            {},
            "strictly increasing, but 64 follows 1000",
        ),
        (dict(beta2_rule="table", beta2_table=""), {}, "beta2_table: empty"),
        (dict(tau_rule="table", tau_table="64:abc"), {}, "cannot read entry '64:abc'"),
        (
            dict(tau_rule="table:7B"),
            {},
            "tau_table: unknown paper Table 4 preset '7B'; expected one of 85M, 151M",
        ),
        (dict(beta2_rule="table:151M", beta2_table="64:0.9"), {}, "set only one of them"),
        (dict(beta2_rule="cosine"), {}, "beta2_rule: unknown rule 'cosine'"),
        (dict(tau_rule="linear"), {}, "tau_rule: unknown rule 'linear'"),
        (dict(lr_scaling="cube"), {}, "lr_scaling: unknown rule 'cube'"),
        (dict(tau_rule="half_life"), {}, "tau_rule='half_life' needs the optimizer's base tau"),
        (dict(), dict(base_ewa_tau=1.0), r"base tau must be in \[0, 1\)"),
        (dict(), dict(base_b2=1.2), r"base beta2 must be in \[0, 1\)"),
        (dict(base_batch_size=-4), {}, "base_batch_size must be an int >= 0"),
    ],
)
def test_coupling_validation(overrides, kwargs, message):
    with pytest.raises(BatchConfigError, match=message) as info:
        Coupling.from_config(_cfg(**overrides), **kwargs)
    assert len(info.value.problems) == 1


def test_decay_rule_describe():
    rule = DecayRule.build("tau", "table", "64:0.9995 1024:0.99", None)
    assert rule.describe() == "tau table 64:0.9995 1024:0.99"
