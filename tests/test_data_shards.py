"""The parallel token cache: same rows for any worker count, resumable after a kill,
damaged shards rebuilt, non-text refused, shared building across hosts, file sets."""

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bsjax.data import ByteTokenizer, DataError, default_data_config, load
from bsjax.data import shards as shards_lib
from bsjax.data.files import hash_split
from bsjax.data.packing import pack_to_file
from bsjax.data.rows import PackedRows
from bsjax.data.shards import ShardJob, plan_shards
from bsjax.data.token_cache import SplitBuild, ensure_split, split_dir, token_key

CTX = 15
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def small_shards(monkeypatch):
    """Shards of a few hundred bytes, so a small corpus has many (the real target is 1 MiB)."""
    monkeypatch.setattr(shards_lib, "SHARD_TARGET_BYTES", 256)


def _docs(n, tag="doc"):
    return [f"{tag} {i}: " + "lorem ipsum é " * (i % 13 + 1) for i in range(n)]


def _stream(docs):
    tok = ByteTokenizer()
    return np.concatenate([np.append(tok.encode(d), tok.eos_id) for d in docs])


def _write_file_set(root: Path) -> dict[str, list[str]]:
    """A C4-style set: named train/validation files, jsonl.gz + parquet + jsonl. Returns docs."""
    root.mkdir(parents=True)
    train, val = _docs(150, "train"), _docs(30, "val")
    for part in range(6):  # 25 documents a file, formats in turn
        name, docs = f"c4-train.{part:05d}-of-00006", train[25 * part : 25 * (part + 1)]
        if part % 3 == 0:
            with gzip.open(root / f"{name}.json.gz", "wt", encoding="utf-8") as f:
                f.writelines(json.dumps({"text": d, "url": "x"}) + "\n" for d in docs)
        elif part % 3 == 1:
            pq.write_table(pa.table({"text": docs}), root / f"{name}.parquet")
        else:
            (root / f"{name}.jsonl").write_text(
                "".join(json.dumps({"text": d}) + "\n" for d in docs)
            )
    with gzip.open(root / "c4-validation.00000-of-00001.json.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": d}) + "\n" for d in val)
    (root / "README.md").write_text("not a corpus file")
    return {"train": train, "validation": val}


def _cfg(tmp_path, **overrides):
    cfg = default_data_config()
    cfg.data_dir = str(tmp_path / "tfds")
    cfg.cache_dir = str(tmp_path / "cache")
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


def _shard_files(cache_dir: Path) -> dict[str, bytes]:
    return {
        p.relative_to(cache_dir).as_posix(): p.read_bytes()
        for p in sorted(cache_dir.rglob("*"))
        if p.is_file()
    }


def test_file_set_rows_are_the_same_for_any_worker_count(tmp_path, small_shards):
    docs = _write_file_set(tmp_path / "c4")
    corpora = {}
    for workers in (1, 2):
        cfg = _cfg(
            tmp_path, source="files", path=str(tmp_path / "c4"), workers=workers,
            cache_dir=str(tmp_path / f"cache{workers}"),
        )  # fmt: skip
        corpora[workers] = load(cfg, CTX)
    one, two = corpora[1], corpora[2]
    # Byte-identical shards, records and manifests; the same packed rows.
    assert _shard_files(tmp_path / "cache1") == _shard_files(tmp_path / "cache2")
    assert one.identity == {
        **two.identity,
        "splits": {
            r: {**s, "cache_file": one.identity["splits"][r]["cache_file"]}
            for r, s in two.identity["splits"].items()
        },
    }
    manifest = json.loads(
        (Path(one.identity["splits"]["train"]["cache_file"]) / "manifest.json").read_text()
    )
    assert manifest["num_shards"] > 3 and manifest["num_documents"] == 150
    # The rows are the one-pass packing of the documents in file order, EOS after each.
    for role in ("train", "validation"):
        rows_NL = np.asarray(getattr(one, role)._rows_NL)
        np.testing.assert_array_equal(rows_NL, np.asarray(getattr(two, role)._rows_NL))
        reference = tmp_path / f"{role}.npy"
        stats = pack_to_file(iter(docs[role]), ByteTokenizer(), CTX + 1, 0, reference)
        np.testing.assert_array_equal(rows_NL, np.load(reference))
        for key in ("num_sequences", "documents_read", "dropped_tail_tokens", "dtype"):
            assert one.identity["splits"][role][key] == stats[key]
    ident = one.identity["corpus"]
    assert ident["source"] == "files" and ident["layout"] == "named" and ident["file_count"] == 7


