"""Tiny CPU run with seesaw: where the cosine LR would halve, the batch doubles instead.

The LR stays at peak x (1/sqrt 2)^n after n doublings (32 -> 64 -> 128 -> 256);
past 256 the remaining halving points halve the LR. batch.lr_scaling must stay
"none": seesaw sets the LR itself. Needs a trainer that passes its LR
schedule to the plan and uses policy.lr_override(tokens).

  bsjax train --config=configs/policy_seesaw.py --workdir=runs/policy_seesaw
"""

from bsjax.config import tiny_cpu_config

CTX = 128
BUDGET_EXAMPLES = 12_800  # 400 steps at 32, as in every policy_*.py config
TOTAL_TOKENS = BUDGET_EXAMPLES * CTX


def get_config(arg=None):
    del arg
    c = tiny_cpu_config(batch_size=32, ctx_len=CTX)
    c.optim.schedule = "cosine"
    c.optim.total_tokens = TOTAL_TOKENS
    c.batch.lr_scaling = "none"
    c.batch.policy.name = "seesaw"
    c.batch.policy.max_batch_size = 256
    c.train.max_tokens = TOTAL_TOKENS  # the same data for every policy config
    c.train.eval_every = 25
    return c
