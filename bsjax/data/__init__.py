"""bsjax data: corpora (TFDS builders), tokenizers, packing and the example stream.

The trainer needs `load(data_cfg, ctx_len) -> Corpus`; configs embed
`default_data_config()` and check it with `validate_data_config`. Importing
this package does not import TensorFlow: TFDS is loaded only when a corpus
has to be built or read.
"""

from bsjax.data.config import default_data_config, validate_data_config
from bsjax.data.corpus import Corpus, load
from bsjax.data.errors import DataError
from bsjax.data.stream import ExampleStream
from bsjax.data.tokenizers import (
    ByteTokenizer,
    HFJsonTokenizer,
    SentencePieceTokenizer,
    Tokenizer,
    make_tokenizer,
)

__all__ = [
    "ByteTokenizer",
    "Corpus",
    "DataError",
    "ExampleStream",
    "HFJsonTokenizer",
    "SentencePieceTokenizer",
    "Tokenizer",
    "default_data_config",
    "load",
    "make_tokenizer",
    "validate_data_config",
]
