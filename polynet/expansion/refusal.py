"""Refusing an expansion that does not fit: the numbers, and the ways forward that do.

A refusal is a value: what was asked (the monomial count, the memory and time it needs, the
budget) and the alternatives that would fit (the exact low-degree part, the local polynomial
at a point, a slice of the inputs, a store on disk, a larger budget, counting only), each with
its size. :class:`~polynet.errors.ExpansionTooLargeError` carries it; its message is the
Python rendering, and the CLI renders the same alternatives as its flags.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

from polynet.memory import available_bytes, fmt_bytes, fmt_count, fmt_seconds

__all__ = ["Refusal", "fmt_bytes", "fmt_count", "fmt_seconds", "largest_slice"]

#: Degrees of the low-degree parts a refusal offers.
OFFERED_DEGREES = (2, 3)


def largest_slice(fits, n: int) -> int:
    """The most inputs k ≤ n with ``fits(k)`` true (``fits`` grows false with k); 0 if none."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def disk_free(path: str | Path = ".") -> int:
    """Free bytes on the disk that holds ``path`` (or its nearest existing parent)."""
    p = Path(path).resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return 0


@dataclass(frozen=True)
class Refusal:
    """Why an expansion was refused and what would fit instead.

    Attributes
    ----------
    subject : str
        What was refused ("network", "model").
    n_vars, degree, n_outputs : int
        The polynomial asked for: inputs, degree bound, outputs.
    need_bytes : float
        Its estimated peak memory (a lower bound when ``at_least``).
    budget_bytes : float
        The memory budget it exceeds.
    seconds : float or None
        Its estimated time, when known.
    at_least : bool
        ``need_bytes`` counts the coefficients only (refused before the layers were lowered).
    slice_inputs : int
        The most inputs a slice (``inputs=``) of this network fits in the budget (0: none).
    store_bytes : float or None
        Peak memory of writing the result to a store, when the store fits the disk and the
        budget (else None: no store is offered).
    raise_budget : bool
        Whether the expansion would fit in the available memory with a larger budget.
    count_hint : str
        The Python call that counts the terms.
    factored : bool
        The network is an MLP whose whole polynomial ``form="factored"`` holds compactly.
    """

    subject: str
    n_vars: int
    degree: int
    n_outputs: int
    need_bytes: float
    budget_bytes: float
    seconds: float | None = None
    at_least: bool = False
    slice_inputs: int = 0
    store_bytes: float | None = None
    raise_budget: bool = False
    count_hint: str = "polynet.count_terms(model)"
    factored: bool = False

    @property
    def n_monomials(self) -> int:
        return math.comb(self.n_vars + self.degree, self.degree)

    @property
    def result_bytes(self) -> float:
        return 8.0 * self.n_monomials * self.n_outputs

    def low_degree_sizes(self) -> list[tuple[int, int]]:
        """(q, C(n + q, q)) for the offered degrees q below the degree bound."""
        return [(q, math.comb(self.n_vars + q, q)) for q in OFFERED_DEGREES if q < self.degree]

    def _head(self) -> str:
        n, D = self.n_vars, self.degree
        need = ("at least " if self.at_least else "about ") + fmt_bytes(self.need_bytes)
        time = f" and {fmt_seconds(self.seconds)}" if self.seconds is not None else ""
        outputs = f" x {self.n_outputs} outputs" if self.n_outputs > 1 else ""
        return (
            f"expanding this {self.subject} needs {need}{time} (C({n}+{D}, {D}) = "
            f"{fmt_count(self.n_monomials)} monomials of degree <= {D} in {n} inputs{outputs}, "
            f"{fmt_bytes(self.result_bytes)} of coefficients), over the budget of "
            f"{fmt_bytes(self.budget_bytes)}"
        )

    def _degrees(self, flag) -> str:
        return " or ".join(
            f"{flag(q)} ({fmt_count(size)} monomials, {fmt_bytes(8.0 * size * self.n_outputs)})"
            for q, size in self.low_degree_sizes()
        )

    def _up_to(self) -> str:
        return "up to about" if self.at_least else "up to"

    def _ways(self, syntax: dict[str, str]) -> list[str]:
        """The alternatives that fit, written with ``syntax``'s arguments or flags."""
        ways = []
        if self.low_degree_sizes():
            ways.append(
                f"expand the exact part of degree <= {syntax['q']} with "
                + self._degrees(lambda q: syntax["degree"].format(q=q))
                + f", or the local polynomial at {syntax['at']}"
            )
        if self.slice_inputs:
            ways.append(
                f"expand a slice of {self._up_to()} {self.slice_inputs} inputs with "
                + syntax["slice"]
            )
        if self.store_bytes is not None:
            ways.append(
                f"write the result to disk block by block with {syntax['store']} (about "
                f"{fmt_bytes(self.store_bytes)} of memory, {fmt_bytes(self.result_bytes)} on disk)"
            )
        if self.factored:
            ways.append(_FACTORED_WAY.format(call=syntax["factored"]))
        if self.raise_budget:
            ways.append(f"raise {syntax['budget']}")
        return ways

    def python_text(self) -> str:
        """The message in Python syntax (what ``str(error)`` gives)."""
        ways = self._ways(_PYTHON)
        ways.append(f"count the terms without expanding with {self.count_hint}")
        return f"{self._head()}; " + "; ".join(ways) + "."

    def cli_text(self) -> str:
        """The message with the flags of ``polynet expand`` instead of Python arguments."""
        ways = self._ways(_CLI)
        if not ways:
            return f"{self._head()}."
        return f"{self._head()}; with polynet expand: " + "; ".join(ways) + "."


