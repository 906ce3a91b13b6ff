"""Model families searched over, built by name from a trial spec's ``model`` section.

Each family registers a builder that takes the spec's ``params`` mapping and the number
of classes. Builders validate their parameters and raise :class:`ModelConfigError`
naming the invalid key, so a bad search space fails before any training starts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

ModelBuilder = Callable[[Mapping[str, Any], int], nn.Module]

_REGISTRY: dict[str, ModelBuilder] = {}


class ModelConfigError(ValueError):
    """A model name is unknown or a model parameter is missing, unknown or out of range."""


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Register a builder under ``name`` for :func:`build_model`.

    Parameters
    ----------
    name : str
        Name used in the trial spec's ``model.name``.

    Returns
    -------
    callable
        Decorator that stores the builder and returns it unchanged.
    """

    def decorator(builder: ModelBuilder) -> ModelBuilder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = builder
        return builder

    return decorator


def model_names() -> list[str]:
    """Return the registered model names, sorted."""
    return sorted(_REGISTRY)


def build_model(name: str, params: Mapping[str, Any], num_classes: int) -> nn.Module:
    """Build a registered model.

    Parameters
    ----------
    name : str
        Registered model name, for example ``"resnet18"``.
    params : mapping
        Architecture parameters of that family (the spec's ``model.params``).
    num_classes : int
        Number of output classes of the linear head.

    Returns
    -------
    torch.nn.Module
        The model with freshly initialized weights (uses the global torch RNG).

    Raises
    ------
    ModelConfigError
        If the name is not registered or a parameter is invalid.
    """
    if name not in _REGISTRY:
        raise ModelConfigError(
            f"unknown model {name!r}. Registered models: {', '.join(model_names())}"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ModelConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    return _REGISTRY[name](params, num_classes)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Return the number of parameter elements of ``model``.

    Parameters
    ----------
    model : torch.nn.Module
        Any module; buffers such as batch-norm running statistics are not counted.
    trainable_only : bool, default False
        Count only parameters with ``requires_grad``.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _positive_int_params(
    model: str, params: Mapping[str, Any], keys: tuple[str, ...]
) -> dict[str, int]:
    """Check that ``params`` has exactly ``keys``, each a positive integer."""
    if not isinstance(params, Mapping):
        raise ModelConfigError(f"{model}: params must be a mapping, got {type(params).__name__}")
    unknown = sorted(set(params) - set(keys))
    missing = [key for key in keys if key not in params]
    if unknown or missing:
        raise ModelConfigError(
            f"{model}: invalid params (missing: {missing or 'none'}, unknown: "
            f"{unknown or 'none'}); expected exactly the keys {list(keys)}"
        )
    values = {}
    for key in keys:
        value = params[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelConfigError(
                f"{model}: params.{key} must be a positive integer, got {value!r}"
            )
        values[key] = value
    return values


class ResNet18Family(nn.Module):
    """ResNet-18 with a configurable stem width and stage widths.

    The layout is a 3x3 stride-2 stem convolution with batch norm and ReLU (no max-pool),
    four stages of two torchvision ``BasicBlock`` each with strides 1, 2, 2, 2, global
    average pooling and a linear head. A block that changes the width or the stride gets
    a 1x1 convolution plus batch norm as shortcut, as in torchvision. The total stride
    is 16, and a feature map of size 1 stays 1, so inputs from 8x8 up to 224x224 work.

    Parameters
    ----------
    c1 : int
        Output channels of the stem convolution.
    widths : tuple of 4 int
        Output channels of stages 1 to 4 (``g1`` .. ``g4``).
    num_classes : int
        Number of output classes.
    in_channels : int, default 3
        Input image channels.
    """

    stage_strides = (1, 2, 2, 2)
    blocks_per_stage = 2

    def __init__(
        self, c1: int, widths: tuple[int, int, int, int], num_classes: int, in_channels: int = 3
    ):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c1),
            nn.ReLU(inplace=True),
        )
        stages = []
        in_width = c1
        for width, stride in zip(widths, self.stage_strides, strict=True):
            stages.append(self._make_stage(in_width, width, stride))
            in_width = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_width, num_classes)
        self._init_weights()

    def _make_stage(self, in_width: int, width: int, stride: int) -> nn.Sequential:
        """Build one stage of ``blocks_per_stage`` basic blocks, of which the first strides."""
        downsample = None
        if stride != 1 or in_width != width:
            downsample = nn.Sequential(
                nn.Conv2d(in_width, width, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(width),
            )
        blocks = [BasicBlock(in_width, width, stride=stride, downsample=downsample)]
        blocks += [BasicBlock(width, width) for _ in range(self.blocks_per_stage - 1)]
        return nn.Sequential(*blocks)

    def _init_weights(self) -> None:
        """Initialize like torchvision's ResNet: He-normal convolutions, unit batch norm."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


@register_model("resnet18")
def _build_resnet18(params: Mapping[str, Any], num_classes: int) -> nn.Module:
    """Build :class:`ResNet18Family` from ``{"c1", "g1", "g2", "g3", "g4"}``."""
    values = _positive_int_params("resnet18", params, ("c1", "g1", "g2", "g3", "g4"))
    widths = (values["g1"], values["g2"], values["g3"], values["g4"])
    return ResNet18Family(values["c1"], widths, num_classes)
