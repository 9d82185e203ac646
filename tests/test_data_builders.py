"""TFDS builders: text folders (.txt / .jsonl, hash or subfolder split), identity, load by name."""

import json
from pathlib import Path

import numpy as np
import pytest

from bsjax.data import ByteTokenizer, DataError, default_data_config, load
from bsjax.data._tf import import_tfds
from bsjax.data.files import hash_split, plan_text_folder
from bsjax.data.sources import open_source

tfds = import_tfds()
CTX = 15


class BsjaxTestNumbers(tfds.core.GeneratorBasedBuilder):
    """A registered builder defined here, to be prepared locally and then loaded by name."""

    VERSION = tfds.core.Version("1.0.0")

    # Same work-around as bsjax.data.builders: skip TFDS's importlib_resources lookup.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        from etils import epath

        return epath.Path(__file__)

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({"content": tfds.features.Text(), "n": np.int64}),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        return {
            "train": self._generate_examples(0, 80),
            "validation": self._generate_examples(80, 100),
        }

    def _generate_examples(self, start, stop):
        for i in range(start, stop):
            yield i, {"content": f"number {i};" * (i % 5 + 1), "n": i}


def _numbers_docs(start, stop):
    return [f"number {i};" * (i % 5 + 1) for i in range(start, stop)]


def _write_txt_folder(root: Path, count=24):
    for i in range(count):
        sub = root / ("deep" if i % 3 == 0 else "")
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"doc{i:02d}.txt").write_text(f"text file {i}\n" + "abc " * i, encoding="utf-8")
    (root / "ignored.md").write_text("not a corpus file")
    return root


def _cfg(tmp_path, **overrides):
    cfg = default_data_config()
    cfg.data_dir = str(tmp_path / "tfds")
    cfg.cache_dir = str(tmp_path / "packed")
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


def _split_docs(source, split):
    ds = source.builder.as_data_source(split=split)
    records = ds.__getitems__(list(range(len(ds))))
    return [r["id"].decode() for r in records], [r["text"].decode() for r in records]


def _tokens(docs):
    tok = ByteTokenizer()
    return np.concatenate([np.append(tok.encode(d), tok.eos_id) for d in docs])


def test_txt_folder_hash_split_is_deterministic_and_complete(tmp_path):
    root = _write_txt_folder(tmp_path / "corpus")
    cfg = _cfg(tmp_path, source="text_folder", path=str(root), validation_fraction=0.3)
    source = open_source(cfg, tmp_path / "tfds")
    rels = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.txt"))
    expected_val = [r for r in rels if hash_split(r, 0.3) == "validation"]
    assert 0 < len(expected_val) < len(rels)
    train_ids, train_texts = _split_docs(source, "train")
    val_ids, _ = _split_docs(source, "validation")
    assert val_ids == expected_val  # sorted path order, hash-chosen
    assert train_ids == [r for r in rels if r not in expected_val]
    assert train_texts == [(root / r).read_text() for r in train_ids]
    # A second build elsewhere makes the same split, with the same identity.
    other = open_source(
        _cfg(tmp_path, source="text_folder", path=str(root), validation_fraction=0.3),
        tmp_path / "tfds2",
    )
    assert _split_docs(other, "validation")[0] == expected_val
    assert other.identity == source.identity
    meta = source.builder.info.metadata["identity"]
    assert meta["content_sha256"] == source.identity["content_sha256"] and meta[
        "file_count"
    ] == len(rels)


