"""A tiny LM on the embedded corpus that trains in about a minute on a 2-core CPU.

bsjax train --config=configs/tiny_cpu.py --workdir=runs/tiny_cpu
"""

from bsjax.config import tiny_cpu_config


def get_config(arg=None):
    del arg
    c = tiny_cpu_config(batch_size=64, ctx_len=128)
    c.train.max_steps = 300
    return c
