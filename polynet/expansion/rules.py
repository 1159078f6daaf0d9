"""The one table of what is polynomial: torch modules, functions and tensor methods.

Every reader of a model (the chain path in :mod:`polynet.expansion.network`, the graph path in
:mod:`polynet.expansion.graph`, :func:`polynet.count_terms` and :func:`polynet.verify` through
them) asks this table, so they accept and refuse exactly the same models. A :class:`Rule`
says how an op lowers, how it moves the degree, and for a refused op what to do instead.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from polynet.errors import NotExpandableError
from polynet.slaf import SLAF

__all__ = [
    "Rule",
    "AtenRule",
    "ATEN_RULES",
    "MODULE_RULES",
    "FUNCTION_RULES",
    "METHOD_RULES",
    "module_rule",
    "check_module",
]

#: How an op lowers: an affine map (degree kept), a pure rearrangement or linear reduction
#: (degree kept, no constant term), a per-unit polynomial (degree times k), a product of
#: polynomial operands (degrees add), a power (degree times the exponent), a sum (max), or
#: refused (not a polynomial map).
Kind = Literal[
    "affine", "linear", "identity", "unit_polynomial", "product", "power", "sum", "refused"
]

_DEGREE = {
    "affine": "d",
    "linear": "d",
    "identity": "d",
    "unit_polynomial": "k·d",
    "product": "d₁ + d₂",
    "power": "p·d",
    "sum": "max(d₁, d₂)",
    "refused": "-",
}


@dataclass(frozen=True)
class Rule:
    """How one op lowers, how it moves the degree, and (refused ops) what to do instead."""

    name: str
    kind: Kind
    hint: str = ""

    @property
    def degree(self) -> str:
        """The degree after the op, in terms of its operands' degrees d."""
        return _DEGREE[self.kind]

    @property
    def polynomial(self) -> bool:
        return self.kind != "refused"


_SLAF_HINT = "replace it with polynet.SLAF(num_features, degree=...)"


def _refused(name: str, why: str, hint: str = _SLAF_HINT) -> Rule:
    return Rule(name, "refused", f"{why}; {hint}")


#: Module types, checked with isinstance in this order.
MODULE_RULES: dict[type, Rule] = {
    SLAF: Rule("SLAF", "unit_polynomial"),
    nn.Linear: Rule("Linear", "affine"),
    nn.Conv1d: Rule("Conv1d", "affine"),
    nn.Conv2d: Rule("Conv2d", "affine"),
    nn.AvgPool1d: Rule("AvgPool1d", "linear"),
    nn.AvgPool2d: Rule("AvgPool2d", "linear"),
    nn.BatchNorm1d: Rule("BatchNorm1d", "affine"),
    nn.BatchNorm2d: Rule("BatchNorm2d", "affine"),
    nn.Flatten: Rule("Flatten", "linear"),
    nn.Identity: Rule("Identity", "identity"),
    nn.Dropout: Rule("Dropout", "identity"),
    nn.Dropout1d: Rule("Dropout1d", "identity"),
    nn.Dropout2d: Rule("Dropout2d", "identity"),
    nn.AlphaDropout: Rule("AlphaDropout", "identity"),
    nn.ReLU: _refused("ReLU", "ReLU is not a polynomial"),
    nn.LeakyReLU: _refused("LeakyReLU", "LeakyReLU is not a polynomial"),
    nn.ELU: _refused("ELU", "ELU is not a polynomial"),
    nn.GELU: _refused("GELU", "GELU is not a polynomial"),
    nn.SiLU: _refused("SiLU", "SiLU is not a polynomial"),
    nn.Tanh: _refused("Tanh", "Tanh is not a polynomial"),
    nn.Sigmoid: _refused("Sigmoid", "Sigmoid is not a polynomial"),
    nn.Softmax: _refused(
        "Softmax", "softmax is not a polynomial", "remove it and expand the logits"
    ),
    nn.LogSoftmax: _refused(
        "LogSoftmax", "log-softmax is not a polynomial", "remove it and expand the logits"
    ),
    nn.LayerNorm: _refused(
        "LayerNorm",
        "LayerNorm divides by the input's own standard deviation",
        "use BatchNorm (evaluation mode) or remove it",
    ),
    nn.GroupNorm: _refused(
        "GroupNorm", "GroupNorm divides by the input's own standard deviation", "remove it"
    ),
    nn.MaxPool1d: _refused(
        "MaxPool1d", "max pooling is not a polynomial", "use nn.AvgPool1d instead"
    ),
    nn.MaxPool2d: _refused(
        "MaxPool2d", "max pooling is not a polynomial", "use nn.AvgPool2d instead"
    ),
}

