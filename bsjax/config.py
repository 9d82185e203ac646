"""The run config: base values, the model it describes, and validation before compile.

Config files under configs/ start from ``base_config()`` and change what they
need (big_vision's style). Durations carry their unit in the key:
``warmup_tokens``, ``max_steps``, ``max_tokens``.
"""

from __future__ import annotations

import ml_collections

from bsjax import model as model_lib
from bsjax import optim
from bsjax.batching.config import default_batch_config, validate_batch_config
from bsjax.data.config import default_data_config, validate_data_config
from bsjax.errors import ProblemsError

STOP_STATUSES = ("target_reached", "max_steps", "max_tokens", "diverged", "preempted")


class ConfigError(ProblemsError):
    """A config that cannot run; the message lists every bad key."""

    heading = "invalid config"


def base_config() -> ml_collections.ConfigDict:
    """Every key a run reads, with the source paper's defaults where it gives one."""
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.model = ml_collections.ConfigDict(
        dict(
            preset="tiny",
            ctx_len=512,
            vocab_size=0,  # 0: the tokenizer's; larger pads the embedding (e.g. 50280, or a multiple of 128)
            # Overrides of the preset's architecture (0 keeps the preset's value).
            d_model=0,
            n_layers=0,
            n_heads=0,
            d_ff=0,
            pos="rope",
            mlp="gelu",
            tie_embeddings=True,
            dtype="float32",
            param_dtype="float32",
            attention="auto",
        )
    )
    c.data = default_data_config()

    # Zhang et al. Table 3 defaults: beta1 0.95, LR 3.16e-3, no weight decay, clip 1.0.
    c.optim = ml_collections.ConfigDict(
        dict(
            lr=3.16e-3,
            b1=0.95,
            b2=0.99,
            eps=1e-8,
            weight_decay=0.0,
            clip_norm=1.0,
            schedule="constant",
            warmup_tokens=0,
            total_tokens=0,
            decay_fraction=0.2,
            decay_shape="linear",
            final_lr_fraction=0.0,
            ewa_tau=0.99,
        )
    )
    c.batch = default_batch_config()
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1))

    c.train = ml_collections.ConfigDict(
        dict(
            max_steps=0,
            max_tokens=0,  # 0: no limit (one of the stops must be set)
            target_loss=0.0,  # stop when the EWA eval loss reaches it (0: off)
            eval_schedule="every",  # every | hybrid (Zhang et al.'s 2^i + every k + dense tail)
            eval_every=100,
            expected_steps=0,  # expected_steps: the hybrid schedule's n
            eval_batches=4,
            eval_batch_size=16,
            checkpoint_every=500,
            keep_checkpoints=3,
            async_checkpoint=True,
            log_every=10,
            compile_ahead=True,
            compile_workers=0,  # 0: a quarter of the cores, 1 to 4
            compile_cache_dir="",
            log_example_ids=False,
            tensorboard=True,
        )
    )
    return c


def tiny_cpu_config(batch_size: int = 64, ctx_len: int = 128) -> ml_collections.ConfigDict:
    """The tiny model on the embedded corpus that the CPU configs share.

    Warmup lasts 20 steps at ``batch_size``; evaluation every 50 steps on 4
    batches of 32; no stop is set (each config sets its own budget).
    """
    c = base_config()
    c.model.preset = "tiny"
    c.model.ctx_len = ctx_len
    c.optim.lr = 3e-3
    c.optim.b1 = 0.9
    c.optim.b2 = 0.99
    c.optim.warmup_tokens = batch_size * ctx_len * 20
    c.optim.ewa_tau = 0.95
    c.batch.batch_size = batch_size
    c.batch.micro_batch_per_device = 64
    c.train.eval_every = 50
    c.train.eval_batches = 4
    c.train.eval_batch_size = 32
    c.train.checkpoint_every = 100
    c.train.log_every = 10
    return c


