"""Sparse expansion field by field: a chain's polynomial over its receptive fields only.

After the last polynomial stage a chain is linear, so output o is

    p_o(x) = c_o + Σ_u V[o, u] q_u(x_field(u)),

a read-out V of the last units' polynomials q_u, each a polynomial in the few inputs of its
receptive field. The last units are grouped by field (in a conv net: all channels at one
position); each group's cone (the units under it) is a small chain in the field's inputs,
expanded densely by the ordinary walk (:mod:`polynet.expansion.dense`). Groups whose cones carry
the same numbers (translates inside a conv net) share one expansion. The support is counted
first (:mod:`polynet.expansion.receptive`); then each group's coefficients, read out by V, are
added into the sorted global codes. Memory follows the support, not C(n + D, D).
"""

from __future__ import annotations

import hashlib
import logging
import time

import numpy as np
import torch
from torch import Tensor, nn

from polynet.errors import ExpansionTooLargeError, NotExpandableError
from polynet.expansion.dense import FloatOps, _apply_affine, _identity, plan, walk
from polynet.expansion.network import Affine, LoweredNetwork, UnitPolynomials
from polynet.expansion.receptive import (
    Group,
    SupportCache,
    SupportTooLarge,
    patterns_of_lowered,
    receptive_groups,
    support_codes,
    support_lower_bound,
)
from polynet.polynomial.sparse_polynomial import SparsePolynomial

__all__ = ["SparsePlan", "expand_fields", "expand_sparse", "plan_fields", "sparse_polynomial"]

logger = logging.getLogger(__name__)


class SparsePlan:
    """The support and the sizes of a field-by-field expansion, known before any arithmetic."""

    def __init__(self, lowered: LoweredNetwork, codes: np.ndarray, groups: list[Group], cache):
        self.lowered, self.codes, self.groups, self.cache = lowered, codes, groups, cache
        n_out = lowered.n_outputs
        self.result_bytes = float(len(codes)) * 8 * (n_out + 1)
        # The largest group's dense local walk, and its expansion held while read out.
        local = max(
            (_local_network(lowered, g)[0] for g in _one_per_field_size(groups)),
            key=lambda net: net.n_inputs,
            default=None,
        )
        self.local_peak_bytes = 0.0 if local is None else plan(local).peak_bytes
        self.peak_bytes = self.result_bytes * 1.5 + 2 * self.local_peak_bytes

    @property
    def n_terms(self) -> int:
        return len(self.codes)


def _one_per_field_size(groups: list[Group]) -> list[Group]:
    seen: dict[int, Group] = {}
    for g in groups:
        seen.setdefault(len(g.field), g)
    return list(seen.values())


def plan_fields(lowered: LoweredNetwork) -> SparsePlan:
    """Count the support of ``lowered`` field by field (raises ExpansionTooLargeError when
    it is too large to enumerate)."""
    stages = patterns_of_lowered(lowered)
    n, degree = lowered.n_inputs, lowered.degree_bound
    groups = receptive_groups(stages, n)
    cache = SupportCache(stages, n, degree)
    try:
        codes = support_codes(stages, n, degree, groups, cache)
    except SupportTooLarge as exc:
        raise ExpansionTooLargeError(
            f"the sparse support of this network is too large to enumerate (monomials of "
            f"degree <= {degree} in {n} inputs, over receptive fields of up to "
            f"{max((len(g.field) for g in groups), default=n)} inputs); expand a subset of the "
            "inputs with inputs=[...] and fixed=..."
        ) from exc
    return SparsePlan(lowered, codes, groups, cache)


def _readout(lowered: LoweredNetwork, last: int, device) -> Tensor:
    """[c | V]: the trailing affine run applied to the last units' identity, on ``device``."""
    run = list(lowered.stages[last + 1 :])
    m = lowered.stages[last].coefficients.shape[0]
    return _apply_affine(FloatOps(device), run, _identity(m, device))


def _local_network(lowered: LoweredNetwork, group: Group) -> tuple[LoweredNetwork, bytes]:
    """The group's cone as a chain in its field's inputs, and a digest of its numbers."""
    last = len(group.rows) - 1
    h = hashlib.blake2b(digest_size=16)
    stages = []
    for stage, rows, cols in zip(lowered.stages[: last + 1], group.rows, group.cols):
        r = torch.from_numpy(rows).to(_device_of(stage))
        if isinstance(stage, UnitPolynomials):
            sub = UnitPolynomials(stage.coefficients[r], stage.layers)
            parts = (sub.coefficients,)
        elif stage.weight.dim() == 1:
            sub = Affine(stage.weight[r], stage.bias[r], stage.layers)
            parts = (sub.weight, sub.bias)
        else:
            c = torch.from_numpy(cols).to(_device_of(stage))
            sub = Affine(stage.weight[r[:, None], c], stage.bias[r], stage.layers)
            parts = (sub.weight, sub.bias)
        for t in parts:
            h.update(str(tuple(t.shape)).encode())
            h.update(t.detach().cpu().numpy().tobytes())
        stages.append(sub)
    n = len(group.field)
    return LoweredNetwork(tuple(stages), n, (n,)), h.digest()


