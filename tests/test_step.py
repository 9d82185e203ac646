"""The compiled step: accumulation over K micro-steps equals the full-batch step."""

import jax
import ml_collections
import numpy as np
import pytest

from bsjax import model as model_lib
from bsjax.train import mesh as mesh_lib
from bsjax.train import step as step_lib

OPTIM = ml_collections.ConfigDict(
    dict(lr=1e-3, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1, clip_norm=1.0)
)


@pytest.fixture(scope="module")
def fns():
    mesh = mesh_lib.make_mesh(-1, 2)  # data 4 x fsdp 2: parameters sharded too
    cfg = model_lib.preset_config("tiny", vocab_size=67, ctx_len=16, d_model=32, d_ff=64, n_heads=2)
    return step_lib.build(cfg, OPTIM, mesh)


def _run(fns, tokens_KMT):
    with jax.set_mesh(fns.mesh):
        state = fns.init(jax.random.key(0))
        batch = jax.device_put(tokens_KMT, mesh_lib.batch_sharding(fns.mesh))
        return fns.train_step(state, batch, step_lib.hparams_array(1e-3, 0.95, 0.9))


def test_accumulation_equals_full_batch(fns):
    tokens = np.random.RandomState(0).randint(0, 67, (32, 17)).astype(np.int32)
    full_state, full_m = _run(fns, tokens.reshape(1, 32, 17))
    accum_state, accum_m = _run(fns, tokens.reshape(4, 8, 17))
    np.testing.assert_allclose(accum_m["loss"], full_m["loss"], rtol=1e-5)
    np.testing.assert_allclose(accum_m["grad_norm"], full_m["grad_norm"], rtol=1e-4)
    for a, b in zip(jax.tree.leaves(accum_state["params"]), jax.tree.leaves(full_state["params"])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-6)
    # EWA moved towards the new parameters by 1 - tau.
    for e, p, p0 in zip(
        jax.tree.leaves(accum_state["ewa"]),
        jax.tree.leaves(accum_state["params"]),
        jax.tree.leaves(fns.init(jax.random.key(0))["params"]),
    ):
        np.testing.assert_allclose(
            np.asarray(e), 0.9 * np.asarray(p0) + 0.1 * np.asarray(p), atol=1e-6
        )
    assert int(accum_state["step"]) == 1


def test_noise_scale_statistics(fns):
    tokens = np.random.RandomState(1).randint(0, 67, (4, 8, 17)).astype(np.int32)
    _, m = _run(fns, tokens)
    # Mean of squared micro-batch gradient norms >= squared norm of their mean (Jensen),
    # and |g_mean|^2 is the squared gradient norm the step reports.
    assert float(m["micro_grad_sq"]) > float(m["grad_sq"]) > 0
    np.testing.assert_allclose(float(m["grad_sq"]), float(m["grad_norm"]) ** 2, rtol=1e-5)


def test_warmed_executables_free_their_scratch_state_and_compute_the_same_step(fns):
    from bsjax.train.executables import Executables

    tokens = np.random.RandomState(1).randint(0, 67, (2, 8, 17)).astype(np.int32)
    results = {}
    with jax.set_mesh(fns.mesh):
        for warm in (False, True):
            exes = Executables(fns, seq_len=17, background=True, workers=2, warm=warm)
            exes.submit([(2, 8), (1, 16)])
            executable = exes.get(2, 8)
            exes.get(1, 16)
            exes.close()
            assert exes._scratch is None and exes._unwarmed == 0  # nothing held after warm-up
            batch = jax.device_put(tokens, mesh_lib.batch_sharding(fns.mesh))
            state, metrics = executable(
                fns.init(jax.random.key(0)), batch, step_lib.hparams_array(1e-3, 0.95, 0.9)
            )
            results[warm] = (jax.device_get(state["params"]), float(metrics["loss"]))
    assert results[True][1] == results[False][1]
    for a, b in zip(jax.tree.leaves(results[True][0]), jax.tree.leaves(results[False][0])):
        np.testing.assert_array_equal(a, b)
