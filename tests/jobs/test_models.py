"""Tests of the model registry and the ResNet-18 family."""

from __future__ import annotations

import pytest
import torch

from jobs.models import ModelConfigError, build_model, count_parameters, model_names

WIDTHS = [
    {"c1": 4, "g1": 4, "g2": 8, "g3": 8, "g4": 16},
    {"c1": 8, "g1": 16, "g2": 24, "g3": 32, "g4": 64},
    {"c1": 16, "g1": 12, "g2": 12, "g3": 40, "g4": 8},
]


def _conv_bn(c_in: int, c_out: int, kernel: int) -> int:
    """Weights of a bias-free convolution plus the batch norm's weight and bias."""
    return kernel * kernel * c_in * c_out + 2 * c_out


def _basic_block(c_in: int, c_out: int, stride: int) -> int:
    shortcut = _conv_bn(c_in, c_out, 1) if stride != 1 or c_in != c_out else 0
    return _conv_bn(c_in, c_out, 3) + _conv_bn(c_out, c_out, 3) + shortcut


def _resnet18_formula(c1: int, g: tuple[int, int, int, int], num_classes: int) -> int:
    """Parameter count from the architecture: stem, 4 stages of 2 blocks, linear head."""
    total = _conv_bn(3, c1, 3)
    c_in = c1
    for width, stride in zip(g, (1, 2, 2, 2), strict=True):
        total += _basic_block(c_in, width, stride) + _basic_block(width, width, 1)
        c_in = width
    return total + g[-1] * num_classes + num_classes


@pytest.mark.parametrize("params", WIDTHS)
@pytest.mark.parametrize("size", [8, 32])
def test_resnet18_forward_backward(params: dict[str, int], size: int) -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", params, num_classes=10)
    images = torch.randn(3, 3, size, size)
    logits = model(images)
    assert logits.shape == (3, 10)
    logits.sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)
    assert all(torch.isfinite(g).all() for g in grads if g is not None)


def test_resnet18_accepts_224_input() -> None:
    model = build_model("resnet18", WIDTHS[0], num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 7)


def test_resnet18_parameter_count_matches_formula() -> None:
    model = build_model("resnet18", {"c1": 3, "g1": 4, "g2": 5, "g3": 6, "g4": 7}, 10)
    assert count_parameters(model) == _resnet18_formula(3, (4, 5, 6, 7), 10)
    # Worked out by hand: stem 87, stages 592 + 925 + 1332 + 1813, head 80.
    assert count_parameters(model) == 4829


@pytest.mark.parametrize("params", WIDTHS)
def test_resnet18_parameter_count_other_widths(params: dict[str, int]) -> None:
    model = build_model("resnet18", params, num_classes=10)
    widths = (params["g1"], params["g2"], params["g3"], params["g4"])
    assert count_parameters(model) == _resnet18_formula(params["c1"], widths, 10)


def test_resnet18_has_no_maxpool_and_stride2_stem() -> None:
    model = build_model("resnet18", WIDTHS[0], num_classes=10)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())
    stem = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert stem.stride == (2, 2)
    assert stem.kernel_size == (3, 3)


def test_build_model_unknown_name() -> None:
    assert "resnet18" in model_names()
    with pytest.raises(ModelConfigError, match="unknown model 'vgg'.*resnet18"):
        build_model("vgg", {}, 10)


@pytest.mark.parametrize(
    ("params", "pattern"),
    [
        ({"c1": 4, "g1": 4, "g2": 4, "g3": 4}, r"missing: \['g4'\]"),
        ({"c1": 4, "g1": 4, "g2": 4, "g3": 4, "g4": 4, "g5": 4}, r"unknown: \['g5'\]"),
        ({"c1": 0, "g1": 4, "g2": 4, "g3": 4, "g4": 4}, r"params.c1 must be a positive"),
        ({"c1": 4.0, "g1": 4, "g2": 4, "g3": 4, "g4": 4}, r"params.c1 must be a positive"),
        ({"c1": True, "g1": 4, "g2": 4, "g3": 4, "g4": 4}, r"params.c1 must be a positive"),
    ],
)
def test_resnet18_invalid_params(params: dict[str, object], pattern: str) -> None:
    with pytest.raises(ModelConfigError, match=pattern):
        build_model("resnet18", params, 10)
