"""Every benchmark of bsjax in one command: one JSON file and one markdown table per section.

Sections (``--only`` takes a comma list of them; default: all but ``retrace`` under --small):
  mfu       tokens/s and MFU per preset x context x gradient accumulation K (same global
            batch, micro-batch B/K), bsjax's loop (bench_common.measure_step, mfu.py's formula)
  overhead  bsjax's loop step against a bare jitted loop of the same executable (step_overhead.py)
  stall     first step after each switch / steady step of a schedule table, from the ``switch``
            lines of a bsjax run in a fresh process, cold and warm cache (switch_stall.py)
  retrace   the same schedule with one plain jax.jit that re-traces at each new shape (baseline)
  compile   seconds per bucket from the ``compile`` lines of those runs: an empty persistent
            compilation cache (cold), then the same cache again (warm)
  pipeline  tokens/s the input pipeline delivers (stream reads; sharded batches on the devices)
            against tokens/s the step consumes (the bare step of the first configuration)
  memory    peak device memory where the backend reports it, and XLA's estimate per step

  python -m experiments.benchmarks.run --small                       # CI: tiny, 1.5 min on 2 cores
  python -m experiments.benchmarks.run                               # CPU: tiny, small-cpu; GPU: 85M-1.2B
  python -m experiments.benchmarks.run --presets 151M --ctx 512 --accum 1,2 --only mfu,overhead

Results go to ``--out`` (default experiments/benchmarks/results/<device-kind>/), as
benchmark.json and benchmark.md (benchmark-small.* under --small).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import argparse
import dataclasses
import datetime
import json
import math
import os
import re
import shlex
import tempfile
import time
from typing import Any

import bench_common
import jax
import mfu
import provenance
import switch_stall

from bsjax import model as model_lib

HERE = Path(__file__).resolve().parent
SECTIONS = ("mfu", "overhead", "stall", "retrace", "compile", "pipeline", "memory")
STEP_SECTIONS = {"mfu", "overhead", "pipeline", "memory"}
SCHEDULE_SECTIONS = {"stall", "retrace", "compile"}
NO_PEAK = "n/a (no published peak)"
NOT_REPORTED = "n/a (backend reports no memory stats)"


@dataclasses.dataclass
class Plan:
    """What one invocation measures; every field goes into the JSON as given."""

    presets: list[str]
    ctx: list[int]
    accum: list[int]
    batch: int
    dtype: str
    vocab: int
    steps: int
    warmup: int
    pipeline_batches: int
    pipeline_read_seconds: float
    stall_preset: str
    stall_ctx: int
    stall_sizes: list[int]
    stall_micro: int
    stall_first_steps: int
    stall_steps: int
    sections: list[str]
    hide_tensorflow: bool


def defaults(small: bool, accelerator: bool) -> dict[str, Any]:
    """The plan's defaults: --small (CI), a CPU, or an accelerator (the paper's presets)."""
    if small:
        return dict(
            presets=["tiny"],
            ctx=[32],
            accum=[1, 2],
            batch=16,
            dtype="float32",
            vocab=0,
            steps=5,
            warmup=2,
            pipeline_batches=20,
            pipeline_read_seconds=0.5,
            stall_sizes=[16, 32, 64],
            stall_micro=64,
            stall_first_steps=20,
            stall_steps=5,
        )
    if not accelerator:
        return dict(
            presets=["tiny", "small-cpu"],
            ctx=[64, 128],
            accum=[1, 2, 4, 8],
            batch=16,
            dtype="float32",
            vocab=0,
            steps=10,
            warmup=3,
            pipeline_batches=100,
            pipeline_read_seconds=2.0,
            stall_sizes=[16, 32, 64, 128, 256],
            stall_micro=64,
            stall_first_steps=40,
            stall_steps=6,
        )
    return dict(
        presets=["85M", "151M", "302M", "604M", "1.2B"],
        ctx=[512, 2048],
        accum=[1, 2, 4, 8],
        batch=64,
        dtype="bfloat16",
        vocab=50280,
        steps=20,
        warmup=5,
        pipeline_batches=200,
        pipeline_read_seconds=3.0,
        stall_sizes=[16, 32, 64, 128, 256],
        stall_micro=32,
        stall_first_steps=300,
        stall_steps=15,
    )


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _names(text: str) -> list[str]:
    return [x for x in text.split(",") if x]


def parse_args(argv: list[str] | None = None) -> tuple[Plan, argparse.Namespace]:
    """The plan of this invocation, and the parsed arguments."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--small", action="store_true", help="CI mode: tiny, ctx 32, K 1,2, 2 switches")
    p.add_argument("--presets", type=_names, help="comma list of bsjax.model.PRESETS names")
    p.add_argument("--ctx", type=_ints, help="comma list of context lengths")
    p.add_argument("--accum", type=_ints, help="comma list of accumulation steps K")
    p.add_argument("--batch", type=int, help="global batch in sequences, the same for every K")
    p.add_argument("--dtype", help="compute dtype (float32, bfloat16)")
    p.add_argument("--vocab", type=int, help="vocabulary (0: the byte tokenizer's 257)")
    p.add_argument("--steps", type=int, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, help="untimed steps before them")
    p.add_argument("--stall-preset", help="preset of the switch schedule (default: the first)")
    p.add_argument("--stall-ctx", type=int, help="context of the switch schedule (default: first)")
    p.add_argument("--stall-sizes", type=_ints, help="batch sizes of the schedule table, in order")
    p.add_argument("--only", type=_names, help=f"comma list of sections: {', '.join(SECTIONS)}")
    p.add_argument("--out", help="output folder (default: results/<device-kind>/ beside this file)")
    p.add_argument(
        "--hide-tensorflow",
        action=argparse.BooleanOptionalAction,
        help="run bsjax as on a host without TensorFlow, sparing its import (default: on "
        "under --small)",
    )
    args = p.parse_args(argv)

    accelerator = jax.default_backend() != "cpu"
    chosen = defaults(args.small, accelerator)
    for key in ("presets", "ctx", "accum", "batch", "dtype", "vocab", "steps", "warmup"):
        if getattr(args, key) is not None:
            chosen[key] = getattr(args, key)
    if args.stall_sizes is not None:
        chosen["stall_sizes"] = args.stall_sizes
    sections = args.only or [s for s in SECTIONS if not (args.small and s == "retrace")]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        p.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    if len(chosen["stall_sizes"]) < 2:
        p.error("--stall-sizes needs at least two sizes (one switch)")
    plan = Plan(
        hide_tensorflow=args.small if args.hide_tensorflow is None else args.hide_tensorflow,
        stall_preset=args.stall_preset or chosen["presets"][0],
        stall_ctx=args.stall_ctx or chosen["ctx"][0],
        sections=[s for s in SECTIONS if s in sections],
        **chosen,
    )
    return plan, args


