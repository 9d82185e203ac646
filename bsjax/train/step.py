"""Train state, the compiled train step and the evaluation step.

The step takes a batch ``tokens_KMT`` (K accumulation micro-steps of M sequences
of ctx_len + 1 tokens), scans over K, applies the optimizer once and updates the
EWA. Its LR, beta2 and EWA tau are inputs, so one executable serves every value.
Besides the loss it returns the two squared gradient norms that the gradient
noise scale needs (McCandlish et al. 2018): the mean over micro-steps of
|g_micro|^2 and |g_mean|^2. Accumulation gives them for free.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from bsjax import model as model_lib
from bsjax import optim
from bsjax.train import mesh as mesh_lib

State = dict[str, Any]  # params, opt_state, ewa, step


def _sq_norm(tree) -> jax.Array:
    return sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree))


def next_token_loss(graphdef, params, tokens_MT: jax.Array) -> jax.Array:
    """Mean next-token cross-entropy of a batch of sequences of ctx_len + 1 tokens."""
    logits_MLV = nnx.merge(graphdef, params)(tokens_MT[:, :-1])
    losses_ML = optax.softmax_cross_entropy_with_integer_labels(logits_MLV, tokens_MT[:, 1:])
    return losses_ML.mean()


@dataclasses.dataclass
class StepFunctions:
    """What the loop needs: state init, the train and eval steps, their shardings."""

    graphdef: Any
    init: Callable[[jax.Array], State]
    train_step: Callable  # (state, tokens_KMT, hparams) -> (state, metrics)
    eval_step: Callable  # (params, tokens_NMT) -> mean loss
    state_shardings: Any
    abstract_state: Any
    mesh: jax.sharding.Mesh


def build(model_cfg: model_lib.ModelConfig, optim_cfg, mesh: jax.sharding.Mesh) -> StepFunctions:
    """Build the jitted init, train and eval functions for one model and mesh."""
    optimizer = optim.make_optimizer(optim_cfg)
    with jax.set_mesh(mesh):
        abstract_model = nnx.eval_shape(lambda: model_lib.Transformer(model_cfg, nnx.Rngs(0)))
    graphdef, _ = nnx.split(abstract_model, nnx.Param)

    def init(key: jax.Array) -> State:
        params = nnx.state(model_lib.Transformer(model_cfg, nnx.Rngs(key)), nnx.Param)
        return dict(
            params=params,
            opt_state=optimizer.init(params),
            ewa=params,
            step=jnp.zeros((), jnp.int32),
        )

    key_abstract = jax.ShapeDtypeStruct((), jax.random.key(0).dtype)
    with jax.set_mesh(mesh):  # parameters are created sharded as annotated
        init_compiled = jax.jit(init).lower(key_abstract).compile()
        state_shardings = init_compiled.output_shardings
        abstract_state = jax.tree.map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
            jax.eval_shape(init, key_abstract),
            state_shardings,
        )

    loss_and_grad = jax.value_and_grad(lambda p, t: next_token_loss(graphdef, p, t))

    def train_step(state: State, tokens_KMT: jax.Array, hparams: dict[str, jax.Array]):
        params = state["params"]
        K = tokens_KMT.shape[0]

        def micro_step(carry, tokens_MT):
            grad_sum, loss_sum, micro_sq_sum = carry
            loss, grads = loss_and_grad(params, tokens_MT)
            grad_sum = jax.tree.map(jnp.add, grad_sum, grads)
            return (grad_sum, loss_sum + loss, micro_sq_sum + _sq_norm(grads)), None

        zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
        (grad_sum, loss_sum, micro_sq_sum), _ = jax.lax.scan(
            micro_step, (zeros, jnp.zeros(()), jnp.zeros(())), tokens_KMT
        )
        grads = jax.tree.map(lambda g, p: (g / K).astype(p.dtype), grad_sum, params)
        opt_state = optim.set_hyperparams(state["opt_state"], hparams["lr"], hparams["b2"])
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        ewa = optim.ewa_update(state["ewa"], params, hparams["ewa_tau"])
        grad_sq = _sq_norm(grads)
        metrics = dict(
            loss=loss_sum / K,
            grad_norm=jnp.sqrt(grad_sq),
            grad_sq=grad_sq,
            micro_grad_sq=micro_sq_sum / K,
        )
        new_state = dict(params=params, opt_state=opt_state, ewa=ewa, step=state["step"] + 1)
        return new_state, metrics

    replicated = mesh_lib.replicated(mesh)
    batch_sharding = mesh_lib.batch_sharding(mesh)
    jit_train = jax.jit(
        train_step,
        in_shardings=(state_shardings, batch_sharding, replicated),
        out_shardings=(state_shardings, replicated),
        donate_argnums=(0,),
    )

    def eval_step(params, tokens_NMT: jax.Array) -> jax.Array:
        losses_N = jax.lax.map(lambda t: next_token_loss(graphdef, params, t), tokens_NMT)
        return losses_N.mean()

    jit_eval = jax.jit(
        eval_step,
        in_shardings=(state_shardings["params"], batch_sharding),
        out_shardings=replicated,
    )
    return StepFunctions(
        graphdef=graphdef,
        init=init_compiled,
        train_step=jit_train,
        eval_step=jit_eval,
        state_shardings=state_shardings,
        abstract_state=abstract_state,
        mesh=mesh,
    )


def hparams_abstract() -> dict[str, jax.ShapeDtypeStruct]:
    return {k: jax.ShapeDtypeStruct((), jnp.float32) for k in ("lr", "b2", "ewa_tau")}


def hparams_array(lr: float, b2: float, ewa_tau: float) -> dict[str, np.float32]:
    """The step's hyperparameters as host float32 scalars.

    The compiled step places them on its replicated sharding itself; building
    ``jnp`` scalars here instead costs three device dispatches (about 0.4 ms on a
    CPU host) on every step's critical path.
    """
    return dict(lr=np.float32(lr), b2=np.float32(b2), ewa_tau=np.float32(ewa_tau))
