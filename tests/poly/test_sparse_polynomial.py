"""SparsePolynomial's verbs against the dense NetworkPolynomial of the same network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import polynet
from polynet.errors import PolynetError
from polynet.polynomial.network_polynomial import NetworkPolynomial
from polynet.polynomial.sparse_polynomial import SparsePolynomial

RTOL = 1e-12


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    model = polynet.ConvSLNN(1, 5, [2], 2, out_features=2, pool=1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape) * 0.7)
    model.eval()
    dense = polynet.expand(model)
    return model, dense, SparsePolynomial.from_dense(dense)


def test_from_dense_keeps_the_non_zero_monomials(pair):
    _, dense, sparse = pair
    assert sparse.n_terms == dense.n_terms < dense.max_terms
    assert sparse.n_terms_per_output() == dense.n_terms_per_output()
    assert sparse.degree == dense.degree == 2 and sparse.degree_bound == 2
    assert sparse.to_dense() == dense
    assert repr(sparse) == repr(dense).replace("NetworkPolynomial", "SparsePolynomial")


def test_call_equals_dense_and_forward(pair):
    model, dense, sparse = pair
    x = torch.rand(7, 25, dtype=torch.float64)
    expected = dense(x)
    assert torch.allclose(sparse(x), expected, rtol=RTOL, atol=0)
    with torch.no_grad():
        forward = model.double()(x.reshape(7, 1, 5, 5))
    assert float((sparse(x) - forward).abs().max()) <= 1e-12 * float(forward.abs().max())
    with pytest.raises(ValueError, match=r"points must have shape \(B, 25\)"):
        sparse(torch.zeros(3, 4))
    as_array = sparse(x.numpy())  # NumPy in, NumPy out, as for the dense polynomial
    assert isinstance(as_array, np.ndarray) and np.allclose(as_array, expected.numpy())


def test_torch_evaluation_equals_the_compiled_one(pair, monkeypatch):
    from polynet.polynomial import sparse_polynomial as module

    _, dense, sparse = pair
    x = torch.rand(5, 25, dtype=torch.float64)
    compiled = sparse(x)
    monkeypatch.setattr(module, "_KERNEL", [None])  # as without numba, or on CUDA
    monkeypatch.setattr(module, "EVAL_BLOCK_ELEMENTS", 64)  # several term blocks
    assert torch.allclose(sparse(x), compiled, rtol=RTOL, atol=0)
    assert torch.allclose(sparse(x), dense(x), rtol=RTOL, atol=0)


def test_terms_coefficient_latex_and_sympy_match_dense(pair):
    _, dense, sparse = pair
    for output in (0, 1):
        assert sparse.terms(top=6, output=output) == dense.terms(top=6, output=output)
        assert sparse.to_latex(output, top=4) == dense.to_latex(output, top=4)
    for term in dense.terms(top=None)[:40]:
        assert sparse.coefficient(term.monomial) == term.coefficient
        assert sparse.coefficient(np.array(term.exponents)) == term.coefficient
    assert sparse.coefficient("x0 x24") == dense.coefficient("x0 x24") == 0.0  # no common window
    assert sparse.coefficient("x0^3") == 0.0  # above the degree: not a monomial of p
    s_polys, d_polys = sparse.to_sympy(), dense.to_sympy()
    assert [p.as_dict() for p in s_polys] == [p.as_dict() for p in d_polys]
    with pytest.raises(ValueError, match="is not a variable"):
        sparse.coefficient("y7")


def test_truncate_is_the_graded_prefix(pair):
    _, dense, sparse = pair
    low = sparse.truncate(1)
    assert low.degree == 1
    expected = dense.truncate(degree=1).coefficients
    assert torch.equal(low.to_dense().coefficients[:, : expected.shape[1]], expected)


def test_save_load_round_trip(pair, tmp_path):
    _, _, sparse = pair
    path = sparse.save(tmp_path / "p")
    assert path.suffix == ".npz"
    again = SparsePolynomial.load(path)
    assert again == sparse and again.input_shape == sparse.input_shape
    assert NetworkPolynomial.load(path) == sparse  # the dense loader hands sparse files over
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(PolynetError, match="not a readable sparse polynomial file"):
        SparsePolynomial.load(tmp_path / "bad.npz")


def test_constructor_checks_codes_and_shapes():
    with pytest.raises(ValueError, match="distinct, ascending"):
        SparsePolynomial(2, [3, 1], [[1.0, 2.0]], degree_bound=2)
    with pytest.raises(ValueError, match="distinct, ascending"):
        SparsePolynomial(2, [0, 6], [[1.0, 2.0]], degree_bound=2)  # C(4, 2) = 6 monomials
    with pytest.raises(ValueError, match=r"shape \(n_outputs, 2\)"):
        SparsePolynomial(2, [0, 1], [1.0, 2.0], degree_bound=2)
    with pytest.raises(ValueError, match="too many for int64 codes"):
        SparsePolynomial(784, [0], [[1.0]], degree_bound=16)
    p = SparsePolynomial(2, [0], [[1.0]], degree_bound=1)
    with pytest.raises(AttributeError, match="immutable"):
        p.n_vars = 3
