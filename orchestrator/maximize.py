"""Hierarchical quasi-Monte Carlo maximization of a surrogate over the unit cube."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.optimize
from scipy.spatial.distance import cdist
from scipy.stats import qmc

# NOTE: with these settings one proposal (fit plus maximize) took at most 0.3 s of
# wall time for d <= 20 and N <= 200 points in benchmarks/RESULTS.md. Eight levels
# that halve the box shrink its edge to 1/128 of the unit cube's around the best point.
DEFAULT_SAMPLES_PER_LEVEL = 1024
DEFAULT_LEVELS = 8
DEFAULT_SHRINK = 0.5
# Iteration limit of the gradient polish of the best sample.
POLISH_ITERATIONS = 100


@dataclass(frozen=True)
class MaximizeResult:
    """Best admissible point found, in normalized rounded coordinates, and its value."""

    point: np.ndarray
    value: float
    evaluations: int


def proposal_rng(seed: int, proposal_index: int, *extra: int) -> np.random.Generator:
    """Return the random generator of one proposal.

    It depends only on the experiment seed, the proposal index and ``extra`` (such as
    the choice combination), so a resumed search draws the same samples as an
    uninterrupted one, and consecutive proposals draw different ones.
    """
    return np.random.default_rng(np.random.SeedSequence([seed, proposal_index, *extra]))


def admissible(candidates: np.ndarray, excluded: np.ndarray, min_distance: float) -> np.ndarray:
    """Return a mask of candidates at distance >= ``min_distance`` from every excluded point."""
    if len(excluded) == 0 or min_distance <= 0:
        return np.ones(len(candidates), dtype=bool)
    return cdist(candidates, excluded).min(axis=1) >= min_distance


def maximize(
    function: Callable[[np.ndarray], np.ndarray],
    dim: int,
    rng: np.random.Generator,
    round_points: Callable[[np.ndarray], np.ndarray] | None = None,
    excluded: np.ndarray | None = None,
    min_distance: float = 0.0,
    samples_per_level: int = DEFAULT_SAMPLES_PER_LEVEL,
    levels: int = DEFAULT_LEVELS,
    shrink: float = DEFAULT_SHRINK,
    gradient: Callable[[np.ndarray], np.ndarray] | None = None,
) -> MaximizeResult | None:
    """Maximize ``function`` over [0, 1]^d by sampling ever smaller boxes.

    Each level draws ``samples_per_level`` points of one scrambled Halton sequence,
    scaled to the current box, rounds them with ``round_points``, and evaluates those at
    distance >= ``min_distance`` from every ``excluded`` point. The next box is centred
    on the best admissible point found so far, with edges ``shrink`` times as long,
    clipped to the unit cube. If ``gradient`` is given, L-BFGS-B then climbs from the
    best sample within the cube. The rounded result replaces the sample if it is
    admissible and better. Finally, coordinates of the best point closer to 0 or 1
    than the last box's edge are moved onto that bound if this does not lower the
    value and keeps the point admissible.

    Parameters
    ----------
    function : callable
        Vectorized objective: ``(m, d)`` array to ``(m,)`` array.
    dim : int
        Number of dimensions d.
    rng : numpy.random.Generator
        Source of the Halton scrambling (see :func:`proposal_rng`).
    round_points : callable, optional
        Maps ``(m, d)`` candidates to legal values in normalized space.
    excluded : (k, d) ndarray, optional
        Measured and pending points that candidates must keep away from.
    min_distance : float
        Euclidean distance in normalized space; 0 disables the check.
    samples_per_level, levels : int
        Sample count per box and number of boxes.
    shrink : float
        Factor in (0, 1) applied to the box edges per level.
    gradient : callable, optional
        Vectorized gradient of ``function``: ``(m, d)`` array to ``(m, d)`` array.

    Returns
    -------
    MaximizeResult or None
        None when no admissible candidate was found.
    """
    if not 0 < shrink < 1:
        raise ValueError(f"shrink must lie in (0, 1), got {shrink}")
    excluded = np.empty((0, dim)) if excluded is None else np.atleast_2d(excluded)
    engine = qmc.Halton(dim, scramble=True, rng=rng)
    low, high = np.zeros(dim), np.ones(dim)
    edge = 1.0
    best_point: np.ndarray | None = None
    best_value = -np.inf
    evaluations = 0

    for _ in range(levels):
        candidates = low + engine.random(samples_per_level) * (high - low)
        if round_points is not None:
            candidates = round_points(candidates)
        candidates = candidates[admissible(candidates, excluded, min_distance)]
        if len(candidates):
            values = function(candidates)
            evaluations += len(candidates)
            index = int(np.argmax(values))
            if values[index] > best_value:
                best_value, best_point = float(values[index]), candidates[index]

        # Shrink the box around the best point so far; keep the box if none was found.
        # The edge shrinks from its nominal length, not from the clipped one, so a box
        # at a face of the cube does not shrink faster than one inside.
        if best_point is not None:
            edge *= shrink
            low = np.clip(best_point - 0.5 * edge, 0.0, 1.0)
            high = np.clip(best_point + 0.5 * edge, 0.0, 1.0)

    if best_point is None:
        return None
    if gradient is not None:
        polished = _polish(function, gradient, best_point, round_points)
        if admissible(polished[None, :], excluded, min_distance)[0]:
            value = float(function(polished[None, :])[0])
            evaluations += 1
            if value > best_value:
                best_point, best_value = polished, value
    snapped = _snap_to_bounds(best_point, shrink ** (levels - 1), round_points)
    if not np.array_equal(snapped, best_point):
        if admissible(snapped[None, :], excluded, min_distance)[0]:
            value = float(function(snapped[None, :])[0])
            evaluations += 1
            if value >= best_value:
                best_point, best_value = snapped, value
    return MaximizeResult(best_point, best_value, evaluations)


def _polish(
    function: Callable[[np.ndarray], np.ndarray],
    gradient: Callable[[np.ndarray], np.ndarray],
    start: np.ndarray,
    round_points: Callable[[np.ndarray], np.ndarray] | None,
) -> np.ndarray:
    """Climb from ``start`` with L-BFGS-B inside the unit cube, then round the result."""
    result = scipy.optimize.minimize(
        lambda x: -float(function(x[None, :])[0]),
        start,
        jac=lambda x: -gradient(x[None, :])[0],
        method="L-BFGS-B",
        bounds=[(0.0, 1.0)] * len(start),
        options={"maxiter": POLISH_ITERATIONS},
    )
    point = np.clip(result.x, 0.0, 1.0)
    return point if round_points is None else round_points(point[None, :])[0]


def _snap_to_bounds(
    point: np.ndarray,
    tolerance: float,
    round_points: Callable[[np.ndarray], np.ndarray] | None,
) -> np.ndarray:
    """Move coordinates within ``tolerance`` of 0 or 1 onto that bound.

    Samples never land exactly on a face of the box, so sampling finds a maximum on a
    bound only up to the last box's size. Snapping recovers the bound itself.
    """
    snapped = point.copy()
    snapped[snapped < tolerance] = 0.0
    snapped[snapped > 1.0 - tolerance] = 1.0
    if round_points is not None:
        snapped = round_points(snapped[None, :])[0]
    return snapped
