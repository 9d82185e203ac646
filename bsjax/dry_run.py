"""``--dry-run``: what a train or sweep config will do, printed before anything runs.

It resolves the config exactly as the trainer does (validation, model, batch
plan, LR schedule, coupled hyper-parameters) and prints the model, the batch
schedule, the buckets to compile, an estimate of memory per device, the stop
and the evaluation schedule; for a sweep, every run with its budget. It never
builds the corpus, compiles or writes anything: the vocabulary comes from
``model.vocab_size``, the byte tokenizer (257, known without data) or the
tokenizer file alone.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import ml_collections

from bsjax import model as model_lib
from bsjax.console import human_bytes, human_count, table

_DTYPE_BYTES = {"float32": 4, "bfloat16": 2}


# ----------------------------------------------------------------- vocabulary
def vocab_size_of(config: ml_collections.ConfigDict) -> tuple[int, str]:
    """The vocabulary a run of ``config`` will have, and where the number comes from.

    Reads no corpus: ``model.vocab_size`` when set (at least the tokenizer's),
    257 for the byte tokenizer, else the tokenizer file's own count.
    """
    data = config.data
    if data.tokenizer == "bytes":
        from bsjax.data.tokenizers import ByteTokenizer

        tokenizer_vocab, source = ByteTokenizer.vocab_size, "the byte tokenizer"
    elif data.tokenizer_path:
        from bsjax.data.tokenizers import make_tokenizer

        try:
            tokenizer_vocab = make_tokenizer(data.tokenizer, data.tokenizer_path).vocab_size
            source = f"{data.tokenizer_path}"
        except Exception as err:  # a missing file is also reported by validation
            tokenizer_vocab, source = 0, f"unreadable tokenizer ({err})"
    else:  # validation reports the missing file
        tokenizer_vocab, source = 0, "no tokenizer file"
    if config.model.vocab_size:
        padded = max(config.model.vocab_size, tokenizer_vocab)
        return padded, f"model.vocab_size={config.model.vocab_size}" + (
            f" (tokenizer: {tokenizer_vocab}, {source})" if tokenizer_vocab else ""
        )
    return tokenizer_vocab, source


# ------------------------------------------------------------------- memory
@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per device, by item; ``items`` keeps (name, bytes, how it was counted)."""

    items: tuple[tuple[str, float, str], ...]

    @property
    def total(self) -> float:
        return sum(b for _, b, _ in self.items)


def activation_bytes_per_sequence(cfg: model_lib.ModelConfig, backward: bool = True) -> float:
    """Bytes of activations one sequence keeps alive through a train (or eval) micro-step.

    Per layer and token, in the compute dtype: the residual input, two
    LayerNorm outputs, q/k/v and the rotated q/k, the attention output, the
    residual after attention (12 d_model values in all, counting the block
    output), the MLP's up projection and its activation ((n_in + 1) d_ff), and
    the softmax scores and probabilities of XLA attention (2 n_heads ctx; a
    fused kernel keeps none). The float32 logits and their gradient add
    2 vocab values per token. Forward-only (eval) keeps one layer and the
    logits. An estimate: XLA's rematerialisation and fusion change it.
    """
    c = _DTYPE_BYTES[cfg.dtype]
    n_in = 2 if cfg.mlp == "swiglu" else 1
    per_layer_token = (12 * cfg.d_model + (n_in + 1) * cfg.d_ff + 2 * cfg.n_heads * cfg.ctx_len) * c
    logits_token = (2 if backward else 1) * cfg.vocab_size * 4
    layers = cfg.n_layers if backward else 1
    return cfg.ctx_len * (layers * per_layer_token + logits_token)


def memory_estimate(
    cfg: model_lib.ModelConfig, *, fsdp: int, train_micro_per_device: int, eval_per_device: int
) -> MemoryEstimate:
    """Memory one device needs: the state sharded ``fsdp`` ways plus one micro-step's activations.

    State: parameters, Adam's two moments and the EWA copy in the parameter
    dtype, the float32 gradient accumulator and one micro-step's gradient.
    Activations: the largest train micro-batch per device (or the eval batch
    per device, forward only, if that is larger).
    """
    n = model_lib.count_params(cfg)["total"]
    p = _DTYPE_BYTES[cfg.param_dtype]
    shard = f"/ fsdp {fsdp}" if fsdp > 1 else "(unsharded)"
    train_act = train_micro_per_device * activation_bytes_per_sequence(cfg, backward=True)
    eval_act = eval_per_device * activation_bytes_per_sequence(cfg, backward=False)
    if train_act >= eval_act:
        act = (
            "activations",
            train_act,
            f"{train_micro_per_device} sequences/device/micro-step x {cfg.ctx_len} tokens, "
            f"{cfg.dtype}; float32 logits",
        )
    else:
        act = (
            "activations (eval)",
            eval_act,
            f"{eval_per_device} eval sequences/device, forward only",
        )
    items = (
        ("parameters", n * p / fsdp, f"{human_count(n)} x {cfg.param_dtype} {shard}"),
        ("Adam moments (mu, nu)", 2 * n * p / fsdp, f"2 x {cfg.param_dtype} {shard}"),
        ("EWA parameters", n * p / fsdp, f"{cfg.param_dtype} {shard}"),
        (
            "gradients",
            n * (4 + p) / fsdp,
            f"float32 accumulator + one micro-step's {cfg.param_dtype} {shard}",
        ),
        act,
    )
    return MemoryEstimate(items=items)


# ----------------------------------------------------------- schedule walking
def _step_at_tokens(points, ctx_len: int, tokens: int) -> int:
    """Steps a run from 0 takes to consume at least ``tokens`` tokens under ``points``."""
    step = 0
    for i, point in enumerate(points):
        end = points[i + 1].tokens if i + 1 < len(points) else math.inf
        if tokens <= end:
            return point.step + max(0, -(-(tokens - point.tokens) // (point.batch_size * ctx_len)))
        step = points[i + 1].step
    return step


def _tokens_at_step(points, ctx_len: int, step: int) -> int:
    current = points[0]
    for point in points:
        if point.step <= step:
            current = point
    return current.tokens + (step - current.step) * current.batch_size * ctx_len


def _stop(config, points, ctx_len: int, known: bool) -> tuple[int | None, int | None, str]:
    """(steps, tokens, description) of the stop a run from 0 reaches first."""
    t = config.train
    candidates = []
    if t.max_steps:
        tokens = _tokens_at_step(points, ctx_len, t.max_steps) if known else None
        candidates.append((t.max_steps, tokens, f"train.max_steps={t.max_steps}"))
    if t.max_tokens:
        steps = _step_at_tokens(points, ctx_len, t.max_tokens) if known else None
        candidates.append((steps, t.max_tokens, f"train.max_tokens={human_count(t.max_tokens)}"))
    if known and candidates:
        steps, tokens, why = min(candidates, key=lambda c: c[0])
    elif candidates:
        steps, tokens, why = candidates[0]
    else:
        steps, tokens, why = None, None, "no step or token limit"
    if t.target_loss > 0:
        why += f", or earlier at EWA eval loss <= {t.target_loss:g} (train.target_loss)"
    return steps, tokens, why


# ----------------------------------------------------------------- rendering
def _devices(config: ml_collections.ConfigDict) -> tuple[int, str]:
    """Devices the run is planned for: mesh.data x mesh.fsdp when both are given, else these."""
    m = config.mesh
    if m.data > 0:
        return m.data * m.fsdp, f"mesh.data={m.data} x mesh.fsdp={m.fsdp}"
    import jax

    n = jax.device_count()
    return n, f"{n} {jax.default_backend()} device(s) of this machine (mesh.data=-1)"


def _resolve(config_lib, config, num_devices: int):
    """(run config, ModelConfig, BatchPlan, vocabulary note), as the trainer resolves them.

    Takes a RunConfig or a ConfigDict (parsed here). Raises a ProblemsError
    subclass listing every problem.
    """
    run = (
        config
        if isinstance(config, config_lib.RunConfig)
        else config_lib.parse(config, num_devices)
    )
    vocab, note = vocab_size_of(run)
    return run, config_lib.model_config(run, vocab), config_lib.batch_plan(run, num_devices), note


def describe_run(config) -> tuple[list[str], list[str]]:
    """The dry-run text of a run config (a ConfigDict or a RunConfig), and its problems.

    A config with problems gets no text: the problems are what a real run
    would stop at, before anything is compiled.
    """
    from bsjax import config as config_lib
    from bsjax import optim
    from bsjax.errors import ProblemsError

    num_devices, devices_note = _devices(config)
    try:
        run, mcfg, plan, vocab_note = _resolve(config_lib, config, num_devices)
    except ProblemsError as err:
        return [], err.problems
    config = run
    out: list[str] = []
    counts = model_lib.count_params(mcfg)
    flops = model_lib.flops_per_token(mcfg)
    out += [
        "model",
        f"  preset {config.model.preset}: d_model={mcfg.d_model} n_layers={mcfg.n_layers} "
        f"n_heads={mcfg.n_heads} (head dim {mcfg.head_dim}) d_ff={mcfg.d_ff} "
        f"ctx_len={mcfg.ctx_len} vocab={mcfg.vocab_size}",
        f"  vocabulary: {vocab_note}",
        f"  parameters: {counts['non_embedding']:,} non-embedding, {counts['total']:,} total "
        f"({human_count(counts['non_embedding'])} / {human_count(counts['total'])})",
        f"  {mcfg.pos} positions, {mcfg.mlp} MLP, "
        f"{'tied' if mcfg.tie_embeddings else 'untied'} embeddings, compute {mcfg.dtype}, "
        f"parameters {mcfg.param_dtype}",
        f"  training FLOPs per token: {flops:.4g} ({human_count(flops)})",
        "",
    ]
    lr_schedule = optim.lr_schedule_from_config(config.optim)
    shards = num_devices
    ctx = mcfg.ctx_len
    known = not _decides(plan)  # sizes fixed in advance: every switch step is known
    points = plan.switch_points() if known else plan.switch_points()[:1]
    steps, tokens, stop_why = _stop(config, points, ctx, known)

    def row(label: str, at_tokens: int, B: int) -> list[Any]:
        coupled = plan.coupling.hparams_for(B)
        override = plan.policy.lr_override(at_tokens)
        lr = override if override is not None else lr_schedule(at_tokens) * coupled["lr_scale"]
        b2 = config.optim.b2 if coupled["b2"] is None else coupled["b2"]
        tau = config.optim.ewa_tau if coupled["ewa_tau"] is None else coupled["ewa_tau"]
        bucket = plan.bucket(plan.resolve(B))
        step = _step_at_tokens(points, ctx, at_tokens)
        return [label, human_count(at_tokens), step, B, bucket.K, bucket.M] + [
            f"{lr:.4g}",
            f"{b2:g}",
            f"{tau:g}",
        ]

    events = [(p.tokens, "switch" if p.step else "start", p.batch_size) for p in points]
    if known:
        warm = int(config.optim.warmup_tokens)
        if warm and (tokens is None or warm < tokens):
            events.append((warm, "warmup end", _size_at(points, warm)))
        if tokens is not None:
            events.append((tokens, "stop", _size_at(points, tokens)))
    rows = [
        row(label, at, B) for at, label, B in sorted(events, key=lambda e: (e[0], e[1] != "start"))
    ]
    how = "fixed in advance" if known else f"policy {plan.policy.kind} decides at run time"
    out.append(f"batch schedule ({plan.schedule.describe()}; {how})")
    out += table(["at", "tokens", "step", "B", "K", "M", "LR", "beta2", "tau"], rows)
    if not known:
        out.append(
            f"  then {plan.policy.kind} picks each size from its measurements, among "
            f"{plan.available_sizes()} (every one compiled ahead)"
        )
    out += [f"  coupling: {plan.coupling.describe()}", ""]

    order = _compile_order(plan)
    out.append(
        f"buckets to compile ({len(order)} train step(s) + 1 eval step; {devices_note}, "
        f"{shards} data shard(s), at most {config.batch.micro_batch_per_device} "
        f"sequences/device/micro-step)"
    )
    out += table(
        ["B", "K", "M", "per device", "batch shape"],
        [
            [B, b.K, b.M, b.micro_per_device(shards), "x".join(map(str, b.batch_shape(ctx)))]
            for B, b in order
        ],
    )
    t = config.train
    out += [
        f"  eval: {t.eval_batches} batches of {t.eval_batch_size} sequences "
        f"({t.eval_batch_size // max(num_devices, 1)}/device)",
        "",
    ]

    largest_micro = max(b.micro_per_device(shards) for _, b in order)
    memory = memory_estimate(
        mcfg,
        fsdp=config.mesh.fsdp,
        train_micro_per_device=largest_micro,
        eval_per_device=max(t.eval_batch_size // max(num_devices, 1), 1),
    )
    out.append(
        "memory per device (an estimate from the shapes, not a measurement; XLA's buffers differ)"
    )
    out += table(
        ["item", "bytes", "counted as"],
        [[name, human_bytes(b), how] for name, b, how in memory.items]
        + [["total", human_bytes(memory.total), ""]],
    )
    out.append("")

    out.append("stop")
    if steps is not None and tokens is not None:
        out.append(f"  {steps:,} steps, {tokens:,} tokens ({human_count(tokens)}): {stop_why}")
        out.append(f"  training compute: {flops * tokens:.3g} FLOPs")
    elif steps is not None:
        out.append(f"  {steps:,} steps (tokens depend on the policy's sizes): {stop_why}")
    elif tokens is not None:
        out.append(f"  {tokens:,} tokens (steps depend on the policy's sizes): {stop_why}")
    else:
        out.append(f"  {stop_why}")
    out.append("")
    out.append("evaluation")
    out += _eval_lines(config, steps)
    return out, []


def _decides(plan) -> bool:
    """True when the policy chooses sizes from measurements (steps cannot be known ahead)."""
    return plan.policy.kind in ("noise_scale", "probe", "wsd_es")


def _size_at(points, tokens: int) -> int:
    size = points[0].batch_size
    for p in points:
        if p.tokens <= tokens:
            size = p.batch_size
    return size


def _compile_order(plan) -> list[tuple[int, Any]]:
    """The trainer's compile order: the first size, the switches in order, then the rest."""
    sizes = [plan.policy.initial_batch_size()] + [p.batch_size for p in plan.switch_points()]
    sizes += plan.available_sizes()
    seen, order = set(), []
    for B in sizes:
        if B in plan.buckets and B not in seen:
            seen.add(B)
            order.append((B, plan.bucket(B)))
    return order


def _eval_lines(config, stop_steps: int | None) -> list[str]:
    t = config.train
    if t.eval_schedule == "hybrid":
        from bsjax.train.eval_schedule import eval_steps

        steps = eval_steps(t.expected_steps, every=t.eval_every, max_steps=t.max_steps or None)
        if stop_steps is not None:
            steps = [s for s in steps if s <= stop_steps]
        shown = ", ".join(map(str, steps[:8])) + (
            f", ..., {', '.join(map(str, steps[-4:]))}" if len(steps) > 12 else ""
        )
        if len(steps) <= 12:
            shown = ", ".join(map(str, steps))
        return [
            f"  hybrid (powers of two, every {t.eval_every}, dense from 0.7 x expected_steps="
            f"{t.expected_steps}): {len(steps)} evaluations at steps {shown}"
        ]
    if stop_steps is None:
        return [f"  every {t.eval_every} steps"]
    n = stop_steps // t.eval_every
    final = "" if stop_steps % t.eval_every == 0 else f" + the final step {stop_steps}"
    return [f"  every {t.eval_every} steps: {n} evaluations{final}"]


def describe_sweep(config: ml_collections.ConfigDict) -> tuple[list[str], list[str]]:
    """The dry-run text of a sweep config: its reference run in full, then every run's budget."""
    from bsjax.cbs.sweep import plan_sweep, run_config
    from bsjax.errors import ProblemsError

    try:
        plan = plan_sweep(config)
    except ProblemsError as err:
        return [], err.problems
    out = []
    first = next(iter(plan.references.values()), None) or plan.runs()[0]
    target = plan.target_loss
    run_lines, problems = describe_run(run_config(plan, first, target or 1.0))
    out.append(f"first run ({first.name}):")
    out += ["  " + line if line else "" for line in run_lines]
    rows = []
    total_tokens = 0
    for point in plan.runs():
        budget = point.max_steps * point.batch_size * point.setting.ctx_len
        total_tokens += budget
        rows.append(
            [
                point.name,
                "reference" if point.is_reference else "point",
                point.batch_size,
                f"{point.lr:.3g}",
                f"{point.b2:g}",
                f"{point.ewa_tau:g}",
                point.expected_steps,
                point.max_steps,
                human_count(budget),
            ]
        )
    out.append("")
    for setting, ref in plan.references.items():
        label = f" ({setting.label})" if setting.label else ""
        out.append(
            f"reference{label}: {ref.name} sets the target at t_chin={setting.t_chin} steps "
            f"({setting.ratio:g} tokens/parameter, N={setting.n_params:,})"
        )
    if target:
        out.append(f"target loss: {target:g} (sweep.target_loss)")
    out.append(
        f"runs ({len(rows)}; budget = the step cap max_steps at the run's batch size, "
        "most stop earlier at the target)"
    )
    out += table(
        ["run", "role", "B", "LR", "beta2", "tau", "expected", "max_steps", "tokens"], rows
    )
    out.append(f"  at most {human_count(total_tokens)} tokens over the sweep")
    return out, []


def dry_run(kind: str, config: ml_collections.ConfigDict, print_line=print) -> int:
    """Print the dry run of a ``train`` or ``sweep`` config; 0 if it would run, 2 if not."""
    if kind == "train":
        lines, problems = describe_run(config)
    else:
        lines, problems = describe_sweep(config)
    for line in lines:
        print_line(line)
    if problems:
        print_line("")
        print_line(f"this config would stop before training ({len(problems)} problem(s)):")
        for problem in problems:
            print_line(f"  - {problem}")
        return 2
    print_line("")
    print_line(f"dry run: nothing was built, compiled or written; drop --dry-run to {kind}.")
    return 0
