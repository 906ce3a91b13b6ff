"""Experiment files: search space, model, data, training recipe and search settings.

An experiment YAML has the sections ``name``, ``space``, ``model``, ``data``,
``training``, ``search`` and ``distributed``; see ``examples/digits.yaml``. It is parsed
with the strict loader of :mod:`launch.config`, so every error names file, line and key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launch.config import ConfigError, Section, load_section, parse_section
from orchestrator.design import initial_design
from orchestrator.space import SearchSpace

_DATASETS = ("sklearn-digits", "imagefolder")


@dataclass(frozen=True)
class SearchSettings:
    """When to stop and how far apart proposals must be."""

    seed: int = 0
    epsilon: float = 1.0
    min_distance: float = 0.05
    max_evaluations: int = 30
    max_gpu_hours: float | None = None
    max_wall_hours: float | None = None
    proposal_rule: str = "srbf"
    stop_rule: str = "stall"
    weights: tuple[float, ...] | None = None
    patience: int = 3
    smoothing: float = 0.0
    remeasure_best: bool = False

    def search_arguments(self) -> dict[str, Any]:
        """Return the keyword arguments of :class:`orchestrator.search.SplineSearch`."""
        arguments: dict[str, Any] = {
            "seed": self.seed,
            "epsilon": self.epsilon,
            "min_distance": self.min_distance,
            "max_evaluations": self.max_evaluations,
            "proposal_rule": self.proposal_rule,
            "stop_rule": self.stop_rule,
            "patience": self.patience,
            "smoothing": self.smoothing,
            "remeasure_best": self.remeasure_best,
        }
        if self.weights is not None:
            arguments["weights"] = self.weights
        return arguments


@dataclass(frozen=True)
class Experiment:
    """A parsed experiment file."""

    name: str
    source: str
    text: str
    space: SearchSpace
    model: dict[str, Any]
    data: dict[str, Any]
    training: dict[str, Any]
    distributed: dict[str, Any]
    search: SearchSettings
    extra: dict[str, Any] = field(default_factory=dict)


def _model(section: Section) -> dict[str, Any]:
    section.check_keys(
        {"name": "required, e.g. resnet18", "fixed": "model parameters not searched"},
        required=("name",),
    )
    fixed = section.get_section("fixed", required=False)
    values: dict[str, Any] = {}
    if fixed is not None:
        for key in fixed.keys():
            values[key] = fixed.scalar_value(key)
    return {"name": section.get_str("name", required=True), "fixed": values}


def _data(section: Section, base: Path) -> dict[str, Any]:
    section.check_keys(
        {
            "dataset": "sklearn-digits or imagefolder",
            "root": "image folder; default data/digits for sklearn-digits",
            "image_size": "default 32",
            "split_seed": "default 0",
            "val_fraction": "default 0.5",
            "train_fraction": "default 1.0",
            "num_workers": "default 0",
        },
        required=("dataset",),
    )
    dataset = section.get_str("dataset", required=True)
    if dataset not in _DATASETS:
        raise section.error(
            "dataset", f"unknown dataset {dataset!r}; use one of {', '.join(_DATASETS)}"
        )
    root_text = section.get_str("root", "data/digits" if dataset == "sklearn-digits" else None)
    if root_text is None:
        raise section.error("root", "missing required key for dataset imagefolder")
    root = Path(root_text).expanduser()
    if not root.is_absolute():
        root = (base / root).resolve()
    data = {
        "dataset": dataset,
        "root": str(root),
        "image_size": section.get_int("image_size", 32),
        "split_seed": section.get_int("split_seed", 0),
        "val_fraction": section.get_float("val_fraction", 0.5),
        "train_fraction": section.get_float("train_fraction", 1.0),
        "num_workers": section.get_int("num_workers", 0),
    }
    if data["image_size"] < 8:
        raise section.error("image_size", f"must be at least 8, got {data['image_size']}")
    for key in ("val_fraction", "train_fraction"):
        if not 0.0 < data[key] <= 1.0:
            raise section.error(key, f"must be in (0, 1], got {data[key]}")
    return data


def _training(section: Section | None) -> dict[str, Any]:
    defaults = {
        "epochs": 4,
        "batch_size_per_rank": 32,
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "lr_power": 2.0,
        "seed": 0,
    }
    if section is None:
        return dict(defaults)
    section.check_keys({key: f"default {value}" for key, value in defaults.items()})
    values: dict[str, Any] = {}
    for key, default in defaults.items():
        getter = section.get_int if isinstance(default, int) else section.get_float
        values[key] = getter(key, default)
    for key in ("epochs", "batch_size_per_rank", "lr"):
        if values[key] <= 0:
            raise section.error(key, f"must be positive, got {values[key]}")
    return values


def _distributed(section: Section | None) -> dict[str, Any]:
    if section is None:
        return {"rendezvous": "file", "timeout_s": 300}
    section.check_keys({"rendezvous": "file (default) or tcp", "timeout_s": "default 300"})
    rendezvous = section.get_str("rendezvous", "file")
    if rendezvous not in ("file", "tcp"):
        raise section.error("rendezvous", f"must be file or tcp, got {rendezvous!r}")
    timeout = section.get_float("timeout_s", 300.0)
    if timeout <= 0:
        raise section.error("timeout_s", f"must be positive, got {timeout}")
    return {"rendezvous": rendezvous, "timeout_s": timeout}


def _weights(section: Section) -> tuple[float, ...] | None:
    nodes = section.get_list("weights")
    if nodes is None:
        return None
    if not nodes:
        raise section.error("weights", "must list at least one weight in [0, 1]")
    values = []
    for node in nodes:
        try:
            value = float(node.value)
        except (TypeError, ValueError):
            value = math.nan
        if node.tag == "tag:yaml.org,2002:str" or not 0.0 <= value <= 1.0:
            raise section.error(
                "weights", f"each weight must be a number in [0, 1], got {node.value!r}"
            )
        values.append(value)
    return tuple(values)


def _search(section: Section | None) -> SearchSettings:
    if section is None:
        return SearchSettings()
    section.check_keys(
        {
            "seed": "default 0",
            "epsilon": "default 1.0",
            "min_distance": "default 0.05",
            "max_evaluations": "default 30",
            "max_gpu_hours": "default none",
            "max_wall_hours": "default none",
            "proposal_rule": "srbf (default) or argmax",
            "stop_rule": "stall (default), epsilon or none",
            "weights": "srbf weight cycle, default 1.0, 0.95, 1.0, 0.9",
            "patience": "default 3",
            "smoothing": "default 0.0",
            "remeasure_best": "default false",
        }
    )
    settings = SearchSettings(
        seed=section.get_int("seed", 0),
        epsilon=section.get_float("epsilon", 1.0),
        min_distance=section.get_float("min_distance", 0.05),
        max_evaluations=section.get_int("max_evaluations", 30),
        max_gpu_hours=section.get_float("max_gpu_hours", None),
        max_wall_hours=section.get_float("max_wall_hours", None),
        proposal_rule=section.get_str("proposal_rule", "srbf"),
        stop_rule=section.get_str("stop_rule", "stall"),
        weights=_weights(section),
        patience=section.get_int("patience", 3),
        smoothing=section.get_float("smoothing", 0.0),
        remeasure_best=section.get_bool("remeasure_best", False),
    )
    choices = {"proposal_rule": ("srbf", "argmax"), "stop_rule": ("stall", "epsilon", "none")}
    for key, allowed in choices.items():
        if getattr(settings, key) not in allowed:
            raise section.error(
                key, f"{getattr(settings, key)!r} is not one of {', '.join(allowed)}"
            )
    if settings.patience < 1:
        raise section.error("patience", f"must be at least 1, got {settings.patience}")
    if settings.smoothing < 0:
        raise section.error("smoothing", f"must be 0 or more, got {settings.smoothing}")
    for key in ("epsilon", "max_evaluations", "max_gpu_hours", "max_wall_hours"):
        value = getattr(settings, key)
        if value is not None and value <= 0:
            raise section.error(key, f"must be positive, got {value}")
    if not 0.0 <= settings.min_distance < 1.0:
        raise section.error("min_distance", f"must be in [0, 1), got {settings.min_distance}")
    return settings


def parse_experiment(root: Section, text: str, base: Path) -> Experiment:
    """Validate an experiment document; relative data paths resolve against ``base``."""
    root.check_keys(
        ["name", "space", "model", "data", "training", "search", "distributed"],
        required=("name", "space", "model", "data"),
    )
    space = SearchSpace.from_section(root.get_section("space"))
    experiment = Experiment(
        name=root.get_str("name", required=True),
        source=root.source,
        text=text,
        space=space,
        model=_model(root.get_section("model")),
        data=_data(root.get_section("data"), base),
        training=_training(root.get_section("training", required=False)),
        distributed=_distributed(root.get_section("distributed", required=False)),
        search=_search(root.get_section("search", required=False)),
    )
    if not experiment.name.replace("-", "").replace("_", "").isalnum():
        raise root.error("name", f"{experiment.name!r} may contain only letters, digits, - and _")
    design_size = len(initial_design(space)) * len(space.combinations())
    if experiment.search.max_evaluations < design_size:
        raise root.error(
            "search",
            f"max_evaluations {experiment.search.max_evaluations} is smaller than the "
            f"{design_size} points of the initial design; raise it to at least {design_size}",
        )
    return experiment


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment file."""
    path = Path(path)
    section = load_section(path)
    return parse_experiment(section, path.read_text(encoding="utf-8"), path.resolve().parent)


def experiment_from_text(text: str, source: str, base: Path) -> Experiment:
    """Parse the copy of the experiment file stored in an experiment directory."""
    return parse_experiment(parse_section(text, source), text, base)


__all__ = [
    "ConfigError",
    "Experiment",
    "SearchSettings",
    "load_experiment",
    "experiment_from_text",
]
