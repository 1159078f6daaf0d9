"""Receptive fields of a chain and the exact support they allow (Theorem 2(d), made exact).

A chain is read here as its *pattern*: which unit of each stage depends on which unit of the
stage before (a sparse boolean matrix per affine map; per-unit polynomials keep the pattern).
Everything after the last polynomial stage is linear, so each output is a sum of the last
polynomial units' polynomials, and each of those lives in the pixels of its receptive field.

The exact generic support (``proofs/circuits.md``, C4) follows from the pattern alone:
a unit after an affine map has the union of its inputs' supports and the constant; a unit
after a degree-k polynomial has the k-fold sumset F_k(S) of its input's support S. The
network polynomial's support is the union of the last units' supports. Units with the same
restricted pattern (translates of one another inside a conv net) have the same support in
their field's own variable numbering, so each such *signature* is computed once.

Supports are sets of monomial codes (:mod:`polynet.polynomial.monomial_codes`); no coefficient is
computed. For generic weights the count is the number of non-zero terms (tested).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from polynet.expansion.network import LoweredNetwork, UnitPolynomials, iter_layers
from polynet.polynomial.monomial_codes import codes_fit, decode, encode, n_codes
from polynet.slaf import SLAF

__all__ = [
    "PatternStage",
    "Group",
    "SupportTooLarge",
    "patterns_of_lowered",
    "patterns_of_model",
    "receptive_groups",
    "SupportCache",
    "support_codes",
    "support_count",
    "support_lower_bound",
]

#: Most pairs one sumset may enumerate, and most codes all fields together may hold, before
#: the support is given up as too large to enumerate (about 0.5 GiB of codes).
MAX_PAIRS = 30_000_000
MAX_CODES_TOTAL = 60_000_000


class SupportTooLarge(Exception):
    """Raised inside this module when a support would exceed the enumeration caps."""


@dataclass(frozen=True)
class PatternStage:
    """One stage as a dependency pattern: ``kind`` is "matrix", "diagonal" or "units"."""

    kind: str
    size_out: int
    pattern: sp.csr_matrix | None = None  # "matrix": (size_out, size_in), bool
    degree: int = 1  # "units": the polynomial's degree


@dataclass(frozen=True)
class Group:
    """Last polynomial units sharing one receptive field, and the cone of units under them.

    ``rows[s]`` are the units of stage s the group needs (output side) and ``cols[s]`` the
    units of the stage before; ``field`` the inputs (``cols[0]``), ascending.
    """

    units: np.ndarray
    field: np.ndarray
    rows: tuple[np.ndarray, ...]
    cols: tuple[np.ndarray, ...]


# -- patterns ---------------------------------------------------------------------------------


def patterns_of_lowered(lowered: LoweredNetwork) -> list[PatternStage]:
    """Patterns of lowered stages: the non-zero entries of each affine map."""
    out = []
    for stage in lowered.stages:
        if isinstance(stage, UnitPolynomials):
            out.append(PatternStage("units", stage.coefficients.shape[0], degree=stage.degree))
        elif stage.weight.dim() == 1:
            out.append(PatternStage("diagonal", stage.out_features))
        else:
            w = stage.weight.detach().cpu().numpy()
            out.append(PatternStage("matrix", w.shape[0], sp.csr_matrix(w != 0)))
    return out


def patterns_of_model(model: nn.Module, shape: tuple[int, ...]) -> list[PatternStage] | None:
    """Generic patterns of a chain's layers (every weight non-zero), without lowering it.

    Convolutions and pools cost one ``unfold`` of an index image, not a dense probe. Returns
    None for a layer whose pattern is not read here (e.g. a non-zero padding mode).
    """
    out: list[PatternStage] = []
    for _, layer in iter_layers(model):
        n = math.prod(shape)
        if isinstance(layer, SLAF):
            out.append(PatternStage("units", n, degree=layer.degree))
        elif isinstance(layer, nn.Linear):
            if len(shape) != 1 or shape[0] != layer.in_features:
                return None
            out.append(PatternStage("matrix", layer.out_features, _full(layer.out_features, n)))
            shape = (layer.out_features,)
        elif isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            out.append(PatternStage("diagonal", n))
        elif isinstance(layer, nn.Flatten):
            shape = (n,)
        elif isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.AvgPool1d, nn.AvgPool2d)):
            read = _window_pattern(layer, shape)
            if read is None:
                return None
            pattern, shape = read
            out.append(PatternStage("matrix", pattern.shape[0], pattern))
        elif not isinstance(layer, (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d)):
            return None
    return out


def _full(rows: int, cols: int) -> sp.csr_matrix:
    indptr = np.arange(rows + 1, dtype=np.int64) * cols
    indices = np.tile(np.arange(cols, dtype=np.int64), rows)
    return sp.csr_matrix((np.ones(rows * cols, bool), indices, indptr), shape=(rows, cols))


def _ints(v, dims: int) -> tuple[int, ...]:
    if isinstance(v, (tuple, list)):
        return tuple(int(x) for x in v) if len(v) == dims else tuple(int(v[0]) for _ in range(dims))
    return (int(v),) * dims


def _window_pattern(layer: nn.Module, shape: tuple[int, ...]):
    """Pattern of a conv or average pool from the input positions each window reads."""
    one_d = isinstance(layer, (nn.Conv1d, nn.AvgPool1d))
    if one_d:
        if len(shape) != 2:
            return None
        c, h, w = shape[0], 1, shape[1]
    else:
        if len(shape) != 3:
            return None
        c, h, w = shape
    conv = isinstance(layer, (nn.Conv1d, nn.Conv2d))
    if conv:
        if layer.padding_mode != "zeros" or layer.in_channels != c:
            return None
        kernel, stride, dilation = layer.kernel_size, layer.stride, layer.dilation
        padding = layer.padding
    else:
        if getattr(layer, "ceil_mode", False):
            return None
        kernel = layer.kernel_size
        stride = layer.stride if layer.stride is not None else kernel
        padding, dilation = layer.padding, 1
    dims = 1 if one_d else 2
    kernel, stride, dilation = _ints(kernel, dims), _ints(stride, dims), _ints(dilation, dims)
    if not isinstance(padding, str):
        padding = _ints(padding, dims)
    if one_d:
        kernel, stride, dilation = (1, *kernel), (1, *stride), (1, *dilation)
        padding = padding if isinstance(padding, str) else (0, *padding)
    # Input positions + 1 (0 marks padding), padded and cut into windows.
    image = torch.arange(1, h * w + 1, dtype=torch.float64).reshape(1, 1, h, w)
    if isinstance(padding, str):
        if padding == "valid":
            pads = (0, 0, 0, 0)
        else:  # "same": torch pads the extra one on the right / bottom
            tot = [dilation[i] * (kernel[i] - 1) for i in range(2)]
            pads = (tot[1] // 2, tot[1] - tot[1] // 2, tot[0] // 2, tot[0] - tot[0] // 2)
    else:
        ph, pw = padding
        pads = (pw, pw, ph, ph)
    image = F.pad(image, pads)
    hp, wp = image.shape[-2:]
    oh = (hp - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    ow = (wp - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    if oh < 1 or ow < 1:
        return None
    windows = F.unfold(image, kernel, dilation=dilation, stride=stride)[0]  # (k, L)
    windows = windows.round().to(torch.int64).numpy().T  # (L, k)
    rows, ks = np.nonzero(windows)
    spatial = sp.csr_matrix(
        (np.ones(len(rows), bool), (rows, windows[rows, ks] - 1)), shape=(oh * ow, h * w)
    )
    if conv:
        groups = layer.groups
        co = layer.out_channels
        block = np.ones((co // groups, c // groups), bool)
        channels = sp.csr_matrix(sp.block_diag([block] * groups)) if groups > 1 else _full(co, c)
    else:
        co = c
        channels = sp.identity(c, dtype=bool, format="csr")
    pattern = sp.csr_matrix(sp.kron(channels, spatial, format="csr"), dtype=bool)
    out_shape = (co, ow) if one_d else (co, oh, ow)
    return pattern, out_shape


def support_lower_bound(model: nn.Module, shape: tuple[int, ...] | None = None) -> int:
    """A lower bound on a chain's generic support from its first affine layer alone.

    Every monomial of degree ≤ D in the inputs of one first-layer window (a conv kernel's
    window, clipped to the input ``shape`` when given; all of a Linear's inputs) is
    generically present (the SLAFs raise it to F_D), so C(w + D, D) monomials at least.
    Costs nothing: a refusal can use it before lowering.
    """
    degree, width = 1, None
    for position, (_, layer) in enumerate(iter_layers(model)):
        if isinstance(layer, SLAF):
            degree *= layer.degree
        elif width is None and isinstance(layer, nn.Linear):
            width = layer.in_features
        elif width is None and isinstance(layer, (nn.Conv1d, nn.Conv2d)):
            kernel = list(layer.kernel_size)
            if shape is not None and position == 0 and len(shape) == len(kernel) + 1:
                kernel = [min(k, s) for k, s in zip(kernel, shape[1:])]
            elif position != 0:
                kernel = [1]  # shapes after other layers are not followed here
            width = layer.in_channels // layer.groups * math.prod(kernel)
    return n_codes(width or 1, degree)


# -- receptive fields and cones -------------------------------------------------------------------


def _last_units(stages: list[PatternStage]) -> int | None:
    found = [i for i, s in enumerate(stages) if s.kind == "units"]
    return found[-1] if found else None


def _bool_product(a: sp.csr_matrix, b: sp.csr_matrix) -> sp.csr_matrix:
    c = (a.astype(np.int32) @ b.astype(np.int32)).tocsr()
    c.data[:] = 1
    return c.astype(bool)


def receptive_groups(stages: list[PatternStage], n_inputs: int) -> list[Group]:
    """The last polynomial stage's units that reach an output, grouped by receptive field."""
    last = _last_units(stages)
    if last is None:
        return []
    width = stages[last].size_out
    # Which last units some output reads: the trailing maps' pattern, composed.
    reach = sp.identity(width, dtype=bool, format="csr")
    for s in stages[last + 1 :]:
        if s.kind == "matrix":
            reach = _bool_product(s.pattern, reach)
    used = np.flatnonzero(reach.getnnz(axis=0) > 0)
    field = sp.identity(n_inputs, dtype=bool, format="csr")
    for s in stages[: last + 1]:
        if s.kind == "matrix":
            field = _bool_product(s.pattern, field)
    field = field[used]
    keys: dict[bytes, list[int]] = {}
    for row, unit in enumerate(used):
        cols = np.sort(field.indices[field.indptr[row] : field.indptr[row + 1]])
        keys.setdefault(cols.tobytes(), []).append(int(unit))
    return [_cone(stages, last, np.array(units)) for units in keys.values()]


def _cone(stages: list[PatternStage], last: int, units: np.ndarray) -> Group:
    needed = units
    rows, cols = [], []
    for s in reversed(stages[: last + 1]):
        rows.append(needed)
        if s.kind == "matrix":
            sub = s.pattern[needed]
            needed = _sorted_unique(sub.indices.astype(np.int64))
        cols.append(needed)
    return Group(units, needed, tuple(reversed(rows)), tuple(reversed(cols)))


def pattern_signature(stages: list[PatternStage], group: Group) -> bytes:
    """Equal for groups whose cones have the same pattern up to renumbering (translates)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(np.int64(len(group.field)).tobytes())
    for s, rows, cols in zip(stages, group.rows, group.cols):
        h.update(f"{s.kind}{s.degree}:{len(rows)}:{len(cols)};".encode())
        if s.kind == "matrix":
            sub = s.pattern[rows][:, cols].tocsr()
            sub.sort_indices()
            h.update(sub.indptr.astype(np.int64).tobytes())
            h.update(sub.indices.astype(np.int64).tobytes())
    return h.digest()


# -- supports -----------------------------------------------------------------------------------


def _sorted_unique(a: np.ndarray, presorted: bool = False) -> np.ndarray:
    # Sort-based: numpy's hash-based int64 unique is very slow with many distinct values.
    if not presorted:
        a = np.sort(a)
    if not len(a):
        return a
    keep = np.empty(len(a), bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


class _Support:
    """A support set in a field's variables: sorted codes, or every monomial up to a degree."""

    __slots__ = ("codes", "degree", "full")

    def __init__(self, codes: np.ndarray | None, degree: int, full: bool = False) -> None:
        self.codes, self.degree, self.full = codes, degree, full

    @classmethod
    def of(cls, codes: np.ndarray, n: int) -> _Support:
        degree = _degree_of(codes[-1], n) if len(codes) else 0
        if len(codes) == n_codes(n, degree):
            return cls(None, degree, full=True)
        return cls(codes, degree)

    def explicit(self, n: int) -> np.ndarray:
        if self.full:
            size = n_codes(n, self.degree)
            if size > MAX_PAIRS:
                raise SupportTooLarge
            return np.arange(size, dtype=np.int64)
        return self.codes

    def size(self, n: int) -> int:
        return n_codes(n, self.degree) if self.full else len(self.codes)


def _degree_of(code: int, n: int) -> int:
    d = 0
    while n_codes(n, d) <= code:
        d += 1
    return d


def _union(parts: list[_Support], n: int) -> _Support:
    top = max(p.degree for p in parts)
    fulls = [p for p in parts if p.full and p.degree == top]
    if fulls:
        return _Support(None, top, full=True)
    merged = np.concatenate([np.zeros(1, np.int64)] + [p.explicit(n) for p in parts])
    return _Support.of(_sorted_unique(merged), n)


def _sumset(a: _Support, b: _Support, n: int, same: bool) -> _Support:
    if a.full and b.full:
        return _Support(None, a.degree + b.degree, full=True)
    if a.size(n) * b.size(n) > MAX_PAIRS:
        raise SupportTooLarge
    ta, tb = decode(a.explicit(n), n, a.degree), decode(b.explicit(n), n, b.degree)
    if same:
        i, j = np.triu_indices(len(ta))
    else:
        i, j = np.divmod(np.arange(len(ta) * len(tb)), len(tb))
    tuples = np.sort(np.concatenate([ta[i], tb[j]], axis=1), axis=1)
    return _Support.of(_sorted_unique(encode(tuples, n)), n)


def _power(s: _Support, k: int, n: int) -> _Support:
    """F_k(S): the k-fold sumset of S (which holds the constant), by repeated squaring."""
    result, base = None, s
    while k:
        if k & 1:
            result = base if result is None else _sumset(result, base, n, same=False)
        k >>= 1
        if k:
            base = _sumset(base, base, n, same=True)
    return result


def local_support(stages: list[PatternStage], group: Group) -> _Support:
    """The monomials the group's units can hold, in the field's variables."""
    n = len(group.field)
    # Units of the stage before stage 0 are the field's inputs: {1, x_i}.
    sets = [_Support(np.array([0, 1 + i], np.int64), 1) for i in range(n)]
    ids = np.arange(n)
    for s, rows, cols in zip(stages, group.rows, group.cols):
        if s.kind == "matrix":
            sub = s.pattern[rows][:, cols].tocsr()
            new_sets, new_ids, seen = [], np.empty(len(rows), np.int64), {}
            for r in range(len(rows)):
                members = _sorted_unique(ids[sub.indices[sub.indptr[r] : sub.indptr[r + 1]]])
                key = members.tobytes()
                if key not in seen:
                    seen[key] = len(new_sets)
                    new_sets.append(
                        _union([sets[m] for m in members], n)
                        if len(members)
                        else _Support(np.zeros(1, np.int64), 0)
                    )
                new_ids[r] = seen[key]
            sets, ids = new_sets, new_ids
        elif s.kind == "units":  # rows == cols: the same units, each raised to F_k
            used = _sorted_unique(ids)
            sets = [_power(sets[m], s.degree, n) for m in used]
            ids = np.searchsorted(used, ids)
    return _union([sets[m] for m in _sorted_unique(ids)], n)


class SupportCache:
    """Each group's support in its field's variables and as global codes, computed once per
    pattern signature (the global codes are cheap to redo; they are not kept)."""

    def __init__(self, stages: list[PatternStage], n_inputs: int, degree: int) -> None:
        self.stages, self.n_inputs, self.degree = stages, n_inputs, degree
        self._local: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
        self._support: dict[bytes, _Support] = {}

    def local(self, group: Group) -> np.ndarray:
        """Sorted codes of the group's support in the field's variables."""
        return self._entry(group)[0]

    def global_codes(self, group: Group) -> np.ndarray:
        """The same monomials as codes in all the inputs (ascending too: the field is)."""
        tuples = self._entry(group)[1]
        return encode(np.append(group.field, self.n_inputs)[tuples], self.n_inputs)

    def support(self, group: Group) -> _Support:
        key = pattern_signature(self.stages, group)
        if key not in self._support:
            self._support[key] = local_support(self.stages, group)
        return self._support[key]

    def _entry(self, group: Group) -> tuple[np.ndarray, np.ndarray]:
        key = pattern_signature(self.stages, group)
        if key not in self._local:
            local = self.support(group).explicit(len(group.field))
            self._local[key] = local, decode(local, len(group.field), self.degree)
        return self._local[key]


def support_codes(
    stages: list[PatternStage],
    n_inputs: int,
    degree: int,
    groups: list[Group] | None = None,
    cache: SupportCache | None = None,
) -> np.ndarray:
    """Sorted global codes of the chain's generic support (raises SupportTooLarge); pass
    the ``groups`` and ``cache`` the caller keeps, so they are computed once."""
    if not codes_fit(n_inputs, degree):
        raise SupportTooLarge
    if groups is None:
        groups = receptive_groups(stages, n_inputs)
    if not groups:  # no polynomial stage: the affine map's inputs and the constant
        reach = sp.identity(n_inputs, dtype=bool, format="csr")
        for s in stages:
            if s.kind == "matrix":
                reach = _bool_product(s.pattern, reach)
        return np.concatenate([[0], 1 + np.flatnonzero(reach.getnnz(axis=0) > 0)]).astype(np.int64)
    cache = cache or SupportCache(stages, n_inputs, degree)
    parts, total = [], 0
    for group in groups:
        parts.append(cache.global_codes(group))
        total += len(parts[-1])
        if total > MAX_CODES_TOTAL:
            raise SupportTooLarge
    merged = np.concatenate(parts)
    del parts
    merged.sort()
    return _sorted_unique(merged, presorted=True)


def support_count(stages: list[PatternStage], n_inputs: int, degree: int) -> int | None:
    """Number of monomials in the generic support, or None when too large to enumerate."""
    try:
        groups = receptive_groups(stages, n_inputs)
        cache = SupportCache(stages, n_inputs, degree)
        for group in groups:  # a field of all inputs with every monomial: nothing to merge
            found = cache.support(group)
            if found.full and len(group.field) == n_inputs and found.degree == degree:
                return n_codes(n_inputs, degree)
        if not codes_fit(n_inputs, degree):
            return None
        return len(support_codes(stages, n_inputs, degree, groups, cache))
    except SupportTooLarge:
        return None
