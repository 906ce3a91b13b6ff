"""Strict reading of the result files that training jobs write on the shared file system.

A result file is JSON written atomically by global rank 0 (temporary file, fsync,
rename). On GPFS and NFS another node may still see an empty or partial file, or get
ESTALE/ENOENT while the rename propagates, so those cases mean "not ready yet" and are
retried. A file that parses but breaks the schema, or names another trial, is an error.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

RESULT_FORMAT = 1
_STATUSES = ("ok", "diverged")
_TRANSIENT_ERRNOS = (errno.ESTALE, errno.ENOENT, errno.EAGAIN)


class InvalidResultError(ValueError):
    """A result file is complete but violates the schema or belongs to another trial."""


@dataclass(frozen=True)
class TrialResult:
    """The validated content of one result file."""

    trial_id: str
    status: str
    top1: float
    top5: float
    num_val_images: int
    epochs: int
    wall_s: float
    gpu_hours: float
    num_params: int
    world_size: int
    raw: dict[str, Any]

    def metric(self, name: str) -> float:
        """Return the objective ``name`` (a key of the result file) as a float."""
        value = self.raw.get(name)
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise InvalidResultError(
                f"result of trial {self.trial_id} has no finite number for objective {name!r}"
            )
        return float(value)


def _require(data: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    if key not in data:
        raise InvalidResultError(f"{path}: missing key {key!r}")
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise InvalidResultError(f"{path}: key {key!r} has invalid value {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidResultError(f"{path}: key {key!r} is not finite ({value!r})")
    return value


def parse_result(text: str, path: Path, trial_id: str) -> TrialResult | None:
    """Validate a result file's text; return None while it looks partially written."""
    if not text.strip():
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        # A torn or half-visible file: JSON that stops early. Anything else is corrupt.
        if not text.rstrip().endswith("}"):
            return None
        raise InvalidResultError(f"{path}: not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidResultError(f"{path}: expected a JSON object, got {type(data).__name__}")
    version = data.get("format")
    if version != RESULT_FORMAT:
        raise InvalidResultError(f"{path}: unsupported result format {version!r}, expected 1")
    found_id = _require(data, "trial_id", str, path)
    if found_id != trial_id:
        raise InvalidResultError(f"{path}: file names trial {found_id!r}, expected {trial_id!r}")
    status = _require(data, "status", str, path)
    if status not in _STATUSES:
        raise InvalidResultError(f"{path}: status {status!r} is not one of {_STATUSES}")
    number = (int, float)
    result = TrialResult(
        trial_id=found_id,
        status=status,
        top1=float(_require(data, "top1", number, path)),
        top5=float(_require(data, "top5", number, path)),
        num_val_images=_require(data, "num_val_images", int, path),
        epochs=_require(data, "epochs", int, path),
        wall_s=float(_require(data, "wall_s", number, path)),
        gpu_hours=float(_require(data, "gpu_hours", number, path)),
        num_params=_require(data, "num_params", int, path),
        world_size=_require(data, "world_size", int, path),
        raw=data,
    )
    if result.num_val_images <= 0:
        raise InvalidResultError(f"{path}: num_val_images must be positive")
    if not 0.0 <= result.top1 <= 100.0:
        raise InvalidResultError(f"{path}: top1 {result.top1} is outside [0, 100]")
    return result


def read_result(path: Path, trial_id: str, retries: int = 3, retry_delay_s: float = 0.2):
    """Read and validate ``path``; return None if it does not exist or is not complete yet.

    ESTALE, ENOENT and EAGAIN while opening or reading are retried ``retries`` times.
    """
    for attempt in range(retries + 1):
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
            return parse_result(text, path, trial_id)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno not in _TRANSIENT_ERRNOS or attempt == retries:
                raise
            logger.debug("retrying read of %s after %s", path, exc)
            time.sleep(retry_delay_s)
    return None


def list_result_files(results_dir: Path) -> set[str]:
    """List the result file names in ``results_dir`` with one directory read."""
    try:
        with os.scandir(results_dir) as entries:
            return {entry.name for entry in entries if entry.name.endswith(".json")}
    except FileNotFoundError:
        return set()
