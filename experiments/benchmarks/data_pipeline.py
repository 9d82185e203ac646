"""Tokens/s of the data pipeline (tokenize + pack, then read) against what the 151M preset consumes.

The corpus is synthetic and local: the interpreter's standard-library sources
written as a C4-style file set (`c4-train.NNNNN-of-NNNNN.json.gz` and
`.parquet` files of about 2 KB documents, one validation file), read through
`data.source="files"`. Nothing is downloaded. Two tokenizers: `bytes` (the
default of bsjax) and `bpe`, a byte-level BPE of GPT-NeoX's vocabulary size
(50,280) trained here on the first 8 MB of the corpus, as a stand-in for the
gpt-neox-20b tokenizer.json the paper's setting reads.

Measured, for 1, 2 and N worker processes (N: the CPUs of this machine):
  prepare  tokens/s of `bsjax.data.load` on an empty cache: list and fingerprint
           the files, tokenize every shard, write shards + manifest, open the rows.
  read     tokens/s of `ExampleStream.read` over consecutive global ids (shuffled
           rows), 256 rows a call: what the training loop pulls from the cache.
The 151M preset's consumption is the rate at 45% MFU of an H100 (989 TFLOP/s
dense bf16) per device, times 8 devices per GPU host (4 per TPU v4/v5p host):
  tokens/s/device = 0.45 * 989e12 / (6 * matmul params + 12 * layers * ctx * d_model).
The projection for 150B tokens on a 64-host pod shares the shards over the
hosts (`python -m bsjax.data.prepare --host_index i --num_hosts 64`), each host
tokenizing at the rate measured here with N workers.

  nice -n 19 python experiments/benchmarks/data_pipeline.py
  python experiments/benchmarks/data_pipeline.py --corpus-mb 16 --tokenizers bytes
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sysconfig
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from bench_common import measure_read

from bsjax import model as model_lib
from bsjax.data import default_data_config, load
from bsjax.data.token_cache import default_workers

DOC_BYTES = 2048  # about a C4 document
PEAK_FLOPS = 989e12  # H100 SXM dense bf16
MFU = 0.45
DEVICES_PER_HOST = {"GPU host (8 x H100)": 8, "TPU v4/v5p host": 4}
POD_HOSTS = 64
POD_TOKENS = 150e9
VOCAB = 50280


def _stdlib_documents():
    """~2 KB documents cut from the stdlib's .py files (tests included), endlessly, each
    copy marked so that no two documents are the same text."""
    root = Path(sysconfig.get_paths()["stdlib"])
    paths = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)
    copy = 0
    while True:
        for path in paths:
            text = path.read_text(encoding="utf-8", errors="replace")
            for start in range(0, len(text), DOC_BYTES):
                yield f"# copy {copy} of {path.name}:{start}\n" + text[start : start + DOC_BYTES]
        copy += 1


def write_corpus(root: Path, total_mb: int, files: int) -> int:
    """A C4-style file set of about `total_mb` MB; returns its text bytes."""
    root.mkdir(parents=True)
    docs = _stdlib_documents()
    per_file = total_mb * 2**20 // files
    written = 0

    def take(limit):
        nonlocal written
        out, size = [], 0
        while size < limit:
            doc = next(docs)
            out.append(doc)
            size += len(doc.encode())
        written += size
        return out

    for i in range(files):
        texts = take(per_file)
        name = f"c4-train.{i:05d}-of-{files:05d}"
        if i % 2:
            pq.write_table(pa.table({"text": texts}), root / f"{name}.parquet")
        else:
            with gzip.open(root / f"{name}.json.gz", "wt", encoding="utf-8", compresslevel=1) as f:
                f.writelines(json.dumps({"text": t, "url": ""}) + "\n" for t in texts)
    with gzip.open(root / "c4-validation.00000-of-00001.json.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": t}) + "\n" for t in take(per_file // 4))
    return written


def train_bpe(corpus: Path, out: Path) -> Path:
    """A byte-level BPE with VOCAB entries and <|endoftext|>, trained on ~8 MB of the corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    texts, size = [], 0
    with gzip.open(corpus / ("c4-train.00000-of-" + _files_suffix(corpus)), "rt") as f:
        for line in f:
            texts.append(json.loads(line)["text"])
            size += len(texts[-1])
            if size > 8e6:
                break
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.save(str(out))
    return out


def _files_suffix(corpus: Path) -> str:
    first = sorted(corpus.glob("c4-train.00000-of-*.json.gz"))[0].name
    return first.split("-of-")[1]


def data_config(corpus: Path, cache: Path, tokenizer: str, tokenizer_path: str, workers: int):
    cfg = default_data_config()
    cfg.source, cfg.path, cfg.cache_dir, cfg.workers = "files", str(corpus), str(cache), workers
    cfg.tokenizer = "bytes" if tokenizer == "bytes" else "hf_json"
    cfg.tokenizer_path = tokenizer_path
    return cfg


