"""The training loop: batches, steps, switches, evaluation, checkpoints, stops.

One run writes the folder of docs/architecture.md: config.json, metrics.jsonl,
summary.json, checkpoints/, tensorboard/. The loop keeps one step in flight:
it dispatches step s, then reads the metrics of step s - 1, so the host never
idles the device. It synchronises only where it must: at a batch-size switch
(so the first step after it is timed exactly), at evaluations and checkpoints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import signal
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from bsjax import config as config_lib
from bsjax import console as console_lib
from bsjax import model as model_lib
from bsjax import optim, storage
from bsjax.batching import PolicyContext
from bsjax.errors import RunFailure, describe_failure
from bsjax.train import checkpoint as checkpoint_lib
from bsjax.train import executables as executables_lib
from bsjax.train import feed as feed_lib
from bsjax.train import identity as identity_lib
from bsjax.train import lock as lock_lib
from bsjax.train import mesh as mesh_lib
from bsjax.train import metrics as metrics_lib
from bsjax.train import step as step_lib

log = logging.getLogger(__name__)

CHECKPOINT_EVENT = identity_lib.CHECKPOINT_EVENT
SWITCH_STEADY_STEPS = 3  # steps of the new bucket that define its steady step time


@dataclasses.dataclass
class Position:
    """Where the run is: optimizer steps taken and examples and tokens consumed."""

    step: int = 0
    examples: int = 0
    tokens: int = 0


@dataclasses.dataclass
class PendingSwitch:
    """A switch whose stall is known once the new bucket has run a few steps."""

    line: dict[str, Any]
    first_step: int
    first_time: float = math.nan
    later_times: list[float] = dataclasses.field(default_factory=list)
    compile_wait_s: float = 0.0  # how long the first step waited for its bucket's compile


@dataclasses.dataclass
class InFlight:
    """A dispatched step whose metrics are still on the device."""

    pos: Position  # after the step
    batch_size: int
    hparams: dict[str, float]
    metrics_dev: Any


@dataclasses.dataclass
class LoopState:
    """What the loop carries from one step to the next."""

    state: Any
    pos: Position
    batch_size: int
    last_good: Position  # position of the newest state whose loss was finite
    in_flight: InFlight | None = None
    last_metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    last_ready: float = dataclasses.field(default_factory=time.perf_counter)
    pending_switch: PendingSwitch | None = None
    last_eval_step: int | None = None
    status: str | None = None
    results: dict[str, Any] = dataclasses.field(
        default_factory=lambda: dict(
            steps_to_target=None, tokens_to_target=None, examples_to_target=None
        )
    )


class PreemptionFlag:
    """Set by SIGTERM or Ctrl-C; the loop saves, writes status 'preempted' and returns.

    A second Ctrl-C raises KeyboardInterrupt at once (status 'interrupted'; the
    last checkpoint is kept). With several processes a SIGTERM may reach them at
    different steps, and the checkpoint that follows needs all of them: there
    JAX's distributed runtime takes the signal and ``reached_preemption_sync_point``
    makes every process stop at the same step.
    """

    def __init__(self):
        self._raised = False
        self._previous: dict[int, Any] = {}
        self._multi = jax.process_count() > 1

    def stop_at(self, step: int) -> bool:
        if self._multi:
            from jax.experimental import multihost_utils

            return multihost_utils.reached_preemption_sync_point(step)
        return self._raised

    def __enter__(self):
        # With several processes, a Ctrl-C on one of them cannot stop all at one step.
        for signum in () if self._multi else (signal.SIGTERM, signal.SIGINT):
            # Not in the main thread: no handler, so no preemption support.
            with contextlib.suppress(ValueError):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        if signum == signal.SIGINT and self._raised:
            raise KeyboardInterrupt
        self._raised = True
        log.warning(
            "%s: saving a checkpoint and stopping after this step%s",
            signal.Signals(signum).name,
            " (Ctrl-C again stops at once)" if signum == signal.SIGINT else "",
        )

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


def _eval_steps(config) -> set[int] | None:
    t = config.train
    if t.eval_schedule == "hybrid":
        from bsjax.train.eval_schedule import eval_steps

        return set(eval_steps(t.expected_steps, every=t.eval_every, max_steps=t.max_steps or None))
    return None


def _load_corpus_once(data_lib, data_cfg, ctx_len: int):
    """Process 0 builds the data set and packed cache; the others then read them."""
    if jax.process_count() == 1:
        return data_lib.load(data_cfg, ctx_len)
    from jax.experimental import multihost_utils

    corpus = data_lib.load(data_cfg, ctx_len) if jax.process_index() == 0 else None
    multihost_utils.sync_global_devices("bsjax: corpus built")
    return corpus if corpus is not None else data_lib.load(data_cfg, ctx_len)


def _params_sha256(state) -> str:
    import hashlib

    params = state["params"]
    if jax.process_count() > 1:  # arrays span other processes' devices: gather them
        from jax.experimental import multihost_utils

        params = multihost_utils.process_allgather(params, tiled=True)
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(jax.device_get(params)):
        digest.update(np.ascontiguousarray(leaf).tobytes())
    return digest.hexdigest()


class Trainer:
    """One training run in ``workdir``: ``Trainer(config, workdir).run(start)``.

    Construction only reads (the corpus and its caches, which live outside the
    run folder, may be built): everything that can refuse the run is checked
    there, before the folder is touched. ``run`` takes the folder's lock,
    restores, and only then writes.
    """

    def __init__(self, config: config_lib.RunConfig, workdir: str | Path):
        self.plan = config_lib.batch_plan(config, jax.device_count())
        self.config = config
        self.workdir = storage.as_path(workdir, "--workdir")
        self.is_main = jax.process_index() == 0
        self.clock = metrics_lib.Stopwatch()
        t = config.train
        if t.log_example_ids and storage.is_remote(self.workdir):
            raise config_lib.ConfigError(
                "train.log_example_ids writes a local audit file per process; it needs a local "
                f"--workdir (got {workdir}); set it to False for an object-storage run"
            )

        from bsjax import data as data_lib  # TFDS/TensorFlow live behind this import

        self.compile_cache = executables_lib.enable_compilation_cache(t.compile_cache_dir)
        self.mesh = mesh_lib.make_mesh(config.mesh.data, config.mesh.fsdp)
        self.ctx_len = config.model.ctx_len
        self.seq_len = self.ctx_len + 1
        self.corpus = _load_corpus_once(data_lib, config.data, self.ctx_len)
        self.model_cfg = config_lib.model_config(config, self.corpus.vocab_size)
        # Raises DataError now when the validation split is too small, not after the first write.
        self.eval_rows_NMT = self.corpus.validation.validation_batches(
            t.eval_batches, t.eval_batch_size
        )
        self.lr_schedule = optim.lr_schedule_from_config(config.optim)
        self.policy = self.plan.policy
        self.counts = model_lib.count_params(self.model_cfg)
        self.fns = step_lib.build(self.model_cfg, config.optim, self.mesh)
        self.identity = identity_lib.run_identity(
            config_lib.to_dict(config),
            self.model_cfg,
            self.corpus.identity,
            dict(self.mesh.shape),
            jax.process_count(),
        )
        self.eval_steps = _eval_steps(config)
        self.compile_s = 0.0
        self.last_saved_step: int | None = None
        self.committed = Position()  # the newest checkpoint known to be on disk
        self.metrics: metrics_lib.MetricsLog | None = None
        self.checkpointer: checkpoint_lib.Checkpointer | None = None
        self.executables: executables_lib.Executables | None = None
        self.feeder: feed_lib.BatchFeeder | None = None
        self.lock: lock_lib.RunLock | None = None
        self.console = console_lib.console() if self.is_main else None
        self._bar: console_lib.Progress | None = None

    # ----------------------------------------------------------------- set-up
    def _open_checkpoints(self) -> checkpoint_lib.Restored | None:
        """The newest valid checkpoint, or None for a run that has none yet.

        Refuses (nothing written) when the run's history records steps whose
        checkpoints are gone, or when no checkpoint on disk is valid.
        """
        directory = self.workdir / "checkpoints"
        if not checkpoint_lib.steps_on_disk(directory):
            identity_lib.check_history_without_checkpoints(self.workdir, directory)
        t = self.config.train
        self.checkpointer = checkpoint_lib.Checkpointer(
            directory,
            keep=t.keep_checkpoints,
            async_save=t.async_checkpoint,
            on_commit=self._on_commit,
        )
        return self.checkpointer.restore_verified(self.fns.abstract_state)

    def _on_commit(self, meta: dict[str, Any]) -> None:
        pos = Position(int(meta["step"]), int(meta["examples"]), int(meta["tokens"]))
        self.committed = pos
        self.metrics.write("event", pos.step, pos.examples, pos.tokens, event=CHECKPOINT_EVENT)

    def _restore_or_init(
        self, restored: checkpoint_lib.Restored | None
    ) -> tuple[Any, Position, int]:
        if restored is None:
            state = self.fns.init(jax.random.key(self.config.seed))
            return state, Position(), self.policy.initial_batch_size()
        meta = restored.meta
        if meta.get("policy") is not None:
            self.policy.load_state_dict(meta["policy"])
        pos = Position(
            step=int(meta["step"]), examples=int(meta["examples"]), tokens=int(meta["tokens"])
        )
        self.committed = pos
        self.last_saved_step = pos.step
        return restored.state, pos, int(meta["batch_size"])

    def _write_start(self, start: identity_lib.Start, restored, pos: Position) -> None:
        """identity.json, config.json, the ``resume`` line and any quarantine events."""
        if self.is_main:
            if start.kind == "new" or start.changes:
                identity_lib.write_identity(self.workdir, self.identity)
            resolved = config_lib.to_dict(self.config)
            resolved["corpus"] = self.corpus.identity
            resolved["model_params"] = self.counts
            resolved["compile_cache_dir"] = str(self.compile_cache) if self.compile_cache else "off"
            metrics_lib.write_json_atomic(self.workdir / "config.json", resolved)
        from bsjax.train.trackers import flat_hparams

        t = self.config.train
        self.metrics = metrics_lib.MetricsLog(
            self.workdir,
            enabled=self.is_main,
            tensorboard=t.tensorboard,
            wandb_project=t.wandb.project,
            wandb_entity=t.wandb.entity,
            hparams=flat_hparams(config_lib.to_dict(self.config)),
        )
        kind = start.kind if restored is not None or start.kind == "new" else "restart"
        self.metrics.write(
            "resume",
            pos.step,
            pos.examples,
            pos.tokens,
            start=kind,
            checkpoint_step=restored.step if restored is not None else None,
            changes=start.changes,
        )
        for q in restored.quarantined if restored is not None else []:
            self.metrics.write(
                "event",
                pos.step,
                pos.examples,
                pos.tokens,
                event="checkpoint_quarantined",
                checkpoint_step=q["step"],
                reason=q["reason"],
                moved_to=q["moved_to"],
            )
        if restored is None and start.kind != "new":
            log.warning("the run had no checkpoint yet: it starts again from step 0")
        if restored is not None:
            log.info(
                "%s from the checkpoint of step %d (%d examples)",
                "extending" if start.kind == "extend" else "resuming",
                pos.step,
                pos.examples,
            )

    def _compile_order(self, batch_size: int) -> list[tuple[int, int]]:
        """The bucket in use first, then the schedule's switches in order, then the rest."""
        sizes = [batch_size] + [p.batch_size for p in self.plan.switch_points()]
        sizes += self.plan.available_sizes()
        seen, order = set(), []
        for B in sizes:
            if B in self.plan.buckets and B not in seen:
                seen.add(B)
                bucket = self.plan.bucket(B)
                order.append((bucket.K, bucket.M))
        return order

    def _compile_eval(self, placed) -> tuple[Any, float]:
        start = time.perf_counter()
        compiled = self.fns.eval_step.lower(self.fns.abstract_state["params"], placed).compile()
        return compiled, time.perf_counter() - start

    def _log_compile(self, what: str, seconds: float, pos: Position, **extra):
        self.compile_s += seconds
        shape = f" K={extra['K']} M={extra['M']}" if "K" in extra else ""
        self._show(f"compiled {what}{shape} in {seconds:.1f}s")
        self.metrics.write(
            "compile",
            pos.step,
            pos.examples,
            pos.tokens,
            executable=what,
            seconds=round(seconds, 4),
            **extra,
        )

    def _drain_compiles(self, pos: Position):
        for (K, M), seconds in self.executables.drain_finished():
            self._log_compile("train_step", seconds, pos, K=K, M=M, batch_size=K * M)
        if self._eval_future.done():
            self._eval_ready(pos)

    def _eval_ready(self, pos: Position) -> None:
        """Take the eval executable from its compile (waiting if needed) and log the compile."""
        if self._eval_exe is None:
            self._eval_exe, seconds = self._eval_future.result()
            self._log_compile("eval", seconds, pos)

    def _hparams(self, batch_size: int, tokens: int) -> dict[str, float]:
        coupled = self.plan.coupling.hparams_for(batch_size)
        o = self.config.optim
        override = self.policy.lr_override(tokens)  # seesaw sets the LR itself
        lr = override if override is not None else self.lr_schedule(tokens) * coupled["lr_scale"]
        return dict(
            lr=lr,
            b2=o.b2 if coupled["b2"] is None else coupled["b2"],
            ewa_tau=o.ewa_tau if coupled["ewa_tau"] is None else coupled["ewa_tau"],
        )

    def _expected_next_size(self, pos: Position, batch_size: int) -> int:
        """The batch size the next step will most likely use, for prefetching its batch."""
        schedule = self.policy.planned_schedule()
        if schedule is None:
            return batch_size
        return self.plan.resolve(schedule.batch_size_at(pos.tokens))

    def _should_eval(self, step: int) -> bool:
        if self.eval_steps is not None:
            return step in self.eval_steps
        return step % self.config.train.eval_every == 0

    def _save(self, state, pos: Position, batch_size: int):
        meta = dict(
            step=pos.step,
            examples=pos.examples,
            tokens=pos.tokens,
            batch_size=batch_size,
            stream_offset=pos.examples,
            data_seed=self.config.data.shuffle_seed,
            seed=self.config.seed,
            policy=self.policy.state_dict(),
        )
        if self.lock is not None:  # a run that lost its folder to another must not save in it
            self.lock.check()
        self.metrics.flush()  # the ledger up to this step is durable before its checkpoint
        self.checkpointer.save(pos.step, state, meta)
        self.last_saved_step = pos.step

    def _show(self, text: str) -> None:
        """One line on the console (process 0 only), above the progress bar."""
        if self.console is not None:
            self.console.line(text)

    def _show_progress(self, pos: Position, batch_size: int, loss: float, step_time: float):
        if self._bar is None:
            return
        tokens_per_s = batch_size * self.ctx_len / max(step_time, 1e-9)
        self._bar.update(
            pos.step,
            f"B={batch_size}  loss {loss:.4f}  {console_lib.human_count(tokens_per_s)} tok/s",
        )

    def _write_switch(self, pending: PendingSwitch) -> None:
        """One ``switch`` line: the sizes, the reason, and the stall of the first new step.

        The stall is the wall time of the first step after the switch minus the
        steady step time of the new bucket (the median of the steps after it; NaN
        when another switch or the end of the run came first).
        """
        line = dict(pending.line)
        steady = statistics.median(pending.later_times) if pending.later_times else math.nan
        line.update(
            first_step_s=round(pending.first_time, 5),
            steady_step_s=round(steady, 5),
            stall_s=round(pending.first_time - steady, 5),
            stall_ratio=round(pending.first_time / steady, 4) if steady else math.nan,
            compile_wait_s=round(pending.compile_wait_s, 5),
        )
        self._show(
            f"switch at step {line['step']}: B {line['old_batch_size']} -> "
            f"{line['new_batch_size']} (K x M {line['old_K']}x{line['old_M']} -> "
            f"{line['new_K']}x{line['new_M']}), {line['reason']}, first step "
            f"{line['stall_ratio']:.2f}x a steady one"
            + (
                f" ({line['compile_wait_s']:.2f}s of it waiting for the bucket's compile: the "
                "switch came before compile-ahead had finished)"
                if line["compile_wait_s"] > 0.01
                else ""
            )
        )
        self.metrics.write(
            "switch", line.pop("step"), line.pop("examples"), line.pop("tokens"), **line
        )

    def _write_summary(self, status: str, pos: Position, extra: dict[str, Any]):
        if not self.is_main:
            return
        summary = dict(
            status=status,
            steps=pos.step,
            examples=pos.examples,
            tokens=pos.tokens,
            batch_size=self.policy.initial_batch_size(),
            model_params=self.counts["non_embedding"],
            model_params_total=self.counts["total"],
            ctx_len=self.ctx_len,
            target_loss=self.config.train.target_loss or None,
            wall_s=round(self.clock(), 3),
            compile_s=round(self.compile_s, 3),
            corpus=self.corpus.identity,
        )
        summary.update(extra)
        summary["policy"] = dict(name=self.policy.kind, **self.policy.summary())
        metrics_lib.write_json_atomic(self.workdir / "summary.json", summary)

    # ------------------------------------------------------------------- loop
    def run(self, start: identity_lib.Start) -> dict[str, Any]:
        """Take the folder's lock, restore or init, train until a stop; return the summary.

        Refusals (``ProblemsError``) leave the folder as it was. A failure once
        writing has begun writes status 'failed' with the reason and the last
        checkpoint on disk, and raises ``RunFailure``; a second Ctrl-C writes
        'interrupted' and raises KeyboardInterrupt.
        """
        created = not self.workdir.exists()
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._take_lock()
            with jax.set_mesh(self.mesh):
                restored = self._open_checkpoints()
        except BaseException:
            self._release(created)
            raise
        try:
            with jax.set_mesh(self.mesh), PreemptionFlag() as preempt:
                state, pos, batch_size = self._restore_or_init(restored)
                self._write_start(start, restored, pos)
                return self._run(preempt, LoopState(state, pos, batch_size, last_good=pos))
        except lock_lib.LockLostError as err:
            raise RunFailure(str(err)) from err  # the folder is another run's now: write nothing
        except KeyboardInterrupt:
            self._write_stop("interrupted", "stopped by a second Ctrl-C")
            raise
        except Exception as err:
            reason = describe_failure(err)
            log.debug("the run failed", exc_info=True)
            self._write_stop("failed", reason)
            raise RunFailure(reason) from err
        finally:
            self._close()
            self._release(created=False)

    def _take_lock(self) -> None:
        """Process 0 takes the folder's lock; every process refuses if it could not."""
        refusal = None
        if self.is_main:
            self.lock = lock_lib.RunLock(str(self.workdir))
            try:
                self.lock.acquire()
            except lock_lib.WorkdirBusyError as err:
                self.lock, refusal = None, err
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            refused = multihost_utils.broadcast_one_to_all(np.int32(refusal is not None))
            if refused and refusal is None:
                refusal = lock_lib.WorkdirBusyError(
                    f"{self.workdir} is in use by another run (process 0 says which)"
                )
        if refusal is not None:
            raise refusal

    def _release(self, created: bool) -> None:
        """Give the lock back; remove the folder if this start created it and left it empty."""
        if self.lock is not None:
            self.lock.release()
        if created and self.is_main and self.workdir.exists() and not any(self.workdir.iterdir()):
            self.workdir.rmdir()

    def _close(self) -> None:
        """Stop the background work and flush the records; a failure here is only logged."""
        if self._bar is not None:
            self._bar.close()
        for part in (self.executables, self.feeder, self.checkpointer, self.metrics):
            if part is None:
                continue
            try:
                part.close()
            except Exception as err:  # the run's own outcome is already decided and written
                log.warning("closing %s failed: %s", type(part).__name__, describe_failure(err))

    def _write_stop(self, status: str, reason: str) -> None:
        """The summary of a run that stopped abnormally: its status, why, and the newest
        checkpoint on disk (where a rerun continues). The reason is raised, not logged."""
        if self.checkpointer is not None:
            try:
                self.checkpointer.wait()  # a save that did finish counts
            except Exception as err:
                log.warning("the last checkpoint save failed: %s", describe_failure(err))
        pos = self.committed
        try:
            if self.metrics is not None:
                self.metrics.write(
                    "event", pos.step, pos.examples, pos.tokens, event="stopped", status=status
                )
        except Exception as err:
            log.warning("could not append to metrics.jsonl: %s", describe_failure(err))
        try:
            self._write_summary(status, pos, dict(reason=reason))
        except Exception as err:
            log.error("could not write summary.json either: %s", describe_failure(err))

    def _run(self, preempt: PreemptionFlag, run: LoopState) -> dict[str, Any]:
        self._start(run)
        while True:
            run.status = self._limit_reached(run.pos, preempt)
            if run.status or not self._decide(run):
                break
            self._step(run)
            if run.status:
                break
            self._maybe_eval_and_save(run)
            if run.status:
                break
        return self._finish(run)

    # --------------------------------------------------------- loop phases
    def _start(self, run: LoopState) -> None:
        """The 'running' summary, compiles, eval batches, the feeder, the probe hook."""
        t = self.config.train
        self._write_summary("running", run.pos, {})
        self.executables = executables_lib.Executables(
            self.fns,
            self.seq_len,
            background=t.compile_ahead,
            workers=t.compile_workers,
            # A warm-up thread's collectives could interleave differently on each process.
            warm=t.warm_buckets and jax.process_count() == 1,
        )
        # The first bucket compiles first and unwarmed (its first real step is the warm-up),
        # then the eval step (first needed at the first evaluation), then the other buckets.
        first_bucket, *other_buckets = self._compile_order(run.batch_size)
        self.executables.submit([first_bucket], warm=False)
        self._eval_data = feed_lib.place_eval_batches(self.eval_rows_NMT, self.mesh)
        self._eval_exe = None
        self._eval_future = self.executables.background(self._compile_eval, self._eval_data)
        self.executables.submit(other_buckets)
        id_log = (
            str(self.workdir / f"example_ids.p{jax.process_index()}.jsonl")
            if t.log_example_ids
            else None
        )
        self.feeder = feed_lib.BatchFeeder(self.corpus.train.read, self.seq_len, self.mesh, id_log)
        # The first batch (and its epoch's shuffled order) is built while the executables load.
        first = self.plan.bucket(run.batch_size)
        self.feeder.prefetch(run.pos.examples, first.K, first.M)
        self.prober = None
        if self.policy.wants_prober:
            from bsjax.train.probe import BranchProber

            self.prober = BranchProber(
                self.plan,
                self.executables,
                self.feeder.assemble,
                self._hparams,
                self._eval_loss,
                self.ctx_len,
            )
            self.policy.attach_prober(self.prober)
        if self.console is not None:
            self._bar = self.console.progress("train", total=t.max_steps or None, unit="steps")
            self._bar.update(run.pos.step)

    def _eval_loss(self, params) -> float:
        return float(self._eval_exe(params, self._eval_data))

    def _limit_reached(self, pos: Position, preempt: PreemptionFlag) -> str | None:
        """The stop that needs no metrics of the step in flight, if one is reached."""
        t = self.config.train
        if t.max_steps and pos.step >= t.max_steps:
            return "max_steps"
        if t.max_tokens and pos.tokens >= t.max_tokens:
            return "max_tokens"
        if preempt.stop_at(pos.step):
            return "preempted"
        return None

    def _decide(self, run: LoopState) -> bool:
        """Ask the policy for this step's size and switch to it; False if a read step diverged."""
        pos = run.pos
        ctx = PolicyContext(
            step=pos.step,
            tokens=pos.tokens,
            batch_size=run.batch_size,
            metrics=run.last_metrics,
            examples=pos.examples,
            bucket=self.plan.bucket(run.batch_size),
        )
        probing = self.prober is not None and self.policy.is_decision_point(ctx)
        if probing:
            if not self._read_in_flight(run):
                return False
            self._eval_ready(pos)  # the probe's branches are scored by eval loss
            self.prober.state, self.prober.examples = run.state, pos.examples
            self.prober.tokens = pos.tokens
        decision = self.policy.maybe_decide(ctx)
        if self.prober is not None:
            self.prober.state = None
        if decision is None:
            return True
        new_size = self.plan.resolve(decision.batch_size)
        if new_size == run.batch_size:
            return True
        # The step in flight keeps running: draining it here would idle the device for a
        # host round trip at every switch. Its read times the first step of the new bucket.
        old, new = self.plan.bucket(run.batch_size), self.plan.bucket(new_size)
        if run.pending_switch is not None:  # superseded before its steady time was known
            self._write_switch(run.pending_switch)
        run.pending_switch = PendingSwitch(
            line=dict(
                step=pos.step,
                examples=pos.examples,
                tokens=pos.tokens,
                old_batch_size=run.batch_size,
                new_batch_size=new_size,
                old_K=old.K,
                old_M=old.M,
                new_K=new.K,
                new_M=new.M,
                reason=decision.reason,
                measured={k: float(v) for k, v in decision.measured.items()},
            ),
            first_step=pos.step + 1,
        )
        run.batch_size = new_size
        return True

    def _step(self, run: LoopState) -> None:
        """Dispatch one step, read the previous one while it runs, queue the next batch."""
        pos, batch_size = run.pos, run.batch_size
        bucket = self.plan.bucket(batch_size)
        pending = run.pending_switch
        if (
            pending is not None
            and pending.first_step == pos.step + 1
            and not self.executables.is_ready(bucket.K, bucket.M)
        ):
            # The new bucket is still compiling. Read the step in flight first, so that the
            # wait is timed as part of the first new step (the switch's stall), not the last
            # old one; the device would be idle during the wait anyway.
            if not self._read_in_flight(run):
                return
            wait_start = time.perf_counter()
            executable = self.executables.get(bucket.K, bucket.M)
            pending.compile_wait_s = time.perf_counter() - wait_start
        else:
            executable = self.executables.get(bucket.K, bucket.M)
        hp = self._hparams(batch_size, pos.tokens)
        batch_KMT = self.feeder.get(pos.step, pos.examples, bucket.K, bucket.M)
        run.state, metrics_dev = executable(run.state, batch_KMT, step_lib.hparams_array(**hp))
        next_pos = Position(
            pos.step + 1, pos.examples + batch_size, pos.tokens + batch_size * self.ctx_len
        )
        diverged = not self._read_in_flight(run)
        run.pos = next_pos
        if diverged:
            return
        run.in_flight = InFlight(next_pos, batch_size, hp, metrics_dev)
        upcoming = self._expected_next_size(next_pos, batch_size)
        if upcoming in self.plan.buckets:
            nb = self.plan.bucket(upcoming)
            self.feeder.prefetch(next_pos.examples, nb.K, nb.M)
        self._drain_compiles(next_pos)

    def _maybe_eval_and_save(self, run: LoopState) -> None:
        """Evaluate and checkpoint where the schedule says; the target-loss stop."""
        t, pos = self.config.train, run.pos
        need_eval = self._should_eval(pos.step)
        need_save = pos.step % t.checkpoint_every == 0
        if (need_eval or need_save) and not self._read_in_flight(run):
            return
        if need_eval:
            ewa_loss = self._evaluate(run)
            if t.target_loss > 0 and ewa_loss <= t.target_loss:
                run.results.update(
                    steps_to_target=pos.step,
                    tokens_to_target=pos.tokens,
                    examples_to_target=pos.examples,
                )
                run.status = "target_reached"
        if need_save or run.status == "target_reached":
            self._save(run.state, pos, run.batch_size)

    def _read_in_flight(self, run: LoopState) -> bool:
        """Read the metrics of the step in flight and log them; False (status 'diverged')
        if its loss or gradient norm is not finite. The one divergence check."""
        if run.in_flight is None:
            return True
        done, run.in_flight = run.in_flight, None
        metrics = {k: float(v) for k, v in jax.device_get(done.metrics_dev).items()}
        now = time.perf_counter()
        step_time, run.last_ready = now - run.last_ready, now
        run.last_metrics = metrics
        self._time_switch(run, done.pos.step, step_time)
        if not (math.isfinite(metrics["loss"]) and math.isfinite(metrics["grad_norm"])):
            self.metrics.write(
                "event",
                done.pos.step,
                done.pos.examples,
                done.pos.tokens,
                event="diverged",
                loss=metrics["loss"],
                grad_norm=metrics["grad_norm"],
            )
            run.status = "diverged"
            return False
        run.last_good = done.pos
        bucket = self.plan.bucket(done.batch_size)
        metrics.update(
            step=done.pos.step,
            batch_size=done.batch_size,
            micro_batch_size=bucket.M,
            accum_steps=bucket.K,
            lr=done.hparams["lr"],
        )
        if done.pos.step % self.config.train.log_every == 0 or done.pos.step == 1:
            self._write_train_line(done, metrics, step_time)
        return True

    def _time_switch(self, run: LoopState, step: int, step_time: float) -> None:
        """Feed the step times after a switch to its pending line; write it once known."""
        pending = run.pending_switch
        if pending is None:
            return
        if step == pending.first_step:
            pending.first_time = step_time
        elif step > pending.first_step:
            pending.later_times.append(step_time)
            if len(pending.later_times) >= SWITCH_STEADY_STEPS:
                self._write_switch(pending)
                run.pending_switch = None

    def _write_train_line(self, done: InFlight, metrics: dict[str, float], step_time: float):
        B, hp = done.batch_size, done.hparams
        self.metrics.write(
            "train",
            done.pos.step,
            done.pos.examples,
            done.pos.tokens,
            batch_size=B,
            lr=hp["lr"],
            b2=hp["b2"],
            ewa_tau=hp["ewa_tau"],
            loss=metrics["loss"],
            grad_norm=metrics["grad_norm"],
            grad_sq=metrics["grad_sq"],
            micro_grad_sq=metrics["micro_grad_sq"],
            step_time_s=round(step_time, 5),
            tokens_per_s=round(B * self.ctx_len / max(step_time, 1e-9), 1),
            **self.policy.metrics_to_log(),
        )
        self._show_progress(done.pos, B, metrics["loss"], step_time)

    def _evaluate(self, run: LoopState) -> float:
        """Eval loss of the raw and the EWA parameters on the fixed validation batches;
        returns the EWA loss."""
        pos = run.pos
        self._eval_ready(pos)
        loss = self._eval_loss(run.state["params"])
        ewa_loss = self._eval_loss(run.state["ewa"])
        self.metrics.write(
            "eval",
            pos.step,
            pos.examples,
            pos.tokens,
            eval_loss=loss,
            ewa_eval_loss=ewa_loss,
            batch_size=run.batch_size,
        )
        target = self.config.train.target_loss
        self._show(
            f"eval at step {pos.step} ({console_lib.human_count(pos.tokens)} tokens): loss "
            f"{loss:.4f}  EWA {ewa_loss:.4f}" + (f"  (target {target:g})" if target > 0 else "")
        )
        run.results.update(final_eval_loss=loss, final_ewa_eval_loss=ewa_loss)
        run.last_metrics.update(eval_loss=loss, ewa_eval_loss=ewa_loss)
        run.last_eval_step = pos.step
        return ewa_loss

    def _target_crossing(self) -> dict[str, Any] | None:
        """The crossing interpolated in log-steps between the evaluations that bracket the
        target (``steps_to_target`` is the first evaluation at or below it: the stop)."""
        from bsjax.train.eval_schedule import target_crossing

        self.metrics.flush()
        evals = metrics_lib.read_run_metrics(self.workdir, "eval")
        crossing = target_crossing(evals, self.config.train.target_loss)
        return None if crossing is None else dataclasses.asdict(crossing)

    def _finish(self, run: LoopState) -> dict[str, Any]:
        """Read the last step, final eval and save, the 'stopped' event and the summary."""
        if run.status != "diverged":
            self._read_in_flight(run)
        status, pos = run.status, run.pos
        if run.pending_switch is not None:
            self._write_switch(run.pending_switch)
        if status in ("max_steps", "max_tokens") and run.last_eval_step != pos.step and pos.step:
            self._evaluate(run)  # the final losses describe the final state
        extra = run.results
        if status == "target_reached" and self.is_main:
            extra["target_crossing"] = self._target_crossing()
        if status == "diverged":
            pos = run.last_good  # the checkpoints on disk hold only finite states
        else:
            if self.last_saved_step != pos.step:
                self._save(run.state, pos, run.batch_size)
            extra["final_train_loss"] = run.last_metrics.get("loss")
            extra["params_sha256"] = _params_sha256(run.state)
        self._drain_compiles(pos)
        self.checkpointer.wait()
        self.metrics.write(
            "event", pos.step, pos.examples, pos.tokens, event="stopped", status=status
        )
        self._write_summary(status, pos, extra)
        if self._bar is not None:
            self._bar.update(pos.step, self._bar.extra)
        if self.is_main:
            return json.loads((self.workdir / "summary.json").read_text())
        return dict(
            status=status, steps=pos.step, examples=pos.examples, tokens=pos.tokens, **extra
        )


def train(
    config: config_lib.RunConfig | Mapping[str, Any],
    workdir: str | Path,
    new_run: bool = False,
) -> dict[str, Any]:
    """Train ``config`` (a RunConfig, or a ConfigDict parsed here) in ``workdir``.

    A folder that holds this run continues it from its newest valid checkpoint
    (or extends it, when a step or token limit was raised); a finished run is
    left as it is and its summary returned. ``new_run=True`` refuses a folder
    that is not empty. Every refusal is a ``ProblemsError`` raised before the
    folder is changed; a failure after that is a ``RunFailure``, with status
    'failed' and its reason in summary.json.
    """
    if not isinstance(config, config_lib.RunConfig):
        config = config_lib.parse(config, jax.device_count())
    lock_lib.check_workdir(workdir)
    trainer = Trainer(config, workdir)
    start = identity_lib.decide_start(trainer.workdir, trainer.identity, new_run=new_run)
    if start.kind == "finished":
        summary = start.summary or {}
        log.info(
            "%s already finished (status %s at step %s); nothing to do. Raise "
            "train.max_steps or train.max_tokens to extend it, or use a new folder.",
            workdir,
            summary.get("status"),
            summary.get("steps"),
        )
        return summary
    return trainer.run(start)
