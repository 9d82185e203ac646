"""Data config: defaults validate clean; each bad key gets its own message; dir resolution."""

from pathlib import Path

import pytest

from bsjax.data import DataError, default_data_config, load, validate_data_config
from bsjax.data.config import resolve_cache_dir, resolve_data_dir


def _cfg(**overrides):
    cfg = default_data_config()
    cfg.unlock()
    for key, value in overrides.items():
        if key in cfg:
            del cfg[key]  # allow type changes (a bad type is what we test)
        cfg[key] = value
    return cfg


def test_defaults_are_valid():
    cfg = default_data_config()
    assert validate_data_config(cfg) == []
    assert cfg.source == "embedded" and cfg.tokenizer == "bytes"
    assert cfg.validation_fraction == 0.05 and cfg.max_train_tokens == 0


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (
            dict(source="s3"),
            "data.source: unknown source 's3'; use one of embedded, text_folder, files, tfds",
        ),
        (dict(source="tfds", name=""), 'data.name: source="tfds" needs a TFDS name'),
        (dict(source="text_folder", path=""), 'data.path: source="text_folder" needs a folder'),
        (
            dict(source="text_folder", path="/no/such/folder"),
            "data.path: folder '/no/such/folder' does not exist",
        ),
        (dict(tokenizer="wordpiece"), "data.tokenizer: unknown tokenizer 'wordpiece'"),
        (
            dict(tokenizer="sentencepiece", tokenizer_path=""),
            'data.tokenizer_path: tokenizer="sentencepiece" needs',
        ),
        (
            dict(tokenizer="hf_json", tokenizer_path="/no/tok.json"),
            "data.tokenizer_path: file '/no/tok.json' does not exist",
        ),
        (
            dict(validation_fraction=0.0),
            "data.validation_fraction: must be a number in (0, 1), got 0.0",
        ),
        (
            dict(validation_fraction=1.5),
            "data.validation_fraction: must be a number in (0, 1), got 1.5",
        ),
        (dict(max_train_tokens=-1), "data.max_train_tokens: must be an integer >= 0"),
        (dict(max_validation_tokens=-5), "data.max_validation_tokens: must be an integer >= 0"),
        (dict(max_train_tokens=1.5), "data.max_train_tokens: must be an integer >= 0"),
        (dict(shuffle_seed=-1), "data.shuffle_seed: must be an integer in [0, 2**32)"),
        (dict(shuffle_seed=2**32), "data.shuffle_seed: must be an integer in [0, 2**32)"),
        (dict(text_field=""), "data.text_field: must not be empty"),
        (dict(train_split=""), "data.train_split: must not be empty"),
        (dict(path=3), "data.path: must be a string, got 3"),
        (dict(tokenizr="bytes"), "data.tokenizr: unknown key; known keys are"),
    ],
)
def test_each_bad_key_has_one_message(overrides, expected):
    problems = validate_data_config(_cfg(**overrides))
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected), problems


def test_missing_key_is_reported():
    cfg = default_data_config()
    cfg.unlock()
    del cfg["shuffle_seed"]
    assert validate_data_config(cfg) == ["data.shuffle_seed: missing (default 0)"]


def test_several_problems_reported_at_once_and_load_raises_before_any_write(tmp_path):
    cfg = _cfg(
        source="text_folder",
        path=str(tmp_path / "absent"),
        validation_fraction=2.0,
        data_dir=str(tmp_path / "tfds"),
        cache_dir=str(tmp_path / "packed"),
    )
    assert len(validate_data_config(cfg)) == 2
    with pytest.raises(DataError) as err:
        load(cfg, ctx_len=0)
    assert len(err.value.problems) == 3  # path, fraction, ctx_len
    assert "ctx_len: must be a positive integer" in str(err.value)
    assert not (tmp_path / "tfds").exists() and not (tmp_path / "packed").exists()


def test_dir_resolution_order(monkeypatch, tmp_path):
    cfg = default_data_config()
    monkeypatch.delenv("BSJAX_DATA_DIR", raising=False)
    monkeypatch.delenv("BSJAX_CACHE_DIR", raising=False)
    assert resolve_data_dir(cfg) == Path("~/.cache/bsjax/tensorflow_datasets").expanduser()
    assert resolve_cache_dir(cfg) == Path("~/.cache/bsjax/packed").expanduser()
    monkeypatch.setenv("BSJAX_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir(cfg) == tmp_path / "env"
    cfg.data_dir = str(tmp_path / "key")
    assert resolve_data_dir(cfg) == tmp_path / "key"  # the config key wins over the env
    cfg.cache_dir = "gs://bucket/caches/packed"
    assert resolve_cache_dir(cfg) == "gs://bucket/caches/packed"  # a URL is kept whole


def test_a_dataclass_with_the_same_fields_validates_like_the_config_dict():
    import dataclasses

    fields = [(key, type(value), value) for key, value in default_data_config().items()]
    DataConfig = dataclasses.make_dataclass("DataConfig", fields)
    assert validate_data_config(DataConfig(**default_data_config())) == []
    bad = DataConfig(**{**default_data_config(), "workers": -2, "source": "files", "path": ""})
    assert validate_data_config(bad) == [
        'data.path: source="files" needs a folder or URL of .txt, .jsonl, .jsonl.gz, .json.gz '
        "or .parquet files",
        "data.workers: must be an integer >= 0 (0 = one per CPU), got -2",
    ]


def test_file_sources_name_their_two_splits():
    problems = validate_data_config(_cfg(train_split="train[:10%]"))
    assert problems == [
        "data.train_split: source=\"embedded\" has the splits train and validation, got 'train[:10%]'"
    ]