def test_max_tokens_reads_only_the_leading_shards(tmp_path, small_shards):
    docs = _write_file_set(tmp_path / "c4")
    cfg = _cfg(tmp_path, source="files", path=str(tmp_path / "c4"), max_train_tokens=100)
    corpus = load(cfg, CTX)
    rows_NL = np.asarray(corpus.train._rows_NL)
    assert rows_NL.shape == (6, CTX + 1)
    np.testing.assert_array_equal(rows_NL.reshape(-1), _stream(docs["train"])[:96])
    reference = pack_to_file(iter(docs["train"]), ByteTokenizer(), CTX + 1, 100, tmp_path / "r.npy")
    assert corpus.identity["splits"]["train"]["documents_read"] == reference["documents_read"]
    train_dir = Path(corpus.identity["splits"]["train"]["cache_file"])
    assert not (train_dir / "manifest.json").exists()  # the later shards were not needed
    assert len(list(train_dir.glob("*.json"))) < 5


def test_hash_split_parquet_folder_and_bad_records(tmp_path):
    root = tmp_path / "pq"
    root.mkdir()
    texts = _docs(80)
    pq.write_table(pa.table({"body": texts, "n": list(range(80))}), root / "part-0.parquet")
    cfg = _cfg(tmp_path, source="files", path=str(root), text_field="body", validation_fraction=0.2)
    corpus = load(cfg, CTX)
    assert corpus.identity["corpus"]["layout"] == "hash"
    for role in ("train", "validation"):
        want = [
            t for i, t in enumerate(texts) if hash_split(f"part-0.parquet:{i + 1}", 0.2) == role
        ]
        rows = np.asarray(getattr(corpus, role)._rows_NL).reshape(-1)
        np.testing.assert_array_equal(rows, _stream(want)[: rows.size])
    with pytest.raises(DataError, match=r"text_field: part-0.parquet has no column 'text'"):
        load(_cfg(tmp_path, source="files", path=str(root), cache_dir=str(tmp_path / "c2")), CTX)
    only_train = tmp_path / "only_train"
    only_train.mkdir()
    (only_train / "c4-train.0.jsonl").write_text(json.dumps({"text": "x"}) + "\n")
    with pytest.raises(DataError, match="has files named for one split but none for 'validation'"):
        load(_cfg(tmp_path, source="files", path=str(only_train)), CTX)


def test_mostly_undecodable_corpus_is_refused_with_one_message(tmp_path):
    root = tmp_path / "binary"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        data = bytes(rng.integers(0, 256, size=3000, dtype=np.uint8))  # random bytes
        (root / f"blob{i}.txt").write_bytes(data)
    with pytest.raises(DataError) as err:
        load(_cfg(tmp_path, source="text_folder", path=str(root), validation_fraction=0.3), CTX)
    assert len(err.value.problems) == 1
    assert "is mostly not UTF-8 text" in str(err.value) and "bytes could not be decoded" in str(
        err.value
    )
    # A few bad bytes in real text are replaced, counted, and accepted.
    (root / "blob0.txt").write_bytes(b"good text \xff\xfe and more good text " * 50)
    for i in range(1, 6):
        (root / f"blob{i}.txt").write_text("plain text " * 100 + str(i))
    corpus = load(
        _cfg(tmp_path, source="text_folder", path=str(root), validation_fraction=0.3), CTX
    )
    assert corpus.train.num_sequences > 0


@pytest.mark.parametrize("damage", ["header", "size", "digest", "record"])
def test_damaged_shard_is_detected_and_rebuilt(tmp_path, small_shards, damage, capfd):
    _write_file_set(tmp_path / "c4")
    cfg = _cfg(tmp_path, source="files", path=str(tmp_path / "c4"), workers=1)
    first = load(cfg, CTX)
    train_dir = Path(first.identity["splits"]["train"]["cache_file"])
    want_NL = np.asarray(first.train._rows_NL).copy()
    shard = train_dir / "00001.npy"
    data = bytearray(shard.read_bytes())
    if damage == "header":
        data[:6] = b"garbag"
    elif damage == "size":
        data = data[:-7]
    elif damage == "digest":
        data[-1] ^= 0x01
    if damage == "record":
        (train_dir / "00001.json").write_text("{not json")
    else:
        shard.write_bytes(bytes(data))
    capfd.readouterr()
    again = load(cfg, CTX)
    err = capfd.readouterr().err
    assert f"token shard {shard}" in err and "rebuilding it" in err
    np.testing.assert_array_equal(np.asarray(again.train._rows_NL), want_NL)
    assert (train_dir / "manifest.json").exists()


