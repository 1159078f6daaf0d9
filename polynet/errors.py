"""Exceptions and warnings raised by polynet.

Every error a user can cause is a :class:`PolynetError`; each subclass also inherits the
nearest builtin so ``except ValueError`` keeps working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "PolynetError",
    "NotExpandableError",
    "ExpansionTooLargeError",
    "CheckpointError",
    "NotFittedError",
    "DataError",
    "TrainingDivergedError",
    "PartialPolynomialError",
    "StoreError",
    "MissingExtraError",
    "PolynetWarning",
    "did_you_mean",
]


class PolynetError(Exception):
    """Base class of every error polynet raises on purpose."""


class NotExpandableError(PolynetError, ValueError):
    """A model, layer or basis that is not a polynomial map (ReLU, EMFN, training mode)."""


class ExpansionTooLargeError(PolynetError, MemoryError):
    """An expansion refused before it started because it would exceed the memory budget.

    Attributes
    ----------
    refusal : polynet.expansion.refusal.Refusal or None
        The numbers and the alternatives that fit, for rendering (the CLI names its flags).
    """

    def __init__(self, message: str, refusal: object = None) -> None:
        super().__init__(message)
        self.refusal = refusal


class CheckpointError(PolynetError, ValueError):
    """A checkpoint that is missing, truncated, tampered with or does not match its config."""


class NotFittedError(PolynetError, ValueError, AttributeError):
    """An estimator used before ``fit``."""


class DataError(PolynetError, ValueError):
    """A data set that cannot be found, read or used as asked."""


class TrainingDivergedError(PolynetError, FloatingPointError):
    """Training produced a non-finite loss; the model holds the last finite state.

    Attributes
    ----------
    result : object
        The training result up to the last finite epoch (a ``training.FitResult``).
    """

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result


class MissingExtraError(PolynetError, ImportError):
    """An optional package a feature needs is not installed; the message names the extra.

    Attributes
    ----------
    module : str
        The missing import name (e.g. ``"zarr"``).
    extra : str or None
        The ``polynet-slaf`` extra that installs it (e.g. ``"scale"``).
    """

    def __init__(self, message: str, module: str, extra: str | None = None) -> None:
        super().__init__(message)
        self.module = module
        self.extra = extra
        self.name = module


class PartialPolynomialError(PolynetError, ValueError):
    """A part of the network's polynomial (its Taylor polynomial of degree q) used where only
    the whole polynomial will do, such as verifying it against the forward pass."""


class PolynetWarning(UserWarning):
    """Computed, but look at this (an ill-conditioned fit, a verification near tolerance)."""


class StoreError(PolynetError, OSError):
    """A polynomial store or cached file that is damaged, incomplete or could not be written."""


def did_you_mean(word: str, choices: Iterable[str], n: int = 1) -> str:
    """``"did you mean 'y'?"`` for the closest of ``choices`` to a mistyped ``word`` (up to
    ``n``, joined by "or"), or ``""`` when none is close; for error messages."""
    close = difflib.get_close_matches(word, list(choices), n=n)
    return f"did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
