"""Tests of the scikit-learn digits export."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jobs.digits import MARKER, DigitsExportError, export_digits


def test_export_digits_writes_image_folder(tmp_path: Path) -> None:
    root = export_digits(tmp_path / "digits")
    assert root == tmp_path / "digits"
    pngs = sorted(root.glob("*/*.png"))
    assert len(pngs) == 1797
    counts = Counter(p.parent.name for p in pngs)
    assert sorted(counts) == [str(d) for d in range(10)]
    assert all(n >= 170 for n in counts.values())
    assert json.loads((root / MARKER).read_text())["num_images"] == 1797
    assert not [p for p in tmp_path.iterdir() if p.name != "digits"]  # no staging left

    from sklearn.datasets import load_digits

    digits = load_digits()
    image = np.asarray(Image.open(root / str(digits.target[5]) / "0005.png"))
    assert image.shape == (8, 8)
    assert np.array_equal(image, np.rint(digits.images[5] * 255 / 16).astype(np.uint8))


def test_export_digits_is_idempotent(tmp_path: Path) -> None:
    root = export_digits(tmp_path / "digits")
    mtime = (root / MARKER).stat().st_mtime_ns
    assert export_digits(root) == root
    assert (root / MARKER).stat().st_mtime_ns == mtime
    assert len(list(root.glob("*/*.png"))) == 1797


def test_export_digits_rejects_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "digits" / "0").mkdir(parents=True)
    with pytest.raises(DigitsExportError, match="not a digits export"):
        export_digits(tmp_path / "digits")


def test_export_digits_detects_missing_images(tmp_path: Path) -> None:
    root = export_digits(tmp_path / "digits")
    next(root.glob("3/*.png")).unlink()
    with pytest.raises(DigitsExportError, match="1796 PNG files but its marker records 1797"):
        export_digits(root)
