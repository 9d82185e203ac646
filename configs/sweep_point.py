"""One run of a sweep, from the base config a sweep wrote (for cluster jobs).

  bsjax train --config=configs/sweep_point.py:runs/demo/base_config.json \
      --workdir=runs/demo/bs0016_... --config.batch.batch_size=16 ...

`bsjax sweep` with `--config.sweep.print_commands=True` prints these commands,
one per run, with every override of its point; the argument is the
base_config.json the sweep wrote into its folder.
"""

import json

import ml_collections


def get_config(arg=None):
    if not arg:
        raise ValueError(
            "configs/sweep_point.py needs the path of a sweep's base_config.json after ':'"
        )
    with open(arg, encoding="utf-8") as f:
        return ml_collections.ConfigDict(json.load(f))
