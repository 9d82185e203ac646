"""Warm restart: seconds from ``bsjax train`` starting to its first training step, on a run
that continues from its checkpoint, with the persistent compilation cache empty or filled.

One run folder, each start a fresh ``bsjax train`` process (``--log=plain``, one ``train``
line per step):

  first       a new run of ``--steps`` steps, empty cache (it fills the cache);
  cold        the run extended by ``--extend`` steps, from its checkpoint, with a new empty
              compilation cache: everything compiled again;
  warm        extended again, with the cache the first start filled (``--repeats`` times);
  warm-no-tb  extended again from the warm cache with ``train.tensorboard=False`` (no
              tracker);
  probe       extended once more from the warm cache under ``python -X importtime``, with
              bsjax's set-up phases timed (corpus, step build, checkpoint restore, run files
              and trackers, loop start, waiting for the train step's executable): the
              breakdown. Its own total is a little above ``warm`` (the probe's overhead);
  probe-no-tb the same probe with ``train.tensorboard=False``.

"First step" is the moment the parent process, polling metrics.jsonl every 10 ms, sees the
first ``train`` line past the checkpoint's step: that step has run and been recorded. The
clock starts just before the process is created, so interpreter start-up and every import
count. The issue's target (issue 14, item 3) is under 5 s for the warm start of the tiny
preset; the ratio to it is printed, not tuned to.

  python experiments/benchmarks/warm_restart.py
  python experiments/benchmarks/warm_restart.py --config configs/tiny_cpu.py --repeats 3 \
      --out experiments/benchmarks/results/cpu/warm_restart.json
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import re
import shlex
import statistics
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
TARGET_S = 5.0
PROBE_ENV = "BSJAX_BENCH_PROBE_FILE"
# Root packages reported one by one in the import breakdown; the rest are summed as "other".
IMPORT_GROUPS = {
    "tensorflow": ("tensorflow", "keras", "tensorboard", "tf_keras", "tensorflow_datasets"),
    "jax": ("jax", "jaxlib"),
    "flax": ("flax", "treescope"),
    "orbax": ("orbax", "tensorstore"),
    "clu": ("clu",),
    "optax": ("optax", "chex"),
    "numpy": ("numpy",),
    "matplotlib": ("matplotlib", "mpl_toolkits", "PIL", "pyparsing", "kiwisolver"),
    "grain": ("grain",),
    "bsjax": ("bsjax",),
}
IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


# ------------------------------------------------------------------ parent side
def train_argv(config: str, workdir: Path, steps: int, cache: Path, extra: list[str]) -> list[str]:
    """The ``bsjax train`` command line of one start."""
    return [
        "-m",
        "bsjax",
        "train",
        f"--config={config}",
        f"--workdir={workdir}",
        "--log=plain",
        f"--config.train.max_steps={steps}",
        f"--config.train.checkpoint_every={steps}",
        "--config.train.log_every=1",
        f"--config.train.compile_cache_dir={cache}",
        *extra,
    ]


def _new_lines(path: Path, offset: int) -> tuple[list[dict], int]:
    """Complete JSON lines of ``path`` after byte ``offset``, and the offset after them."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    lines = []
    for raw in data[: end + 1].splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict):
            lines.append(line)
    return lines, offset + end + 1