def device_record() -> dict[str, Any]:
    """The devices this process sees."""
    d = jax.devices()[0]
    return dict(
        backend=jax.default_backend(),
        kind=d.device_kind,
        count=jax.device_count(),
        summary=bench_common.device_summary(),
        cpus=os.cpu_count(),
    )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _out_of_memory(err: BaseException) -> bool:
    text = str(err).lower()
    return "resource_exhausted" in text or "out of memory" in text


def step_grid(plan: Plan) -> list[dict[str, Any]]:
    """The step configurations to measure; only the first one when just the pipeline needs it."""
    grid = [
        dict(preset=preset, ctx_len=ctx, accum=K)
        for preset in plan.presets
        for ctx in plan.ctx
        for K in plan.accum
    ]
    if not set(plan.sections) & {"mfu", "overhead", "memory"}:
        return grid[:1]
    return grid


def measure_steps(plan: Plan, cache_dir: str) -> tuple[list[dict], list[dict]]:
    """Each configuration of the grid: its StepMeasurement, or why it was skipped.

    The input pipeline is measured beside the first configuration that runs.
    """
    measured, skipped = [], []
    devices = jax.device_count()
    for point in step_grid(plan):
        K = point["accum"]
        config = dict(point, batch_size=plan.batch, dtype=plan.dtype, devices=devices)
        if plan.batch % (K * devices):
            skipped.append(
                dict(config=config, reason=f"batch {plan.batch} is not a multiple of K x devices")
            )
            continue
        _log(f"[steps] {point['preset']} ctx {point['ctx_len']} B {plan.batch} K {K}")
        want_pipeline = "pipeline" in plan.sections and not measured
        try:
            m = bench_common.measure_step(
                point["preset"],
                plan.batch,
                point["ctx_len"],
                dtype=plan.dtype,
                micro_per_device=plan.batch // (K * devices),
                steps=plan.steps,
                warmup=plan.warmup,
                vocab_size=plan.vocab,
                pipeline_batches=plan.pipeline_batches if want_pipeline else 0,
                pipeline_read_seconds=plan.pipeline_read_seconds,
                compile_cache_dir=cache_dir,
            )
        except Exception as err:
            if not _out_of_memory(err):
                raise
            skipped.append(dict(config=config, reason=f"out of memory: {str(err)[:300]}"))
            continue
        measured.append(dict(requested_K=K, measurement=m))
    return measured, skipped


