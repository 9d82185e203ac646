"""The source paper's models (Zhang et al., Tables 2 and 5) on C4 at context 512.

  bsjax train --config=configs/paper.py:151M --workdir=runs/151m
  bsjax train --config=configs/paper.py:1.2B,bs=512 --workdir=runs/1.2b_bs512

The argument is the preset name (85M, 151M, 302M, 604M, 1.2B, or a Table 5
variant such as 604M-depth), optionally followed by ",bs=B" for the batch size.
Hyper-parameters are the paper's optimum (Table 4): beta1 0.95, LR 3.16e-3,
beta2 and EWA tau from Table 4 per batch size, warmup 0.25 of the Chinchilla
length, constant LR plus EWA, trained until the Chinchilla step of batch 256.
Data: C4 through TFDS (prepare it with `tfds build c4/en` first, or point
data.data_dir at a prepared copy) with the gpt-neox-20b tokenizer.json given
by --config.data.tokenizer_path.
"""

from bsjax.config import base_config
from bsjax.model import PRESETS, count_params, preset_config


def get_config(arg="151M"):
    parts = (arg or "151M").split(",")
    preset = parts[0]
    options = dict(p.split("=", 1) for p in parts[1:])
    batch_size = int(options.get("bs", 256))
    if preset not in PRESETS:
        raise ValueError(
            f"configs/paper.py:{preset}: unknown preset; choose one of {sorted(PRESETS)}"
        )
    c = base_config()
    c.model.preset = preset
    c.model.ctx_len = 512
    c.model.dtype = "bfloat16"
    c.data.source = "tfds"
    c.data.name = "c4/en"
    c.data.tokenizer = "hf_json"
    c.data.validation_split = "validation"
    c.data.max_validation_tokens = 100 * 256 * 513
    n = count_params(preset_config(preset, vocab_size=50280, ctx_len=512))["non_embedding"]
    chinchilla_tokens = 20 * n
    c.optim.lr = 3.16e-3
    c.optim.b1 = 0.95
    c.optim.warmup_tokens = int(0.25 * chinchilla_tokens)
    c.batch.batch_size = batch_size
    c.batch.micro_batch_per_device = 32
    table_name = (
        preset.split("-")[0]
        if preset.split("-")[0] in ("85M", "151M", "302M", "604M", "1.2B")
        else "151M"
    )
    c.batch.beta2_rule = f"table:{table_name}"
    c.batch.tau_rule = f"table:{table_name}"
    c.train.max_tokens = chinchilla_tokens
    c.train.eval_schedule = "hybrid"
    c.train.eval_every = 1000
    c.train.expected_steps = max(1, chinchilla_tokens // (512 * batch_size))
    c.train.eval_batches = 100
    c.train.eval_batch_size = 64
    c.train.checkpoint_every = 1000
    c.train.log_every = 50
    return c
