"""TFDS builders for local corpora: the embedded stdlib corpus and text folders.

Both are real `tfds.core.GeneratorBasedBuilder`s writing ArrayRecord files
(random access through `tfds.data_source`), in a deterministic order
(`disable_shuffling=True`: documents keep sorted-path order). Each builder
config is named after the corpus identity (see `files.py`), so a different
Python or different files land in a different dataset dir instead of reusing
an old one. The identity is also stored in the dataset's metadata.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from etils import epath

from bsjax.data._tf import import_tfds
from bsjax.data.errors import DataError
from bsjax.data.files import TRAIN, VALIDATION, CorpusPlan, hash_split

tfds = import_tfds()

VERSION = "1.0.0"
FILE_FORMAT = "array_record"


@dataclasses.dataclass(eq=False)
class LocalFilesConfig(tfds.core.BuilderConfig):
    """A builder config carrying the plan (files per split, identity) it builds."""

    plan: CorpusPlan | None = dataclasses.field(default=None, repr=False)


class _LocalFilesBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Shared logic: documents are .py/.txt files, or lines of .jsonl files."""

    VERSION = tfds.core.Version(VERSION)
    _DESCRIPTION = ""

    # TFDS locates a packaged builder's code through `importlib_resources`,
    # which Python >= 3.9 installs do not need and often lack; say it directly.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        return epath.Path(__file__)

    @property
    def plan(self) -> CorpusPlan:
        plan = getattr(self.builder_config, "plan", None)
        if plan is None:
            raise DataError(
                f"{self.name}: build it through bsjax.data (prepare_local), which supplies the "
                "file plan; to read a prepared copy by name use tfds.builder(name, data_dir=...)"
            )
        return plan

    def _info(self):
        plan = self.plan
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"{self._DESCRIPTION}\n\nidentity: {json.dumps(plan.identity, sort_keys=True)}",
            features=tfds.features.FeaturesDict(
                {"text": tfds.features.Text(), "id": tfds.features.Text()}
            ),
            metadata=tfds.core.MetadataDict(identity=plan.identity),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # everything is local
        return {split: self._generate_examples(split) for split in (TRAIN, VALIDATION)}

    def _generate_examples(self, split):
        plan = self.plan
        root = Path(plan.root)
        for file_split, rel in plan.files:
            if rel.endswith(".jsonl"):
                if file_split and file_split != split:
                    continue
                for key, text in _jsonl_documents(root / rel, rel, plan.text_field):
                    if (file_split or hash_split(key, plan.validation_fraction)) == split:
                        yield key, {"text": text, "id": key}
            elif file_split == split:
                text = (root / rel).read_bytes().decode("utf-8", errors="replace")
                yield rel, {"text": text, "id": rel}


def _jsonl_documents(path: Path, rel: str, text_field: str):
    """(rel:line, text) for each non-blank line of a JSONL file.

    Binary mode splits on newline bytes only, matching `files.digest_files`.
    """
    with open(path, "rb") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{rel}:{line_no}"
            try:
                record = json.loads(line.decode("utf-8", errors="replace"))
            except json.JSONDecodeError as err:
                raise DataError(f"path: {where} is not valid JSON ({err})") from err
            if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
                raise DataError(
                    f"text_field: {where} has no string field {text_field!r}"
                    + (f" (keys: {', '.join(sorted(record))})" if isinstance(record, dict) else "")
                )
            yield where, record[text_field]


class BsjaxStdlib(_LocalFilesBuilder):
    """The embedded corpus: the running interpreter's standard-library `*.py` files."""

    _DESCRIPTION = (
        "Source files (*.py) of the running Python's standard library, without "
        "site-packages and test folders, in sorted path order; split by a hash of "
        "the relative path."
    )


class BsjaxTextFolder(_LocalFilesBuilder):
    """A local folder of .txt files (one document each) or .jsonl files (one per line)."""

    _DESCRIPTION = (
        "A local folder of .txt / .jsonl files; train/ and validation/ subfolders "
        "are the splits when present, otherwise a hash split."
    )


def prepare_local(builder_cls: type[_LocalFilesBuilder], plan: CorpusPlan, data_dir: Path):
    """Build (first time) or reuse the dataset for `plan` under `data_dir`; return the builder."""
    config = LocalFilesConfig(
        name=plan.config_name,
        description=f"{builder_cls.name} {plan.config_name}",
        plan=plan,
    )
    builder = builder_cls(data_dir=str(data_dir), config=config, file_format=FILE_FORMAT)
    if not builder.is_prepared():
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(try_download_gcs=False)
        )
    stored = dict(builder.info.metadata or {}).get("identity")
    if stored is not None and stored.get("content_sha256") != plan.identity["content_sha256"]:
        raise DataError(
            f"data_dir: {builder.data_dir} holds a different corpus than its name says; delete it"
        )
    return builder
