"""Generated data: the paper's two spirals, XOR on the square, and sparse polynomials.

Every generator is seeded by ``random_state`` (points, noise and split alike), so its
``params`` reload the same points.
"""

from __future__ import annotations

import numpy as np

from polynet.data.dataset import Dataset
from polynet.data.preprocessing import _split
from polynet.errors import DataError
from polynet.validation import check_int

__all__ = ["two_spirals", "xor", "sparse_polynomial"]


def two_spirals(
    n_samples: int = 2000,
    noise: float = 0.1,
    turns: float = 2.0,
    random_state: int = 0,
    *,
    test_size: float = 0.2,
) -> Dataset:
    """The paper's two interleaved spirals, a binary classification in the plane.

    Each spiral has ``n_samples // 2`` points at angles t = sqrt(u) · 780° (u uniform on
    [0, 1)), at (-t cos(turns·t), t sin(turns·t)) plus uniform noise in [0, noise) per
    coordinate; the second spiral is the first mirrored through the origin. Labels are 0 and 1.

    Parameters
    ----------
    n_samples : int, default=2000
        Total number of points (split evenly between the spirals).
    noise : float, default=0.1
        Width of the uniform noise added to each coordinate.
    turns : float, default=2.0
        Angular speed: more turns wind the spirals tighter.
    random_state : int, default=0
        Seed of the points and of the split.
    test_size : float, default=0.2
        Fraction of points in the test split.

    Examples
    --------
    >>> ds = two_spirals(100, random_state=1)
    >>> ds.X_train.shape, sorted(set(ds.y_train.tolist()))
    ((80, 2), [0, 1])
    """
    n = check_int(n_samples, "n_samples", minimum=4, error=DataError) // 2
    rng = np.random.RandomState(random_state)
    t = np.sqrt(rng.rand(n)) * np.deg2rad(780.0)
    first = np.stack([-np.cos(turns * t) * t, np.sin(turns * t) * t], axis=1)
    first = first + rng.rand(n, 2) * noise
    X = np.concatenate([first, -first])
    y = np.concatenate([np.zeros(n, np.int64), np.ones(n, np.int64)])
    return Dataset(
        "spirals",
        *_split(X, y, test_size, random_state),
        task="classification",
        feature_names=["x0", "x1"],
        n_classes=2,
        description="Two interleaved spirals (the paper's generator).",
        params={
            "n_samples": n_samples,
            "noise": noise,
            "turns": turns,
            "random_state": random_state,
            "test_size": test_size,
        },
    )


def xor(
    n_samples: int = 400,
    noise: float = 0.0,
    random_state: int = 0,
    *,
    test_size: float = 0.2,
) -> Dataset:
    """XOR on the square: label 1 where exactly one coordinate is positive.

    Points are uniform on [-1, 1]²; the label is taken before Gaussian noise of standard
    deviation ``noise`` is added to the inputs. The decision function x0·x1 is a degree-2
    polynomial, so an SLNN with one degree-2 SLAF can represent it exactly.

    Parameters
    ----------
    n_samples : int, default=400
        Number of points.
    noise : float, default=0.0
        Standard deviation of the input noise.
    random_state : int, default=0
        Seed of the points and of the split.
    test_size : float, default=0.2
        Fraction of points in the test split.

    Examples
    --------
    >>> ds = xor(50)
    >>> bool(((ds.X_train[:, 0] * ds.X_train[:, 1] < 0) == (ds.y_train == 1)).all())
    True
    """
    n = check_int(n_samples, "n_samples", minimum=4, error=DataError)
    rng = np.random.RandomState(random_state)
    X = rng.uniform(-1.0, 1.0, size=(n, 2))
    y = ((X[:, 0] > 0) != (X[:, 1] > 0)).astype(np.int64)
    X = X + noise * rng.standard_normal((n, 2))
    return Dataset(
        "xor",
        *_split(X, y, test_size, random_state),
        task="classification",
        feature_names=["x0", "x1"],
        n_classes=2,
        description="XOR of the signs of two uniform coordinates on [-1, 1]^2.",
        params={
            "n_samples": n_samples,
            "noise": noise,
            "random_state": random_state,
            "test_size": test_size,
        },
    )


def sparse_polynomial(
    n_samples: int = 10000,
    n_features: int = 10,
    degree: int = 3,
    n_terms: int | None = None,
    noise: float = 0.0,
    random_state: int = 0,
    *,
    test_size: float = 0.5,
) -> Dataset:
    """The paper's polynomial regression: a sum of random monomials of one degree.

    Inputs are standard normal. Each of ``n_terms`` draws picks ``degree`` input indices with
    replacement and adds their product (coefficient 1) to the target; draws that pick the same
    monomial add up, so ``true_terms`` can hold fewer than ``n_terms`` entries with
    coefficients above 1. Gaussian noise of standard deviation ``noise`` is added to y.

    Parameters
    ----------
    n_samples : int, default=10000
        Number of samples.
    n_features : int, default=10
        Number of inputs.
    degree : int, default=3
        Total degree of every monomial.
    n_terms : int or None, default=None
        Number of monomial draws; None means ``n_features``.
    noise : float, default=0.0
        Standard deviation of the target noise.
    random_state : int, default=0
        Seed of the inputs, the monomials, the noise and the split.
    test_size : float, default=0.5
        Fraction of samples in the test split (the paper uses half).

    Returns
    -------
    Dataset
        With ``true_terms``: exponent tuple (one entry per input) -> coefficient.

    Examples
    --------
    >>> ds = sparse_polynomial(200, n_features=3, degree=2, n_terms=2, random_state=3)
    >>> ds.true_terms
    {(1, 1, 0): 1.0, (0, 0, 2): 1.0}
    """
    n = check_int(n_samples, "n_samples", minimum=2, error=DataError)
    n_features = check_int(n_features, "n_features", error=DataError)
    degree = check_int(degree, "degree", error=DataError)
    n_terms = n_features if n_terms is None else check_int(n_terms, "n_terms", error=DataError)
    rng = np.random.RandomState(random_state)
    X = rng.standard_normal((n, n_features))
    terms: dict[tuple[int, ...], float] = {}
    for _ in range(n_terms):
        picks = rng.randint(n_features, size=degree)
        exponents = tuple(int(e) for e in np.bincount(picks, minlength=n_features))
        terms[exponents] = terms.get(exponents, 0.0) + 1.0
    y = np.zeros(n)
    for exponents, coef in terms.items():
        y += coef * np.prod(X ** np.asarray(exponents), axis=1)
    y += noise * rng.standard_normal(n)
    return Dataset(
        "sparse-poly",
        *_split(X, y, test_size, random_state),
        task="regression",
        feature_names=[f"x{i}" for i in range(n_features)],
        description=f"Sum of {n_terms} random degree-{degree} monomials in {n_features} "
        "standard normal inputs (the paper's polynomial experiment).",
        true_terms=terms,
        params={
            "n_samples": n_samples,
            "n_features": n_features,
            "degree": degree,
            "n_terms": n_terms,
            "noise": noise,
            "random_state": random_state,
            "test_size": test_size,
        },
    )