def measure_prepare(corpus, work, tokenizer, tokenizer_path, workers, ctx):
    cache = work / f"cache-{tokenizer}-{workers}"
    shutil.rmtree(cache, ignore_errors=True)
    start = time.perf_counter()
    data = load(data_config(corpus, cache, tokenizer, tokenizer_path, workers), ctx)
    seconds = time.perf_counter() - start
    tokens = 0
    for manifest in cache.glob("tokens/*/manifest.json"):
        tokens += json.loads(manifest.read_text())["num_tokens"]
    return data, tokens, seconds


def consumption_151m(ctx: int) -> tuple[float, dict, float]:
    cfg = model_lib.preset_config("151M", VOCAB, ctx)
    flops = model_lib.flops_per_token(cfg)
    return MFU * PEAK_FLOPS / flops, model_lib.count_params(cfg), flops


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus-mb", type=int, default=96, help="synthetic train text, MB")
    p.add_argument("--files", type=int, default=16, help="train files (shards)")
    p.add_argument("--tokenizers", default="bytes,bpe")
    p.add_argument("--workers", default="", help="comma list; default 1,2,N")
    p.add_argument("--ctx", type=int, default=512)
    p.add_argument("--workdir", default="", help="keep corpus and caches here")
    args = p.parse_args()
    cpus = default_workers()
    worker_counts = (
        [int(w) for w in args.workers.split(",")] if args.workers else sorted({1, 2, cpus})
    )

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        corpus = work / "corpus"
        if not corpus.exists():
            text_bytes = write_corpus(corpus, args.corpus_mb, args.files)
        else:
            text_bytes = None
        on_disk = sum(f.stat().st_size for f in corpus.iterdir())
        print(
            f"corpus: {corpus} ({args.files} train files + 1 validation, "
            f"{on_disk / 2**20:.1f} MiB on disk"
            + (f", {text_bytes / 2**20:.1f} MiB of text" if text_bytes else "")
            + f"); this machine: {cpus} CPUs"
        )
        per_device, params, flops = consumption_151m(args.ctx)
        print(
            f"151M preset at ctx {args.ctx}: N = {params['non_embedding']:,} non-embedding "
            f"({params['total']:,} total) parameters; FLOPs/token = 6 * matmul params + 12 * L * "
            f"ctx * d = {flops / 1e9:.3f} GFLOP"
        )
        print(
            f"consumption per device = {MFU} * {PEAK_FLOPS / 1e12:.0f} TFLOP/s / "
            f"{flops / 1e9:.3f} GFLOP = {per_device:,.0f} tokens/s"
        )
        hosts = {name: per_device * n for name, n in DEVICES_PER_HOST.items()}
        for name, rate in hosts.items():
            print(f"consumption per {name}: {rate:,.0f} tokens/s")
        gpu_host = hosts["GPU host (8 x H100)"]

        rows = []
        for tokenizer in args.tokenizers.split(","):
            tok_path = ""
            if tokenizer == "bpe":
                tok_path = str(work / "bpe_tokenizer.json")
                if not Path(tok_path).exists():
                    start = time.perf_counter()
                    train_bpe(corpus, Path(tok_path))
                    print(f"trained the BPE tokenizer in {time.perf_counter() - start:.1f} s")
            for workers in worker_counts:
                data, tokens, seconds = measure_prepare(
                    corpus, work, tokenizer, tok_path, workers, args.ctx
                )
                read_rate, _epochs = measure_read(data.train)
                rows.append((tokenizer, workers, tokens, seconds, tokens / seconds, read_rate))

    print()
    print(
        f"{'tokenizer':>9} {'workers':>7} {'tokens':>12} {'prepare s':>9} "
        f"{'prepare tok/s':>14} {'x GPU host':>10} {'read tok/s':>14} {'x GPU host':>10} "
        f"{'150B on 64 hosts':>16}"
    )
    for tokenizer, workers, tokens, seconds, rate, read_rate in rows:
        pod_s = POD_TOKENS / (POD_HOSTS * rate)
        print(
            f"{tokenizer:>9} {workers:>7} {tokens:>12,} {seconds:>9.1f} {rate:>14,.0f} "
            f"{rate / gpu_host:>10.2f} {read_rate:>14,.0f} {read_rate / gpu_host:>10.1f} "
            f"{_hours(pod_s):>16}"
        )
    print(
        f"\nx GPU host: the rate over {gpu_host:,.0f} tokens/s, what one 8-device host of the "
        f"151M preset consumes at {MFU:.0%} MFU (x {gpu_host / hosts['TPU v4/v5p host']:.0f} "
        "for a 4-chip TPU host).\n150B on 64 hosts: 150e9 / (64 * prepare tokens/s), each host "
        "tokenizing its 1/64 of the shards with that many workers."
    )


if __name__ == "__main__":
    main()
