"""Tests of the cubic polyharmonic spline."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.stats import qmc

from orchestrator.spline import PolyharmonicSpline, SplineFitError, affine_rank


def _points(n: int, d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, d))


def _dense_solve(points: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Solve the full saddle-point system with LU, independently of the class."""
    n, d = points.shape
    poly = np.hstack([np.ones((n, 1)), points])
    matrix = np.block([[cdist(points, points) ** 3, poly], [poly.T, np.zeros((d + 1, d + 1))]])
    return np.linalg.solve(matrix, np.concatenate([values, np.zeros(d + 1)]))


@pytest.mark.parametrize("d", [1, 2, 5])
def test_spline_reproduces_support_points(d):
    points = _points(4 * d + 6, d)
    values = np.sin(3 * points).sum(axis=1) + 10.0
    spline = PolyharmonicSpline(points, values)
    np.testing.assert_allclose(spline(points), values, rtol=1e-8, atol=0)


@pytest.mark.parametrize("d", [1, 2, 5])
def test_spline_reproduces_linear_function(d):
    points = _points(2 * d + 3, d, seed=1)
    slope = np.arange(1, d + 1, dtype=float)
    values = 2.5 + points @ slope
    spline = PolyharmonicSpline(points, values)
    test = _points(50, d, seed=2)
    np.testing.assert_allclose(spline(test), 2.5 + test @ slope, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(spline.coefficients, 0.0, atol=1e-8)


@pytest.mark.parametrize("d,n", [(2, 12), (5, 30), (10, 80)])
def test_spline_matches_dense_solve(d, n):
    points = _points(n, d, seed=d)
    values = np.random.default_rng(7).normal(size=n)
    spline = PolyharmonicSpline(points, values)
    expected = _dense_solve(spline.points, spline.values)
    solution = np.concatenate([spline.coefficients, spline.tail])
    np.testing.assert_allclose(solution, expected, rtol=1e-7, atol=1e-9)


def test_spline_rank_deficient_names_missing_points():
    # Three points on one line in 3-d: affine dimension 1, so 2 more points are needed.
    points = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5], [1.0, 1.0, 1.0]])
    with pytest.raises(SplineFitError, match="2 more affinely independent points"):
        PolyharmonicSpline(points, np.array([1.0, 2.0, 3.0]))


def test_spline_single_missing_point_message():
    points = np.array([[0.0, 0.0], [1.0, 0.0]])
    with pytest.raises(SplineFitError, match="1 more affinely independent point must"):
        PolyharmonicSpline(points, np.array([1.0, 2.0]))


def test_spline_fit_error_is_value_error():
    assert issubclass(SplineFitError, ValueError)


def test_spline_merges_duplicates_by_mean():
    points = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    values = np.array([1.0, 2.0, 3.0, 4.0, 6.0])
    spline = PolyharmonicSpline(points, values)
    assert len(spline.points) == 4
    assert spline(np.array([[1.0, 0.0]]))[0] == pytest.approx(4.0, rel=1e-10)
    assert spline(np.array([[1.0, 1.0]]))[0] == pytest.approx(4.0, rel=1e-10)


def test_spline_does_not_depend_on_point_order():
    points = _points(15, 3, seed=4)
    values = points.sum(axis=1) ** 2
    order = np.random.default_rng(5).permutation(15)
    test = _points(20, 3, seed=6)
    first = PolyharmonicSpline(points, values)(test)
    second = PolyharmonicSpline(points[order], values[order])(test)
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("d", [1, 3, 6])
def test_spline_gradient_matches_finite_differences(d):
    points = qmc.Halton(d, scramble=False).random(3 * d + 5)
    values = np.cos(4 * points).sum(axis=1)
    spline = PolyharmonicSpline(points, values)
    test = _points(10, d, seed=9) * 0.8 + 0.1
    step = 1e-6
    numeric = np.empty_like(test)
    for k in range(d):
        shift = np.zeros(d)
        shift[k] = step
        numeric[:, k] = (spline(test + shift) - spline(test - shift)) / (2 * step)
    np.testing.assert_allclose(spline.gradient(test), numeric, rtol=1e-5, atol=1e-6)


def test_spline_rejects_nearly_coincident_points():
    points = np.vstack([_points(6, 2, seed=3), [[0.5, 0.5], [0.5, 0.5 + 1e-15]]])
    with pytest.raises(SplineFitError, match="nearly coincident"):
        PolyharmonicSpline(points, np.arange(8.0))


def test_spline_rejects_nan_values():
    with pytest.raises(ValueError, match="finite"):
        PolyharmonicSpline(_points(5, 2), np.array([1.0, np.nan, 2.0, 3.0, 4.0]))


def test_spline_evaluates_in_chunks_like_at_once(monkeypatch):
    points = _points(40, 4, seed=11)
    spline = PolyharmonicSpline(points, points[:, 0] ** 2)
    test = _points(300, 4, seed=12)
    whole = spline(test)
    monkeypatch.setattr("orchestrator.spline._CHUNK_ENTRIES", 100)
    np.testing.assert_allclose(spline(test), whole, rtol=1e-12, atol=1e-14)
    assert spline.gradient(test).shape == (300, 4)


def test_affine_rank_counts_independent_points():
    assert affine_rank(np.empty((0, 3))) == 0
    assert affine_rank(np.array([[0.0, 0.0, 0.0]])) == 1
    assert affine_rank(np.eye(3)) == 3
    assert affine_rank(np.vstack([np.zeros(3), np.eye(3)])) == 4
