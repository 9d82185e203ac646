"""A split's tokenized shards in the shared cache: build what is missing, check, wait.

Layout: `<cache_dir>/tokens/<split>-<key>/` holds `NNNNN.npy` + `NNNNN.json`
per shard and, once every shard is there, `manifest.json` (the key, the
shards' records and the totals). The key covers the corpus identity, the
tokenizer identity and the split, and not ctx_len or max_tokens: one
tokenization serves every context length and token cap.

Building is parallel (a pool of spawned worker processes, one shard per task)
and resumable: shards whose `.json` is present and whose `.npy` agrees with it
are kept. A damaged shard (bad `.npy` header, wrong size, wrong digest) is
reported, removed and rebuilt. Several hosts can share the building
(`host_index`, `num_hosts`: host i builds the shards i, i + n, ...), and a host
that does not build waits until the shards it needs are there.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from etils import epath

from bsjax.data.files import identity_key
from bsjax.data.progress import Progress
from bsjax.data.shards import (
    SHARD_FORMAT,
    ShardJob,
    ShardSpec,
    shard_names,
    shard_problem,
    tokenize_shard,
)

MANIFEST = "manifest.json"
# Shards are checked against their sha256 on every open while the split's
# tokens take at most this many bytes; larger splits check shape and size on
# open and their digests when built (or with `python -m bsjax.data.prepare --verify`).
VERIFY_DIGEST_MAX_BYTES = 1 << 30
_WAIT_LINE_S = 30.0
AUTO_BYTES_PER_WORKER = 32 << 20  # workers=0 starts a process per this many source bytes


def token_key(corpus_identity: dict, tokenizer_identity: dict, split: str) -> dict:
    """Everything a split's token shards depend on, as a JSON dict."""
    return {
        "corpus": {k: v for k, v in corpus_identity.items() if k != "path"},
        "tokenizer": tokenizer_identity,
        "split": split,
        "format": SHARD_FORMAT,
    }


def split_dir(cache_dir, key: dict) -> epath.Path:
    """The folder of a split's shards inside `cache_dir` (a local path or a URL)."""
    name = f"{key['split'].replace('/', '_')}-{identity_key(key)}"
    return epath.Path(cache_dir) / "tokens" / name


@dataclass
class SplitBuild:
    """What a split's shards are made from: the key, the shards and a job template."""

    key: dict
    specs: list[ShardSpec]
    job: ShardJob  # spec filled in per shard
    label: str

    def job_for(self, spec: ShardSpec, out_dir) -> ShardJob:
        return dataclasses.replace(self.job, spec=spec, out_dir=str(out_dir))


def open_shard(path: epath.Path) -> np.ndarray:
    """A shard's tokens, memory-mapped (a remote shard is fetched to a local mirror first)."""
    from bsjax.data.mirror import local_copy

    return np.load(local_copy(path), mmap_mode="r", allow_pickle=False)


def _read_record(path: epath.Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}  # present but unreadable: treated as damaged


def _check_records(
    out_dir, specs, itemsize: int, remove: bool, verify_digest: bool | None = None
) -> dict[int, dict]:
    """Records of the shards present and sound; damaged ones are reported (and removed).

    Shape, dtype and size are always checked; digests when `verify_digest`, or
    (None) while the shards present hold at most `VERIFY_DIGEST_MAX_BYTES`.
    """
    raw = {}
    for spec in specs:
        record = _read_record(out_dir / shard_names(spec.index)[1])
        if record is not None:
            raw[spec.index] = record
    total = sum(int(r.get("num_tokens", 0)) for r in raw.values()) * itemsize
    if verify_digest is None:
        verify_digest = total <= VERIFY_DIGEST_MAX_BYTES
    good: dict[int, dict] = {}
    for index, record in raw.items():
        npy_name, json_name = shard_names(index)
        problem = None
        if not record or record.get("format") != SHARD_FORMAT:
            problem = "has an unreadable record or one of another format"
        else:
            try:
                problem = shard_problem(open_shard(out_dir / npy_name), record, verify_digest)
            except (OSError, ValueError) as err:  # missing file or bad .npy header
                problem = f"cannot be opened ({err})"
        if problem is None:
            good[index] = record
            continue
        action = "rebuilding it" if remove else "the building process must rebuild it"
        print(f"token shard {out_dir / npy_name} {problem}; {action}", file=sys.stderr)
        if remove:
            for name in (json_name, npy_name, MANIFEST):
                (out_dir / name).unlink(missing_ok=True)
    return good


def _prefix(specs, records: dict[int, dict], max_tokens: int) -> list[dict] | None:
    """Records of the leading shards that hold `max_tokens` (0: all), or None if missing."""
    chosen, tokens = [], 0
    for spec in specs:
        record = records.get(spec.index)
        if record is None:
            return None
        chosen.append(record)
        tokens += record["num_tokens"]
        if max_tokens and tokens >= max_tokens:
            break
    return chosen


