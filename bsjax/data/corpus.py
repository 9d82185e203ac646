"""The trainer's entry point: a data config and ctx_len in, a `Corpus` out.

File sources (embedded, text_folder, files) are tokenized in parallel shards
into the shared token cache (`token_cache`) and packed as a view over them
(`rows`): no TensorFlow. A TFDS data set by name is packed in one pass
(`packing`), through TFDS.
"""

from __future__ import annotations

from dataclasses import dataclass

from bsjax.data.config import resolve_cache_dir, resolve_data_dir, validate_data_config
from bsjax.data.errors import DataError
from bsjax.data.files import TRAIN, VALIDATION
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


def _too_short(tokens: int, seq_len: int) -> DataError:
    return DataError(
        f"split has {tokens} tokens, fewer than one sequence of {seq_len}; "
        "use a shorter ctx_len or more documents"
    )


def load(
    data_cfg,
    ctx_len: int,
    *,
    builder: bool = True,
    host_index: int = 0,
    num_hosts: int = 1,
) -> Corpus:
    """Validate `data_cfg`, build/reuse the token cache, return the packed `Corpus`.

    Raises `DataError` (a ValueError) listing every bad config key before any
    file is written. With `builder=False` (the processes of a multi-host run
    other than the first) nothing is tokenized: the call waits until the
    builder's shards are in the shared `data.cache_dir`. `host_index` and
    `num_hosts` share the tokenization between several builders.
    """
    problems = validate_data_config(data_cfg)
    if not isinstance(ctx_len, int) or isinstance(ctx_len, bool) or ctx_len <= 0:
        problems.append(f"ctx_len: must be a positive integer, got {ctx_len!r}")
    if problems:
        raise DataError(problems)
    seq_len = ctx_len + 1
    for key in ("max_train_tokens", "max_validation_tokens"):
        cap = getattr(data_cfg, key)
        if cap and cap < seq_len:
            raise DataError(f"max_tokens: {cap} is less than one sequence of {seq_len} tokens")
    tokenizer = make_tokenizer(data_cfg.tokenizer, data_cfg.tokenizer_path)
    from bsjax.data.sources import open_source

    source = open_source(data_cfg, resolve_data_dir(data_cfg))
    roles = {
        "train": (data_cfg.train_split, data_cfg.max_train_tokens),
        "validation": (data_cfg.validation_split, data_cfg.max_validation_tokens),
    }
    if data_cfg.source == "tfds":
        rows, stats = _pack_tfds(source, tokenizer, data_cfg, ctx_len, roles)
    else:
        rows, stats = _pack_files(
            source, tokenizer, data_cfg, seq_len, roles, builder, host_index, num_hosts
        )
    identity = {
        "corpus": source.identity,
        "tokenizer": tokenizer.identity(),
        "ctx_len": ctx_len,
        "shuffle_seed": data_cfg.shuffle_seed,
        "splits": {
            role: {"split": roles[role][0], "max_tokens": roles[role][1], **stats[role]}
            for role in roles
        },
    }
    return Corpus(
        train=ExampleStream(rows["train"], data_cfg.shuffle_seed),
        validation=ExampleStream(rows["validation"], data_cfg.shuffle_seed),
        tokenizer=tokenizer,
        vocab_size=tokenizer.vocab_size,
        identity=identity,
    )


def _pack_tfds(source, tokenizer, data_cfg, ctx_len, roles):
    from bsjax.data.packing import cache_key, load_or_pack, tokenizer_cache_identity

    cache_dir = resolve_cache_dir(data_cfg)
    rows, stats = {}, {}
    for role, (split, max_tokens) in roles.items():
        key = cache_key(
            source.identity, tokenizer_cache_identity(tokenizer), ctx_len, split, max_tokens
        )
        packed = load_or_pack(
            cache_dir, key, lambda split=split: source.texts(split), tokenizer, max_tokens
        )
        rows[role] = packed.tokens_NL
        stats[role] = {"cache_file": str(packed.path), **packed.stats}
    return rows, stats


def _documents_in_prefix(shards, records, usable: int, eos_id: int) -> int:
    """Documents that reach into the first `usable` tokens (as a one-pass packer counts)."""
    documents = seen = 0
    for shard, record in zip(shards, records):
        if seen + record["num_tokens"] <= usable:
            documents += record["num_documents"]
            seen += record["num_tokens"]
            continue
        head = shard[: usable - seen]
        documents += int((head == eos_id).sum()) + int(head.size > 0 and head[-1] != eos_id)
        break
    return documents


def split_builds(source, tokenizer, data_cfg) -> dict:
    """{role: SplitBuild} of a file source: the shards each split is tokenized into."""
    from bsjax.data.packing import token_dtype, tokenizer_cache_identity
    from bsjax.data.shards import ShardJob, plan_shards
    from bsjax.data.token_cache import SplitBuild, token_key

    plan = source.plan
    roles = {"train": data_cfg.train_split, "validation": data_cfg.validation_split}
    builds = {}
    for role, split in roles.items():
        # The files of a file set carry the canonical names; the config names matched them.
        label = {"train": TRAIN, "validation": VALIDATION}[role]
        label = label if data_cfg.source == "files" else split
        job = ShardJob(
            root=plan.root,
            split=label,
            text_field=plan.text_field,
            validation_fraction=plan.validation_fraction,
            tokenizer_kind=data_cfg.tokenizer,
            tokenizer_path=data_cfg.tokenizer_path,
            dtype=token_dtype(tokenizer.vocab_size).name,
            out_dir="",
            spec=None,
        )
        key = token_key(source.identity, tokenizer_cache_identity(tokenizer), label)
        specs = plan_shards(plan.files, source.sizes, label)
        builds[role] = SplitBuild(key, specs, job, f"tokenizing {data_cfg.source} {split}")
    return builds


def _pack_files(source, tokenizer, data_cfg, seq_len, roles, builder, host_index, num_hosts):
    from bsjax.data.rows import PackedRows
    from bsjax.data.shards import shard_names
    from bsjax.data.token_cache import ensure_split, open_shard, split_dir

    cache_dir = str(resolve_cache_dir(data_cfg))
    builds = split_builds(source, tokenizer, data_cfg)
    rows, stats = {}, {}
    for role, (_split, max_tokens) in roles.items():
        build = builds[role]
        cap = (max_tokens // seq_len) * seq_len
        records = ensure_split(
            build,
            cache_dir,
            max_tokens=cap,
            workers=data_cfg.workers,
            builder=builder,
            host_index=host_index,
            num_hosts=num_hosts,
        )
        out_dir = split_dir(cache_dir, build.key)
        shards = [open_shard(out_dir / shard_names(r["index"])[0]) for r in records]
        total = sum(r["num_tokens"] for r in records)
        if not shards or total // seq_len == 0 or (cap and min(total, cap) // seq_len == 0):
            raise _too_short(total, seq_len)
        packed = PackedRows(shards, seq_len, cap)
        usable = min(total, cap) if cap else total
        stats[role] = {
            "cache_file": str(out_dir),
            "num_sequences": packed.num_rows,
            "seq_len": seq_len,
            "num_tokens": packed.size,
            "documents_read": _documents_in_prefix(shards, records, usable, tokenizer.eos_id),
            "dropped_tail_tokens": usable - packed.size,
            "dtype": packed.dtype.name,
        }
        rows[role] = packed
    return rows, stats
