"""Tiny CPU run with the branched CBS probe (Merrill et al. 2025).

Every 60 steps' worth of tokens (at the start size), the trainer branches from
the current state at k B for k = 1, 2, 4 with LR sqrt(k) eta over the same
10 steps' worth of tokens; when the measured CBS exceeds 2 B, B doubles (and
the LR follows batch.lr_scaling = "sqrt", as in the paper). Branch tokens and
steps are counted apart from the main run.

Needs a trainer that attaches a prober (policy.attach_prober); see
bsjax/batching/policies/probe.py.

  bsjax train --config=configs/policy_probe.py --workdir=runs/policy_probe
"""

from bsjax.config import tiny_cpu_config

START = 32
CTX = 128
BUDGET_EXAMPLES = 12_800  # 400 steps at 32, as in every policy_*.py config


def get_config(arg=None):
    del arg
    c = tiny_cpu_config(batch_size=START, ctx_len=CTX)
    c.batch.lr_scaling = "sqrt"
    c.batch.policy.name = "probe"
    c.batch.policy.max_batch_size = 128
    p = c.batch.policy.probe
    p.factors = "1 2 4"
    p.eps = 0.01
    p.eps_mode = "relative"
    p.probe_tokens = str(START * CTX * 10)
    p.every_tokens = str(START * CTX * 60)
    p.start_tokens = str(START * CTX * 40)
    p.cbs_over = 2.0
    c.train.max_tokens = BUDGET_EXAMPLES * CTX  # the same data for every policy config
    return c
