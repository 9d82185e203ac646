"""The noise-scale estimator on the real compiled step, against per-example gradients.

A tiny model first trains a few steps (so that gradient noise dominates, as
in real training: B_simple near 100 sequences here), then the LR goes to 0:
the parameters stay fixed and every step draws a fresh batch from one
population, a fixed pool of sequences sampled with replacement. The step's two
squared norms (``grad_sq``, ``micro_grad_sq``) through ``noise_scale_estimate``
must then agree with tr(Sigma) / |G|^2 computed directly from the per-example
gradients of the whole pool. (LR is an input of the step: one executable.)
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from bsjax import model as model_lib
from bsjax.batching.policies import NoiseScaleEMA, noise_scale_estimate
from bsjax.train import mesh as mesh_lib
from bsjax.train import step as step_lib

VOCAB, CTX, POOL, K, M, WARM_STEPS, STEPS = 32, 32, 256, 4, 8, 60, 120


def _pool_tokens(rng):
    """Sequences from a random first-order Markov chain: learnable, with real gradient noise."""
    transition_VV = rng.dirichlet(np.full(VOCAB, 0.3), size=VOCAB)
    tokens_NT = np.zeros((POOL, CTX + 1), np.int32)
    tokens_NT[:, 0] = rng.integers(VOCAB, size=POOL)
    for t in range(1, CTX + 1):
        cum_NV = np.cumsum(transition_VV[tokens_NT[:, t - 1]], axis=1)
        tokens_NT[:, t] = (rng.random((POOL, 1)) > cum_NV).sum(axis=1).clip(max=VOCAB - 1)
    return tokens_NT


def _optim_config():
    return ml_collections.ConfigDict(
        dict(lr=0.0, b1=0.9, b2=0.99, eps=1e-8, weight_decay=0.0, clip_norm=1.0)
    )


@pytest.mark.slow
def test_in_step_estimate_matches_per_example_gradients_of_the_real_model():
    rng = np.random.default_rng(0)
    tokens_NT = _pool_tokens(rng)
    model_cfg = model_lib.preset_config("tiny", vocab_size=VOCAB, ctx_len=CTX)
    mesh = mesh_lib.make_mesh(-1, 1)
    fns = step_lib.build(model_cfg, _optim_config(), mesh)
    with jax.set_mesh(mesh):
        train_step = fns.train_step.lower(
            fns.abstract_state,
            jax.ShapeDtypeStruct((K, M, CTX + 1), jnp.int32),
            step_lib.hparams_array(0.0, 0.99, 0.0),
        ).compile()
        sharding = mesh_lib.batch_sharding(mesh)

        def run(state, lr, steps):
            hp = step_lib.hparams_array(lr, 0.99, 0.0)
            grad_sq_S, micro_sq_S = [], []
            for _ in range(steps):
                batch_KMT = tokens_NT[rng.integers(POOL, size=(K, M))]
                state, metrics = train_step(state, jax.device_put(batch_KMT, sharding), hp)
                grad_sq_S.append(float(metrics["grad_sq"]))
                micro_sq_S.append(float(metrics["micro_grad_sq"]))
            return state, np.array(grad_sq_S), np.array(micro_sq_S)

        state, _, _ = run(fns.init(jax.random.key(0)), 1e-2, WARM_STEPS)
        params = jax.device_get(state["params"])

        # Direct: per-example gradients of the whole pool (the population).
        def example_grad(tokens_T):
            def loss(p):
                return step_lib.next_token_loss(fns.graphdef, p, tokens_T[None])

            grads = jax.grad(loss)(params)
            return jnp.concatenate([g.reshape(-1) for g in jax.tree.leaves(grads)])

        grads_NP = np.asarray(jax.jit(jax.vmap(example_grad))(jnp.asarray(tokens_NT)), np.float64)
        mean_P = grads_NP.mean(axis=0)
        trace_sigma = float(((grads_NP - mean_P) ** 2).sum(axis=1).mean())
        g_sq = float(mean_P @ mean_P)
        direct = trace_sigma / g_sq
        assert direct > K * M  # noise-dominated: the regime where the batch should grow

        # In-step: the compiled step at LR 0.
        state, grad_sq_S, micro_sq_S = run(state, 0.0, STEPS)
    unchanged = jax.tree.map(np.array_equal, jax.device_get(state["params"]), params)
    assert all(jax.tree.leaves(unchanged)), "LR 0 must leave the parameters (the population) fixed"
    g_S, t_S = noise_scale_estimate(grad_sq_S, micro_sq_S, M, K * M)
    # Unbiased per step, so the means converge to the population values.
    assert g_S.mean() == pytest.approx(g_sq, rel=0.1)
    assert t_S.mean() == pytest.approx(trace_sigma, rel=0.1)
    ema = NoiseScaleEMA(0.99)
    for g, t in zip(g_S, t_S):
        ema.update(g, t)
    assert ema.b_simple == pytest.approx(direct, rel=0.2)
    # The step's norms themselves follow E|g_B|^2 = |G|^2 + tr(Sigma) / B.
    assert np.mean(micro_sq_S) == pytest.approx(g_sq + trace_sigma / M, rel=0.05)
    assert np.mean(grad_sq_S) == pytest.approx(g_sq + trace_sigma / (K * M), rel=0.05)
