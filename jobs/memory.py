"""Estimate of the peak GPU memory of training a model, computed without a GPU.

The estimate adds up what a training step of :mod:`jobs.train` keeps alive at its
peak, the end of the forward pass:

- parameter states, 4 bytes per parameter each: weights, gradients of the previous
  step (freed only after the forward pass), SGD momentum, and with DDP the gradient
  buckets, which hold a second copy of the gradients;
- with mixed precision, the half-precision weight copies autocast caches (2 bytes per
  parameter);
- every tensor autograd saves for the backward pass, counted once per storage, plus
  the logits. They are measured by running the forward pass and the loss on the
  ``meta`` device (shapes only, no compute) under
  ``torch.autograd.graph.saved_tensors_hooks``. For mixed precision the model runs in
  bfloat16 there, because CUDA autocast (torch 2.14) runs convolutions in half
  precision and batch norm and ReLU keep their input's dtype;
- a margin of ``WORKSPACE_FRACTION`` of the sum for convolution workspaces, backward
  temporaries and allocator fragmentation.

The result estimates ``torch.cuda.max_memory_allocated``. It leaves out the CUDA context
(typically several hundred MB per process), which a feasibility check has to add.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from jobs.models import build_model, count_parameters

# NOTE: a guessed margin. On the CPU, the estimate with it was 4% below to 11% above the
# allocator's peak for four small models (tests/jobs/test_memory.py). GPU cuDNN
# workspaces and allocator fragmentation were not measured.
WORKSPACE_FRACTION = 0.10
HALF_PRECISION_MODES = ("fp16", "bf16", "auto")


def saved_tensor_bytes(model: nn.Module, images: torch.Tensor, num_classes: int) -> int:
    """Return the bytes autograd saves for backward in one forward pass and the loss.

    Each storage is counted once, and parameters are left out. The logits are added,
    because they stay alive until the loss is computed. Works on any device, including
    ``meta``.
    """
    params = {p.untyped_storage()._cdata for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage._cdata not in params:
            saved[storage._cdata] = storage.nbytes()
        return tensor

    targets = torch.zeros(images.shape[0], dtype=torch.int64, device=images.device)
    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        logits = model(images)
        nn.functional.cross_entropy(logits.float(), targets)
    return sum(saved.values()) + logits.numel() * logits.element_size()


def memory_breakdown(
    model_name: str,
    params: Mapping[str, Any],
    num_classes: int,
    batch_size: int,
    image_size: int,
    amp: str = "off",
    ddp: bool = True,
) -> dict[str, int]:
    """Return the parts of :func:`estimate_peak_memory_gb` in bytes.

    Keys: ``parameter_states``, ``half_weights``, ``activations``, ``workspace`` and
    ``total``. See the module docstring for what each part covers.
    """
    half = amp in HALF_PRECISION_MODES
    dtype = torch.bfloat16 if half else torch.float32
    with torch.device("meta"):
        model = build_model(model_name, params, num_classes).to(dtype)
        images = torch.empty(batch_size, 3, image_size, image_size, dtype=dtype)
    num_params = count_parameters(model)
    states = 4 * num_params * (4 if ddp else 3)
    half_weights = 2 * num_params if half else 0
    activations = saved_tensor_bytes(model, images, num_classes)
    subtotal = states + half_weights + activations
    workspace = round(WORKSPACE_FRACTION * subtotal)
    return {
        "parameter_states": states,
        "half_weights": half_weights,
        "activations": activations,
        "workspace": workspace,
        "total": subtotal + workspace,
    }


def estimate_peak_memory_gb(
    model_name: str,
    params: Mapping[str, Any],
    num_classes: int,
    batch_size: int,
    image_size: int,
    amp: str = "off",
    ddp: bool = True,
) -> float:
    """Estimate the peak memory of one rank's training step, in GiB (2**30 bytes).

    Parameters
    ----------
    model_name, params, num_classes
        The model as in :func:`jobs.models.build_model`.
    batch_size : int
        Images per rank and step.
    image_size : int
        Side length of the training crop in pixels.
    amp : {"off", "fp16", "bf16", "auto"}, default "off"
        The spec's ``train.amp``; ``"auto"`` is counted as half precision, which it
        is on every GPU.
    ddp : bool, default True
        Count DDP's gradient buckets, as :mod:`jobs.train` always trains under DDP.

    Returns
    -------
    float
        The estimated ``torch.cuda.max_memory_allocated`` in GiB, without the CUDA
        context. Measured on CPUs only (see the module docstring).

    Raises
    ------
    jobs.models.ModelConfigError
        If the model name or parameters are invalid.
    ValueError
        If ``amp``, ``batch_size`` or ``image_size`` is invalid.
    """
    if amp not in ("off", *HALF_PRECISION_MODES):
        raise ValueError(f"amp must be 'off', 'fp16', 'bf16' or 'auto', got {amp!r}")
    for key, value in (("batch_size", batch_size), ("image_size", image_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}")
    breakdown = memory_breakdown(model_name, params, num_classes, batch_size, image_size, amp, ddp)
    return breakdown["total"] / 2**30
