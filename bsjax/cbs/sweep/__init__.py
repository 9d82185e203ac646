"""CBS sweeps end to end: a reference run sets the target, every point trains to it, then the report.

The protocol of Zhang et al. (2024), "How Does Critical Batch Size Scale in
Pre-training?", Sec. 3 and Appendix D:

1. For each setting (a model size and a Chinchilla ratio) a **reference run**
   at ``reference_batch_size`` trains for the Chinchilla step
   ``t_chin = ceil(ratio * N / (ctx_len * B_ref))`` (N: non-embedding
   parameters, ratio 20 tokens per parameter in the paper) with the hybrid
   evaluation schedule, which evaluates exactly at ``t_chin``. Its EWA eval
   loss there is the **target loss** (unless ``sweep.target_loss`` gives one).
2. Every **point** (batch size x LR x beta2 x tau x warm-up) trains with a
   constant LR after warm-up plus EWA until its EWA eval loss reaches the
   target. Its hybrid schedule expects ``n_B = t_chin * B_ref / B`` steps
   (linear scaling from the reference) and the run gives up at
   ``max_steps_factor * n_B`` steps, so saturated runs still stop.
3. ``bsjax.cbs.report`` fits Y(B) over the best run per batch size (fewest
   steps to target) and writes ``report/report.md``; the measured B* is printed.

The reference run doubles as the point at the reference batch size with the
reference hyper-parameters (the first value of every grid): training that
point would repeat the reference step for step (the trainer is
deterministic) and stop at the reference's first evaluation at or below the
target, which the sweep reads from the reference's metrics and adds to its
summary.json (``target_loss``, ``steps_to_target``, ``role: reference``).

Resumable: a run whose summary.json has a final status (target_reached,
max_steps, max_tokens, diverged) is never rerun; any other run folder is
handed back to the trainer, which resumes from its checkpoint. A finished run
whose config.json disagrees with the point it should hold is refused.

A sweep config (``configs/demo.py``, ``configs/sweep_paper.py``) has two
sections: ``base``, a full run config (``bsjax.config.base_config()``), and
``sweep`` (:func:`default_sweep_section` documents its keys).
``sweep.print_commands = True`` prints one ``bsjax train`` command per run for
a cluster instead of training.

Modules: ``spec`` (the sweep section and its checks), ``plan`` (settings,
points, run configs), ``runs`` (the folder on disk), ``progress`` (progress
lines), ``driver`` (:func:`run_sweep`), ``commands`` (cluster commands and
``python -m bsjax.cbs.sweep target-loss``).
"""

from bsjax.cbs.sweep.driver import SweepOutcome, run_sweep
from bsjax.cbs.sweep.plan import Point, Setting, SweepPlan, plan_sweep, run_config, run_overrides
from bsjax.cbs.sweep.runs import FINAL_STATUSES, reference_target
from bsjax.cbs.sweep.spec import SweepConfigError, default_sweep_section, sweep_config

__all__ = [
    "FINAL_STATUSES",
    "Point",
    "Setting",
    "SweepConfigError",
    "SweepOutcome",
    "SweepPlan",
    "default_sweep_section",
    "plan_sweep",
    "reference_target",
    "run_config",
    "run_overrides",
    "run_sweep",
    "sweep_config",
]
