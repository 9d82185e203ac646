"""Batch-size policies side by side on the embedded corpus at one token budget.

Eight arms, each run for several seeds (model init ``seed`` and data order
``data.shuffle_seed`` together), one run at a time in this process:

  const_small   constant B = 32
  const_large   constant B = 128
  early_switch  table 32 -> 128 at 10% of the budget
  fsl           configs/policy_fsl.py (FSL-optimal late switch, Wang et al. 2026)
  noise_scale   configs/policy_noise_scale.py (McCandlish et al. 2018)
  probe         configs/policy_probe.py (branched CBS probe, Merrill et al. 2025)
  wsd_es        configs/policy_wsd_es.py (B_opt at target losses, Zhou et al. 2026)
  seesaw        configs/policy_seesaw.py (double B where the LR would halve)
  cosine_small  B = 32 with seesaw's cosine LR schedule: the run seesaw claims to match
                with fewer steps (an extra reference arm)

Every arm gets the same model, the same ``train.max_tokens`` and the same eval
set. The loop evaluates only every ``eval_every`` steps, so a run's last eval
may lag its last step; after each run this script restores the final
checkpoint and evaluates it on the same eval batches (``final_eval.json``),
which is the number the comparison uses.

  .venv/bin/python experiments/policies/compare.py --budget-examples 3840 --seeds 0 1 2

Resumable: a run whose summary.json has a finished status and whose
final_eval.json exists is skipped; an unfinished one is deleted and rerun
(runs keep no intermediate checkpoints, to save time). ``--report-only``
rewrites results.md and the plots from the runs on disk.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import shutil
import sys
import time
from pathlib import Path

import ml_collections

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from bsjax.config import tiny_cpu_config  # noqa: E402

CTX = 128
SMALL, LARGE = 32, 128
EARLY_FRACTION = 0.10  # early switch: large batch after 10% of the budget
CONFIG_BUDGET_EXAMPLES = 12_800  # the budget the configs/policy_*.py files are written for
FINISHED = ("max_tokens", "max_steps", "target_reached", "diverged")
POLICY_FILES = dict(
    fsl="policy_fsl.py",
    noise_scale="policy_noise_scale.py",
    probe="policy_probe.py",
    wsd_es="policy_wsd_es.py",
    seesaw="policy_seesaw.py",
)
ARMS = (
    "const_small",
    "const_large",
    "early_switch",
    "fsl",
    "noise_scale",
    "probe",
    "wsd_es",
    "seesaw",
    "cosine_small",
)


class CompareError(ValueError):
    """A bad command-line argument; the message names it and what would work."""


def _load_policy_config(name: str) -> ml_collections.ConfigDict:
    path = REPO / "configs" / POLICY_FILES[name]
    spec = importlib.util.spec_from_file_location(f"policy_config_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(None)


def _baseline(batch_size: int) -> ml_collections.ConfigDict:
    """The fixed-schedule arms: the policy configs' model and optimizer, constant LR."""
    c = tiny_cpu_config(batch_size=SMALL, ctx_len=CTX)  # warmup: 20 steps at the small batch
    c.batch.batch_size = batch_size
    return c


def arm_config(arm: str, budget_examples: int) -> ml_collections.ConfigDict:
    """The config of one arm at a budget of ``budget_examples`` sequences (seed not set).

    Budget-dependent policy keys follow the budget: the FSL optimiser's data
    budget and seesaw's cosine horizon. The probe keeps its config's cadence in
    tokens (first probe after 40 steps' worth at B = 32, then every 60).
    """
    if arm not in ARMS:
        raise CompareError(f"--arms: unknown arm {arm!r}; choose from {', '.join(ARMS)}")
    tokens = budget_examples * CTX
    if arm == "const_small":
        c = _baseline(SMALL)
    elif arm == "const_large":
        c = _baseline(LARGE)
    elif arm == "cosine_small":
        c = _baseline(SMALL)
        c.optim.schedule = "cosine"
        c.optim.total_tokens = tokens
    elif arm == "early_switch":
        c = _baseline(SMALL)
        c.batch.schedule = "table"
        # Rounded to whole large batches, so the run ends exactly on the budget.
        switch_examples = max(1, round(EARLY_FRACTION * budget_examples / LARGE)) * LARGE
        c.batch.table = f"0:{SMALL} {switch_examples * CTX}:{LARGE}"
    else:
        c = _load_policy_config(arm)
        if arm == "fsl":
            c.batch.policy.fsl.budget_examples = str(budget_examples)
        if arm == "seesaw":
            c.optim.total_tokens = tokens
    t = c.train
    t.max_tokens = tokens
    t.max_steps = 0
    t.eval_batches = 4
    t.eval_batch_size = 32
    t.tensorboard = False
    t.checkpoint_every = 10**9  # only the final state is saved (for the final eval)
    t.keep_checkpoints = 1
    t.log_every = 5
    return c


