"""The typed run config: parsed once, every problem with its key path, round trip, help."""

import importlib.util
import json

import ml_collections
import pytest

from bsjax import config as config_lib
from bsjax.config import ConfigError, RunConfig, base_config, parse, to_dict
from bsjax.data.config import default_data_config

RUN_CONFIGS = [
    ("tiny_cpu.py", None, 8),
    ("switch_demo.py", None, 1),
    ("policy_fsl.py", None, 8),
    ("policy_noise_scale.py", None, 1),
    ("policy_probe.py", None, 8),
    ("policy_seesaw.py", None, 8),
    ("policy_wsd_es.py", "tokens", 8),
    ("base.py", None, 8),
]


def _load(name, arg):
    spec = importlib.util.spec_from_file_location(name[:-3], f"configs/{name}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


@pytest.mark.parametrize("name,arg,devices", RUN_CONFIGS)
def test_config_json_parses_back_to_an_equal_run_config(name, arg, devices):
    run = parse(_load(name, arg), devices)
    stored = json.loads(json.dumps(to_dict(run)))  # what config.json holds
    assert parse(ml_collections.ConfigDict(stored), devices) == run
    assert run.model.d_model > 0 and run.model.n_layers > 0  # the preset is resolved


def test_every_problem_is_listed_with_its_key_path():
    c = base_config().to_dict()
    c["batch"]["micro_batch_per_device"] = 0
    c["optim"]["lr"] = "fast"
    c["batch"]["policy"]["probe"]["eps"] = True
    c["train"]["eval_every"] = 0
    c["modle"] = {}
    with pytest.raises(ConfigError) as info:
        parse(c, num_devices=8)
    problems = info.value.problems
    assert "optim.lr: must be a number, got 'fast'" in problems
    assert "batch.policy.probe.eps: must be a number, got True" in problems
    assert "batch.micro_batch_per_device: must be an int >= 1, got 0" in problems
    assert "train.eval_every: must be >= 1, got 0" in problems
    assert any(p.startswith("modle: unknown key") for p in problems)
    assert len(problems) == 6  # the five above and the missing stop


@pytest.mark.parametrize(
    "change, message",
    [
        (
            dict(optim=dict(warmup_tokens=10**9)),
            "optim.warmup_tokens=1000000000 is longer than the run (train.max_steps=100",
        ),
        (
            dict(batch=dict(table="0:16 1M:32")),
            "batch.table='0:16 1M:32' is set but batch.schedule='constant' ignores it",
        ),
        (dict(train=dict(compile_workers=-3)), "train.compile_workers: must be >= 0"),
    ],
    ids=["warmup_longer_than_run", "table_without_table_schedule", "negative_workers"],
)
def test_settings_that_would_be_ignored_or_crash_are_refused(change, message):
    c = base_config().to_dict()
    c["train"]["max_steps"] = 100
    for section, values in change.items():
        c[section].update(values)
    with pytest.raises(ConfigError) as info:
        parse(c, num_devices=8)
    assert any(p.startswith(message) for p in info.value.problems), info.value.problems


def test_sections_are_frozen_and_read_like_the_config_dict():
    run = parse(_load("tiny_cpu.py", None), 8)
    assert run.batch.policy.noise_scale.ema == run.batch["policy"]["noise_scale"]["ema"]
    with pytest.raises(AttributeError):
        run.train.max_steps = 1


def test_every_key_has_a_default_and_a_help_line():
    fields = list(config_lib.describe_fields())
    keys = [key for key, _, _ in fields]
    flat = ml_collections.ConfigDict(base_config()).to_dict()
    assert "batch.policy.probe.factors" in keys and "seed" in keys
    assert len(keys) == len(set(keys)) == _leaf_count(flat)
    assert all(help_text for _, _, help_text in fields)


def test_the_data_section_has_the_data_packages_keys_and_defaults():
    assert to_dict(RunConfig())["data"] == default_data_config().to_dict()


def _leaf_count(tree):
    return sum(_leaf_count(v) if isinstance(v, dict) else 1 for v in tree.values())
