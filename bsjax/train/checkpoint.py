"""Verified checkpoints with orbax: the train state plus the loop's position, saved async.

A checkpoint holds two items: ``state`` (parameters, optimizer state, EWA, step)
and ``meta`` (JSON: step, examples and tokens consumed, the example-stream
position, the data seed, the batch policy's state). The stream position is the
count of examples consumed: the stream is a pure function of the example id, so
that count is all a resume needs to continue exactly where the run stopped.

orbax checks no array values on restore, so each save also stores in ``meta``
the SHA-256 of every array of the state (``digests``, keyed by tree path) and of
the rest of ``meta`` itself (``meta_sha256``). A restore recomputes them. A
checkpoint that does not restore or does not match is corrupt: the newest valid
one is used, and the corrupt ones newer than it are quarantined (renamed into
``quarantined_checkpoints/`` beside ``checkpoints/``, kept for a post-mortem) so
the resumed run can save those steps again. When no checkpoint is valid the
run refuses (``CheckpointError``) and renames nothing. Nothing else ever moves
or deletes a checkpoint, apart from orbax's ``max_to_keep``.

With several processes the digests are of the full arrays, gathered to every
host (memory: one full copy of the state per host at each save and restore).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from bsjax import storage
from bsjax.errors import ProblemsError

log = logging.getLogger(__name__)

QUARANTINE_DIR = "quarantined_checkpoints"
DIGEST_ALGORITHM = "sha256"


class CheckpointError(ProblemsError):
    """A run that has checkpoints of which none can be used."""

    heading = "no checkpoint of this run can be restored; nothing was changed"


class CheckpointSaveError(RuntimeError):
    """A save that did not reach the disk."""


@dataclasses.dataclass
class Restored:
    """The state and meta of the newest valid checkpoint, and what was skipped to find it."""

    state: Any
    meta: dict[str, Any]
    step: int
    quarantined: list[dict[str, Any]]  # {"step", "reason", "moved_to"} per corrupt checkpoint


def _host_leaves(state: Any) -> list[tuple[str, np.ndarray]]:
    """(tree path, host array) for every array of ``state``, full arrays in every process."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        state = multihost_utils.process_allgather(state, tiled=True)
    flat = jax.tree_util.tree_flatten_with_path(jax.device_get(state))[0]
    return [(jax.tree_util.keystr(path), np.asarray(leaf)) for path, leaf in flat]


def state_digests(state: Any) -> dict[str, str]:
    """SHA-256 of each array's dtype, shape and bytes, keyed by its tree path."""
    digests = {}
    for path, leaf in _host_leaves(state):
        h = hashlib.sha256(f"{leaf.dtype.str}{leaf.shape}".encode())
        h.update(np.ascontiguousarray(leaf).tobytes())
        digests[path] = h.hexdigest()
    return digests


def _meta_digest(meta: dict[str, Any]) -> str:
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def verify(state: Any, meta: dict[str, Any]) -> list[str]:
    """Problems of a restored checkpoint against its stored digests (empty: valid)."""
    if "digests" not in meta:
        return []  # written before digests existed: restorable but unverified (warned by caller)
    problems = []
    if meta.get("meta_sha256") != _meta_digest(meta):
        problems.append("its meta does not match its digest")
    stored = meta["digests"]
    current = state_digests(state)
    bad = sorted(p for p in set(stored) | set(current) if stored.get(p) != current.get(p))
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        problems.append(f"{len(bad)} of {len(current)} arrays do not match their digests ({shown})")
    return problems


