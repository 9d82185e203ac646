"""The local sweep executor: one run at a time against several at once, same sweep, same B*.

Runs one sweep config twice with ``bsjax sweep`` in fresh processes, each into its own
temporary folder with its own empty persistent compilation cache: with
``sweep.parallel=1`` (the points one after another) and with ``sweep.parallel=N``
(default 2, the local executor's subprocesses side by side). It prints the wall time of
each, their ratio, the B* each measured, and whether every run's summary
(steps to target, final losses, params digest) is the same in both.

The corpus is prepared once before the timed sweeps, so neither pays for it. The
default config is the demo (``make run``): six batch sizes after their reference.

  python experiments/benchmarks/sweep_executor.py
  python experiments/benchmarks/sweep_executor.py --parallel 2 --out results/cpu/sweep_executor.json
  python experiments/benchmarks/sweep_executor.py --config configs/demo.py --set sweep.batch_sizes='(4, 16)'

Overrides of the run config go under base. (``--set base.train.log_every=10``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import provenance

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEFAULT_CONFIG = "configs/demo.py"
# "B* (label): 13.2 [11.9, 15.5] = 2^3.72 sequences", as the sweep driver prints it.
B_STAR_LINE = re.compile(
    r"^B\* \((?P<label>.*)\): (?P<value>[-+0-9.eE]+)"
    r"(?: \[(?P<low>[-+0-9.eE]+), (?P<high>[-+0-9.eE]+)\])?"
)
# What must be the same in every run of both sweeps.
SUMMARY_KEYS = ("status", "steps", "steps_to_target", "final_ewa_eval_loss", "params_sha256")


def parse_b_star(stdout: str) -> dict[str, dict[str, float | None]]:
    """The B* lines of a sweep's output: {curve label: {value, low, high}}."""
    found = {}
    for line in stdout.splitlines():
        m = B_STAR_LINE.match(line.strip())
        if m:
            found[m["label"]] = {
                k: (float(m[k]) if m[k] is not None else None) for k in ("value", "low", "high")
            }
    return found


def run_summaries(workdir: Path) -> dict[str, dict[str, Any]]:
    """The SUMMARY_KEYS of every run folder of a sweep (those holding a summary.json)."""
    out = {}
    for path in sorted(Path(workdir).glob("*/summary.json")):
        summary = json.loads(path.read_text())
        out[path.parent.name] = {k: summary.get(k) for k in SUMMARY_KEYS}
    return out


