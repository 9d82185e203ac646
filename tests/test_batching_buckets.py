"""Shape buckets: smallest K with K * M == B, odd mesh sizes, prime B, clear errors."""

import re

import pytest

from bsjax.batching import BatchConfigError, Bucket, bucket_for, enumerate_buckets


def _all_layouts(B, data_shards, max_micro, max_accum=None):
    """Reference: every (K, M) with K * M == B, M a multiple of data_shards within the limit."""
    return [
        Bucket(B // M, M)
        for M in range(data_shards, B + 1, data_shards)
        if B % M == 0
        and M // data_shards <= max_micro
        and (max_accum is None or max_accum >= B // M)
    ]


def test_bucket_properties():
    bucket = Bucket(4, 24)
    assert bucket.global_batch == 96
    assert bucket.micro_per_device(3) == 8
    assert bucket.batch_shape(512) == (4, 24, 513)


@pytest.mark.parametrize(
    "B,shards,micro,expected",
    [
        (64, 8, 16, Bucket(1, 64)),
        (512, 8, 16, Bucket(4, 128)),
        (96, 3, 8, Bucket(4, 24)),
        (90, 6, 4, Bucket(5, 18)),  # 15 per shard: largest divisor <= 4 is 3
        (127, 1, 8, Bucket(127, 1)),  # prime B: only K = B works
        (7 * 13, 7, 16, Bucket(1, 91)),
    ],
)
def test_bucket_for_examples(B, shards, micro, expected):
    assert bucket_for(B, shards, micro) == expected


@pytest.mark.parametrize("shards", [1, 3, 5, 6, 7, 8])
@pytest.mark.parametrize("micro", [1, 4, 5, 16])
def test_bucket_for_picks_smallest_K_on_odd_meshes(shards, micro):
    for B in range(shards, 60 * shards + 1, shards):
        bucket = bucket_for(B, shards, micro)
        layouts = _all_layouts(B, shards, micro)
        assert bucket in layouts
        assert min(layout.K for layout in layouts) == bucket.K
        assert bucket.global_batch == B


@pytest.mark.parametrize("B,shards", [(127, 3), (131, 5), (97, 6), (101, 7), (100, 8)])
def test_not_divisible_error_names_B_reason_and_nearest(B, shards):
    with pytest.raises(BatchConfigError) as info:
        bucket_for(B, shards, 16)
    message = str(info.value)
    assert f"batch size {B} fits no shape bucket" in message
    assert f"not divisible by the data-parallel width data_shards={shards}" in message
    below, above = B // shards * shards, (B // shards + 1) * shards
    assert f"nearest sizes that fit: {below} or {above}" in message
    bucket_for(below, shards, 16)
    bucket_for(above, shards, 16)


@pytest.mark.parametrize(
    "B,shards,micro,max_accum", [(127, 1, 8, 8), (131, 1, 4, 16), (3 * 97, 3, 8, 4)]
)
def test_no_K_fits_error_and_nearest_sizes_are_valid_and_nearest(B, shards, micro, max_accum):
    with pytest.raises(
        BatchConfigError, match=f"batch size {B} fits no shape bucket: no K fits"
    ) as info:
        bucket_for(B, shards, micro, max_accum)
    assert f"max_accum_steps={max_accum}" in str(info.value)
    nearest = [
        int(x) for x in re.findall(r"\d+", str(info.value).split("nearest sizes that fit:")[1])
    ]
    assert nearest, info.value
    valid = {S for S in range(1, 4 * B) if _all_layouts(S, shards, micro, max_accum)}
    below = max((S for S in valid if S < B), default=None)
    above = min((S for S in valid if S > B), default=None)
    assert nearest == [s for s in (below, above) if s is not None]


def test_max_accum_respected_when_it_fits():
    assert bucket_for(128, 1, 8, max_accum_steps=16) == Bucket(16, 8)


@pytest.mark.parametrize(
    "args,name",
    [
        ((0, 8, 16), "batch size B"),
        ((64, 0, 16), "data_shards"),
        ((64, 8, 0), "max_micro_per_device"),
        ((64, 8, 16, 0), "max_accum_steps"),
    ],
)
def test_bucket_for_argument_errors(args, name):
    with pytest.raises(BatchConfigError, match=f"{name} must be a positive int"):
        bucket_for(*args)


def test_enumerate_buckets_odd_mesh():
    buckets = enumerate_buckets([30, 60, 15, 120, 60], data_shards=5, max_micro_per_device=4)
    assert list(buckets) == [15, 30, 60, 120]
    assert buckets == {15: Bucket(1, 15), 30: Bucket(2, 15), 60: Bucket(3, 20), 120: Bucket(6, 20)}


def test_enumerate_buckets_reports_every_failing_size_once():
    with pytest.raises(BatchConfigError) as info:
        enumerate_buckets([64, 100, 128, 132], data_shards=6, max_micro_per_device=8)
    assert len(info.value.problems) == 3
    for B in (64, 100, 128):
        assert any(f"batch size {B} " in p for p in info.value.problems)
