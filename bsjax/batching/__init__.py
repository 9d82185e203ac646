"""Batch-size schedules, shape buckets, coupled hyper-parameters and policies.

Pure Python (no JAX): the trainer asks a ``BatchPlan`` (``plan_from_config``)
for the batch size of each step, its (K, M) shape bucket, and the LR scale,
beta2 and EWA tau that go with it.
"""

from bsjax.batching.buckets import Bucket, bucket_for, enumerate_buckets
from bsjax.batching.config import default_batch_config, plan_from_config, validate_batch_config
from bsjax.batching.controller import (
    BatchPolicy,
    Decision,
    OffBucketWarning,
    PolicyContext,
    ScheduledPolicy,
    round_to_bucket,
)
from bsjax.batching.coupling import (
    Coupling,
    DecayRule,
    half_life_decay,
    half_life_tokens,
    lr_scale,
    table_value,
)
from bsjax.batching.errors import BatchConfigError
from bsjax.batching.paper_tables import TABLE4
from bsjax.batching.parsing import format_count, parse_count
from bsjax.batching.plan import BatchPlan
from bsjax.batching.schedules import (
    ConstantSchedule,
    DoublingSchedule,
    RampSchedule,
    Schedule,
    SwitchPoint,
    TableSchedule,
    reachable_sizes,
    schedule_from_config,
    switch_points,
)

__all__ = [
    "BatchConfigError",
    "BatchPlan",
    "BatchPolicy",
    "Bucket",
    "ConstantSchedule",
    "Coupling",
    "DecayRule",
    "Decision",
    "DoublingSchedule",
    "OffBucketWarning",
    "PolicyContext",
    "RampSchedule",
    "Schedule",
    "ScheduledPolicy",
    "SwitchPoint",
    "TABLE4",
    "TableSchedule",
    "bucket_for",
    "default_batch_config",
    "enumerate_buckets",
    "format_count",
    "half_life_decay",
    "half_life_tokens",
    "lr_scale",
    "parse_count",
    "plan_from_config",
    "reachable_sizes",
    "round_to_bucket",
    "schedule_from_config",
    "switch_points",
    "table_value",
    "validate_batch_config",
]
