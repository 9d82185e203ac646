"""The typed run config: one frozen section per concern, parsed once from a ConfigDict.

``parse(config_dict) -> RunConfig`` reads every section, resolves the model
preset into concrete sizes, and raises one ``ConfigError`` listing every problem
with its key path. ``to_dict(run_config)`` is what a run writes as config.json;
a ConfigDict made from that JSON parses back to an equal RunConfig.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from bsjax import model as model_lib
from bsjax import optim
from bsjax.batching.config import BatchSection, plan_from_config, validate_batch_config
from bsjax.batching.errors import BatchConfigError
from bsjax.batching.plan import BatchPlan
from bsjax.data import config as data_config
from bsjax.data.config import validate_data_config
from bsjax.errors import ProblemsError
from bsjax.sections import (
    Section,
    at_least,
    iter_fields,
    one_of,
    option,
    parse_section,
    section_to_dict,
    subsection,
)

STOP_STATUSES = ("target_reached", "max_steps", "max_tokens", "diverged", "preempted")
EVAL_SCHEDULES = ("every", "hybrid")
ARCH_KEYS = ("d_model", "n_layers", "n_heads", "d_ff")
# What a run adds to its config.json besides to_dict(run); parse leaves them out.
RECORD_KEYS = ("corpus", "model_params", "compile_cache_dir")


class ConfigError(ProblemsError):
    """A config that cannot run; the message lists every bad key."""

    heading = "invalid config"


@dataclasses.dataclass(frozen=True)
class ModelSection(Section):
    """The ``model`` section: a preset, with any architecture field overridden."""

    preset: str = option("tiny", "model preset: " + ", ".join(model_lib.PRESETS))
    ctx_len: int = option(512, "tokens per training sequence")
    vocab_size: int = option(0, "embedding rows (0: the tokenizer's; larger pads the embedding)")
    d_model: int = option(0, "width (0: the preset's)")
    n_layers: int = option(0, "transformer blocks (0: the preset's)")
    n_heads: int = option(0, "attention heads (0: the preset's)")
    d_ff: int = option(0, "MLP width (0: the preset's)")
    pos: str = option("rope", "positions: rope | learned")
    mlp: str = option("gelu", "MLP: gelu | swiglu")
    tie_embeddings: bool = option(True, "share the input embedding with the output projection")
    dtype: str = option("float32", "compute dtype: float32 | bfloat16")
    param_dtype: str = option("float32", "parameter dtype: float32 | bfloat16")
    attention: str = option("auto", "attention implementation: auto | xla | cudnn")

    def check(self, path: str = "model") -> list[str]:
        problems = one_of(f"{path}.preset", self.preset, tuple(sorted(model_lib.PRESETS)))
        problems += at_least(f"{path}.vocab_size", self.vocab_size, 0, " (0: the tokenizer's)")
        return problems

    def resolved(self) -> ModelSection:
        """This section with the preset's sizes filled in where a size is 0."""
        if self.preset not in model_lib.PRESETS:
            return self
        n_heads, n_layers, d_model, d_ff = model_lib.PRESETS[self.preset]
        preset = dict(n_heads=n_heads, n_layers=n_layers, d_model=d_model, d_ff=d_ff)
        return dataclasses.replace(self, **{k: getattr(self, k) or preset[k] for k in ARCH_KEYS})


_DATA_HELP = {
    "source": "embedded (stdlib sources) | text_folder | tfds",
    "name": "TFDS name for source tfds, e.g. c4/en",
    "path": "folder of .txt / .jsonl files for source text_folder",
    "train_split": "training split (TFDS slicing syntax works)",
    "validation_split": "validation split",
    "text_field": "document field (TFDS feature or JSONL key)",
    "tokenizer": "bytes | sentencepiece | hf_json",
    "tokenizer_path": "model file (sentencepiece) or tokenizer.json (hf_json)",
    "data_dir": "TFDS data dir ('': $BSJAX_DATA_DIR or ~/.cache/bsjax)",
    "cache_dir": "packed-token cache ('': $BSJAX_CACHE_DIR or ~/.cache/bsjax)",
    "validation_fraction": "share of documents held out by the hash split",
    "max_train_tokens": "cap on packed training tokens (0: whole split)",
    "max_validation_tokens": "cap on packed validation tokens (0: whole split)",
    "shuffle_seed": "seed of the example stream's per-epoch shuffle",
}


