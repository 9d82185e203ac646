"""The demo's model and optimizer (configs/demo.py) as a single-run config for `bsjax train`.

  bsjax train --config=experiments/findings/demo_model.py --workdir=runs/x \
      --config.batch.batch_size=8 --config.train.max_tokens=500000

``configs/demo.py`` is a sweep config (a ``base`` run config plus a ``sweep``
section); this file returns its ``base``, so single runs of the finding and
policy scripts train exactly the model and optimizer whose critical batch size
the demo sweep measures (B* about 13 sequences at 20 tokens per parameter).
The half-life rules of the sweep are set here too: Adam beta2 0.99 and EWA tau
0.975 hold at batch 8 and keep their half-lives in tokens at other batch sizes.
"""

import importlib.util
from pathlib import Path

_DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.py"


def get_config(arg=None):
    del arg
    spec = importlib.util.spec_from_file_location("bsjax_demo_sweep_config", _DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config()["base"]
    c.batch.batch_size = 8
    c.batch.base_batch_size = 8
    c.batch.beta2_rule = "half_life"
    c.batch.tau_rule = "half_life"
    c.optim.ewa_tau = 0.975
    c.optim.warmup_tokens = 62_500  # 0.125 of the demo reference run's 0.5M tokens
    return c
