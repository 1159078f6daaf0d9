"""A model read as alternating affine maps and per-unit univariate polynomials.

This is the one place that knows torch layer types. :func:`lower` walks an evaluation-mode
model and returns :class:`Affine` and :class:`UnitPolynomials` stages in float64 acting on
flattened vectors; the expanders never see a torch module. Layers that are not polynomial
maps are refused here, naming the layer, its position and why.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from polynet.errors import NotExpandableError
from polynet.expansion.rules import check_module, module_rule
from polynet.slaf import SLAF

__all__ = [
    "Affine",
    "UnitPolynomials",
    "LoweredNetwork",
    "lower",
    "iter_layers",
    "is_chain",
    "as_sequential",
    "check_chain_layer",
]


@dataclass(frozen=True)
class Affine:
    """y = W x + b on flattened vectors; ``weight`` is (m, k), or (m,) for a diagonal map."""

    weight: Tensor
    bias: Tensor
    layers: tuple[str, ...]

    @property
    def out_features(self) -> int:
        return self.bias.shape[0]


@dataclass(frozen=True)
class UnitPolynomials:
    """y_j = Σ_i coefficients[j, i] x_j^i for each unit j (an SLAF in evaluation mode)."""

    coefficients: Tensor  # (m, k+1), low to high
    layers: tuple[str, ...]

    @property
    def degree(self) -> int:
        return self.coefficients.shape[1] - 1


Stage = Affine | UnitPolynomials


@dataclass(frozen=True)
class LoweredNetwork:
    """The stages of a model, its input size n and output size."""

    stages: tuple[Stage, ...]
    n_inputs: int
    input_shape: tuple[int, ...]

    @property
    def degree_bound(self) -> int:
        """∏ k over the polynomial stages (Theorem 2's D)."""
        return math.prod(s.degree for s in self.stages if isinstance(s, UnitPolynomials))

    @property
    def n_outputs(self) -> int:
        for stage in reversed(self.stages):
            if isinstance(stage, Affine):
                return stage.out_features
            return stage.coefficients.shape[0]
        return self.n_inputs


_IDENTITY_LAYERS = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)
_PROBED_LAYERS = (nn.Conv1d, nn.Conv2d, nn.AvgPool1d, nn.AvgPool2d)
_NOT_POLYNOMIAL = {
    nn.ReLU: "ReLU is not a polynomial",
    nn.MaxPool1d: "max pooling is not a polynomial",
    nn.MaxPool2d: "max pooling is not a polynomial",
}


def iter_layers(model: nn.Module, name: str = "model") -> Iterator[tuple[str, nn.Module]]:
    """Leaf layers of (nested) ``nn.Sequential`` models with positions like ``model[2][1]``."""
    if isinstance(model, nn.Sequential):
        for i, child in enumerate(model):
            yield from iter_layers(child, f"{name}[{i}]")
    else:
        yield name, model


def is_chain(model: nn.Module) -> bool:
    """Whether ``model`` is a (nested) ``nn.Sequential`` of layers in the rules table.

    Such a model takes the chain fast path; any other module is traced (:mod:`graph`).
    """
    if not isinstance(model, nn.Sequential):
        return False
    return all(module_rule(layer) is not None for _, layer in iter_layers(model))


def as_sequential(model: nn.Module) -> nn.Module:
    """A lone table layer (``SLAF(3, 2)``, ``nn.Linear(3, 1)``) as a one-layer chain."""
    if isinstance(model, nn.Sequential) or module_rule(model) is None:
        return model
    chain = nn.Sequential(model)
    chain.training = model.training
    return chain


def check_chain_layer(name: str, layer: nn.Module) -> None:
    """Refuse a chain layer that is not a polynomial map (the rules table, plus Flatten)."""
    check_module(
        name,
        layer,
        _prefix_hint(name)
        if module_rule(layer) is None or not module_rule(layer).polynomial
        else None,
    )
    if isinstance(layer, nn.Flatten) and (layer.start_dim != 1 or layer.end_dim != -1):
        raise _refuse(
            name,
            layer,
            "only Flatten(start_dim=1, end_dim=-1) is supported in a chain",
            "use nn.Flatten() with its defaults.",
        )


def _refuse(name: str, layer: nn.Module, why: str, hint: str) -> NotExpandableError:
    return NotExpandableError(f"cannot expand {name} ({type(layer).__name__}): {why}; {hint}")


def check_polynomial_slaf(name: str, layer: SLAF) -> None:
    """Refuse an SLAF whose basis is not a polynomial family (EMFN)."""
    if not layer.basis.is_polynomial:
        raise _refuse(
            name,
            layer,
            f"its {layer.basis.name!r} basis is not a polynomial",
            "train with basis='taylor', 'chebyshev' or 'legendre' to expand it.",
        )


def _prefix_hint(name: str) -> str:
    if name.count("[") == 1:
        pos = int(name[name.index("[") + 1 : -1])
        return f"replace it with an SLAF or expand model[:{pos}]."
    return "replace it with an SLAF or expand the layers before it."


def _input_shape(model: nn.Module, first: nn.Module, input_shape) -> tuple[int, ...]:
    if input_shape is not None:
        return tuple(int(s) for s in input_shape)
    if isinstance(first, nn.Linear):
        return (first.in_features,)
    if isinstance(first, SLAF):
        return (first.num_features,)
    config = getattr(model, "config", None)
    if isinstance(first, nn.Conv2d) and isinstance(config, dict) and "image_size" in config:
        return (first.in_channels, *config["image_size"])
    raise NotExpandableError(
        f"cannot tell the input shape of a model that starts with {type(first).__name__}; "
        "pass input_shape=(C, H, W) (or (C, L) for Conv1d)."
    )