def model_config(config: ml_collections.ConfigDict, vocab_size: int) -> model_lib.ModelConfig:
    """The ModelConfig a run config describes, for a tokenizer's vocabulary."""
    m = config.model
    overrides = {k: m[k] for k in ("d_model", "n_layers", "n_heads", "d_ff") if m[k]}
    if m.vocab_size and m.vocab_size < vocab_size:
        raise ConfigError(
            [
                f"model.vocab_size={m.vocab_size} is smaller than the tokenizer's "
                f"vocabulary {vocab_size}; use 0 or at least {vocab_size}"
            ]
        )
    return model_lib.preset_config(
        m.preset,
        vocab_size=m.vocab_size or vocab_size,
        ctx_len=m.ctx_len,
        pos=m.pos,
        mlp=m.mlp,
        tie_embeddings=m.tie_embeddings,
        dtype=m.dtype,
        param_dtype=m.param_dtype,
        attention=m.attention,
        **overrides,
    )


def validate(config: ml_collections.ConfigDict, num_devices: int) -> list[str]:
    """Every problem of a run config, one message each, before anything is built."""
    problems: list[str] = []
    data, fsdp = config.mesh.data, config.mesh.fsdp
    mesh_ok = (
        fsdp >= 1
        and (data == -1 or data >= 1)
        and (num_devices % fsdp == 0 if data == -1 else data * fsdp == num_devices)
    )
    if config.model.preset not in model_lib.PRESETS:
        problems.append(
            f"model.preset={config.model.preset!r} is unknown; choose one of "
            f"{sorted(model_lib.PRESETS)}"
        )
    else:
        problems += model_lib.validate_model_config(
            model_config(config, vocab_size=1), fsdp=fsdp if mesh_ok else 1
        )
    problems += [
        f"data: {p}" if not p.startswith("data") else p for p in validate_data_config(config.data)
    ]
    optim_problems = optim.validate_optim_config(config.optim)
    problems += optim_problems

    shards = None
    if fsdp < 1 or (data != -1 and data < 1):
        problems.append(f"mesh.data={data}, mesh.fsdp={fsdp}: sizes must be >= 1 (data may be -1)")
    elif data == -1 and num_devices % fsdp:
        problems.append(f"mesh.fsdp={fsdp} must divide the {num_devices} devices")
    elif data != -1 and data * fsdp != num_devices:
        problems.append(
            f"mesh.data * mesh.fsdp = {data * fsdp} must equal the {num_devices} devices"
        )
    else:
        shards = num_devices
    if shards is not None:
        # A bad optimizer value was reported above; the batch rules then skip their base check.
        bases_ok = not optim_problems
        problems += [
            p if p.startswith("batch") else f"batch: {p}"
            for p in validate_batch_config(
                config.batch,
                config.model.ctx_len,
                shards,
                base_b2=config.optim.b2 if bases_ok else None,
                base_ewa_tau=config.optim.ewa_tau if bases_ok else None,
                lr_schedule=optim.lr_schedule_from_config(config.optim) if bases_ok else None,
            )
        ]

    t = config.train
    if t.max_steps < 0 or t.max_tokens < 0:
        problems.append("train.max_steps and train.max_tokens must be >= 0 (0: no limit)")
    if not (t.max_steps or t.max_tokens or t.target_loss > 0):
        problems.append("set a stop: train.max_steps, train.max_tokens or train.target_loss")
    if t.target_loss < 0:
        problems.append(f"train.target_loss={t.target_loss} must be >= 0 (0: off)")
    if t.eval_schedule not in ("every", "hybrid"):
        problems.append(f"train.eval_schedule={t.eval_schedule!r} must be 'every' or 'hybrid'")
    if t.eval_schedule == "hybrid" and t.expected_steps <= 0:
        problems.append("train.eval_schedule='hybrid' needs train.expected_steps > 0")
    if t.eval_every < 1:
        problems.append(f"train.eval_every={t.eval_every} must be >= 1")
    if t.eval_batches < 1 or t.eval_batch_size < 1:
        problems.append("train.eval_batches and train.eval_batch_size must be >= 1")
    elif t.eval_batch_size % num_devices:
        problems.append(
            f"train.eval_batch_size={t.eval_batch_size} must be divisible by the "
            f"{num_devices} devices"
        )
    if t.checkpoint_every < 1 or t.keep_checkpoints < 1:
        problems.append("train.checkpoint_every and train.keep_checkpoints must be >= 1")
    if t.log_every < 1:
        problems.append(f"train.log_every={t.log_every} must be >= 1")
    return problems
