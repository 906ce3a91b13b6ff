"""Image-folder data sets with a deterministic per-class train/validation split.

The split rule, applied to each class on its own:

1. sort the class's file paths;
2. shuffle them with ``numpy.random.default_rng([split_seed, class_index])``;
3. the first ``n - floor(n * val_fraction)`` files are the train split, the rest the
   validation split. With the default ``val_fraction`` of 0.5 the train split gets the
   extra image of an odd-sized class, and a class with a single image puts it in train.

``train_fraction`` keeps the first ``max(1, round(n_train * train_fraction))`` images of
each class's (already shuffled) train split, so smaller fractions give nested subsets.
Seeding each class separately keeps a class's split unchanged when other classes are
added or removed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch.utils.data import Dataset, Subset
from torchvision import datasets, transforms
from torchvision.datasets.folder import default_loader

if TYPE_CHECKING:
    from jobs.index import FileIndex

logger = logging.getLogger(__name__)

# ImageNet channel statistics, the usual normalization for ResNets trained from scratch.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# Validation images are resized to image_size / 0.875 (256 for 224) before the center crop.
CENTER_CROP_FRACTION = 0.875


@dataclass(frozen=True)
class Split:
    """Indices into an ``ImageFolder``'s ``samples`` for the train and validation splits."""

    train: list[int]
    val: list[int]


class DataConfigError(ValueError):
    """A data setting or the image folder is invalid."""


def split_indices(
    targets: list[int],
    paths: list[str],
    split_seed: int,
    val_fraction: float = 0.5,
    train_fraction: float = 1.0,
) -> Split:
    """Split sample indices per class into train and validation (see the module docstring).

    Parameters
    ----------
    targets : list of int
        Class index of each sample.
    paths : list of str
        File path of each sample; the order within a class is taken from these.
    split_seed : int
        Seed of the per-class shuffles.
    val_fraction : float, default 0.5
        Share of each class that goes to validation, rounded down; in ``[0, 1)``.
    train_fraction : float, default 1.0
        Share of each class's train split that is kept; in ``(0, 1]``.

    Returns
    -------
    Split
        Train and validation indices, each sorted ascending.
    """
    if len(targets) != len(paths):
        raise ValueError(f"got {len(targets)} targets but {len(paths)} paths")
    if not 0.0 <= val_fraction < 1.0:
        raise DataConfigError(f"data.val_fraction must be in [0, 1), got {val_fraction!r}")
    if not 0.0 < train_fraction <= 1.0:
        raise DataConfigError(f"data.train_fraction must be in (0, 1], got {train_fraction!r}")

    by_class: dict[int, list[int]] = {}
    for index, target in enumerate(targets):
        by_class.setdefault(target, []).append(index)

    train: list[int] = []
    val: list[int] = []
    for target in sorted(by_class):
        members = sorted(by_class[target], key=lambda i: paths[i])
        order = np.random.default_rng([split_seed, target]).permutation(len(members))
        shuffled = [members[i] for i in order]
        n_train = len(shuffled) - math.floor(len(shuffled) * val_fraction)
        kept = max(1, round(n_train * train_fraction))
        train.extend(shuffled[:kept])
        val.extend(shuffled[n_train:])
    return Split(train=sorted(train), val=sorted(val))


