"""The streaming evaluator equals naive monomial evaluation, on both backends."""

from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from polynet import MonomialIndex, NetworkPolynomial
from polynet.polynomial.evaluate import Evaluator, evaluate, numba_available

BACKENDS = [
    "torch",
    pytest.param(
        "numba", marks=pytest.mark.skipif(not numba_available(), reason="numba not installed")
    ),
]
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def naive(coef: np.ndarray, exponents: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Σ_r c[o, r] ∏_v x_v^e[r, v], one monomial at a time: (B, n_outputs)."""
    monomials = np.prod(x[:, None, :] ** exponents[None, :, :], axis=2)
    return monomials @ coef.T


def random_poly(n, degree, outputs, seed):
    rng = np.random.default_rng(seed)
    index = MonomialIndex(n, degree)
    coef = rng.normal(size=(outputs, index.size))
    coef[rng.random(coef.shape) < 0.2] = 0.0  # some structural zeros
    return NetworkPolynomial(index, torch.from_numpy(coef)), rng


@pytest.mark.parametrize("backend", BACKENDS)
@given(
    n=st.integers(1, 6),
    degree=st.integers(0, 6),
    outputs=st.integers(1, 3),
    points=st.integers(1, 70),
    seed=st.integers(0, 2**16),
)
def test_equals_naive_monomial_evaluation(backend, n, degree, outputs, points, seed):
    poly, rng = random_poly(n, degree, outputs, seed)
    x = rng.uniform(-1.5, 1.5, size=(points, n))
    want = naive(poly.coefficients.numpy(), poly.exponents, x)
    got = evaluate(poly, x, backend=backend)
    assert got.shape == (points, outputs) and got.dtype == torch.float64
    scale = naive(np.abs(poly.coefficients.numpy()), poly.exponents, np.abs(x)).max() + 1
    assert np.abs(got.numpy() - want).max() <= 1e-13 * scale


@pytest.mark.parametrize("backend", BACKENDS)
def test_equals_polynomial_call_to_1e12(backend):
    poly, rng = random_poly(5, 6, 2, 1)
    x = torch.from_numpy(rng.uniform(-1, 1, size=(300, 5)))
    ref = poly(x)
    got = Evaluator(poly, backend=backend, block=7)(x)
    assert (got - ref).abs().max() <= 1e-12 * ref.abs().max()


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_variable_takes_a_vector_of_points(backend):
    poly = NetworkPolynomial(MonomialIndex(1, 3), torch.tensor([[1.0, -2.0, 0.5, 3.0]]))
    x = torch.tensor([0.0, 1.0, -2.0])
    got = evaluate(poly, x, backend=backend)
    assert got[:, 0].tolist() == [1 - 2 * t + 0.5 * t**2 + 3 * t**3 for t in x.tolist()]


@pytest.mark.parametrize("backend", BACKENDS)
def test_bare_coefficients_with_an_index(backend):
    idx = MonomialIndex(2, 2)
    coef = torch.tensor([1.0, 0, 2, 0, 3, 0])  # 1 + 2 x1 + 3 x0 x1
    assert evaluate(coef, [[1.0, 2.0]], index=idx, backend=backend).tolist() == [11.0]
    two = torch.stack([coef, -coef])
    assert evaluate(two, [[1.0, 2.0]], index=idx, backend=backend).tolist() == [[11.0, -11.0]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_batch(backend):
    poly, _ = random_poly(3, 2, 2, 0)
    got = evaluate(poly, torch.empty(0, 3), backend=backend)
    assert got.shape == (0, 2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_polynomial_evaluates_its_float_coefficients(backend):
    idx = MonomialIndex(1, 1)
    poly = NetworkPolynomial(idx, np.array([[Fraction(1, 3), Fraction(2, 3)]], dtype=object))
    assert poly.exact
    got = evaluate(poly, [[3.0]], backend=backend)
    assert got.item() == pytest.approx(1 / 3 + 2 / 3 * 3, rel=1e-15)


def test_wrong_shapes_say_what_was_expected():
    poly, _ = random_poly(3, 2, 1, 0)
    with pytest.raises(ValueError, match=r"points must have shape \(B, 3\), got \(4, 2\)"):
        evaluate(poly, torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"points must have shape \(B, 3\), got \(4,\)"):
        evaluate(poly, torch.zeros(4))
    with pytest.raises(ValueError, match=r"shape \(n_outputs, 10\) or \(10,\), got \(1, 9\)"):
        evaluate(torch.zeros(1, 9), torch.zeros(4, 3), index=MonomialIndex(3, 2))
    with pytest.raises(TypeError, match="index=MonomialIndex"):
        evaluate(torch.zeros(1, 10), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="backend must be one of"):
        evaluate(poly, torch.zeros(4, 3), backend="cuda")
    with pytest.raises(ValueError, match="block must be an integer >= 1"):
        evaluate(poly, torch.zeros(4, 3), block=0)


def test_torch_backend_runs_on_the_polynomials_device():
    poly, rng = random_poly(3, 4, 2, 2)
    x = rng.uniform(-1, 1, size=(50, 3))
    ref = poly(torch.from_numpy(x))
    on_device = poly.to(DEVICE)
    ev = Evaluator(on_device, backend="auto" if DEVICE == "cuda" else "torch")
    assert ev.backend == "torch"
    got = ev(x)
    assert got.device.type == DEVICE
    assert (got.cpu() - ref).abs().max() <= 1e-12 * ref.abs().max()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_numba_backend_refuses_cuda_coefficients():
    poly, _ = random_poly(2, 2, 1, 0)
    with pytest.raises(ValueError, match="numba backend runs on the CPU"):
        Evaluator(poly.to("cuda"), backend="numba")


@pytest.mark.parametrize("backend", BACKENDS)
def test_evaluation_never_builds_the_exponent_table(backend, monkeypatch):
    import polynet.polynomial.index as index_module

    poly, rng = random_poly(7, 5, 2, 3)
    x = rng.uniform(-1, 1, size=(40, 7))
    want = naive(poly.coefficients.numpy(), poly.exponents, x)

    def never(*args):
        raise AssertionError("the exponent table was built")

    monkeypatch.setattr(index_module, "_exponents", never)
    got = evaluate(poly, x, backend=backend)
    assert np.abs(got.numpy() - want).max() <= 1e-12 * np.abs(want).max()


@pytest.mark.parametrize("n, degree", [(784, 2), (30, 3), (13, 8)])
def test_torch_and_numba_agree_on_wide_and_deep_indexes(n, degree):
    # The split products against the tree walk, where their groups and paddings differ most.
    index = MonomialIndex(n, degree)
    rng = np.random.default_rng(n)
    coef = torch.from_numpy(rng.normal(size=(3, index.size)))
    x = rng.uniform(-1, 1, size=(20, n))
    a = evaluate(coef, x, index=index, backend="torch")
    if numba_available():
        b = evaluate(coef, x, index=index, backend="numba")
    else:  # the degree-by-degree reference: gather parents, multiply by a variable
        parent, var = index.parents()
        feats = np.ones((20, index.size))
        for d in range(1, degree + 1):
            s = slice(index.n_monomials(d - 1), index.n_monomials(d))
            feats[:, s] = feats[:, parent[s]] * x[:, var[s]]
        b = torch.from_numpy(feats @ coef.numpy().T)
    assert (a - b).abs().max() <= 1e-12 * b.abs().max()


def test_numpy_in_numpy_out_tensor_in_tensor_out():
    poly, rng = random_poly(3, 3, 2, 4)
    x = rng.uniform(-1, 1, size=(9, 3))
    as_array = poly(x)
    as_tensor = poly(torch.from_numpy(x))
    assert isinstance(as_array, np.ndarray) and as_array.dtype == np.float64
    assert torch.is_tensor(as_tensor) and np.array_equal(as_array, as_tensor.numpy())
    assert isinstance(poly(x.tolist()), np.ndarray)


def test_repeated_calls_reuse_the_regrouped_coefficients_but_see_writes():
    from polynet.polynomial import evaluate as evaluate_module

    poly, rng = random_poly(4, 3, 2, 5)
    x = rng.uniform(-1, 1, size=(11, 4))
    first = poly(x)
    assert poly(x).tolist() == first.tolist()
    assert any(entry[0]() is poly for entry in evaluate_module._kept.values())
    poly.coefficients.mul_(2.0)  # a write to the tensor the polynomial holds
    assert np.allclose(poly(x), 2 * first, rtol=1e-14, atol=0)
    want = naive(poly.coefficients.numpy(), poly.exponents, x)
    assert np.abs(poly(x) - want).max() <= 1e-13 * np.abs(want).max()
