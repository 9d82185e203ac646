"""Tokenize a run config's corpus into the shared token cache, ahead of training.

  python -m bsjax.data.prepare --config=configs/paper.py:151M \\
      --config.data.source=files --config.data.path=gs://bucket/c4/en \\
      --config.data.cache_dir=gs://bucket/bsjax_tokens [--host_index=I --num_hosts=N] [--verify]

Run it once, or on every host of a pod with `--host_index` and `--num_hosts`:
host i tokenizes the shards i, i + N, i + 2N, ... of each split, so the pod
tokenizes the corpus once, N times faster; host 0 then waits for the others and
writes each split's manifest. A killed run continues from its finished shards.
Training runs given the same data config and `data.cache_dir` find the shards
there and tokenize nothing. `--verify` checks the sha256 of every shard
already present (rebuilding damaged ones), however large the cache.
For file sources only (embedded, text_folder, files); TFDS data sets are
packed by the first training run.
"""

from __future__ import annotations

import sys

from absl import app, flags
from ml_collections import config_flags

from bsjax.data.config import resolve_cache_dir, validate_data_config
from bsjax.data.errors import DataError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Run config (configs/FILE.py[:ARG]).")
_HOST = flags.DEFINE_integer("host_index", 0, "This host's index among --num_hosts builders.")
_HOSTS = flags.DEFINE_integer("num_hosts", 1, "How many hosts share the tokenization.")
_VERIFY = flags.DEFINE_bool("verify", False, "Check the sha256 of every shard present.")


def prepare(data_cfg, host_index: int = 0, num_hosts: int = 1, verify: bool = False) -> dict:
    """Tokenize this host's share of both splits; returns {role: shards present}."""
    problems = validate_data_config(data_cfg)
    if data_cfg.source == "tfds":
        problems.append(
            'data.source: prepare reads file sources (embedded, text_folder, files); a "tfds" '
            "data set is packed by the first training run"
        )
    if not 0 <= host_index < num_hosts:
        problems.append(f"host_index: must be in [0, num_hosts={num_hosts}), got {host_index}")
    if problems:
        raise DataError(problems)
    from bsjax.data.config import resolve_data_dir
    from bsjax.data.corpus import split_builds
    from bsjax.data.sources import open_source
    from bsjax.data.token_cache import ensure_split
    from bsjax.data.tokenizers import make_tokenizer

    tokenizer = make_tokenizer(data_cfg.tokenizer, data_cfg.tokenizer_path)
    source = open_source(data_cfg, resolve_data_dir(data_cfg))
    caps = {"train": data_cfg.max_train_tokens, "validation": data_cfg.max_validation_tokens}
    present = {}
    for role, build in split_builds(source, tokenizer, data_cfg).items():
        records = ensure_split(
            build,
            str(resolve_cache_dir(data_cfg)),
            max_tokens=caps[role],
            workers=data_cfg.workers,
            host_index=host_index,
            num_hosts=num_hosts,
            wait=host_index == 0,
            verify_digests=True if verify else None,
        )
        present[role] = len(records)
        if host_index == 0:
            print(f"{build.label}: {len(records)} of {len(build.specs)} shards ready", flush=True)
        else:
            print(f"{build.label}: this host's share of {len(build.specs)} shards done", flush=True)
    return present


def main(argv) -> None:
    del argv
    try:
        prepare(_CONFIG.value.data, _HOST.value, _HOSTS.value, _VERIFY.value)
    except DataError as err:
        print(f"bsjax prepare: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    app.run(main)
