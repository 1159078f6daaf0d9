"""exact= for traced models: the recorded program run by an exact engine, within a budget.

A model with a custom ``forward()`` (or an ONNX graph) is first refused from its symbolic
trace's node sizes when even one value would not fit; it is then traced symbolically again
with ``record=True`` (:mod:`polynet.expansion.ir`). The program is run by the ring engine of
:mod:`polynet.expansion.ir_ring` (python-flint's ``fmpq_mpoly`` when installed, else SymPy's
ring over QQ; ``exact=True``, ``"flint"``, ``"sympy"``) or by the dense walk modulo primes of
:mod:`polynet.expansion.ir_dense` (``exact="modular"``). Before it starts, the terms it would
hold and the term products it would do are bounded from counts, and an expansion past the
budget is refused with a slice that fits.
"""

from __future__ import annotations

import math

import numpy as np

from polynet.errors import ExpansionTooLargeError
from polynet.expansion.graph import GraphExpansion, expand_graph
from polynet.expansion.ir import Program
from polynet.expansion.ir_ring import BYTES_PER_TERM, expand_program, program_cost
from polynet.expansion.refusal import fmt_bytes, fmt_count, fmt_seconds, largest_slice
from polynet.polynomial.exact import ExactCoefficients
from polynet.polynomial.index import MonomialIndex

__all__ = ["graph_engine", "expand_traced_exact", "expand_program_exact"]

#: Bytes per exact output coefficient (a Python Fraction and its integers), as the chain path.
_FRACTION_BYTES = 200
#: Estimated seconds past which the ring engine refuses (it is for small graphs).
MAX_SECONDS = 3600.0


def graph_engine(exact) -> str:
    """The exact engine ``exact`` asks for on a traced model: "flint" or "sympy" (rings; True
    picks flint when installed), or "modular" (dense residues, :mod:`ir_dense`)."""
    if exact is True:
        try:
            import flint  # noqa: F401

            return "flint"
        except ImportError:
            return "sympy"
    if exact == "flint":
        from polynet.extras import require

        require("flint", "exact='flint' (--exact flint)", "use exact='sympy'")
        return "flint"
    if exact == "sympy":
        return "sympy"
    if exact == "modular":
        return "modular"
    raise ValueError(f"exact must be True, False, 'modular', 'flint' or 'sympy', got {exact!r}.")


def check_program_budget(
    program: Program, engine: str, budget: int, name: str, degree: int | None = None
) -> None:
    """Refuse, before any ring arithmetic, a program too large for the ring engine (its part
    of degree <= ``degree`` when given)."""
    n = program.n_vars
    top = program.degree if degree is None else min(degree, program.degree)
    index_size = math.comb(n + top, top)
    cost = program_cost(program, max_degree=degree)
    need = cost.bytes(engine) + index_size * program.n_outputs * _FRACTION_BYTES

    def fits(k: int) -> bool:
        sliced = program_cost(program, max_degree=degree, n_vars=k)
        size = math.comb(k + top, top) * program.n_outputs
        return (
            sliced.seconds(engine) <= MAX_SECONDS
            and sliced.bytes(engine) + size * _FRACTION_BYTES <= budget
        )

    if need <= budget and cost.seconds(engine) <= MAX_SECONDS:
        return
    k = largest_slice(fits, n - 1)
    slice_way = (
        f"expand a slice of up to {k} inputs exactly with inputs=[...] and fixed=... (the other "
        "inputs held at fixed values); "
        if k
        else ""
    )
    if need > budget:
        why = f"about {fmt_bytes(need)}, over the budget of {fmt_bytes(budget)}"
    else:
        why = (
            f"about {fmt_count(cost.products)} products of terms, about "
            f"{fmt_seconds(cost.seconds(engine))} (the limit is {fmt_seconds(MAX_SECONDS)})"
        )
    raise ExpansionTooLargeError(
        f"expanding {name} exactly with {engine} needs {why} (C({n}+{top}, {top}) = "
        f"{fmt_count(index_size)} monomials in {n} inputs): the ring engine "
        f"multiplies polynomials entry by entry and is for small graphs; {slice_way}expand in "
        "float64 with exact=False; or count the terms without expanding with "
        "polynet.count_terms(model, input_shape=...)."
    )


