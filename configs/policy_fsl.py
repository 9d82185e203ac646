"""Tiny CPU run with the FSL-optimal late switch (Wang et al. 2026).

Given the FSL exponents (s, beta) -- here a hard task, s < 1 - 1/beta, given
directly; fit them on small runs with bsjax.theory -- and the data budget in
examples, the switch point from 32 to 128 that minimises the FSL loss is
computed before training and run as a fixed table.

  bsjax train --config=configs/policy_fsl.py --workdir=runs/policy_fsl
  (arg "easy": s = 0.8, an easy task, where the large batch comes early)
"""

from bsjax.config import tiny_cpu_config

CTX = 128
BUDGET_EXAMPLES = 12_800  # 400 steps at 32, as in every policy_*.py config


def get_config(arg=None):
    c = tiny_cpu_config(batch_size=32, ctx_len=CTX)
    c.batch.policy.name = "fsl"
    c.batch.policy.sizes = "32 128"
    f = c.batch.policy.fsl
    f.s = 0.8 if arg == "easy" else 0.3
    f.beta = 2.0
    f.sigma2 = 1.0
    f.lr = 0.5
    f.budget_examples = str(BUDGET_EXAMPLES)
    c.train.max_tokens = BUDGET_EXAMPLES * CTX  # the same data for every policy config
    return c
