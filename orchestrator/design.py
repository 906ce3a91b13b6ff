"""Initial design: the 2d + 3 corner, centre and axis points measured before any fit."""

from __future__ import annotations

import logging

import numpy as np

from orchestrator.space import SearchSpace

logger = logging.getLogger(__name__)


def initial_design_unit(dim: int) -> np.ndarray:
    """Return the 2d + 3 initial-design points of the unit cube, shape ``(2d + 3, d)``.

    The first three rows are the all-maximum corner, the all-minimum corner and the
    centre. Then, for each dimension k, come two rows: the point at the maximum
    everywhere but at the minimum in k, and the point at the minimum everywhere but at
    the maximum in k. For d = 1 and d = 2 some rows coincide, and
    :func:`initial_design` removes them after rounding.
    """
    if dim < 1:
        raise ValueError(f"dim must be at least 1, got {dim}")
    rows = [np.ones(dim), np.zeros(dim), np.full(dim, 0.5)]
    for k in range(dim):
        high_but_k = np.ones(dim)
        high_but_k[k] = 0.0
        low_but_k = np.zeros(dim)
        low_but_k[k] = 1.0
        rows.extend((high_but_k, low_but_k))
    return np.array(rows)


def initial_design(space: SearchSpace) -> np.ndarray:
    """Return the initial design of ``space`` in normalized coordinates, rounded and unique.

    Points are rounded to legal values (integers or the step grid), then duplicates are
    dropped, keeping the first occurrence so the order of :func:`initial_design_unit` is
    kept. The number of merged points is logged at INFO.

    Returns
    -------
    (n_points, space.dim) ndarray
        At most 2d + 3 distinct points.
    """
    points = space.round_unit(initial_design_unit(space.dim))
    unique: list[np.ndarray] = []
    for point in points:
        if not any(np.allclose(point, seen, rtol=0.0, atol=1e-12) for seen in unique):
            unique.append(point)
    merged = len(points) - len(unique)
    if merged:
        logger.info(
            "initial design: %d of %d points coincide after rounding and were merged "
            "(%d distinct points)",
            merged,
            len(points),
            len(unique),
        )
    return np.array(unique)
