"""Argument checks shared by the public functions: one rule for integers and numbers.

Every public function validates at its door with these and hands clean values on. An integer
is a Python or numpy integer, never a bool; a number is a finite real (int, float or their
numpy kinds), never a bool.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["check_int", "check_number", "is_int", "is_number"]


def is_int(value: Any, minimum: int | None = None) -> bool:
    """Whether ``value`` is an integer (Python or numpy, not bool) >= ``minimum``."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    return ok and (minimum is None or value >= minimum)


def is_number(value: Any, low: float | None = None, *, strict: bool = False) -> bool:
    """Whether ``value`` is a finite real number (not bool), > or >= ``low`` when given."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )
    ok = ok and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if strict else value >= low
    return bool(ok)


def check_int(
    value: Any,
    name: str,
    minimum: int = 1,
    *,
    hint: str = "",
    error: type[Exception] = ValueError,
) -> int:
    """``value`` as an int, or ``error`` saying "{name} must be an integer >= {minimum}".

    Examples
    --------
    >>> check_int(np.int64(3), "top")
    3
    >>> check_int(True, "top")
    Traceback (most recent call last):
    ...
    ValueError: top must be an integer >= 1, got True.
    """
    if not is_int(value, minimum):
        raise error(f"{name} must be an integer >= {minimum}, got {_shown(value)}{_hint(hint)}.")
    return int(value)


def check_number(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    strict: bool = False,
    hint: str = "",
    error: type[Exception] = ValueError,
) -> float:
    """``value`` as a finite float (> or >= ``low`` when given), or ``error`` saying why.

    Examples
    --------
    >>> check_number(0.5, "lr", low=0.0, strict=True)
    0.5
    >>> check_number(float("nan"), "lr", low=0.0, strict=True)
    Traceback (most recent call last):
    ...
    ValueError: lr must be a finite number > 0.0, got nan.
    """
    if not is_number(value, low, strict=strict):
        rule = (
            "a finite number" if low is None else f"a finite number {'>' if strict else '>='} {low}"
        )
        raise error(f"{name} must be {rule}, got {_shown(value)}{_hint(hint)}.")
    return float(value)


def _shown(value: Any) -> str:
    # np.int64(0) reads as 0 in a message; the type is not what went wrong.
    return repr(value.item() if isinstance(value, np.generic) else value)


def _hint(hint: str) -> str:
    return f"; {hint}" if hint else ""
