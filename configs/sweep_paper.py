"""The source paper's CBS sweeps (Zhang et al. 2024, Tables 3 and 4) on C4, for a cluster.

  bsjax sweep --config=configs/sweep_paper.py:151M --workdir=runs/cbs_151m \
      --config.base.data.tokenizer_path=/path/to/gpt-neox-20b/tokenizer.json \
      --config.sweep.print_commands=True

The argument picks the sweep:
  151M (or 85M, 302M, 604M, 1.2B)  one model, batch sizes 2^6 .. 2^14, beta2
      and tau per batch size from the paper's Table 4 (its optimal runs), LR
      3.16e-3, warm-up 0.25 of the Chinchilla tokens: one run per batch size.
  151M,grid  the same batch sizes crossed with Table 3's beta2 x tau grid
      (5 x 7 runs per batch size); the best run per batch size enters the fit.
  151M,data  the Table 4 sweep at 0.28, 0.5, 1, 2 and 4 times the Chinchilla
      tokens: one target per data size, for the scaling law in D.
  chinchilla  all five models at 20.34 tokens per parameter, for the law in N.
The reference batch size is 256; B_opt of the CBS definition is 256 too.
The base run config is configs/paper.py (context 512, gpt-neox-20b tokenizer,
100 eval batches, hybrid evaluation every 1k steps).
"""

import importlib.util
from pathlib import Path

from bsjax.cbs.sweep import sweep_config

SIZES = ("85M", "151M", "302M", "604M", "1.2B")
BATCH_SIZES = tuple(2**i for i in range(6, 15))
# Tokens per non-embedding parameter of the reference run: the paper's Table 1
# steps (13193 for 85M, 23438 for 151M at batch 256, context 512) use 20.34.
CHINCHILLA_RATIO = 20.34


def _paper_run_config(preset):
    spec = importlib.util.spec_from_file_location(
        "bsjax_paper_config", Path(__file__).with_name("paper.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config(f"{preset},bs=256")
    # The sweep sets beta2, tau and the stop of every run itself.
    c.batch.beta2_rule = "fixed"
    c.batch.tau_rule = "fixed"
    c.train.max_tokens = 0
    return c


def get_config(arg="151M"):
    parts = (arg or "151M").split(",")
    name, variant = parts[0], (parts[1] if len(parts) > 1 else "")
    if name not in SIZES + ("chinchilla",) or variant not in ("", "grid", "data"):
        raise ValueError(
            f"configs/sweep_paper.py:{arg}: use one of {', '.join(SIZES)} (optionally ',grid' or "
            "',data') or 'chinchilla'"
        )
    base = _paper_run_config("151M" if name == "chinchilla" else name)
    values = dict(
        batch_sizes=BATCH_SIZES,
        reference_batch_size=256,
        lr=(3.16e-3,),
        b2_rule="table4",
        ewa_tau_rule="table4",
        warmup_fraction=(0.25,),
        chinchilla_ratio=CHINCHILLA_RATIO,
        max_steps_factor=4.0,
        min_expected_steps=100,
        analysis=dict(b_opt=256.0, overhead=0.2, alpha="1", bootstrap=1000),
    )
    if variant == "grid":
        values.update(
            b2_rule="grid",
            ewa_tau_rule="grid",
            b2=(0.95, 0.99, 0.995, 0.999, 0.9995),
            ewa_tau=(0.95, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995),
        )
    elif variant == "data":
        values.update(
            chinchilla_ratio=tuple(CHINCHILLA_RATIO * f for f in (0.28, 0.5, 1.0, 2.0, 4.0))
        )
    if name == "chinchilla":
        values.update(models=tuple(f"preset={size}" for size in SIZES))
    return sweep_config(base, **values)
