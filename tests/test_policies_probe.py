"""Branched CBS probe: the k* rule, decisions on a scripted prober, branch accounting."""

import json
import math

import pytest

from bsjax.batching import BatchConfigError, PolicyContext
from bsjax.batching.policies import (
    Ladder,
    ProbePolicy,
    Prober,
    ProberMissingError,
    measured_cbs_factor,
)

CTX = 128


class ScriptedProber:
    """Branch losses from a known local CBS C(step): each octave of k B above C costs 0.1 loss."""

    def __init__(self, cbs_at):
        self.cbs_at = cbs_at
        self.calls = []

    def probe(self, step, batch_size, factors, lr_multipliers, tokens):
        self.calls.append(
            dict(
                step=step,
                batch_size=batch_size,
                factors=list(factors),
                lr_multipliers=list(lr_multipliers),
                tokens=tokens,
            )
        )
        cbs = self.cbs_at(step)
        return {k: 3.0 + 0.1 * max(0.0, math.log2(k * batch_size / cbs)) for k in factors}


def _policy(**kw):
    args = dict(
        ctx_len=CTX,
        factors=[1, 2, 4],
        probe_tokens=64 * CTX * 8,
        every_tokens=64 * CTX * 50,
        eps=0.01,
        eps_mode="relative",
        cbs_over=2.0,
        lr_rule="sqrt",
    )
    args.update(kw)
    return ProbePolicy(Ladder([64, 128, 256, 512]), 64, **args)


def _drive(policy, num_steps, start=0, batch_size=None, tokens=0, switches=None):
    batch_size = policy.initial_batch_size() if batch_size is None else batch_size
    switches = [] if switches is None else switches
    for step in range(start, num_steps):
        decision = policy.maybe_decide(PolicyContext(step, tokens, batch_size, {"loss": 3.0}))
        if decision is not None:
            switches.append((step, tokens, decision))
            batch_size = decision.batch_size
        tokens += batch_size * CTX
    return switches, batch_size, tokens


def test_k_star_is_the_largest_factor_within_eps_of_the_smaller_ones():
    assert measured_cbs_factor({1: 3.0, 2: 3.02, 4: 3.2}, [1, 2, 4], 0.01) == 2
    assert measured_cbs_factor({1: 3.0, 2: 2.9, 4: 2.92}, [1, 2, 4], 0.01) == 4
    # The scan stops at the first failure: a lucky 8 after a failed 4 does not count.
    assert measured_cbs_factor({1: 3.0, 2: 3.0, 4: 3.5, 8: 3.0}, [1, 2, 4, 8], 0.01) == 2
    assert measured_cbs_factor({1: 3.0, 2: 3.04}, [1, 2], 0.05, "absolute") == 2
    assert measured_cbs_factor({1: 3.0, 2: 3.06}, [1, 2], 0.05, "absolute") == 1


def test_doubles_only_when_the_probe_measures_more_than_twice_the_batch():
    # True CBS: 100 until step 120, 400 until step 300, then 5000.
    def cbs_at(step):
        return 100.0 if step < 120 else (400.0 if step < 300 else 5000.0)

    prober = ScriptedProber(cbs_at)
    policy = _policy()
    assert isinstance(prober, Prober)
    policy.attach_prober(prober)
    switches, final, _ = _drive(policy, 600)

    assert len(prober.calls) == policy.num_probes
    # At 64 (50 steps per every_tokens) the probes fall at steps 50, 100, 150.
    assert [c["step"] for c in prober.calls[:3]] == [50, 100, 150]
    sizes = [(s, d.batch_size) for s, _, d in switches]
    # Before step 120 the CBS (100) is below 2 x 64: no switch. At 400: 64 -> 128 (400 > 256),
    # then 128 -> 256 needs CBS > 256 at B=128: 4 x 128 = 512 > 400 * 1.23, so k*=2: hold.
    assert [b for _, b in sizes] == [128, 256, 512]
    assert all(s >= 120 for s, _ in sizes[:1]) and all(s >= 300 for s, _ in sizes[1:])
    for _, _tokens, d in switches:
        assert d.reason == "probe"
        assert d.measured["cbs"] > 2 * d.measured["from_batch_size"]
        assert {"loss_k1", "loss_k2", "loss_k4", "branch_tokens_total"} <= set(d.measured)
    # Branch LRs follow the sqrt rule; every branch sees the same token count.
    assert prober.calls[0]["lr_multipliers"] == pytest.approx([1.0, math.sqrt(2), 2.0])
    assert {c["tokens"] for c in prober.calls} == {64 * CTX * 8}
    # At the top of the ladder nothing can grow, so no more branches are paid for.
    assert all(c["batch_size"] < 512 for c in prober.calls)
    assert final == 512


