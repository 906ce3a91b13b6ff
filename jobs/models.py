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
    model: str, params: Mapping[str, Any], keys: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, int]:
    """Check that ``params`` has ``keys``, each a positive integer, and only ``optional`` more.

    The optional keys are not checked here and not returned.
    """
    if not isinstance(params, Mapping):
        raise ModelConfigError(f"{model}: params must be a mapping, got {type(params).__name__}")
    unknown = sorted(set(params) - set(keys) - set(optional))
    missing = [key for key in keys if key not in params]
    if unknown or missing:
        expected = f"the keys {list(keys)}"
        if optional:
            expected += f" and optionally {list(optional)}"
        raise ModelConfigError(
            f"{model}: invalid params (missing: {missing or 'none'}, unknown: "
            f"{unknown or 'none'}); expected {expected}"
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

    With ``stem="basic"`` the stem convolution is replaced by a basic block: two 3x3
    convolutions, the first with stride 2, and a strided 1x1 convolution plus batch norm
    as shortcut.

    Parameters
    ----------
    c1 : int
        Output channels of the stem.
    widths : tuple of 4 int
        Output channels of stages 1 to 4 (``g1`` .. ``g4``).
    num_classes : int
        Number of output classes.
    in_channels : int, default 3
        Input image channels.
    stem : {"conv", "basic"}, default "conv"
        A single stride-2 convolution, or a stride-2 basic block.
    """

    stage_strides = (1, 2, 2, 2)
    blocks_per_stage = 2

    def __init__(
        self,
        c1: int,
        widths: tuple[int, int, int, int],
        num_classes: int,
        in_channels: int = 3,
        stem: str = "conv",
    ):
        super().__init__()
        if stem == "conv":
            self.stem: nn.Module = nn.Sequential(
                nn.Conv2d(in_channels, c1, kernel_size=3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c1),
                nn.ReLU(inplace=True),
            )
        elif stem == "basic":
            self.stem = self._make_stage(in_channels, c1, stride=2, blocks=1)
        else:
            raise ModelConfigError(
                f"resnet18: params.stem must be 'conv' or 'basic', got {stem!r}"
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

    def _make_stage(
        self, in_width: int, width: int, stride: int, blocks: int | None = None
    ) -> nn.Sequential:
        """Build ``blocks`` (default ``blocks_per_stage``) basic blocks; the first strides."""
        downsample = None
        if stride != 1 or in_width != width:
            downsample = nn.Sequential(
                nn.Conv2d(in_width, width, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(width),
            )
        count = self.blocks_per_stage if blocks is None else blocks
        layers = [BasicBlock(in_width, width, stride=stride, downsample=downsample)]
        layers += [BasicBlock(width, width) for _ in range(count - 1)]
        return nn.Sequential(*layers)

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
    """Build :class:`ResNet18Family` from ``{"c1", "g1", "g2", "g3", "g4"}`` and ``stem``."""
    values = _positive_int_params("resnet18", params, ("c1", "g1", "g2", "g3", "g4"), ("stem",))
    widths = (values["g1"], values["g2"], values["g3"], values["g4"])
    stem = params.get("stem", "conv")
    return ResNet18Family(values["c1"], widths, num_classes, stem=stem)


class ResNeXtBottleneck(nn.Module):
    """ResNeXt bottleneck: 1x1 reduce, grouped 3x3 (strided), 1x1 expand, plus shortcut.

    The shortcut of a strided block average-pools (3x3, stride 2) before its 1x1
    convolution instead of using a strided 1x1 convolution, so no input pixel is dropped. The final
    ReLU is left out with ``last_relu=False``, for blocks whose output is added to
    another branch first.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        width: int,
        groups: int,
        stride: int = 1,
        last_relu: bool = True,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(
            width, width, kernel_size=3, stride=stride, padding=1, groups=groups, bias=False
        )
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.last_relu = last_relu
        shortcut: list[nn.Module] = []
        if stride != 1:
            shortcut.append(nn.AvgPool2d(3, stride=stride, padding=1))
        if in_channels != out_channels:
            shortcut.append(nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False))
            shortcut.append(nn.BatchNorm2d(out_channels))
        self.shortcut = nn.Sequential(*shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out)) + self.shortcut(x)
        return self.relu(out) if self.last_relu else out


