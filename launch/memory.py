"""Peak training memory of a trial spec, for the controller's feasibility check.

A thin wrapper around :func:`jobs.memory.estimate_peak_memory_gb` that takes the trial
spec dict (``docs/architecture.md``). The number of classes comes from the file index
(``data.index_path``) if the spec names one, else from the class folders of
``data.root``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from jobs import memory


def _num_classes(data: dict[str, Any]) -> int:
    """Count classes from the index (reading only its class offsets) or ``data.root``."""
    if data.get("index_path"):
        with np.load(data["index_path"], allow_pickle=False) as index:
            return len(index["class_offsets"]) - 1
    with os.scandir(data["root"]) as entries:
        return sum(1 for entry in entries if entry.is_dir(follow_symlinks=True))


def estimate_peak_memory_gb(spec: dict[str, Any], num_classes: int | None = None) -> float:
    """Estimate the peak GPU memory per rank of training ``spec``, in GiB.

    Parameters
    ----------
    spec : dict
        Trial spec; uses ``model``, ``data.image_size``, ``data.root`` or
        ``data.index_path``, ``train.batch_size_per_rank`` and ``train.amp``, with the
        defaults of ``jobs.config``.
    num_classes : int, optional
        Number of classes, if known; saves reading the index or listing ``data.root``.

    Returns
    -------
    float
        Estimated ``torch.cuda.max_memory_allocated`` in GiB. The CUDA context (several
        hundred MB per process) is not included.
    """
    data, train = spec.get("data", {}), spec.get("train", {})
    if num_classes is None:
        num_classes = _num_classes(data)
    return memory.estimate_peak_memory_gb(
        spec["model"]["name"],
        spec["model"].get("params", {}),
        num_classes,
        train.get("batch_size_per_rank", 32),
        data.get("image_size", 32),
        train.get("amp", "auto"),
    )
