"""verify: a network polynomial checked against the network's own forward pass."""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import nn

from polynet.errors import PartialPolynomialError
from polynet.polynomial.evaluate import check_evaluation_budget
from polynet.polynomial.network_polynomial import NetworkPolynomial
from polynet.threads import thread_policy

__all__ = ["VerificationReport", "verify"]

#: Default tolerance on the relative error max|p - f| / max|f|.
DEFAULT_TOL = 1e-8


@dataclass(frozen=True)
class VerificationReport:
    """How well a polynomial reproduces its network, and its size against Theorem 2."""

    n_data_points: int
    n_box_points: int
    max_abs_error: float
    max_rel_error: float
    output_scale: float
    data_max_abs_error: float
    data_max_rel_error: float
    tol: float
    degree: int
    degree_bound: int
    n_terms: int
    max_terms: int
    n_network_parameters: int
    passed: bool
    #: Data rows left out because they hold NaN or Inf (no network maps them to a number).
    n_dropped_points: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        return "\n".join(
            [
                f"verification {verdict} (tolerance {self.tol:.1e} relative)",
                f"  points              {self.n_data_points} from the data, "
                f"{self.n_box_points} from its bounding box"
                + (
                    f" ({self.n_dropped_points} data rows with NaN/Inf left out)"
                    if self.n_dropped_points
                    else ""
                ),
                f"  max |poly - net|    {self.max_abs_error:.3e} (all points), "
                f"{self.data_max_abs_error:.3e} (data)",
                f"  relative error      {self.max_rel_error:.3e} (all points, to max|net| = "
                f"{self.output_scale:.3e}), {self.data_max_rel_error:.3e} (data, to the data's "
                "max|net|)",
                f"  degree              {self.degree} (bound D = {self.degree_bound})",
                f"  non-zero terms      {self.n_terms:,} of C(n+D, D) = {self.max_terms:,}",
                f"  network parameters  {self.n_network_parameters:,}",
            ]
        )


def _embed(poly: NetworkPolynomial, points: torch.Tensor) -> torch.Tensor:
    """Full network inputs for polynomial points (a slice fixes the other inputs; a
    re-centred polynomial is in u = x - x0)."""
    center = (poly.notes.get("taylor") or {}).get("center")
    if center is not None:  # one value per variable (a slice's own inputs); float64, as stored
        points = points + torch.as_tensor(center, dtype=torch.float64, device=points.device)
    return points if poly.slice is None else poly.slice.embed(points)


def _check_whole(poly: NetworkPolynomial) -> None:
    from polynet.expansion.truncated import describe

    taylor = poly.notes.get("taylor") or {}
    q, D = taylor.get("degree"), taylor.get("network_degree")
    if q is not None and (D is None or q < D):
        raise PartialPolynomialError(
            f"cannot verify this polynomial against the forward pass: it is {describe(poly)}. "
            "Compare its degree blocks with the network's derivatives with "
            f"polynet.expansion.truncated.taylor_errors(model, poly), or expand with degree={D} or "
            "without degree= to verify."
        )


