"""The one error type the data package raises for bad input or bad data."""

from __future__ import annotations

from bsjax.errors import ProblemsError


class DataError(ProblemsError):
    """Bad data input: a config key, a tokenizer file, a corpus folder or a split."""
