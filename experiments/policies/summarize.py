"""Read the comparison's run folders and write results.md, results.json and the plots.

One run folder per (arm, seed): summary.json, metrics.jsonl and final_eval.json
(written by compare.py). The paired comparison against ``const_small`` uses the
per-seed difference of final EWA eval loss: both arms of a pair share the model
init and the data order, so the difference cancels much of the seed noise.
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import plots

REFERENCE = "const_small"
FINISHED = ("max_tokens", "max_steps", "target_reached", "diverged")


def read_run(workdir: Path) -> dict | None:
  """One finished run's numbers and curves; None when it is missing or unfinished."""
  summary_path, final_path = workdir / "summary.json", workdir / "final_eval.json"
  if not (summary_path.exists() and final_path.exists()):
    return None
  summary = json.loads(summary_path.read_text())
  if summary.get("status") not in FINISHED:
    return None
  final = json.loads(final_path.read_text())
  evals, batch, switches = [], [], []
  for line in (workdir / "metrics.jsonl").read_text().splitlines():
    rec = json.loads(line)
    if rec["kind"] == "eval":
      evals.append((rec["tokens"], rec["ewa_eval_loss"], rec["step"]))
    elif rec["kind"] == "train":
      batch.append((rec["tokens"], rec["batch_size"]))
    elif rec["kind"] == "switch":
      switches.append(dict(tokens=rec["tokens"], step=rec["step"], old=rec["old_batch_size"],
                           new=rec["new_batch_size"], reason=rec.get("reason", "")))
  if not evals or evals[-1][0] != final["tokens"]:
    evals.append((final["tokens"], final["ewa_eval_loss"], final["step"]))
  policy = summary.get("policy", {})
  return dict(status=summary["status"], steps=summary["steps"], tokens=summary["tokens"],
              wall_s=summary["wall_s"], compile_s=summary.get("compile_s", 0.0),
              final_ewa=final["ewa_eval_loss"], final_raw=final["eval_loss"],
              loop_last_ewa=summary.get("final_ewa_eval_loss"),
              branch_steps=policy.get("branch_steps", 0.0),
              branch_tokens=policy.get("branch_tokens", 0.0),
              evals=evals, batch=batch, switches=switches)


def _mean_sd(values: list[float]) -> tuple[float, float]:
  if not values:
    return math.nan, math.nan
  return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def _fmt(mean: float, sd: float, digits: int = 4) -> str:
  if math.isnan(mean):
    return "n/a"
  return f"{mean:.{digits}f}" + ("" if math.isnan(sd) else f" ± {sd:.{digits}f}")


def paired(runs: dict, arm: str, seeds: list[int]) -> dict:
  """Per-seed differences of final EWA eval loss, arm minus the reference."""
  deltas = {s: runs[arm][s]["final_ewa"] - runs[REFERENCE][s]["final_ewa"]
            for s in seeds if s in runs.get(arm, {}) and s in runs.get(REFERENCE, {})}
  mean, sd = _mean_sd(list(deltas.values()))
  ref_mean, ref_sd = _mean_sd([r["final_ewa"] for r in runs.get(REFERENCE, {}).values()])
  noise = max(x for x in (sd, ref_sd, 0.0) if not math.isnan(x))
  same_sign = len(deltas) >= 2 and (all(d < 0 for d in deltas.values())
                                    or all(d > 0 for d in deltas.values()))
  if arm == REFERENCE:
    verdict = "reference"
  elif len(deltas) < 2:
    verdict = "too few seeds"
  elif same_sign and abs(mean) > 2 * noise:
    verdict = "better" if mean < 0 else "worse"
  else:
    verdict = "within noise"
  return dict(deltas=deltas, mean=mean, sd=sd, noise=noise, verdict=verdict)


def _path(run: dict, budget_tokens: int) -> str:
  if not run["switches"]:
    return str(run["batch"][0][1]) if run["batch"] else "?"
  first = run["switches"][0]["old"]
  hops = [f"{s['new']}@{100 * s['tokens'] / budget_tokens:.0f}%" for s in run["switches"]]
  return " → ".join([str(first)] + hops)