#: Elements of one local expansion chunk (units × C(field + D, D) float64): 16 MiB.
LOCAL_CHUNK_ELEMENTS = 1 << 21


def _local_expansion(net: LoweredNetwork, local: Tensor, device) -> Tensor:
    """The cone's last units at the columns ``local`` of their dense local expansion, a few
    units at a time (the walk's outer products grow with the units it carries)."""
    m = net.stages[-1].coefficients.shape[0]
    size = plan(net).index.size
    step = max(1, LOCAL_CHUNK_ELEMENTS // size)
    parts = []
    for start in range(0, m, step):
        sub = _restrict_last(net, slice(start, start + step)) if step < m else net
        if sub is None:  # the last units cannot be split off: all at once
            sub, step = net, m
        q = walk(sub, FloatOps(device), plan(sub), device)
        parts.append(q[:, local])
        del q
        if sub is net:
            break
    return torch.cat(parts)


def _restrict_last(net: LoweredNetwork, units: slice) -> LoweredNetwork | None:
    """``net`` computing only some of its last units: the last polynomial stage and the maps
    back to (and including) the matrix that feeds it keep those rows."""
    stages = list(net.stages)
    stages[-1] = UnitPolynomials(stages[-1].coefficients[units], stages[-1].layers)
    for i in range(len(stages) - 2, -1, -1):
        stage = stages[i]
        if isinstance(stage, UnitPolynomials):
            return None
        stages[i] = Affine(stage.weight[units], stage.bias[units], stage.layers)
        if stage.weight.dim() == 2:
            return LoweredNetwork(tuple(stages), net.n_inputs, net.input_shape)
    return None


def _device_of(stage) -> torch.device:
    return (stage.coefficients if isinstance(stage, UnitPolynomials) else stage.bias).device


def expand_fields(
    lowered: LoweredNetwork,
    device: torch.device,
    sparse_plan: SparsePlan | None = None,
    *,
    progress=None,
) -> tuple[np.ndarray, Tensor]:
    """Codes and coefficients (n_outputs, T) of ``lowered``'s polynomial, field by field."""
    sparse_plan = sparse_plan or plan_fields(lowered)
    codes = sparse_plan.codes
    n_out = lowered.n_outputs
    coef = torch.zeros(n_out, len(codes), dtype=torch.float64, device=device)
    last = _last_polynomial(lowered)
    cv = _readout(lowered, last, device)
    coef[:, 0] += cv[:, 0]  # the constant's code is 0, always in the support
    v = cv[:, 1:]
    # Groups by the numbers of their cones: each distinct cone is expanded once.
    buckets: dict[bytes, list[Group]] = {}
    nets: dict[bytes, LoweredNetwork] = {}
    for group in sparse_plan.groups:
        net, key = _local_network(lowered, group)
        buckets.setdefault(key, []).append(group)
        nets.setdefault(key, net)
    for key, groups in buckets.items():
        net = nets.pop(key)
        local = torch.from_numpy(sparse_plan.cache.local(groups[0])).to(device)
        q = _local_expansion(net, local, device)  # (units, local support)
        for group in groups:
            at = torch.from_numpy(np.searchsorted(codes, sparse_plan.cache.global_codes(group)))
            contribution = v[:, torch.from_numpy(group.units).to(device)] @ q
            at = at.to(device)
            for o in range(n_out):  # one contiguous row at a time
                coef[o].index_add_(0, at, contribution[o])
        del q
        if progress is not None:
            progress.update(len(groups))
    return codes, coef


def _last_polynomial(lowered: LoweredNetwork) -> int | None:
    found = [i for i, s in enumerate(lowered.stages) if isinstance(s, UnitPolynomials)]
    return found[-1] if found else None


def sparse_polynomial(
    lowered: LoweredNetwork,
    device: torch.device,
    *,
    n_network_parameters: int | None = None,
    sparse_plan: SparsePlan | None = None,
    progress=None,
) -> SparsePolynomial:
    """The chain's polynomial as a :class:`SparsePolynomial` (dropping all-zero terms)."""
    start = time.perf_counter()
    sparse_plan = sparse_plan or plan_fields(lowered)
    if _last_polynomial(lowered) is None:
        # An affine map: its matrix is the polynomial.
        cv = _apply_affine(
            FloatOps(device), list(lowered.stages), _identity(lowered.n_inputs, device)
        )
        codes, coef = np.arange(lowered.n_inputs + 1, dtype=np.int64), cv
    else:
        codes, coef = expand_fields(lowered, device, sparse_plan, progress=progress)
    keep = (coef != 0).any(0)
    if not bool(keep.all()):
        codes = codes[keep.cpu().numpy()]
        coef = coef[:, keep]
    seconds = time.perf_counter() - start
    logger.info("expanded %d monomials field by field in %.3f s", len(codes), seconds)
    return SparsePolynomial(
        lowered.n_inputs,
        codes,
        coef,
        degree_bound=lowered.degree_bound,
        n_network_parameters=n_network_parameters,
        input_shape=lowered.input_shape,
        notes={
            "seconds": seconds,
            "engine": "float64 fields",
            "device": str(device),
            "support": int(sparse_plan.n_terms),
            "fields": len(sparse_plan.groups),
        },
    )


def expand_sparse(
    lowered: LoweredNetwork,
    device: torch.device,
    budget: int,
    dense_refusal: ExpansionTooLargeError | None,
    exact: object = False,
    inputs: object = None,
    store: object = None,
    n_network_parameters: int | None = None,
) -> SparsePolynomial:
    """``expand``'s sparse branch: checked options, the support counted, the budget asked.

    ``dense_refusal`` is the dense form's refusal when the sparse form was not asked for: it
    is raised, with the sparse form's size added, when the sparse form does not fit either.
    """
    if dense_refusal is None and (exact or store is not None or inputs is not None):
        raise ValueError(
            "form='sparse' expands the whole network in float64; it does not combine with "
            "exact=, store= or inputs= (pass form='dense' for those)."
        )
    try:
        sparse_plan = plan_fields(lowered)
    except ExpansionTooLargeError as exc:
        if dense_refusal is None:
            raise
        raise ExpansionTooLargeError(
            f"{dense_refusal} The sparse form (form='sparse') does not help here: {exc}",
            dense_refusal.refusal,
        ) from dense_refusal
    if sparse_plan.peak_bytes > budget:
        message = (
            f"the sparse form of this network has {sparse_plan.n_terms:,} monomials and needs "
            f"about {_gib(sparse_plan.peak_bytes)}, over the budget of {_gib(budget)}"
        )
        if dense_refusal is not None:
            raise ExpansionTooLargeError(
                f"{dense_refusal} With form='sparse': {message}.", dense_refusal.refusal
            )
        raise ExpansionTooLargeError(
            f"{message}; raise max_memory= or expand a subset of the "
            "inputs with inputs=[...] and fixed=... (form='dense')."
        )
    if dense_refusal is not None:
        logger.info("dense form over budget (%s); expanding field by field", dense_refusal)
    return sparse_polynomial(
        lowered, device, n_network_parameters=n_network_parameters, sparse_plan=sparse_plan
    )


def check_sparse_may_fit(
    model: nn.Module,
    budget: int | None,
    device,
    refusal: ExpansionTooLargeError,
    input_shape: tuple[int, ...] | None = None,
) -> None:
    """Re-raise ``refusal`` (adding why) when even a lower bound on the sparse form's size,
    from the first layer alone, is over the budget: nothing is lowered or enumerated."""
    from polynet.expansion.refusal import _n_outputs, available_bytes
    from polynet.memory import DEFAULT_MEMORY_FRACTION

    if budget is None:
        if device is None:
            params = list(model.parameters())
            device = params[0].device if params else torch.device("cpu")
        budget = int(available_bytes(torch.device(device)) * DEFAULT_MEMORY_FRACTION)
    from polynet.expansion.network import _input_shape, iter_layers

    try:
        shape = _input_shape(model, next(iter_layers(model))[1], input_shape)
    except NotExpandableError:
        shape = None
    at_least = support_lower_bound(model, shape)
    need = float(at_least) * 8 * (_n_outputs(model) + 1)
    if need > budget:
        raise ExpansionTooLargeError(
            f"{refusal} The sparse form (form='sparse') does not fit either: at least "
            f"{float(at_least):.3g} monomials (every monomial of degree <= D in one first-layer "
            f"window), about {need / 2**30:.3g} GiB.",
            refusal.refusal,
        ) from refusal


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**27 else f"{n / 2**20:.1f} MiB"
