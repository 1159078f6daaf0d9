"""expand: a trained network collapsed into one explicit polynomial per output.

One dispatcher: :func:`expand` checks its options once (:class:`Request`), :func:`route`
decides which engine runs (a traced graph, the factored form, a chain's Taylor part, or the
whole chain: dense, sparse by receptive fields, or into a store), and that engine alone
expands. :func:`estimate` sizes the same routes without expanding.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import nn

from polynet.errors import CheckpointError, ExpansionTooLargeError, NotExpandableError
from polynet.expansion.dense import FloatOps, plan, walk
from polynet.expansion.finite import check_finite
from polynet.expansion.inputs import Inputs, is_several, n_variables, parse_inputs, tensor_arguments
from polynet.expansion.network import Affine, LoweredNetwork, as_sequential, is_chain, lower
from polynet.expansion.refusal import Refusal, check_counts, disk_free, largest_slice
from polynet.memory import (  # noqa: F401 - DEFAULT_MEMORY_FRACTION: re-exported, 0.2's home
    DEFAULT_MEMORY_FRACTION,
    available_bytes,
    fmt_bytes,
    fmt_seconds,
    memory_budget,
    parse_bytes,
)
from polynet.memory import budget as _budget
from polynet.polynomial.network_polynomial import NetworkPolynomial
from polynet.threads import thread_policy

__all__ = ["Estimate", "estimate", "expand", "memory_budget", "parse_bytes"]

logger = logging.getLogger(__name__)

Exact = bool | Literal["modular", "flint", "sympy"]


# Sizes and durations are written as refusals write them (scientific past 10^6 GiB).
_fmt_bytes = _fmt_gib = fmt_bytes
_fmt_seconds = fmt_seconds


def slice_values(
    n: int, inputs: Sequence[int], fixed: ArrayLike | Mapping[int, float] | None
) -> tuple[list[int], np.ndarray]:
    """The checked input numbers of a slice and the values of all n inputs (0 at ``inputs``)."""
    inputs = [int(i) for i in inputs]
    if not inputs or len(set(inputs)) != len(inputs) or min(inputs) < 0 or max(inputs) >= n:
        raise ValueError(f"inputs must be distinct input numbers in 0..{n - 1}, got {inputs}.")
    others = [i for i in range(n) if i not in set(inputs)]
    values = np.zeros(n)
    if others:
        if fixed is None:
            raise ValueError(
                f"fixed= must give values for the {len(others)} inputs not in inputs= "
                f"(e.g. the data mean): an array of length {n} or a dict {{input: value}}."
            )
        if isinstance(fixed, Mapping):
            missing = [i for i in others if i not in fixed]
            if missing:
                raise ValueError(f"fixed= has no value for inputs {missing[:10]}.")
            for i in others:
                values[i] = float(fixed[i])
        else:
            arr = np.asarray(fixed, dtype=np.float64).reshape(-1)
            if arr.shape != (n,):
                raise ValueError(f"fixed= must have length {n}, got shape {arr.shape}.")
            values[others] = arr[others]
    if not np.isfinite(values).all():
        raise ValueError("fixed= values must be finite.")
    return inputs, values


def _slice(
    lowered: LoweredNetwork, inputs: Sequence[int], fixed: ArrayLike | Mapping[int, float] | None
) -> LoweredNetwork:
    inputs, values = slice_values(lowered.n_inputs, inputs, fixed)
    n = lowered.n_inputs
    device = lowered.stages[0].bias.device if lowered.stages else torch.device("cpu")
    select = torch.zeros(n, len(inputs), dtype=torch.float64, device=device)
    select[inputs, torch.arange(len(inputs))] = 1.0
    entry = Affine(select, torch.as_tensor(values, device=device), ("slice",))
    return LoweredNetwork((entry, *lowered.stages), len(inputs), (len(inputs),))


def resolve_model(model) -> nn.Module:
    """``model`` itself, or the model a path names (polynet.load; CheckpointError otherwise)."""
    import os

    if isinstance(model, (str, os.PathLike)):
        # A checkpoint, a .pt2 archive or an ONNX file (polynet.model_source).
        from polynet.model_source import load

        try:
            return load(model)
        except CheckpointError:
            raise
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise CheckpointError(
                f"{os.fspath(model)!r} is not a polynet checkpoint ({exc}); pass an nn.Module, "
                "or a file written by polynet.save / polynet train."
            ) from exc
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a torch nn.Module or the path of a polynet checkpoint, got "
            f"{type(model).__name__}."
        )
    return model


def graph_input_shape(model: nn.Module, input_shape) -> tuple[int, ...]:
    """The input shape of a traced model: given, or the first Linear's / SLAF's width.

    Several inputs (a tuple of shapes, or {argument: shape}) give an
    :class:`~polynet.expansion.inputs.Inputs`.
    """
    if is_several(input_shape):
        return parse_inputs(model, input_shape)
    if tensor_arguments(model)[1] > 1:
        parse_inputs(model, (input_shape or (),))  # refuses, naming forward()'s arguments
    if input_shape is not None:
        shape = tuple(int(s) for s in input_shape)
        if not shape or min(shape) < 1:
            raise ValueError(f"input_shape must be positive sizes, got {input_shape!r}.")
        return shape
    # polynet.from_onnx records the sample shape on the module it builds.
    shape = getattr(model, "input_shape", None)
    if isinstance(shape, tuple) and shape and all(isinstance(s, int) and s > 0 for s in shape):
        return shape
    from polynet.slaf import SLAF

    for module in model.modules():
        if isinstance(module, nn.Linear):
            return (module.in_features,)
        if isinstance(module, SLAF):
            return (module.num_features,)
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            break
    raise NotExpandableError(
        f"cannot tell the input shape of {type(model).__name__}: pass input_shape= (the shape "
        "of one sample without the batch axis, e.g. (13,) or (1, 28, 28))."
    )


def graph_variables(shape, entry) -> list[str] | None:
    """Variable names: ``x0, ...`` (None) for one input, ``x0, ..., y0, ...`` for several."""
    if not isinstance(shape, Inputs):
        return None if entry is None else [f"x{i}" for i in entry[0]]
    names = shape.variables()
    return names if entry is None else [names[i] for i in entry[0]]


def _check_training(model: nn.Module) -> None:
    for name, module in model.named_modules():
        if module.training:
            raise NotExpandableError(
                f"cannot expand {name or 'model'} ({type(module).__name__}): it is in training "
                "mode, where SLAF, BatchNorm and Dropout depend on the batch; call model.eval() "
                "first."
            )


def _expand_traced(model: nn.Module, request: Request):
    """A model whose forward() is not a chain: traced on real shapes, then the float walk
    inside the trace, or an exact engine over the program it records."""
    from polynet.expansion import graph_partial as gp
    from polynet.expansion.truncated import refuse_truncated, taylor_notes, taylor_variables

    exact, device, inputs, fixed = request.exact, request.device, request.inputs, request.fixed
    max_memory, input_shape, progress = request.max_memory, request.input_shape, request.progress
    store, client, degree, at = request.store, request.client, request.degree, request.at
    from polynet.expansion.graph import expand_graph
    from polynet.polynomial.index import MonomialIndex

    gp.check_graph_options(model, exact, store, client, degree, at)
    engine = None
    if exact:
        from polynet.expansion.graph_exact import graph_engine

        engine = graph_engine(exact)
    start = time.perf_counter()
    _check_training(model)
    shape = graph_input_shape(model, input_shape)
    entry = None
    if inputs is not None:
        inputs, values = slice_values(n_variables(shape), inputs, fixed)
        entry = (inputs, values)
    elif fixed is not None:
        raise ValueError("fixed= only applies together with inputs=; pass both or neither.")
    q = None
    if degree is not None:
        from polynet.validation import check_int

        q = check_int(degree, "degree", 0, hint="degree=1 gives the constant and linear terms")
    sketch = gp.graph_sketch(model, shape, device, entry)
    n = sketch.n_vars
    center = None
    if at is not None:
        from polynet.expansion.truncated import check_center

        center = check_center(at, n)  # one value per variable (the slice's, with inputs=)
    if engine is not None:
        # The program the tracer records, run by an exact engine (on the CPU).
        from polynet.expansion.graph_exact import expand_traced_exact

        budget = _budget(max_memory, torch.device("cpu"))
        make_bar = lambda total: _progress(progress, total)  # noqa: E731
        result, index, coefficients = expand_traced_exact(
            model, shape, entry, sketch, engine, budget, make_bar, q, center
        )
        out, engine_name, device_name = result.output, engine, "cpu"
    else:
        peak = gp.graph_peak_bytes(sketch.nodes, n, q)
        work_device = torch.device(device) if device is not None else None
        budget = _budget(max_memory, work_device or torch.device("cpu"))
        if peak > budget and q is not None and q < sketch.degree_bound:
            raise refuse_truncated(n, q, peak, budget, n_outputs=sketch.n_outputs)
        if peak > budget:

            def slice_peak(k: int) -> int:
                return gp.graph_peak_bytes(sketch.nodes, k)

            refusal = Refusal(
                "model",
                n,
                sketch.degree_bound,
                sketch.n_outputs,
                peak,
                budget,
                slice_inputs=largest_slice(lambda k: slice_peak(k) <= budget, n - 1),
                raise_budget=peak <= available_bytes(work_device or "cpu"),
                count_hint="polynet.count_terms(model, input_shape=...)",
            )
            raise ExpansionTooLargeError(refusal.python_text(), refusal)
        bar = _progress(progress, len(sketch.nodes))
        try:
            result = expand_graph(
                model,
                shape,
                device,
                entry=entry,
                on_node=None if bar is None else bar.update,
                truncate=q,
                center=center,
            )
        finally:
            if bar is not None:
                bar.close()
        out = result.output
        coefficients = out.coefficients.reshape(out.coefficients.shape[0], -1).T.contiguous()
        index = MonomialIndex(n, out.degree)
        engine_name = "float64 graph" + (" truncated" if q is not None else "")
        device_name = str(coefficients.device)
    seconds = time.perf_counter() - start
    variables = graph_variables(shape, entry)
    notes = None
    if q is not None or center is not None:  # a Taylor part, or the polynomial re-centred
        notes = taylor_notes(q, center, sketch.degree_bound)
        if center is not None:
            variables = taylor_variables(variables, n, isinstance(shape, Inputs))
    poly = NetworkPolynomial(
        index,
        coefficients,
        degree_bound=max(sketch.degree_bound, out.degree),
        n_network_parameters=sum(p.numel() for p in model.parameters()),
        variables=variables,
        notes=notes,
        info={
            **({} if entry is None else {"inputs": entry[0], "fixed": entry[1].tolist()}),
            # Several inputs: no single sample shape; their shapes by argument, in order.
            **(
                {"input_shape": None, "input_shapes": shape.as_dict()}
                if isinstance(shape, Inputs)
                else {"input_shape": list(shape)}
            ),
            "output_shape": list(out.value_shape),
            # Several output tensors (tuple/dict): name -> entries, in the order of the columns.
            **({"outputs": dict(result.outputs)} if len(result.outputs) > 1 else {}),
            # The propagated degree after each node that depends on the input.
            "node_degrees": {row.node: row.degree for row in result.nodes},
            "seconds": seconds,
            "engine": engine_name,
            "device": device_name,
        },
    )
    if store is None:
        return poly
    # The result is in memory already (checked against the budget above): written as is.
    from polynet.expansion.store_walk import write_store

    return write_store(
        store,
        poly.index,
        poly.coefficients,
        degree_bound=poly.degree_bound,
        variables=poly.variables,
        n_network_parameters=poly.n_network_parameters,
        info=dict(poly.info),
        start=start,
    )


@thread_policy
def expand(
    model: nn.Module,
    exact: Exact = False,
    device: torch.device | str | None = None,
    inputs: Sequence[int] | None = None,
    fixed: ArrayLike | Mapping[int, float] | None = None,
    max_memory: int | float | str | None = None,
    *,
    input_shape: tuple[int, ...] | None = None,
    progress: bool = False,
    store: str | Path | None = None,
    client: object | None = None,
    degree: int | None = None,
    at: ArrayLike | torch.Tensor | None = None,
    form: Literal["dense", "sparse", "factored"] | None = None,
) -> NetworkPolynomial:
    """Expand an evaluation-mode network into one explicit polynomial per output.

    Parameters
    ----------
    model : nn.Module or path
        Any evaluation-mode module whose forward is polynomial in its input, or the path of a
        polynet checkpoint. An ``nn.Sequential`` of table layers (Linear, SLAF with a
        polynomial basis, BatchNorm1d/2d, Dropout, Identity, Flatten, Conv1d/Conv2d,
        AvgPool1d/2d), or a ``forward()`` that only chains such layers, takes the chain fast
        path; any other ``forward()`` runs once on an example batch while each ATen op is
        replayed on tensors of polynomials (products, powers, sums, cat, reshapes,
        reductions, einsum/matmul; see :mod:`polynet.expansion.rules`). The model is not
        modified.
    exact : bool or {"modular", "flint", "sympy"}, default=False
        False: float64 arithmetic. True: exact rationals (every float64 weight and folded
        SLAF coefficient is the dyadic rational it is), by the fastest engine installed;
        a string picks the engine. A traced (non-chain) model runs its recorded program in
        an exact ring (:mod:`polynet.expansion.ir_ring`, "flint" or "sympy": True) or modulo
        primes ("modular"), practical for small graphs.
    device : torch.device or str, optional
        Where the float path computes (default: where the model is).
    inputs : list of int, optional
        Expand in these inputs only, with the others held at ``fixed``: the exact slice.
    fixed : array of length n_inputs or dict {input: value}, optional
        Values of the inputs not in ``inputs``.
    max_memory : int or float or str, optional
        Memory budget: bytes, a size like ``"4GiB"``, or a share of the free memory between
        0 and 1 like ``0.5`` (default: half the free memory).
    input_shape : tuple of int, tuple of shapes, or dict, optional
        The shape of one sample without the batch axis, for a model whose first layer does not
        tell it (a convolution, a forward() that starts with an op). For a ``forward(self, x,
        y, ...)`` taking several tensors: one shape per argument, as a tuple of shapes or
        ``{"x": (3,), "y": (2, 2)}``; the variables are all entries of all inputs in argument
        order, named ``x0, x1, ..., y0, ...``, and ``poly(points)`` takes the concatenated
        flattened inputs, ``torch.cat([x.flatten(1), y.flatten(1)], 1)``.
    progress : bool, default=False
        Show a progress bar over the layers (a traced model: over its traced nodes).
    store : str or Path, optional
        Write the coefficients block by block to this Zarr store (``"coeffs.zarr"``, needs
        the ``scale`` extra) instead of holding them in memory; returns a
        :class:`~polynet.polynomial.store.StoredPolynomial` backed by it. Float path only.
        A traced model (custom ``forward()``) is not expanded out of core: its result is
        computed in memory, under ``max_memory``, then written to the store.
    client : dask.distributed.Client, optional
        With ``store``: compute the blocks as Dask tasks on this cluster (default: Dask's
        local threaded scheduler). Chains only: a traced model runs in this process.
    degree : int, optional
        Only the exact part of degree <= ``degree`` (the Taylor polynomial of that degree at
        the origin, or at ``at``), by a layer walk (a traced model: every product, power and
        SLAF) truncated after every product; for any number of inputs, sized by
        C(n + degree, degree). The result's ``degree_bound`` stays the network's D and
        ``notes["taylor"]`` says it is a part, not the whole network.
    at : array of n_inputs values, optional
        Expand around this point: the polynomial in u = x - at (variables named ``u0, ...``;
        ``u_x0, ..., u_y0, ...`` for several inputs; with ``inputs=``, one value per sliced
        input), with ``degree`` the network's Taylor polynomial there, else its whole
        polynomial re-centred.
    form : {"dense", "sparse", "factored"}, optional
        How the whole polynomial is held. ``"dense"``: every monomial of degree <= D in graded
        order (:class:`NetworkPolynomial`). ``"sparse"``: a chain expanded field by field over
        its receptive fields' monomials only
        (:class:`~polynet.polynomial.sparse_polynomial.SparsePolynomial`, float path).
        ``"factored"``: for an MLP with one or two SLAF layers, the exact
        :class:`~polynet.polynomial.factored_polynomial.FactoredPolynomial`
        p(x) = G(W1 x + b1), G sparse in the first layer's pre-activations (any number of
        inputs). None (default): dense, or sparse when the dense form is over ``max_memory``
        and the sparse one fits.

    Returns
    -------
    NetworkPolynomial or SparsePolynomial

    Raises
    ------
    NotExpandableError
        A layer or op that is not a polynomial map (naming the line of forward()), a model in
        training mode, or an input shape that cannot be told.
    CheckpointError
        A path that is not a readable polynet checkpoint.
    ExpansionTooLargeError
        The estimated peak memory exceeds ``max_memory``; nothing was allocated.

    Examples
    --------
    >>> import polynet
    >>> net = polynet.SLNN(2, [4], 2).eval()
    >>> poly = polynet.expand(net)
    >>> poly.degree, poly.max_terms
    (2, 6)
    >>> x = torch.randn(5, 2, dtype=torch.float64)
    >>> bool(torch.allclose(poly(x), net.double()(x)))
    True
    """
    request = Request(
        exact, device, inputs, fixed, max_memory, input_shape, progress, store, client, degree,
        at, form,
    )  # fmt: skip
    model = as_sequential(resolve_model(model))
    check_finite(model)
    engine, model = route(model, request)
    return _ENGINES[engine](model, request)


@dataclass(frozen=True)
class Request:
    """What :func:`expand` was asked, checked once: the options every engine reads."""

    exact: Exact = False
    device: torch.device | None = None
    inputs: Sequence[int] | None = None
    fixed: ArrayLike | Mapping[int, float] | None = None
    max_memory: int | float | str | None = None
    input_shape: tuple[int, ...] | None = None
    progress: bool = False
    store: str | Path | None = None
    client: object | None = None
    degree: int | None = None
    at: ArrayLike | torch.Tensor | None = None
    form: str | None = None

    def __post_init__(self) -> None:
        if self.form not in (None, "dense", "sparse", "factored"):
            raise ValueError(f"form must be 'dense', 'sparse' or 'factored', got {self.form!r}.")
        if self.partial:
            _check_partial_options(
                self.degree, self.at, self.form, self.store, self.client, self.exact, self.inputs
            )
        if self.device is not None:
            from polynet.training import resolve_device

            object.__setattr__(self, "device", resolve_device(self.device))

    @property
    def partial(self) -> bool:
        """A part of the polynomial or another form of it, not the dense whole."""
        return self.degree is not None or self.at is not None or self.form == "factored"


def route(model: nn.Module, request: Request) -> tuple[str, nn.Module]:
    """The one decision of which engine expands ``model``: ``"traced"`` (a forward() that is
    not a chain of table layers), ``"factored"``, ``"taylor"`` (a chain's degree <= q part or
    its polynomial at a point) or ``"chain"`` (the whole chain: dense, sparse by receptive
    fields, or into a store), with the model it runs on (a custom forward() that only chains
    table layers runs as that chain, with every option)."""
    if not is_chain(model):
        from polynet.expansion.graph import chain_of

        _check_training(model)
        chain = chain_of(model)
        if chain is None:
            if request.form in ("sparse", "factored"):
                raise NotExpandableError(
                    f"form={request.form!r} needs a chain model (Linear, SLAF, BatchNorm, Conv, "
                    f"AvgPool layers in order); {type(model).__name__}'s forward() is not one. "
                    "Expand it dense (form=None), its low-degree part with degree=, or a slice "
                    "with inputs= and fixed=."
                )
            return "traced", model
        model = chain
    if request.form == "factored":
        return "factored", model
    if request.partial:
        return "taylor", model
    return "chain", model


def _expand_factored(model: nn.Module, request: Request):
    from polynet.expansion.factored import expand_factored

    return expand_factored(model, device=request.device, input_shape=request.input_shape)


def _expand_taylor(model: nn.Module, request: Request) -> NetworkPolynomial:
    from polynet.expansion.truncated import expand_taylor

    return expand_taylor(
        model,
        request.degree,
        request.at,
        exact=request.exact,
        device=request.device,
        inputs=request.inputs,
        fixed=request.fixed,
        max_memory=request.max_memory,
        input_shape=request.input_shape,
    )


def _expand_chain(model: nn.Module, request: Request):
    """A whole chain: dense in memory (float or exact), into a store, or field by field (the
    sparse form, for conv nets whose dense form does not fit or when asked)."""
    exact, device, inputs, store = request.exact, request.device, request.inputs, request.store
    start = time.perf_counter()
    budget = (
        _budget(request.max_memory, torch.device(device or "cpu"))
        if request.max_memory is not None
        else None
    )
    sparse = {None: None, "dense": False, "sparse": True}[request.form]
    early = None  # the refusal from counts, when the sparse form may still fit
    # Without convolutions every monomial lies in the one field of all inputs: the sparse form
    # is the dense one, so it is tried automatically only for conv nets.
    if sparse is None and not any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules()):
        sparse = False
    if not sparse:
        try:
            check_counts(model, request.input_shape, inputs, budget, device, store, exact)
        except ExpansionTooLargeError as exc:
            if sparse is False or exact or store is not None or inputs is not None:
                raise
            from polynet.expansion.field_expand import check_sparse_may_fit

            check_sparse_may_fit(model, budget, device, exc, request.input_shape)
            early = exc
    lowered, variables, info = lower_sliced(
        model, request.input_shape, device, inputs, request.fixed
    )
    work_device = _work_device(lowered, device)
    the_plan = plan(lowered)
    budget = _budget(request.max_memory, work_device)
    n_params = sum(p.numel() for p in model.parameters())
    if sparse or sparse is None and not (exact or store or inputs is not None):
        from polynet.expansion.field_expand import expand_sparse

        dense_refusal = early
        if not sparse and early is None:
            try:
                _check_budget(lowered, the_plan, budget, exact, store, work_device)
            except ExpansionTooLargeError as exc:
                dense_refusal = exc
        if sparse or dense_refusal is not None:
            return expand_sparse(
                lowered, work_device, budget, dense_refusal, exact, inputs, store, n_params
            )
    _check_budget(lowered, the_plan, budget, exact, store, work_device)
    if store is not None:
        if exact:
            raise ValueError("store= writes float64 coefficients; use exact=False with store=.")
        from polynet.expansion.store_walk import expand_to_store

        return expand_to_store(
            lowered,
            the_plan,
            work_device,
            store,
            client=request.client,
            variables=variables,
            n_network_parameters=n_params,
            info={**info, "engine": "float64", "device": str(work_device)},
            start=start,
        )
    if request.client is not None:
        raise ValueError('client= runs blocks into a store; pass store="coeffs.zarr" too.')
    steps = len([s for s in the_plan.steps if s.kind != "input"])
    progress_bar = _progress(request.progress, steps)
    try:
        if exact:
            coefficients = _expand_exact(lowered, exact, the_plan, work_device, progress_bar)
        else:
            coefficients = walk(lowered, FloatOps(work_device), the_plan, work_device, progress_bar)
    except torch.OutOfMemoryError as exc:
        raise ExpansionTooLargeError(
            f"ran out of memory on {work_device} while expanding (estimated peak "
            f"{_fmt_bytes(the_plan.peak_bytes)}); pass a smaller max_memory=, expand a subset "
            "of the inputs with inputs= and fixed=, or use device='cpu'."
        ) from exc
    finally:
        if progress_bar is not None:
            progress_bar.close()
    seconds = time.perf_counter() - start
    engine = (
        "float64" if not exact else (exact if isinstance(exact, str) else _best_exact(the_plan))
    )
    logger.info("expanded %d monomials in %.3f s (%s)", the_plan.index.size, seconds, engine)
    return NetworkPolynomial(
        the_plan.index,
        coefficients,
        degree_bound=lowered.degree_bound,
        variables=variables,
        n_network_parameters=n_params,
        info={**info, "seconds": seconds, "engine": engine, "device": str(work_device)},
    )


#: The engines :func:`route` picks from.
_ENGINES = {
    "traced": _expand_traced,
    "factored": _expand_factored,
    "taylor": _expand_taylor,
    "chain": _expand_chain,
}


def lower_sliced(
    model: nn.Module, input_shape, device, inputs: Sequence[int] | None, fixed
) -> tuple[LoweredNetwork, list[str] | None, dict]:
    """The chain lowered, restricted to the slice ``inputs=``/``fixed=`` when given: the
    network, its variable names (None: all inputs) and the info the result records."""
    lowered = lower(model, input_shape, device)
    variables = None
    info: dict = {"input_shape": list(lowered.input_shape)}
    if inputs is not None:
        variables = [f"x{i}" for i in inputs]
        lowered = _slice(lowered, inputs, fixed)
        info["inputs"] = [int(i) for i in inputs]
        info["fixed"] = lowered.stages[0].bias.cpu().tolist()
    elif fixed is not None:
        raise ValueError("fixed= only applies together with inputs=; pass both or neither.")
    return lowered, variables, info


def _check_partial_options(degree, at, form, store, client, exact, inputs) -> None:
    """Refuse options that degree=, at= and form= do not combine with."""
    what = "degree=" if degree is not None else "at=" if at is not None else "form='factored'"
    if form == "sparse":
        raise ValueError(
            "form='sparse' expands a conv net whole, field by field; it does not combine with "
            f"{what}. Drop one of them."
        )
    if store is not None or client is not None:
        raise ValueError(
            f"{what} returns its polynomial in memory; store= and client= apply to the whole "
            "expansion only. Drop store= (and client=)."
        )
    if form == "factored" and (degree is not None or at is not None or exact or inputs):
        raise ValueError(
            "form='factored' gives the whole polynomial in all inputs in float64 and takes no "
            "degree=, at=, exact= or inputs=; call .truncate(degree=q) on the result for the "
            "low-degree part."
        )


def _work_device(lowered: LoweredNetwork, device) -> torch.device:
    if device is not None:
        return torch.device(device)
    for stage in lowered.stages:
        tensor = stage.bias if isinstance(stage, Affine) else stage.coefficients
        return tensor.device
    return torch.device("cpu")


def _check_budget(
    lowered: LoweredNetwork, the_plan, budget: int, exact: Exact, store=None, device="cpu"
) -> None:
    peak = the_plan.store_peak_bytes if store is not None else the_plan.peak_bytes
    if exact:
        # Exact coefficients are Python rationals: ~100 bytes each at least, per output.
        peak = max(the_plan.exact_peak_bytes, the_plan.index.size * the_plan.n_outputs * 200)
    if peak <= budget:
        return
    n = lowered.n_inputs

    def slice_fits(k: int) -> bool:
        sliced = plan(_slice(lowered, list(range(k)), np.zeros(n)))
        return (sliced.exact_peak_bytes if exact else sliced.peak_bytes) <= budget

    store_peak = the_plan.store_peak_bytes
    offer_store = (
        store is None
        and not exact
        and store_peak <= budget
        and the_plan.result_bytes <= disk_free(".")
    )
    from polynet.expansion.factored import factored_applies_lowered

    refusal = Refusal(
        "network",
        n,
        lowered.degree_bound,
        the_plan.n_outputs,
        peak,
        budget,
        seconds=the_plan.seconds,
        slice_inputs=largest_slice(slice_fits, n - 1),
        store_bytes=store_peak if offer_store else None,
        raise_budget=peak <= available_bytes(device),
        factored=store is None and not exact and factored_applies_lowered(lowered),
    )
    raise ExpansionTooLargeError(refusal.python_text(), refusal)


@dataclass(frozen=True)
class Estimate:
    """
    What an expansion will cost, from counts alone (nothing is expanded)."""

    n_monomials: int
    result_bytes: float
    peak_bytes: float
    store_peak_bytes: float
    seconds: float

    def __str__(self) -> str:
        # nan: not estimated (the time of a traced graph or a truncated walk; the store of a
        # truncated walk, which has none).
        store = (
            ""
            if not math.isfinite(self.store_peak_bytes)
            else " (a store does not lower it)"
            if self.store_peak_bytes == self.peak_bytes
            else f" or {_fmt_gib(self.store_peak_bytes)} with a store"
        )
        time = (
            f", about {_fmt_seconds(self.seconds)} on this CPU"
            if math.isfinite(self.seconds)
            else ", time not estimated"
        )
        return (
            f"{self.n_monomials:,} monomials ({_fmt_gib(self.result_bytes)}), peak "
            f"{_fmt_gib(self.peak_bytes)} in memory{store}{time}"
        )


def estimate(
    model: nn.Module,
    inputs: Sequence[int] | None = None,
    fixed: ArrayLike | Mapping[int, float] | None = None,
    *,
    input_shape: tuple[int, ...] | None = None,
    degree: int | None = None,
) -> Estimate:
    """Memory and time of ``expand(model, ...)`` (float path), computed before any work.

    The time uses CPU rates measured on a 2-core AMD EPYC (``polynet.expansion.dense``); it is an
    order of magnitude, not a promise. ``degree`` sizes ``expand(model, degree=...)`` (the
    degree ≤ q part: C(n + q, q) monomials); a model with a custom ``forward()`` is sized from
    its traced nodes, as ``expand`` sizes it. Where the time is not estimated (traced graphs,
    ``degree=``) ``seconds`` is nan, and ``store_peak_bytes`` is nan where no store is written
    (``degree=``) or equals ``peak_bytes`` (a traced graph holds its result in memory).

    Examples
    --------
    >>> import polynet
    >>> from polynet.expansion.dispatch import estimate
    >>> estimate(polynet.SLNN(3, [4], 2).eval()).n_monomials
    10
    """
    model = as_sequential(resolve_model(model))
    q = None
    if degree is not None:
        from polynet.validation import check_int

        q = check_int(degree, "degree", 0, hint="degree=1 gives the constant and linear terms")
    if not is_chain(model):
        from polynet.expansion.graph import chain_of

        chain = chain_of(model)
        if chain is None:
            return _estimate_graph(model, input_shape, inputs, fixed, q)
        model = chain
    lowered = lower(model, input_shape, "cpu")
    if inputs is not None:
        lowered = _slice(lowered, inputs, fixed)
    if q is not None:
        from polynet.expansion.truncated import truncated_peak_bytes

        size = math.comb(lowered.n_inputs + q, q)
        last = lowered.stages[-1] if lowered.stages else None
        n_out = (
            1
            if last is None
            else last.out_features
            if isinstance(last, Affine)
            else last.coefficients.shape[0]
        )
        nan = float("nan")
        peak = truncated_peak_bytes(lowered, q)
        return Estimate(size, 8.0 * size * n_out, peak, nan, nan)
    the_plan = plan(lowered)
    return Estimate(
        the_plan.index.size,
        the_plan.result_bytes,
        the_plan.peak_bytes,
        the_plan.store_peak_bytes,
        the_plan.seconds,
    )


def _estimate_graph(model: nn.Module, input_shape, inputs, fixed, q: int | None) -> Estimate:
    """The Estimate of a traced graph model, from the sketch ``expand`` sizes it by."""
    from polynet.expansion.graph_partial import graph_peak_bytes, graph_sketch

    _check_training(model)
    shape = graph_input_shape(model, input_shape)
    entry = None
    if inputs is not None:
        entry = slice_values(n_variables(shape), inputs, fixed)
    sketch = graph_sketch(model, shape, None, entry)
    d = sketch.degree_bound if q is None else min(q, sketch.degree_bound)
    size = math.comb(sketch.n_vars + d, d)
    peak = graph_peak_bytes(sketch.nodes, sketch.n_vars, q)
    return Estimate(size, 8.0 * size * sketch.n_outputs, peak, peak, float("nan"))


# `polynet.poly.expand` (0.2's name, still public) is this module's `expand` function, so the
# README's `polynet.poly.expand.estimate(model)` reaches `estimate` through the function.
expand.estimate = estimate  # type: ignore[attr-defined]


def _progress(enabled: bool, total: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="expand", unit="layer", leave=False)


#: Up to this many monomials, exact=True multiplies sparse polynomials (fewer fixed costs).
SPARSE_EXACT_MAX_TERMS = 3000


def _best_exact(the_plan) -> str:
    if the_plan.index.size <= SPARSE_EXACT_MAX_TERMS:
        try:
            import flint  # noqa: F401

            return "flint"
        except ImportError:
            return "sympy"
    return "modular"


def _expand_exact(lowered: LoweredNetwork, exact: Exact, the_plan, device, progress):
    engine = _best_exact(the_plan) if exact is True else exact
    if engine in ("flint", "sympy"):
        from polynet.expansion.ring_walk import expand_sparse

        if engine == "flint":
            from polynet.extras import require

            require("flint", "exact='flint' (--exact flint)", "use exact='sympy'")
        return expand_sparse(lowered, engine, the_plan.index)
    if engine == "modular":
        from polynet.expansion.modular import expand_modular

        return expand_modular(lowered, the_plan, device, progress)
    raise ValueError(f"exact must be True, False, 'modular', 'flint' or 'sympy', got {exact!r}.")
