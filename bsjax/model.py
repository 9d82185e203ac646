"""Decoder-only transformer in Flax NNX, with the source paper's model presets.

Shapes in names: B batch, T time (sequence), D d_model, N heads, H head dim,
F MLP width, V vocabulary.

Parameters carry a partition spec for FSDP: the d_model axis of every matrix is
sharded over the mesh axis named ``fsdp`` (replicated where that axis has size 1).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

FSDP = "fsdp"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of one model. ``vocab_size`` comes from the tokenizer."""

    vocab_size: int
    ctx_len: int
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    pos: str = "rope"  # rope | learned
    mlp: str = "gelu"  # gelu | swiglu
    tie_embeddings: bool = True
    dtype: str = "float32"  # compute dtype: float32 | bfloat16
    param_dtype: str = "float32"
    attention: str = "auto"  # auto | xla | cudnn (jax.nn.dot_product_attention)
    rope_base: float = 10000.0

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


# name -> (n_heads, n_layers, d_model, d_ff). The paper's Table 2 and Table 5
# name models by their non-embedding parameter count (vocabulary 50280, ctx 512).
PRESETS: dict[str, tuple[int, int, int, int]] = {
    # Table 2.
    "85M": (12, 12, 768, 3072),
    "151M": (16, 12, 1024, 4096),
    "302M": (16, 24, 1024, 4096),
    "604M": (16, 12, 2048, 8192),
    "1.2B": (32, 24, 2048, 8192),
    # Table 5, depth scaling of 151M.
    "302M-depth": (16, 24, 1024, 4096),
    "604M-depth": (16, 48, 1024, 4096),
    "1.2B-depth": (16, 96, 1024, 4096),
    # Table 5, width scaling of 151M.
    "340M-width": (24, 12, 1536, 6144),
    "604M-width": (32, 12, 2048, 8192),
    "944M-width": (40, 12, 2560, 10240),
    # Tiny presets for CPU runs and tests.
    "tiny": (4, 2, 64, 256),
    "small-cpu": (4, 4, 128, 512),
}


def preset_config(name: str, vocab_size: int, ctx_len: int, **overrides: Any) -> ModelConfig:
    """The ModelConfig of a named preset; ``overrides`` replace any field."""
    if name not in PRESETS:
        raise ValueError(f"model.preset={name!r} is not a preset; choose one of {sorted(PRESETS)}")
    n_heads, n_layers, d_model, d_ff = PRESETS[name]
    fields = dict(n_heads=n_heads, n_layers=n_layers, d_model=d_model, d_ff=d_ff)
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return ModelConfig(vocab_size=vocab_size, ctx_len=ctx_len, **fields)


def count_params(cfg: ModelConfig) -> dict[str, int]:
    """Parameter counts by formula: total, embedding and non-embedding.

    Non-embedding excludes token and position embeddings and the untied output
    matrix; it is the count the paper's model names refer to.
    """
    D, F, L, V = cfg.d_model, cfg.d_ff, cfg.n_layers, cfg.vocab_size
    attn = 4 * D * D
    mlp = (3 if cfg.mlp == "swiglu" else 2) * D * F
    norms = 4 * D  # two LayerNorms, scale and bias each
    non_embedding = L * (attn + mlp + norms) + 2 * D  # + final LayerNorm
    embedding = V * D + (0 if cfg.tie_embeddings else V * D)
    embedding += cfg.ctx_len * D if cfg.pos == "learned" else 0
    return dict(total=non_embedding + embedding, embedding=embedding, non_embedding=non_embedding)


def flops_per_token(cfg: ModelConfig) -> float:
    """Training FLOPs per token (forward + backward), for MFU.

    6 x (matmul parameters, including the output projection) plus the attention
    score and value products, 12 * layers * ctx * D (PaLM's accounting, which does
    not halve for the causal mask).
    """
    D, F, L, V = cfg.d_model, cfg.d_ff, cfg.n_layers, cfg.vocab_size
    matmul = L * (4 * D * D + (3 if cfg.mlp == "swiglu" else 2) * D * F) + V * D
    return 6.0 * matmul + 12.0 * L * cfg.ctx_len * D


def _dtype(name: str):
    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[name]