def step_records(plan: Plan, measured: list[dict]) -> list[dict]:
    """The mfu, overhead, pipeline and memory records of the measured step configurations."""
    kind = jax.devices()[0].device_kind
    peak = mfu.peak_tflops(kind)
    records = []
    for entry in measured:
        m: bench_common.StepMeasurement = entry["measurement"]
        config = dict(m.config, requested_K=entry["requested_K"])
        loop_tps = m.tokens_per_step / m.loop_step_s
        bare_tps = m.tokens_per_step / m.bare_step_s
        if "mfu" in plan.sections:
            utilisation = mfu.mfu(loop_tps, m.model_cfg, peak, jax.device_count())
            counts = model_lib.count_params(m.model_cfg)
            records.append(
                dict(
                    section="mfu",
                    config=config,
                    tokens_per_s=loop_tps,
                    tokens_per_s_bare_jit=bare_tps,
                    step_s=m.loop_step_s,
                    flops_per_token=model_lib.flops_per_token(m.model_cfg),
                    non_embedding_params=counts["non_embedding"],
                    achieved_tflops=mfu.achieved_tflops(loop_tps, m.model_cfg),
                    peak_tflops_per_device=peak,
                    mfu=utilisation,
                    mfu_text=f"{utilisation:.1%}" if utilisation is not None else NO_PEAK,
                )
            )
        if "overhead" in plan.sections:
            records.append(
                dict(
                    section="overhead",
                    config=config,
                    loop_step_s=m.loop_step_s,
                    bare_step_s=m.bare_step_s,
                    ratio=m.loop_step_s / m.bare_step_s,
                )
            )
        if "pipeline" in plan.sections and m.pipeline is not None:
            pipe = m.pipeline
            records.append(
                dict(
                    section="pipeline",
                    config=dict(
                        config,
                        read_rows_per_call=pipe["read_rows_per_call"],
                        read_seconds=pipe["read_seconds"],
                        assemble_batches=pipe["assemble_batches"],
                        consumption="the bare jitted step of this configuration",
                    ),
                    read_tokens_per_s=pipe["read_tokens_per_s"],
                    assemble_tokens_per_s=pipe["assemble_tokens_per_s"],
                    step_tokens_per_s=bare_tps,
                    read_over_step=pipe["read_tokens_per_s"] / bare_tps,
                    assemble_over_step=pipe["assemble_tokens_per_s"] / bare_tps,
                    train_sequences=pipe["train_sequences"],
                )
            )
        if "memory" in plan.sections:
            compiled = m.compiled_memory or {}
            records.append(
                dict(
                    section="memory",
                    config=config,
                    device_peak_bytes=m.device_peak_bytes,
                    device_peak_text=(
                        f"{m.device_peak_bytes / 2**30:.2f} GiB"
                        if m.device_peak_bytes
                        else NOT_REPORTED
                    ),
                    device_peak_scope="process peak so far (configurations run in order)",
                    compiled_total_bytes=compiled.get("total"),
                    compiled_bytes=compiled or None,
                )
            )
    return records


