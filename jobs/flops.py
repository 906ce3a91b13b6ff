"""Parameter counts and multiply-adds (MACs) of built models, counted with forward hooks.

Only convolutions and linear layers are counted: a convolution producing ``H x W x
C_out`` values costs ``H * W * C_out * (C_in / groups) * k_h * k_w`` multiply-adds and a
linear layer ``in_features * out_features`` per image. Batch norm, activations,
additions, pooling and upsampling are left out, as in the usual GMAC figures of
ResNets. One MAC is two FLOPs in ``torch.utils.flop_counter.FlopCounterMode``'s count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from jobs.models import build_model, count_parameters

REPORT_IMAGE_SIZES = (224, 256)


def count_macs(model: nn.Module, image_size: int, in_channels: int = 3) -> int:
    """Return the multiply-adds of one forward pass of one ``image_size`` square image.

    The model runs once in eval mode on its own device (a model on the ``meta`` device
    costs no compute) and is put back in its previous mode.

    Parameters
    ----------
    model : torch.nn.Module
        Any model built from ``Conv2d`` and ``Linear`` layers.
    image_size : int
        Side length of the input in pixels.
    in_channels : int, default 3
        Input channels.
    """
    total = 0

    def conv_hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(module, nn.Conv2d)
        kh, kw = module.kernel_size
        per_output = module.in_channels // module.groups * kh * kw
        total += output[0].numel() * per_output

    def linear_hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(module, nn.Linear)
        total += output[0].numel() * module.in_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    device = next(model.parameters()).device
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, in_channels, image_size, image_size, device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total


def model_complexity(
    name: str,
    params: Mapping[str, Any],
    num_classes: int,
    image_sizes: Iterable[int] = REPORT_IMAGE_SIZES,
) -> dict[str, Any]:
    """Build a registered model on the ``meta`` device and count its size and cost.

    Returns
    -------
    dict
        ``{"num_params": int, "macs": {"224": int, "256": int, ...}}`` with one MAC
        count per image size (string keys, so the dict is JSON-ready).

    Raises
    ------
    jobs.models.ModelConfigError
        If the name or the parameters are invalid.
    """
    with torch.device("meta"):
        model = build_model(name, params, num_classes)
    macs = {str(size): count_macs(model, size) for size in image_sizes}
    return {"num_params": count_parameters(model), "macs": macs}
