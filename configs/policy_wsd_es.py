"""Tiny CPU run that raises the batch as in Zhou et al. 2026 (CBS under WSD).

Default ("loss"): the batch is the fitted B_opt of the next target loss still
ahead; when the running train loss (EMA) crosses a target, the batch moves to
the next target's B_opt. The pairs below are illustrative for this tiny model
on the embedded corpus (bytes); replace them with a sweep's fit, e.g. from
`bsjax analyze`. Arg "tokens": the paper's own scheduler, steps at fixed
token counts.

  bsjax train --config=configs/policy_wsd_es.py --workdir=runs/policy_wsd_es
  bsjax train --config=configs/policy_wsd_es.py:tokens --workdir=runs/policy_wsd_es_tokens
"""

from bsjax.config import tiny_cpu_config

CTX = 128
BUDGET_EXAMPLES = 12_800  # 400 steps at 32, as in every policy_*.py config


def get_config(arg=None):
    c = tiny_cpu_config(batch_size=32, ctx_len=CTX)
    c.batch.policy.name = "wsd_es"
    w = c.batch.policy.wsd_es
    if arg == "tokens":
        w.mode = "tokens"
        w.table = f"0:32 {32 * CTX * 100}:64 {32 * CTX * 100 + 64 * CTX * 60}:128"
    else:
        w.mode = "loss"
        w.targets = "3.0:32 2.6:64 2.4:128"
        w.loss_key = "loss"
        w.ema = 0.9
        w.min_steps = 20
    c.train.max_tokens = BUDGET_EXAMPLES * CTX  # the same data for every policy config
    return c