def write_report(workdir: Path, out: Path, *, arms: list[str], seeds: list[int],
                 budget_examples: int, argv: list[str]) -> dict:
  """Write results.md, results.json and the PNGs under ``out``; return the numbers."""
  runs: dict[str, dict[int, dict]] = {}
  missing = []
  for arm in arms:
    for seed in seeds:
      run = read_run(workdir / f"{arm}_s{seed}")
      if run is None:
        missing.append(f"{arm}_s{seed}")
      else:
        runs.setdefault(arm, {})[seed] = run
  budget_tokens = budget_examples * 128
  rows = []
  for arm in arms:
    arm_runs = runs.get(arm, {})
    if not arm_runs:
      continue
    vals = list(arm_runs.values())
    loss = _mean_sd([r["final_ewa"] for r in vals])
    rows.append(dict(
        arm=arm, n=len(vals), loss=loss,
        raw=_mean_sd([r["final_raw"] for r in vals]),
        steps=_mean_sd([r["steps"] for r in vals]),
        tokens=_mean_sd([r["tokens"] for r in vals]),
        wall=_mean_sd([r["wall_s"] for r in vals]),
        switches=_mean_sd([len(r["switches"]) for r in vals]),
        branch_steps=_mean_sd([r["branch_steps"] for r in vals]),
        branch_tokens=_mean_sd([r["branch_tokens"] for r in vals]),
        paths={s: _path(r, budget_tokens) for s, r in sorted(arm_runs.items())},
        pair=paired(runs, arm, seeds) if REFERENCE in runs else None))
  out.mkdir(parents=True, exist_ok=True)
  (out / "results.md").write_text(_markdown(rows, missing, seeds, budget_examples, argv))
  data = dict(budget_examples=budget_examples, budget_tokens=budget_tokens, seeds=seeds,
              missing=missing,
              runs={arm: {str(s): {k: v for k, v in r.items() if k not in ("evals", "batch")}
                          for s, r in by_seed.items()} for arm, by_seed in runs.items()})
  (out / "results.json").write_text(json.dumps(data, indent=1) + "\n")
  plots.loss_vs_tokens(runs, out / "loss_vs_tokens.png", budget_tokens)
  plots.batch_vs_tokens(runs, out / "batch_vs_tokens.png", budget_tokens)
  plots.steps_vs_loss(runs, out / "steps_vs_loss.png")
  return data


def _markdown(rows: list[dict], missing: list[str], seeds: list[int], budget_examples: int,
              argv: list[str]) -> str:
  lines = ["# Batch-size policies at an equal token budget (tiny model, embedded corpus)", ""]
  if missing:
    lines += [f"**PARTIAL**: {len(missing)} run(s) missing: {', '.join(missing)}. Finish with "
              f"the command below (finished runs are skipped).", ""]
  lines += [f"Budget: {budget_examples} sequences x 128 tokens = {budget_examples * 128:,} tokens "
            f"per run; seeds {seeds} (model init and data order). Command: "
            f"`.venv/bin/python experiments/policies/compare.py {' '.join(argv)}`", "",
            "Final EWA eval loss is measured on the final state of each run (same 4 x 32 "
            "validation sequences for every run). Steps are optimizer steps of the main run; "
            "the probe's branch steps and tokens are extra compute, listed apart. Wall time is "
            "on a 2-core CPU shared with other jobs: compare it only roughly.", "",
            "| policy | runs | final EWA eval loss | raw eval loss | steps | tokens | wall s | "
            "switches | branch steps / tokens | batch path (seed: sizes @ % of budget) |",
            "|---|---|---|---|---|---|---|---|---|---|"]
  for r in sorted(rows, key=lambda r: r["loss"][0]):
    branch = ("-" if not r["branch_steps"][0] else
              f"{r['branch_steps'][0]:.0f} / {r['branch_tokens'][0]:,.0f}")
    paths = "; ".join(f"s{s}: {p}" for s, p in r["paths"].items())
    lines.append(f"| {r['arm']} | {r['n']} | {_fmt(*r['loss'])} | {_fmt(*r['raw'])} | "
                 f"{_fmt(*r['steps'], 0)} | {r['tokens'][0]:,.0f} | {_fmt(*r['wall'], 0)} | "
                 f"{_fmt(*r['switches'], 1)} | {branch} | {paths} |")
  lines += ["", f"## Paired against {REFERENCE} (same seeds)", "",
            "Δ = policy minus const_small, per seed. Verdict rule: a difference counts as real "
            "when every seed's Δ has the same sign and |mean Δ| exceeds twice the noise, the "
            "larger of the Δ's seed-to-seed sd and const_small's own seed-to-seed sd. With 2-3 "
            "seeds this is a coarse screen, not a significance test.", "",
            "| policy | mean Δ | sd of Δ | per-seed Δ | noise | verdict |",
            "|---|---|---|---|---|---|"]
  for r in sorted(rows, key=lambda r: r["loss"][0]):
    p = r["pair"]
    if p is None:
      continue
    per_seed = ", ".join(f"s{s}: {d:+.4f}" for s, d in sorted(p["deltas"].items()))
    sd = "n/a" if math.isnan(p["sd"]) else f"{p['sd']:.4f}"
    lines.append(f"| {r['arm']} | {p['mean']:+.4f} | {sd} | {per_seed} | {p['noise']:.4f} | "
                 f"{p['verdict']} |")
  lines += ["", "Plots: `loss_vs_tokens.png` (EWA eval loss against tokens, mean over seeds, "
            "band = min..max), `batch_vs_tokens.png` (batch size against tokens, every seed), "
            "`steps_vs_loss.png` (final loss against optimizer steps, every run).", ""]
  return "\n".join(lines)