@thread_policy
def verify(
    model: nn.Module,
    poly: NetworkPolynomial,
    x: ArrayLike | torch.Tensor | None = None,
    tol: float = DEFAULT_TOL,
    *,
    n_box: int = 1000,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = False,
    max_memory: int | float | str | None = None,
) -> VerificationReport:
    """Compare ``poly`` with ``model`` run in float64 evaluation mode.

    Points are the data ``x`` (network inputs, or only the sliced inputs for a slice
    polynomial) and ``n_box`` points drawn uniformly from their bounding box (from [-1, 1]^n
    when ``x`` is None). It passes when the relative error max|p − f| / max|f| is within
    ``tol`` over all points and over the data points alone. Data rows holding NaN or Inf
    are left out and counted in the report (``n_dropped_points``): they say nothing about the
    polynomial, and one such row would make every error NaN. The model is copied; the
    caller's model is not changed.

    Parameters
    ----------
    model : nn.Module
        The network the polynomial was expanded from.
    poly : NetworkPolynomial
        Its polynomial (from :func:`polynet.expand` or ``NetworkPolynomial.load``).
    x : array-like of shape (B, n_vars), optional
        Data points.
    tol : float, default=1e-8
        Largest accepted max|p − f| / max|f|.
    n_box : int, default=1000
        Number of points sampled from the bounding box.
    seed : int, default=0
        Seed of the box sample.
    device : torch.device or str, optional
        Where to evaluate (default: the polynomial's device).
    progress : bool, default=False
        Show a progress bar over the points (or the store's blocks) while the polynomial is
        evaluated.
    max_memory : int or str, optional
        Memory budget of the evaluation, bytes or a size like ``"4GiB"`` (default: half the
        available memory).

    Returns
    -------
    VerificationReport

    Raises
    ------
    ExpansionTooLargeError
        Evaluating the polynomial at the points would exceed ``max_memory``; checked before
        anything is evaluated.

    Examples
    --------
    >>> import polynet
    >>> net = polynet.SLNN(2, [4], 2).eval()
    >>> verify(net, polynet.expand(net)).passed
    True
    """
    _check_whole(poly)
    try:
        good_tol = 0 < float(tol) < math.inf
    except (TypeError, ValueError):
        good_tol = False
    if not good_tol:
        raise ValueError(f"tol must be a positive number, got {tol!r}; the default is 1e-8.")
    if device is not None:
        from polynet.training import resolve_device

        device = resolve_device(device)
    else:
        device = poly.device
    n_dropped = 0
    if x is not None:
        data = torch.as_tensor(x if torch.is_tensor(x) else np.asarray(x, dtype=np.float64))
        data = data.to(device=device, dtype=torch.float64)
        if data.dim() > 2 and data[0].numel() == poly.n_vars:  # images of a conv model
            data = data.reshape(data.shape[0], -1)
        if data.dim() != 2 or data.shape[1] != poly.n_vars:
            raise ValueError(
                f"x must have shape (B, {poly.n_vars}) (the polynomial's variables), "
                f"got {tuple(data.shape)}."
            )
        finite = torch.isfinite(data).all(1)
        n_dropped = int((~finite).sum())
        if n_dropped == len(data) and n_dropped:
            raise ValueError(
                f"x has NaN or Inf in every one of its {n_dropped} rows; no data point is left "
                "to verify on. Clean the data, or pass x=None to verify on the box [-1, 1]^n."
            )
        if n_dropped:
            data = data[finite]
        low, high = data.min(0).values, data.max(0).values
    else:
        data = torch.zeros(0, poly.n_vars, dtype=torch.float64, device=device)
        low = -torch.ones(poly.n_vars, dtype=torch.float64, device=device)
        high = -low
    gen = torch.Generator(device="cpu").manual_seed(seed)
    box = torch.rand(n_box, poly.n_vars, generator=gen, dtype=torch.float64).to(device)
    box = low + (high - low) * box
    points = torch.cat([data, box])
    if isinstance(poly, NetworkPolynomial):
        check_evaluation_budget(poly, points.shape[0], max_memory)

    net = copy.deepcopy(model).to(device=device, dtype=torch.float64).eval()
    full = _embed(poly, points)
    shape = poly.input_shape
    several = poly.notes.get("input_shapes")  # a forward() taking several tensors
    with torch.no_grad():
        if several:
            from polynet.expansion.inputs import split_inputs

            expected = net(*split_inputs(full, several))
        else:
            expected = net(full.reshape(-1, *shape) if shape and len(shape) > 1 else full)
        expected = _flat_outputs(expected, poly, points.shape[0])
        got = _evaluate(poly.to(device), points, progress)
    abs_err, scale, rel_err = _errors(got, expected)
    # Judged on the data alone too: at high degree the box corners dominate max|net|, and a
    # polynomial that cancels badly on the data would pass relative to them.
    n_data = int(data.shape[0])
    data_abs, _, data_rel = _errors(got[:n_data], expected[:n_data])
    degree = poly.degree
    n_params = poly.n_network_parameters
    if n_params is None:
        n_params = sum(p.numel() for p in model.parameters())
    passed = bool(
        math.isfinite(rel_err)
        and rel_err <= tol
        and math.isfinite(data_rel)
        and data_rel <= tol
        and degree <= poly.degree_bound
    )
    return VerificationReport(
        n_data_points=int(data.shape[0]),
        n_box_points=int(box.shape[0]),
        max_abs_error=abs_err,
        max_rel_error=rel_err,
        output_scale=scale,
        data_max_abs_error=data_abs,
        data_max_rel_error=data_rel,
        tol=float(tol),
        degree=degree,
        degree_bound=poly.degree_bound,
        n_terms=poly.n_terms,
        max_terms=poly.max_terms,
        n_network_parameters=int(n_params),
        passed=passed,
        n_dropped_points=n_dropped,
    )


def _flat_outputs(out, poly, n_points: int) -> torch.Tensor:
    """The network's outputs as (points, n_outputs): a tuple/dict of tensors (a traced model
    with several outputs) in the polynomial's column order, the outputs it names."""
    if isinstance(out, torch.Tensor):
        return out.reshape(n_points, -1)
    from polynet.expansion.trace import _named_leaves  # the traced path's own leaf order

    leaves = dict(_named_leaves(out))
    names = list(poly.notes.get("outputs") or leaves)
    return torch.cat([leaves[name].reshape(n_points, -1) for name in names], dim=1)


#: Points evaluated between two updates of the progress bar: at least this many,
_PROGRESS_POINTS = 64
#: and at most this many updates.
_PROGRESS_STEPS = 50


def _evaluate(poly, points: torch.Tensor, progress: bool) -> torch.Tensor:
    """poly(points), by batches of points behind a progress bar (a store: by its blocks)."""
    if not progress:
        return poly(points)
    from tqdm.auto import tqdm

    if not isinstance(poly, NetworkPolynomial):  # a store reads its blocks once per call
        with tqdm(desc="verify", unit="block", leave=False) as bar:
            return poly(points, progress=bar)
    n = points.shape[0]
    step = max(_PROGRESS_POINTS, -(-n // _PROGRESS_STEPS))
    parts = []
    with tqdm(total=n, desc="verify", unit="point", leave=False) as bar:
        for s in range(0, n, step):
            parts.append(poly(points[s : s + step]))
            bar.update(parts[-1].shape[0])
    return torch.cat(parts) if parts else poly(points)


def _errors(got: torch.Tensor, expected: torch.Tensor) -> tuple[float, float, float]:
    """Max absolute error, max |expected|, and their ratio (0 for no points)."""
    if got.shape[0] == 0:
        return 0.0, 0.0, 0.0
    abs_err = float((got - expected).abs().max())
    scale = float(expected.abs().max())
    return abs_err, scale, abs_err / scale if scale > 0 else abs_err
