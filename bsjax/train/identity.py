"""A run's identity: everything that decides its trajectory, compared on every resume.

At its first start a run writes ``identity.json`` into its folder: one flat
mapping from dotted keys to JSON values (``model.d_model``, ``data.shuffle_seed``,
``optim.lr``, ``batch.schedule``, ``mesh.fsdp``, ``code.version``, ...). A resume
builds the identity of the config it was given and compares the two key by key,
before anything is compiled or written:

* a key in ``EXTENDABLE`` (the step and token limits) may change: raising a limit
  extends a run from its last checkpoint, and the change is recorded in the
  ``resume`` line of metrics.jsonl;
* a key in ``RECORDED`` (the git commit) may change with a warning, also recorded
  in the ``resume`` line: a commit that only touches documentation must not strand
  a long run, and the ledger still says which code produced which steps;
* any other difference refuses the run, naming each key with its old and new value.

What is left out on purpose: paths (a corpus or cache may move; its content
digest decides), and what only changes bookkeeping (log, checkpoint and
compile settings).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bsjax import storage
from bsjax.errors import ProblemsError

log = logging.getLogger(__name__)

IDENTITY_FILE = "identity.json"
IDENTITY_FORMAT = 1

EXTENDABLE = ("train.max_steps", "train.max_tokens")
RECORDED = ("code.git_commit",)

# Sections of the run config that decide the trajectory, copied whole.
_WHOLE_SECTIONS = ("optim", "batch")
# data.* keys that decide which examples come in which order (the corpus and
# tokenizer identities cover the content; the rest of data.* is where files are
# and how fast they are read).
_DATA_KEYS = (
    "source",
    "name",
    "train_split",
    "validation_split",
    "text_field",
    "tokenizer",
    "validation_fraction",
    "max_train_tokens",
    "max_validation_tokens",
    "shuffle_seed",
)
# Keys that locate files rather than describe their content.
_PATH_KEYS = {"path", "data_dir", "cache_dir", "tokenizer_path", "cache_file"}
# train.* keys that decide where the run stops or what it records as results.
_TRAIN_KEYS = (
    "max_steps",
    "max_tokens",
    "target_loss",
    "eval_schedule",
    "eval_every",
    "expected_steps",
    "eval_batches",
    "eval_batch_size",
)


class IdentityMismatchError(ProblemsError):
    """A resume whose config describes another run than the one in the folder."""

    heading = "this folder holds another run; nothing was changed"

    def __init__(self, workdir: str | Path, differences: list[str]):
        self.workdir = str(workdir)
        super().__init__(
            differences
            + [
                f"to train this config start it in a new folder (--workdir=NEW, add --new-run "
                f"to refuse any folder that is not empty); to continue the run in {workdir}, "
                f"use the values recorded in {identity_path(workdir)}"
            ]
        )


def _plain(value: Any) -> Any:
    """Nested dicts, lists and scalars from config objects, dataclasses and tuples."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    elif hasattr(value, "to_dict") and callable(value.to_dict):  # ml_collections.ConfigDict
        value = value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def flatten(tree: Mapping[str, Any], prefix: str = "", drop: set[str] = frozenset()) -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; keys named in ``drop`` are left out at any depth."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if key in drop:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name + ".", drop))
        else:
            flat[name] = value
    return flat


