"""Frozen config sections: fields with help text, parsing from a mapping, small checkers.

A section is a frozen dataclass whose fields are declared with ``option(default, help)``
(a leaf value) or ``subsection(cls, help)`` (a nested section). ``parse_section`` builds
one from a mapping (a ConfigDict, a dict read from JSON) and reports, with its key path,
every unknown key and every value whose type differs from the field's default; the
section's own ``check(path)`` then reports range and consistency problems. Sections
also read like mappings (``get``, ``keys``, ``items``, ``[]``), so code written against a
ConfigDict section reads a typed one unchanged.

Nothing here imports JAX or an I/O library: every layer may use it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any

_SECTION = "section"
_HELP = "help"


def option(default: Any, help: str) -> Any:
    """A leaf field with its default and a one-line help text."""
    return dataclasses.field(default=default, metadata={_HELP: help})


def subsection(cls: type, help: str, *, optional: bool = False) -> Any:
    """A nested section field: built from its own defaults when absent, or None if ``optional``."""
    if optional:
        return dataclasses.field(default=None, metadata={_HELP: help, _SECTION: cls})
    return dataclasses.field(default_factory=cls, metadata={_HELP: help, _SECTION: cls})


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class Section:
    """Base of the frozen config sections (subclasses are ``@dataclasses.dataclass(frozen=True)``)."""

    def check(self, path: str) -> list[str]:
        """Problems of this section's own values, each starting with its key path (none here)."""
        return []

    # Mapping-style reads, so ConfigDict-era code keeps working on typed sections.
    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)]

    def items(self) -> list[tuple[str, Any]]:
        return [(k, getattr(self, k)) for k in self.keys()]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())


def _type_name(default: Any) -> str:
    if isinstance(default, bool):
        return "a bool (True or False)"
    if isinstance(default, int):
        return "an int"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, str):
        return "a string"
    return type(default).__name__


def _type_ok(value: Any, default: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    return True


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory()


def parse_section(cls: type, values: Any, path: str, problems: list[str]) -> Any:
    """Build section ``cls`` from the mapping ``values``; append every problem to ``problems``.

    Missing keys take their defaults. The section's ``check`` runs only when its
    keys and types are all right, so it may rely on them.
    """
    if values is None:
        values = {}
    if not hasattr(values, "keys"):
        problems.append(f"{path}: must be a section of keys, got {values!r}")
        return cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    own: list[str] = []
    for key in sorted(set(values.keys()) - set(fields)):
        own.append(f"{_join(path, key)}: unknown key; known keys: {', '.join(sorted(fields))}")
    kwargs = {}
    for name, field in fields.items():
        if name not in values:
            continue
        value = values[name]
        nested = field.metadata.get(_SECTION)
        if nested is not None:
            kwargs[name] = parse_section(nested, value, _join(path, name), problems)
            continue
        default = _default(field)
        if not _type_ok(value, default):
            own.append(f"{_join(path, name)}: must be {_type_name(default)}, got {value!r}")
            continue
        kwargs[name] = float(value) if isinstance(default, float) else value
    section = cls(**kwargs)
    if not own:
        own = section.check(path)
    problems.extend(own)
    return section


def section_to_dict(section: Any) -> dict[str, Any]:
    """Nested plain dict of a section (JSON-safe); an optional subsection that is None is left out."""
    out = {}
    for field in dataclasses.fields(section):
        value = getattr(section, field.name)
        if field.metadata.get(_SECTION) and value is None:
            continue
        out[field.name] = section_to_dict(value) if field.metadata.get(_SECTION) else value
    return out


def iter_fields(cls: type, path: str = "") -> Iterator[tuple[str, Any, str]]:
    """``(dotted key, default, help)`` of every leaf field of section ``cls``, in order."""
    for field in dataclasses.fields(cls):
        key = _join(path, field.name)
        nested = field.metadata.get(_SECTION)
        if nested is not None and field.default is None:
            continue  # an optional section (e.g. a sweep's record) is not a user option
        if nested is not None:
            yield from iter_fields(nested, key)
        else:
            yield key, _default(field), field.metadata.get(_HELP, "")


# Small checkers: each returns [] or one message naming the key path.
def at_least(path: str, value: Any, low: float, what: str = "") -> list[str]:
    """``value >= low``."""
    if value >= low:
        return []
    return [f"{path}: must be >= {low:g}{what}, got {value!r}"]


def positive(path: str, value: Any, example: str = "") -> list[str]:
    """``value > 0``."""
    if value > 0 and (not isinstance(value, float) or math.isfinite(value)):
        return []
    return [f"{path}: must be positive{f' (e.g. {example})' if example else ''}, got {value!r}"]


def in_unit_interval(path: str, value: float, *, closed: bool = False, note: str = "") -> list[str]:
    """``0 <= value < 1`` (``<= 1`` with ``closed``)."""
    if 0 <= value < 1 or (closed and value == 1):
        return []
    interval = "[0, 1]" if closed else "[0, 1)"
    return [f"{path}: must lie in {interval}{note}, got {value!r}"]


def one_of(path: str, value: Any, choices: tuple) -> list[str]:
    """``value in choices``."""
    if value in choices:
        return []
    return [f"{path}: {value!r} is unknown; choose one of {', '.join(map(str, choices))}"]


def prefixed(problems: list[str], path: str) -> list[str]:
    """Messages of a checker that names keys relative to ``path``, with the path put in front."""
    return [p if p.startswith(path) else f"{path}.{p}" for p in problems]