_MAX_WHY = "max/min are not polynomials"
_MAX_FIX = "use a mean or a sum instead"

#: Functions met as fx ``call_function`` targets.
FUNCTION_RULES: dict[object, Rule] = {
    operator.add: Rule("+", "sum"),
    operator.iadd: Rule("+=", "sum"),
    operator.sub: Rule("-", "sum"),
    operator.isub: Rule("-=", "sum"),
    torch.add: Rule("torch.add", "sum"),
    torch.sub: Rule("torch.sub", "sum"),
    operator.neg: Rule("unary -", "linear"),
    operator.pos: Rule("unary +", "identity"),
    operator.mul: Rule("*", "product"),
    operator.imul: Rule("*=", "product"),
    torch.mul: Rule("torch.mul", "product"),
    operator.truediv: Rule("/", "affine"),
    torch.div: Rule("torch.div", "affine"),
    operator.pow: Rule("**", "power"),
    torch.pow: Rule("torch.pow", "power"),
    torch.square: Rule("torch.square", "power"),
    operator.matmul: Rule("@", "affine"),
    torch.matmul: Rule("torch.matmul", "affine"),
    torch.mm: Rule("torch.mm", "affine"),
    torch.einsum: Rule("torch.einsum", "affine"),
    F.linear: Rule("F.linear", "affine"),
    F.conv1d: Rule("F.conv1d", "affine"),
    F.conv2d: Rule("F.conv2d", "affine"),
    F.avg_pool1d: Rule("F.avg_pool1d", "linear"),
    F.avg_pool2d: Rule("F.avg_pool2d", "linear"),
    F.dropout: Rule("F.dropout", "identity"),
    torch.cat: Rule("torch.cat", "linear"),
    torch.concat: Rule("torch.concat", "linear"),
    torch.stack: Rule("torch.stack", "linear"),
    torch.flatten: Rule("torch.flatten", "linear"),
    torch.reshape: Rule("torch.reshape", "linear"),
    torch.permute: Rule("torch.permute", "linear"),
    torch.transpose: Rule("torch.transpose", "linear"),
    torch.unsqueeze: Rule("torch.unsqueeze", "linear"),
    torch.squeeze: Rule("torch.squeeze", "linear"),
    torch.sum: Rule("torch.sum", "linear"),
    torch.mean: Rule("torch.mean", "linear"),
    operator.getitem: Rule("indexing", "linear"),
    getattr: Rule("attribute", "identity"),
    torch.relu: _refused("torch.relu", "relu is not a polynomial"),
    F.relu: _refused("F.relu", "relu is not a polynomial"),
    F.leaky_relu: _refused("F.leaky_relu", "leaky_relu is not a polynomial"),
    F.gelu: _refused("F.gelu", "gelu is not a polynomial"),
    F.silu: _refused("F.silu", "silu is not a polynomial"),
    F.elu: _refused("F.elu", "elu is not a polynomial"),
    torch.tanh: _refused("torch.tanh", "tanh is not a polynomial"),
    F.tanh: _refused("F.tanh", "tanh is not a polynomial"),
    torch.sigmoid: _refused("torch.sigmoid", "sigmoid is not a polynomial"),
    F.sigmoid: _refused("F.sigmoid", "sigmoid is not a polynomial"),
    torch.exp: _refused("torch.exp", "exp is not a polynomial"),
    torch.log: _refused("torch.log", "log is not a polynomial"),
    torch.sqrt: _refused("torch.sqrt", "sqrt is not a polynomial", "remove it"),
    torch.abs: _refused("torch.abs", "abs is not a polynomial", "use x * x instead"),
    operator.abs: _refused("abs", "abs is not a polynomial", "use x * x instead"),
    torch.softmax: _refused("torch.softmax", "softmax is not a polynomial", "expand the logits"),
    F.softmax: _refused("F.softmax", "softmax is not a polynomial", "expand the logits"),
    F.log_softmax: _refused(
        "F.log_softmax", "log-softmax is not a polynomial", "expand the logits"
    ),
    F.layer_norm: _refused(
        "F.layer_norm", "layer_norm divides by the input's standard deviation", "remove it"
    ),
    torch.max: _refused("torch.max", _MAX_WHY, _MAX_FIX),
    torch.min: _refused("torch.min", _MAX_WHY, _MAX_FIX),
    torch.maximum: _refused("torch.maximum", _MAX_WHY, _MAX_FIX),
    torch.minimum: _refused("torch.minimum", _MAX_WHY, _MAX_FIX),
    torch.clamp: _refused("torch.clamp", "clamp is not a polynomial", "remove it"),
    F.max_pool1d: _refused("F.max_pool1d", "max pooling is not a polynomial", "use F.avg_pool1d"),
    F.max_pool2d: _refused("F.max_pool2d", "max pooling is not a polynomial", "use F.avg_pool2d"),
}

