"""The embedded corpus (the interpreter's stdlib) tokenizes, packs exactly, is reused, and reports its identity."""

import hashlib
import json
import os
import platform
import sysconfig
import time
from pathlib import Path

import numpy as np
import pytest

from bsjax.data import default_data_config, load
from bsjax.data.files import hash_split

EXCLUDED = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}


def _stdlib_files():
    root = Path(sysconfig.get_paths()["stdlib"])
    rels = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in EXCLUDED]
        rels += [
            (Path(dirpath) / f).relative_to(root).as_posix() for f in filenames if f.endswith(".py")
        ]
    return root, sorted(rels)


@pytest.mark.slow
def test_embedded_corpus_builds_packs_and_is_reused(tmp_path):
    cfg = default_data_config()
    cfg.data_dir, cfg.cache_dir = str(tmp_path / "tfds"), str(tmp_path / "packed")
    start = time.perf_counter()
    corpus = load(cfg, ctx_len=512)
    print(f"embedded corpus first build + pack: {time.perf_counter() - start:.1f} s")

    root, rels = _stdlib_files()
    ident = corpus.identity["corpus"]
    assert ident["source"] == "embedded"
    assert ident["python_version"] == platform.python_version()
    assert ident["file_count"] == len(rels)
    digest, total = hashlib.sha256(), 0
    for rel in rels:
        data = (root / rel).read_bytes()
        total += len(data)
        digest.update(len(rel.encode()).to_bytes(8, "little") + rel.encode())
        digest.update(len(data).to_bytes(8, "little") + data)
    assert ident["total_bytes"] == total and ident["content_sha256"] == digest.hexdigest()
    assert f"py{platform.python_version().replace('.', '_')}_" in ident["tfds_name"]

    # Packed train rows are the byte stream of the train files, in sorted order, EOS after each.
    train_rels = [r for r in rels if hash_split(r, 0.05) == "train"]
    assert ident["split_documents"] == {
        "train": len(train_rels),
        "validation": len(rels) - len(train_rels),
    }
    stream_T = np.concatenate(
        [
            np.append(
                np.frombuffer(
                    (root / r).read_bytes().decode("utf-8", "replace").encode(), np.uint8
                ),
                256,
            )
            for r in train_rels
        ]
    )
    rows_NL = np.asarray(corpus.train._rows_NL)
    assert rows_NL.shape == (stream_T.size // 513, 513)
    np.testing.assert_array_equal(rows_NL.reshape(-1), stream_T[: rows_NL.size])
    assert corpus.vocab_size == 257 and corpus.identity["tokenizer"]["kind"] == "bytes"
    assert json.loads(json.dumps(corpus.identity)) == corpus.identity  # goes into config.json
    assert corpus.validation.validation_batches(4, 8).shape == (4, 8, 513)

    # Second load reuses the token cache (one folder per split, its manifest untouched);
    # the file path never builds a TFDS data set.
    cache_dir = Path(corpus.identity["splits"]["train"]["cache_file"])
    mtime = (cache_dir / "manifest.json").stat().st_mtime_ns
    again = load(cfg, ctx_len=512)
    assert again.identity == corpus.identity
    assert (cache_dir / "manifest.json").stat().st_mtime_ns == mtime
    assert len(list((tmp_path / "packed" / "tokens").iterdir())) == 2
    assert not (tmp_path / "tfds").exists()
    # A different split fraction is a different data set, not a silent reuse.
    cfg.validation_fraction = 0.1
    other = load(cfg, ctx_len=512)
    assert other.identity["corpus"]["tfds_name"] != ident["tfds_name"]