class Checkpointer:
    """Keeps the last ``keep`` checkpoints of a run under ``directory``."""

    def __init__(
        self,
        directory: str | Path,
        keep: int = 3,
        async_save: bool = True,
        on_commit: Callable[[dict[str, Any]], None] | None = None,
    ):
        """``on_commit(meta)`` is called (in the caller's thread) once a save is on disk:
        at the next ``save`` or ``wait``."""
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=async_save
        )
        self._directory = storage.absolute(directory)  # local or gs:// (bsjax.storage)
        self._manager = ocp.CheckpointManager(
            self._directory, options=options, item_names=("state", "meta")
        )
        self._on_commit = on_commit
        self._pending: list[dict[str, Any]] = []

    def _committed(self) -> None:
        """Report the saves that ``wait_until_finished`` has just seen complete."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        # orbax may log a failed finalize and return: only a step folder on disk counts.
        on_disk = set(steps_on_disk(self._directory))
        for meta in pending:
            if meta["step"] not in on_disk:
                raise CheckpointSaveError(
                    f"the checkpoint of step {meta['step']} was not written to {self._directory}"
                )
            if self._on_commit is not None:
                self._on_commit(meta)

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        """Start saving ``state`` and ``meta`` at ``step`` (returns once arrays are copied).

        A step already on disk is not saved again: a run restored from step s
        holds exactly the state of that checkpoint.
        """
        self.wait()  # orbax would wait for the previous save here too
        if step in self._manager.all_steps():
            log.debug("step %d is already checkpointed", step)
            return
        meta = json.loads(json.dumps(meta, default=_json_default))  # as a restore will read it
        meta.update(digest_algorithm=DIGEST_ALGORITHM, digests=state_digests(state))
        meta["meta_sha256"] = _meta_digest(meta)
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
        )
        self._pending.append({k: meta[k] for k in ("step", "examples", "tokens") if k in meta})

    def wait(self) -> None:
        """Block until every pending save is on disk (raises the save's error, if any)."""
        self._manager.wait_until_finished()
        self._committed()

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def _restore(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
            ),
        )
        return restored["state"], dict(restored["meta"])

    def restore_verified(self, abstract_state: Any) -> Restored | None:
        """Restore the newest valid checkpoint; None when there is none at all.

        ``abstract_state`` is a tree of ``jax.ShapeDtypeStruct`` with shardings, so
        the arrays come back placed for the current mesh (the run identity makes
        sure it is the tree the checkpoints were saved from). Raises
        ``CheckpointError`` when checkpoints exist but none is valid.
        """
        corrupt: list[tuple[int, str]] = []
        for step in reversed(self.steps()):
            try:
                state, meta = self._restore(step, abstract_state)
            except Exception as err:  # orbax and tensorstore raise many kinds for bad files
                reason = f"it does not restore ({type(err).__name__}: {_first_line(err)})"
            else:
                problems = verify(state, meta)
                if not problems:
                    if "digests" not in meta:
                        log.warning("checkpoint %d has no digests (older format): unverified", step)
                    quarantined = self._quarantine(corrupt)
                    return Restored(state, meta, step, quarantined)
                reason = "; ".join(problems)
            log.warning("checkpoint at step %d is corrupt: %s", step, reason)
            corrupt.append((step, reason))
        if corrupt:
            raise CheckpointError(
                [f"step {step}: {reason}" for step, reason in corrupt]
                + [
                    f"the checkpoints in {self._directory} are kept as they are; restore them from "
                    f"a copy, or start this config in a new folder"
                ]
            )
        return None

    def _quarantine(self, corrupt: list[tuple[int, str]]) -> list[dict[str, Any]]:
        """Rename corrupt checkpoints into ``quarantined_checkpoints/`` (process 0)."""
        if not corrupt:
            return []
        target_dir = self._directory.parent / QUARANTINE_DIR
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        moved = []
        for step, reason in corrupt:
            target = target_dir / f"{step}.{stamp}"
            if jax.process_index() == 0:
                target_dir.mkdir(exist_ok=True)
                (self._directory / str(step)).rename(target)
                (target_dir / f"{step}.{stamp}.reason.txt").write_text(reason + "\n")
                log.warning("quarantined the corrupt checkpoint of step %d in %s", step, target)
            moved.append(dict(step=step, reason=reason, moved_to=str(target)))
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("bsjax: corrupt checkpoints quarantined")
        self._manager.reload()
        return moved

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def steps_on_disk(directory: str | Path) -> list[int]:
    """Steps of the committed checkpoints under ``directory``, read without a
    CheckpointManager (which would create the folder): finalized step folders."""
    path = storage.as_path(directory)
    if not path.is_dir():
        return []
    # On object storage orbax writes a step in place and marks it done with a commit
    # file; locally it renames a temporary folder. is_checkpoint_finalized knows both.
    return sorted(
        int(p.name)
        for p in path.iterdir()
        if p.name.isdigit() and p.is_dir() and ocp.step.is_checkpoint_finalized(p)
    )


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} in checkpoint meta is not JSON-serialisable")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else ""


def abstract_like(state: Any) -> Any:
    """The ShapeDtypeStruct tree (with shardings) of a concrete state."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state
    )