_METHOD_LINEAR = (
    "view",
    "reshape",
    "flatten",
    "permute",
    "transpose",
    "t",
    "unsqueeze",
    "squeeze",
    "contiguous",
    "sum",
    "mean",
    "expand",
    "expand_as",
    "view_as",
    "reshape_as",
    "narrow",
    "select",
    "chunk",
    "split",
    "unbind",
    "neg",
    "double",
    "float",
    "to",
    "clone",
    "detach",
    "repeat",
)

#: Tensor methods met as fx ``call_method`` targets.
METHOD_RULES: dict[str, Rule] = {
    **{name: Rule(f".{name}()", "linear") for name in _METHOD_LINEAR},
    "size": Rule(".size()", "identity"),
    "dim": Rule(".dim()", "identity"),
    "add": Rule(".add()", "sum"),
    "sub": Rule(".sub()", "sum"),
    "mul": Rule(".mul()", "product"),
    "div": Rule(".div()", "affine"),
    "pow": Rule(".pow()", "power"),
    "square": Rule(".square()", "power"),
    "matmul": Rule(".matmul()", "affine"),
    "relu": _refused(".relu()", "relu is not a polynomial"),
    "tanh": _refused(".tanh()", "tanh is not a polynomial"),
    "sigmoid": _refused(".sigmoid()", "sigmoid is not a polynomial"),
    "exp": _refused(".exp()", "exp is not a polynomial"),
    "log": _refused(".log()", "log is not a polynomial"),
    "sqrt": _refused(".sqrt()", "sqrt is not a polynomial", "remove it"),
    "abs": _refused(".abs()", "abs is not a polynomial", "use x * x instead"),
    "softmax": _refused(".softmax()", "softmax is not a polynomial", "expand the logits"),
    "max": _refused(".max()", _MAX_WHY, _MAX_FIX),
    "min": _refused(".min()", _MAX_WHY, _MAX_FIX),
    "amax": _refused(".amax()", _MAX_WHY, _MAX_FIX),
    "clamp": _refused(".clamp()", "clamp is not a polynomial", "remove it"),
    "norm": _refused(".norm()", "a norm is not a polynomial", "use (x * x).sum()"),
}


def module_rule(module: nn.Module) -> Rule | None:
    """The rule for a module's type (None: not in the table)."""
    rule = MODULE_RULES.get(type(module))
    if rule is not None:
        return rule
    for kind, rule in MODULE_RULES.items():
        if isinstance(module, kind):
            return rule
    return None


def check_module(name: str, module: nn.Module, hint: str | None = None) -> Rule:
    """The module's rule, or NotExpandableError for one that is not a polynomial map.

    Beyond its type, a module can be refused for its settings: an SLAF with a
    non-polynomial basis, a BatchNorm without running statistics.
    """
    rule = module_rule(module)
    kind = type(module).__name__
    if rule is None:
        raise NotExpandableError(
            f"cannot expand {name} ({kind}): {kind} is not a supported polynomial layer; "
            f"{hint or 'replace it with an SLAF or expand the layers before it.'}"
        )
    if not rule.polynomial:
        why, _, fix = rule.hint.partition("; ")
        raise NotExpandableError(f"cannot expand {name} ({kind}): {why}; {hint or fix + '.'}")
    if isinstance(module, SLAF) and not module.basis.is_polynomial:
        raise NotExpandableError(
            f"cannot expand {name} ({kind}): its {module.basis.name!r} basis is not a "
            "polynomial; train with basis='taylor', 'chebyshev' or 'legendre' to expand it."
        )
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is None:
        raise NotExpandableError(
            f"cannot expand {name} ({kind}): it keeps no running statistics "
            "(track_running_stats=False); rebuild it with track_running_stats=True or remove it."
        )
    return rule


