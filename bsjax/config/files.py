"""Config files (``configs/FILE.py[:ARG]``, or a run's ``config.json``) and their
``--config.KEY=VALUE`` overrides.

``ml_collections.config_flags`` loads the file for absl; ``check_command_line``
runs first and turns what would be a flag-parsing traceback (no such file, a
syntax error, ``get_config`` refusing its argument, an override naming a key the
config lacks) into one ``ConfigFileError`` naming the fix.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Sequence

import ml_collections

from bsjax.errors import ProblemsError


class ConfigFileError(ProblemsError):
    """A config file that cannot be loaded, or an override it does not accept."""


def split_spec(spec: str) -> tuple[str, str]:
    """``FILE.py[:ARG]`` -> (FILE.py, ARG); the argument may itself contain colons."""
    path, _, arg = spec.partition(":")
    return path, arg


def load_config_file(spec: str) -> ml_collections.ConfigDict:
    """The ConfigDict of ``FILE.py[:ARG]`` (``get_config(ARG)``), as ``--config`` loads it.

    Raises ConfigFileError for a missing file, a syntax error (with its line),
    a file without ``get_config``, or ``get_config`` refusing the argument.
    """
    path, arg = split_spec(spec)
    if path.endswith(".json") and os.path.isfile(path):
        return _load_run_json(spec, path)
    if not os.path.isfile(path):
        where = "is a folder" if os.path.isdir(path) else "does not exist"
        raise ConfigFileError(
            f"--config={spec}: no config file at {path} (it {where}); `bsjax configs` lists "
            f"the files in configs/"
        )
    source = open(path, encoding="utf-8", errors="replace").read()
    try:
        compile(source, path, "exec")
    except SyntaxError as err:
        raise ConfigFileError(
            f"--config={spec}: syntax error at line {err.lineno} of {path}: {err.msg}"
        ) from None
    module_spec = importlib.util.spec_from_file_location("bsjax_config_file", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as err:
        raise ConfigFileError(
            f"--config={spec}: {path} failed to import ({type(err).__name__}: {err})"
        ) from None
    if not callable(getattr(module, "get_config", None)):
        raise ConfigFileError(f"--config={spec}: {path} defines no get_config()")
    try:
        return module.get_config(arg) if arg else module.get_config()
    except (ValueError, KeyError, TypeError) as err:  # the file's own check of its argument
        message = err.args[0] if err.args else str(err)
        raise ConfigFileError(f"--config={spec}: {message}") from None


def _load_run_json(spec: str, path: str) -> ml_collections.ConfigDict:
    """A run folder's config.json (every value resolved) as the ConfigDict that reruns it."""
    try:
        values = json.loads(open(path, encoding="utf-8").read())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigFileError(f"--config={spec}: {path} is not JSON ({err})") from None
    if not isinstance(values, dict):
        raise ConfigFileError(f"--config={spec}: {path} holds no JSON object")
    return ml_collections.ConfigDict(values)


def _has_key(config: ml_collections.ConfigDict, dotted: str) -> bool:
    node = config
    for part in dotted.split("."):
        if not isinstance(node, (ml_collections.ConfigDict, dict)) or part not in node:
            return False
        node = node[part]
    return True


def check_command_line(argv: Sequence[str]) -> ml_collections.ConfigDict | None:
    """Load ``--config=`` from ``argv`` and check every ``--config.KEY`` override names a key.

    Returns the loaded ConfigDict (None when ``argv`` has no ``--config=``).
    """
    spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if spec is None:
        return None
    config = load_config_file(spec)
    unknown = []
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        key = arg[len("--config.") :].split("=", 1)[0]
        if not _has_key(config, key):
            unknown.append(key)
    if unknown:
        raise ConfigFileError(
            [
                f"the config of --config={spec} has no key {key!r}; `bsjax train --help "
                f"--config={spec}` lists the keys with their values"
                for key in unknown
            ]
        )
    return config