def code_version() -> dict[str, str]:
    """The package version and, when the package sits in a git checkout, its commit."""
    from bsjax import __version__

    version = {"version": __version__, "git_commit": "unknown"}
    root = Path(__file__).resolve().parents[2]
    if (root / ".git").exists():
        try:
            out = subprocess.run(
                ["git", "-C", str(root), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
            version["git_commit"] = out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return version


def run_identity(
    run_config: Any,
    model_config: Any,
    corpus_identity: Mapping[str, Any],
    mesh_shape: Mapping[str, int],
    num_processes: int,
) -> dict[str, Any]:
    """The flat identity of a run.

    ``run_config`` is the run config (a ConfigDict, a dataclass or nested
    mappings with sections seed, data, optim, batch, train); ``model_config``
    the resolved model (sizes after the tokenizer's vocabulary); ``corpus_identity``
    what the data loader reports (corpus, tokenizer, per-split packing stats);
    ``mesh_shape`` the resolved axis sizes.
    """
    config = _plain(run_config)
    identity: dict[str, Any] = {"format": IDENTITY_FORMAT, "seed": config.get("seed")}
    identity.update(flatten(_plain(model_config), "model."))
    data = config.get("data", {})
    identity.update({f"data.{k}": data.get(k) for k in _DATA_KEYS if k in data})
    corpus = _plain(corpus_identity)
    identity.update(flatten(corpus.get("corpus", {}), "corpus.", _PATH_KEYS))
    identity.update(flatten(corpus.get("tokenizer", {}), "tokenizer.", _PATH_KEYS))
    # The packed splits are the data order's shards: their sizes and dtype.
    identity.update(flatten(corpus.get("splits", {}), "data.packed.", _PATH_KEYS))
    identity["data.ctx_len"] = corpus.get("ctx_len", config.get("model", {}).get("ctx_len"))
    for section in _WHOLE_SECTIONS:
        identity.update(flatten(config.get(section, {}), f"{section}."))
    train = config.get("train", {})
    identity.update({f"train.{k}": train.get(k) for k in _TRAIN_KEYS})
    identity.update({f"mesh.{axis}": int(size) for axis, size in mesh_shape.items()})
    identity["mesh.processes"] = int(num_processes)
    identity.update({f"code.{k}": v for k, v in code_version().items()})
    return json.loads(json.dumps(identity, default=str))  # JSON-normal: tuples become lists


@dataclasses.dataclass
class Comparison:
    """The differences between a stored identity and the current one."""

    refused: list[str]  # one message per key that may not change
    extended: dict[str, list]  # key -> [old, new] for the limits
    recorded: dict[str, list]  # key -> [old, new] for keys only recorded

    @property
    def changes(self) -> dict[str, list]:
        return {**self.extended, **self.recorded}


_ABSENT = "<absent>"


def compare(stored: Mapping[str, Any], current: Mapping[str, Any]) -> Comparison:
    """Compare two identities key by key (both flat, as ``run_identity`` returns)."""
    refused, extended, recorded = [], {}, {}
    for key in sorted(set(stored) | set(current)):
        old, new = stored.get(key, _ABSENT), current.get(key, _ABSENT)
        if old == new:
            continue
        if key in EXTENDABLE:
            extended[key] = [old, new]
        elif key in RECORDED:
            recorded[key] = [old, new]
        else:
            refused.append(f"{key}: the run has {old!r}, this config {new!r}")
    return Comparison(refused, extended, recorded)


def identity_path(workdir: str | Path) -> storage.Path:
    return storage.as_path(workdir) / IDENTITY_FILE


def read_identity(workdir: str | Path) -> dict[str, Any] | None:
    """The stored identity, or None when the folder has none.

    Raises ``IdentityFileError`` when the file exists but is not a JSON object.
    """
    path = identity_path(workdir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as err:
        raise IdentityFileError(f"{path} cannot be read ({err.strerror or err})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise IdentityFileError(
            f"{path} is not valid JSON ({err.msg} at line {err.lineno}); it records what this "
            f"run is, so it is not rewritten: restore it, or start the run in a new folder"
        ) from None
    if not isinstance(data, dict):
        raise IdentityFileError(f"{path} holds {type(data).__name__}, expected a JSON object")
    return data


class IdentityFileError(ProblemsError):
    """identity.json exists but cannot be used."""


def check_resume(workdir: str | Path, current: Mapping[str, Any]) -> Comparison | None:
    """Compare the stored identity of ``workdir`` with ``current``; None if there is none.

    Raises ``IdentityMismatchError`` (nothing written) when a key that decides
    the trajectory differs. Warns for each recorded-only change.
    """
    stored = read_identity(workdir)
    if stored is None:
        return None
    comparison = compare(stored, current)
    if comparison.refused:
        raise IdentityMismatchError(workdir, comparison.refused)
    for key, (old, new) in comparison.recorded.items():
        log.warning("%s changed since the run started: %s -> %s (recorded)", key, old, new)
    return comparison


def write_identity(workdir: str | Path, identity: Mapping[str, Any]) -> None:
    """Write identity.json atomically (a rename locally, one PUT on object storage)."""
    path = identity_path(workdir)
    storage.write_text_atomic(path, json.dumps(dict(identity), indent=1, sort_keys=True) + "\n")


# Files whose presence makes a folder a run folder.
RUN_FILES = ("identity.json", "summary.json", "metrics.jsonl", "checkpoints", "config.json")
_DONE = ("target_reached", "diverged")  # no limit change continues these
_AT_LIMIT = ("max_steps", "max_tokens")


class NewRunError(ProblemsError):
    """--new-run given for a folder that is not empty."""


@dataclasses.dataclass
class Start:
    """What a start of ``bsjax train`` on a folder does.

    ``kind``: "new" (nothing there yet), "resume" (continue from the newest
    checkpoint), "extend" (a finished run whose limit was raised: continue it),
    or "finished" (nothing to do: print the stored summary, change nothing).
    """

    kind: str
    comparison: Comparison | None = None
    summary: dict[str, Any] | None = None

    @property
    def changes(self) -> dict[str, list]:
        return self.comparison.changes if self.comparison else {}


def read_summary(workdir: str | Path) -> dict[str, Any] | None:
    """summary.json as a dict, or None when absent or unreadable (then the run is resumed)."""
    try:
        data = json.loads((storage.as_path(workdir) / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _wants_more(summary: Mapping[str, Any], max_steps: int, max_tokens: int) -> bool:
    """Whether a run that stopped at a limit continues under the given limits."""
    steps, tokens = int(summary.get("steps") or 0), int(summary.get("tokens") or 0)
    return (not max_steps or steps < max_steps) and (not max_tokens or tokens < max_tokens)


def decide_start(
    workdir: str | Path,
    current: Mapping[str, Any],
    new_run: bool = False,
) -> Start:
    """Read the folder (nothing is written) and decide how this start proceeds.

    Refuses, with one message each: ``--new-run`` on a folder that is not empty;
    a folder with run files but no identity.json (written by an older bsjax, or
    damaged: its history cannot be checked); an identity that differs in a key
    other than the limits.
    """
    path = storage.as_path(workdir)
    entries = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
    if new_run and entries:
        shown = ", ".join(entries[:5]) + (" ..." if len(entries) > 5 else "")
        raise NewRunError(
            f"--new-run: {workdir} is not empty ({shown}); a new run needs a new or empty "
            f"folder (to continue the run there, leave out --new-run)"
        )
    stored = read_identity(path)
    if stored is None:
        present = [name for name in RUN_FILES if name in entries]
        if present:
            raise IdentityFileError(
                f"{workdir} holds a run ({', '.join(present)}) but no {IDENTITY_FILE}, so a "
                f"resume cannot be checked against it; start this config in a new folder"
            )
        return Start("new")
    comparison = check_resume(path, current)
    summary = read_summary(path)
    status = (summary or {}).get("status")
    max_steps = int(current.get("train.max_steps") or 0)
    max_tokens = int(current.get("train.max_tokens") or 0)
    if status in _DONE or (status in _AT_LIMIT and not _wants_more(summary, max_steps, max_tokens)):
        return Start("finished", comparison, summary)
    if status in _AT_LIMIT:
        return Start("extend", comparison, summary)
    return Start("resume", comparison, summary)


CHECKPOINT_EVENT = "checkpoint_saved"  # event lines written once a checkpoint is on disk


class HistoryLostError(ProblemsError):
    """A run with recorded history whose checkpoints are gone."""


def check_history_without_checkpoints(workdir: str | Path, checkpoint_dir: str | Path) -> None:
    """Refuse to start over a run whose history says it saved checkpoints that are gone.

    Called when the folder has no checkpoint: a run killed before its first save
    restarts from step 0 (nothing is lost), but one whose ledger records a saved
    checkpoint, or whose summary counts steps, would silently start over.
    """
    from bsjax.train.metrics import read_run_metrics

    saved = [
        l["step"]
        for l in read_run_metrics(workdir, "event")
        if l.get("event") == CHECKPOINT_EVENT and l.get("step", 0) > 0
    ]
    steps = int((read_summary(workdir) or {}).get("steps") or 0)
    if saved or steps:
        last = max(saved or [steps])
        raise HistoryLostError(
            f"{workdir} holds a run that reached step {last}, but {checkpoint_dir} has no "
            f"checkpoint to continue from; nothing was changed. Restore the checkpoints from a "
            f"copy, or start this config in a new folder (restarting from step 0 here would mix "
            f"two histories)"
        )
