"""BatchPlan: everything the trainer needs about batch sizes, resolved up front."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from bsjax.batching.buckets import Bucket
from bsjax.batching.controller import BatchPolicy, round_to_bucket
from bsjax.batching.coupling import Coupling
from bsjax.batching.errors import BatchConfigError
from bsjax.batching.schedules import Schedule, SwitchPoint, switch_points


@dataclasses.dataclass(frozen=True)
class BatchPlan:
    """Schedule, policy, one shape bucket per size the policy may ask for, coupling.

    ``buckets`` covers every size of ``policy.candidate_sizes()``, not only the
    ones a run from token 0 lands on, so a resume under a different schedule
    position still finds its bucket. ``switch_points()`` gives the order in
    which a run from the start needs them (compile those first).
    """

    schedule: Schedule
    policy: BatchPolicy
    buckets: Mapping[int, Bucket]
    coupling: Coupling
    ctx_len: int
    data_shards: int
    off_bucket: str = "round"

    def available_sizes(self) -> list[int]:
        """Sizes with a bucket, ascending."""
        return sorted(self.buckets)

    def resolve(self, batch_size: int) -> int:
        """A size that has a bucket: ``batch_size`` itself, or rounded/refused per ``off_bucket``."""
        return round_to_bucket(batch_size, self.buckets, self.off_bucket)

    def bucket(self, batch_size: int) -> Bucket:
        """Bucket of an available size.

        Raises:
          BatchConfigError for a size without a bucket (call ``resolve`` first).
        """
        if batch_size not in self.buckets:
            raise BatchConfigError(
                f"batch size {batch_size} has no bucket; available: {self.available_sizes()}"
            )
        return self.buckets[batch_size]

    def switch_points(self) -> list[SwitchPoint]:
        """Steps at which a run from token 0 changes size under the fixed schedule."""
        return switch_points(self.schedule, self.ctx_len)

    def describe(self) -> str:
        """Several lines for logs: schedule, buckets, coupling."""
        lines = [
            f"schedule: {self.schedule.describe()}",
            f"coupling: {self.coupling.describe()}",
            f"buckets (data_shards={self.data_shards}, ctx_len={self.ctx_len}):",
        ]
        lines += [f"  B={B}: K={b.K} x M={b.M}" for B, b in sorted(self.buckets.items())]
        return "\n".join(lines)
