"""Packed rows over token shards: the split's token stream cut into rows of seq_len.

The stream is the shards' tokens in shard order (documents in corpus order,
EOS after each), exactly what packing the whole split in one pass would give;
row r is tokens [r * L, (r + 1) * L). Nothing is copied: each shard stays a
memory-mapped `.npy` and a read gathers only the rows asked for, so each host
reads only its own rows. A row that crosses a shard boundary is stitched from
both sides.
"""

from __future__ import annotations

import numpy as np

from bsjax.data.errors import DataError


class PackedRows:
    """A read-only [num_rows, seq_len] array view of concatenated 1-D token shards.

    Args:
      shards: the 1-D token arrays (memmaps), in stream order.
      seq_len: tokens per row (ctx_len + 1).
      max_tokens: cap on the tokens used (0: all); rounded down to whole rows.
    """

    ndim = 2

    def __init__(self, shards: list[np.ndarray], seq_len: int, max_tokens: int = 0):
        if not shards:
            raise DataError("split: no token shards to read")
        self._shards = shards
        self.seq_len = int(seq_len)
        sizes_S = np.array([s.size for s in shards], dtype=np.int64)
        self._starts_S = np.concatenate([[0], np.cumsum(sizes_S)])[:-1]
        self.total_tokens = int(sizes_S.sum())
        usable = min(self.total_tokens, max_tokens) if max_tokens else self.total_tokens
        self.num_rows = usable // self.seq_len
        self.dtype = shards[0].dtype
        self.shape = (self.num_rows, self.seq_len)
        # Per shard, the rows that lie wholly inside it as a strided [rows, L] view
        # (row-contiguous gathers), and the global index of its first such row.
        self._views, self._first_row_S = [], np.zeros(len(shards), dtype=np.int64)
        for s, (shard, start) in enumerate(zip(shards, self._starts_S)):
            phase = int(-start % self.seq_len)
            whole = max(0, (shard.size - phase) // self.seq_len)
            tail = np.asarray(shard[phase : phase + whole * self.seq_len])
            self._views.append(tail.reshape(whole, self.seq_len))
            self._first_row_S[s] = (int(start) + phase) // self.seq_len

    def __len__(self) -> int:
        return self.num_rows

    @property
    def size(self) -> int:
        return self.num_rows * self.seq_len

    def _gather(self, rows_N: np.ndarray) -> np.ndarray:
        out_NL = np.empty((rows_N.size, self.seq_len), dtype=self.dtype)
        if rows_N.size == 0:
            return out_NL
        if rows_N.min() < 0 or rows_N.max() >= self.num_rows:
            raise IndexError(f"row index out of range [0, {self.num_rows})")
        first_N = rows_N * self.seq_len
        shard_N = np.searchsorted(self._starts_S, first_N, side="right") - 1
        last_N = np.searchsorted(self._starts_S, first_N + self.seq_len - 1, side="right") - 1
        whole_N = shard_N == last_N
        for shard in np.unique(shard_N[whole_N]):
            picked = np.flatnonzero(whole_N & (shard_N == shard))
            out_NL[picked] = self._views[shard][rows_N[picked] - self._first_row_S[shard]]
        for i in np.flatnonzero(~whole_N):
            out_NL[i] = self._span(int(first_N[i]), int(first_N[i]) + self.seq_len)
        return out_NL

    def _span(self, start: int, stop: int) -> np.ndarray:
        """Tokens [start, stop) of the stream, across shards."""
        parts = []
        shard = int(np.searchsorted(self._starts_S, start, side="right") - 1)
        while start < stop:
            base = int(self._starts_S[shard])
            take = min(stop, base + self._shards[shard].size) - start
            if take > 0:
                parts.append(np.asarray(self._shards[shard][start - base : start - base + take]))
                start += take
            shard += 1
        return np.concatenate(parts)

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, slice):
            start, stop, step = index.indices(self.num_rows)
            if step == 1:
                span = self._span(start * self.seq_len, stop * self.seq_len) if stop > start else []
                return np.asarray(span, dtype=self.dtype).reshape(-1, self.seq_len)
            return self._gather(np.arange(start, stop, step, dtype=np.int64))
        rows = np.asarray(index, dtype=np.int64)
        if rows.ndim == 0:
            return self._gather(rows.reshape(1))[0]
        return self._gather(rows.reshape(-1)).reshape(*rows.shape, self.seq_len)

    def __array__(self, dtype=None, copy=None):
        rows_NL = self[:]
        return rows_NL if dtype is None else rows_NL.astype(dtype)
