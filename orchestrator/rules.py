"""Proposal and stopping rules of the spline search, as functions of plain arrays.

Proposal rules
--------------
``argmax``
    The point that maximizes the spline, at ``min_distance`` from measured and pending
    points (the method as first described).
``srbf``
    A weighted score in the style of Regis and Shoemaker's stochastic RBF method. The
    candidates are the spline's maximizer, Gaussian perturbations of it and of the best
    measured point at several scales, and uniform points of the cube. Each candidate
    gets ``w * V + (1 - w) * D``, where V is its spline value and D its distance to the
    nearest measured or pending point, both scaled to [0, 1] over the candidates. The
    weight w cycles through a fixed list, so most steps exploit the spline and some
    explore, and a maximum next to a measured point no longer shrinks the step to
    ``min_distance``.

Stopping rules
--------------
``epsilon``
    Stop when one incremental point's measurement lies within epsilon of its prediction.
``stall``
    Stop when the last ``patience`` incremental measurements all lie within epsilon of
    their predictions, the best value rose by less than epsilon over them, and the
    spline predicts no point better than the best measured by epsilon or more.
``none``
    Never stop before ``max_evaluations``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.spatial.distance import cdist

from orchestrator.spline import PolyharmonicSpline

PROPOSAL_RULES = ("argmax", "srbf")
STOP_RULE_NAMES = ("epsilon", "stall", "none")
# Weights of the spline value in the srbf score, cycled over the incremental proposals.
# Mostly exploiting, because a search has few evaluations after its initial design;
# this cycle ranked best over the budgets of benchmarks/search_quality.py.
DEFAULT_WEIGHTS = (1.0, 0.95, 1.0, 0.9)
# Standard deviations of the Gaussian perturbations, in normalized coordinates.
PERTURBATION_SCALES = (0.2, 0.05, 0.01)
# Candidates per perturbation scale and centre, and uniform candidates, per dimension.
LOCAL_CANDIDATES_PER_DIM = 100
GLOBAL_CANDIDATES_PER_DIM = 100
DEFAULT_PATIENCE = 3


def weighted_score(values: np.ndarray, distances: np.ndarray, weight: float) -> np.ndarray:
    """Return ``weight * V + (1 - weight) * D`` of candidates, higher is better.

    V and D are ``values`` and ``distances`` scaled linearly to [0, 1] over the
    candidates; a quantity with no spread scores 1 everywhere.

    Parameters
    ----------
    values : (m,) ndarray
        Spline values (to maximize).
    distances : (m,) ndarray
        Distance of each candidate to its nearest measured or pending point.
    weight : float
        In [0, 1]; 1 ranks by value alone, 0 by distance alone.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must lie in [0, 1], got {weight}")
    return weight * _scaled(values) + (1.0 - weight) * _scaled(distances)


def _scaled(x: np.ndarray) -> np.ndarray:
    spread = float(np.max(x) - np.min(x)) if len(x) else 0.0
    if spread <= 0.0:
        return np.ones(len(x))
    return (x - np.min(x)) / spread


def srbf_candidates(
    centres: Sequence[np.ndarray], dim: int, rng: np.random.Generator
) -> np.ndarray:
    """Return the candidate points of one srbf proposal, unrounded, inside [0, 1]^d.

    For each centre and each scale of ``PERTURBATION_SCALES``, Gaussian perturbations
    clipped to the cube; then uniform points; then the centres themselves.
    """
    local = LOCAL_CANDIDATES_PER_DIM * dim
    blocks = [
        np.clip(centre + rng.normal(0.0, scale, (local, dim)), 0.0, 1.0)
        for centre in centres
        for scale in PERTURBATION_SCALES
    ]
    blocks.append(rng.uniform(size=(GLOBAL_CANDIDATES_PER_DIM * dim, dim)))
    blocks.append(np.array(centres).reshape(-1, dim))
    return np.vstack(blocks)


def srbf_select(
    function: Callable[[np.ndarray], np.ndarray],
    candidates: np.ndarray,
    excluded: np.ndarray,
    min_distance: float,
    weight: float,
) -> tuple[np.ndarray, float] | None:
    """Return the admissible candidate of highest weighted score and its spline value.

    Candidates closer than ``min_distance`` to an excluded point are dropped; None when
    none remains.
    """
    if len(excluded):
        distances = cdist(candidates, excluded).min(axis=1)
        keep = distances >= min_distance
    else:
        distances = np.zeros(len(candidates))
        keep = np.ones(len(candidates), dtype=bool)
    candidates, distances = candidates[keep], distances[keep]
    if len(candidates) == 0:
        return None
    values = function(candidates)
    index = int(np.argmax(weighted_score(values, distances, weight)))
    return candidates[index], float(values[index])


def epsilon_met(value: float, predicted: float | None, epsilon: float) -> bool:
    """Return whether an incremental measurement lies within epsilon of its prediction."""
    return predicted is not None and abs(value - predicted) < epsilon


def stalled(
    values: Sequence[float],
    predicted: Sequence[float | None],
    epsilon: float,
    patience: int = DEFAULT_PATIENCE,
) -> bool:
    """Check the history part of the ``stall`` rule.

    Parameters
    ----------
    values : sequence of float
        Measured values in the order measured, oriented so that larger is better.
    predicted : sequence of float or None
        The matching predictions, also oriented; None for initial-design points.
    epsilon : float
        Agreement and improvement tolerance, in objective units.
    patience : int
        Number of most recent incremental measurements that must agree with their
        predictions and together raise the best value by less than epsilon.

    Returns
    -------
    bool
        True when the last ``patience`` incremental measurements each lie within epsilon
        of their predictions and the best value after them exceeds the best before the
        first of them by less than epsilon. The caller then checks the spline's
        predicted gain with :func:`predicted_gain`.
    """
    if patience < 1:
        raise ValueError(f"patience must be at least 1, got {patience}")
    incremental = [i for i, p in enumerate(predicted) if p is not None]
    if len(incremental) < patience:
        return False
    recent = incremental[-patience:]
    if not all(epsilon_met(values[i], predicted[i], epsilon) for i in recent):
        return False
    before = values[: recent[0]]
    if not before:
        return False
    return max(values) - max(before) < epsilon


def predicted_gain(best_predicted: float, best_measured: float) -> float:
    """Return how much the spline's maximum exceeds the best measured value."""
    return best_predicted - best_measured


class SmoothedSpline(PolyharmonicSpline):
    r"""Polyharmonic spline that smooths instead of interpolating.

    It adds ``smoothing`` times the identity to the kernel block,
    :math:`(\Phi + \lambda I) c + P a = f`, which is the smoothing spline of
    regularization :math:`\lambda`: the larger :math:`\lambda`, the further the fit may
    pass from noisy measurements. :math:`\lambda = 0` is the interpolant.
    """

    def __init__(self, points: np.ndarray, values: np.ndarray, smoothing: float):
        if smoothing < 0:
            raise ValueError(f"smoothing must be >= 0, got {smoothing}")
        self.smoothing = float(smoothing)
        super().__init__(points, values)

    def _system(self) -> tuple[np.ndarray, np.ndarray]:
        matrix, rhs = super()._system()
        n = len(self.points)
        matrix[np.arange(n), np.arange(n)] += self.smoothing
        return matrix, rhs
