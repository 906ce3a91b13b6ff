"""Tests of trial-spec validation."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from jobs.config import SpecError, TrialConfig, load_spec

SPEC: dict[str, Any] = {
    "format": 1,
    "trial_id": "t0003",
    "trial_dir": "/exp/trials/t0003",
    "result_path": "/exp/trials/t0003/result.json",
    "model": {"name": "resnet18", "params": {"c1": 16, "g1": 24, "g2": 48, "g3": 96, "g4": 128}},
    "data": {
        "root": "/data/digits",
        "image_size": 32,
        "split_seed": 0,
        "val_fraction": 0.5,
        "train_fraction": 1.0,
        "num_workers": 0,
    },
    "train": {
        "epochs": 4,
        "batch_size_per_rank": 32,
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "lr_power": 2.0,
        "seed": 0,
    },
    "distributed": {"rendezvous": "file", "timeout_s": 300},
}


def _with(path: str, value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(SPEC)
    *parents, key = path.split(".")
    node = spec
    for parent in parents:
        node = node[parent]
    node[key] = value
    return spec


def test_spec_documented_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(SPEC))
    config = load_spec(path)
    assert config.trial_id == "t0003"
    assert config.train.lr == 0.1
    assert config.train.num_threads is None
    assert config.distributed.timeout_s == 300.0
    assert config.data.image_size == 32
    assert config.model_params["g4"] == 128
    assert config.spec == SPEC


def test_spec_defaults_fill_missing_sections() -> None:
    spec = {k: v for k, v in SPEC.items() if k not in ("train", "distributed", "result_path")}
    config = TrialConfig.from_spec(spec)
    assert config.train.batch_size_per_rank == 32
    assert config.distributed.rendezvous == "file"
    assert config.result_path == Path("/exp/trials/t0003/result.json")


@pytest.mark.parametrize(
    ("path", "value", "pattern"),
    [
        ("format", 2, "'format' must be 1, got 2"),
        ("train.epochs", 0, r"'train.epochs' must be >= 1, got 0"),
        ("train.epochs", "4", r"'train.epochs' must be of type int, got '4'"),
        ("train.lr", True, r"'train.lr' must be of type float, got True"),
        ("train.epoch", 3, r"unknown key\(s\) \['train.epoch'\]"),
        ("data.val_fraction", 1.0, r"'data.val_fraction' must be in \[0, 1\)"),
        ("distributed.rendezvous", "nfs", "'file' or 'tcp', got 'nfs'"),
        ("distributed.timeout_s", -1, "'distributed.timeout_s' must be > 0"),
        ("model.params", [], "'model.params' must be an object"),
        ("trial_id", "", "'trial_id' must be a non-empty string"),
        ("extra", 1, r"unknown key\(s\) \['extra'\]"),
    ],
)
def test_spec_invalid_values(path: str, value: Any, pattern: str) -> None:
    with pytest.raises(SpecError, match=pattern):
        TrialConfig.from_spec(_with(path, value), source="spec.json")


def test_spec_missing_data_root() -> None:
    spec = copy.deepcopy(SPEC)
    del spec["data"]["root"]
    with pytest.raises(SpecError, match="'data.root' is missing"):
        TrialConfig.from_spec(spec)


def test_spec_file_not_json(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text("{not json")
    with pytest.raises(SpecError, match="cannot read trial spec"):
        load_spec(path)
