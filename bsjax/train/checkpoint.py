"""Checkpoints with orbax: the train state plus the loop's position, saved async.

A checkpoint holds two items: ``state`` (parameters, optimizer state, EWA, step)
and ``meta`` (JSON: step, examples and tokens consumed, the example-stream
position, the data seed, the batch policy's state). The stream position is the
count of examples consumed: the stream is a pure function of the example id, so
that count is all a resume needs to continue exactly where the run stopped.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


class Checkpointer:
    """Keeps the last ``keep`` checkpoints of a run under ``directory``."""

    def __init__(self, directory: str | Path, keep: int = 3, async_save: bool = True):
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=async_save
        )
        self._directory = Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            self._directory, options=options, item_names=("state", "meta")
        )

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        """Start saving ``state`` and ``meta`` at ``step`` (returns once arrays are copied)."""
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
        )

    def wait(self) -> None:
        """Block until every pending save is on disk."""
        self._manager.wait_until_finished()

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def restore_latest(self, abstract_state: Any) -> tuple[Any, dict[str, Any]] | None:
        """Restore the newest checkpoint that restores; warn for each newer one that did not.

        ``abstract_state`` is a tree of ``jax.ShapeDtypeStruct`` with shardings, so
        the arrays come back placed for the current mesh.
        """
        failed = []
        for step in reversed(self.steps()):
            try:
                restored = self._manager.restore(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
                    ),
                )
            except Exception as err:
                log.warning(
                    "checkpoint at step %d did not restore (%s: %s); trying an older one",
                    step,
                    type(err).__name__,
                    err,
                )
                failed.append(step)
                continue
            self._set_aside(failed)
            return restored["state"], dict(restored["meta"])
        self._set_aside(failed)
        return None

    def _set_aside(self, steps: list[int]) -> None:
        """Move unrestorable checkpoints to ``unrestorable/`` beside the checkpoints (kept for a
        post-mortem), so the resumed run can save those steps again."""
        if not steps:
            return
        if jax.process_index() == 0:
            aside = self._directory.parent / "unrestorable_checkpoints"
            aside.mkdir(exist_ok=True)
            for step in steps:
                target = aside / f"{step}.{int(time.time())}"
                shutil.move(str(self._directory / str(step)), str(target))
                log.warning("moved the unrestorable checkpoint of step %d to %s", step, target)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("bsjax: unrestorable checkpoints moved")
        self._manager.reload()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def abstract_like(state: Any) -> Any:
    """The ShapeDtypeStruct tree (with shardings) of a concrete state."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state
    )