def build_transforms(
    image_size: int, train: bool, hflip: bool = False, augment: str = "small"
) -> transforms.Compose:
    """Return the image transform for training (augmented) or evaluation.

    ``augment="small"`` (small images such as digits) resizes every image to
    ``image_size`` x ``image_size``; training adds a random crop with ``image_size // 8``
    pixels of zero padding (at least 1) and, if ``hflip``, a random horizontal flip (off
    by default because it turns digits into other shapes). ``augment="imagenet"`` is the
    standard ImageNet recipe: ``RandomResizedCrop`` (scale 0.08 to 1) and a horizontal
    flip for training, and for evaluation a resize of the shorter side to
    ``round(image_size / 0.875)`` followed by a center crop; ``hflip`` is ignored.
    """
    if augment == "imagenet":
        if train:
            steps: list[object] = [
                transforms.RandomResizedCrop(image_size, antialias=True),
                transforms.RandomHorizontalFlip(),
            ]
        else:
            resize = round(image_size / CENTER_CROP_FRACTION)
            steps = [transforms.Resize(resize, antialias=True), transforms.CenterCrop(image_size)]
    elif augment == "small":
        steps = [transforms.Resize((image_size, image_size), antialias=True)]
        if train:
            steps.append(transforms.RandomCrop(image_size, padding=max(1, image_size // 8)))
            if hflip:
                steps.append(transforms.RandomHorizontalFlip())
    else:
        raise DataConfigError(f"data.augment must be 'small' or 'imagenet', got {augment!r}")
    steps += [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    return transforms.Compose(steps)


class IndexedImageDataset(Dataset):
    """Images of a :class:`jobs.index.FileIndex` subset, decoded as RGB on access.

    The paths stay in the index's numpy arrays, which forked data-loader workers share
    without copying (a list of Python strings would be copied page by page as reference
    counts change).

    Parameters
    ----------
    root : str or Path
        Image folder the index's relative paths are resolved against.
    index : FileIndex
        The file index.
    indices : sequence of int
        File indices of this subset, in dataset order.
    transform : callable
        Transform applied to each PIL image.
    """

    def __init__(
        self, root: str | Path, index: FileIndex, indices: list[int], transform: Any
    ) -> None:
        self.root = str(root)
        self.index = index
        self.indices = np.asarray(indices, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> tuple[Any, int]:
        i = int(self.indices[item])
        image = default_loader(f"{self.root}/{self.index.relative_path(i)}")
        return self.transform(image), int(self.index.labels[i])


def load_datasets(
    root: str | Path,
    image_size: int,
    split_seed: int,
    val_fraction: float = 0.5,
    train_fraction: float = 1.0,
    hflip: bool = False,
    augment: str = "small",
    index_path: str | Path | None = None,
) -> tuple[Dataset, Dataset, int]:
    """Return the train and validation subsets of the image folder ``root``.

    Files are listed by a scan of ``root`` as an ``ImageFolder``, or read from a file
    index (:mod:`jobs.index`) if ``index_path`` is given; both give the same files,
    order and split. Images are loaded as RGB by torchvision's default loader.

    Parameters
    ----------
    root : str or Path
        Folder with one subfolder of images per class.
    image_size : int
        Side length in pixels the images are resized to.
    split_seed, val_fraction, train_fraction
        See :func:`split_indices`.
    hflip : bool, default False
        Randomly flip training images horizontally (``augment="small"`` only).
    augment : {"small", "imagenet"}, default "small"
        Augmentation recipe, see :func:`build_transforms`.
    index_path : str or Path, optional
        File index written by :func:`jobs.index.save_index` for this folder.

    Returns
    -------
    train_set, val_set : torch.utils.data.Dataset
        Train and validation subsets with train and eval transforms.
    num_classes : int
        Number of class folders.

    Raises
    ------
    DataConfigError
        If ``root`` is not a directory or holds no class folders with images.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataConfigError(
            f"data.root {str(root)!r} is not a directory. Set it to an "
            "image folder with one subfolder per class"
        )
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise DataConfigError(f"data.image_size must be a positive integer, got {image_size!r}")
    train_transform = build_transforms(image_size, train=True, hflip=hflip, augment=augment)
    val_transform = build_transforms(image_size, train=False, augment=augment)
    if index_path is not None:
        from jobs.index import load_index  # jobs.index imports this module

        index = load_index(index_path)
        split = index.split(split_seed, val_fraction, train_fraction)
        logger.debug(
            "split %s from index %s: %d train, %d validation images in %d classes",
            root,
            index_path,
            len(split.train),
            len(split.val),
            len(index.classes),
        )
        return (
            IndexedImageDataset(root, index, split.train, train_transform),
            IndexedImageDataset(root, index, split.val, val_transform),
            len(index.classes),
        )
    try:
        train_view = datasets.ImageFolder(str(root), transform=train_transform)
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataConfigError(
            f"data.root {str(root)!r} is not a usable image folder: {exc}"
        ) from exc
    val_view = datasets.ImageFolder(str(root), transform=val_transform)

    paths = [path for path, _ in train_view.samples]
    split = split_indices(train_view.targets, paths, split_seed, val_fraction, train_fraction)
    logger.debug(
        "split %s: %d train, %d validation images in %d classes",
        root,
        len(split.train),
        len(split.val),
        len(train_view.classes),
    )
    return Subset(train_view, split.train), Subset(val_view, split.val), len(train_view.classes)
