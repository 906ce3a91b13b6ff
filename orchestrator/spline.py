"""Cubic polyharmonic spline with a linear tail, the surrogate model of the search."""

from __future__ import annotations

import logging

import numpy as np
import scipy.linalg
from scipy.spatial.distance import cdist

logger = logging.getLogger(__name__)

# NOTE: constant of the residual test. Householder QR is backward stable, so the
# computed solution z satisfies ||A z - b|| <= c * N * eps * (||A|| ||z|| + ||b||) for a
# modest c; 100 leaves room for the growth of rounding errors with N without accepting
# a solution that is wrong in more than the last few digits.
RESIDUAL_FACTOR = 100.0
# Largest number of kernel entries (evaluation points times centres) built at once.
_CHUNK_ENTRIES = 2**21


class SplineFitError(ValueError):
    """The measured points do not determine a spline, or its linear system failed."""


def affine_rank(points: np.ndarray) -> int:
    """Return the rank of ``P = [1, X]`` for points of shape ``(n, d)``.

    d + 1 means the points contain d + 1 affinely independent ones.
    """
    points = np.atleast_2d(np.asarray(points, dtype=float))
    if len(points) == 0:
        return 0
    poly = np.hstack([np.ones((len(points), 1)), points])
    return int(np.linalg.matrix_rank(poly))


