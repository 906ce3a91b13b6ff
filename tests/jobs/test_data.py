"""Tests of the per-class train/validation split and the image-folder data sets."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jobs.data import DataConfigError, load_datasets, split_indices


def _samples(sizes: dict[int, int]) -> tuple[list[int], list[str]]:
    """Targets and paths for classes of the given sizes, listed in a scrambled order."""
    items = [(c, f"/data/{c}/{i:03d}.png") for c, n in sizes.items() for i in range(n)]
    order = np.random.default_rng(123).permutation(len(items))
    items = [items[i] for i in order]
    return [c for c, _ in items], [p for _, p in items]


def test_split_is_half_per_class_and_disjoint() -> None:
    sizes = {0: 10, 1: 11, 2: 7, 3: 2}
    targets, paths = _samples(sizes)
    split = split_indices(targets, paths, split_seed=0)
    assert not set(split.train) & set(split.val)
    assert sorted(split.train + split.val) == list(range(len(targets)))
    train_counts = Counter(targets[i] for i in split.train)
    val_counts = Counter(targets[i] for i in split.val)
    for cls, n in sizes.items():
        assert val_counts[cls] == n // 2
        assert train_counts[cls] == n - n // 2


def test_split_is_deterministic_and_seeded() -> None:
    targets, paths = _samples({0: 20, 1: 20})
    first = split_indices(targets, paths, split_seed=5)
    again = split_indices(targets, paths, split_seed=5)
    other = split_indices(targets, paths, split_seed=6)
    assert first == again
    assert first.val != other.val


def test_split_ignores_listing_order() -> None:
    targets, paths = _samples({0: 9, 1: 12})
    split = split_indices(targets, paths, split_seed=1)
    reversed_split = split_indices(targets[::-1], paths[::-1], split_seed=1)
    n = len(targets)
    assert {paths[i] for i in split.val} == {paths[::-1][i] for i in reversed_split.val}
    assert len(reversed_split.val) + len(reversed_split.train) == n


def test_split_class_unchanged_when_class_added() -> None:
    targets, paths = _samples({0: 14, 1: 8})
    base = split_indices(targets, paths, split_seed=3)
    more_targets, more_paths = _samples({0: 14, 1: 8, 2: 5})
    more = split_indices(more_targets, more_paths, split_seed=3)
    val_0 = {paths[i] for i in base.val if targets[i] == 0}
    assert val_0 == {more_paths[i] for i in more.val if more_targets[i] == 0}


def test_split_single_image_class_goes_to_train() -> None:
    targets, paths = _samples({0: 1, 1: 4})
    split = split_indices(targets, paths, split_seed=0)
    single = targets.index(0)
    assert single in split.train
    assert single not in split.val


def test_train_fraction_is_nested_per_class_subset() -> None:
    targets, paths = _samples({0: 40, 1: 30})
    full = split_indices(targets, paths, split_seed=2)
    quarter = split_indices(targets, paths, split_seed=2, train_fraction=0.25)
    half = split_indices(targets, paths, split_seed=2, train_fraction=0.5)
    assert quarter.val == full.val
    assert set(quarter.train) <= set(half.train) <= set(full.train)
    counts = Counter(targets[i] for i in quarter.train)
    assert counts[0] == 5  # round(20 * 0.25)
    assert counts[1] == 4  # round(15 * 0.25)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"val_fraction": 1.0}, r"val_fraction must be in \[0, 1\)"),
        ({"train_fraction": 0.0}, r"train_fraction must be in \(0, 1\]"),
    ],
)
def test_split_invalid_fractions(kwargs: dict[str, float], pattern: str) -> None:
    targets, paths = _samples({0: 4})
    with pytest.raises(DataConfigError, match=pattern):
        split_indices(targets, paths, split_seed=0, **kwargs)


def _write_tree(root: Path, sizes: dict[str, int]) -> None:
    rng = np.random.default_rng(0)
    for name, n in sizes.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 256, size=(6, 5), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def test_load_datasets_rgb_resized_and_split(tmp_path: Path) -> None:
    _write_tree(tmp_path, {"cat": 5, "dog": 4, "owl": 1})
    train_set, val_set, num_classes = load_datasets(tmp_path, image_size=8, split_seed=0)
    assert num_classes == 3
    assert len(val_set) == 2 + 2 + 0
    assert len(train_set) == 3 + 2 + 1
    image, label = train_set[0]
    assert image.shape == (3, 8, 8)
    assert image.dtype == torch.float32
    assert isinstance(label, int)
    val_image, _ = val_set[0]
    assert torch.equal(val_image, val_set[0][0])  # no random augmentation in validation


def test_load_datasets_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataConfigError, match="is not a directory"):
        load_datasets(tmp_path / "nope", image_size=8, split_seed=0)


def test_load_datasets_empty_class(tmp_path: Path) -> None:
    _write_tree(tmp_path, {"a": 2})
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataConfigError, match="not a usable image folder"):
        load_datasets(tmp_path, image_size=8, split_seed=0)
