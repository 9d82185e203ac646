"""Parsing of counts with suffixes ("2M", "1.5B") and of "key:value" lists."""

from __future__ import annotations

import decimal
import re

from bsjax.batching.errors import BatchConfigError

SUFFIXES: dict[str, int] = {"K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}


def parse_count(value: str | int | float, *, name: str = "value") -> int:
    """Parse an integer count written with an optional suffix.

    Accepts ints, integral floats and strings such as ``"64"``, ``"2M"``,
    ``"1.5B"``, ``"2e6"``; suffixes K, M, B, T (case-insensitive) mean 1e3,
    1e6, 1e9, 1e12. The result must be a whole number (``"1.5"`` is refused).
    Sign is not checked here; callers check the range they need.

    Raises:
      BatchConfigError naming ``name`` when the text is not such a count.
    """
    if isinstance(value, bool):
        raise BatchConfigError(f"{name}: expected a count like 64 or 2M, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")) or value != int(value):
            raise BatchConfigError(f"{name}: expected a whole number, got {value!r}")
        return int(value)
    if not isinstance(value, str):
        raise BatchConfigError(f"{name}: expected a count like 64 or 2M, got {value!r}")
    text = value.strip()
    multiplier = 1
    if text and text[-1].upper() in SUFFIXES:
        multiplier = SUFFIXES[text[-1].upper()]
        text = text[:-1]
    try:
        number = decimal.Decimal(text)
    except decimal.InvalidOperation:
        raise BatchConfigError(
            f"{name}: cannot read {value!r} as a count; write e.g. 64, 2M, 1.5B "
            f"(suffixes {', '.join(SUFFIXES)})"
        ) from None
    if not number.is_finite():
        raise BatchConfigError(f"{name}: expected a finite count, got {value!r}")
    scaled = number * multiplier
    if scaled != scaled.to_integral_value():
        raise BatchConfigError(f"{name}: {value!r} is not a whole number of units")
    return int(scaled)


def format_count(n: int) -> str:
    """Write ``n`` with the largest suffix that keeps it exact with <= 2 decimals.

    ``parse_count(format_count(n)) == n`` for every int n.
    """
    for suffix, mult in sorted(SUFFIXES.items(), key=lambda kv: -kv[1]):
        if abs(n) >= mult and (n * 100) % mult == 0:
            q = decimal.Decimal(n) / mult
            return f"{q.normalize():f}{suffix}"
    return str(n)


def parse_pairs(spec: str, *, name: str) -> list[tuple[str, str]]:
    """Split ``"a:b c:d"`` (spaces or commas between items) into string pairs.

    Raises:
      BatchConfigError naming ``name`` for an item without exactly one ':'.
    """
    if not isinstance(spec, str):
        raise BatchConfigError(f"{name}: expected a string like '0:64 2M:128', got {spec!r}")
    pairs = []
    for item in re.split(r"[\s,]+", spec.strip()):
        if not item:
            continue
        parts = item.split(":")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise BatchConfigError(
                f"{name}: item {item!r} is not of the form KEY:VALUE (e.g. '2M:128')"
            )
        pairs.append((parts[0], parts[1]))
    return pairs


def parse_count_list(spec: str | list | tuple, *, name: str) -> list[int]:
    """Parse ``"1M 4M"`` (or a list of counts) into ints."""
    if isinstance(spec, str):
        items = [s for s in re.split(r"[\s,]+", spec.strip()) if s]
    elif isinstance(spec, (list, tuple)):
        items = list(spec)
    else:
        raise BatchConfigError(f"{name}: expected a string like '1M 4M', got {spec!r}")
    return [parse_count(item, name=name) for item in items]
