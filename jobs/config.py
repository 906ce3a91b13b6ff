"""The trial spec (``spec.json``) read into typed, validated dataclasses.

The spec format is described in ``docs/architecture.md``. Every section rejects unknown
keys and values of the wrong type or range with a :class:`SpecError` that names the key,
the value and the allowed range, before any process group is formed.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SPEC_FORMAT = 1
AUGMENTS = ("small", "imagenet")
AMP_MODES = ("off", "fp16", "bf16", "auto")
LR_SCALINGS = ("none", "linear")


class SpecError(ValueError):
    """The trial spec is unreadable, or a key is missing, unknown or invalid."""


@dataclass(frozen=True)
class DataConfig:
    """The ``data`` section: image folder, image size in pixels and split settings.

    ``augment`` is ``"small"`` (resize, padded random crop) or ``"imagenet"``
    (random-resized crop and flip; resize and center crop for validation).
    ``index_path`` names a file index written by :mod:`jobs.index`; without it the
    image folder is scanned.
    """

    root: str
    image_size: int = 32
    split_seed: int = 0
    val_fraction: float = 0.5
    train_fraction: float = 1.0
    num_workers: int = 0
    hflip: bool = False
    augment: str = "small"
    index_path: str | None = None


@dataclass(frozen=True)
class TrainConfig:
    """The ``train`` section: optimizer, schedule, seed and CPU threads per rank.

    ``amp`` is ``"off"``, ``"fp16"``, ``"bf16"`` or ``"auto"`` (see
    :func:`jobs.train.resolve_amp`). ``lr_scaling="linear"`` multiplies ``lr`` by the
    global batch over 256. ``warmup_epochs`` ramps the learning rate up linearly.
    ``eval_every`` validates every that many epochs (0: only at the end).
    ``init_checkpoint`` is a checkpoint whose model weights initialize the network.
    """

    epochs: int = 4
    batch_size_per_rank: int = 32
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_power: float = 2.0
    seed: int = 0
    num_threads: int | None = None
    log_interval: int = 20
    amp: str = "auto"
    lr_scaling: str = "none"
    warmup_epochs: float = 0.0
    eval_every: int = 0
    init_checkpoint: str | None = None


@dataclass(frozen=True)
class DistributedConfig:
    """The ``distributed`` section: rendezvous method and its timeout in seconds."""

    rendezvous: str = "file"
    timeout_s: float = 300.0


@dataclass(frozen=True)
class TrialConfig:
    """A whole trial spec. ``spec`` is the original dict, copied into the result file."""

    trial_id: str
    trial_dir: Path
    result_path: Path
    model_name: str
    model_params: dict[str, Any]
    data: DataConfig
    train: TrainConfig
    distributed: DistributedConfig
    spec: dict[str, Any] = field(repr=False)

    @classmethod
    def from_spec(cls, spec: dict[str, Any], source: str = "spec") -> TrialConfig:
        """Validate a spec dict. ``source`` names the file in error messages."""
        if not isinstance(spec, dict):
            raise SpecError(f"{source}: the spec must be a JSON object")
        known = {
            "format",
            "trial_id",
            "trial_dir",
            "result_path",
            "model",
            "data",
            "train",
            "distributed",
        }
        _reject_unknown(source, "", spec, known)
        if spec.get("format") != SPEC_FORMAT:
            raise SpecError(
                f"{source}: key 'format' must be {SPEC_FORMAT}, got "
                f"{spec.get('format')!r}; the spec was written by another version"
            )
        for key in ("trial_id", "trial_dir"):
            if not isinstance(spec.get(key), str) or not spec[key]:
                raise SpecError(f"{source}: key '{key}' must be a non-empty string")
        trial_dir = Path(spec["trial_dir"])
        result_path = spec.get("result_path", str(trial_dir / "result.json"))
        if not isinstance(result_path, str):
            raise SpecError(f"{source}: key 'result_path' must be a string")

        model = spec.get("model")
        if not isinstance(model, dict) or not isinstance(model.get("name"), str):
            raise SpecError(f"{source}: key 'model' must be an object with a string 'name'")
        _reject_unknown(source, "model.", model, {"name", "params"})
        params = model.get("params", {})
        if not isinstance(params, dict):
            raise SpecError(f"{source}: key 'model.params' must be an object")

        data = _section(source, spec, "data", DataConfig)
        train = _section(source, spec, "train", TrainConfig)
        distributed = _section(source, spec, "distributed", DistributedConfig)
        _check_ranges(source, data, train, distributed)
        return cls(
            spec["trial_id"],
            trial_dir,
            Path(result_path),
            model["name"],
            params,
            data,
            train,
            distributed,
            spec,
        )


def load_spec(path: str | Path) -> TrialConfig:
    """Read and validate a ``spec.json`` file.

    Raises
    ------
    SpecError
        If the file is missing, is not JSON or fails validation.
    """
    try:
        spec = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SpecError(f"cannot read trial spec {path}: {exc}") from exc
    return TrialConfig.from_spec(spec, source=str(path))


def _reject_unknown(source: str, prefix: str, values: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(values) - known)
    if unknown:
        raise SpecError(
            f"{source}: unknown key(s) {[prefix + k for k in unknown]}. Valid keys "
            f"are {sorted(prefix + k for k in known)}"
        )


def _section(source: str, spec: dict[str, Any], name: str, cls: type) -> Any:
    """Build the dataclass ``cls`` from ``spec[name]``, checking each value's type."""
    values = spec.get(name, {})
    if not isinstance(values, dict):
        raise SpecError(f"{source}: key '{name}' must be an object")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _reject_unknown(source, f"{name}.", values, set(fields))
    kwargs = {}
    for key, f in fields.items():
        if key not in values:
            if f.default is dataclasses.MISSING:
                raise SpecError(f"{source}: key '{name}.{key}' is missing")
            continue
        kwargs[key] = _typed(source, f"{name}.{key}", values[key], hints[key])
    return cls(**kwargs)