def schedule_records(plan: Plan) -> list[dict]:
    """Stall, re-trace and compile records of the switch schedule, each run in a fresh process."""
    options = switch_stall.variant_options(
        plan.stall_preset,
        plan.stall_ctx,
        plan.dtype,
        plan.stall_sizes,
        plan.stall_micro,
        plan.stall_first_steps,
        plan.stall_steps,
    )
    config = dict(
        preset=plan.stall_preset,
        ctx_len=plan.stall_ctx,
        dtype=plan.dtype,
        sizes=plan.stall_sizes,
        micro_per_device=plan.stall_micro,
        first_steps=plan.stall_first_steps,
        steps_per_size=plan.stall_steps,
        devices=jax.device_count(),
        table=switch_stall.schedule_table(
            plan.stall_sizes, plan.stall_ctx, plan.stall_first_steps, plan.stall_steps
        ),
    )
    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as cache:
        names = []
        if {"stall", "compile"} & set(plan.sections):
            names += ["bsjax-cold", "bsjax-warm"]
        if "retrace" in plan.sections:
            names.append("plain")
        for name in names:
            variant = "plain" if name == "plain" else "bsjax"
            _log(f"[schedule] {name}: {plan.stall_preset} ctx {plan.stall_ctx} {plan.stall_sizes}")
            start = time.perf_counter()
            runs[name] = switch_stall.run_variant(variant, options, cache)
            runs[name]["wall_s"] = time.perf_counter() - start

    buckets = {
        c["batch_size"]: (c["K"], c["M"])
        for c in runs.get("bsjax-cold", {}).get("compiles", [])
        if c["executable"] == "train_step"
    }
    records = []
    for name, result in runs.items():
        section = "retrace" if name == "plain" else "stall"
        if section not in plan.sections:
            continue
        for sw in result["switches"]:
            old_K, old_M = buckets.get(sw["old"], (None, None))
            new_K, new_M = buckets.get(sw["new"], (None, None))
            records.append(
                dict(
                    section=section,
                    variant=name,
                    config=dict(
                        config,
                        old=sw["old"],
                        new=sw["new"],
                        old_bucket=[old_K, old_M],
                        new_bucket=[new_K, new_M],
                    ),
                    first_step_s=sw["first_s"],
                    steady_step_s=sw["steady_s"],
                    stall_ratio=sw["stall_ratio"],
                    compile_wait_s=sw.get("compile_wait_s"),
                    run_wall_s=result["wall_s"],
                )
            )
    if "compile" in plan.sections:
        records += compile_records(config, runs["bsjax-cold"], runs["bsjax-warm"])
    return records


def compile_records(config: dict, cold: dict, warm: dict) -> list[dict]:
    """One record per executable: cold seconds, warm (persistent cache) seconds, their ratio."""

    def by_executable(result):
        return {(c["executable"], c["K"], c["M"]): c for c in result["compiles"]}

    cold_by, warm_by = by_executable(cold), by_executable(warm)
    records = []
    for key, c in cold_by.items():
        w = warm_by.get(key)
        if w is None:
            continue
        executable, K, M = key
        records.append(
            dict(
                section="compile",
                config=dict(
                    config,
                    executable=executable,
                    K=K,
                    M=M,
                    batch_size=c["batch_size"],
                    cache="cold: empty persistent cache; warm: the same cache again, new process",
                ),
                cold_s=c["seconds"],
                warm_s=w["seconds"],
                warm_over_cold=w["seconds"] / c["seconds"] if c["seconds"] else math.nan,
            )
        )
    return records


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        if not math.isfinite(x):
            return str(x)
        if abs(x) >= 1e4:
            return f"{x:,.0f}"
        return f"{x:.{digits}g}" if abs(x) < 1 else f"{x:.{digits + 1}g}"
    return str(x)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return lines


