"""The one table of what is polynomial: torch modules, functions and tensor methods.

Every reader of a model (the chain path in :mod:`polynet.poly.network`, the graph path in
:mod:`polynet.poly.graph`, :func:`polynet.count_terms` and :func:`polynet.verify` through
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
