"""The one error type the batching package raises for bad input."""

from __future__ import annotations

from bsjax.errors import ProblemsError


class BatchConfigError(ProblemsError):
    """Bad batch-size input: a schedule spec, a bucket request or a coupling rule."""
