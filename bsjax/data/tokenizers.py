"""Tokenizers: text -> int32 token ids, each with an end-of-document id.

`ByteTokenizer` (the default) needs no file. `SentencePieceTokenizer` and
`HFJsonTokenizer` load a model file from a local path; their identity carries
the file's sha256 so a packed-token cache is never reused across models.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from bsjax.data.errors import DataError

TOKENIZER_KINDS = ("bytes", "sentencepiece", "hf_json")

# Names an end-of-text token commonly has in a tokenizer.json, tried in order.
HF_EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "<|eos|>", "<|end_of_text|>", "[EOS]")


@runtime_checkable
class Tokenizer(Protocol):
    """What packing needs from a tokenizer."""

    vocab_size: int
    eos_id: int

    @property
    def name(self) -> str: ...

    def encode(self, text: str) -> np.ndarray:
        """Token ids of `text` (int32, 1-D), without BOS/EOS."""
        ...

    def identity(self) -> dict:
        """JSON-serialisable description that changes whenever the ids could."""
        ...


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _existing_file(path: str | Path, kind: str) -> Path:
    if not path:
        raise DataError(f'tokenizer_path: tokenizer "{kind}" needs the path of its model file')
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise DataError(f"tokenizer_path: {kind} model file {str(path)!r} does not exist")
    return resolved


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255, EOS = 256, vocab 257. Needs no file."""

    vocab_size = 257
    eos_id = 256
    name = "bytes"

    def encode(self, text: str) -> np.ndarray:
        """The UTF-8 bytes of `text` as int32 ids."""
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32)

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        """`encode` of each text (uint8 ids: every byte id fits)."""
        return [np.frombuffer(t.encode("utf-8"), dtype=np.uint8) for t in texts]

    def decode(self, ids) -> str:
        """Inverse of `encode` (EOS and invalid bytes are dropped/replaced)."""
        ids_N = np.asarray(ids)
        return bytes(ids_N[ids_N < 256].astype(np.uint8)).decode("utf-8", errors="replace")

    def identity(self) -> dict:
        return {"kind": "bytes", "vocab_size": self.vocab_size, "eos_id": self.eos_id}


class SentencePieceTokenizer:
    """A SentencePiece model (`.model` file); EOS is the model's own eos id."""

    name = "sentencepiece"

    def __init__(self, model_file: str | Path):
        import sentencepiece  # local: only this tokenizer needs it

        self.path = _existing_file(model_file, "sentencepiece")
        try:
            self._sp = sentencepiece.SentencePieceProcessor(model_file=str(self.path))
        except (OSError, RuntimeError) as err:
            raise DataError(
                f"tokenizer_path: {str(self.path)!r} is not a SentencePiece model ({err})"
            ) from err
        self.vocab_size = int(self._sp.get_piece_size())
        self.eos_id = int(self._sp.eos_id())
        if self.eos_id < 0:
            raise DataError(
                f"tokenizer_path: SentencePiece model {str(self.path)!r} has no EOS piece "
                "(trained with eos_id=-1); retrain it with an eos id"
            )
        self._sha256 = _file_sha256(self.path)

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self._sp.encode(text, out_type=int), dtype=np.int32)

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        """`encode` of each text, in one call."""
        return [np.asarray(ids, dtype=np.int32) for ids in self._sp.encode(texts, out_type=int)]

    def decode(self, ids) -> str:
        return self._sp.decode([int(i) for i in ids])

    def identity(self) -> dict:
        return {
            "kind": "sentencepiece",
            "path": str(self.path),
            "sha256": self._sha256,
            "vocab_size": self.vocab_size,
            "eos_id": self.eos_id,
        }


class HFJsonTokenizer:
    """A Hugging Face `tokenizer.json` loaded with the `tokenizers` package.

    EOS is `eos_token` when given, else the first of `HF_EOS_CANDIDATES` that
    the vocabulary holds.
    """

    name = "hf_json"

    def __init__(self, tokenizer_json_path: str | Path, eos_token: str | None = None):
        import tokenizers  # local: only this tokenizer needs it

        self.path = _existing_file(tokenizer_json_path, "hf_json")
        try:
            self._tok = tokenizers.Tokenizer.from_file(str(self.path))
        except Exception as err:  # the Rust side raises a plain Exception
            raise DataError(
                f"tokenizer_path: {str(self.path)!r} is not a tokenizer.json ({err})"
            ) from err
        candidates = (eos_token,) if eos_token else HF_EOS_CANDIDATES
        found = [(t, self._tok.token_to_id(t)) for t in candidates]
        found = [(t, i) for t, i in found if i is not None]
        if not found:
            raise DataError(
                f"tokenizer_path: {str(self.path)!r} has no end-of-text token; looked for "
                f"{', '.join(candidates)}"
            )
        self.eos_token, self.eos_id = found[0][0], int(found[0][1])
        vocab = self._tok.get_vocab(with_added_tokens=True)
        self.vocab_size = max(
            int(self._tok.get_vocab_size(with_added_tokens=True)), max(vocab.values()) + 1
        )
        self._sha256 = _file_sha256(self.path)

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self._tok.encode(text, add_special_tokens=False).ids, dtype=np.int32)

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        """`encode` of each text, in one call (the same ids as one by one)."""
        encoded = self._tok.encode_batch(texts, add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int32) for e in encoded]

    def decode(self, ids) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def identity(self) -> dict:
        return {
            "kind": "hf_json",
            "path": str(self.path),
            "sha256": self._sha256,
            "vocab_size": self.vocab_size,
            "eos_id": self.eos_id,
            "eos_token": self.eos_token,
        }


def make_tokenizer(kind: str, path: str = "") -> Tokenizer:
    """Build the tokenizer named by `kind` ("bytes", "sentencepiece", "hf_json").

    `path` is the model file (ignored for "bytes"). Raises `DataError` for an
    unknown kind or a missing file.
    """
    if kind == "bytes":
        return ByteTokenizer()
    if kind == "sentencepiece":
        return SentencePieceTokenizer(path)
    if kind == "hf_json":
        return HFJsonTokenizer(path)
    raise DataError(
        f"tokenizer: unknown tokenizer {kind!r}; use one of {', '.join(TOKENIZER_KINDS)}"
    )