def with_seed(
    config: ml_collections.ConfigDict, seed: int, eval_every: int
) -> ml_collections.ConfigDict:
    """A copy of ``config`` with model seed and data-order seed both ``seed``."""
    c = ml_collections.ConfigDict(config.to_dict())
    c.seed = seed
    c.data.shuffle_seed = seed
    c.train.eval_every = eval_every
    return c


def check_same_setting(configs: dict[str, ml_collections.ConfigDict]) -> None:
    """Refuse arms that differ in what must be equal: model, token budget, eval set."""
    keys = (
        "model.preset",
        "model.ctx_len",
        "train.max_tokens",
        "train.eval_batches",
        "train.eval_batch_size",
        "data.source",
        "data.tokenizer",
    )
    ref_arm, ref = next(iter(configs.items()))
    for arm, c in configs.items():
        for key in keys:
            a, b = (cfg[key.split(".")[0]][key.split(".")[1]] for cfg in (ref, c))
            if a != b:
                raise CompareError(
                    f"arm {arm!r}: {key}={b!r} differs from arm {ref_arm!r} ({a!r}); "
                    "the comparison needs it equal in every arm"
                )


def final_eval(config: ml_collections.ConfigDict, workdir: Path) -> dict:
    """Evaluate the run's final checkpoint (params and EWA) on the run's eval batches."""
    import jax

    from bsjax import config as config_lib
    from bsjax import data as data_lib
    from bsjax.train import checkpoint as checkpoint_lib
    from bsjax.train import feed as feed_lib
    from bsjax.train import mesh as mesh_lib
    from bsjax.train import step as step_lib

    mesh = mesh_lib.make_mesh(config.mesh.data, config.mesh.fsdp)
    corpus = data_lib.load(config.data, config.model.ctx_len)
    fns = step_lib.build(config_lib.model_config(config, corpus.vocab_size), config.optim, mesh)
    checkpointer = checkpoint_lib.Checkpointer(workdir / "checkpoints", keep=1, async_save=False)
    try:
        with jax.set_mesh(mesh):
            restored = checkpointer.restore_latest(fns.abstract_state)
            if restored is None:
                raise RuntimeError(f"{workdir}: no checkpoint to evaluate")
            state, meta = restored
            t = config.train
            placed = feed_lib.place_eval_batches(
                corpus.validation.validation_batches(t.eval_batches, t.eval_batch_size), mesh
            )
            loss = float(fns.eval_step(state["params"], placed))
            ewa_loss = float(fns.eval_step(state["ewa"], placed))
    finally:
        checkpointer.close()
    return dict(
        step=int(meta["step"]), tokens=int(meta["tokens"]), eval_loss=loss, ewa_eval_loss=ewa_loss
    )


def run_done(workdir: Path) -> bool:
    """True when ``workdir`` holds a finished run and its final eval."""
    summary, final = workdir / "summary.json", workdir / "final_eval.json"
    if not (summary.exists() and final.exists()):
        return False
    return json.loads(summary.read_text()).get("status") in FINISHED


def run_one(config: ml_collections.ConfigDict, workdir: Path) -> None:
    """Train from scratch into ``workdir`` (cleared first), then write final_eval.json."""
    from bsjax.train.loop import train

    if workdir.exists():
        shutil.rmtree(workdir)
    start = time.perf_counter()
    summary = train(config, workdir)
    result = final_eval(config, workdir)
    if result["step"] != summary["steps"]:
        raise RuntimeError(
            f"{workdir}: final checkpoint is at step {result['step']}, "
            f"the run stopped at step {summary['steps']}"
        )
    result["run_s"] = round(time.perf_counter() - start, 2)
    (workdir / "final_eval.json").write_text(json.dumps(result, indent=1) + "\n")
    # Only the final eval needed the checkpoint; drop it to keep runs/ small.
    shutil.rmtree(workdir / "checkpoints", ignore_errors=True)


