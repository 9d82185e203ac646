"""Tiny CPU run whose batch follows the gradient noise scale (McCandlish et al. 2018).

B_simple is estimated inside every step from the micro-batch gradients and
their mean, so every bucket needs K >= 2 micro-steps: micro_batch_per_device
is half the smallest size on one device. The ladder is 32, 64, ..., 256.

  bsjax train --config=configs/policy_noise_scale.py --workdir=runs/policy_noise_scale
  (arg "fast": decide every 5 steps with patience 1, to see switches sooner)
"""

from bsjax.config import tiny_cpu_config

CTX = 128
BUDGET_EXAMPLES = 12_800  # 400 steps at 32, as in every policy_*.py config


def get_config(arg=None):
    c = tiny_cpu_config(batch_size=32, ctx_len=CTX)
    c.batch.micro_batch_per_device = 16  # K = 2 at B = 32 on one device
    c.batch.policy.name = "noise_scale"
    c.batch.policy.max_batch_size = 256
    ns = c.batch.policy.noise_scale
    ns.multiple = 2.0  # B_simple of this tiny model grows from ~1 to ~50 sequences
    ns.ema = 0.95
    ns.decide_every = 10
    ns.warmup_steps = 30
    ns.hysteresis = 0.25
    ns.patience = 2
    if arg == "fast":
        ns.decide_every, ns.patience = 5, 1
    c.train.max_tokens = BUDGET_EXAMPLES * CTX  # the same data for every policy config
    return c