def check_modular_budget(
    program: Program, budget: int, name: str, degree: int | None = None
) -> None:
    """Refuse a dense modular walk (held at degree <= ``degree`` when given) whose values
    would not fit in ``budget``."""
    n = program.n_vars
    top = program.degree if degree is None else min(degree, program.degree)
    index_size = math.comb(n + top, top)
    # Dense residues (float64) of the live values, an outer product's scratch, the result.
    cost = program_cost(program, max_degree=degree)
    need = cost.peak_terms * 8 * 4 + index_size * program.n_outputs * 40
    if need <= budget:
        return
    raise ExpansionTooLargeError(
        f"expanding {name} exactly with exact='modular' needs about {fmt_bytes(need)}, over "
        f"the budget of {fmt_bytes(budget)} (C({n}+{top}, {top}) = "
        f"{fmt_count(index_size)} monomials in {n} inputs); expand a slice with inputs=[...] "
        "and fixed=..., raise max_memory=, or expand in float64 with exact=False."
    )


def expand_program_exact(
    program: Program,
    engine: str,
    budget: int,
    name: str,
    on_node=None,
    degree: int | None = None,
) -> tuple[MonomialIndex, np.ndarray | ExactCoefficients]:
    """The index and exact coefficients (Fractions, or ExactCoefficients for "modular") of a
    recorded program, or of its part of degree <= ``degree``."""
    top = program.degree if degree is None else min(degree, program.degree)
    index = MonomialIndex(program.n_vars, top)
    if engine == "modular":
        from polynet.expansion.ir_dense import expand_program_modular

        check_modular_budget(program, budget, name, degree)
        return index, expand_program_modular(program, degree)
    check_program_budget(program, engine, budget, name, degree)
    return index, expand_program(program, engine, index, max_degree=degree, on_node=on_node)


def check_sketch_budget(sketch, engine: str, budget: int, name: str, q: int | None = None) -> None:
    """Refuse from the symbolic trace alone (before the probes that record the program) a
    model one of whose values already exceeds the budget as ring terms or dense residues
    (held at degree <= ``q`` when given)."""
    n = sketch.n_vars
    per_term = BYTES_PER_TERM.get(engine, 32)
    cap = q
    degree = sketch.degree_bound if q is None else min(q, sketch.degree_bound)
    n_out = sketch.n_outputs

    def kept(d: int) -> int:
        return d if cap is None else min(d, cap)

    def need(k: int, every: bool = False) -> float:
        """The largest value (a lower bound of the peak), or all of them (an upper bound)."""
        sizes = [
            row.values * math.comb(k + kept(row.degree), kept(row.degree)) for row in sketch.nodes
        ]
        held = sum(sizes) if every else max(sizes, default=0)
        return held * per_term + math.comb(k + degree, degree) * n_out * _FRACTION_BYTES

    if need(n) <= budget:
        return
    k = largest_slice(lambda k: need(k, every=True) <= budget, n - 1)
    slice_way = (
        f"expand a slice of up to {k} inputs exactly with inputs=[...] and fixed=... (the other "
        "inputs held at fixed values); "
        if k
        else ""
    )
    raise ExpansionTooLargeError(
        f"expanding {name} exactly with {engine} needs at least {fmt_bytes(need(n))}, over the "
        f"budget of {fmt_bytes(budget)} (C({n}+{degree}, {degree}) = "
        f"{fmt_count(math.comb(n + degree, degree))} monomials in {n} inputs): the exact engines "
        f"are for small graphs; {slice_way}expand in float64 with exact=False; or count the terms "
        "without expanding with polynet.count_terms(model, input_shape=...)."
    )


def expand_traced_exact(
    model, shape, entry, sketch, engine: str, budget: int, make_bar, degree=None, center=None
) -> tuple[GraphExpansion, MonomialIndex, np.ndarray | ExactCoefficients]:
    """Refuse from the sketch's counts, record the program, run it exactly.

    Returns the recording trace (outputs, degree table), the index and the exact coefficients;
    ``make_bar(total)`` gives a progress bar or None. ``degree`` = q keeps the part of degree
    <= q (the ring engines truncate after every product); ``center`` records the program in
    u = x - center (the start polynomials take the point).
    """
    name = type(model).__name__
    check_sketch_budget(sketch, engine, budget, name, degree)
    recorded = expand_graph(
        model, shape, "cpu", symbolic=True, entry=entry, record=True, center=center
    )
    bar = make_bar(len(recorded.program.nodes))
    try:
        on_node = None if bar is None else bar.update
        program = recorded.program
        index, coefficients = expand_program_exact(program, engine, budget, name, on_node, degree)
    finally:
        if bar is not None:
            bar.close()
    return recorded, index, coefficients
