"""A tiny LM on the embedded corpus that trains in about a minute on a 2-core CPU.

  bsjax train --config=configs/tiny_cpu.py --workdir=runs/tiny_cpu
"""
from bsjax.config import base_config


def get_config(arg=None):
  del arg
  c = base_config()
  c.model.preset = "tiny"
  c.model.ctx_len = 128
  c.optim.lr = 3e-3
  c.optim.b1 = 0.9
  c.optim.b2 = 0.99
  c.optim.warmup_tokens = 64 * 128 * 20  # 20 steps at batch 64
  c.optim.ewa_tau = 0.95
  c.batch.batch_size = 64
  c.batch.micro_batch_per_device = 64
  c.train.max_steps = 300
  c.train.eval_every = 50
  c.train.eval_batches = 4
  c.train.eval_batch_size = 32
  c.train.checkpoint_every = 100
  c.train.log_every = 10
  return c
