"""Tests of the peak-memory estimate against the CPU allocator's measured peak.

The measured peak is the maximum of live tensor bytes over a training step, taken from
the allocation and free events of ``torch.profiler`` (``profile_memory=True``) through
``torch.profiler._memory_profiler.MemoryProfile``, a private torch API (2.14). It is
the CPU counterpart of ``torch.cuda.max_memory_allocated``. Tensors alive before the
step (weights, gradients, momentum, the batch) appear as ``PREEXISTING`` entries.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.profiler import ProfilerActivity, profile
from torch.profiler._memory_profiler import Action, MemoryProfile

from jobs.index import build_index, save_index
from jobs.memory import estimate_peak_memory_gb, memory_breakdown
from jobs.models import build_model
from launch.memory import estimate_peak_memory_gb as estimate_for_spec

TOLERANCE = 0.35
CASES: list[tuple[str, dict[str, Any], int, int, str]] = [
    ("resnet18", {"c1": 16, "g1": 16, "g2": 32, "g3": 64, "g4": 128}, 32, 64, "off"),
    ("resnet18", {"c1": 64, "g1": 64, "g2": 64, "g3": 128, "g4": 256}, 8, 64, "off"),
    (
        "resnet18",
        {"c1": 16, "g1": 16, "g2": 32, "g3": 64, "g4": 128, "stem": "basic"},
        32,
        64,
        "bf16",
    ),
    ("bl_resnext50", {"phi": 0.25, "cardinality": 4, "base_width": 8}, 16, 64, "off"),
]


def _measured_peak_bytes(
    name: str, params: dict[str, Any], batch: int, size: int, amp: str
) -> int:
    """Return the peak live tensor bytes of the second SGD step with momentum."""
    torch.manual_seed(0)
    model = build_model(name, params, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images, targets = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))

    def step() -> None:
        autocast = (
            torch.autocast("cpu", dtype=torch.bfloat16)
            if amp == "bf16"
            else contextlib.nullcontext()
        )
        with autocast:
            loss = torch.nn.functional.cross_entropy(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    with profile(
        activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True
    ) as prof:
        step()
    live = peak = 0
    for _, action, _, nbytes in MemoryProfile(prof.profiler.kineto_results).timeline:
        if action in (Action.PREEXISTING, Action.CREATE):
            live += nbytes
        elif action == Action.DESTROY:
            live -= nbytes
        peak = max(peak, live)
    return peak


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[4]}-b{c[2]}")
def test_estimate_within_tolerance_of_cpu_peak(
    case: tuple[str, dict[str, Any], int, int, str],
) -> None:
    name, params, batch, size, amp = case
    measured = _measured_peak_bytes(name, params, batch, size, amp)
    estimate = estimate_peak_memory_gb(name, params, 10, batch, size, amp, ddp=False) * 2**30
    assert measured > 10 * 2**20  # large enough that allocator noise does not matter
    assert abs(estimate - measured) <= TOLERANCE * measured, (estimate, measured)


def test_estimate_grows_with_batch_and_shrinks_with_amp() -> None:
    params = {"c1": 8, "g1": 8, "g2": 16, "g3": 32, "g4": 64}
    small = memory_breakdown("resnet18", params, 10, 16, 32)
    large = memory_breakdown("resnet18", params, 10, 64, 32)
    half = memory_breakdown("resnet18", params, 10, 64, 32, amp="auto")
    assert large["activations"] == pytest.approx(4 * small["activations"], rel=0.01)
    assert large["parameter_states"] == small["parameter_states"]
    assert half["activations"] < 0.6 * large["activations"]
    assert half["half_weights"] > 0


def test_estimate_counts_ddp_buckets() -> None:
    params = {"c1": 8, "g1": 8, "g2": 16, "g3": 32, "g4": 64}
    with_ddp = memory_breakdown("resnet18", params, 10, 4, 32, ddp=True)
    without = memory_breakdown("resnet18", params, 10, 4, 32, ddp=False)
    assert with_ddp["parameter_states"] == without["parameter_states"] * 4 // 3


def test_estimate_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="amp must be"):
        estimate_peak_memory_gb(
            "resnet18", {"c1": 4, "g1": 4, "g2": 4, "g3": 4, "g4": 4}, 10, 4, 32, "fp8"
        )
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        estimate_peak_memory_gb(
            "resnet18", {"c1": 4, "g1": 4, "g2": 4, "g3": 4, "g4": 4}, 10, 0, 32
        )


def _spec(root: Path, **data: Any) -> dict[str, Any]:
    return {
        "model": {"name": "resnet18", "params": {"c1": 4, "g1": 4, "g2": 8, "g3": 8, "g4": 8}},
        "data": {"root": str(root), "image_size": 32, **data},
        "train": {"batch_size_per_rank": 16, "amp": "bf16"},
    }


def test_launch_wrapper_reads_spec(tmp_path: Path) -> None:
    root = tmp_path / "images"
    for name in ("a", "b", "c"):
        (root / name).mkdir(parents=True)
        (root / name / "x.png").write_bytes(b"")
    spec = _spec(root)
    expected = estimate_peak_memory_gb("resnet18", spec["model"]["params"], 3, 16, 32, "bf16")
    assert estimate_for_spec(json.loads(json.dumps(spec))) == pytest.approx(expected)
    save_index(build_index(root), tmp_path / "index.npz")
    indexed = _spec(tmp_path / "missing", index_path=str(tmp_path / "index.npz"))
    assert estimate_for_spec(indexed) == pytest.approx(expected)
