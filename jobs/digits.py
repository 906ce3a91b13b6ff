"""Export scikit-learn's bundled 8x8 handwritten digits as an image-folder tree.

The digits data set (1797 grayscale images, 10 classes, pixel values 0 to 16) ships with
scikit-learn, so the demo needs no download. scikit-learn is an optional dependency
(the ``demo`` extra) and is imported only inside :func:`export_digits`.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

MARKER = "EXPORT_COMPLETE.json"


class DigitsExportError(RuntimeError):
    """The export folder exists but does not contain a complete digits export."""


def _count_pngs(root: Path) -> int:
    return sum(1 for _ in root.glob("*/*.png"))


def _check_complete(root: Path) -> bool:
    """Return True if ``root`` has a marker whose image count matches the PNGs present."""
    marker = root / MARKER
    if not marker.is_file():
        return False
    try:
        expected = json.loads(marker.read_text())["num_images"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DigitsExportError(
            f"invalid export marker {marker}: {exc}. Delete {root} and export again"
        ) from exc
    found = _count_pngs(root)
    if found != expected:
        raise DigitsExportError(
            f"{root} has {found} PNG files but its marker records "
            f"{expected}; delete {root} and export again"
        )
    return True


def _write_tree(target: Path) -> int:
    """Write the digits as ``target/<class>/<index>.png`` and return the image count."""
    from sklearn.datasets import load_digits  # optional dependency, see module docstring

    digits = load_digits()
    pixels = np.rint(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    for label in np.unique(digits.target):
        (target / str(label)).mkdir()
    for index, (image, label) in enumerate(zip(pixels, digits.target, strict=True)):
        Image.fromarray(image).save(target / str(label) / f"{index:04d}.png")
    count = len(pixels)
    marker = {
        "num_images": count,
        "num_classes": int(len(np.unique(digits.target))),
        "source": "sklearn.datasets.load_digits",
    }
    (target / MARKER).write_text(json.dumps(marker) + "\n")
    return count


def export_digits(root: Path) -> Path:
    """Write the digits images as PNG files under ``root``, once.

    The tree is built in a temporary sibling directory and renamed to ``root``, so
    ``root`` is either absent or complete, also when several processes export at once.

    Parameters
    ----------
    root : Path
        Target folder; it must not exist or must hold a complete export.

    Returns
    -------
    Path
        ``root``, an ``ImageFolder`` tree ``root/<class>/<index>.png`` with 1797 images
        in the classes ``0`` to ``9``, plus the marker file ``EXPORT_COMPLETE.json``.

    Raises
    ------
    DigitsExportError
        If ``root`` exists without a complete export.
    ImportError
        If scikit-learn is not installed (install the ``demo`` extra).
    """
    root = Path(root)
    if root.exists():
        if _check_complete(root):
            return root
        raise DigitsExportError(
            f"{root} exists but is not a digits export (no {MARKER}). "
            "Delete it or choose another folder"
        )

    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        count = _write_tree(staging)
        try:
            staging.rename(root)
        except OSError:
            # Another process renamed its export into place first, so use that one.
            if root.exists() and _check_complete(root):
                return root
            raise
        logger.info("exported %d digits images to %s", count, root)
        return root
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
