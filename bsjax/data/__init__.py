"""bsjax data: corpora, tokenizers, the parallel token cache, packing and the example stream.

The trainer needs `load(data_cfg, ctx_len) -> Corpus`; configs embed
`default_data_config()` and check it with `validate_data_config`. Neither
this package nor the path of the embedded corpus and of file sets imports
TensorFlow: TFDS (`pip install bsjax[tfds]`) is imported only for
source="tfds" or to build a TFDS data set of a local corpus. Names are
imported on first use, so that the tokenizer worker processes start light.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ByteTokenizer": "bsjax.data.tokenizers",
    "Corpus": "bsjax.data.corpus",
    "DataError": "bsjax.data.errors",
    "ExampleStream": "bsjax.data.stream",
    "HFJsonTokenizer": "bsjax.data.tokenizers",
    "SentencePieceTokenizer": "bsjax.data.tokenizers",
    "Tokenizer": "bsjax.data.tokenizers",
    "default_data_config": "bsjax.data.config",
    "load": "bsjax.data.corpus",
    "make_tokenizer": "bsjax.data.tokenizers",
    "validate_data_config": "bsjax.data.config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'bsjax.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