def _init_worker() -> None:
    # Each worker is one of many processes: keep tokenizers from starting a thread pool each.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ["RAYON_NUM_THREADS"] = "1"


def _run_jobs(jobs: list[ShardJob], workers: int):
    """Yield each job's record in job order, tokenizing up to `workers` shards at a time."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield tokenize_shard(job)
        return
    context = multiprocessing.get_context("spawn")  # the parent may run JAX threads: no fork
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker)
    try:
        queue = iter(jobs)
        futures = collections.deque(
            pool.submit(tokenize_shard, job) for _, job in zip(range(2 * workers), queue)
        )
        while futures:
            record = futures.popleft().result()
            job = next(queue, None)
            if job is not None:
                futures.append(pool.submit(tokenize_shard, job))
            yield record
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def default_workers() -> int:
    """Worker processes when the config says 0: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def ensure_split(
    build: SplitBuild,
    cache_dir,
    *,
    max_tokens: int = 0,
    workers: int = 0,
    builder: bool = True,
    host_index: int = 0,
    num_hosts: int = 1,
    poll_s: float = 2.0,
    wait: bool = True,
    verify_digests: bool | None = None,
) -> list[dict]:
    """Make sure the shards holding the first `max_tokens` tokens (0: all) exist; return their records.

    A `builder` tokenizes the missing shards assigned to it (all of them when
    `num_hosts` is 1) with `workers` processes (0: one per CPU), stopping once
    the leading shards hold `max_tokens`. Anyone then waits (when `wait`) for
    shards other hosts build. The first host writes the manifest once every
    shard is there. `verify_digests` forces (True) or skips (False) the sha256
    check of the shards already present; None checks them in caches of at most
    `VERIFY_DIGEST_MAX_BYTES`.
    """
    out_dir = split_dir(cache_dir, build.key)
    if builder:
        out_dir.mkdir(parents=True, exist_ok=True)
    itemsize = np.dtype(build.job.dtype).itemsize
    records = {}
    if out_dir.exists():
        records = _check_records(out_dir, build.specs, itemsize, builder, verify_digests)

    chosen = _prefix(build.specs, records, max_tokens)
    if chosen is None and builder:
        todo = [
            s for s in build.specs if s.index not in records and s.index % num_hosts == host_index
        ]
        if not workers:  # small jobs are quicker in this process than in new ones
            auto_bytes = sum(s.source_bytes for s in todo) // AUTO_BYTES_PER_WORKER
            workers = min(default_workers(), max(1, auto_bytes))
        workers = min(workers, max(1, len(todo)))
        progress = Progress(build.label, len(todo), sum(s.source_bytes for s in todo))
        try:
            for record in _run_jobs([build.job_for(s, out_dir) for s in todo], workers):
                records[record["index"]] = record
                progress.update(record["num_tokens"], record["source_bytes"])
                if num_hosts == 1 and max_tokens and _prefix(build.specs, records, max_tokens):
                    break
        finally:
            progress.close()
        chosen = _prefix(build.specs, records, max_tokens)

    if chosen is None and wait:
        chosen = _wait_for(build, out_dir, records, max_tokens, poll_s)
    if chosen is None:
        return []
    if builder and host_index == 0 and len(records) == len(build.specs):
        _write_manifest(build, out_dir, records)
    return chosen


def _wait_for(build, out_dir, records, max_tokens, poll_s) -> list[dict]:
    """Poll until other processes have written the shards needed."""
    start = last = time.perf_counter()
    while True:
        for spec in build.specs:
            if spec.index not in records:
                record = _read_record(out_dir / shard_names(spec.index)[1])
                if record:
                    records[spec.index] = record
        chosen = _prefix(build.specs, records, max_tokens)
        if chosen is not None:
            return chosen
        if time.perf_counter() - last >= _WAIT_LINE_S:
            last = time.perf_counter()
            print(
                f"{build.label}: waiting for other hosts, {len(records)}/{len(build.specs)} "
                f"shards in {out_dir} after {time.perf_counter() - start:.0f} s",
                file=sys.stderr,
                flush=True,
            )
        time.sleep(poll_s)


def _write_manifest(build, out_dir, records) -> None:
    path = out_dir / MANIFEST
    if path.exists():
        return
    shards = [records[s.index] for s in build.specs]
    manifest = {
        "format": SHARD_FORMAT,
        "key": build.key,
        "num_shards": len(shards),
        "num_tokens": sum(r["num_tokens"] for r in shards),
        "num_documents": sum(r["num_documents"] for r in shards),
        "source_bytes": sum(r["source_bytes"] for r in shards),
        "undecodable_bytes": sum(r["undecodable_bytes"] for r in shards),
        "shards": shards,
    }
    tmp = out_dir / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.rename(path)
