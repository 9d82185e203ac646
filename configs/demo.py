"""The default demo (`make run`): measure a critical batch size on the embedded corpus in minutes.

  bsjax sweep --config=configs/demo.py --workdir=runs/demo

A 2-layer, d_model 32 transformer (about 25k non-embedding parameters) on the
interpreter's standard library (bytes tokenizer, context 64). The reference
run at batch 8 trains for the Chinchilla step (20 tokens per parameter,
about 0.5M tokens); its EWA eval loss there is the target. Batch sizes 2 to
64 then train to that target with the paper's protocol (constant LR after
warm-up plus EWA, hybrid evaluation schedule). On this model the small sizes
scale linearly and the large ones saturate, so the fit measures B*.

Choices made for speed on a 2-core CPU, each a departure from the paper
(Zhang et al. 2024, Table 3): one run per batch size instead of a grid; LR
1e-2 (a tiny model trains well at a higher LR); warm-up 0.125 of the
reference tokens (the runs are short); Adam beta2 0.99 and EWA tau 0.975 at
the reference batch, each scaled to keep its half-life in tokens
(v ** (B / 8): small batches get the larger beta2 and tau that the paper's
Table 4 also favours); 16k eval tokens.
"""

from bsjax.cbs.sweep import sweep_config
from bsjax.config import base_config


def get_config(arg=None):
    del arg
    c = base_config()
    c.model.preset = "tiny"
    c.model.d_model = 32
    c.model.n_layers = 2
    c.model.n_heads = 1
    c.model.d_ff = 128
    c.model.ctx_len = 64
    c.optim.lr = 1e-2
    c.optim.b1 = 0.95
    c.optim.b2 = 0.99
    c.batch.micro_batch_per_device = 64
    c.train.eval_every = 1000
    c.train.eval_batches = 4
    c.train.eval_batch_size = 64
    c.train.checkpoint_every = 1000
    c.train.keep_checkpoints = 1
    c.train.log_every = 50
    c.train.tensorboard = False
    return sweep_config(
        c,
        batch_sizes=(2, 4, 8, 16, 32, 64),
        reference_batch_size=8,
        chinchilla_ratio=20.0,
        lr=(1e-2,),
        b2=(0.99,),
        ewa_tau=(0.975,),
        b2_rule="half_life",
        ewa_tau_rule="half_life",
        warmup_fraction=(0.125,),
        max_steps_factor=5.0,
        min_expected_steps=50,
        analysis=dict(bootstrap=500),
    )
