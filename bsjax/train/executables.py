"""Ahead-of-time compiled train steps, one per shape bucket, and the persistent cache.

Every bucket a batch plan can reach is lowered and compiled before it is
needed, in a background thread, so a batch-size switch runs an executable that
already exists. With JAX's persistent compilation cache on, a restart or a
second run of the same shapes loads executables from disk instead of compiling.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from bsjax.train import mesh as mesh_lib
from bsjax.train import step as step_lib

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "bsjax" / "jax_compilation_cache"


def enable_compilation_cache(cache_dir: str | os.PathLike | None) -> Path | None:
    """Turn on JAX's persistent compilation cache (``""`` or None: the default folder).

    ``"off"`` leaves it off. Entries are kept whatever their compile time, so
    even the small CPU executables of tests and demos are reused.
    """
    if cache_dir == "off":
        return None
    path = Path(cache_dir) if cache_dir else DEFAULT_CACHE_DIR
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


class Executables:
    """Compiled train steps keyed by bucket (K, M), compiled ahead in the background."""

    def __init__(
        self,
        fns: step_lib.StepFunctions,
        seq_len: int,
        background: bool = True,
        workers: int = 0,
        warm: bool = False,
    ):
        """``warm``: run each executable once on a scratch state after compiling it, so the
        first real step of a bucket does not pay the runtime's first-execution set-up
        (buffer and thread-pool allocation for new shapes). The scratch state is one more
        train state in device memory while buckets are still compiling, freed after."""
        self._fns = fns
        self._seq_len = seq_len
        self._warm = warm
        self._scratch = None  # the scratch train state the warm-up runs donate and return
        self._unwarmed = 0  # submitted buckets not yet compiled and warmed
        self._futures: dict[tuple[int, int], concurrent.futures.Future] = {}
        # XLA compiles outside the GIL, so a host with cores to spare compiles buckets in
        # parallel; on a small host one thread keeps the training step its cores.
        workers = workers or max(1, min(4, (os.cpu_count() or 1) // 4))
        self._pool = (
            concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="compile")
            if background
            else None
        )
        self._lock = threading.Lock()
        self._warm_lock = threading.Lock()
        self._finished: list[tuple[tuple[int, int], float]] = []

    def _compile(self, K: int, M: int, warm: bool):
        start = time.perf_counter()
        batch = jax.ShapeDtypeStruct(
            (K, M, self._seq_len), jnp.int32, sharding=mesh_lib.batch_sharding(self._fns.mesh)
        )
        compiled = self._fns.train_step.lower(
            self._fns.abstract_state, batch, step_lib.hparams_abstract()
        ).compile()
        seconds = time.perf_counter() - start
        if warm:
            self._warm_up(compiled, batch)
        with self._lock:
            self._finished.append(((K, M), seconds))
        return compiled

    def _warm_up(self, compiled, batch: jax.ShapeDtypeStruct) -> None:
        """One execution on zeros (the loss is meaningless); the scratch state is freed once
        the last submitted bucket is warm. Warm-ups run one at a time: one scratch state."""
        with self._warm_lock:
            if self._scratch is None:
                self._scratch = jax.tree.map(
                    lambda a: jnp.zeros(a.shape, a.dtype, device=a.sharding),
                    self._fns.abstract_state,
                )
            tokens = jnp.zeros(batch.shape, batch.dtype, device=batch.sharding)
            hparams = step_lib.hparams_array(lr=0.0, b2=0.99, ewa_tau=0.9)
            self._scratch, metrics = compiled(self._scratch, tokens, hparams)
            jax.block_until_ready(metrics)
            with self._lock:
                self._unwarmed -= 1
                if self._unwarmed <= 0:
                    self._scratch = None

    def submit(self, buckets: Iterable[tuple[int, int]], warm: bool = True) -> None:
        """Queue buckets for compilation, in the order given (first needed first).

        ``warm=False`` skips the warm-up run of these buckets (for the bucket a run
        starts with: its first real step is the warm-up, and nothing waits on it).
        """
        for key in buckets:
            key = (int(key[0]), int(key[1]))
            if key in self._futures:
                continue
            warm_it = self._warm and warm
            if warm_it:
                with self._lock:
                    self._unwarmed += 1
            self._futures[key] = self.background(self._compile, *key, warm_it)

    def background(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future:
        """``fn(*args)`` on the compile thread(s) after what is queued, or now without them."""
        if self._pool is not None:
            return self._pool.submit(fn, *args)
        future: concurrent.futures.Future = concurrent.futures.Future()
        future.set_result(fn(*args))
        return future

    def get(self, K: int, M: int) -> Any:
        """The executable of bucket (K, M), waiting for its compile if it is still running."""
        key = (int(K), int(M))
        if key not in self._futures:
            self.submit([key], warm=False)  # the caller waits for it: no warm-up
        return self._futures[key].result()

    def is_ready(self, K: int, M: int) -> bool:
        """Whether bucket (K, M) is compiled (and warmed, if asked), so ``get`` will not wait."""
        future = self._futures.get((int(K), int(M)))
        return future is not None and future.done()

    def drain_finished(self) -> list[tuple[tuple[int, int], float]]:
        """Buckets whose compile finished since the last call, with their seconds."""
        with self._lock:
            done, self._finished = self._finished, []
        return done

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
