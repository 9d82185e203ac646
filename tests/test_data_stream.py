"""Example stream: exact epochs, per-epoch reshuffle, determinism, exact random-access reads."""

import subprocess
import sys

import grain
import numpy as np
import pytest

from bsjax.data import DataError, ExampleStream

N, L = 37, 9


def _rows():
    # Row r holds r in every column and its own index in column 0, so rows are tellable apart.
    rows_NL = np.repeat(np.arange(N, dtype=np.uint16)[:, None], L, axis=1)
    rows_NL[:, 1:] += np.arange(1, L, dtype=np.uint16) * 100
    return rows_NL


@pytest.fixture(params=[1 << 18, 0], ids=["materialized", "per-id"])
def stream(request):
    return ExampleStream(_rows(), seed=7, materialize_max=request.param)


def test_shapes_and_dtype(stream):
    assert (stream.num_sequences, stream.seq_len) == (N, L)
    out = stream.read(np.array([0, 5, 3 * N + 1], dtype=np.int64))
    assert out.shape == (3, L) and out.dtype == np.int32


def test_each_id_once_per_epoch_and_epochs_differ(stream):
    orders = []
    for epoch in range(4):
        rows = stream.read(np.arange(epoch * N, (epoch + 1) * N))[:, 0]
        assert sorted(rows.tolist()) == list(range(N)), epoch
        orders.append(rows.tolist())
    assert len({tuple(o) for o in orders}) == 4  # a fresh permutation each epoch
    assert orders[0] != list(range(N))  # and actually shuffled
    assert stream.epoch_of(3 * N - 1) == 2 and stream.epoch_of(3 * N) == 3
    assert stream.epoch_of(np.array([0, N])).tolist() == [0, 1]


def test_deterministic_for_a_seed_and_different_across_seeds():
    ids = np.arange(0, 3 * N)
    a = ExampleStream(_rows(), seed=3).read(ids)
    b = ExampleStream(_rows(), seed=3).read(ids)
    c = ExampleStream(_rows(), seed=4).read(ids[:N])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[:N], c)
    # Seed k's second epoch is not seed k+1's first (grain alone would make them equal).
    assert not np.array_equal(a[N : 2 * N], c)


def test_order_is_grains_per_epoch_shuffle(stream):
    """The stream is grain's MapDataset.range(n).shuffle(seed).repeat(), read at id g."""
    reference = grain.MapDataset.range(N).shuffle(seed=stream.grain_seed).repeat()
    ids = np.arange(0, 5 * N)
    assert stream.row_indices(ids).tolist() == [reference[int(g)] for g in ids]


def test_a_small_first_read_asks_grain_per_id_while_the_epoch_is_built():
    n = 64 * 40
    rows_NL = np.arange(n, dtype=np.uint16)[:, None].repeat(2, axis=1)
    stream = ExampleStream(rows_NL, seed=5)
    reference = grain.MapDataset.range(n).shuffle(seed=stream.grain_seed).repeat()
    few = np.array([3, 17, 2 * n + 1])  # epochs 0 and 2, far fewer than n / 64 ids each
    assert stream.row_indices(few).tolist() == [reference[int(g)] for g in few]
    for epoch in (0, 2):  # both orders were being built in the background
        np.testing.assert_array_equal(
            stream._epoch_order(epoch), [reference[epoch * n + i] for i in range(n)]
        )
    assert not stream._building
    whole = np.arange(n, 2 * n)  # a large read of an unbuilt epoch builds it at once
    assert stream.row_indices(whole).tolist() == [reference[int(g)] for g in whole]


def test_a_process_that_exits_while_the_epoch_is_built_exits_cleanly():
    """The background build must not abort the interpreter at exit (a daemon thread inside
    grain's C++ did: "terminate called without an active exception", exit code -6)."""
    script = (
        "import numpy as np\n"
        "from bsjax.data.stream import ExampleStream\n"
        # An order that takes seconds to build: the build stops when the main thread ends.
        "s = ExampleStream(np.zeros((1 << 18, 2), dtype=np.uint16), seed=1)\n"
        "s.row_indices(np.array([1, 2, 3]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-1000:]


def test_an_abandoned_build_caches_nothing_and_reads_stay_grains():
    n = 3 * 8192 + 5  # several build chunks
    stream = ExampleStream(np.zeros((n, 2), dtype=np.uint16), seed=2)
    reference = grain.MapDataset.range(n).shuffle(seed=stream.grain_seed).repeat()
    calls = []

    def stop_after_one_chunk():
        calls.append(1)
        return len(calls) == 1

    assert stream._build_order(0, keep_going=stop_after_one_chunk) is None
    assert len(calls) == 2  # one chunk built, then stopped
    stream._store_order(0, None)
    assert stream._cached_order(0) is None and not stream._building
    ids = np.array([0, n - 1, 5000, 9000])
    assert stream.row_indices(ids).tolist() == [reference[int(g)] for g in ids]


def test_subset_reads_equal_rows_of_a_full_read(stream):
    """Any subset in any order equals the matching rows of one full read: exact re-sharding."""
    ids = np.arange(0, 4 * N)
    full = stream.read(ids)
    rng = np.random.default_rng(0)
    for _ in range(5):
        pick = rng.choice(ids.size, size=int(rng.integers(1, ids.size)), replace=True)
        np.testing.assert_array_equal(stream.read(ids[pick]), full[pick])
    # Contiguous shards for 1, 2, 4 and 8 processes reassemble the same global batch.
    batch = np.arange(N - 8, N + 24)  # straddles an epoch boundary
    for procs in (1, 2, 4, 8):
        parts = [stream.read(part) for part in np.split(batch, procs)]
        np.testing.assert_array_equal(np.concatenate(parts), full[batch])


def test_bad_ids_and_sequences():
    stream = ExampleStream(_rows(), seed=0)
    with pytest.raises(DataError, match="example_ids: must be >= 0"):
        stream.read(np.array([3, -1]))
    with pytest.raises(DataError, match="example_ids: must be integers"):
        stream.read(np.array([0.5]))
    with pytest.raises(DataError, match="sequences: need a non-empty"):
        ExampleStream(np.zeros((0, L), np.uint16), seed=0)
    with pytest.raises(DataError, match="shuffle_seed"):
        ExampleStream(_rows(), seed=-2)


def test_validation_batches_are_the_first_rows_unshuffled():
    stream = ExampleStream(_rows(), seed=11)
    batches = stream.validation_batches(4, 8)
    assert batches.shape == (4, 8, L) and batches.dtype == np.int32
    np.testing.assert_array_equal(batches.reshape(-1, L), _rows()[:32].astype(np.int32))
    with pytest.raises(
        DataError, match="need 40 validation sequences but the validation split has 37"
    ):
        stream.validation_batches(5, 8)
