"""A file index of an image folder, built once per experiment and loaded by every job.

Scanning an ImageNet-22K folder (about 14 million files in 21,841 class folders) with
``torchvision.datasets.ImageFolder`` can take minutes on a parallel file system and keeps
every path as a Python string in every data-loader worker. The index stores the same
listing as a few numpy arrays in one ``.npz`` file (no pickle):

- ``class_blob`` / ``class_offsets``: the class folder names, UTF-8, concatenated;
- ``path_blob`` / ``path_offsets``: each file's path relative to its class folder;
- ``labels``: the class index of each file (files sorted by class, then path);
- ``shuffle_rank``: each file's position in its class's shuffled order for
  ``split_seed``, from which :meth:`FileIndex.split` derives the train/validation split
  of :func:`jobs.data.split_indices` for any ``val_fraction`` and ``train_fraction``.

Classes and files are found as ``ImageFolder`` finds them: class folders are the sorted
subfolders of the root, files are searched recursively and kept if their extension is
one of torchvision's ``IMG_EXTENSIONS`` (case-insensitive), and a class without files
is an error. Paths are stored relative to the root, so the data can be staged to
another folder (a node-local disk) and read with the same index.

Build from the command line with ``python -m jobs.index ROOT OUTPUT.npz``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torchvision.datasets.folder import IMG_EXTENSIONS

from jobs.checkpoint import write_atomic
from jobs.data import DataConfigError, Split

logger = logging.getLogger(__name__)

INDEX_FORMAT = 1
_EXTENSIONS = tuple(ext.lower() for ext in IMG_EXTENSIONS)


def _encode(strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate UTF-8 strings into a byte blob and ``len + 1`` offsets."""
    encoded = [s.encode() for s in strings]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


def shuffle_ranks(class_starts: np.ndarray, split_seed: int) -> np.ndarray:
    """Return each file's position in its class's shuffled order.

    Class ``c`` owns files ``class_starts[c]:class_starts[c + 1]`` (sorted by path) and
    is shuffled with ``numpy.random.default_rng([split_seed, c]).permutation``, the rule
    of :func:`jobs.data.split_indices`.
    """
    ranks = np.empty(int(class_starts[-1]), dtype=np.int32)
    for label in range(len(class_starts) - 1):
        start, stop = int(class_starts[label]), int(class_starts[label + 1])
        order = np.random.default_rng([split_seed, label]).permutation(stop - start)
        ranks[start + order] = np.arange(stop - start, dtype=np.int32)
    return ranks


@dataclass(frozen=True)
class FileIndex:
    """Class names, file paths, labels and split ranks of one image folder."""

    classes: list[str]
    path_blob: np.ndarray
    path_offsets: np.ndarray
    labels: np.ndarray
    shuffle_rank: np.ndarray
    split_seed: int

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def class_starts(self) -> np.ndarray:
        """First file of each class, with the file count appended (``num_classes + 1``)."""
        return np.searchsorted(self.labels, np.arange(len(self.classes) + 1)).astype(np.int64)

    def relative_path(self, i: int) -> str:
        """Return file ``i``'s path relative to the root: ``class/...``."""
        start, stop = self.path_offsets[i], self.path_offsets[i + 1]
        name = self.path_blob[start:stop].tobytes().decode()
        return f"{self.classes[self.labels[i]]}/{name}"

    def split(
        self, split_seed: int, val_fraction: float = 0.5, train_fraction: float = 1.0
    ) -> Split:
        """Return the split of :func:`jobs.data.split_indices` as sorted file indices.

        Ranks stored for another ``split_seed`` are recomputed: 2.6 s for 21,841 classes of
        650 files on the 2-core machine of ``benchmarks/RESULTS.md``.
        """
        if not 0.0 <= val_fraction < 1.0:
            raise DataConfigError(f"data.val_fraction must be in [0, 1), got {val_fraction!r}")
        if not 0.0 < train_fraction <= 1.0:
            raise DataConfigError(f"data.train_fraction must be in (0, 1], got {train_fraction!r}")
        starts = self.class_starts
        ranks = self.shuffle_rank
        if split_seed != self.split_seed:
            logger.info(
                "index was built for split_seed %d; recomputing the split for seed %d",
                self.split_seed,
                split_seed,
            )
            ranks = shuffle_ranks(starts, split_seed)
        sizes = np.diff(starts)
        n_train = sizes - np.floor(sizes * val_fraction).astype(np.int64)
        kept = np.maximum(1, np.round(n_train * train_fraction).astype(np.int64))
        train = np.flatnonzero(ranks < kept[self.labels])
        val = np.flatnonzero(ranks >= n_train[self.labels])
        return Split(train=train.tolist(), val=val.tolist())


def _scan_class(class_dir: str) -> list[str]:
    """Return the image files under ``class_dir``, relative to it, sorted."""
    found: list[str] = []
    pending = [""]
    while pending:
        relative = pending.pop()
        with os.scandir(os.path.join(class_dir, relative)) as entries:
            for entry in entries:
                name = os.path.join(relative, entry.name) if relative else entry.name
                if entry.is_dir(follow_symlinks=True):
                    pending.append(name)
                elif entry.name.lower().endswith(_EXTENSIONS):
                    found.append(name)
    found.sort()
    return found