#: How each alternative is asked for, in Python and on the command line.
_PYTHON = {
    "q": "q",
    "degree": "degree={q}",
    "at": "a point x0 with degree=q, at=x0",
    "slice": "inputs=[...] and fixed=... (the other inputs held at fixed values)",
    "store": 'store="coeffs.zarr"',
    "factored": 'form="factored"',
    "budget": "max_memory=",
}
_CLI = {
    "q": "Q",
    "degree": "--degree {q}",
    "at": "a data row with --degree Q --at ROW",
    "slice": "--inputs I ... [--fixed V ...]",
    "store": "--out coeffs.zarr",
    "factored": 'polynet.expand(model, form="factored") in Python',
    "budget": "--max-memory",
}

_FACTORED_WAY = (
    "hold the whole polynomial exactly as G(W1 x + b1), a polynomial in the first layer's "
    "pre-activations with few terms, with {call}"
)

#: Peak memory of a slice's expansion per byte of its coefficients, for a slice suggested
#: before the layers are lowered: the dense walk's peak was 2-20 times its result on MNIST-size
#: MLPs and conv nets from 60 inputs on (more on small slices, whose result is small).
_SLICE_PEAK_FACTOR = 32.0


def _n_outputs(model) -> int:
    """The outputs of a chain ending in a Linear layer (1 when the layers do not tell)."""
    from torch import nn

    n_out = 1
    for m in model.modules():
        if isinstance(m, nn.Linear):
            n_out = m.out_features
        elif isinstance(m, (nn.Conv1d, nn.Conv2d)):
            n_out = 1
    return n_out


def check_counts(model, input_shape, inputs, budget: int | None, device, store, exact) -> None:
    """Refuse from counts alone, before any layer is lowered, an expansion whose coefficients
    exceed both the device's memory and (for the float path) the disk a store would use.

    Anything closer to fitting is left to the full estimate (which lowers the layers);
    ``expand`` asks whether the sparse form may still fit before it raises this refusal.
    """
    import torch

    from polynet.errors import ExpansionTooLargeError, NotExpandableError
    from polynet.expansion.count import count_terms
    from polynet.memory import DEFAULT_MEMORY_FRACTION

    if any(m.training for m in model.modules()):
        return  # lower() says so, with the layer's name
    try:
        counts = count_terms(model, input_shape)
    except NotExpandableError:
        return  # lower() says what is wrong, in its own words
    n = len(inputs) if inputs is not None else counts.n_vars
    D = counts.degree_bound
    n_out = _n_outputs(model)
    result = 8.0 * math.comb(n + D, D) * n_out
    if device is None:
        params = list(model.parameters())
        device = params[0].device if params else torch.device("cpu")
    if budget is None:
        budget = int(available_bytes(device) * DEFAULT_MEMORY_FRACTION)
    if result <= max(budget, available_bytes(device)):
        return
    if not exact and result <= disk_free(store if store is not None else "."):
        return
    slice_inputs = largest_slice(
        lambda k: _SLICE_PEAK_FACTOR * 8.0 * n_out * math.comb(k + D, D) <= budget, n - 1
    )
    from polynet.expansion.factored import factored_applies

    refusal = Refusal(
        "network",
        n,
        D,
        n_out,
        result,
        budget,
        at_least=True,
        slice_inputs=slice_inputs,
        factored=inputs is None and not exact and store is None and factored_applies(model),
    )
    raise ExpansionTooLargeError(refusal.python_text(), refusal)