def reproduce_command(args: argparse.Namespace) -> str:
    """The command that runs (or finishes) this experiment, for the report."""
    parts = [
        ".venv/bin/python experiments/policies/compare.py",
        f"--budget-examples {args.budget_examples}",
        "--seeds " + " ".join(str(s) for s in args.seeds),
    ]
    if list(args.arms) != list(ARMS):
        parts.append("--arms " + " ".join(args.arms))
    if args.eval_every != 10:
        parts.append(f"--eval-every {args.eval_every}")
    return " ".join(parts)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--budget-examples",
        type=int,
        default=3840,
        help="token budget in sequences of 128 tokens, the same for every arm "
        f"(the policy configs are written for {CONFIG_BUDGET_EXAMPLES})",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--arms", nargs="+", default=list(ARMS))
    p.add_argument("--eval-every", type=int, default=10, help="eval cadence in optimizer steps")
    p.add_argument("--workdir", type=Path, default=REPO / "runs" / "policy_compare")
    p.add_argument("--out", type=Path, default=HERE)
    p.add_argument(
        "--max-minutes",
        type=float,
        default=0.0,
        help="start no new run after this many minutes (0: no limit); "
        "the report is marked partial when runs are missing",
    )
    p.add_argument("--report-only", action="store_true", help="only rewrite results.md and plots")
    args = p.parse_args(argv)
    if args.budget_examples < 8 * LARGE:
        raise CompareError(
            f"--budget-examples={args.budget_examples}: need at least {8 * LARGE} "
            f"(a few steps at B = {LARGE})"
        )
    if args.budget_examples % (2 * LARGE):
        raise CompareError(
            f"--budget-examples={args.budget_examples} must be a multiple of "
            f"{2 * LARGE} (the largest ladder size), so fixed arms stop exactly on it"
        )
    if args.eval_every < 1:
        raise CompareError(f"--eval-every={args.eval_every} must be >= 1")
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        raise CompareError(f"--seeds {args.seeds}: give distinct seeds >= 0")
    for arm in args.arms:
        if arm not in ARMS:
            raise CompareError(f"--arms: unknown arm {arm!r}; choose from {', '.join(ARMS)}")
    return args


def main(argv=None) -> None:
    """Validate every arm, train the missing (arm, seed) runs, then write the report."""
    args = parse_args(argv)
    import summarize

    logging.basicConfig(level=logging.WARNING)
    configs = {arm: arm_config(arm, args.budget_examples) for arm in args.arms}
    check_same_setting(configs)
    import jax

    from bsjax import config as config_lib

    for arm, c in configs.items():  # every config error before the first run
        problems = config_lib.validate(
            with_seed(c, args.seeds[0], args.eval_every), jax.device_count()
        )
        if problems:
            raise config_lib.ConfigError([f"arm {arm}: {p}" for p in problems])

    started = time.perf_counter()
    todo = (
        []
        if args.report_only
        else [
            (arm, seed)
            for seed in args.seeds
            for arm in args.arms  # seed-major: whole seeds first
            if not run_done(args.workdir / f"{arm}_s{seed}")
        ]
    )
    for arm, seed in todo:
        workdir = args.workdir / f"{arm}_s{seed}"
        elapsed_min = (time.perf_counter() - started) / 60
        if args.max_minutes and elapsed_min > args.max_minutes:
            print(
                f"--max-minutes {args.max_minutes:g} reached after {elapsed_min:.1f} min; "
                f"not starting {workdir.name} and later runs"
            )
            break
        print(f"[{elapsed_min:5.1f} min] {workdir.name}", flush=True)
        run_one(with_seed(configs[arm], seed, args.eval_every), workdir)
    summarize.write_report(
        args.workdir,
        args.out,
        arms=args.arms,
        seeds=args.seeds,
        budget_examples=args.budget_examples,
        command=reproduce_command(args),
    )


if __name__ == "__main__":
    main()