def test_branch_compute_is_counted_exactly():
    prober = ScriptedProber(lambda step: 10_000.0)
    policy = _policy(every_tokens=64 * CTX * 10, start_tokens=0)
    policy.attach_prober(prober)
    _drive(policy, 40)
    per_probe_tokens = 3 * 64 * CTX * 8
    steps = 0
    for call in prober.calls:
        B = call["batch_size"]
        steps += sum(math.ceil(64 * CTX * 8 / (k * B * CTX)) for k in (1, 2, 4))
    assert policy.branch_tokens == len(prober.calls) * per_probe_tokens
    assert policy.branch_steps == steps
    assert policy.summary()["branch_tokens"] == policy.branch_tokens
    assert policy.metrics_to_log()["branch_steps"] == steps


def test_candidate_sizes_include_the_branch_sizes():
    policy = _policy()
    assert policy.branch_sizes() == [64, 128, 256, 512, 1024]
    assert policy.candidate_sizes() == [64, 128, 256, 512, 1024]


def test_a_decision_point_without_a_prober_is_a_clear_error():
    policy = _policy(start_tokens=0)
    with pytest.raises(ProberMissingError, match="attach_prober"):
        policy.maybe_decide(PolicyContext(0, 0, 64, {}))


def test_a_prober_that_skips_a_factor_is_refused():
    class Partial:
        def probe(self, step, batch_size, factors, lr_multipliers, tokens):
            return {1: 3.0, 2: 3.0}

    policy = _policy(start_tokens=0)
    policy.attach_prober(Partial())
    with pytest.raises(ValueError, match=r"no loss for factors \[4\]"):
        policy.maybe_decide(PolicyContext(0, 0, 64, {}))


@pytest.mark.parametrize(
    "kw,message",
    [
        (dict(factors=[2, 4]), "factors must be increasing ints starting at 1"),
        (dict(eps=-0.1), "eps must be >= 0"),
        (dict(eps_mode="ratio"), "eps_mode: unknown mode 'ratio'"),
        (dict(probe_tokens=0), "probe_tokens must be a positive int"),
        (dict(lr_rule="cubic"), "lr_scaling: unknown rule 'cubic'"),
    ],
)
def test_bad_arguments_get_one_clear_message(kw, message):
    with pytest.raises(BatchConfigError, match=message):
        _policy(**kw)


def test_state_round_trips_with_its_history():
    prober = ScriptedProber(lambda step: 400.0)
    policy = _policy(start_tokens=0)
    policy.attach_prober(prober)
    _drive(policy, 120)
    state = json.loads(json.dumps(policy.state_dict()))
    restored = _policy(start_tokens=0)
    restored.load_state_dict(state)
    assert restored.state_dict() == policy.state_dict()
    assert restored.history[-1]["losses"].keys() == {"1", "2", "4"}
    with pytest.raises(BatchConfigError, match="policy state is for 'probe', not 'noise_scale'"):
        from bsjax.batching.policies import NoiseScalePolicy

        NoiseScalePolicy(Ladder([64, 128]), 64).load_state_dict(state)


def test_a_diverged_branch_ends_the_scan_and_the_state_stays_strict_json():
    class Diverging:
        def probe(self, step, batch_size, factors, lr_multipliers, tokens):
            return {1: 3.0, 2: 3.0, 4: float("nan")}

    policy = _policy(start_tokens=0)
    policy.attach_prober(Diverging())
    assert (
        policy.maybe_decide(PolicyContext(0, 0, 64, {})) is None
    )  # k* = 2: CBS 128 is not above 2 x 64
    assert policy.history[-1]["k_star"] == 2 and policy.history[-1]["losses"]["4"] is None
    json.dumps(policy.state_dict(), allow_nan=False)