# ---------------------------------------------------------------- the ATen table

#: How a model traced on real shapes (polynet.expansion.trace) lowers each ATen op that reads a
#: value computed from the input. ``affine``: affine in its input-dependent operands jointly,
#: replayed on the lifted coefficients (reshapes, indexing, sums, convolutions, matmul with a
#: constant, sums of polynomials); ``product``: entrywise product (degrees add) or affine with
#: one constant operand; ``bilinear``: a matmul-like op of two polynomial operands;
#: ``quotient``: division by constants; ``power``/``prod``: integer powers, products along an
#: axis; ``like``: a constant built like the input (its values do not depend on it);
#: ``control``: reads values into Python (bool(), .item(), nonzero): control flow on the input.
AtenKind = Literal[
    "affine", "product", "bilinear", "quotient", "power", "prod", "like", "control", "refused"
]


@dataclass(frozen=True)
class AtenRule:
    """How one ATen op lowers on polynomial tensors (see :data:`ATEN_RULES`)."""

    name: str
    kind: AtenKind
    hint: str = ""
    #: Constant operands broadcast against the polynomial ones (their batch axis is cut).
    broadcasts: bool = False
    #: Only the first output depends on the input (batch norm's saved statistics do not).
    first_output_only: bool = False
    #: Raises when the op would touch the batch axis (called with the tracer, args, kwargs).
    check: object = None

    @property
    def polynomial(self) -> bool:
        return self.kind != "refused"


def _batch_touch(why: str, full: str | None = None):
    from polynet.expansion.trace import _Refusal

    return _Refusal(
        (full or f"it {why} along the batch axis, which mixes the samples")
        + "; a polynomial model computes each sample on its own: work along the other axes."
    )


def _first(tracer, args):
    return tracer.lookup(args[0]) if args and isinstance(args[0], torch.Tensor) else None


def _dims_check(position: int, why: str, default_all: bool = False, default: int | None = None):
    def check(tracer, args, kwargs, tracked):
        value = _first(tracer, args)
        if value is None:
            return
        rank = args[0].dim()
        dims = args[position] if len(args) > position else kwargs.get("dim", default)
        if dims is None or (isinstance(dims, (list, tuple)) and not dims):
            if default_all:
                raise _batch_touch(why)
            return
        dims = [dims] if isinstance(dims, int) else list(dims)
        if value.axis in [d % rank for d in dims]:
            raise _batch_touch(why)

    return check


def _slice_check(tracer, args, kwargs, tracked):
    value = _first(tracer, args)
    if value is None:
        return
    dim = (args[1] if len(args) > 1 else kwargs.get("dim", 0)) % args[0].dim()
    if dim != value.axis:
        return
    start = args[2] if len(args) > 2 else kwargs.get("start")
    end = args[3] if len(args) > 3 else kwargs.get("end")
    step = args[4] if len(args) > 4 else kwargs.get("step", 1)
    size = args[0].shape[dim]
    if (start or 0) == 0 and (end is None or end >= size) and step == 1:
        return  # x[:, ...]: the whole batch
    raise _batch_touch("indexes")


def _index_check(tracer, args, kwargs, tracked):
    value = _first(tracer, args)
    if value is None:
        return
    indices = args[1]
    if value.axis < len(indices) and indices[value.axis] is not None:
        raise _batch_touch("indexes")


def _last_dims_check(k: int, why: str):
    def check(tracer, args, kwargs, tracked):
        value = _first(tracer, args)
        if value is not None and value.axis >= args[0].dim() - k:
            raise _batch_touch(why)

    return check