def markdown(report: dict) -> str:
    """The report as markdown: a heading, then one table per section that has records."""
    results = report["results"]
    by_section = {s: [r for r in results if r["section"] == s] for s in SECTIONS}
    out = [
        f"# bsjax benchmarks: {report['device']['summary']}",
        "",
        f"`{report['command']}` at {report['date']}, commit {report.get('git_commit') or '?'}, "
        f"load average {report['load_average_before'][0]:.2f} before, "
        f"{report['load_average_after'][0]:.2f} after ({report['device']['cpus']} CPUs)"
        + (
            ", TensorFlow hidden (bsjax's path for hosts without it)."
            if report["plan"]["hide_tensorflow"]
            else "."
        ),
        "",
    ]

    def cfg(r):
        c = r["config"]
        return [c["preset"], c["ctx_len"], c["batch_size"], f"{c['K']}x{c['M']}"]

    if by_section["mfu"]:
        out += [f"## MFU ({report['formulas']['flops']}; {report['formulas']['mfu']})", ""]
        out += _table(
            ["preset", "ctx", "B", "K x M", "tokens/s", "bare jit tokens/s", "TFLOP/s", "MFU"],
            [
                cfg(r)
                + [r["tokens_per_s"], r["tokens_per_s_bare_jit"], r["achieved_tflops"]]
                + [r["mfu_text"]]
                for r in by_section["mfu"]
            ],
        )
        out.append("")
    if by_section["overhead"]:
        out += ["## Step overhead (bsjax loop / bare jitted step, same executable)", ""]
        out += _table(
            ["preset", "ctx", "B", "K x M", "bsjax ms", "bare ms", "ratio"],
            [
                cfg(r) + [r["loop_step_s"] * 1e3, r["bare_step_s"] * 1e3, r["ratio"]]
                for r in by_section["overhead"]
            ],
        )
        out.append("")
    stall_rows = by_section["stall"] + by_section["retrace"]
    if stall_rows:
        c = stall_rows[0]["config"]
        out += [
            f"## Switch stall (first step / steady step), {c['preset']} ctx {c['ctx_len']}, "
            f"table `{c['table']}`",
            "",
        ]
        out += _table(
            [
                "variant",
                "switch",
                "buckets (K x M)",
                "first s",
                "of it waiting for the compile s",
                "steady s",
                "ratio",
            ],
            [
                [
                    r["variant"],
                    f"{r['config']['old']} -> {r['config']['new']}",
                    "{}x{} -> {}x{}".format(*r["config"]["old_bucket"], *r["config"]["new_bucket"]),
                    r["first_step_s"],
                    "-" if r.get("compile_wait_s") is None else r["compile_wait_s"],
                    r["steady_step_s"],
                    r["stall_ratio"],
                ]
                for r in stall_rows
            ],
        )
        out.append("")
    if by_section["compile"]:
        out += ["## Compile seconds per executable (cold cache, warm persistent cache)", ""]
        out += _table(
            ["executable", "B", "K x M", "cold s", "warm s", "warm / cold"],
            [
                [
                    r["config"]["executable"],
                    r["config"]["batch_size"],
                    f"{r['config']['K']}x{r['config']['M']}" if r["config"]["K"] else "-",
                    r["cold_s"],
                    r["warm_s"],
                    r["warm_over_cold"],
                ]
                for r in by_section["compile"]
            ],
        )
        out.append("")
    if by_section["pipeline"]:
        out += ["## Input pipeline against step consumption (tokens/s)", ""]
        out += _table(
            ["preset", "ctx", "B", "K x M", "stream reads", "batches on device", "step", "ratio"],
            [
                cfg(r)
                + [r["read_tokens_per_s"], r["assemble_tokens_per_s"], r["step_tokens_per_s"]]
                + [r["assemble_over_step"]]
                for r in by_section["pipeline"]
            ],
        )
        out.append("")
    if by_section["memory"]:
        out += ["## Memory (device peak where reported; XLA's estimate of the step)", ""]
        out += _table(
            ["preset", "ctx", "B", "K x M", "device peak", "XLA estimate MiB"],
            [
                cfg(r)
                + [
                    r["device_peak_text"],
                    r["compiled_total_bytes"] / 2**20 if r["compiled_total_bytes"] else None,
                ]
                for r in by_section["memory"]
            ],
        )
        out.append("")
    if report["skipped"]:
        out += ["## Skipped", ""]
        out += [f"- {s['config']}: {s['reason']}" for s in report["skipped"]]
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict:
    """Run the plan, write the JSON and markdown, print the markdown; return the report."""
    plan, args = parse_args(argv)
    if plan.hide_tensorflow:
        bench_common.hide_tensorflow()
    started = time.perf_counter()
    load_before = os.getloadavg()
    command = shlex.join(["python", "-m", "experiments.benchmarks.run", *(argv or sys.argv[1:])])
    results, skipped = [], []
    with tempfile.TemporaryDirectory() as cache:
        if set(plan.sections) & STEP_SECTIONS:
            measured, skipped = measure_steps(plan, cache)
            results += step_records(plan, measured)
    if set(plan.sections) & SCHEDULE_SECTIONS:
        results += schedule_records(plan)

    report = dict(
        device=device_record(),
        jax_version=jax.__version__,
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        command=command,
        git_commit=provenance.git_commit(),
        plan=dataclasses.asdict(plan),
        formulas=dict(flops=mfu.FLOPS_FORMULA, mfu=mfu.MFU_FORMULA),
        load_average_before=list(load_before),
        load_average_after=list(os.getloadavg()),
        wall_s=time.perf_counter() - started,
        results=results,
        skipped=skipped,
    )
    out_dir = Path(args.out) if args.out else HERE / "results" / _slug(report["device"]["kind"])
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "benchmark-small" if args.small else "benchmark"
    (out_dir / f"{stem}.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    table = markdown(report)
    (out_dir / f"{stem}.md").write_text(table + "\n")
    print(table)
    _log(f"wrote {out_dir / stem}.json and .md in {report['wall_s']:.0f} s")
    return report


if __name__ == "__main__":
    main()