def test_jsonl_lines_are_documents_split_by_line(tmp_path):
    root = tmp_path / "jsonl"
    root.mkdir()
    lines = [json.dumps({"content": f"record {i} " + "z" * i, "other": i}) for i in range(40)]
    (root / "a.jsonl").write_text(
        "\n".join(lines[:25]) + "\n\n", encoding="utf-8"
    )  # trailing blank line
    (root / "b.jsonl").write_text("\n".join(lines[25:]) + "\n", encoding="utf-8")
    cfg = _cfg(
        tmp_path,
        source="text_folder",
        path=str(root),
        text_field="content",
        validation_fraction=0.25,
    )
    source = open_source(cfg, tmp_path / "tfds")
    keys = [f"a.jsonl:{i + 1}" for i in range(25)] + [f"b.jsonl:{i + 1}" for i in range(15)]
    texts = [json.loads(line)["content"] for line in lines]
    for split in ("train", "validation"):
        ids, got = _split_docs(source, split)
        want = [(k, t) for k, t in zip(keys, texts) if hash_split(k, 0.25) == split]
        assert list(zip(ids, got)) == want and want
    corpus = load(cfg, CTX)
    train_docs = [t for k, t in zip(keys, texts) if hash_split(k, 0.25) == "train"]
    rows = np.asarray(corpus.train._rows_NL).reshape(-1)
    np.testing.assert_array_equal(rows, _tokens(train_docs)[: rows.size])
    assert corpus.identity["corpus"]["text_field"] == "content"


def test_identity_and_dataset_dir_change_when_a_file_changes(tmp_path):
    root = _write_txt_folder(tmp_path / "corpus", count=12)
    before = plan_text_folder(root, 0.3, "text")
    assert plan_text_folder(root, 0.3, "text").identity == before.identity  # stable
    cfg = _cfg(tmp_path, source="text_folder", path=str(root), validation_fraction=0.3)
    first = load(cfg, CTX)
    (root / "doc01.txt").write_text("changed!", encoding="utf-8")
    after = plan_text_folder(root, 0.3, "text")
    assert after.identity["content_sha256"] != before.identity["content_sha256"]
    assert after.identity["file_count"] == before.identity["file_count"]
    assert after.config_name != before.config_name
    second = load(cfg, CTX)
    assert second.identity["corpus"] != first.identity["corpus"]
    assert second.identity["corpus"]["tfds_name"].endswith(after.config_name)
    assert (
        second.identity["splits"]["train"]["cache_file"]
        != first.identity["splits"]["train"]["cache_file"]
    )


def test_train_and_validation_subfolders_are_the_splits(tmp_path):
    root = tmp_path / "sub"
    for split, n in (("train", 5), ("validation", 2)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            (root / split / f"{i}.txt").write_text(f"{split} {i} " * 10)
    (root / "stray.txt").write_text("outside both splits")
    source = open_source(_cfg(tmp_path, source="text_folder", path=str(root)), tmp_path / "tfds")
    assert _split_docs(source, "train")[0] == [f"train/{i}.txt" for i in range(5)]
    assert _split_docs(source, "validation")[0] == ["validation/0.txt", "validation/1.txt"]
    assert source.identity["layout"] == "subfolders"
    (root / "validation" / "0.txt").unlink()
    (root / "validation" / "1.txt").unlink()
    (root / "validation").rmdir()
    with pytest.raises(DataError, match="has a train/ subfolder but no validation/"):
        plan_text_folder(root, 0.05, "text")


def test_bad_folders_give_clear_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="holds no .txt or .jsonl files"):
        plan_text_folder(empty, 0.05, "text")
    bad = tmp_path / "bad"
    bad.mkdir()
    good = [json.dumps({"text": f"ok {i}"}) for i in range(30)]
    (bad / "x.jsonl").write_text("\n".join(good[:1] + ['{"body": "no text here"}'] + good[1:]))
    with pytest.raises(
        DataError, match=r"text_field: x.jsonl:2 has no string field 'text' \(keys: body\)"
    ):
        load(_cfg(tmp_path, source="text_folder", path=str(bad), validation_fraction=0.3), CTX)
    one = tmp_path / "one"
    one.mkdir()
    (one / "only.txt").write_text("a single file always lands in one split " * 5)
    cfg = _cfg(
        tmp_path,
        source="text_folder",
        path=str(one),
        validation_fraction=0.01,
        data_dir=str(tmp_path / "tfds_one"),
    )
    with pytest.raises(DataError, match="validation split of folder .* would have no documents"):
        load(cfg, CTX)
    assert not (tmp_path / "tfds_one").exists()  # refused before any write


