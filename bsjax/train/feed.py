"""Global batches from the example stream, placed with the batch sharding.

Step t reads global examples [O_t, O_t + B_t). In a bucket (K, M) example
O_t + k * M + m goes to micro-step k, row m, and row m lives on the device that
the batch sharding gives it. ``jax.make_array_from_callback`` asks only for the
shards of this process's devices, so each process reads exactly its own rows;
when a switch changes (K, M), the same rule re-shards the stream with nothing
skipped or read twice.
"""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from bsjax.train import mesh as mesh_lib


def example_ids(offset: int, K: int, M: int) -> np.ndarray:
    """Global example ids of a bucket's batch, shape [K, M]."""
    return offset + np.arange(K * M, dtype=np.int64).reshape(K, M)


class BatchFeeder:
    """Assembles sharded [K, M, L+1] batches, one step ahead in a background thread.

    ``id_log`` (optional) receives, per assembled batch, the example ids this
    process read: the evidence that each process read only its rows.
    """

    def __init__(
        self,
        read: Callable[[np.ndarray], np.ndarray],
        seq_len: int,
        mesh: jax.sharding.Mesh,
        id_log_path: str | None = None,
    ):
        self._read = read
        self._seq_len = seq_len
        self._sharding = mesh_lib.batch_sharding(mesh)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="feed")
        self._pending: tuple[tuple[int, int, int], concurrent.futures.Future] | None = None
        self._id_log = open(id_log_path, "a", buffering=1) if id_log_path else None

    def assemble(self, offset: int, K: int, M: int) -> tuple[jax.Array, np.ndarray]:
        """The batch of examples [offset, offset + K*M) and the ids this process read."""
        ids_KM = example_ids(offset, K, M)
        read_ids: list[np.ndarray] = []

        def shard(index: tuple[slice, ...]) -> np.ndarray:
            shard_ids = ids_KM[index[0], index[1]]
            read_ids.append(shard_ids.ravel())
            rows = self._read(shard_ids.ravel()).reshape(*shard_ids.shape, self._seq_len)
            return np.ascontiguousarray(rows[..., index[2]], dtype=np.int32)

        batch_KMT = jax.make_array_from_callback((K, M, self._seq_len), self._sharding, shard)
        local_ids = np.unique(np.concatenate(read_ids)) if read_ids else np.zeros(0, np.int64)
        return batch_KMT, local_ids

    def prefetch(self, offset: int, K: int, M: int) -> None:
        """Start assembling the batch for (offset, K, M) in the background."""
        key = (offset, K, M)
        if self._pending is None or self._pending[0] != key:
            self._pending = (key, self._pool.submit(self.assemble, offset, K, M))

    def get(self, step: int, offset: int, K: int, M: int) -> jax.Array:
        """The batch for (offset, K, M): the prefetched one if it matches, else built now."""
        key = (offset, K, M)
        if self._pending is not None and self._pending[0] == key:
            batch_KMT, local_ids = self._pending[1].result()
        else:
            batch_KMT, local_ids = self.assemble(offset, K, M)
        self._pending = None
        if self._id_log is not None:
            self._id_log.write(
                json.dumps(dict(step=step, offset=offset, ids=local_ids.tolist())) + "\n"
            )
        return batch_KMT

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self._id_log is not None:
            self._id_log.close()


def place_eval_batches(batches_NMT: np.ndarray, mesh: jax.sharding.Mesh) -> Any:
    """Put the fixed validation batches on the mesh once (rows split like train batches)."""
    return jax.make_array_from_callback(
        batches_NMT.shape,
        mesh_lib.batch_sharding(mesh),
        lambda index: np.asarray(batches_NMT[index], dtype=np.int32),
    )