_KILLED_BUILD = """
import sys
from bsjax.data.token_cache import ensure_split
sys.path.insert(0, {tests!r})
from test_data_shards import _fifo_build
ensure_split(_fifo_build({root!r}), {cache!r}, workers=1)
"""


def _fifo_build(root) -> SplitBuild:
    """One shard per file of `root` (a.txt, b.txt, c.txt, d.txt), tokenized with bytes."""
    files = tuple(("train", f"{n}.txt") for n in "abcd")
    sizes = {rel: 1 for _, rel in files}
    job = ShardJob(str(root), "train", "text", 0.05, "bytes", "", "uint16", "", None)
    key = token_key({"source": "test", "root": str(root)}, ByteTokenizer().identity(), "train")
    return SplitBuild(key, plan_shards(files, sizes, "train", target_bytes=1), job, "test")


def test_killed_build_resumes_from_finished_shards(tmp_path):
    """SIGKILL a real build while it blocks on shard 2 (a FIFO); the rerun keeps shards 0-1."""
    root, cache = tmp_path / "docs", tmp_path / "cache"
    root.mkdir()
    texts = {n: f"document {n} " * (40 + i) for i, n in enumerate("abcd")}
    for n in "abd":
        (root / f"{n}.txt").write_text(texts[n])
    os.mkfifo(root / "c.txt")  # reading it blocks until someone writes
    code = _KILLED_BUILD.format(tests=str(REPO / "tests"), root=str(root), cache=str(cache))
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env={**os.environ, "JAX_PLATFORMS": "cpu"}
    )
    out_dir = Path(split_dir(str(cache), _fifo_build(root).key))
    try:
        deadline = time.monotonic() + 120
        while not (out_dir / "00001.json").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "build did not progress"
            time.sleep(0.1)
        time.sleep(0.3)
        assert proc.poll() is None  # still blocked on shard 2
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = {name: (out_dir / name).stat().st_mtime_ns for name in ("00000.npy", "00001.npy")}
    assert not (out_dir / "00002.json").exists() and not (out_dir / "manifest.json").exists()
    (root / "c.txt").unlink()
    (root / "c.txt").write_text(texts["c"])

    records = ensure_split(_fifo_build(root), str(cache), workers=1)
    assert [r["index"] for r in records] == [0, 1, 2, 3]
    assert {name: (out_dir / name).stat().st_mtime_ns for name in done} == done  # kept
    shards = [np.load(out_dir / f"{i:05d}.npy") for i in range(4)]
    np.testing.assert_array_equal(np.concatenate(shards), _stream([texts[n] for n in "abcd"]))
    assert (out_dir / "manifest.json").exists()
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_hosts_share_the_building_and_a_reader_waits(tmp_path):
    """Host 0 and host 1 build alternate shards; a non-building reader waits for all."""
    root, cache = tmp_path / "docs", tmp_path / "cache"
    root.mkdir()
    for n in "abcd":
        (root / f"{n}.txt").write_text(f"text {n} " * 30)
    build = _fifo_build(root)
    results = {}

    def run(name, **kwargs):
        results[name] = ensure_split(build, str(cache), workers=1, poll_s=0.05, **kwargs)

    reader = threading.Thread(target=run, args=("reader",), kwargs=dict(builder=False))
    reader.start()
    time.sleep(0.2)
    assert reader.is_alive() and "reader" not in results  # nothing built yet: it waits
    run("host1", host_index=1, num_hosts=2, wait=False)
    out_dir = Path(split_dir(str(cache), build.key))
    assert sorted(p.name for p in out_dir.glob("*.json")) == ["00001.json", "00003.json"]
    run("host0", host_index=0, num_hosts=2)
    reader.join(timeout=30)
    assert not reader.is_alive()
    assert (
        [r["index"] for r in results["host0"]]
        == [0, 1, 2, 3]
        == [r["index"] for r in results["reader"]]
    )
    assert (out_dir / "manifest.json").exists()


