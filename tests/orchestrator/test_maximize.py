"""Tests of the hierarchical Halton maximizer."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from orchestrator.maximize import maximize, proposal_rng

OPTIMUM = np.array([0.3, 0.62, 0.45, 0.71])


def _quadratic(x: np.ndarray) -> np.ndarray:
    return 5.0 - np.sum((x - OPTIMUM[: x.shape[1]]) ** 2, axis=1)


@pytest.mark.parametrize("d", [2, 4])
def test_maximize_finds_interior_optimum(d):
    result = maximize(_quadratic, d, proposal_rng(0, 0))
    # Tolerance: 8 levels halve the box to an edge of 1/128, so the best sample lies
    # within about that distance of the optimum.
    assert np.linalg.norm(result.point - OPTIMUM[:d]) < 1e-2
    assert result.value == pytest.approx(5.0, abs=1e-4)


def test_maximize_gradient_polish_in_ten_dimensions():
    optimum = np.linspace(0.15, 0.85, 10)
    weights = np.arange(1.0, 11.0)

    def function(x: np.ndarray) -> np.ndarray:
        return -np.sum(weights * (x - optimum) ** 2, axis=1)

    def gradient(x: np.ndarray) -> np.ndarray:
        return -2.0 * weights * (x - optimum)

    plain = maximize(function, 10, proposal_rng(0, 0))
    polished = maximize(function, 10, proposal_rng(0, 0), gradient=gradient)
    # Sampling alone ends about 0.05 away in 10-d; the polish reaches the optimum.
    assert np.linalg.norm(plain.point - optimum) > 1e-3
    assert np.linalg.norm(polished.point - optimum) < 1e-4


def test_maximize_polish_keeps_min_distance():
    def gradient(x: np.ndarray) -> np.ndarray:
        return -2.0 * (x - OPTIMUM[:2])

    excluded = OPTIMUM[None, :2]
    result = maximize(
        _quadratic,
        2,
        proposal_rng(0, 1),
        excluded=excluded,
        min_distance=0.2,
        gradient=gradient,
    )
    assert np.linalg.norm(result.point - OPTIMUM[:2]) >= 0.2


def test_maximize_snaps_optimum_on_bound():
    result = maximize(lambda x: x[:, 0] - (x[:, 1] - 0.4) ** 2, 2, proposal_rng(1, 0))
    assert result.point[0] == 1.0
    assert result.point[1] == pytest.approx(0.4, abs=1e-2)


def test_maximize_respects_min_distance():
    excluded = np.array([OPTIMUM[:3], [0.3, 0.6, 0.5]])
    result = maximize(_quadratic, 3, proposal_rng(0, 3), excluded=excluded, min_distance=0.1)
    assert cdist(result.point[None, :], excluded).min() >= 0.1
    # The best admissible point sits on the sphere of radius 0.1 around the optimum.
    assert np.linalg.norm(result.point - OPTIMUM[:3]) < 0.13


def test_maximize_rounds_candidates():
    def round_points(x: np.ndarray) -> np.ndarray:
        return np.round(x * 10) / 10

    result = maximize(_quadratic, 2, proposal_rng(0, 0), round_points=round_points)
    np.testing.assert_allclose(result.point, [0.3, 0.6])


def test_maximize_returns_none_without_admissible_point():
    grid = np.array([[i / 4, j / 4] for i in range(5) for j in range(5)])

    def round_points(x: np.ndarray) -> np.ndarray:
        return np.round(x * 4) / 4

    result = maximize(
        _quadratic,
        2,
        proposal_rng(0, 0),
        round_points=round_points,
        excluded=grid,
        min_distance=0.01,
    )
    assert result is None


def test_maximize_same_seed_same_result():
    first = maximize(_quadratic, 3, proposal_rng(5, 2))
    second = maximize(_quadratic, 3, proposal_rng(5, 2))
    np.testing.assert_array_equal(first.point, second.point)


def test_proposal_rng_differs_by_index():
    draws = [proposal_rng(5, index).random(4) for index in range(3)]
    assert not np.array_equal(draws[0], draws[1])
    assert not np.array_equal(draws[1], draws[2])
    assert not np.array_equal(proposal_rng(5, 0, 1).random(4), draws[0])
    different = maximize(_quadratic, 3, proposal_rng(5, 3))
    assert not np.array_equal(different.point, maximize(_quadratic, 3, proposal_rng(5, 2)).point)


def test_maximize_rejects_bad_shrink():
    with pytest.raises(ValueError, match="shrink"):
        maximize(_quadratic, 2, proposal_rng(0, 0), shrink=1.0)
