"""Three batch-size switches on a tiny CPU model: 16 -> 32 -> 64 -> 128 sequences.

Every bucket is compiled ahead in the background while the first segment
trains; each switch writes a `switch` line to metrics.jsonl with the old and
new (B, K, M), the reason and the stall of the first step after it; the LR
follows the square root of the batch and beta2 and EWA tau keep their
half-lives in tokens.

  bsjax train --config=configs/switch_demo.py --workdir=runs/switch_demo
  grep '"switch"' runs/switch_demo/metrics.jsonl
"""

from bsjax.config import tiny_cpu_config

CTX = 64


def get_config(arg=None):
    del arg
    c = tiny_cpu_config(batch_size=16, ctx_len=CTX)
    c.batch.schedule = "table"
    # Tokens: 40 steps at 16, 20 at 32, 20 at 64, then 128 (16 * 64 * 40 = 40960, ...).
    c.batch.table = "0:16 40960:32 81920:64 163840:128"
    c.batch.micro_batch_per_device = 64  # on one CPU device: K = 1, 1, 1, 2
    c.batch.lr_scaling = "sqrt"
    c.batch.beta2_rule = "half_life"
    c.batch.tau_rule = "half_life"
    c.train.max_steps = 100
    c.train.eval_every = 25
    c.train.checkpoint_every = 50
    return c