def test_text_folder_loaded_again_by_registered_name(tmp_path):
    """The folder built as a TFDS data set, read back by TFDS name: same packed rows as
    the files read directly (which builds no TFDS data set)."""
    root = _write_txt_folder(tmp_path / "corpus")
    cfg = _cfg(tmp_path, source="text_folder", path=str(root), validation_fraction=0.3)
    direct = load(cfg, CTX)
    assert not (tmp_path / "tfds").exists()
    _ = open_source(cfg, tmp_path / "tfds").builder  # build the TFDS data set
    name = direct.identity["corpus"]["tfds_name"]
    by_name = load(_cfg(tmp_path, source="tfds", name=name), CTX)
    assert by_name.identity["corpus"]["source"] == "tfds"
    assert by_name.identity["corpus"]["file_format"] == "array_record"
    for role in ("train", "validation"):
        np.testing.assert_array_equal(
            np.asarray(getattr(by_name, role)._rows_NL), np.asarray(getattr(direct, role)._rows_NL)
        )


@pytest.mark.parametrize("file_format,random_access", [("array_record", True), ("tfrecord", False)])
def test_registered_builder_by_name(tmp_path, file_format, random_access):
    """Prepare a registered builder locally, then load it by name (data_source or tfds.load)."""
    data_dir = tmp_path / "tfds"
    BsjaxTestNumbers(data_dir=str(data_dir), file_format=file_format).download_and_prepare()
    cfg = _cfg(
        tmp_path,
        source="tfds",
        name="bsjax_test_numbers",
        text_field="content",
        max_validation_tokens=64,
    )
    source = open_source(cfg, data_dir)
    assert source.random_access is random_access
    corpus = load(cfg, CTX)
    ident = corpus.identity["corpus"]
    assert ident["full_name"] == "bsjax_test_numbers/1.0.0" and ident["file_format"] == file_format
    assert ident["splits"]["train"]["num_examples"] == 80
    train = np.asarray(corpus.train._rows_NL).reshape(-1)
    np.testing.assert_array_equal(train, _tokens(_numbers_docs(0, 80))[: train.size])
    val = np.asarray(corpus.validation._rows_NL)
    assert val.shape == (4, CTX + 1)  # max_validation_tokens=64 -> 4 rows of 16
    np.testing.assert_array_equal(val.reshape(-1), _tokens(_numbers_docs(80, 100))[:64])
    with pytest.raises(DataError, match="text_field: .* has no feature 'text'"):
        load(
            _cfg(
                tmp_path, source="tfds", name="bsjax_test_numbers", cache_dir=str(tmp_path / "p2")
            ),
            CTX,
        )


def test_unknown_tfds_name(tmp_path):
    with pytest.raises(
        DataError, match="name: TFDS data set 'no_such_dataset_xyz' could not be found"
    ):
        load(_cfg(tmp_path, source="tfds", name="no_such_dataset_xyz"), CTX)


def test_prepared_dir_with_other_content_is_refused(tmp_path):
    """A dataset dir whose stored identity disagrees with its name is not silently reused."""
    root = _write_txt_folder(tmp_path / "corpus", count=12)
    cfg = _cfg(tmp_path, source="text_folder", path=str(root), validation_fraction=0.3)
    source = open_source(cfg, tmp_path / "tfds")
    meta_file = Path(source.builder.data_dir) / "metadata.json"
    meta = json.loads(meta_file.read_text())
    assert meta["identity"]["content_sha256"] == source.identity["content_sha256"]
    meta["identity"]["content_sha256"] = "0" * 64
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(DataError, match="holds a different corpus than its name says"):
        _ = open_source(cfg, tmp_path / "tfds").builder
