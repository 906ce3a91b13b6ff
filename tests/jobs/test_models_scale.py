"""Tests of the basic-block stem, Big-Little ResNeXt-50 and the MAC counts."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from jobs.flops import count_macs, model_complexity
from jobs.models import ModelConfigError, build_model, count_parameters

TINY_RESNET = {"c1": 3, "g1": 4, "g2": 5, "g3": 6, "g4": 7}
BL_CONFIGS: list[dict[str, Any]] = [
    {"alpha": 2, "beta": 4, "phi": 0.125, "cardinality": 2, "base_width": 8},
    {"alpha": 1, "beta": 1, "phi": 0.0625, "cardinality": 1, "base_width": 16},
    {"alpha": 4, "beta": 2, "phi": 0.25, "cardinality": 4, "base_width": 4},
    {"alpha": 3, "beta": 8, "phi": 0.1, "cardinality": 3, "base_width": 6},
]


def _bn(c: int) -> int:
    return 2 * c


def _conv_bn(c_in: int, c_out: int, kernel: int, groups: int = 1) -> int:
    return kernel * kernel * c_in // groups * c_out + _bn(c_out)


def _bottleneck(c_in: int, planes: int, base_width: int, cardinality: int) -> int:
    """A ResNeXt bottleneck of output 4 * planes, with a 1x1 shortcut if widths differ."""
    width = max(1, planes * base_width // 64) * cardinality
    out = 4 * planes
    shortcut = _conv_bn(c_in, out, 1) if c_in != out else 0
    return (
        _conv_bn(c_in, width, 1)
        + _conv_bn(width, width, 3, cardinality)
        + _conv_bn(width, out, 1)
        + shortcut
    )


def _bl_resnext50_formula(cfg: dict[str, Any], num_classes: int) -> int:
    """Parameters of bL-ResNeXt-50 counted from the architecture's description."""
    alpha, beta, d, card = cfg["alpha"], cfg["beta"], cfg["base_width"], cfg["cardinality"]
    planes = [max(1, round(64 * 2**i * cfg["phi"])) for i in range(4)]
    c = planes[0]
    small = max(1, c // alpha)
    total = _conv_bn(3, c, 7) + _conv_bn(c, c, 3)
    total += _conv_bn(c, small, 3) + _conv_bn(small, small, 3) + _conv_bn(small, c, 1)
    total += _conv_bn(c, c, 1)
    c_in = c
    for p, depth in zip(planes[:3], (3, 4, 6), strict=True):
        out, lp = 4 * p, max(1, p // alpha)
        big = _bottleneck(c_in, p, d, card) + (depth - 2) * _bottleneck(out, p, d, card)
        n_little = max(1, depth // beta - 1)
        little = _bottleneck(c_in, lp, d, card) + (n_little - 1) * _bottleneck(4 * lp, lp, d, card)
        total += big + little + _conv_bn(4 * lp, out, 1) + _bottleneck(out, p, d, card)
        c_in = out
    total += _bottleneck(c_in, planes[3], d, card) + 2 * _bottleneck(
        4 * planes[3], planes[3], d, card
    )
    return total + 4 * planes[3] * num_classes + num_classes


@pytest.mark.parametrize("size", [8, 32])
def test_resnet18_basic_stem_forward_backward(size: int) -> None:
    model = build_model("resnet18", {**TINY_RESNET, "stem": "basic"}, num_classes=10)
    logits = model(torch.randn(3, 3, size, size))
    assert logits.shape == (3, 10)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_resnet18_basic_stem_parameter_count() -> None:
    plain = count_parameters(build_model("resnet18", TINY_RESNET, 10))
    basic = count_parameters(build_model("resnet18", {**TINY_RESNET, "stem": "basic"}, 10))
    # The stem's conv (3 -> 3) becomes two 3x3 convs (3 -> 3, 3 -> 3) plus a 1x1 shortcut.
    assert plain == 4829
    assert basic - plain == (81 + 6) + (9 + 6)


def test_resnet18_basic_stem_strides() -> None:
    model = build_model("resnet18", {**TINY_RESNET, "stem": "basic"}, 10)
    convs = [m for m in model.stem.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride for c in convs] == [(2, 2), (1, 1), (2, 2)]
    assert [c.kernel_size for c in convs] == [(3, 3), (3, 3), (1, 1)]


def test_resnet18_invalid_stem() -> None:
    with pytest.raises(ModelConfigError, match="params.stem must be 'conv' or 'basic'"):
        build_model("resnet18", {**TINY_RESNET, "stem": "deep"}, 10)


@pytest.mark.parametrize("cfg", BL_CONFIGS)
@pytest.mark.parametrize("size", [32, 63])
def test_bl_resnext_forward_backward(cfg: dict[str, Any], size: int) -> None:
    torch.manual_seed(0)
    model = build_model("bl_resnext50", cfg, num_classes=7)
    logits = model(torch.randn(2, 3, size, size))
    assert logits.shape == (2, 7)
    logits.sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("cfg", BL_CONFIGS)
def test_bl_resnext_parameter_count_matches_formula(cfg: dict[str, Any]) -> None:
    model = build_model("bl_resnext50", cfg, num_classes=7)
    assert count_parameters(model) == _bl_resnext50_formula(cfg, 7)


def test_bl_resnext_full_size_counts() -> None:
    # The default is bL-ResNeXt-50 32x4d with alpha 2 and beta 4 (26.2 M parameters
    # and about 3.0 G multiply-adds at 224 pixels).
    cfg = {"alpha": 2, "beta": 4, "phi": 1.0, "cardinality": 32, "base_width": 4}
    counts = model_complexity("bl_resnext50", {}, 1000)
    assert counts["num_params"] == _bl_resnext50_formula(cfg, 1000) == 26_167_976
    assert 2.9e9 < counts["macs"]["224"] < 3.1e9
    assert counts["macs"]["256"] > counts["macs"]["224"]


def test_bl_resnext_phi_two_has_4096_features() -> None:
    with torch.device("meta"):
        model = build_model("bl_resnext50", {"phi": 2.0, "cardinality": 18, "base_width": 8}, 5)
    assert model.fc.in_features == 4096


def test_bl_resnext_branch_resolutions() -> None:
    model = build_model("bl_resnext50", BL_CONFIGS[0], 10).eval()
    stage = model.stages[0]
    x = model.stem(torch.randn(1, 3, 64, 64))
    assert x.shape[-1] == 16
    assert stage.big(x).shape[-1] == 8  # big branch at half resolution
    assert stage.little(x).shape[-1] == 16  # little branch at full resolution
    assert stage(x).shape[-1] == 8  # the fusion block strides


@pytest.mark.parametrize(
    ("params", "pattern"),
    [
        ({"gamma": 1}, r"unknown params \['gamma'\]"),
        ({"alpha": 0}, r"params.alpha must be a positive integer"),
        ({"beta": 1.5}, r"params.beta must be a positive integer"),
        ({"phi": 0}, r"params.phi must be a positive number"),
        ({"phi": "2"}, r"params.phi must be a positive number"),
    ],
)
def test_bl_resnext_invalid_params(params: dict[str, Any], pattern: str) -> None:
    with pytest.raises(ModelConfigError, match=pattern):
        build_model("bl_resnext50", params, 10)


def test_count_macs_tiny_resnet_by_hand() -> None:
    model = build_model("resnet18", TINY_RESNET, 10)
    # 8x8 input. Stem 4x4x3 outputs of 27 MACs: 1296. Stage 1 (4x4): 1728 + 2304 + 192
    # + 2 * 2304 = 8832. Stage 2 (2x2): 720 + 900 + 80 + 1800 = 3500. Stage 3 (1x1):
    # 270 + 324 + 30 + 648 = 1272. Stage 4 (1x1): 378 + 441 + 42 + 882 = 1743. Head: 70.
    assert count_macs(model, 8) == 16713
    assert model.training  # the mode is restored


@pytest.mark.parametrize("name_cfg", [("resnet18", TINY_RESNET), ("bl_resnext50", BL_CONFIGS[2])])
def test_count_macs_matches_flop_counter(name_cfg: tuple[str, dict[str, Any]]) -> None:
    name, cfg = name_cfg
    model = build_model(name, cfg, 10).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 48, 48))
    assert count_macs(model, 48) * 2 == counter.get_total_flops()


def test_model_complexity_reports_224_and_256() -> None:
    counts = model_complexity("resnet18", {**TINY_RESNET, "stem": "basic"}, 10)
    assert set(counts["macs"]) == {"224", "256"}
    model = build_model("resnet18", {**TINY_RESNET, "stem": "basic"}, 10)
    assert counts["num_params"] == count_parameters(model)
    assert counts["macs"]["224"] == count_macs(model, 224)
