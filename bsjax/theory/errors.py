"""The one error type the theory lab raises for bad input, and small checks."""

from __future__ import annotations

import math
from typing import Any


class TheoryInputError(ValueError):
    """A bad parameter for a theory computation; the message names it and says what is allowed."""


def check_number(
    name: str,
    value: Any,
    *,
    gt: float | None = None,
    ge: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    why: str = "",
) -> float:
    """Return ``value`` as a finite float, or raise naming ``name`` and the allowed range."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise TheoryInputError(f"{name} must be a number; got {value!r}") from None
    bounds = []
    if gt is not None:
        bounds.append(f"> {gt:g}")
    if ge is not None:
        bounds.append(f">= {ge:g}")
    if lt is not None:
        bounds.append(f"< {lt:g}")
    if le is not None:
        bounds.append(f"<= {le:g}")
    bad = (
        not math.isfinite(x)
        or (gt is not None and not x > gt)
        or (ge is not None and not x >= ge)
        or (lt is not None and not x < lt)
        or (le is not None and not x <= le)
    )
    if bad:
        rule = " and ".join(bounds) if bounds else "finite"
        tail = f" ({why})" if why else ""
        raise TheoryInputError(f"{name} must be {rule}{tail}; got {value!r}")
    return x


def check_int(name: str, value: Any, *, ge: int = 1, why: str = "") -> int:
    """Return ``value`` as an int >= ``ge``, or raise naming ``name``."""
    if isinstance(value, bool) or not float(value if _is_num(value) else "nan").is_integer():
        raise TheoryInputError(f"{name} must be an integer >= {ge}; got {value!r}")
    n = int(value)
    if n < ge:
        tail = f" ({why})" if why else ""
        raise TheoryInputError(f"{name} must be an integer >= {ge}{tail}; got {value!r}")
    return n


def _is_num(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
