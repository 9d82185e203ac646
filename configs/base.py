"""The base config: every key a run reads, with the source paper's defaults.

Usage: bsjax train --config=configs/base.py --workdir=runs/x --config.train.max_steps=100
"""

from bsjax.config import base_config


def get_config(arg=None):
    del arg
    config = base_config()
    config.train.max_steps = 1000
    return config
