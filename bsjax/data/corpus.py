"""The trainer's entry point: a data config and ctx_len in, a `Corpus` out."""

from __future__ import annotations

from dataclasses import dataclass

from bsjax.data.config import resolve_cache_dir, resolve_data_dir, validate_data_config
from bsjax.data.errors import DataError
from bsjax.data.packing import cache_key, load_or_pack, tokenizer_cache_identity
from bsjax.data.sources import open_source
from bsjax.data.stream import ExampleStream
from bsjax.data.tokenizers import Tokenizer, make_tokenizer


@dataclass
class Corpus:
    """Packed train and validation streams of one corpus and tokenizer.

    `identity` is JSON-serialisable (corpus, tokenizer, ctx_len, per-split
    packing stats): the trainer writes it into each run's config.json.
    """

    train: ExampleStream
    validation: ExampleStream
    tokenizer: Tokenizer
    vocab_size: int
    identity: dict


def load(data_cfg, ctx_len: int) -> Corpus:
    """Validate `data_cfg`, build/reuse the corpus and packed caches, return a `Corpus`.

    Raises `DataError` (a ValueError) listing every bad config key before any
    file is written.
    """
    problems = validate_data_config(data_cfg)
    if not isinstance(ctx_len, int) or isinstance(ctx_len, bool) or ctx_len <= 0:
        problems.append(f"ctx_len: must be a positive integer, got {ctx_len!r}")
    if problems:
        raise DataError(problems)
    tokenizer = make_tokenizer(data_cfg.tokenizer, data_cfg.tokenizer_path)
    source = open_source(data_cfg, resolve_data_dir(data_cfg))
    cache_dir = resolve_cache_dir(data_cfg)
    tok_identity = tokenizer_cache_identity(tokenizer)

    roles = {
        "train": (data_cfg.train_split, data_cfg.max_train_tokens),
        "validation": (data_cfg.validation_split, data_cfg.max_validation_tokens),
    }
    packed = {}
    for role, (split, max_tokens) in roles.items():
        key = cache_key(source.identity, tok_identity, ctx_len, split, max_tokens)
        packed[role] = load_or_pack(
            cache_dir, key, lambda split=split: source.texts(split), tokenizer, max_tokens
        )

    identity = {
        "corpus": source.identity,
        "tokenizer": tokenizer.identity(),
        "ctx_len": ctx_len,
        "shuffle_seed": data_cfg.shuffle_seed,
        "splits": {
            role: {
                "split": roles[role][0],
                "max_tokens": roles[role][1],
                "cache_file": str(p.path),
                **p.stats,
            }
            for role, p in packed.items()
        },
    }
    return Corpus(
        train=ExampleStream(packed["train"].tokens_NL, data_cfg.shuffle_seed),
        validation=ExampleStream(packed["validation"].tokens_NL, data_cfg.shuffle_seed),
        tokenizer=tokenizer,
        vocab_size=tokenizer.vocab_size,
        identity=identity,
    )