def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(
            in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False
        ),
        nn.BatchNorm2d(out_channels),
    ]


class BigLittleStem(nn.Module):
    """Big-Little Net stem: a 7x7 stride-2 convolution, then a big and a little path.

    The big path is one 3x3 stride-2 convolution. The little path has ``width // alpha``
    channels: a 3x3 convolution, a 3x3 stride-2 convolution and a 1x1 convolution back
    to ``width``. The two are added and mixed by a 1x1 convolution. The total stride is
    4, as in a ResNet stem with max-pool.
    """

    def __init__(self, in_channels: int, width: int, alpha: int) -> None:
        super().__init__()
        little = max(1, width // alpha)
        self.conv1 = nn.Sequential(*_conv_bn(in_channels, width, 7, 2), nn.ReLU(inplace=True))
        self.big = nn.Sequential(*_conv_bn(width, width, 3, 2), nn.ReLU(inplace=True))
        self.little = nn.Sequential(
            *_conv_bn(width, little, 3),
            nn.ReLU(inplace=True),
            *_conv_bn(little, little, 3, 2),
            nn.ReLU(inplace=True),
            *_conv_bn(little, width, 1),
        )
        self.merge = nn.Sequential(*_conv_bn(width, width, 1), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.merge(torch.relu(self.big(x) + self.little(x)))


class BigLittleStage(nn.Module):
    """One Big-Little stage: big branch at half resolution, little branch at full.

    The big branch has ``depth - 1`` bottlenecks with the full width, the first with
    stride 2. The little branch has ``max(1, depth // beta - 1)`` bottlenecks with
    ``1 / alpha`` of the channels at stride 1, then a 1x1 convolution to the full width.
    The big output is upsampled (nearest) to the little one's size, the two are added,
    and one fusion bottleneck with stride ``stride`` follows.
    """

    def __init__(
        self,
        in_channels: int,
        planes: int,
        depth: int,
        stride: int,
        shape: BigLittleShape,
    ) -> None:
        super().__init__()
        out = planes * 4
        little_planes = max(1, planes // shape.alpha)
        big_blocks = max(1, depth - 1)
        little_blocks = max(1, depth // shape.beta - 1)
        self.big = _bottlenecks(in_channels, planes, big_blocks, 2, shape)
        self.little = _bottlenecks(in_channels, little_planes, little_blocks, 1, shape)
        self.little_expand = nn.Sequential(*_conv_bn(little_planes * 4, out, 1))
        self.fusion = _bottlenecks(out, planes, 1, stride, shape, last_relu=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        little = self.little_expand(self.little(x))
        big = nn.functional.interpolate(self.big(x), size=little.shape[-2:], mode="nearest")
        return self.fusion(torch.relu(big + little))


class BigLittleShape:
    """Width settings of a Big-Little ResNeXt: alpha, beta, phi, cardinality and base width."""

    def __init__(
        self, alpha: int, beta: int, phi: float, cardinality: int, base_width: int
    ) -> None:
        self.alpha, self.beta, self.phi = alpha, beta, phi
        self.cardinality, self.base_width = cardinality, base_width

    def planes(self, stage: int) -> int:
        """Return the stage's bottleneck width ``max(1, round(64 * 2**stage * phi))``."""
        return max(1, round(64 * 2**stage * self.phi))

    def group_width(self, planes: int) -> int:
        """Return the grouped convolution's channels, ``max(1, planes * d // 64) * C``."""
        return max(1, planes * self.base_width // 64) * self.cardinality


def _bottlenecks(
    in_channels: int,
    planes: int,
    blocks: int,
    stride: int,
    shape: BigLittleShape,
    last_relu: bool = False,
) -> nn.Sequential:
    """Build ``blocks`` bottlenecks of output ``4 * planes``; the first strides.

    The last block keeps its final ReLU only if ``last_relu``.
    """
    out = planes * 4
    width = shape.group_width(planes)
    layers = []
    for index in range(blocks):
        last = index == blocks - 1
        layers.append(
            ResNeXtBottleneck(
                in_channels if index == 0 else out,
                out,
                width,
                shape.cardinality,
                stride=stride if index == 0 else 1,
                last_relu=last_relu or not last,
            )
        )
    return nn.Sequential(*layers)


class BigLittleResNeXt(nn.Module):
    """Big-Little ResNeXt-50 (bL-ResNeXt-50; Chen et al., ICLR 2019, "Big-Little Net").

    Layout: :class:`BigLittleStem` (stride 4), three :class:`BigLittleStage` of depths
    3, 4 and 6 with fusion strides 2, 2 and 1, a plain ResNeXt stage of 3 bottlenecks
    with stride 2, global average pooling and a linear head. The total stride is 32 and
    the feature vector has ``4 * round(512 * phi)`` entries (2048 at ``phi = 1``).

    Parameters
    ----------
    shape : BigLittleShape
        alpha, beta, phi, cardinality and base width.
    num_classes : int
        Number of output classes.
    in_channels : int, default 3
        Input image channels.
    """

    depths = (3, 4, 6, 3)
    fusion_strides = (2, 2, 1)

    def __init__(self, shape: BigLittleShape, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.stem = BigLittleStem(in_channels, shape.planes(0), shape.alpha)
        stages: list[nn.Module] = []
        channels = shape.planes(0)
        for stage, (depth, stride) in enumerate(
            zip(self.depths[:3], self.fusion_strides, strict=True)
        ):
            stages.append(BigLittleStage(channels, shape.planes(stage), depth, stride, shape))
            channels = 4 * shape.planes(stage)
        last = shape.planes(3)
        stages.append(_bottlenecks(channels, last, self.depths[3], 2, shape, last_relu=True))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * last, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


BL_RESNEXT_DEFAULTS: dict[str, Any] = {
    "alpha": 2,
    "beta": 4,
    "phi": 1.0,
    "cardinality": 32,
    "base_width": 4,
}


@register_model("bl_resnext50")
def _build_bl_resnext50(params: Mapping[str, Any], num_classes: int) -> nn.Module:
    """Build :class:`BigLittleResNeXt` from optional ``alpha``, ``beta``, ``phi``,
    ``cardinality`` and ``base_width`` (defaults in ``BL_RESNEXT_DEFAULTS``).

    ``phi`` is a positive number; the others are positive integers.
    """
    name = "bl_resnext50"
    if not isinstance(params, Mapping):
        raise ModelConfigError(f"{name}: params must be a mapping, got {type(params).__name__}")
    unknown = sorted(set(params) - set(BL_RESNEXT_DEFAULTS))
    if unknown:
        raise ModelConfigError(
            f"{name}: unknown params {unknown}; valid keys (all optional) and their "
            f"defaults are {BL_RESNEXT_DEFAULTS}"
        )
    values = {**BL_RESNEXT_DEFAULTS, **params}
    ints = {k: v for k, v in values.items() if k != "phi"}
    checked = _positive_int_params(name, ints, tuple(ints))
    phi = values["phi"]
    if isinstance(phi, bool) or not isinstance(phi, int | float) or not phi > 0:
        raise ModelConfigError(f"{name}: params.phi must be a positive number, got {phi!r}")
    shape = BigLittleShape(
        checked["alpha"],
        checked["beta"],
        float(phi),
        checked["cardinality"],
        checked["base_width"],
    )
    return BigLittleResNeXt(shape, num_classes)