def _check_data(self, path: str = "data") -> list[str]:
    return [p if p.startswith(path) else f"{path}: {p}" for p in validate_data_config(self)]


def _data_section_class() -> type:
    """The ``data`` section, with the data package's keys, defaults and checks (nothing copied)."""
    defaults = data_config.default_data_config()
    help_of = {**_DATA_HELP, **getattr(data_config, "FIELD_HELP", {})}
    fields = [
        (key, type(value), option(value, help_of.get(key, f"data.{key}")))
        for key, value in defaults.items()
    ]
    return dataclasses.make_dataclass(
        "DataSection",
        fields,
        bases=(Section,),
        frozen=True,
        namespace={
            "check": _check_data,
            "__doc__": "The ``data`` section: keys, defaults and checks of ``bsjax.data.config``.",
            "__module__": __name__,
        },
    )


DataSection = _data_section_class()


@dataclasses.dataclass(frozen=True)
class MeshSection(Section):
    """The ``mesh`` section: a data x fsdp device mesh."""

    data: int = option(-1, "data-parallel ways (-1: the devices fsdp leaves)")
    fsdp: int = option(1, "ways parameters and optimizer state are sharded")

    def check(self, path: str = "mesh") -> list[str]:
        if self.fsdp < 1 or (self.data != -1 and self.data < 1):
            return [
                f"{path}.data={self.data}, {path}.fsdp={self.fsdp}: sizes must be >= 1 "
                "(data may be -1)"
            ]
        return []

    def device_problems(self, num_devices: int, path: str = "mesh") -> list[str]:
        """Problems of this mesh on ``num_devices`` devices (assumes ``check`` passed)."""
        if self.data == -1 and num_devices % self.fsdp:
            return [f"{path}.fsdp={self.fsdp} must divide the {num_devices} devices"]
        if self.data != -1 and self.data * self.fsdp != num_devices:
            return [
                f"{path}.data * {path}.fsdp = {self.data * self.fsdp} must equal the "
                f"{num_devices} devices"
            ]
        return []


@dataclasses.dataclass(frozen=True)
class WandbSection(Section):
    """``train.wandb``: the optional W&B tracker, fed from the same metric lines as TensorBoard."""

    project: str = option("", "W&B project ('': no W&B); WANDB_MODE=offline writes locally")
    entity: str = option("", "W&B entity (team or user; '': the default of the API key)")


@dataclasses.dataclass(frozen=True)
class TrainSection(Section):
    """The ``train`` section: stops, evaluation, checkpoints, logging, compilation."""

    max_steps: int = option(0, "stop after this many steps (0: no limit)")
    max_tokens: int = option(0, "stop after this many tokens (0: no limit)")
    target_loss: float = option(0.0, "stop when the EWA eval loss reaches it (0: off)")
    eval_schedule: str = option("every", "every | hybrid (2^i, every k, and a dense tail)")
    eval_every: int = option(100, "steps between evaluations")
    expected_steps: int = option(0, "the hybrid schedule's expected run length n")
    eval_batches: int = option(4, "validation batches per evaluation")
    eval_batch_size: int = option(16, "sequences per validation batch")
    checkpoint_every: int = option(500, "steps between checkpoints")
    keep_checkpoints: int = option(3, "checkpoints kept")
    async_checkpoint: bool = option(True, "save checkpoints in the background")
    log_every: int = option(10, "steps between train lines in metrics.jsonl")
    compile_ahead: bool = option(True, "compile every bucket in a background thread")
    compile_workers: int = option(0, "compile threads (0: a quarter of the cores, 1 to 4)")
    warm_buckets: bool = option(
        True,
        "run each compiled bucket once on a scratch state before use (one process only; "
        "holds one more train state while buckets compile)",
    )
    compile_cache_dir: str = option("", "JAX persistent compilation cache ('': the default)")
    log_example_ids: bool = option(False, "write the example ids of every step")
    tensorboard: bool = option(True, "write tensorboard/: scalars and the run's hparams")
    wandb: WandbSection = subsection(WandbSection, "Weights & Biases (off without a project)")

    def check(self, path: str = "train") -> list[str]:
        problems = []
        if self.max_steps < 0 or self.max_tokens < 0:
            problems.append(f"{path}.max_steps and {path}.max_tokens must be >= 0 (0: no limit)")
        if not (self.max_steps or self.max_tokens or self.target_loss > 0):
            problems.append(
                f"set a stop: {path}.max_steps, {path}.max_tokens or {path}.target_loss"
            )
        problems += at_least(f"{path}.target_loss", self.target_loss, 0, " (0: off)")
        problems += one_of(f"{path}.eval_schedule", self.eval_schedule, EVAL_SCHEDULES)
        if self.eval_schedule == "hybrid" and self.expected_steps <= 0:
            problems.append(f"{path}.eval_schedule='hybrid' needs {path}.expected_steps > 0")
        for key in ("eval_every", "eval_batches", "eval_batch_size", "checkpoint_every"):
            problems += at_least(f"{path}.{key}", self[key], 1)
        problems += at_least(f"{path}.keep_checkpoints", self.keep_checkpoints, 1)
        problems += at_least(f"{path}.log_every", self.log_every, 1)
        problems += at_least(f"{path}.compile_workers", self.compile_workers, 0, " (0: automatic)")
        return problems


