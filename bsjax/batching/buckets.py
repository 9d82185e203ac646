"""Shape buckets: how a global batch B is laid out as K micro-steps of M sequences.

The compiled train step takes a batch shaped [K, M, L+1]; each distinct (K, M)
is one ahead-of-time compiled executable. M is split over ``data_shards``
devices, so it must be a multiple of ``data_shards``, and each device holds at
most ``max_micro_per_device`` sequences per micro-step (its memory limit).
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable

from bsjax.batching.errors import BatchConfigError


@dataclasses.dataclass(frozen=True, order=True)
class Bucket:
    """K gradient-accumulation micro-steps of M sequences each."""

    K: int
    M: int

    @property
    def global_batch(self) -> int:
        """Sequences per optimizer step, K * M."""
        return self.K * self.M

    def micro_per_device(self, data_shards: int) -> int:
        """Sequences each data shard holds per micro-step."""
        return self.M // data_shards

    def batch_shape(self, ctx_len: int) -> tuple[int, int, int]:
        """Shape of the token batch the compiled step takes: (K, M, ctx_len + 1)."""
        return (self.K, self.M, ctx_len + 1)


def _check_positive(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise BatchConfigError(f"{name} must be a positive int, got {value!r}")


def _best_micro(per_shard: int, max_micro_per_device: int) -> int:
    """Largest divisor of ``per_shard`` that is <= ``max_micro_per_device``."""
    for m in range(min(per_shard, max_micro_per_device), 0, -1):
        if per_shard % m == 0:
            return m
    return 1  # unreachable: 1 divides everything


def _fits(B: int, data_shards: int, max_micro: int, max_accum: int | None) -> Bucket | None:
    if B <= 0 or B % data_shards:
        return None
    m = _best_micro(B // data_shards, max_micro)
    bucket = Bucket(K=B // (data_shards * m), M=data_shards * m)
    if max_accum is not None and max_accum < bucket.K:
        return None
    return bucket


def _nearest_valid(
    B: int, data_shards: int, max_micro: int, max_accum: int | None
) -> tuple[int | None, int | None]:
    """Largest valid size below B and smallest valid size above B (None if none)."""
    if max_accum is None:
        below = (B - 1) // data_shards * data_shards
        above = (B // data_shards + 1) * data_shards
        return (below if below > 0 else None), above
    valid = sorted(
        {data_shards * m * k for m in range(1, max_micro + 1) for k in range(1, max_accum + 1)}
    )
    i = bisect.bisect_left(valid, B)
    below = valid[i - 1] if i > 0 else None
    j = bisect.bisect_right(valid, B)
    above = valid[j] if j < len(valid) else None
    return below, above


def bucket_for(
    B: int, data_shards: int, max_micro_per_device: int, max_accum_steps: int | None = None
) -> Bucket:
    """The bucket for global batch ``B``: the fewest micro-steps K with K * M == B.

    M is a multiple of ``data_shards`` with M / data_shards <= max_micro_per_device;
    among those the largest M (smallest K) is taken. ``max_accum_steps`` (None:
    no limit) bounds K.

    Raises:
      BatchConfigError saying which B fails, why, and the nearest sizes that fit.
    """
    _check_positive(B, "batch size B")
    _check_positive(data_shards, "data_shards")
    _check_positive(max_micro_per_device, "max_micro_per_device")
    if max_accum_steps is not None:
        _check_positive(max_accum_steps, "max_accum_steps")
    bucket = _fits(B, data_shards, max_micro_per_device, max_accum_steps)
    if bucket is not None:
        return bucket
    below, above = _nearest_valid(B, data_shards, max_micro_per_device, max_accum_steps)
    nearest = " or ".join(str(s) for s in (below, above) if s is not None) or "none"
    if B % data_shards:
        why = (
            f"it is not divisible by the data-parallel width data_shards={data_shards} "
            f"(every micro-batch is split evenly over {data_shards} devices)"
        )
    else:
        smallest_k = B // (data_shards * _best_micro(B // data_shards, max_micro_per_device))
        why = (
            f"no K fits: with at most {max_micro_per_device} sequences per device per "
            f"micro-step it needs K={smallest_k} micro-steps, more than "
            f"max_accum_steps={max_accum_steps}"
        )
    raise BatchConfigError(
        f"batch size {B} fits no shape bucket: {why}; nearest sizes that fit: {nearest}"
    )


def enumerate_buckets(
    sizes: Iterable[int],
    data_shards: int,
    max_micro_per_device: int,
    max_accum_steps: int | None = None,
) -> dict[int, Bucket]:
    """Bucket for every size in ``sizes``, keyed by size (ascending).

    Raises:
      BatchConfigError with one problem per size that fits no bucket.
    """
    buckets: dict[int, Bucket] = {}
    problems: list[str] = []
    for B in sorted(set(sizes)):
        try:
            buckets[B] = bucket_for(B, data_shards, max_micro_per_device, max_accum_steps)
        except BatchConfigError as err:
            problems += err.problems
    if problems:
        raise BatchConfigError(problems)
    return buckets
