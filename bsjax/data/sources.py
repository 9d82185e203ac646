"""Corpus sources: where documents come from, in a fixed order, plus identity.

`open_source(data_cfg, data_dir)` returns a `DocumentSource` for the configured
source. File sources (embedded, text_folder, files) know their identity from
the files alone and are tokenized straight from the files, in parallel shards
and without TensorFlow (`token_cache`); the TFDS data sets of the embedded
corpus and of text folders are still built, on demand, by `LocalSource.builder`.
A registered TFDS data set (source="tfds", needs `pip install bsjax[tfds]`) is
read through `tfds.data_source` when its files are ArrayRecord (random access)
and through `tfds.load` otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from bsjax.data._tf import import_tensorflow, import_tfds
from bsjax.data.errors import DataError
from bsjax.data.files import plan_embedded, plan_text_folder

_READ_BATCH = 256  # documents fetched per data-source call


def _as_text(value, field: str, where: str) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value
    raise DataError(f"text_field: field {field!r} of {where} is {type(value).__name__}, not text")


def _texts_from_data_source(source, field: str, where: str) -> Iterator[str]:
    """Documents of a random-access source, in index order, fetched in batches."""
    n = len(source)
    for start in range(0, n, _READ_BATCH):
        records = source.__getitems__(list(range(start, min(start + _READ_BATCH, n))))
        for record in records:
            if field not in record:
                raise DataError(
                    f"text_field: {where} has no feature {field!r} (features: {', '.join(sorted(record))})"
                )
            yield _as_text(record[field], field, where)


class DocumentSource:
    """Documents of one corpus: `identity` (JSON dict) and `texts(split)` in corpus order."""

    identity: dict

    def texts(self, split: str) -> Iterator[str]:
        raise NotImplementedError


class FileSource(DocumentSource):
    """Documents read straight from files: `plan` (files per split) and each file's size."""

    def __init__(self, plan, sizes: dict[str, int] | None = None):
        self.plan = plan
        self.identity = dict(plan.identity)
        if sizes is None:
            root = Path(plan.root)
            sizes = {rel: (root / rel).stat().st_size for _, rel in plan.files}
        self.sizes = sizes

    def texts(self, split: str) -> Iterator[str]:
        from bsjax.data.documents import ReadStats, file_texts

        stats = ReadStats()
        for file_split, rel in self.plan.files:
            yield from file_texts(
                self.plan.root,
                file_split,
                rel,
                split,
                self.plan.text_field,
                self.plan.validation_fraction,
                stats,
            )


class LocalSource(FileSource):
    """The embedded corpus or a text folder; `builder` makes the same documents a TFDS data set.

    The identity names that TFDS data set (`tfds_name`), whether or not it was built.
    """

    def __init__(self, builder_name: str, plan, data_dir: Path):
        super().__init__(plan)
        self._builder_name = builder_name
        self.identity["tfds_name"] = f"{builder_name}/{plan.config_name}"
        self._data_dir = Path(data_dir)
        self._builder = None

    @property
    def builder(self):
        """The prepared TFDS builder (prepares it the first time)."""
        if self._builder is None:
            from bsjax.data import builders  # imports TFDS

            cls = {
                "bsjax_stdlib": builders.BsjaxStdlib,
                "bsjax_text_folder": builders.BsjaxTextFolder,
            }
            self._builder = builders.prepare_local(
                cls[self._builder_name], self.plan, self._data_dir
            )
        return self._builder


class TfdsSource(DocumentSource):
    """A registered TFDS data set by name, e.g. "c4/en" (prepared on first use)."""

    def __init__(self, name: str, data_dir: Path, text_field: str):
        try:
            tfds = import_tfds()
        except ImportError as err:
            raise DataError(
                f'source: source="tfds" (data set {name!r}) needs TensorFlow Datasets, which is '
                f"not installed ({err}); install it with `pip install 'bsjax[tfds]'`, or read "
                'the data set\'s files with source="files"'
            ) from err
        self._tfds = tfds
        self.name, self.text_field, self._data_dir = name, text_field, Path(data_dir)
        try:
            builder = tfds.builder(name, data_dir=str(data_dir))
        except Exception as err:  # TFDS raises several types for an unknown name
            raise DataError(f"name: TFDS data set {name!r} could not be found ({err})") from err
        if not builder.is_prepared():
            try:
                builder.download_and_prepare(
                    download_config=tfds.download.DownloadConfig(try_download_gcs=False)
                )
            except Exception as err:
                raise DataError(
                    f"name: TFDS data set {name!r} is not in {data_dir} and could not be prepared ({err})"
                ) from err
        self.builder = builder
        info = builder.info
        self.random_access = info.file_format == tfds.core.file_adapters.FileFormat.ARRAY_RECORD
        self.identity = {
            "source": "tfds",
            "name": name,
            "full_name": info.full_name,
            "version": str(info.version),
            "file_format": info.file_format.value,
            "text_field": text_field,
            "splits": {
                split: {"num_examples": int(s.num_examples), "num_bytes": int(s.num_bytes)}
                for split, s in sorted(info.splits.items())
            },
        }

    def texts(self, split: str) -> Iterator[str]:
        tfds = self._tfds
        where = f"{self.name} {split}"
        if self.random_access:
            source = tfds.data_source(
                self.name, split=split, data_dir=str(self._data_dir), download=False
            )
            return _texts_from_data_source(source, self.text_field, where)
        import_tensorflow()  # hide GPUs from TF before tfds.load starts it
        dataset = tfds.load(
            self.name,
            split=split,
            data_dir=str(self._data_dir),
            download=False,
            shuffle_files=False,
            read_config=tfds.ReadConfig(interleave_cycle_length=1),
        )
        return self._texts_from_tf(dataset, where)

    def _texts_from_tf(self, dataset, where: str) -> Iterator[str]:
        for record in self._tfds.as_numpy(dataset):
            if self.text_field not in record:
                raise DataError(
                    f"text_field: {where} has no feature {self.text_field!r} "
                    f"(features: {', '.join(sorted(record))})"
                )
            yield _as_text(record[self.text_field], self.text_field, where)


def open_source(data_cfg, data_dir: Path) -> DocumentSource:
    """The `DocumentSource` that `data_cfg.source` names."""
    if data_cfg.source == "embedded":
        return LocalSource("bsjax_stdlib", plan_embedded(data_cfg.validation_fraction), data_dir)
    if data_cfg.source == "text_folder":
        plan = plan_text_folder(data_cfg.path, data_cfg.validation_fraction, data_cfg.text_field)
        return LocalSource("bsjax_text_folder", plan, data_dir)
    if data_cfg.source == "files":
        from bsjax.data.file_sets import plan_files

        plan, sizes = plan_files(
            data_cfg.path,
            data_cfg.validation_fraction,
            data_cfg.text_field,
            data_cfg.train_split,
            data_cfg.validation_split,
        )
        return FileSource(plan, sizes)
    if data_cfg.source == "tfds":
        return TfdsSource(data_cfg.name, data_dir, data_cfg.text_field)
    raise DataError(f"source: unknown source {data_cfg.source!r}")
