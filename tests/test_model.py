"""Model shapes, parameter counts against the paper's names, FLOPs."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from bsjax import model as model_lib

# Paper presets (Tables 2 and 5), named by their non-embedding parameter count.
NAMED = {
    "85M": 85e6,
    "151M": 151e6,
    "302M": 302e6,
    "604M": 604e6,
    "1.2B": 1.2e9,
    "604M-depth": 604e6,
    "1.2B-depth": 1.2e9,
    "340M-width": 340e6,
    "604M-width": 604e6,
    "944M-width": 944e6,
}


@pytest.mark.parametrize("name,expected", NAMED.items())
def test_paper_presets_match_their_names_within_5_percent(name, expected):
    cfg = model_lib.preset_config(name, vocab_size=50280, ctx_len=512)
    counts = model_lib.count_params(cfg)
    assert abs(counts["non_embedding"] / expected - 1) < 0.05
    assert counts["total"] == counts["non_embedding"] + counts["embedding"]


@pytest.mark.parametrize(
    "variant",
    [
        dict(),
        dict(pos="learned"),
        dict(mlp="swiglu"),
        dict(tie_embeddings=False),
        dict(dtype="bfloat16"),
    ],
)
def test_forward_shapes_and_formula_count(variant):
    cfg = model_lib.preset_config("tiny", vocab_size=101, ctx_len=16, **variant)
    model = model_lib.Transformer(cfg, nnx.Rngs(0))
    logits_BTV = nnx.jit(lambda m, t: m(t))(model, jnp.zeros((3, 16), jnp.int32))
    assert logits_BTV.shape == (3, 16, 101) and logits_BTV.dtype == jnp.float32
    actual = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert actual == model_lib.count_params(cfg)["total"]


def test_causal_prediction_does_not_see_the_future():
    cfg = model_lib.preset_config("tiny", vocab_size=50, ctx_len=8)
    model = model_lib.Transformer(cfg, nnx.Rngs(0))
    a = jnp.array([[1, 2, 3, 4, 5, 6, 7, 8]])
    b = a.at[0, 5:].set(9)
    forward = nnx.jit(lambda m, t: m(t))
    la, lb = forward(model, a), forward(model, b)
    assert jnp.allclose(la[0, :5], lb[0, :5], atol=1e-5)
    assert not jnp.allclose(la[0, 5:], lb[0, 5:], atol=1e-3)


def test_flops_per_token_is_six_n_plus_attention():
    cfg = model_lib.preset_config("151M", vocab_size=50280, ctx_len=512)
    n = model_lib.count_params(cfg)["non_embedding"]
    flops = model_lib.flops_per_token(cfg)
    # 6 x (matmul params incl. the output projection) + 12 L T D; LayerNorms are not matmuls.
    assert flops == pytest.approx(
        6 * (n - 12 * 4 * 1024 - 2 * 1024 + 50280 * 1024) + 12 * 12 * 512 * 1024
    )


def test_bad_architecture_messages():
    cfg = model_lib.preset_config("tiny", vocab_size=10, ctx_len=8, n_heads=3)
    assert any("n_heads" in e for e in model_lib.validate_model_config(cfg))
    with pytest.raises(ValueError, match="not a preset"):
        model_lib.preset_config("7B", vocab_size=10, ctx_len=8)