def _batch_first_check(why: str):
    def check(tracer, args, kwargs, tracked):
        value = _first(tracer, args)
        if value is not None and (value.axis != 0 or value.factor != 1):
            raise _batch_touch(why)
        if kwargs.get("training") or (len(args) > 5 and args[5] is True and why == "normalises"):
            raise _batch_touch(
                "",
                "it normalises with the batch's own statistics (training mode), which mixes "
                "the samples; use running statistics (training=False)",
            )

    return check


_USER_NAMES = {"select": "indexing", "_unsafe_view": "view", "_to_copy": "to", "t": "t"}


def _aten_affine(*names: str, **options) -> dict[str, AtenRule]:
    return {name: AtenRule(_USER_NAMES.get(name, name), "affine", **options) for name in names}


def _aten_refused(why: str, fix: str, *names: str) -> dict[str, AtenRule]:
    return {name: AtenRule(name, "refused", f"{why}; {fix}") for name in names}


_REDUCE = _dims_check(1, "reduces", default_all=True)

#: The closed ATen-level table for models traced on real shapes; keys are overload packets
#: (in-place variants ``add_`` use their functional entry ``add``).
ATEN_RULES: dict[str, AtenRule] = {
    # rearrangements and copies
    **_aten_affine(
        "view",
        "_unsafe_view",
        "reshape",
        "_reshape_alias",
        "expand",
        "permute",
        "transpose",
        "t",
        "unsqueeze",
        "squeeze",
        "alias",
        "clone",
        "contiguous",
        "detach",
        "_to_copy",
        "lift_fresh",
        "lift_fresh_copy",
        "neg",
        "positive",
        "repeat",
        "unflatten",
        "view_as_real",
        "expand_copy",
        "view_copy",
        "permute_copy",
        "flatten",
    ),
    **_aten_affine(
        "select",
        "narrow",
        "index_select",
        "flip",
        "unfold",
        "cumsum",
        check=_dims_check(1, "indexes"),
    ),
    **_aten_affine("unbind", check=_dims_check(1, "indexes", default=0)),
    **_aten_affine(
        "split",
        "split_with_sizes",
        "chunk",
        "roll",
        "diagonal",
        check=_dims_check(2, "indexes", default=0),
    ),
    "slice": AtenRule("indexing", "affine", check=_slice_check),
    "index": AtenRule("indexing", "affine", check=_index_check),
    "constant_pad_nd": AtenRule("F.pad", "affine", check=_last_dims_check(0, "pads")),
    "cat": AtenRule("torch.cat", "affine", broadcasts=True, check=_dims_check(1, "concatenates")),
    "stack": AtenRule("torch.stack", "affine", broadcasts=True),
    "copy": AtenRule("copy", "affine", broadcasts=True),
    "fill": AtenRule("fill", "affine", broadcasts=True),
    "zero": AtenRule("zero", "affine"),
    "index_put": AtenRule("index assignment", "affine", broadcasts=True, check=_index_check),
    "masked_fill": AtenRule("masked_fill", "affine", broadcasts=True),
    "where": AtenRule("torch.where", "affine", broadcasts=True),
    # sums, means, pooling
    "add": AtenRule("+", "affine", broadcasts=True),
    "sub": AtenRule("-", "affine", broadcasts=True),
    "rsub": AtenRule("-", "affine", broadcasts=True),
    "sum": AtenRule("sum", "affine", check=_REDUCE),
    "mean": AtenRule("mean", "affine", check=_REDUCE),
    "avg_pool1d": AtenRule("avg_pool1d", "affine", check=_last_dims_check(1, "pools")),
    "avg_pool2d": AtenRule("avg_pool2d", "affine", check=_last_dims_check(2, "pools")),
    "_adaptive_avg_pool2d": AtenRule(
        "adaptive_avg_pool2d", "affine", check=_last_dims_check(2, "pools")
    ),
    "adaptive_avg_pool1d": AtenRule(
        "adaptive_avg_pool1d", "affine", check=_last_dims_check(1, "pools")
    ),
    # affine maps with weights
    "mm": AtenRule("@", "bilinear"),
    "addmm": AtenRule("F.linear", "bilinear"),
    "bmm": AtenRule("@", "bilinear"),
    "baddbmm": AtenRule("@", "bilinear"),
    "mv": AtenRule("@", "bilinear"),
    "dot": AtenRule("@", "bilinear"),
    "convolution": AtenRule("convolution", "affine", check=_batch_first_check("convolves")),
    "native_batch_norm": AtenRule(
        "batch_norm", "affine", first_output_only=True, check=_batch_first_check("normalises")
    ),
    "_native_batch_norm_legit_no_training": AtenRule(
        "batch_norm", "affine", first_output_only=True, check=_batch_first_check("normalises")
    ),
    # products, quotients, powers
    "mul": AtenRule("*", "product", broadcasts=True),
    "div": AtenRule("/", "quotient", broadcasts=True),
    "pow": AtenRule("**", "power"),
    "prod": AtenRule("prod", "prod"),
    # constants built like the input
    **{
        name: AtenRule(name, "like")
        for name in (
            "zeros_like",
            "ones_like",
            "full_like",
            "empty_like",
            "new_zeros",
            "new_ones",
            "new_full",
            "new_empty",
            "empty_strided",
            "new_empty_strided",
        )
    },
    # control flow on the input's values
    **{
        name: AtenRule(name, "control")
        for name in (
            "_local_scalar_dense",
            "is_nonzero",
            "nonzero",
            "equal",
            "item",
            "masked_select",
            "unique",
            "_unique2",
        )
    },
    **_aten_refused(
        "relu is not a polynomial",
        _SLAF_HINT,
        "relu",
        "threshold",
        "hardtanh",
        "relu6",
        "leaky_relu",
        "prelu",
        "_prelu_kernel",
    ),
    **_aten_refused(
        "this activation is not a polynomial",
        _SLAF_HINT,
        "gelu",
        "silu",
        "elu",
        "selu",
        "celu",
        "mish",
        "softplus",
        "hardswish",
        "hardsigmoid",
        "logsigmoid",
    ),
    **_aten_refused("tanh is not a polynomial", _SLAF_HINT, "tanh"),
    **_aten_refused("sigmoid is not a polynomial", _SLAF_HINT, "sigmoid"),
    **_aten_refused(
        "exp and log are not polynomials",
        "remove them",
        "exp",
        "log",
        "log1p",
        "expm1",
        "log2",
        "exp2",
        "logsumexp",
    ),
    **_aten_refused("sqrt is not a polynomial", "remove it", "sqrt", "rsqrt", "reciprocal"),
    **_aten_refused("abs is not a polynomial", "use x * x instead", "abs", "sign", "sgn"),
    **_aten_refused(
        "softmax is not a polynomial",
        "remove it and expand the logits",
        "_softmax",
        "_log_softmax",
        "softmax",
        "log_softmax",
    ),
    **_aten_refused(
        "max/min are not polynomials",
        _MAX_FIX,
        "max",
        "min",
        "amax",
        "amin",
        "maximum",
        "minimum",
        "argmax",
        "argmin",
        "sort",
        "topk",
        "median",
        "max_pool2d_with_indices",
        "max_pool1d",
        "max_pool2d",
        "max_pool1d_with_indices",
    ),
    **_aten_refused(
        "clamp is not a polynomial", "remove it", "clamp", "clamp_min", "clamp_max", "clip"
    ),
    **_aten_refused(
        "layer/group normalisation divides by the input's own standard deviation",
        "use BatchNorm (evaluation mode) or remove it",
        "native_layer_norm",
        "native_group_norm",
    ),
    **_aten_refused(
        "a norm is not a polynomial", "use (x * x).sum()", "norm", "linalg_vector_norm"
    ),
    **_aten_refused(
        "comparisons are not polynomials",
        "remove them",
        "gt",
        "lt",
        "ge",
        "le",
        "eq",
        "ne",
        "logical_and",
        "logical_or",
        "logical_not",
        "any",
        "all",
    ),
    **_aten_refused(
        "rounding is not a polynomial",
        "remove it",
        "floor",
        "ceil",
        "round",
        "trunc",
        "frac",
        "remainder",
        "fmod",
        "floor_divide",
    ),
    **_aten_refused(
        "trigonometric functions are not polynomials",
        "remove them",
        "sin",
        "cos",
        "tan",
        "atan",
        "asin",
        "acos",
        "sinh",
        "cosh",
        "erf",
    ),
    **_aten_refused(
        "a random op is not a function of the input",
        "remove it",
        "bernoulli",
        "rand_like",
        "randn_like",
        "randint_like",
        "native_dropout",
    ),
}
