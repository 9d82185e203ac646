"""Packing: exact concatenation with EOS, max_tokens, dtype, atomic and reused cache."""

import json

import numpy as np
import pytest

from bsjax.data import ByteTokenizer, DataError
from bsjax.data.packing import cache_key, load_or_pack, pack_to_file, token_dtype

DOCS = [f"document {i}: " + "xyz" * (i % 7) + "\n" + "é" * (i % 3) for i in range(60)]


def _stream(docs, tok):
    return np.concatenate([np.append(tok.encode(d), tok.eos_id) for d in docs])


def _key(split="train", ctx_len=15, max_tokens=0, corpus_sha="abc"):
    return cache_key(
        {"source": "test", "content_sha256": corpus_sha},
        ByteTokenizer().identity(),
        ctx_len,
        split,
        max_tokens,
    )


class CountingDocs:
    """A document iterable factory that records how often it was opened."""

    def __init__(self, docs, fail_after=None):
        self.docs, self.fail_after, self.opened = docs, fail_after, 0

    def __call__(self):
        self.opened += 1
        for i, doc in enumerate(self.docs):
            if self.fail_after is not None and i == self.fail_after:
                raise KeyboardInterrupt("simulated kill")
            yield doc


@pytest.mark.parametrize("seq_len", [2, 16, 33, 100])
def test_packed_tokens_are_the_document_stream_prefix(tmp_path, seq_len):
    tok = ByteTokenizer()
    out = tmp_path / "p.npy"
    stats = pack_to_file(iter(DOCS), tok, seq_len, 0, out)
    rows_NL = np.load(out)
    stream_T = _stream(DOCS, tok)
    n = stream_T.size // seq_len
    assert rows_NL.shape == (n, seq_len) and rows_NL.dtype == np.uint16
    np.testing.assert_array_equal(rows_NL.reshape(-1), stream_T[: n * seq_len])
    assert (
        stats["num_sequences"] == n and stats["dropped_tail_tokens"] == stream_T.size - n * seq_len
    )
    assert (rows_NL == tok.eos_id).sum() == (stream_T[: n * seq_len] == tok.eos_id).sum() > 0


def test_max_tokens_stops_early_and_rounds_to_whole_rows(tmp_path):
    tok = ByteTokenizer()
    opened = []

    def docs():
        for d in DOCS:
            opened.append(d)
            yield d

    stats = pack_to_file(docs(), tok, 16, 100, tmp_path / "p.npy")
    rows_NL = np.load(tmp_path / "p.npy")
    assert rows_NL.shape == (6, 16)  # floor(100 / 16) rows
    np.testing.assert_array_equal(rows_NL.reshape(-1), _stream(DOCS, tok)[:96])
    assert len(opened) < len(DOCS) and stats["documents_read"] == len(opened)
    with pytest.raises(DataError, match="max_tokens: 10 is less than one sequence of 16"):
        pack_to_file(iter(DOCS), tok, 16, 10, tmp_path / "q.npy")


def test_too_few_tokens_for_one_row(tmp_path):
    with pytest.raises(DataError, match="fewer than one sequence of 513"):
        pack_to_file(iter(["tiny"]), ByteTokenizer(), 513, 0, tmp_path / "p.npy")
    assert list(tmp_path.iterdir()) == []


def test_token_dtype():
    assert token_dtype(257) == np.uint16 and token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.int32 and token_dtype(200_000) == np.int32


def test_cache_is_reused_and_keyed(tmp_path):
    tok = ByteTokenizer()
    docs = CountingDocs(DOCS)
    first = load_or_pack(tmp_path, _key(), docs, tok, 0)
    again = load_or_pack(tmp_path, _key(), docs, tok, 0)
    assert first.built and not again.built and docs.opened == 1
    assert first.path == again.path
    np.testing.assert_array_equal(np.asarray(first.tokens_NL), np.asarray(again.tokens_NL))
    assert isinstance(again.tokens_NL, np.memmap)
    meta = json.loads(first.path.with_suffix(".json").read_text())
    assert (
        meta["key"]["ctx_len"] == 15 and meta["stats"]["num_sequences"] == first.tokens_NL.shape[0]
    )
    # Anything in the key gives its own cache entry.
    for other in (
        _key(split="validation"),
        _key(ctx_len=7),
        _key(max_tokens=64),
        _key(corpus_sha="abd"),
    ):
        assert load_or_pack(tmp_path, other, docs, tok, other["max_tokens"]).built
    assert docs.opened == 5


def test_killed_build_leaves_no_cache_and_next_build_completes(tmp_path):
    tok = ByteTokenizer()
    killed = CountingDocs(DOCS, fail_after=30)
    with pytest.raises(KeyboardInterrupt):
        load_or_pack(tmp_path, _key(), killed, tok, 0)
    assert list(tmp_path.iterdir()) == []  # no .npy, no temp files
    good = CountingDocs(DOCS)
    packed = load_or_pack(tmp_path, _key(), good, tok, 0)
    assert packed.built and good.opened == 1
    np.testing.assert_array_equal(
        np.asarray(packed.tokens_NL).reshape(-1), _stream(DOCS, tok)[: packed.tokens_NL.size]
    )


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "unreadable"),
        (lambda p: p.write_bytes(b"\x93NUMPY garbage" * 40), "unreadable"),
        (lambda p: p.write_bytes(p.read_bytes()[:-1] + b"\xff"), "SHA-256"),
    ],
    ids=["truncated", "garbage", "flipped_byte"],
)
def test_damaged_cache_is_rebuilt_with_a_warning(tmp_path, caplog, damage, reason):
    tok = ByteTokenizer()
    docs = CountingDocs(DOCS)
    first = load_or_pack(tmp_path, _key(), docs, tok, 0)
    expected = np.asarray(first.tokens_NL).copy()
    damage(first.path)
    with caplog.at_level("WARNING"):
        again = load_or_pack(tmp_path, _key(), docs, tok, 0)
    assert again.built and docs.opened == 2
    assert any(reason in r.message and "rebuilding" in r.message for r in caplog.records)
    np.testing.assert_array_equal(np.asarray(again.tokens_NL), expected)


def test_a_corpus_of_random_bytes_is_refused(tmp_path):
    garbage = [
        bytes(np.random.RandomState(i).randint(0, 256, 2000, dtype=np.uint8)).decode(
            "utf-8", errors="replace"
        )
        for i in range(4)
    ]
    with pytest.raises(DataError, match="mostly not text"):
        load_or_pack(tmp_path, _key(), CountingDocs(garbage), ByteTokenizer(), 0)
    assert not list(tmp_path.glob("*.npy"))