def start_once(
    name: str,
    argv: list[str],
    workdir: Path,
    log_path: Path,
    python_flags: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One start: seconds to its first ``train`` line past where it began, and what it logged.

    The child's stdout and stderr go to ``log_path``.
    """
    metrics = workdir / "metrics.jsonl"
    offset = metrics.stat().st_size if metrics.exists() else 0
    began_at_step = None
    first_step_s = first_step = None
    lines: list[dict] = []
    load_before = os.getloadavg()[0]
    with open(log_path, "wb") as log:
        wall_t0 = time.time()
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, *python_flags, *argv],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        while True:
            done = proc.poll() is not None
            new, offset = _new_lines(metrics, offset)
            now = time.perf_counter() - t0
            for line in new:
                lines.append(line)
                if line["kind"] == "resume" and began_at_step is None:
                    began_at_step = line["step"]
                if (
                    first_step_s is None
                    and line["kind"] == "train"
                    and began_at_step is not None
                    and line["step"] > began_at_step
                ):
                    first_step_s, first_step = now, line["step"]
            if done:
                break
            time.sleep(0.01)
        wall = time.perf_counter() - t0
    if proc.returncode:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{name}: bsjax train exited {proc.returncode}:\n{tail}")
    compiles = [
        dict(executable=l["executable"], K=l.get("K"), M=l.get("M"), seconds=l["seconds"])
        for l in lines
        if l["kind"] == "compile"
    ]
    return dict(
        name=name,
        began_at_step=began_at_step,
        first_step=first_step,
        first_step_s=first_step_s,
        process_wall_s=wall,
        started_at=wall_t0,
        compiles=compiles,
        load_average_before=load_before,
        over_target=first_step_s / TARGET_S if first_step_s is not None else None,
    )


def import_breakdown(stderr_text: str) -> dict[str, Any]:
    """Seconds of ``-X importtime`` self time by package group, and the slowest top-level imports.

    Self time is each module's own execution; summed by root package it says which
    libraries the start-up spends its import time in, whoever imported them.
    """
    by_root: collections.Counter[str] = collections.Counter()
    top_level = []
    for line in stderr_text.splitlines():
        m = IMPORT_LINE.match(line)
        if not m:
            continue
        self_us, cumulative_us, indent, name = m.groups()
        by_root[name.split(".")[0]] += int(self_us)
        if len(indent) == 1:
            top_level.append((name, int(cumulative_us) / 1e6))
    groups = {}
    claimed = set()
    for group, roots in IMPORT_GROUPS.items():
        groups[group] = sum(by_root[r] for r in roots) / 1e6
        claimed.update(roots)
    groups["other"] = sum(v for k, v in by_root.items() if k not in claimed) / 1e6
    top_level.sort(key=lambda x: -x[1])
    return dict(
        self_s_by_group=groups,
        total_self_s=sum(by_root.values()) / 1e6,
        slowest_top_level=top_level[:12],
    )


def read_probe(path: Path, started_at: float) -> list[dict[str, Any]]:
    """The probe's phases, in seconds since the parent started the process."""
    phases = []
    if not path.exists():
        return phases
    for raw in path.read_text().splitlines():
        p = json.loads(raw)
        phases.append(
            dict(
                phase=p["phase"],
                start_s=p["start"] - started_at,
                end_s=p["end"] - started_at,
                seconds=p["end"] - p["start"],
            )
        )
    return phases


def measure(
    config: str, steps: int, extend: int, repeats: int, keep: str | None = None
) -> dict[str, Any]:
    """Every start of the benchmark in one temporary folder (``keep``: this folder instead)."""
    tmp_ctx = tempfile.TemporaryDirectory() if keep is None else None
    base = Path(tmp_ctx.name if tmp_ctx else keep)
    base.mkdir(parents=True, exist_ok=True)
    workdir, warm_cache = base / "run", base / "xla"
    starts: list[dict[str, Any]] = []
    probe: dict[str, Any] = {}
    probe_no_tb: dict[str, Any] = {}
    try:
        at = steps

        def go(name, cache, extra=(), python_flags=(), env=None):
            argv = train_argv(config, workdir, at, cache, list(extra))
            print(f"[{name}] bsjax train to step {at}", file=sys.stderr, flush=True)
            result = start_once(name, argv, workdir, base / f"{name}.log", python_flags, env)
            result["command"] = shlex.join(["python", *python_flags, *argv])
            starts.append(result)
            print(
                f"[{name}] first step after {result['first_step_s']:.2f} s "
                f"(process {result['process_wall_s']:.1f} s)",
                file=sys.stderr,
                flush=True,
            )
            return result

        go("first", warm_cache)
        at += extend
        go("cold", base / "xla_empty")
        for i in range(repeats):
            at += extend
            go(f"warm{i + 1}" if repeats > 1 else "warm", warm_cache)
        at += extend
        go("warm-no-tb", warm_cache, extra=["--config.train.tensorboard=False"])
        at += extend
        probe_file = base / "probe.jsonl"
        argv_probe = [str(HERE / "warm_restart.py"), "--probe-child", "--"]
        result = go(
            "probe",
            warm_cache,
            python_flags=("-X", "importtime", *argv_probe),
            env={PROBE_ENV: str(probe_file)},
        )
        probe = _probe_result(result, probe_file, base / "probe.log")
        at += extend
        probe_file = base / "probe-no-tb.jsonl"
        result = go(
            "probe-no-tb",
            warm_cache,
            extra=["--config.train.tensorboard=False"],
            python_flags=("-X", "importtime", *argv_probe),
            env={PROBE_ENV: str(probe_file)},
        )
        probe_no_tb = _probe_result(result, probe_file, base / "probe-no-tb.log")
    finally:
        if tmp_ctx is not None:
            tmp_ctx.cleanup()
    return dict(starts=starts, probe=probe, probe_no_tb=probe_no_tb)


def _probe_result(result: dict[str, Any], probe_file: Path, log_path: Path) -> dict[str, Any]:
    return dict(
        first_step_s=result["first_step_s"],
        phases=read_probe(probe_file, result["started_at"]),
        imports=import_breakdown(log_path.read_text(errors="replace")),
    )


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """The headline figures: first-step seconds of each kind of start, against the target."""
    by = {s["name"]: s for s in result["starts"]}
    warm = [s["first_step_s"] for s in result["starts"] if re.fullmatch(r"warm\d*", s["name"])]
    out = dict(
        target_s=TARGET_S,
        new_run_cold_cache_s=by["first"]["first_step_s"],
        restart_cold_cache_s=by["cold"]["first_step_s"],
        restart_warm_cache_s=statistics.median(warm),
        restart_warm_cache_all_s=warm,
        restart_warm_no_tensorboard_s=by["warm-no-tb"]["first_step_s"],
    )
    out["warm_over_target"] = out["restart_warm_cache_s"] / TARGET_S
    out["warm_no_tensorboard_over_target"] = out["restart_warm_no_tensorboard_s"] / TARGET_S
    out["cold_over_warm"] = out["restart_cold_cache_s"] / out["restart_warm_cache_s"]
    return out


def markdown(report: dict[str, Any]) -> str:
    """The report as markdown: starts, then the probe's phases and imports."""
    s = report["summary"]
    lines = [
        f"# Warm restart: {report['config']}, seconds from process start to the first step",
        "",
        f"{report['date']}, commit {report.get('git_commit') or '?'}, {report['cpus']} CPUs, "
        f"jax {report.get('jax_version', '?')}; target {s['target_s']:.0f} s (issue 14).",
        "",
        "| start | cache | first step s | / target | process s | compile lines (s) | load avg |",
        "|---|---|---|---|---|---|---|",
    ]
    off = "warm, tensorboard off"
    caches = {"first": "empty (new run)", "cold": "empty", "warm-no-tb": off, "probe-no-tb": off}
    for st in report["starts"]:
        comp = ", ".join(f"{c['executable']} {c['seconds']:.2f}" for c in st["compiles"])
        lines.append(
            f"| {st['name']} (to step {st['first_step']}) | {caches.get(st['name'], 'warm')} | "
            f"{st['first_step_s']:.2f} | {st['over_target']:.2f} | {st['process_wall_s']:.1f} | "
            f"{comp} | {st['load_average_before']:.2f} |"
        )
    lines += [
        "",
        f"Warm restart (median): {s['restart_warm_cache_s']:.2f} s = "
        f"{s['warm_over_target']:.2f} x the {s['target_s']:.0f} s target; without TensorBoard "
        f"{s['restart_warm_no_tensorboard_s']:.2f} s ({s['warm_no_tensorboard_over_target']:.2f} x); "
        f"cold cache {s['restart_cold_cache_s']:.2f} s ({s['cold_over_warm']:.2f} x warm).",
    ]
    for key, title in (("probe", "TensorBoard on"), ("probe_no_tb", "TensorBoard off")):
        lines += _probe_markdown(report.get(key), title)
    return "\n".join(lines)


def _probe_markdown(probe: dict[str, Any] | None, title: str) -> list[str]:
    lines: list[str] = []
    if probe:
        lines += [
            "",
            f"## Where the warm start goes, {title} (probe run: first step at "
            f"{probe['first_step_s']:.2f} s under -X importtime)",
            "",
            "| phase | from s | to s | seconds |",
            "|---|---|---|---|",
        ]
        for p in probe["phases"]:
            lines.append(
                f"| {p['phase']} | {p['start_s']:.2f} | {p['end_s']:.2f} | {p['seconds']:.2f} |"
            )
        lines.append(f"| first train line seen by the parent | | {probe['first_step_s']:.2f} | |")
        imp = probe["imports"]
        lines += [
            "",
            f"Imports: {imp['total_self_s']:.2f} s in all (module self time, -X importtime), by "
            "package: "
            + ", ".join(
                f"{k} {v:.2f}"
                for k, v in sorted(imp["self_s_by_group"].items(), key=lambda kv: -kv[1])
            ),
            "",
            "Slowest top-level imports (cumulative s): "
            + ", ".join(f"{n} {v:.2f}" for n, v in imp["slowest_top_level"][:8]),
        ]
    return lines


# ------------------------------------------------------------------- probe child
def probe_child(argv: list[str]) -> int:
    """``bsjax train ARGV`` with bsjax's set-up phases timed into the file of $BSJAX_BENCH_PROBE_FILE.

    Wraps (does not change) the functions each phase runs; each writes one JSON line
    with wall-clock start and end when it returns.
    """
    probe_path = os.environ[PROBE_ENV]
    marks: list[str] = []

    def record(phase: str, start: float, end: float) -> None:
        with open(probe_path, "a") as f:
            f.write(json.dumps(dict(phase=phase, start=start, end=end)) + "\n")
        marks.append(phase)

    start = time.time()
    from bsjax import cli

    record("import bsjax.cli (absl, ml_collections)", start, time.time())

    start = time.time()
    from bsjax.train import executables as executables_lib
    from bsjax.train import feed as feed_lib
    from bsjax.train import loop
    from bsjax.train import step as step_lib

    record("import bsjax.train.loop (jax, flax, optax, orbax, ...)", start, time.time())

    def timed(owner, name: str, phase: str, times: int = 1):
        original = getattr(owner, name)
        calls = [0]

        def wrapper(*args, **kwargs):
            calls[0] += 1
            if calls[0] > times:
                return original(*args, **kwargs)
            t = time.time()
            try:
                return original(*args, **kwargs)
            finally:
                record(phase, t, time.time())

        setattr(owner, name, wrapper)

    from bsjax import config as config_pkg

    timed(config_pkg, "parse", "config parsed and checked")
    timed(loop.Trainer, "__init__", "Trainer set-up (all of the next four, and more)")
    timed(executables_lib, "enable_compilation_cache", "persistent compilation cache on")
    timed(loop, "_load_corpus_once", "corpus load (packed cache)")
    timed(step_lib, "build", "step functions built (model, optimizer, abstract state)")
    timed(loop.Trainer, "_take_lock", "run lock")
    timed(loop.Trainer, "_open_checkpoints", "checkpoint restore and digest check (orbax)")
    timed(loop.Trainer, "_write_start", "run files, metrics log and trackers")
    timed(
        loop.Trainer,
        "_start",
        "loop start: compiles queued, eval compiled, feeder, first batch queued",
    )
    timed(
        executables_lib.Executables,
        "get",
        "first step: waiting for its executable (compile or cache load, warm-up)",
    )
    timed(feed_lib.BatchFeeder, "get", "first step: its batch read and placed")
    timed(
        loop.Trainer,
        "_step",
        "first _step call (the wait above, the batch read and placed, the step dispatched)",
    )
    return cli.main(["train", *argv])


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    """Run every start, print the table and (with --out) write JSON and markdown."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--probe-child"]:
        rest = argv[1:]
        if rest[:1] == ["--"]:
            rest = rest[1:]
        if rest[:3] == ["-m", "bsjax", "train"]:
            rest = rest[3:]
        sys.exit(probe_child(rest))
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default="configs/tiny_cpu.py", help="run config (repo-relative)")
    p.add_argument(
        "--steps", type=int, default=20, help="steps of the first start (tiny_cpu: its warm-up)"
    )
    p.add_argument("--extend", type=int, default=3, help="steps each restart adds")
    p.add_argument("--repeats", type=int, default=3, help="warm restarts (the median is reported)")
    p.add_argument("--out", help="write the figures as JSON here (and a .md beside it)")
    p.add_argument("--keep", help="work in this folder and keep it (default: a temporary one)")
    args = p.parse_args(argv)

    date = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    result = measure(args.config, args.steps, args.extend, args.repeats, args.keep)
    import jax

    report = dict(
        benchmark="warm_restart",
        date=date,
        command=shlex.join(["python", "experiments/benchmarks/warm_restart.py", *argv]),
        git_commit=provenance.git_commit(),
        cpus=os.cpu_count(),
        jax_version=jax.__version__,
        config=args.config,
        steps=args.steps,
        extend=args.extend,
        summary=summarize(result),
        **result,
    )
    text = markdown(report)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")
        out.with_suffix(".md").write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
