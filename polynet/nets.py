"""Network builders: SLNNs and their baselines as plain ``nn.Sequential`` models.

Every builder is an ``nn.Sequential`` subclass, so a model can be indexed, sliced, printed and
edited like any torch model; it also keeps the constructor arguments in ``config`` (plain JSON
values), which is what a checkpoint stores to rebuild it (:func:`build`).

=================  ===============================================================  ==========
builder            layers                                                           expandable
=================  ===============================================================  ==========
:class:`SLNN`      Linear, SLAF, Linear, SLAF, ..., Linear                          yes
:class:`HybridNet` Linear then SLAF or (BatchNorm1d, ReLU/Tanh) per hidden layer    SLAF-only
:class:`ConvSLNN`  (Conv2d, SLAF or BatchNorm2d+ReLU, AvgPool2d) blocks, Flatten, Linear  SLAF-only
=================  ===============================================================  ==========
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from polynet.slaf import SLAF
from polynet.validation import check_int, is_int

__all__ = ["SLNN", "HybridNet", "ConvSLNN", "ARCHITECTURES", "build"]

_SLAF_OPTIONS = ("share", "gate", "eps", "momentum", "init_std")


def _int_list(values: Any, name: str) -> list[int]:
    if is_int(values):
        values = [values]
    if not isinstance(values, Sequence) or isinstance(values, str):
        raise ValueError(f"{name} must be a list of integers, got {values!r}.")
    return [check_int(v, f"{name}[{i}]") for i, v in enumerate(values)]


def _per_layer(values: Any, n_layers: int, name: str) -> list[int]:
    """Broadcast one integer to every layer, or check a list has one entry per layer."""
    if is_int(values):
        return [check_int(values, name)] * n_layers
    out = _int_list(values, name)
    if len(out) != n_layers:
        raise ValueError(
            f"{name} must have one entry per hidden layer ({n_layers}), got {len(out)}: {out}; "
            f"pass a single integer to use it for every layer."
        )
    return out


def _check_slaf_options(options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - set(_SLAF_OPTIONS))
    if unknown:
        raise TypeError(
            f"unknown SLAF option(s) {unknown}; valid options are {list(_SLAF_OPTIONS)}."
        )


class _Builder(nn.Sequential):
    """An ``nn.Sequential`` that remembers its constructor arguments in ``config``."""

    architecture: ClassVar[str]
    config: dict[str, Any]

    def __getitem__(self, idx: int | slice) -> nn.Module:
        # nn.Sequential rebuilds slices with self.__class__, which has another signature here.
        if isinstance(idx, slice):
            return nn.Sequential(OrderedDict(list(self._modules.items())[idx]))
        return super().__getitem__(idx)


class SLNN(_Builder):
    """A multilayer perceptron with SLAF activations: Linear, SLAF, ..., Linear.

    One SLAF follows each hidden Linear layer; the output layer is Linear. In evaluation mode
    the network is a polynomial of total degree at most ∏ degrees in its inputs (Theorem 2).

    Parameters
    ----------
    in_features : int
        Number of inputs n.
    hidden : list of int
        Width of each hidden layer.
    degrees : int or list of int
        SLAF degree per hidden layer (one integer is used for all).
    out_features : int, default=1
        Number of outputs.
    basis : {"taylor", "chebyshev", "legendre", "emfn"}, default="taylor"
        SLAF basis family.
    **slaf_options
        ``share``, ``gate``, ``eps``, ``momentum``, ``init_std``, passed to every :class:`SLAF`.

    Examples
    --------
    >>> SLNN(13, [128, 64], [4, 2])
    SLNN(
      (0): Linear(in_features=13, out_features=128, bias=True)
      (1): SLAF(128, degree=4, basis='taylor', share='layer')
      (2): Linear(in_features=128, out_features=64, bias=True)
      (3): SLAF(64, degree=2, basis='taylor', share='layer')
      (4): Linear(in_features=64, out_features=1, bias=True)
    )
    """

    architecture = "SLNN"

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        degrees: int | Sequence[int],
        out_features: int = 1,
        basis: str = "taylor",
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **slaf_options: Any,
    ) -> None:
        in_features = check_int(in_features, "in_features")
        out_features = check_int(out_features, "out_features")
        hidden = _int_list(hidden, "hidden")
        degrees = _per_layer(degrees, len(hidden), "degrees")
        _check_slaf_options(slaf_options)
        factory = {"device": device, "dtype": dtype}
        layers: list[nn.Module] = []
        width = in_features
        for h, k in zip(hidden, degrees):
            layers += [nn.Linear(width, h, **factory), SLAF(h, k, basis, **slaf_options, **factory)]
            width = h
        layers.append(nn.Linear(width, out_features, **factory))
        super().__init__(*layers)
        self.config = {
            "in_features": in_features,
            "hidden": hidden,
            "degrees": degrees,
            "out_features": out_features,
            "basis": basis,
            **slaf_options,
        }


_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU}


def _activation_list(activations: str | Sequence[str], n_layers: int) -> list[str]:
    if isinstance(activations, str):
        activations = [activations] * n_layers
    activations = [str(a).lower() for a in activations]
    valid = ["slaf", *_ACTIVATIONS]
    for i, a in enumerate(activations):
        if a not in valid:
            raise ValueError(f"activations[{i}] must be one of {valid}, got {a!r}.")
    if len(activations) != n_layers:
        raise ValueError(
            f"activations must have one entry per hidden layer ({n_layers}), "
            f"got {len(activations)}: {activations}."
        )
    return activations


class HybridNet(_Builder):
    """An MLP mixing SLAF layers with BatchNorm + fixed activations (the paper's hybrid).

    With every entry ``"relu"`` this is the paper's ReLU+BatchNorm baseline.

    Parameters
    ----------
    in_features : int
        Number of inputs.
    hidden : list of int
        Width of each hidden layer.
    activations : str or list of str
        Per hidden layer: ``"slaf"``, ``"relu"``, ``"tanh"``, ``"gelu"`` or ``"silu"``.
    degrees : int or list of int, default=3
        SLAF degree for each hidden layer (entries of non-SLAF layers are ignored).
    out_features : int, default=1
        Number of outputs.
    basis : str, default="taylor"
        SLAF basis family.
    batchnorm : bool, default=True
        Put BatchNorm1d before each fixed activation.
    **slaf_options
        Passed to every :class:`SLAF`.

    Examples
    --------
    >>> net = HybridNet(4, [8, 8], ["slaf", "relu"], degrees=3)
    >>> [type(m).__name__ for m in net]
    ['Linear', 'SLAF', 'Linear', 'BatchNorm1d', 'ReLU', 'Linear']
    """

    architecture = "HybridNet"

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        activations: str | Sequence[str],
        degrees: int | Sequence[int] = 3,
        out_features: int = 1,
        basis: str = "taylor",
        *,
        batchnorm: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **slaf_options: Any,
    ) -> None:
        in_features = check_int(in_features, "in_features")
        out_features = check_int(out_features, "out_features")
        hidden = _int_list(hidden, "hidden")
        activations = _activation_list(activations, len(hidden))
        degrees = _per_layer(degrees, len(hidden), "degrees")
        _check_slaf_options(slaf_options)
        factory = {"device": device, "dtype": dtype}
        layers: list[nn.Module] = []
        width = in_features
        for h, act, k in zip(hidden, activations, degrees):
            layers.append(nn.Linear(width, h, **factory))
            if act == "slaf":
                layers.append(SLAF(h, k, basis, **slaf_options, **factory))
            else:
                if batchnorm:
                    layers.append(nn.BatchNorm1d(h, **factory))
                layers.append(_ACTIVATIONS[act]())
            width = h
        layers.append(nn.Linear(width, out_features, **factory))
        super().__init__(*layers)
        self.config = {
            "in_features": in_features,
            "hidden": hidden,
            "activations": activations,
            "degrees": degrees,
            "out_features": out_features,
            "basis": basis,
            "batchnorm": bool(batchnorm),
            **slaf_options,
        }


class ConvSLNN(_Builder):
    """A convolutional network: blocks of Conv2d, activation, AvgPool2d; then Flatten, Linear.

    With every activation ``"slaf"`` and average pooling, the network is a polynomial of its
    pixels (Theorem 2 covers it); ``"relu"`` blocks (BatchNorm2d + ReLU) give the hybrid and
    baseline networks of the paper's image experiments.

    Parameters
    ----------
    in_channels : int
        Image channels (1 for MNIST, 3 for CIFAR-10).
    image_size : int or (int, int)
        Input height and width.
    channels : list of int
        Output channels of each convolution block.
    degrees : int or list of int, default=2
        SLAF degree per block.
    out_features : int, default=10
        Number of outputs (classes).
    activations : str or list of str, default="slaf"
        Per block: ``"slaf"`` or ``"relu"``.
    kernel_size : int, default=3
        Convolution kernel (padding keeps the size).
    pool : int, default=2
        Average-pooling window and stride after each block (1 for none).
    basis : str, default="taylor"
        SLAF basis family.
    **slaf_options
        Passed to every :class:`SLAF`.

    Examples
    --------
    >>> net = ConvSLNN(1, 8, [4], degrees=2, out_features=3)
    >>> net(torch.randn(5, 1, 8, 8)).shape
    torch.Size([5, 3])
    """

    architecture = "ConvSLNN"

    def __init__(
        self,
        in_channels: int,
        image_size: int | Sequence[int],
        channels: Sequence[int],
        degrees: int | Sequence[int] = 2,
        out_features: int = 10,
        activations: str | Sequence[str] = "slaf",
        *,
        kernel_size: int = 3,
        pool: int = 2,
        basis: str = "taylor",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **slaf_options: Any,
    ) -> None:
        in_channels = check_int(in_channels, "in_channels")
        size = _int_list(image_size, "image_size")
        if len(size) == 1:
            size = size * 2
        if len(size) != 2:
            raise ValueError(f"image_size must be an integer or (height, width), got {image_size}.")
        channels = _int_list(channels, "channels")
        degrees = _per_layer(degrees, len(channels), "degrees")
        activations = _activation_list(activations, len(channels))
        kernel_size = check_int(kernel_size, "kernel_size")
        pool = check_int(pool, "pool")
        _check_slaf_options(slaf_options)
        factory = {"device": device, "dtype": dtype}
        layers: list[nn.Module] = []
        width, (h, w) = in_channels, size
        for c, k, act in zip(channels, degrees, activations):
            layers.append(nn.Conv2d(width, c, kernel_size, padding=kernel_size // 2, **factory))
            if act == "slaf":
                layers.append(SLAF(c, k, basis, **slaf_options, **factory))
            else:
                layers += [nn.BatchNorm2d(c, **factory), _ACTIVATIONS[act]()]
            if pool > 1:
                if h < pool or w < pool:
                    raise ValueError(
                        f"image_size {tuple(size)} is too small for {len(channels)} pooling "
                        f"blocks of {pool}; use fewer channels entries or pool=1."
                    )
                layers.append(nn.AvgPool2d(pool))
                h, w = h // pool, w // pool
            width = c
        layers += [nn.Flatten(), nn.Linear(width * h * w, out_features, **factory)]
        super().__init__(*layers)
        self.config = {
            "in_channels": in_channels,
            "image_size": size,
            "channels": channels,
            "degrees": degrees,
            "out_features": check_int(out_features, "out_features"),
            "activations": activations,
            "kernel_size": kernel_size,
            "pool": pool,
            "basis": basis,
            **slaf_options,
        }


ARCHITECTURES: dict[str, type[_Builder]] = {
    cls.architecture: cls for cls in (SLNN, HybridNet, ConvSLNN)
}


def build(architecture: str, config: dict[str, Any], **factory: Any) -> nn.Sequential:
    """Rebuild a model from its architecture name and ``config`` (as a checkpoint stores them).

    Examples
    --------
    >>> net = SLNN(2, [3], 2)
    >>> type(build("SLNN", net.config)).__name__
    'SLNN'
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {architecture!r}; known architectures are "
            f"{sorted(ARCHITECTURES)}."
        )
    return ARCHITECTURES[architecture](**config, **factory)
