"""Tests of the proposal and stopping rules."""

import numpy as np
import pytest

from orchestrator.rules import (
    SmoothedSpline,
    epsilon_met,
    srbf_candidates,
    srbf_select,
    stalled,
    weighted_score,
)
from orchestrator.search import SplineSearch
from orchestrator.space import Objective, Parameter, SearchSpace
from orchestrator.spline import PolyharmonicSpline


def test_weighted_score_scales_both_terms():
    values = np.array([0.0, 5.0, 10.0])
    distances = np.array([0.4, 0.2, 0.0])
    np.testing.assert_allclose(weighted_score(values, distances, 1.0), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(weighted_score(values, distances, 0.0), [1.0, 0.5, 0.0])
    np.testing.assert_allclose(weighted_score(values, distances, 0.75), [0.25, 0.5, 0.75])


def test_weighted_score_without_spread_and_bad_weight():
    np.testing.assert_allclose(weighted_score(np.ones(2), np.array([0.0, 1.0]), 0.5), [0.5, 1])
    with pytest.raises(ValueError, match="weight must lie in"):
        weighted_score(np.ones(2), np.ones(2), 1.5)


def _peak(x: np.ndarray) -> np.ndarray:
    return -np.sum((x - 0.3) ** 2, axis=1)


def test_srbf_select_trades_value_against_distance():
    candidates = np.array([[0.3, 0.3], [0.34, 0.3], [1.0, 1.0]])
    excluded = np.array([[0.3, 0.32]])
    # The peak itself lies closer than min_distance to the measured point.
    point, value = srbf_select(_peak, candidates, excluded, 0.03, 1.0)
    np.testing.assert_allclose(point, [0.34, 0.3])
    assert value == pytest.approx(-0.0016)
    point, _ = srbf_select(_peak, candidates, excluded, 0.03, 0.0)
    np.testing.assert_allclose(point, [1.0, 1.0])
    assert srbf_select(_peak, candidates[:2], excluded, 0.5, 1.0) is None


def test_srbf_candidates_lie_in_cube_and_contain_centres():
    centres = [np.array([0.0, 1.0]), np.array([0.5, 0.5])]
    candidates = srbf_candidates(centres, 2, np.random.default_rng(0))
    assert candidates.shape[1] == 2
    assert np.all((candidates >= 0.0) & (candidates <= 1.0))
    np.testing.assert_array_equal(candidates[-2:], np.array(centres))
    again = srbf_candidates(centres, 2, np.random.default_rng(0))
    np.testing.assert_array_equal(candidates, again)


def test_epsilon_met():
    assert epsilon_met(1.0, 1.2, 0.5)
    assert not epsilon_met(1.0, 1.6, 0.5)
    assert not epsilon_met(1.0, None, 0.5)


@pytest.mark.parametrize(
    ("values", "predicted", "expected"),
    [
        # Two agreeing incremental points are fewer than patience = 3.
        ([5.0, 6.0, 6.1, 6.0], [None, None, 6.0, 6.1], False),
        # Three agree and the best rose by 0.1 < epsilon: stalled.
        ([5.0, 6.0, 6.1, 6.0, 5.9], [None, None, 6.0, 6.1, 6.0], True),
        # One of the last three missed its prediction by 1.
        ([5.0, 6.0, 6.1, 6.0, 5.9], [None, None, 6.0, 7.0, 6.0], False),
        # They agree, but the best rose from 6.0 to 6.8.
        ([5.0, 6.0, 6.8, 6.6, 6.5], [None, None, 6.7, 6.6, 6.4], False),
        # Only the last three incremental points count; the first missed by 3.
        ([5.0, 6.0, 3.0, 6.1, 6.0, 5.9], [None, None, 6.0, 6.0, 6.1, 6.0], True),
    ],
)
def test_stalled_known_cases(values, predicted, expected):
    assert stalled(values, predicted, epsilon=0.5, patience=3) is expected


def test_stalled_rejects_bad_patience():
    with pytest.raises(ValueError, match="patience"):
        stalled([1.0], [1.0], 0.5, patience=0)


def test_smoothed_spline_limits():
    rng = np.random.default_rng(1)
    points = rng.uniform(size=(30, 2))
    values = 1.0 + 2.0 * points[:, 0] - points[:, 1] + 0.1 * rng.normal(size=30)
    exact = PolyharmonicSpline(points, values)
    zero = SmoothedSpline(points, values, 0.0)
    np.testing.assert_allclose(zero(points), exact(points), atol=1e-9)
    # A huge lambda forces the kernel coefficients to 0, leaving the least-squares plane.
    smooth = SmoothedSpline(points, values, 1e6)
    design = np.hstack([np.ones((30, 1)), points])
    plane, *_ = np.linalg.lstsq(design, values, rcond=None)
    np.testing.assert_allclose(smooth(points), design @ plane, atol=1e-4)
    with pytest.raises(ValueError, match="smoothing"):
        SmoothedSpline(points, values, -1.0)


def _space() -> SearchSpace:
    params = [Parameter("x", "float", 0.0, 1.0), Parameter("y", "float", 0.0, 1.0)]
    return SearchSpace(params, Objective("acc"))


def _bowl(params: dict) -> float:
    return 10.0 - 10.0 * ((params["x"] - 0.3) ** 2 + (params["y"] - 0.6) ** 2)


def _loop(search: SplineSearch, steps: int) -> None:
    for _ in range(steps):
        if search.stop_reason() is not None:
            return
        (proposal,) = search.ask()
        search.tell(proposal.params, _bowl(proposal.params), proposal.predicted)


def test_stall_rule_on_bowl():
    stall = SplineSearch(_space(), seed=0, epsilon=0.01, max_evaluations=40)
    _loop(stall, 40)
    assert stall.stop_reason() == "stall"
    _, best = stall.best()
    assert best > 9.99
    assert stall.predicted_gain() < 0.01
    epsilon = SplineSearch(_space(), seed=0, epsilon=0.01, stop_rule="epsilon")
    _loop(epsilon, 40)
    assert epsilon.stop_reason() == "epsilon"
    assert len(stall.measurements) >= len(epsilon.measurements) + 2


def test_stop_rule_none_runs_to_the_budget():
    search = SplineSearch(_space(), epsilon=100.0, stop_rule="none", max_evaluations=12)
    _loop(search, 20)
    assert search.stop_reason() == "max_evaluations"
    assert len(search.measurements) == 12


def test_srbf_and_argmax_settings():
    argmax = SplineSearch(_space(), seed=3, proposal_rule="argmax", stop_rule="none")
    srbf = SplineSearch(_space(), seed=3, weights=(0.0,), stop_rule="none")
    _loop(argmax, 7)
    _loop(srbf, 7)
    (a,) = argmax.ask()
    (s,) = srbf.ask()
    # Distance alone (weight 0) moves far from the 7 measured points; argmax does not.
    measured = np.array([srbf.space.to_unit(m.params) for m in srbf.measurements])
    far = np.min(np.linalg.norm(measured - srbf.space.to_unit(s.params), axis=1))
    near = np.min(np.linalg.norm(measured - argmax.space.to_unit(a.params), axis=1))
    assert far > near
    assert far > 0.2
    with pytest.raises(ValueError, match="proposal_rule"):
        SplineSearch(_space(), proposal_rule="ei")
    with pytest.raises(ValueError, match="weights"):
        SplineSearch(_space(), weights=(1.2,))
    with pytest.raises(ValueError, match="patience"):
        SplineSearch(_space(), patience=0)
    with pytest.raises(ValueError, match="smoothing"):
        SplineSearch(_space(), smoothing=-0.1)


def _epsilon_search() -> SplineSearch:
    """A search whose next measurement meets the epsilon rule: best 9.0 at (0.3, 0.6)."""
    search = SplineSearch(
        _space(), epsilon=0.5, stop_rule="epsilon", remeasure_best=True, max_evaluations=None
    )
    search.tell({"x": 0.3, "y": 0.6}, 9.0)
    search.tell({"x": 0.5, "y": 0.5}, 8.5)
    search.tell({"x": 0.1, "y": 0.1}, 1.0, predicted=1.2)
    return search


def test_remeasure_best_confirms_before_stopping():
    search = _epsilon_search()
    assert search.stop_reason() is None
    (repeat,) = search.ask()
    assert repeat.kind == "repeat"
    assert repeat.params == {"x": 0.3, "y": 0.6}
    # A pending repeat is not asked for twice.
    assert all(p.kind != "repeat" for p in search.ask(pending=[repeat.params]))
    search.tell(repeat.params, 8.8)
    assert search.stop_reason() == "epsilon"
    assert search.best() == ({"x": 0.3, "y": 0.6}, pytest.approx(8.9))


def test_remeasure_best_noisy_incumbent():
    search = _epsilon_search()
    (repeat,) = search.ask()
    search.tell(repeat.params, 7.0)
    # The mean 8.0 falls below 8.5 measured at (0.5, 0.5): the search goes on.
    assert search.stop_reason() is None
    assert search.best() == ({"x": 0.5, "y": 0.5}, 8.5)
    assert search.ask()[0].kind != "repeat"