def lower(
    model: nn.Module, input_shape: tuple[int, ...] | None = None, device=None
) -> LoweredNetwork:
    """Read an evaluation-mode model as float64 stages on ``device`` (default: the model's).

    Raises
    ------
    NotExpandableError
        For a layer that is not a polynomial map, a model in training mode, or an unknown
        input shape.
    """
    layers = list(iter_layers(model))
    if not layers:
        raise NotExpandableError("cannot expand an empty model.")
    for name, layer in [("model", model), *layers]:
        if layer.training:
            raise NotExpandableError(
                f"cannot expand {name} ({type(layer).__name__}): it is in training mode, where "
                "SLAF, BatchNorm and Dropout depend on the batch; call model.eval() first."
            )
    if device is None:
        params = [t for t in model.parameters()] + [t for t in model.buffers()]
        device = params[0].device if params else torch.device("cpu")
    in_shape = shape = _input_shape(model, layers[0][1], input_shape)
    stages: list[Stage] = []
    for name, layer in layers:
        stage, shape = _lower_layer(name, layer, shape, device)
        if stage is not None:
            stages.append(stage)
    return LoweredNetwork(tuple(stages), math.prod(in_shape), in_shape)


def _f64(t: Tensor, device) -> Tensor:
    return t.detach().to(device=device, dtype=torch.float64)


def _lower_layer(name: str, layer: nn.Module, shape: tuple[int, ...], device):
    check_chain_layer(name, layer)
    n = math.prod(shape)
    if isinstance(layer, SLAF):
        if shape[0] != layer.num_features:
            raise _shape_error(name, layer, shape, f"{layer.num_features} channels")
        check_polynomial_slaf(name, layer)
        alpha = layer.polynomial().to(device)
        spatial = n // shape[0]
        return UnitPolynomials(alpha.repeat_interleave(spatial, dim=0), (name,)), shape
    if isinstance(layer, nn.Linear):
        if len(shape) != 1 or shape[0] != layer.in_features:
            raise _shape_error(name, layer, shape, f"({layer.in_features},)")
        bias = layer.bias if layer.bias is not None else torch.zeros(layer.out_features)
        stage = Affine(_f64(layer.weight, device), _f64(bias, device), (name,))
        return stage, (layer.out_features,)
    if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
        if layer.running_mean is None:
            raise _refuse(
                name,
                layer,
                "it keeps no running statistics (track_running_stats=False)",
                "rebuild it with track_running_stats=True or remove it.",
            )
        if shape[0] != layer.num_features:
            raise _shape_error(name, layer, shape, f"{layer.num_features} channels")
        scale = 1.0 / torch.sqrt(_f64(layer.running_var, device) + layer.eps)
        shift = -_f64(layer.running_mean, device) * scale
        if layer.affine:
            scale = scale * _f64(layer.weight, device)
            shift = shift * _f64(layer.weight, device) + _f64(layer.bias, device)
        spatial = n // shape[0]
        stage = Affine(scale.repeat_interleave(spatial), shift.repeat_interleave(spatial), (name,))
        return stage, shape
    if isinstance(layer, _IDENTITY_LAYERS):
        return None, shape
    if isinstance(layer, nn.Flatten):
        if layer.start_dim != 1 or layer.end_dim != -1:
            raise _refuse(
                name,
                layer,
                "only Flatten(start_dim=1, end_dim=-1) is supported",
                "use nn.Flatten() with its defaults.",
            )
        return None, (n,)
    if isinstance(layer, _PROBED_LAYERS):
        return _probe(name, layer, shape, device)
    why = _NOT_POLYNOMIAL.get(
        type(layer), f"{type(layer).__name__} is not a supported polynomial layer"
    )
    if isinstance(layer, nn.Tanh | nn.Sigmoid | nn.GELU | nn.SiLU | nn.LeakyReLU | nn.ELU):
        why = f"{type(layer).__name__} is not a polynomial"
    raise _refuse(name, layer, why, _prefix_hint(name))


def _shape_error(name, layer, shape, expected) -> NotExpandableError:
    return NotExpandableError(
        f"cannot expand {name} ({type(layer).__name__}): it expects {expected} but receives "
        f"inputs of shape {shape}; check the model's layer order or pass input_shape=."
    )


def _probe(name: str, layer: nn.Module, shape: tuple[int, ...], device):
    """Matrix of a linear layer (conv without bias, average pooling) from its basis images."""
    n = math.prod(shape)
    probe = copy.deepcopy(layer).to(device=device, dtype=torch.float64)
    bias = getattr(probe, "bias", None)
    if bias is not None:
        probe.bias = None
    basis = torch.eye(n, dtype=torch.float64, device=device).view(n, *shape)
    try:
        with torch.no_grad():
            images = probe(basis)
    except RuntimeError as exc:
        raise _shape_error(name, layer, shape, "another input shape") from exc
    out_shape = tuple(images.shape[1:])
    weight = images.reshape(n, -1).T.contiguous()
    spatial = math.prod(out_shape[1:])
    if bias is not None:
        full_bias = _f64(bias, device).repeat_interleave(spatial)
    else:
        full_bias = torch.zeros(weight.shape[0], dtype=torch.float64, device=device)
    return Affine(weight, full_bias, (name,)), out_shape