def _partitioned(init, spec: tuple):
    """``init`` with an FSDP partition spec when a mesh with an ``fsdp`` axis is active.

    Outside such a mesh (a notebook, a unit test) the model builds unsharded.
    """
    if FSDP in jax.sharding.get_abstract_mesh().axis_names:
        return nnx.with_partitioning(init, spec)
    return init


def _init(std: float, spec: tuple):
    return _partitioned(nnx.initializers.normal(std), spec)


def rope(x_BTNH: jax.Array, base: float) -> jax.Array:
    """Rotary position embedding over the last axis (pairs of halves)."""
    T, H = x_BTNH.shape[1], x_BTNH.shape[-1]
    inv_freq_h = 1.0 / (base ** (jnp.arange(0, H // 2, dtype=jnp.float32) * 2.0 / H))
    angle_Th = jnp.arange(T, dtype=jnp.float32)[:, None] * inv_freq_h[None, :]
    sin_T1h, cos_T1h = jnp.sin(angle_Th)[:, None, :], jnp.cos(angle_Th)[:, None, :]
    x1, x2 = jnp.split(x_BTNH.astype(jnp.float32), 2, axis=-1)
    out = jnp.concatenate([x1 * cos_T1h - x2 * sin_T1h, x2 * cos_T1h + x1 * sin_T1h], axis=-1)
    return out.astype(x_BTNH.dtype)


class Attention(nnx.Module):
    """Causal multi-head self-attention through jax.nn.dot_product_attention."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        D, N, H = cfg.d_model, cfg.n_heads, cfg.head_dim
        std = D**-0.5
        dt, pdt = _dtype(cfg.dtype), _dtype(cfg.param_dtype)
        self.qkv = nnx.Einsum(
            "BTD,DSNH->BTSNH",
            (D, 3, N, H),
            param_dtype=pdt,
            dtype=dt,
            kernel_init=_init(std, (FSDP, None, None, None)),
            rngs=rngs,
        )
        self.out = nnx.Einsum(
            "BTNH,NHD->BTD",
            (N, H, D),
            param_dtype=pdt,
            dtype=dt,
            kernel_init=_init(std / (2 * cfg.n_layers) ** 0.5, (None, None, FSDP)),
            rngs=rngs,
        )
        self.cfg = cfg

    def __call__(self, x_BTD: jax.Array) -> jax.Array:
        qkv_BT3NH = self.qkv(x_BTD)
        q_BTNH, k_BTNH, v_BTNH = (qkv_BT3NH[:, :, i] for i in range(3))
        if self.cfg.pos == "rope":
            q_BTNH, k_BTNH = rope(q_BTNH, self.cfg.rope_base), rope(k_BTNH, self.cfg.rope_base)
        impl = None if self.cfg.attention == "auto" else self.cfg.attention
        o_BTNH = jax.nn.dot_product_attention(
            q_BTNH, k_BTNH, v_BTNH, is_causal=True, implementation=impl
        )
        return self.out(o_BTNH)


class Mlp(nnx.Module):
    """GELU MLP, or SwiGLU when cfg.mlp == 'swiglu'."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        D, F = cfg.d_model, cfg.d_ff
        dt, pdt = _dtype(cfg.dtype), _dtype(cfg.param_dtype)
        n_in = 2 if cfg.mlp == "swiglu" else 1
        self.up = nnx.Einsum(
            "BTD,DCF->BTCF",
            (D, n_in, F),
            param_dtype=pdt,
            dtype=dt,
            kernel_init=_init(D**-0.5, (FSDP, None, None)),
            rngs=rngs,
        )
        self.down = nnx.Einsum(
            "BTF,FD->BTD",
            (F, D),
            param_dtype=pdt,
            dtype=dt,
            kernel_init=_init(F**-0.5 / (2 * cfg.n_layers) ** 0.5, (None, FSDP)),
            rngs=rngs,
        )
        self.swiglu = cfg.mlp == "swiglu"

    def __call__(self, x_BTD: jax.Array) -> jax.Array:
        h_BTCF = self.up(x_BTD)
        if self.swiglu:
            h_BTF = jax.nn.silu(h_BTCF[:, :, 0]) * h_BTCF[:, :, 1]
        else:
            h_BTF = jax.nn.gelu(h_BTCF[:, :, 0])
        return self.down(h_BTF)


def _layer_norm(cfg: ModelConfig, rngs: nnx.Rngs) -> nnx.LayerNorm:
    return nnx.LayerNorm(
        cfg.d_model,
        dtype=_dtype(cfg.dtype),
        param_dtype=_dtype(cfg.param_dtype),
        scale_init=_partitioned(nnx.initializers.ones, (FSDP,)),
        bias_init=_partitioned(nnx.initializers.zeros, (FSDP,)),
        rngs=rngs,
    )


class Block(nnx.Module):
    """Pre-LayerNorm transformer block."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.ln_attn = _layer_norm(cfg, rngs)
        self.attn = Attention(cfg, rngs)
        self.ln_mlp = _layer_norm(cfg, rngs)
        self.mlp = Mlp(cfg, rngs)

    def __call__(self, x_BTD: jax.Array) -> jax.Array:
        x_BTD = x_BTD + self.attn(self.ln_attn(x_BTD))
        return x_BTD + self.mlp(self.ln_mlp(x_BTD))


class Transformer(nnx.Module):
    """Decoder-only LM: tokens [B, T] -> logits [B, T, V] (float32)."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        D, V = cfg.d_model, cfg.vocab_size
        dt, pdt = _dtype(cfg.dtype), _dtype(cfg.param_dtype)
        self.cfg = cfg
        self.embed = nnx.Embed(
            V, D, dtype=dt, param_dtype=pdt, embedding_init=_init(1.0, (None, FSDP)), rngs=rngs
        )
        if cfg.pos == "learned":
            self.pos_embed = nnx.Embed(
                cfg.ctx_len,
                D,
                dtype=dt,
                param_dtype=pdt,
                embedding_init=_init(0.02, (None, FSDP)),
                rngs=rngs,
            )
        self.blocks = nnx.List([Block(cfg, rngs) for _ in range(cfg.n_layers)])
        self.ln_final = _layer_norm(cfg, rngs)
        if not cfg.tie_embeddings:
            self.unembed = nnx.Einsum(
                "BTD,DV->BTV",
                (D, V),
                param_dtype=pdt,
                dtype=dt,
                kernel_init=_init(D**-0.5, (FSDP, None)),
                rngs=rngs,
            )

    def __call__(self, tokens_BT: jax.Array) -> jax.Array:
        x_BTD = self.embed(tokens_BT)
        if self.cfg.pos == "learned":
            x_BTD = x_BTD + self.pos_embed(jnp.arange(tokens_BT.shape[1]))[None]
        for block in self.blocks:
            x_BTD = block(x_BTD)
        x_BTD = self.ln_final(x_BTD)
        if self.cfg.tie_embeddings:
            logits_BTV = self.embed.attend(x_BTD) * self.cfg.d_model**-0.5
        else:
            logits_BTV = self.unembed(x_BTD)
        return logits_BTV.astype(jnp.float32)


def validate_model_config(cfg: ModelConfig, fsdp: int = 1) -> list[str]:
    """One message per inconsistent architecture field."""
    errors = []
    if cfg.d_model % cfg.n_heads:
        errors.append(
            f"model.d_model={cfg.d_model} must be divisible by model.n_heads={cfg.n_heads}"
        )
    elif cfg.head_dim % 2 and cfg.pos == "rope":
        errors.append(f"rotary positions need an even head dim; got {cfg.head_dim}")
    if cfg.pos not in ("rope", "learned"):
        errors.append(f"model.pos={cfg.pos!r} must be 'rope' or 'learned'")
    if cfg.mlp not in ("gelu", "swiglu"):
        errors.append(f"model.mlp={cfg.mlp!r} must be 'gelu' or 'swiglu'")
    for key in ("dtype", "param_dtype"):
        if getattr(cfg, key) not in ("float32", "bfloat16"):
            errors.append(f"model.{key}={getattr(cfg, key)!r} must be 'float32' or 'bfloat16'")
    if cfg.attention not in ("auto", "xla", "cudnn"):
        errors.append(f"model.attention={cfg.attention!r} must be 'auto', 'xla' or 'cudnn'")
    if fsdp > 1 and cfg.d_model % fsdp:
        errors.append(f"model.d_model={cfg.d_model} must be divisible by mesh.fsdp={fsdp}")
    for key in ("ctx_len", "d_model", "n_layers", "n_heads", "d_ff", "vocab_size"):
        if getattr(cfg, key) <= 0:
            errors.append(f"model.{key} must be positive, got {getattr(cfg, key)}")
    return errors
