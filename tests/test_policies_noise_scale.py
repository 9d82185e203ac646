"""Gradient noise scale: the in-step estimator against known gradient noise, and the policy."""

import json
import math

import numpy as np
import pytest

from bsjax.batching import Bucket, PolicyContext, default_batch_config
from bsjax.batching.policies import (
    Ladder,
    NoiseScaleEMA,
    NoiseScalePolicy,
    NoiseScaleWarning,
    noise_scale_estimate,
    validate_policy_config,
)


def _expected_norms(g_sq, trace_sigma, M, K):
    """E|g|^2 of a mean over B examples is |G|^2 + tr(Sigma)/B (M per micro-step, K M per step)."""
    return g_sq + trace_sigma / (K * M), g_sq + trace_sigma / M


def test_estimator_recovers_both_terms_from_expected_norms():
    grad_sq, micro_grad_sq = _expected_norms(2.5, 300.0, M=16, K=4)
    g_sq, trace_sigma = noise_scale_estimate(grad_sq, micro_grad_sq, 16, 64)
    assert g_sq == pytest.approx(2.5, rel=1e-12)
    assert trace_sigma == pytest.approx(300.0, rel=1e-12)
    # Vectorised over steps.
    g_S, t_S = noise_scale_estimate(np.array([grad_sq] * 2), np.array([micro_grad_sq] * 2), 16, 64)
    assert g_S.shape == (2,) and np.allclose(t_S, 300.0)


def test_estimator_refuses_a_single_micro_step():
    with pytest.raises(ValueError, match="B_small < B_big.*use K >= 2"):
        noise_scale_estimate(1.0, 1.0, 32, 32)


def test_ema_estimate_converges_to_the_true_and_directly_computed_noise_scale():
    """Per-example gradients g_i = G + xi_i with known Sigma, grouped as the step groups them."""
    rng = np.random.default_rng(1)
    d, K, M, steps = 16, 8, 8, 2000
    G_D = rng.normal(size=d)
    G_D /= np.linalg.norm(G_D)  # |G|^2 = 1
    var_D = np.linspace(1.0, 3.0, d)
    var_D *= 40.0 / var_D.sum()  # tr(Sigma) = 40, so B_simple = 40
    ema = NoiseScaleEMA(0.995)
    samples = []
    for _ in range(steps):
        g_KMD = G_D + rng.normal(size=(K, M, d)) * np.sqrt(var_D)
        micro_KD = g_KMD.mean(axis=1)
        mean_D = micro_KD.mean(axis=0)
        ema.update(
            *noise_scale_estimate(
                float(mean_D @ mean_D), float((micro_KD**2).sum(axis=1).mean()), M, K * M
            )
        )
        samples.append(g_KMD.reshape(-1, d))
    all_ND = np.concatenate(samples)
    direct = np.trace(np.cov(all_ND.T)) / float(all_ND.mean(axis=0) @ all_ND.mean(axis=0))
    assert ema.b_simple == pytest.approx(40.0, rel=0.05)
    assert ema.b_simple == pytest.approx(direct, rel=0.05)
    assert ema.g_sq == pytest.approx(1.0, rel=0.1)
    assert ema.trace_sigma == pytest.approx(40.0, rel=0.05)


def _metrics(step, b_noise, M=8, K=4, g_sq=1.0):
    grad_sq, micro_grad_sq = _expected_norms(g_sq, b_noise * g_sq, M, K)
    return {
        "step": step,
        "loss": 3.0,
        "grad_sq": grad_sq,
        "micro_grad_sq": micro_grad_sq,
        "micro_batch_size": M,
        "accum_steps": K,
    }


def _drive(policy, b_noise_at, num_steps, start=0, batch_size=None, switches=None):
    batch_size = policy.initial_batch_size() if batch_size is None else batch_size
    switches = [] if switches is None else switches
    for step in range(start, num_steps):
        decision = policy.maybe_decide(
            PolicyContext(
                step, step * 1000, batch_size, _metrics(step - 1, b_noise_at(step)) if step else {}
            )
        )
        if decision is not None:
            switches.append((step, decision))
            batch_size = decision.batch_size
    return switches, batch_size


def test_policy_follows_a_growing_noise_scale_up_the_ladder():
    ladder = Ladder([64, 128, 256, 512, 1024])
    policy = NoiseScalePolicy(
        ladder,
        64,
        multiple=2.0,
        ema=0.9,
        decide_every=5,
        warmup_steps=10,
        hysteresis=0.25,
        patience=2,
    )

    def b_noise(step):
        return 30.0 * 2 ** (step / 60)  # doubles every 60 steps

    switches, final = _drive(policy, b_noise, 400)
    sizes = [d.batch_size for _, d in switches]
    assert sizes == [128, 256, 512, 1024]
    for step, d in switches:
        assert step % 5 == 0 and d.reason == "noise_scale"
        current = d.measured["from_batch_size"]
        # It moved only once the target cleared the midpoint to the next size by the margin.
        assert d.measured["target_batch_size"] >= math.sqrt(current * 2 * current) * 1.25
        # The EMA lags the truth by a few steps but measures the right thing.
        assert d.measured["b_simple"] == pytest.approx(b_noise(step), rel=0.15)
    assert policy.num_switches == 4 and final == 1024
    logged = policy.metrics_to_log()
    assert logged["b_simple"] == pytest.approx(b_noise(399), rel=0.15)
    assert set(logged) >= {"g_sq", "trace_sigma", "g_sq_ema", "trace_sigma_ema"}


