"""File index against ImageFolder's scan, on a synthetic tree of empty image files.

Usage: python benchmarks/index_load.py [--classes 2000] [--files 100] [--repeats 3]

Builds CLASSES folders of FILES empty ``.JPEG`` files under a temporary folder in /tmp
(deleted at the end), then times, interleaved per repetition: torchvision's
``ImageFolder`` scan, the parallel index build, writing the index, and loading it plus
computing the train/validation split (what each training job does). Only file names
are read, so empty files suffice. The file system cache is warm after the first pass.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

from torchvision import datasets

from jobs.index import build_index, load_index, save_index


def _make_tree(root: Path, classes: int, files: int) -> None:
    for c in range(classes):
        folder = root / f"n{c:08d}"
        folder.mkdir(parents=True)
        for f in range(files):
            os.close(os.open(folder / f"n{c:08d}_{f}.JPEG", os.O_CREAT | os.O_WRONLY, 0o644))


def _timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=2000, help="class folders (default: 2000)")
    parser.add_argument("--files", type=int, default=100, help="files per class (default: 100)")
    parser.add_argument("--repeats", type=int, default=3, help="repetitions (default: 3)")
    args = parser.parse_args()
    logging.basicConfig(level="WARNING")
    times: dict[str, list[float]] = {"scan": [], "build": [], "save": [], "load": []}
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        root = Path(tmp) / "tree"
        start = time.perf_counter()
        _make_tree(root, args.classes, args.files)
        print(f"tree of {args.classes * args.files} files: {time.perf_counter() - start:.1f} s")
        index_path = Path(tmp) / "index.npz"
        for _ in range(args.repeats):
            times["scan"].append(_timed(lambda: datasets.ImageFolder(str(root))))
            start = time.perf_counter()
            index = build_index(root)
            times["build"].append(time.perf_counter() - start)
            start = time.perf_counter()
            save_index(index, index_path)
            times["save"].append(time.perf_counter() - start)
            times["load"].append(_timed(lambda: load_index(index_path).split(0)))
        size_mb = index_path.stat().st_size / 2**20
    print(f"index file: {size_mb:.1f} MB")
    for name, values in times.items():
        rounded = [round(v, 3) for v in values]
        print(f"{name}: median {statistics.median(values):.3f} s, all {rounded}")
    ratio = statistics.median(times["scan"]) / statistics.median(times["load"])
    print(f"ImageFolder scan / index load+split: {ratio:.1f}x")


if __name__ == "__main__":
    main()
