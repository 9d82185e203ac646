"""A very small run for tests: 8 fake CPU devices, ctx 32, a text-folder corpus.

Pass the corpus and caches with --config.data.path=... (tests do this)."""

from bsjax.config import base_config


def get_config(arg=None):
    c = base_config()
    c.model.preset = "tiny"
    c.model.d_model = 32
    c.model.d_ff = 64
    c.model.n_heads = 2
    c.model.ctx_len = 32
    c.data.source = "text_folder"
    c.optim.lr = 3e-3
    c.optim.warmup_tokens = 16 * 32 * 3
    c.optim.ewa_tau = 0.9
    c.batch.batch_size = 16
    c.batch.micro_batch_per_device = 2
    c.train.max_steps = 12
    c.train.eval_every = 4
    c.train.eval_batches = 2
    c.train.eval_batch_size = 8
    c.train.checkpoint_every = 4
    c.train.log_every = 1
    c.train.tensorboard = True
    if arg == "switch":
        # Three switches; buckets (K, M): 16 -> (1,16), 32 -> (2,16), 48 -> (3,16), 64 -> (4,16).
        c.batch.schedule = "table"
        c.batch.table = "0:16 1536:32 3584:48 6656:64"
        c.batch.lr_scaling = "sqrt"
        c.batch.tau_rule = "half_life"
        c.train.max_steps = 14
    return c