def test_hysteresis_keeps_a_wobbling_target_from_flapping():
    # Target wobbles +-15 % around the geometric midpoint of 64 and 128 (about 90.5).
    def wobble(step):
        return 90.5 * (1.15 if (step // 10) % 2 else 0.87)

    calm = NoiseScalePolicy(
        Ladder([64, 128, 256]),
        64,
        ema=0.0,
        decide_every=1,
        warmup_steps=1,
        hysteresis=0.25,
        patience=1,
        allow_decrease=True,
    )
    assert _drive(calm, wobble, 200)[0] == []
    jumpy = NoiseScalePolicy(
        Ladder([64, 128, 256]),
        64,
        ema=0.0,
        decide_every=1,
        warmup_steps=1,
        hysteresis=0.0,
        patience=1,
        allow_decrease=True,
    )
    flips = [d.batch_size for _, d in _drive(jumpy, wobble, 200)[0]]
    assert len(flips) > 10 and set(flips) == {64, 128}


def test_patience_needs_the_same_proposal_in_a_row_and_decrease_needs_permission():
    policy = NoiseScalePolicy(
        Ladder([64, 128, 256]),
        128,
        ema=0.0,
        decide_every=1,
        warmup_steps=1,
        hysteresis=0.1,
        patience=3,
    )
    switches, _ = _drive(policy, lambda step: 20.0, 50, batch_size=128)
    assert switches == []  # the target asks for 64 but decreases are off
    policy.allow_decrease = True
    switches, _ = _drive(policy, lambda step: 20.0, 60, start=50, batch_size=128)
    assert [(s, d.batch_size) for s, d in switches] == [(52, 64)]  # third decision in a row


def test_repeated_metrics_of_one_step_count_once():
    policy = NoiseScalePolicy(Ladder([64, 128]), 64, ema=0.5, warmup_steps=0)
    metrics = _metrics(7, 50.0)
    policy.decide(PolicyContext(8, 0, 64, metrics))
    policy.decide(PolicyContext(9, 0, 64, metrics))  # the trainer passed step 7's metrics again
    assert policy.ema.count == 1


def test_single_micro_step_is_skipped_with_one_warning():
    policy = NoiseScalePolicy(Ladder([64, 128]), 64, warmup_steps=0)
    with pytest.warns(NoiseScaleWarning, match="K=1 micro-step.*needs K >= 2"):
        for step in range(1, 4):
            policy.decide(PolicyContext(step, 0, 64, {**_metrics(step, 50.0), "accum_steps": 1}))
    assert policy.ema.count == 0 and policy.skipped_steps == 3


def test_bucket_shape_is_used_when_the_metrics_do_not_say():
    policy = NoiseScalePolicy(
        Ladder([64, 128]),
        64,
        ema=0.0,
        warmup_steps=0,
        buckets={64: Bucket(K=4, M=16), 128: Bucket(K=8, M=16)},
    )
    metrics = _metrics(1, 80.0, M=16, K=4)
    del metrics["micro_batch_size"], metrics["accum_steps"]
    policy.decide(PolicyContext(2, 0, 64, metrics))
    assert policy.ema.b_simple == pytest.approx(80.0)


def test_config_refuses_sizes_that_run_as_one_micro_step():
    cfg = default_batch_config()
    cfg.policy.name = "noise_scale"
    cfg.micro_batch_per_device = 16
    problems = validate_policy_config(cfg, ctx_len=128, data_shards=8)
    assert len(problems) == 1
    assert "batch sizes [64, 128] run as one micro-step (K=1)" in problems[0]
    assert "set batch.micro_batch_per_device <= 4" in problems[0]
    cfg.micro_batch_per_device = 4
    assert validate_policy_config(cfg, ctx_len=128, data_shards=8) == []


def test_state_round_trips_through_json():
    policy = NoiseScalePolicy(
        Ladder([64, 128, 256]), 64, ema=0.9, decide_every=1, warmup_steps=3, patience=3
    )
    _drive(policy, lambda step: 200.0, 5)
    state = json.loads(json.dumps(policy.state_dict()))
    assert state["pending_count"] >= 1  # mid-decision: a move is proposed but not yet made
    restored = NoiseScalePolicy(
        Ladder([64, 128, 256]), 64, ema=0.9, decide_every=1, warmup_steps=3, patience=3
    )
    restored.load_state_dict(state)
    assert restored.state_dict() == policy.state_dict()
    assert restored.ema.b_simple == policy.ema.b_simple