def _typed(source: str, key: str, value: Any, hint: Any) -> Any:
    """Return ``value`` if it matches ``hint`` (ints accepted for floats), else raise."""
    optional = isinstance(hint, types.UnionType) and type(None) in hint.__args__
    if optional and value is None:
        return None
    base = next(a for a in hint.__args__ if a is not type(None)) if optional else hint
    if base is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if base is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if base in (str, bool) and isinstance(value, base):
        return value
    raise SpecError(
        f"{source}: key '{key}' must be of type {base.__name__}"
        f"{' or null' if optional else ''}, got {value!r}"
    )


def _require(source: str, ok: bool, key: str, rule: str, value: Any) -> None:
    if not ok:
        raise SpecError(f"{source}: key '{key}' must be {rule}, got {value!r}")


def _check_ranges(
    source: str, data: DataConfig, train: TrainConfig, distributed: DistributedConfig
) -> None:
    """Check value ranges that the types alone do not capture."""
    checks = [
        (data.image_size >= 1, "data.image_size", ">= 1", data.image_size),
        (0 <= data.val_fraction < 1, "data.val_fraction", "in [0, 1)", data.val_fraction),
        (0 < data.train_fraction <= 1, "data.train_fraction", "in (0, 1]", data.train_fraction),
        (data.num_workers >= 0, "data.num_workers", ">= 0", data.num_workers),
        (train.epochs >= 1, "train.epochs", ">= 1", train.epochs),
        (
            train.batch_size_per_rank >= 1,
            "train.batch_size_per_rank",
            ">= 1",
            train.batch_size_per_rank,
        ),
        (train.lr > 0, "train.lr", "> 0", train.lr),
        (0 <= train.momentum < 1, "train.momentum", "in [0, 1)", train.momentum),
        (train.weight_decay >= 0, "train.weight_decay", ">= 0", train.weight_decay),
        (train.lr_power >= 0, "train.lr_power", ">= 0", train.lr_power),
        (
            train.num_threads is None or train.num_threads >= 1,
            "train.num_threads",
            ">= 1 or null",
            train.num_threads,
        ),
        (train.log_interval >= 1, "train.log_interval", ">= 1", train.log_interval),
        (data.augment in AUGMENTS, "data.augment", f"one of {AUGMENTS}", data.augment),
        (train.amp in AMP_MODES, "train.amp", f"one of {AMP_MODES}", train.amp),
        (
            train.lr_scaling in LR_SCALINGS,
            "train.lr_scaling",
            f"one of {LR_SCALINGS}",
            train.lr_scaling,
        ),
        (
            0 <= train.warmup_epochs < train.epochs,
            "train.warmup_epochs",
            f">= 0 and < train.epochs ({train.epochs})",
            train.warmup_epochs,
        ),
        (train.eval_every >= 0, "train.eval_every", ">= 0 (0: only at the end)", train.eval_every),
        (
            distributed.rendezvous in ("file", "tcp"),
            "distributed.rendezvous",
            "'file' or 'tcp'",
            distributed.rendezvous,
        ),
        (distributed.timeout_s > 0, "distributed.timeout_s", "> 0", distributed.timeout_s),
    ]
    for ok, key, rule, value in checks:
        _require(source, ok, key, rule, value)
