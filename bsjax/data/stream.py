"""The example stream: one deterministic global order of packed sequences.

Global example id g (counted from 0 over the whole run) maps to epoch
g // n and, inside that epoch, to a sequence index through a seeded
permutation that differs per epoch. The permutation is grain's:
`MapDataset.range(n).shuffle(s).repeat()` read at index g shuffles epoch e
with seed `s + e` (grain's per-epoch reshuffle). Since that would make user
seed k's epoch 1 the same order as seed k+1's epoch 0, the user seed is first
spread by an odd multiplier (a bijection mod 2**32) into `grain_seed`. Because any
id can be read directly, each process reads only its own rows and a change of
batch size (re-sharding) neither skips nor repeats an example.

Reads are vectorised: a touched epoch's permutation is materialised once from
grain into a small cache (for corpora up to `materialize_max` sequences), so
`read` is an array lookup plus one memmap gather. Building it takes about a
second per 100k sequences, so the first small reads of an epoch ask grain per
id while a thread builds the order (the first step does not wait for it).
Larger corpora ask grain per id. No TensorFlow here.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import grain
import numpy as np

from bsjax.data.errors import DataError

_CACHED_EPOCHS = 4
# A read of fewer than n / 64 ids of an epoch whose order is not built yet asks grain per id.
_FEW_IDS_FRACTION = 64
_BUILD_CHUNK = 8192  # ids per step of an epoch-order build (it can stop between steps)
_SEED_SPREAD = 0x9E3779B1  # odd, so seed -> seed * _SEED_SPREAD mod 2**32 is one-to-one


def grain_seed(seed: int) -> int:
    """The grain shuffle seed for a user seed (distinct seeds stay distinct)."""
    return (int(seed) * _SEED_SPREAD) % 2**32


class ExampleStream:
    """Random access to a seeded, per-epoch-reshuffled, endless order of rows.

    Args:
      sequences: [n, seq_len] array (typically a memmap of packed tokens).
      seed: shuffle seed in [0, 2**32).
      materialize_max: largest n for which a whole epoch's order is cached.
    """

    def __init__(self, sequences, seed: int, materialize_max: int = 1 << 18):
        if getattr(sequences, "ndim", None) != 2 or sequences.shape[0] == 0:
            raise DataError(
                f"sequences: need a non-empty [n, seq_len] array, got shape "
                f"{getattr(sequences, 'shape', None)}"
            )
        if not 0 <= int(seed) < 2**32:
            raise DataError(f"shuffle_seed: must be in [0, 2**32), got {seed}")
        self._rows_NL = sequences
        self.seed = int(seed)
        self.num_sequences = int(sequences.shape[0])
        self.seq_len = int(sequences.shape[1])
        self.grain_seed = grain_seed(self.seed)
        self._order = (
            grain.MapDataset.range(self.num_sequences).shuffle(seed=self.grain_seed).repeat()
        )
        self._materialize_max = materialize_max
        self._epochs: OrderedDict[int, np.ndarray] = OrderedDict()
        self._building: dict[int, threading.Thread] = {}
        self._lock = threading.Lock()

    def epoch_of(self, g):
        """Epoch of global example id(s) `g`."""
        return (
            np.asarray(g, dtype=np.int64) // self.num_sequences
            if np.ndim(g)
            else int(g) // self.num_sequences
        )

    def _cached_order(self, epoch: int) -> np.ndarray | None:
        with self._lock:
            order_N = self._epochs.get(epoch)
            if order_N is not None:
                self._epochs.move_to_end(epoch)
            return order_N

    def _build_in_background(self, epoch: int) -> None:
        """Start materialising `epoch`'s order in a thread (once per epoch)."""
        with self._lock:
            if epoch in self._epochs or epoch in self._building:
                return
            # Not a daemon: a daemon thread still inside grain's C++ when the interpreter
            # exits (a run that stops at once, e.g. diverged) aborts the process.
            thread = threading.Thread(
                target=self._build_in_thread, args=(epoch,), name=f"epoch-order-{epoch}"
            )
            self._building[epoch] = thread
        thread.start()

    def _epoch_order(self, epoch: int) -> np.ndarray:
        """Row index of each position of `epoch` (cached; built from grain)."""
        order_N = self._cached_order(epoch)
        if order_N is not None:
            return order_N
        with self._lock:
            builder = self._building.get(epoch)
        if builder is not None and builder is not threading.current_thread():
            builder.join()
            order_N = self._cached_order(epoch)
            if order_N is not None:
                return order_N
        order_N = self._build_order(epoch, keep_going=lambda: True)
        self._store_order(epoch, order_N)
        return order_N

    def _build_in_thread(self, epoch: int) -> None:
        # The build stops once the main thread has finished (the interpreter is exiting):
        # a process must not wait seconds at exit for an order nobody will read.
        order_N = self._build_order(epoch, keep_going=threading.main_thread().is_alive)
        self._store_order(epoch, order_N)

    def _build_order(self, epoch: int, keep_going: Callable[[], bool]) -> np.ndarray | None:
        """``epoch``'s order from grain, chunk by chunk; None if ``keep_going()`` turned False."""
        base, n = epoch * self.num_sequences, self.num_sequences
        order_N = np.empty(n, dtype=np.int64)
        for start in range(0, n, _BUILD_CHUNK):
            if not keep_going():
                return None
            stop = min(n, start + _BUILD_CHUNK)
            order_N[start:stop] = np.fromiter(
                (self._order[base + i] for i in range(start, stop)), np.int64, stop - start
            )
        return order_N

    def _store_order(self, epoch: int, order_N: np.ndarray | None) -> None:
        """Cache a built order (None: an abandoned build, nothing cached) and end its build."""
        with self._lock:
            if order_N is not None:
                self._epochs[epoch] = order_N
                while len(self._epochs) > _CACHED_EPOCHS:
                    self._epochs.popitem(last=False)
            self._building.pop(epoch, None)

    def row_indices(self, example_ids) -> np.ndarray:
        """Row (packed-sequence) index of each global example id, int64, same shape."""
        ids_N = np.asarray(example_ids)
        if ids_N.size and not np.issubdtype(ids_N.dtype, np.integer):
            raise DataError(f"example_ids: must be integers, got dtype {ids_N.dtype}")
        ids_N = ids_N.astype(np.int64)
        if ids_N.size and ids_N.min() < 0:
            raise DataError("example_ids: must be >= 0")
        n = self.num_sequences
        epochs_N, pos_N = np.divmod(ids_N, n)
        rows_N = np.empty_like(ids_N)
        for epoch in np.unique(epochs_N):
            mask = epochs_N == epoch
            order_N = self._cached_order(int(epoch))
            if order_N is None and n <= self._materialize_max:
                # A few ids (a step's batch) are asked of grain one by one while the
                # whole epoch's order is built in the background; a large read waits for it.
                if mask.sum() * _FEW_IDS_FRACTION < n:
                    self._build_in_background(int(epoch))
                else:
                    order_N = self._epoch_order(int(epoch))
            if order_N is not None:
                rows_N[mask] = order_N[pos_N[mask]]
            else:
                rows_N[mask] = [self._order[int(g)] for g in ids_N[mask]]
        return rows_N

    def read(self, example_ids) -> np.ndarray:
        """Rows for global example ids, any ids in any order: int32 [len(ids), seq_len]."""
        rows_N = self.row_indices(np.asarray(example_ids).reshape(-1))
        # Gather in ascending row order (sequential memmap access), then restore.
        sort_N = np.argsort(rows_N, kind="stable")
        out_NL = np.empty((rows_N.size, self.seq_len), dtype=np.int32)
        out_NL[sort_N] = self._rows_NL[rows_N[sort_N]]
        return out_NL

    def validation_batches(self, num_batches: int, batch_size: int) -> np.ndarray:
        """The first num_batches * batch_size rows, unshuffled: int32 [num_batches, batch_size, seq_len]."""
        need = int(num_batches) * int(batch_size)
        if num_batches <= 0 or batch_size <= 0:
            raise DataError(
                f"eval: num_batches and batch_size must be > 0, got {num_batches}, {batch_size}"
            )
        if need > self.num_sequences:
            raise DataError(
                f"eval: {num_batches} batches of {batch_size} need {need} validation sequences but "
                f"the validation split has {self.num_sequences}; use fewer/smaller eval batches, a "
                "larger data.validation_fraction or data.max_validation_tokens = 0"
            )
        return np.asarray(self._rows_NL[:need], dtype=np.int32).reshape(
            num_batches, batch_size, self.seq_len
        )