@dataclasses.dataclass(frozen=True)
class TargetSection(Section):
    """The ``target`` section a CBS sweep adds to its runs (read back by ``bsjax.cbs.results``)."""

    ref_tokens: int = option(0, "tokens of the reference run at its target step")
    ref_batch_size: int = option(0, "batch size of the reference run")
    ref_steps: int = option(0, "step of the reference run that set the target")
    chinchilla_ratio: float = option(0.0, "tokens per parameter of the reference step")


@dataclasses.dataclass(frozen=True)
class RunConfig(Section):
    """Everything one training run reads, validated and with the model preset resolved."""

    seed: int = option(0, "seed of the parameter initialisation")
    model: ModelSection = subsection(ModelSection, "the model")
    data: DataSection = subsection(DataSection, "the corpus, tokenizer and example stream")
    optim: optim.OptimSection = subsection(optim.OptimSection, "the optimizer and LR schedule")
    batch: BatchSection = subsection(BatchSection, "batch sizes over the run and their policy")
    mesh: MeshSection = subsection(MeshSection, "the device mesh")
    train: TrainSection = subsection(TrainSection, "stops, evaluation, checkpoints, logging")
    target: TargetSection | None = subsection(
        TargetSection, "a sweep's reference-run record (sweeps only)", optional=True
    )


def model_config(run: RunConfig | Mapping[str, Any], vocab_size: int) -> model_lib.ModelConfig:
    """The architecture a run config (or a ConfigDict's ``model`` section) describes, for a
    tokenizer's vocabulary.

    Raises:
      ConfigError for a bad model section, or ``model.vocab_size`` below the vocabulary.
    """
    if isinstance(run, RunConfig):
        m = run.model.resolved()
    else:
        problems: list[str] = []
        m = parse_section(ModelSection, run["model"], "model", problems).resolved()
        if problems:
            raise ConfigError(problems)
    if m.vocab_size and m.vocab_size < vocab_size:
        raise ConfigError(
            [
                f"model.vocab_size={m.vocab_size} is smaller than the tokenizer's "
                f"vocabulary {vocab_size}; use 0 or at least {vocab_size}"
            ]
        )
    return model_lib.ModelConfig(
        vocab_size=m.vocab_size or vocab_size,
        ctx_len=m.ctx_len,
        **{k: m[k] for k in ARCH_KEYS},
        pos=m.pos,
        mlp=m.mlp,
        tie_embeddings=m.tie_embeddings,
        dtype=m.dtype,
        param_dtype=m.param_dtype,
        attention=m.attention,
    )


def _sections(config: Mapping[str, Any]) -> tuple[RunConfig, list[str]]:
    """The RunConfig and the problems of each section on its own."""
    problems: list[str] = []
    values = {k: config[k] for k in config if k not in RECORD_KEYS}
    run = parse_section(RunConfig, values, "", problems)
    return dataclasses.replace(run, model=run.model.resolved()), problems