def prepare_corpus(config: str, overrides: list[str]) -> float:
    """Build the config's corpus caches once (outside the timed sweeps); the seconds it took."""
    start = time.perf_counter()
    script = (
        "import sys\n"
        "from absl import flags\n"
        "from ml_collections import config_flags\n"
        "import jax\n"
        "from bsjax import config as config_lib, data\n"
        "_C = config_flags.DEFINE_config_file('config')\n"
        "flags.FLAGS(sys.argv)\n"
        "c = _C.value\n"
        "base = c.base if 'base' in c else c\n"
        "base.train.max_steps = base.train.max_steps or 1  # a stop, which parse asks for\n"
        "data.load(config_lib.parse(base, jax.device_count()).data, base.model.ctx_len)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, f"--config={config}", *overrides],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        raise RuntimeError(f"preparing the corpus failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def run_sweep(config: str, overrides: list[str], parallel: int, folder: Path) -> dict[str, Any]:
    """``bsjax sweep`` of ``config`` at ``sweep.parallel=parallel`` in ``folder``: wall time, B*,
    the summaries of its runs, and the end of its output."""
    workdir = folder / "sweep"
    argv = [
        sys.executable,
        "-m",
        "bsjax",
        "sweep",
        f"--config={config}",
        f"--workdir={workdir}",
        "--log=plain",
        f"--config.sweep.parallel={parallel}",
        f"--config.base.train.compile_cache_dir={folder / 'xla'}",
        *overrides,
    ]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(
            f"sweep at parallel={parallel} failed ({proc.returncode}):\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        )
    return dict(
        parallel=parallel,
        wall_s=wall,
        b_star=parse_b_star(proc.stdout),
        runs=run_summaries(workdir),
        load_average_before=load_before,
        load_average_after=os.getloadavg()[0],
        command=shlex.join(argv[1:]),
        output_tail=proc.stdout.splitlines()[-12:],
    )


def compare(sequential: dict[str, Any], parallel: dict[str, Any]) -> dict[str, Any]:
    """Whether both sweeps measured the same: B* per curve, and each run's summary."""
    same_b = sequential["b_star"] == parallel["b_star"] and bool(sequential["b_star"])
    differing = sorted(
        name
        for name in set(sequential["runs"]) | set(parallel["runs"])
        if sequential["runs"].get(name) != parallel["runs"].get(name)
    )
    return dict(
        same_b_star=same_b,
        same_runs=not differing and bool(sequential["runs"]),
        runs_compared=len(sequential["runs"]),
        differing_runs=differing,
        parallel_over_sequential_wall=parallel["wall_s"] / sequential["wall_s"],
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the sweep sequentially and in parallel, print and (with --out) write the figures."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default=DEFAULT_CONFIG, help="sweep config (relative to the repo)")
    p.add_argument("--parallel", type=int, default=2, help="sweep.parallel of the parallel sweep")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override for both sweeps (repeatable), e.g. sweep.batch_sizes='(4, 16)'",
    )
    p.add_argument("--out", help="write the figures as JSON here (and a .md beside it)")
    args = p.parse_args(argv)
    overrides = [f"--config.{kv}" for kv in args.set]

    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    prepare_s = prepare_corpus(args.config, overrides)
    print(f"corpus prepared in {prepare_s:.1f} s (not timed below)", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for parallel in (1, args.parallel):
            folder = Path(tmp) / f"parallel{parallel}"
            folder.mkdir()
            print(f"sweep at parallel={parallel} ...", flush=True)
            results[parallel] = run_sweep(args.config, overrides, parallel, folder)
            r = results[parallel]
            print(f"  {r['wall_s']:.1f} s, B* {r['b_star']}", flush=True)
    sequential, parallel = results[1], results[args.parallel]
    verdict = compare(sequential, parallel)
    report = dict(
        benchmark="sweep_executor",
        date=started,
        command=shlex.join(["python", "experiments/benchmarks/sweep_executor.py", *sys.argv[1:]])
        if argv is None
        else shlex.join(["python", "experiments/benchmarks/sweep_executor.py", *argv]),
        git_commit=provenance.git_commit(),
        cpus=os.cpu_count(),
        config=args.config,
        overrides=overrides,
        corpus_prepare_s=prepare_s,
        sequential=sequential,
        parallel=parallel,
        **verdict,
    )
    text = markdown(report)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")
        out.with_suffix(".md").write_text(text + "\n")
    return report


def markdown(report: dict[str, Any]) -> str:
    """The figures as a short markdown table."""
    seq, par = report["sequential"], report["parallel"]

    def b_text(r):
        return "; ".join(
            f"{label or 'B*'} {v['value']:.4g}"
            + (f" [{v['low']:.4g}, {v['high']:.4g}]" if v["low"] is not None else "")
            for label, v in r["b_star"].items()
        )

    lines = [
        f"# Sweep executor: {report['config']} {' '.join(report['overrides'])}".rstrip(),
        "",
        f"{report['date']}, commit {report.get('git_commit') or '?'}, {report['cpus']} CPUs; "
        "each sweep in a fresh process, its own empty compilation cache, corpus prepared before.",
        "",
        "| sweep.parallel | wall s | load avg before / after | B* (95% interval) |",
        "|---|---|---|---|",
    ]
    for r in (seq, par):
        lines.append(
            f"| {r['parallel']} | {r['wall_s']:.1f} | "
            f"{r['load_average_before']:.2f} / {r['load_average_after']:.2f} | {b_text(r)} |"
        )
    lines += [
        "",
        f"parallel / sequential wall time: {report['parallel_over_sequential_wall']:.3f}; "
        f"same B*: {report['same_b_star']}; same summaries in all {report['runs_compared']} runs "
        f"(steps to target, final EWA loss, params digest): {report['same_runs']}"
        + (f" (differ: {', '.join(report['differing_runs'])})" if report["differing_runs"] else ""),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
