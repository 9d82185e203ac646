"""The run config: ConfigDict defaults for config files, and the typed RunConfig they parse into.

Config files under configs/ start from ``base_config()`` (or ``tiny_cpu_config()``)
and change what they need (big_vision's style); ``--config.x=`` overrides work on
that ConfigDict. At the command line it is parsed once, ``parse(config_dict)``,
into a frozen ``RunConfig``; everything below takes the RunConfig. Durations
carry their unit in the key: ``warmup_tokens``, ``max_steps``, ``max_tokens``.
"""

from __future__ import annotations

import ml_collections

from bsjax.config.run import (
    STOP_STATUSES,
    ConfigError,
    DataSection,
    MeshSection,
    ModelSection,
    RunConfig,
    TargetSection,
    TrainSection,
    batch_plan,
    describe_fields,
    model_config,
    parse,
    to_dict,
    validate,
)

__all__ = [
    "STOP_STATUSES",
    "ConfigError",
    "DataSection",
    "MeshSection",
    "ModelSection",
    "RunConfig",
    "TargetSection",
    "TrainSection",
    "base_config",
    "batch_plan",
    "describe_fields",
    "model_config",
    "parse",
    "tiny_cpu_config",
    "to_dict",
    "validate",
]


def base_config() -> ml_collections.ConfigDict:
    """Every key a run reads, with the source paper's defaults where it gives one."""
    return ml_collections.ConfigDict(to_dict(RunConfig()))


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
