"""Data preparation run on the login node before the first trial is submitted."""

from __future__ import annotations

from pathlib import Path


def export_digits(root: Path) -> Path:
    """Export scikit-learn's bundled digits as an ImageFolder tree (once)."""
    from jobs.digits import export_digits as export

    return export(Path(root))