def build_index(
    root: str | Path, split_seed: int = 0, workers: int | None = None, log_every_s: float = 10.0
) -> FileIndex:
    """Scan ``root`` in parallel (one task per class folder) and return its index.

    Parameters
    ----------
    root : str or Path
        Image folder with one subfolder per class.
    split_seed : int, default 0
        Seed whose shuffle ranks are stored; other seeds are recomputed at load time.
    workers : int, optional
        Scanning threads; default ``min(32, 4 * CPU count)``. Threads suffice because
        ``os.scandir`` releases the GIL while it waits for the file system.
    log_every_s : float, default 10
        Seconds between progress messages.

    Raises
    ------
    DataConfigError
        If ``root`` is not a directory, has no class folders or a class has no images.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataConfigError(f"data.root {str(root)!r} is not a directory")
    with os.scandir(root) as entries:
        classes = sorted(e.name for e in entries if e.is_dir(follow_symlinks=True))
    if not classes:
        raise DataConfigError(f"data.root {str(root)!r} has no class folders")

    workers = workers or min(32, 4 * (os.cpu_count() or 1))
    files: list[list[str]] = [[] for _ in classes]
    start = last_log = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(_scan_class, str(root / c)): i for i, c in enumerate(classes)}
        for done, future in enumerate(as_completed(futures), start=1):
            files[futures[future]] = future.result()
            if time.monotonic() - last_log >= log_every_s:
                last_log = time.monotonic()
                logger.info("indexed %d of %d class folders of %s", done, len(classes), root)

    empty = [c for c, names in zip(classes, files, strict=True) if not names]
    if empty:
        raise DataConfigError(
            f"data.root {str(root)!r}: {len(empty)} class folder(s) contain no image files "
            f"(extensions {', '.join(IMG_EXTENSIONS)}), for example {empty[:5]}. Remove them "
            "or add images"
        )
    counts = np.array([len(names) for names in files], dtype=np.int64)
    labels = np.repeat(np.arange(len(classes), dtype=np.int32), counts)
    path_blob, path_offsets = _encode([name for names in files for name in names])
    class_starts = np.concatenate([[0], np.cumsum(counts)])
    index = FileIndex(
        classes,
        path_blob,
        path_offsets,
        labels,
        shuffle_ranks(class_starts, split_seed),
        split_seed,
    )
    logger.info(
        "indexed %d files in %d classes of %s in %.1f s",
        len(labels),
        len(classes),
        root,
        time.monotonic() - start,
    )
    return index


def save_index(index: FileIndex, path: str | Path) -> None:
    """Write ``index`` to ``path`` (``.npz``, uncompressed) atomically."""
    class_blob, class_offsets = _encode(index.classes)
    arrays = {
        "format": np.array(INDEX_FORMAT),
        "split_seed": np.array(index.split_seed, dtype=np.int64),
        "class_blob": class_blob,
        "class_offsets": class_offsets,
        "path_blob": index.path_blob,
        "path_offsets": index.path_offsets,
        "labels": index.labels,
        "shuffle_rank": index.shuffle_rank,
    }
    # mypy reads the keyword arrays as the allow_pickle flag of numpy's stub.
    write_atomic(path, lambda handle: np.savez(handle, **arrays))  # type: ignore[arg-type]


def load_index(path: str | Path) -> FileIndex:
    """Read an index written by :func:`save_index`.

    Raises
    ------
    DataConfigError
        If the file is missing, unreadable, of another format version or inconsistent.
    """
    fix = "Rebuild it with `python -m jobs.index ROOT OUTPUT.npz`"
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise DataConfigError(
            f"data.index_path {str(path)!r} is unreadable: {exc}. {fix}"
        ) from exc
    if arrays.get("format") is None or int(arrays["format"]) != INDEX_FORMAT:
        raise DataConfigError(
            f"data.index_path {str(path)!r} is not a format-{INDEX_FORMAT} file index. {fix}"
        )
    class_blob, class_offsets = arrays["class_blob"].tobytes(), arrays["class_offsets"]
    classes = [
        class_blob[class_offsets[i] : class_offsets[i + 1]].decode()
        for i in range(len(class_offsets) - 1)
    ]
    index = FileIndex(
        classes,
        arrays["path_blob"],
        arrays["path_offsets"],
        arrays["labels"],
        arrays["shuffle_rank"],
        int(arrays["split_seed"]),
    )
    n = len(index.labels)
    consistent = (
        len(index.path_offsets) == n + 1
        and len(index.shuffle_rank) == n
        and int(index.path_offsets[-1]) == len(index.path_blob)
        and (n == 0 or int(index.labels[-1]) < len(classes))
        and bool(np.all(np.diff(index.labels) >= 0))
    )
    if not consistent:
        raise DataConfigError(f"data.index_path {str(path)!r} is inconsistent (truncated?). {fix}")
    return index


def main(argv: Sequence[str] | None = None) -> int:
    """Build an index from the command line and return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m jobs.index",
        description="Write the file index of an image folder (one subfolder per class).",
    )
    parser.add_argument("root", help="image folder")
    parser.add_argument("output", help="index file to write (.npz)")
    parser.add_argument("--split-seed", type=int, default=0, help="split seed (default: 0)")
    parser.add_argument(
        "--workers", type=int, default=None, help="scanning threads (default: min(32, 4 x CPUs))"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        save_index(build_index(args.root, args.split_seed, args.workers), args.output)
    except DataConfigError as exc:
        logger.error("%s", exc)
        return 2
    logger.info("wrote %s", args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
