"""The data section of a run's config: defaults, validation, resolved paths.

Nothing here imports TensorFlow or touches a file beyond existence checks, so
the trainer can validate the data config before it compiles anything.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import ml_collections

SOURCES = ("embedded", "text_folder", "files", "tfds")
FILE_SPLITS = ("train", "validation")  # the splits of the embedded and text_folder sources
TOKENIZERS = ("bytes", "sentencepiece", "hf_json")

DEFAULT_DATA_DIR = "~/.cache/bsjax/tensorflow_datasets"
DEFAULT_CACHE_DIR = "~/.cache/bsjax/packed"
DATA_DIR_ENV = "BSJAX_DATA_DIR"
CACHE_DIR_ENV = "BSJAX_CACHE_DIR"

# grain's index shuffle takes a 32-bit seed.
_MAX_SEED = 2**32


def default_data_config() -> ml_collections.ConfigDict:
    """The data config the base run config embeds (as `config.data`).

    Keys:
      source: "embedded" (the interpreter's standard library, nothing to
        download), "text_folder" (a folder of .txt / .jsonl files), "files"
        (a local or remote folder of .txt / .jsonl / .jsonl.gz / .json.gz /
        .parquet files, e.g. C4's published JSON-lines files) or "tfds" (any
        registered TFDS data set, by `name`; needs `pip install bsjax[tfds]`).
      name: TFDS name for source="tfds", e.g. "c4/en".
      path: the folder for source="text_folder", the folder or URL for "files".
      train_split, validation_split: split names (TFDS slicing syntax works).
      text_field: the document field (TFDS feature or JSONL key).
      tokenizer: "bytes" (default), "sentencepiece" or "hf_json".
      tokenizer_path: model file for sentencepiece / tokenizer.json for hf_json.
      data_dir: TFDS data dir; "" -> $BSJAX_DATA_DIR or ~/.cache/bsjax/tensorflow_datasets.
      cache_dir: token cache, a local path or a URL every host reads;
        "" -> $BSJAX_CACHE_DIR or ~/.cache/bsjax/packed.
      validation_fraction: share of documents held out by the hash split
        (embedded and text_folder sources).
      max_train_tokens, max_validation_tokens: cap on packed tokens per split;
        0 means the whole split.
      shuffle_seed: seed of the example stream's per-epoch shuffle.
      workers: tokenizer worker processes; 0 means one per CPU. Does not
        change the tokens (they are the same for any worker count).
    """
    return ml_collections.ConfigDict(
        dict(
            source="embedded",
            name="",
            path="",
            train_split="train",
            validation_split="validation",
            text_field="text",
            tokenizer="bytes",
            tokenizer_path="",
            data_dir="",
            cache_dir="",
            validation_fraction=0.05,
            max_train_tokens=0,
            max_validation_tokens=0,
            shuffle_seed=0,
            workers=0,  # tokenizer processes (0: one per CPU); the tokens do not depend on it
        )
    )


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_dict(data_cfg, expected) -> dict | None:
    """The keys and values of a ConfigDict, mapping or dataclass instance (None otherwise)."""
    if dataclasses.is_dataclass(data_cfg) and not isinstance(data_cfg, type):
        return {f.name: getattr(data_cfg, f.name) for f in dataclasses.fields(data_cfg)}
    if hasattr(data_cfg, "items"):
        return dict(data_cfg.items())
    if all(hasattr(data_cfg, key) for key in expected):  # any object with the attributes
        return {key: getattr(data_cfg, key) for key in expected}
    return None


def validate_data_config(data_cfg) -> list[str]:
    """Return one message per bad key of `data_cfg` (empty list when it is fine).

    `data_cfg` is a ConfigDict, a mapping or a dataclass with the keys of
    `default_data_config()` as fields. Checks types and ranges, known source
    and tokenizer kinds, and that the folder and tokenizer file named exist
    (a URL is not checked here). Reads no file content.
    """
    problems: list[str] = []
    expected = default_data_config()
    cfg = _as_dict(data_cfg, expected)
    if cfg is None:
        return [
            f"data config must be a ConfigDict, mapping or dataclass, got {type(data_cfg).__name__}"
        ]

    for key in sorted(set(cfg) - set(expected.keys())):
        problems.append(
            f"data.{key}: unknown key; known keys are {', '.join(sorted(expected.keys()))}"
        )
    for key in expected:
        if key not in cfg:
            problems.append(f"data.{key}: missing (default {expected[key]!r})")
    for key in (
        "source",
        "name",
        "path",
        "train_split",
        "validation_split",
        "text_field",
        "tokenizer",
        "tokenizer_path",
        "data_dir",
        "cache_dir",
    ):
        if key in cfg and not isinstance(cfg[key], str):
            problems.append(f"data.{key}: must be a string, got {cfg[key]!r}")
    if problems:
        return problems

    source = cfg["source"]
    if source not in SOURCES:
        problems.append(f"data.source: unknown source {source!r}; use one of {', '.join(SOURCES)}")
    elif source == "tfds" and not cfg["name"]:
        problems.append('data.name: source="tfds" needs a TFDS name, e.g. "c4/en"')
    elif source == "text_folder":
        if not cfg["path"]:
            problems.append(
                'data.path: source="text_folder" needs a folder of .txt or .jsonl files'
            )
        elif not Path(cfg["path"]).expanduser().is_dir():
            problems.append(f"data.path: folder {cfg['path']!r} does not exist")
    elif source == "files":
        if not cfg["path"]:
            problems.append(
                'data.path: source="files" needs a folder or URL of .txt, .jsonl, .jsonl.gz, '
                ".json.gz or .parquet files"
            )
        elif "://" not in cfg["path"] and not Path(cfg["path"]).expanduser().is_dir():
            problems.append(f"data.path: folder {cfg['path']!r} does not exist")
    if source in ("embedded", "text_folder"):
        for key in ("train_split", "validation_split"):
            if cfg[key] and cfg[key] not in FILE_SPLITS:
                problems.append(
                    f'data.{key}: source="{source}" has the splits {" and ".join(FILE_SPLITS)}, '
                    f"got {cfg[key]!r}"
                )

    for key in ("train_split", "validation_split", "text_field"):
        if not cfg[key]:
            problems.append(f"data.{key}: must not be empty")

    kind = cfg["tokenizer"]
    if kind not in TOKENIZERS:
        problems.append(
            f"data.tokenizer: unknown tokenizer {kind!r}; use one of {', '.join(TOKENIZERS)}"
        )
    elif kind != "bytes":
        tok_path = cfg["tokenizer_path"]
        if not tok_path:
            problems.append(
                f'data.tokenizer_path: tokenizer="{kind}" needs the path of its model file'
            )
        elif not Path(tok_path).expanduser().is_file():
            problems.append(f"data.tokenizer_path: file {tok_path!r} does not exist")

    fraction = cfg["validation_fraction"]
    if not _is_number(fraction) or not 0.0 < fraction < 1.0:
        problems.append(f"data.validation_fraction: must be a number in (0, 1), got {fraction!r}")
    for key in ("max_train_tokens", "max_validation_tokens"):
        value = cfg[key]
        if not _is_int(value) or value < 0:
            problems.append(f"data.{key}: must be an integer >= 0 (0 = whole split), got {value!r}")
    workers = cfg["workers"]
    if not _is_int(workers) or workers < 0:
        problems.append(f"data.workers: must be an integer >= 0 (0 = one per CPU), got {workers!r}")
    seed = cfg["shuffle_seed"]
    if not _is_int(seed) or not 0 <= seed < _MAX_SEED:
        problems.append(f"data.shuffle_seed: must be an integer in [0, 2**32), got {seed!r}")
    return problems


def _local_or_url(chosen: str) -> Path | str:
    """A local folder as an expanded Path; a URL (gs://...) unchanged (a Path would cut it)."""
    return chosen if "://" in str(chosen) else Path(chosen).expanduser()


def resolve_data_dir(data_cfg) -> Path | str:
    """TFDS data dir: the config key, else $BSJAX_DATA_DIR, else the default."""
    return _local_or_url(data_cfg.data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


def resolve_cache_dir(data_cfg) -> Path | str:
    """Token cache dir: the config key, else $BSJAX_CACHE_DIR, else the default."""
    return _local_or_url(data_cfg.cache_dir or os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR)