def merge_duplicates(points: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge exactly equal points into one whose value is the mean of theirs.

    The result is sorted lexicographically, so it does not depend on the input order.
    """
    unique, inverse = np.unique(points, axis=0, return_inverse=True)
    inverse = np.ravel(inverse)
    counts = np.bincount(inverse, minlength=len(unique))
    means = np.bincount(inverse, weights=values, minlength=len(unique)) / counts
    if len(unique) < len(points):
        logger.info(
            "spline fit: merged %d duplicate points into the mean of their values",
            len(points) - len(unique),
        )
    return unique, means


class PolyharmonicSpline:
    r"""Cubic polyharmonic spline interpolant with a linear polynomial tail.

    The interpolant of values :math:`f_i` at distinct points :math:`x_i \in R^d`,
    :math:`i = 1..n`, is

    .. math:: s(x) = \sum_j c_j \|x - x_j\|^3 + a_0 + a^T x .

    The coefficients solve the saddle-point system

    .. math::

        \begin{pmatrix} \Phi & P \\ P^T & 0 \end{pmatrix}
        \begin{pmatrix} c \\ a \end{pmatrix} =
        \begin{pmatrix} f \\ 0 \end{pmatrix}, \qquad
        \Phi_{ij} = \|x_i - x_j\|^3, \quad P = [1, X],

    where :math:`P^T c = 0` makes the kernel part orthogonal to linear polynomials.
    The kernel :math:`r^3` is conditionally positive definite of order 2, so the system
    is nonsingular exactly when the points are distinct and :math:`P` has full column
    rank d + 1, which needs d + 1 affinely independent points. The spline then
    reproduces linear functions exactly.

    The matrix :math:`A` of size :math:`N = n + d + 1` is symmetric but indefinite, so
    the system is solved by Householder QR with column pivoting,
    :math:`A \Pi = Q R`, :math:`z = \Pi R^{-1} Q^T b`, at a cost of :math:`O(N^3)`.
    The pivoted :math:`R` exposes numerical singularity on its diagonal. A solution is
    rejected when

    .. math:: \|A z - b\|_2 > 100 \, N \, \varepsilon \,
              (\|A\|_F \|z\|_2 + \|b\|_2),

    with :math:`\varepsilon` the double-precision machine epsilon, the backward-error
    bound of a stable solver with a safety margin.

    Parameters
    ----------
    points : (n, d) array_like
        Support points, normalized to [0, 1]. Exact duplicates are merged and their
        values averaged.
    values : (n,) array_like
        Finite function values at ``points``.

    Raises
    ------
    SplineFitError
        When fewer than d + 1 affinely independent points are given (the message states
        how many more are needed), or when the system is numerically singular or its
        solution fails the residual test.
    """

    def __init__(self, points: np.ndarray, values: np.ndarray):
        points = np.atleast_2d(np.asarray(points, dtype=float))
        values = np.asarray(values, dtype=float).ravel()
        if len(points) != len(values):
            raise ValueError(
                f"got {len(points)} points but {len(values)} values; pass one value per point"
            )
        if not np.all(np.isfinite(points)) or not np.all(np.isfinite(values)):
            raise ValueError("points and values must be finite (no NaN or inf)")
        self.dim = points.shape[1]
        rank = affine_rank(points)
        if rank < self.dim + 1:
            missing = self.dim + 1 - rank
            raise SplineFitError(
                f"the {len(points)} points span an affine space of dimension {rank - 1}; "
                f"a spline in {self.dim} dimensions needs {self.dim + 1} affinely "
                f"independent points, so {missing} more affinely independent "
                f"point{'s' if missing > 1 else ''} must be measured"
            )
        self.points, self.values = merge_duplicates(points, values)
        self.coefficients, self.tail = self._solve()

    def _system(self) -> tuple[np.ndarray, np.ndarray]:
        """Build the saddle-point matrix A and right-hand side b."""
        n, d = self.points.shape
        poly = np.hstack([np.ones((n, 1)), self.points])
        matrix = np.zeros((n + d + 1, n + d + 1))
        distances = cdist(self.points, self.points)
        matrix[:n, :n] = distances * distances * distances
        matrix[:n, n:] = poly
        matrix[n:, :n] = poly.T
        rhs = np.concatenate([self.values, np.zeros(d + 1)])
        return matrix, rhs

    def _solve(self) -> tuple[np.ndarray, np.ndarray]:
        """Solve the saddle-point system by pivoted QR and check the residual."""
        matrix, rhs = self._system()
        size = len(rhs)
        eps = np.finfo(float).eps
        # qr_multiply returns b^T Q = (Q^T b)^T without forming Q.
        qtb, r, perm = scipy.linalg.qr_multiply(matrix, rhs[None, :], mode="right", pivoting=True)
        diagonal = np.abs(np.diag(r))
        if diagonal[-1] <= size * eps * diagonal[0]:
            raise SplineFitError(
                f"the spline system of size {size} is numerically singular "
                f"(smallest pivot {diagonal[-1]:.3g}, largest {diagonal[0]:.3g}); "
                "some measured points are nearly coincident"
            )
        solution = np.empty(size)
        solution[perm] = scipy.linalg.solve_triangular(r, qtb.ravel())

        residual = np.linalg.norm(matrix @ solution - rhs)
        scale = np.linalg.norm(matrix) * np.linalg.norm(solution) + np.linalg.norm(rhs)
        tolerance = RESIDUAL_FACTOR * size * eps * scale
        if not residual <= tolerance:
            raise SplineFitError(
                f"the spline solution has residual {residual:.3g}, above the tolerance "
                f"{tolerance:.3g}; some measured points are nearly coincident"
            )
        n = len(self.points)
        return solution[:n], solution[n:]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Evaluate the spline at points of shape ``(m, d)``; return shape ``(m,)``."""
        x = self._check_points(x)
        out = np.empty(len(x))
        for start, stop in self._chunks(len(x)):
            distances = cdist(x[start:stop], self.points)
            out[start:stop] = (distances * distances * distances) @ self.coefficients
        return out + self.tail[0] + x @ self.tail[1:]

    def gradient(self, x: np.ndarray) -> np.ndarray:
        """Evaluate the gradient at points of shape ``(m, d)``; return shape ``(m, d)``.

        Uses :math:`\\nabla_x \\|x - x_j\\|^3 = 3 \\|x - x_j\\| (x - x_j)`.
        """
        x = self._check_points(x)
        out = np.empty_like(x)
        for start, stop in self._chunks(len(x)):
            block = x[start:stop]
            weights = cdist(block, self.points) * self.coefficients
            out[start:stop] = 3.0 * (weights.sum(axis=1)[:, None] * block - weights @ self.points)
        return out + self.tail[1:]

    def _check_points(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, dtype=float))
        if x.shape[1] != self.dim:
            raise ValueError(f"expected points with {self.dim} columns, got shape {x.shape}")
        return x

    def _chunks(self, count: int) -> list[tuple[int, int]]:
        rows = max(1, _CHUNK_ENTRIES // max(1, len(self.points)))
        return [(start, min(start + rows, count)) for start in range(0, count, rows)]
