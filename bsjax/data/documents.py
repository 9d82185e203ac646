"""Documents out of corpus files, without TensorFlow: text, JSON lines, gzip, Parquet.

A file holds one document (`.txt`, `.py`: the whole file) or one per record
(`.jsonl`, `.jsonl.gz`, `.json.gz`: a JSON object a line; `.parquet`: a row),
whose text is the `text_field` key or column. Files are opened through
`etils.epath`, so a root may be a local folder or a URL (gs://, s3://, ...).

Each record has a key, "rel:line" (1-based line of a JSON-lines file, blank
lines counted but skipped) or "rel:row" (1-based row of a Parquet file); a
file whose split is "" sends each record to the split `hash_split(key)` picks.
Bytes that are not UTF-8 are replaced and counted, so a corpus of mostly
undecodable bytes can be refused.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass

from etils import epath

from bsjax.data.errors import DataError
from bsjax.data.files import hash_split

WHOLE_FILE_SUFFIXES = (".txt", ".py")
JSON_LINES_SUFFIXES = (".jsonl", ".jsonl.gz", ".json.gz")
PARQUET_SUFFIXES = (".parquet",)
CORPUS_SUFFIXES = WHOLE_FILE_SUFFIXES + JSON_LINES_SUFFIXES + PARQUET_SUFFIXES

_PARQUET_BATCH_ROWS = 4096

# Refuse a corpus with more undecodable bytes than this. Random bytes are about half
# undecodable (their ASCII half decodes); text, even with stray Latin-1, has next to none.
MAX_UNDECODABLE_FRACTION = 0.2


@dataclass
class ReadStats:
    """What reading some files saw: bytes read and bytes that were not UTF-8."""

    source_bytes: int = 0
    undecodable_bytes: int = 0
    documents: int = 0

    def decode(self, data: bytes) -> str:
        """`data` as text; invalid UTF-8 bytes become U+FFFD and are counted."""
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            kept = len(data.decode("utf-8", errors="ignore").encode("utf-8"))
            self.undecodable_bytes += len(data) - kept
            return data.decode("utf-8", errors="replace")


def _open_bytes(path: epath.Path, rel: str):
    raw = path.open("rb")
    return gzip.open(raw) if rel.endswith(".gz") else raw


def _json_lines_texts(path, rel, file_split, split, text_field, fraction, stats) -> Iterator[str]:
    with _open_bytes(path, rel) as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            key = f"{rel}:{line_no}"
            if (file_split or hash_split(key, fraction)) != split:
                continue
            stats.source_bytes += len(line)
            try:
                record = json.loads(stats.decode(line))
            except json.JSONDecodeError as err:
                raise DataError(f"path: {key} is not valid JSON ({err})") from err
            if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
                raise DataError(
                    f"text_field: {key} has no string field {text_field!r}"
                    + (f" (keys: {', '.join(sorted(record))})" if isinstance(record, dict) else "")
                )
            yield record[text_field]


def _parquet_texts(path, rel, file_split, split, text_field, fraction, stats) -> Iterator[str]:
    import pyarrow.parquet as pq  # local: only Parquet corpora need it

    with path.open("rb") as raw:
        data = raw.read()
    stats.source_bytes += len(data)
    try:
        table = pq.ParquetFile(io.BytesIO(data))
    except Exception as err:  # pyarrow raises ArrowInvalid and friends
        raise DataError(f"path: {rel} is not a Parquet file ({err})") from err
    names = table.schema_arrow.names
    if text_field not in names:
        raise DataError(f"text_field: {rel} has no column {text_field!r} (columns: {names})")
    row = 0
    for batch in table.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=[text_field]):
        for value in batch.column(0).to_pylist():
            row += 1
            key = f"{rel}:{row}"
            if (file_split or hash_split(key, fraction)) != split:
                continue
            if isinstance(value, bytes):
                value = stats.decode(value)
            if not isinstance(value, str):
                raise DataError(f"text_field: {key} column {text_field!r} is not text ({value!r})")
            yield value


def file_texts(
    root: str,
    file_split: str,
    rel: str,
    split: str,
    text_field: str,
    validation_fraction: float,
    stats: ReadStats,
) -> Iterator[str]:
    """The documents of file `root/rel` that belong to `split`, in file order.

    `file_split` is the split the whole file belongs to, or "" to split its
    records by key hash. Raises `DataError` for a record without `text_field`.
    """
    path = epath.Path(root) / rel
    if rel.endswith(WHOLE_FILE_SUFFIXES):
        if file_split != split:
            return
        data = path.read_bytes()
        stats.source_bytes += len(data)
        stats.documents += 1
        yield stats.decode(data)
        return
    if rel.endswith(JSON_LINES_SUFFIXES):
        reader = _json_lines_texts
    elif rel.endswith(PARQUET_SUFFIXES):
        reader = _parquet_texts
    else:
        raise DataError(f"path: {rel} is not a corpus file ({', '.join(CORPUS_SUFFIXES)})")
    if file_split and file_split != split:
        return
    for text in reader(path, rel, file_split, split, text_field, validation_fraction, stats):
        stats.documents += 1
        yield text