def _combined_problems(run: RunConfig, num_devices: int | None) -> tuple[BatchPlan | None, list]:
    """Checks across sections, and the batch plan when ``num_devices`` is known and all is well."""
    problems = []
    fsdp_ok = not run.mesh.check() and (
        num_devices is None or not run.mesh.device_problems(num_devices)
    )
    if run.model.preset in model_lib.PRESETS:
        problems += model_lib.validate_model_config(
            model_config(run, vocab_size=1), fsdp=run.mesh.fsdp if fsdp_ok else 1
        )
    if num_devices is None:
        return None, problems
    problems += run.mesh.device_problems(num_devices) if not run.mesh.check() else []
    t = run.train
    problems += _warmup_problems(run)
    if t.eval_batch_size >= 1 and t.eval_batch_size % num_devices:
        problems.append(
            f"train.eval_batch_size={t.eval_batch_size} must be divisible by the "
            f"{num_devices} devices"
        )
    if not fsdp_ok:
        return None, problems
    if run.optim.check():  # reported by the optim section; check the batch rules without its bases
        problems += _batch_problems(
            validate_batch_config(run.batch, run.model.ctx_len, num_devices)
        )
        return None, problems
    try:
        plan = plan_from_config(
            run.batch,
            run.model.ctx_len,
            num_devices,
            base_b2=run.optim.b2,
            base_ewa_tau=run.optim.ewa_tau,
            lr_schedule=optim.lr_schedule_from_config(run.optim),
        )
    except BatchConfigError as err:
        problems += _batch_problems(err.problems)
        return None, problems
    return plan, problems


def _warmup_problems(run: RunConfig) -> list[str]:
    """A warmup longer than the run: the LR would never reach its peak."""
    o, t = run.optim, run.train
    problems = []
    if o.total_tokens and o.warmup_tokens > o.total_tokens:
        problems.append(
            f"optim.warmup_tokens={o.warmup_tokens} is longer than optim.total_tokens="
            f"{o.total_tokens}; the warmup must end inside the schedule"
        )
    if t.max_tokens and o.warmup_tokens > t.max_tokens:
        problems.append(
            f"optim.warmup_tokens={o.warmup_tokens} is longer than the run (train.max_tokens="
            f"{t.max_tokens}); shorten the warmup or raise the limit"
        )
    # A run with a target loss stops there; its max_steps is a cap, not its length.
    if t.max_steps and not t.max_tokens and not t.target_loss and run.batch.schedule == "constant":
        run_tokens = t.max_steps * run.batch.batch_size * run.model.ctx_len
        if o.warmup_tokens > run_tokens:
            problems.append(
                f"optim.warmup_tokens={o.warmup_tokens} is longer than the run (train.max_steps="
                f"{t.max_steps} steps of {run.batch.batch_size} x {run.model.ctx_len} = "
                f"{run_tokens} tokens); shorten the warmup or raise the limit"
            )
    return problems


def _batch_problems(problems: list[str]) -> list[str]:
    """The batching package's messages with the ``batch.`` key path in front."""
    keys = BatchSection().keys()
    out = []
    for p in problems:
        first = p.replace("=", " ").replace(":", " ").split(" ")[0]
        out.append(p if p.startswith("batch") else f"batch.{p}" if first in keys else f"batch: {p}")
    return out


def parse(config: Mapping[str, Any], num_devices: int | None = None) -> RunConfig:
    """The typed, validated RunConfig of a ConfigDict (or any nested mapping).

    With ``num_devices``, also the checks that need the device count (mesh,
    shape buckets of every batch size a policy may ask for, eval batch split).

    Raises:
      ConfigError listing every problem, each with its key path.
    """
    run, problems = _sections(config)
    problems += _combined_problems(run, num_devices)[1]
    if problems:
        raise ConfigError(problems)
    return run


def batch_plan(run: RunConfig, num_devices: int) -> BatchPlan:
    """The batch plan of a parsed run on ``num_devices`` devices.

    Raises:
      ConfigError for what only the device count shows (mesh, buckets).
    """
    plan, problems = _combined_problems(run, num_devices)
    if problems or plan is None:
        raise ConfigError(problems)
    return plan


def validate(config: Mapping[str, Any], num_devices: int) -> list[str]:
    """Every problem of a config on ``num_devices`` devices, one message each ([] when it runs)."""
    try:
        parse(config, num_devices)
    except ConfigError as err:
        return err.problems
    return []


def to_dict(run: RunConfig) -> dict[str, Any]:
    """The nested plain dict of a RunConfig (config.json); ``target`` only when set."""
    return section_to_dict(run)


def describe_fields() -> Iterator[tuple[str, Any, str]]:
    """``(dotted key, default, help)`` of every key of a run config, section by section."""
    yield from iter_fields(RunConfig)
