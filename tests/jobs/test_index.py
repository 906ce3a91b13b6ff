"""Tests of the file index: round trip, split equality with ImageFolder, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets

from jobs.data import DataConfigError, load_datasets, split_indices
from jobs.index import build_index, load_index, main, save_index


def _write_tree(root: Path, sizes: dict[str, int]) -> None:
    """Class folders with PNGs, one non-image file and, in class 'b', a nested folder."""
    rng = np.random.default_rng(0)
    for name, n in sizes.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            folder = root / name / "sub" if name == "b" and i % 3 == 0 else root / name
            folder.mkdir(exist_ok=True)
            pixels = rng.integers(0, 256, size=(6, 5, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"img{(i * 7) % n:03d}.PNG")
        (root / name / "notes.txt").write_text("not an image")


SIZES = {"a": 9, "b": 12, "c": 1, "d": 6}


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    _write_tree(root, SIZES)
    return root


def test_index_round_trip(tree: Path, tmp_path: Path) -> None:
    index = build_index(tree, split_seed=3, workers=2)
    save_index(index, tmp_path / "index.npz")
    loaded = load_index(tmp_path / "index.npz")
    assert loaded.classes == ["a", "b", "c", "d"]
    assert len(loaded) == sum(SIZES.values())
    assert loaded.split_seed == 3
    assert np.array_equal(loaded.labels, index.labels)
    paths = [loaded.relative_path(i) for i in range(len(loaded))]
    assert paths == [index.relative_path(i) for i in range(len(index))]
    assert "b/sub/img000.PNG" in paths
    assert not any(p.endswith(".txt") for p in paths)


def test_index_files_match_image_folder(tree: Path) -> None:
    folder = datasets.ImageFolder(str(tree))
    index = build_index(tree)
    assert index.classes == folder.classes
    from_folder = sorted((path, label) for path, label in folder.samples)
    from_index = [
        (str(tree / index.relative_path(i)), int(index.labels[i])) for i in range(len(index))
    ]
    assert sorted(from_index) == from_folder


@pytest.mark.parametrize(
    ("seed", "val_fraction", "train_fraction"), [(0, 0.5, 1.0), (7, 0.3, 0.5)]
)
def test_index_split_matches_split_indices(
    tree: Path, seed: int, val_fraction: float, train_fraction: float
) -> None:
    folder = datasets.ImageFolder(str(tree))
    paths = [p for p, _ in folder.samples]
    expected = split_indices(folder.targets, paths, seed, val_fraction, train_fraction)
    index = build_index(tree, split_seed=0)  # seed 7 is recomputed at load time
    got = index.split(seed, val_fraction, train_fraction)
    index_paths = [str(tree / index.relative_path(i)) for i in range(len(index))]
    assert {index_paths[i] for i in got.train} == {paths[i] for i in expected.train}
    assert {index_paths[i] for i in got.val} == {paths[i] for i in expected.val}
    assert got.train == sorted(got.train)


def test_index_split_same_on_every_load(tree: Path, tmp_path: Path) -> None:
    save_index(build_index(tree, split_seed=5), tmp_path / "index.npz")
    first = load_index(tmp_path / "index.npz").split(5)
    second = load_index(tmp_path / "index.npz").split(5)
    assert first == second
    single = load_index(tmp_path / "index.npz").classes.index("c")
    assert [i for i in first.val if load_index(tmp_path / "index.npz").labels[i] == single] == []


def test_load_datasets_with_index_equals_scan(tree: Path, tmp_path: Path) -> None:
    save_index(build_index(tree), tmp_path / "index.npz")
    scanned = load_datasets(tree, image_size=8, split_seed=0)
    indexed = load_datasets(tree, image_size=8, split_seed=0, index_path=tmp_path / "index.npz")
    assert scanned[2] == indexed[2] == 4
    for scan_set, index_set in zip(scanned[:2], indexed[:2], strict=True):
        assert len(scan_set) == len(index_set)  # type: ignore[arg-type]
    # Same images and labels in the same order: compare the deterministic validation set.
    for i in range(len(scanned[1])):  # type: ignore[arg-type]
        scan_image, scan_label = scanned[1][i]
        index_image, index_label = indexed[1][i]
        assert scan_label == index_label
        assert torch.equal(scan_image, index_image)


def test_index_of_staged_copy(tree: Path, tmp_path: Path) -> None:
    save_index(build_index(tree), tmp_path / "index.npz")
    staged = tmp_path / "staged"
    tree.rename(staged)
    train_set, _, _ = load_datasets(staged, 8, 0, index_path=tmp_path / "index.npz")
    image, _ = train_set[0]
    assert image.shape == (3, 8, 8)


def test_imagenet_augment_shapes(tree: Path) -> None:
    train_set, val_set, _ = load_datasets(tree, 16, 0, augment="imagenet")
    assert train_set[0][0].shape == (3, 16, 16)
    assert val_set[0][0].shape == (3, 16, 16)


def test_index_empty_class_rejected(tree: Path) -> None:
    (tree / "empty").mkdir()
    (tree / "empty" / "readme.md").write_text("x")
    with pytest.raises(DataConfigError, match="1 class folder.*no image files.*'empty'"):
        build_index(tree)


def test_index_truncated_file_rejected(tree: Path, tmp_path: Path) -> None:
    path = tmp_path / "index.npz"
    save_index(build_index(tree), path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataConfigError, match="unreadable.*Rebuild it"):
        load_index(path)


def test_index_cli(tree: Path, tmp_path: Path) -> None:
    assert main([str(tree), str(tmp_path / "cli.npz"), "--split-seed", "2"]) == 0
    assert load_index(tmp_path / "cli.npz").split_seed == 2
    assert main([str(tmp_path / "missing"), str(tmp_path / "x.npz")]) == 2
