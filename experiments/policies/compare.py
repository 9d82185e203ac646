"""Batch-size policies side by side at exactly equal tokens, starting below the measured CBS.

The model and optimizer are the demo's (``configs/demo.py`` through
``experiments/findings/demo_model.py``: 25k non-embedding parameters, context
64, constant LR 1e-2 after warmup, EWA), whose critical batch size the demo
sweep measures: B* of about 13 sequences at 0.5M tokens (20 tokens per
parameter), growing with the data size (``experiments/findings/cbs_scaling.py``
measures it on these runs' model). Every arm starts at B = 4, well below that,
and the budget (2.0M tokens) is long enough for B* to grow past the large
batch, B = 16.

  const_small   B = 4 throughout
  const_large   B = 16 throughout
  early_switch  4 -> 16 at 10% of the budget
  late_switch   4 -> 16 where the fsl policy puts the switch for this budget
                (Wang et al. 2026, s = 0.3, beta = 2 as in configs/policy_fsl.py)
  noise_scale   B = 2 x B_simple on the ladder 4..16 (McCandlish et al. 2018)
  probe         branched CBS probe, double B when CBS > 2B (Merrill et al. 2025)
  wsd_es        B_opt at successive target losses (Zhou et al. 2026): the pairs
                are the B_opt(L) this model's CBS runs measured (``--wsd-targets``)
  seesaw        cosine LR; double B (LR x 1/sqrt 2) where the LR would halve
  cosine_small  B = 4 with seesaw's cosine LR (seesaw's own reference; extra arm)

Equal in every arm: model, token budget, eval set, warmup, and the half-lives
in tokens of Adam's beta2 and of the EWA (``batch.tau_rule = half_life``).
The fixed arms end exactly on the budget (checked); an adaptive arm switches
where its policy decides and may end up to one large batch past it (reported).
A seed sets the model init and the data order together, so arms are compared
seed by seed.

  nice -n 19 .venv/bin/python experiments/policies/compare.py --seeds 0 1 2
  .venv/bin/python experiments/policies/compare.py --seeds 0 1 2 --report-only

Each run is one ``bsjax train`` subprocess into ``runs/policy_compare/<arm>_s<seed>/``;
finished runs are skipped, an unfinished folder is cleared and rerun (said so).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
for path in (HERE, REPO / "experiments" / "findings"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import runs as runs_lib  # noqa: E402

CTX = 64
SMALL, LARGE = 4, 16
BUDGET_EXAMPLES = 32_000  # 2,048,000 tokens: 8,000 steps at B = 4, 2,000 at B = 16
SMALL_BUDGET_EXAMPLES = 1_024  # --small: a pipeline check, numbers meaningless
EARLY_FRACTION = 0.10
FSL_S, FSL_BETA = 0.3, 2.0  # configs/policy_fsl.py (hard task)
# Adam beta2 0.99 and EWA tau 0.975 at batch 8 (the demo's values), expressed at the
# start batch 4 with the same half-lives in tokens: v ** (4 / 8).
BASE_B2, BASE_TAU = 0.99 ** (SMALL / 8), 0.975 ** (SMALL / 8)
# B_opt(L) pairs for wsd_es, from experiments/findings/cbs_scaling.py on this model
# (constant LR + EWA protocol, targets = reference losses at 1/8..1 x 1M tokens).
DEFAULT_WSD_TARGETS = ""
ARMS = (
    "const_small",
    "const_large",
    "early_switch",
    "late_switch",
    "noise_scale",
    "probe",
    "wsd_es",
    "seesaw",
)
EXTRA_ARMS = ("cosine_small",)
FIXED_ARMS = ("const_small", "const_large", "early_switch", "late_switch", "cosine_small")


class CompareError(ValueError):
    """A bad command-line argument; the message names it and what would work."""


def fsl_switch_examples(budget_examples: int) -> tuple[int, float]:
    """The fsl policy's switch point for this budget, rounded to whole large batches.

    Returns (rounded examples, the policy's unrounded examples). Rounding to a
    multiple of LARGE makes the run end exactly on the budget.
    """
    from bsjax.batching.policies.fsl import fsl_policy

    policy = fsl_policy([SMALL, LARGE], budget_examples, ctx_len=CTX, s=FSL_S, beta=FSL_BETA)
    raw = float(policy.solution.switch_examples[0])
    return int(round(raw / LARGE)) * LARGE, raw


def common_values(budget_examples: int, seed: int, eval_every: int) -> dict:
    """Config overrides every arm shares."""
    return {
        "seed": seed,
        "data.shuffle_seed": seed,
        "batch.batch_size": SMALL,
        "batch.base_batch_size": SMALL,
        "batch.beta2_rule": "half_life",
        "batch.tau_rule": "half_life",
        "optim.b2": BASE_B2,
        "optim.ewa_tau": BASE_TAU,
        "train.max_tokens": budget_examples * CTX,
        "train.max_steps": 0,
        "train.eval_every": eval_every,
        "train.log_every": eval_every,
        "train.checkpoint_every": 10**9,
        "train.keep_checkpoints": 1,
    }


def arm_values(arm: str, budget_examples: int, wsd_targets: str) -> dict:
    """Config overrides of one arm (on top of ``common_values``)."""
    tokens = budget_examples * CTX
    if arm == "const_small":
        return {}
    if arm == "const_large":
        return {"batch.batch_size": LARGE}
    if arm == "early_switch":
        switch = max(1, round(EARLY_FRACTION * budget_examples / LARGE)) * LARGE
        return {"batch.schedule": "table", "batch.table": f"0:{SMALL} {switch * CTX}:{LARGE}"}
    if arm == "late_switch":
        switch, _ = fsl_switch_examples(budget_examples)
        return {"batch.schedule": "table", "batch.table": f"0:{SMALL} {switch * CTX}:{LARGE}"}
    if arm == "noise_scale":
        return {
            "batch.micro_batch_per_device": SMALL // 2,  # K >= 2: B_simple needs two sizes
            "batch.policy.name": "noise_scale",
            "batch.policy.max_batch_size": LARGE,
            "batch.policy.noise_scale.multiple": 2.0,
            "batch.policy.noise_scale.ema": 0.95,
            "batch.policy.noise_scale.decide_every": 10,
            "batch.policy.noise_scale.warmup_steps": 30,
            "batch.policy.noise_scale.hysteresis": 0.25,
            "batch.policy.noise_scale.patience": 2,
        }
    if arm == "probe":
        return {
            "batch.lr_scaling": "sqrt",
            "batch.policy.name": "probe",
            "batch.policy.max_batch_size": LARGE,
            "batch.policy.probe.factors": "1 2 4",
            "batch.policy.probe.eps": 0.01,
            "batch.policy.probe.eps_mode": "relative",
            "batch.policy.probe.probe_tokens": str(max(SMALL * CTX * 4, tokens // 100)),
            "batch.policy.probe.every_tokens": str(tokens * 15 // 100),
            "batch.policy.probe.start_tokens": str(tokens * 5 // 100),
            "batch.policy.probe.cbs_over": 2.0,
        }
    if arm == "wsd_es":
        return {
            "batch.policy.name": "wsd_es",
            "batch.policy.wsd_es.mode": "loss",
            "batch.policy.wsd_es.targets": wsd_targets,
            "batch.policy.wsd_es.loss_key": "loss",
            "batch.policy.wsd_es.ema": 0.9,
            "batch.policy.wsd_es.min_steps": 20,
        }
    if arm in ("seesaw", "cosine_small"):
        values = {"optim.schedule": "cosine", "optim.total_tokens": tokens}
        if arm == "seesaw":
            values.update({"batch.policy.name": "seesaw", "batch.policy.max_batch_size": LARGE})
        return values
    raise CompareError(f"--arms: unknown arm {arm!r}; choose from {', '.join(ARMS + EXTRA_ARMS)}")


def run_config(arm: str, seed: int, args: argparse.Namespace) -> dict:
    """Every override of one (arm, seed) run."""
    values = common_values(args.budget_examples, seed, args.eval_every)
    values.update(arm_values(arm, args.budget_examples, args.wsd_targets))
    return values


def check_wsd_targets(spec: str) -> None:
    """Refuse an empty or unreadable ``--wsd-targets`` before anything runs."""
    pairs = []
    for entry in spec.split():
        loss, sep, size = entry.partition(":")
        try:
            pairs.append((float(loss), int(size)))
        except ValueError:
            pairs = []
            break
        if not sep or size.strip() == "":
            pairs = []
            break
    if not pairs or any(b < SMALL or b > LARGE for _, b in pairs):
        raise CompareError(
            f"--wsd-targets={spec!r}: give 'loss:B_opt' pairs with B_opt in {SMALL}..{LARGE}, "
            "e.g. '2.2:4 2.0:8 1.9:16' (experiments/findings/cbs_scaling.py prints this "
            "model's B_opt at its targets)"
        )


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--arms", nargs="+", default=list(ARMS))
    p.add_argument(
        "--budget-examples",
        type=int,
        default=None,
        help=f"sequences of {CTX} tokens, equal for every arm (default {BUDGET_EXAMPLES})",
    )
    p.add_argument("--small", action="store_true", help="a pipeline check at a tiny budget")
    p.add_argument("--eval-every", type=int, default=50, help="eval cadence in optimizer steps")
    p.add_argument("--wsd-targets", default=DEFAULT_WSD_TARGETS, help="'loss:B_opt ...'")
    p.add_argument("--workdir", type=Path, default=REPO / "runs" / "policy_compare")
    p.add_argument("--out", type=Path, default=HERE)
    p.add_argument("--max-minutes", type=float, default=0.0, help="start no run after this")
    p.add_argument("--report-only", action="store_true", help="only rewrite the report")
    args = p.parse_args(argv)
    if args.budget_examples is None:
        args.budget_examples = SMALL_BUDGET_EXAMPLES if args.small else BUDGET_EXAMPLES
    if args.budget_examples < 8 * LARGE or args.budget_examples % LARGE:
        raise CompareError(
            f"--budget-examples={args.budget_examples}: need a multiple of {LARGE} "
            f"(the large batch, so the fixed arms end exactly on it) of at least {8 * LARGE}"
        )
    if args.eval_every < 1:
        raise CompareError(f"--eval-every={args.eval_every} must be >= 1")
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        raise CompareError(f"--seeds {args.seeds}: give distinct seeds >= 0")
    for arm in args.arms:
        if arm not in ARMS + EXTRA_ARMS:
            raise CompareError(
                f"--arms: unknown arm {arm!r}; choose from {', '.join(ARMS + EXTRA_ARMS)}"
            )
    if "wsd_es" in args.arms and not args.report_only:
        check_wsd_targets(args.wsd_targets)
    return args


def reproduce_command(args: argparse.Namespace) -> str:
    """The command that runs (or finishes) this experiment."""
    parts = ["nice -n 19 .venv/bin/python experiments/policies/compare.py"]
    parts.append("--seeds " + " ".join(str(s) for s in args.seeds))
    if args.small:
        parts.append("--small")
    if args.budget_examples not in (BUDGET_EXAMPLES, SMALL_BUDGET_EXAMPLES):
        parts.append(f"--budget-examples {args.budget_examples}")
    if list(args.arms) != list(ARMS):
        parts.append("--arms " + " ".join(args.arms))
    if "wsd_es" in args.arms:
        parts.append(f"--wsd-targets '{args.wsd_targets}'")
    return " ".join(parts)


def ensure_runs(args: argparse.Namespace) -> None:
    """Train the missing (arm, seed) runs of ``args``, seed by seed (whole seeds first)."""
    budget_tokens = args.budget_examples * CTX
    plans = {(a, s): run_config(a, s, args) for s in args.seeds for a in args.arms}
    for (arm, _), values in plans.items():
        if values["train.max_tokens"] != budget_tokens:
            raise AssertionError(f"{arm}: max_tokens differs from the budget")
    started = time.perf_counter()
    todo = [k for k in plans if not runs_lib.is_finished(_dir(args, *k))]
    for i, (arm, seed) in enumerate(todo):
        elapsed = (time.perf_counter() - started) / 60
        if args.max_minutes and elapsed > args.max_minutes:
            print(f"--max-minutes {args.max_minutes:g} reached; {len(todo) - i} runs not started")
            break
        print(f"[{elapsed:5.1f} min] {arm}_s{seed} ({i + 1}/{len(todo)})", flush=True)
        runs_lib.train(_dir(args, arm, seed), plans[(arm, seed)])


def main(argv=None) -> None:
    """Train the missing (arm, seed) runs, then write the report."""
    args = parse_args(argv)
    import summarize

    if not args.report_only:
        ensure_runs(args)
    late = fsl_switch_examples(args.budget_examples)
    summarize.write_report(
        args.workdir,
        args.out,
        arms=list(args.arms),
        seeds=list(args.seeds),
        budget_tokens=args.budget_examples * CTX,
        large_tokens=LARGE * CTX,
        fixed_arms=FIXED_ARMS,
        settings=dict(
            small=SMALL,
            large=LARGE,
            ctx=CTX,
            budget_examples=args.budget_examples,
            early_fraction=EARLY_FRACTION,
            fsl_switch_examples=late[0],
            fsl_switch_examples_unrounded=round(late[1], 1),
            fsl_s=FSL_S,
            fsl_beta=FSL_BETA,
            wsd_targets=args.wsd_targets,
            ewa_half_life_tokens=round(math.log(0.5) / math.log(BASE_TAU) * SMALL * CTX),
        ),
        command=reproduce_command(args),
    )


def _dir(args: argparse.Namespace, arm: str, seed: int) -> Path:
    return args.workdir / f"{arm}_s{seed}"


if __name__ == "__main__":
    main()