def test_packed_rows_cross_shard_boundaries():
    rng = np.random.default_rng(1)
    sizes = [0, 7, 23, 1, 0, 40, 5]
    shards = [rng.integers(0, 257, size=s).astype(np.uint16) for s in sizes]
    stream_T = np.concatenate(shards)
    for seq_len in (1, 3, 8, 16):
        rows = PackedRows(shards, seq_len)
        n = stream_T.size // seq_len
        want_NL = stream_T[: n * seq_len].reshape(n, seq_len)
        assert rows.shape == (n, seq_len)
        np.testing.assert_array_equal(np.asarray(rows), want_NL)
        picks = rng.integers(0, n, size=50)
        np.testing.assert_array_equal(rows[picks], want_NL[picks])
        np.testing.assert_array_equal(rows[2:5], want_NL[2:5])
        np.testing.assert_array_equal(rows[3], want_NL[3])
    capped = PackedRows(shards, 8, max_tokens=20)
    assert capped.shape == (2, 8)
    with pytest.raises(IndexError):
        capped[np.array([2])]


_NO_TENSORFLOW = """
import importlib.abc, importlib.machinery, sys

class WithoutTensorFlow(importlib.abc.MetaPathFinder):
    # The path finder, blind to TensorFlow and TFDS: as if they were not installed.

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tensorflow_datasets"):
            return None
        return importlib.machinery.PathFinder.find_spec(name, path, target)

sys.meta_path[:] = [
    WithoutTensorFlow() if f is importlib.machinery.PathFinder else f for f in sys.meta_path
]
assert importlib.util.find_spec("tensorflow") is None
sys.path.insert(0, {tests!r})
import train_helpers as th
from bsjax.train.loop import train

caches = dict(data_dir={tfds!r}, cache_dir={cache!r}, compile_cache_dir={xla!r})
cfg = th.config({corpus!r}, caches, train__max_steps=4, train__tensorboard=False)
cfg.data.source = "embedded"
cfg.data.max_train_tokens = 40000
cfg.data.max_validation_tokens = 4000
summary = train(cfg, {workdir!r})
assert summary["steps"] == 4, summary
try:
    from bsjax.data import load
    cfg.data.source, cfg.data.name = "tfds", "c4/en"
    load(cfg.data, 32)
except Exception as err:
    print("TFDS-ERROR:", type(err).__name__, err)
print("TF-LOADED:", [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tensorflow_datasets")])
"""


def test_trains_and_checkpoints_the_embedded_corpus_with_tensorflow_blocked(tmp_path):
    code = _NO_TENSORFLOW.format(
        tests=str(REPO / "tests"),
        tfds=str(tmp_path / "tfds"),
        cache=str(tmp_path / "cache"),
        xla=str(tmp_path / "xla"),
        corpus=str(tmp_path),
        workdir=str(tmp_path / "run"),
    )
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
    }
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "TF-LOADED: []" in proc.stdout
    assert "TFDS-ERROR: DataError" in proc.stdout and "pip install 'bsjax[tfds]'" in proc.stdout
    assert list((tmp_path / "run" / "checkpoints").iterdir())
    assert not (tmp_path / "tfds").exists()


def test_prepare_shared_by_two_hosts_then_training_load_tokenizes_nothing(tmp_path, capfd):
    """`python -m bsjax.data.prepare` on host 1 then host 0; a later load only reads."""
    corpus = tmp_path / "c4"
    _write_file_set(corpus)
    cache = tmp_path / "cache"
    command = [
        sys.executable,
        "-m",
        "bsjax.data.prepare",
        f"--config={REPO / 'tests' / 'configs' / 'tiny_test.py'}",
        "--config.data.source=files",
        f"--config.data.path={corpus}",
        f"--config.data.cache_dir={cache}",
        "--num_hosts=2",
    ]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    host1 = subprocess.run(command + ["--host_index=1"], env=env, capture_output=True, text=True)
    assert host1.returncode == 0, host1.stderr[-2000:]
    assert "this host's share" in host1.stdout
    assert not list(cache.glob("tokens/*/manifest.json"))  # host 0 has not run yet
    host0 = subprocess.run(command + ["--host_index=0"], env=env, capture_output=True, text=True)
    assert host0.returncode == 0, host0.stderr[-2000:]
    assert len(list(cache.glob("tokens/*/manifest.json"))) == 2
    capfd.readouterr()
    cfg = _cfg(tmp_path, source="files", path=str(corpus), cache_dir=str(cache))
    corpus_ = load(cfg, CTX)
    assert "tokenizing" not in capfd.readouterr().err  # every shard was there
    assert corpus_.train.num_sequences > 0
    bad = subprocess.run(command + ["--host_index=2"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "bsjax prepare: host_index: must be in [0, num_hosts=2), got 2"
