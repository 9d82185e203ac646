"""Tokenizers: byte round trip, real SentencePiece / tokenizer.json models trained here, errors."""

import numpy as np
import pytest

from bsjax.data import (
    ByteTokenizer,
    DataError,
    HFJsonTokenizer,
    SentencePieceTokenizer,
    Tokenizer,
    make_tokenizer,
)

TEXT = "def add(a, b):\n    return a + b  # sum, naïve ✓\n"
CORPUS_LINES = [
    "the quick brown fox jumps over the lazy dog",
    "def add(a, b): return a + b",
    "import numpy as np; x = np.zeros(3)",
    "critical batch size scales with data, not model size",
] * 50


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "corpus.txt"
    path.write_text("\n".join(CORPUS_LINES), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def sp_model(corpus_file):
    import sentencepiece as spm

    prefix = corpus_file.parent / "sp"
    spm.SentencePieceTrainer.train(
        input=str(corpus_file),
        model_prefix=str(prefix),
        vocab_size=80,
        model_type="bpe",
        character_coverage=1.0,
        eos_id=2,
        bos_id=1,
        unk_id=0,
        pad_id=-1,
        minloglevel=2,
    )
    return prefix.with_suffix(".model")


@pytest.fixture(scope="module")
def hf_json(corpus_file):
    from tokenizers import Tokenizer as HFTok
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = HFTok(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train([str(corpus_file)], trainer)
    path = corpus_file.parent / "tokenizer.json"
    tok.save(str(path))
    return path


def test_byte_tokenizer_round_trip_and_ids():
    tok = ByteTokenizer()
    ids = tok.encode(TEXT)
    assert ids.dtype == np.int32
    assert ids.tolist() == list(TEXT.encode("utf-8"))
    assert tok.decode(np.append(ids, tok.eos_id)) == TEXT
    assert (tok.vocab_size, tok.eos_id) == (257, 256)
    assert isinstance(tok, Tokenizer)
    assert tok.identity() == {"kind": "bytes", "vocab_size": 257, "eos_id": 256}


def test_sentencepiece_round_trip(sp_model):
    tok = make_tokenizer("sentencepiece", str(sp_model))
    assert isinstance(tok, SentencePieceTokenizer) and isinstance(tok, Tokenizer)
    ids = tok.encode(CORPUS_LINES[1])
    assert ids.dtype == np.int32 and ids.size < len(CORPUS_LINES[1])  # merges happened
    assert tok.eos_id == 2 and tok.eos_id not in ids.tolist()
    assert int(ids.max()) < tok.vocab_size == 80
    assert tok.decode(ids) == CORPUS_LINES[1]
    ident = tok.identity()
    assert ident["kind"] == "sentencepiece" and len(ident["sha256"]) == 64


def test_hf_json_round_trip(hf_json):
    tok = make_tokenizer("hf_json", str(hf_json))
    assert isinstance(tok, HFJsonTokenizer) and isinstance(tok, Tokenizer)
    ids = tok.encode(CORPUS_LINES[0])
    assert ids.dtype == np.int32 and ids.size < len(CORPUS_LINES[0])
    assert tok.eos_id == tok._tok.token_to_id("<|endoftext|>")
    assert int(ids.max()) < tok.vocab_size
    assert tok.decode(ids) == CORPUS_LINES[0]


def test_identity_follows_model_file_content(hf_json, tmp_path):
    copy = tmp_path / "tokenizer.json"
    copy.write_bytes(hf_json.read_bytes())
    a, b = HFJsonTokenizer(hf_json).identity(), HFJsonTokenizer(copy).identity()
    assert a["sha256"] == b["sha256"]
    copy.write_bytes(hf_json.read_bytes() + b"\n")  # same tokenizer, different file bytes
    assert HFJsonTokenizer(copy).identity()["sha256"] != a["sha256"]


def test_hf_json_without_eos_token_is_a_clear_error(hf_json):
    with pytest.raises(DataError, match="no end-of-text token"):
        HFJsonTokenizer(hf_json, eos_token="<not-there>")


def test_unknown_kind_and_missing_files(tmp_path):
    with pytest.raises(DataError, match="tokenizer: unknown tokenizer 'gpt'"):
        make_tokenizer("gpt", "")
    with pytest.raises(
        DataError, match="tokenizer_path: sentencepiece model file .* does not exist"
    ):
        make_tokenizer("sentencepiece", str(tmp_path / "nope.model"))
    with pytest.raises(DataError, match='tokenizer_path: tokenizer "hf_json" needs the path'):
        make_tokenizer("hf_json", "")
    junk = tmp_path / "junk.model"
    junk.write_text("not a model")
    with pytest.raises(DataError, match="is not a SentencePiece model"):
        make_tokenizer("sentencepiece", str(junk))
