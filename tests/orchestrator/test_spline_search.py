"""Tests of the ask/tell spline search."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from orchestrator.search import SplineSearch
from orchestrator.space import Objective, Parameter, SearchSpace


def _space(direction: str = "maximize", choices: tuple = ()) -> SearchSpace:
    params = [
        Parameter("c1", "int", 32, 150),
        Parameter("phi", "float", 1.0, 2.0, step=0.1),
        Parameter("lr", "float", 0.001, 0.1, log=True),
    ]
    if choices:
        params.append(Parameter("stem", "choice", choices=choices))
    return SearchSpace(params, Objective("top1", direction))


def _accuracy(params: dict) -> float:
    """Smooth test objective with its maximum 90 at c1=100, phi=1.4, lr=0.01."""
    value = (
        90.0
        - 20.0 * ((params["c1"] - 100) / 118) ** 2
        - 15.0 * (params["phi"] - 1.4) ** 2
        - 4.0 * np.log10(params["lr"] / 0.01) ** 2
    )
    if params.get("stem") == "deep":
        value += 3.0
    return float(value)


def _run(search: SplineSearch, steps: int, objective=_accuracy) -> list:
    """Ask and tell one point at a time; return the proposals."""
    proposals = []
    for _ in range(steps):
        if search.stop_reason() is not None:
            break
        (proposal,) = search.ask()
        proposals.append(proposal)
        search.tell(proposal.params, objective(proposal.params), proposal.predicted)
    return proposals


def _unit(space: SearchSpace, params_list: list[dict]) -> np.ndarray:
    return np.array([space.to_unit(p) for p in params_list])


def test_search_starts_with_initial_design():
    space = _space()
    search = SplineSearch(space)
    proposals = search.ask(count=20)
    initial = [p for p in proposals if p.kind == "initial"]
    assert len(initial) == 9
    assert proposals[:9] == initial
    assert all(p.predicted is None for p in initial)
    assert initial[0].params == {"c1": 150, "phi": 2.0, "lr": pytest.approx(0.1)}
    assert initial[2].params == {"c1": 91, "phi": 1.5, "lr": pytest.approx(0.01)}
    assert isinstance(initial[0].params["c1"], int)
    # Nothing is measured yet, so no spline exists to propose more points.
    assert len(proposals) == 9
    assert search.proposal_index == 9


def test_search_skips_measured_and_pending_initial_points():
    search = SplineSearch(_space())
    first = search.ask(count=3)
    search.tell(first[0].params, 50.0)
    proposals = search.ask(count=2, pending=[first[1].params, first[2].params])
    assert [p.params for p in proposals] == [p.params for p in SplineSearch(_space()).ask(5)[3:]]


def test_search_loop_stops_by_epsilon_and_reports_best():
    search = SplineSearch(_space(), seed=3, epsilon=0.5, max_evaluations=40, stop_rule="epsilon")
    proposals = _run(search, 40)
    assert search.stop_reason() == "epsilon"
    assert len(proposals) < 40
    last = proposals[-1]
    assert last.kind == "incremental"
    assert abs(_accuracy(last.params) - last.predicted) < 0.5
    params, value = search.best()
    assert value == max(_accuracy(p.params) for p in proposals)
    assert value > 88.0
    assert abs(params["c1"] - 100) <= 25


def test_search_minimize_direction():
    search = SplineSearch(
        _space("minimize"), seed=1, epsilon=0.5, max_evaluations=40, stop_rule="epsilon"
    )
    proposals = _run(search, 40, objective=lambda p: -_accuracy(p))
    assert search.stop_reason() == "epsilon"
    params, value = search.best()
    assert value == min(-_accuracy(p.params) for p in proposals)
    assert value < -88.0
    assert proposals[-1].predicted < 0


def test_search_epsilon_rule_only_for_incremental_points():
    search = SplineSearch(_space(), epsilon=0.5, stop_rule="epsilon")
    params = {"c1": 40, "phi": 1.2, "lr": 0.01}
    search.tell(params, 50.0)
    assert search.stop_reason() is None
    search.tell(params, 50.0, predicted=51.0)
    assert search.stop_reason() is None
    search.tell(params, 50.0, predicted=50.4)
    assert search.stop_reason() == "epsilon"
    search.tell(params, 50.0, predicted=70.0)
    assert search.stop_reason() == "epsilon"


def test_search_state_round_trip():
    search = _measured_search(seed=2)
    state = search.state()
    rebuilt = SplineSearch.from_state(_space(), state)
    assert rebuilt.state() == state
    assert rebuilt.best() == search.best()


def test_search_stops_at_max_evaluations():
    search = SplineSearch(_space(), epsilon=1e-9, max_evaluations=11)
    proposals = _run(search, 20)
    assert len(proposals) == 11
    assert search.stop_reason() == "max_evaluations"
    assert search.ask(count=3) == []


def test_search_count_capped_by_budget():
    search = SplineSearch(_space(), max_evaluations=12)
    for proposal in search.ask(count=9):
        search.tell(proposal.params, _accuracy(proposal.params))
    pending = [search.ask()[0].params]
    assert len(search.ask(count=10, pending=pending)) == 2


def test_search_waits_for_pending_initial_design():
    search = SplineSearch(_space(), max_evaluations=20)
    pending = [p.params for p in search.ask(count=4)]
    assert len(search.ask(count=10, pending=pending)) == 5


def test_search_rejects_budget_below_initial_design():
    with pytest.raises(ValueError, match="raise it to at least 9"):
        SplineSearch(_space(), max_evaluations=8)
    with pytest.raises(ValueError, match="at least 18"):
        SplineSearch(_space(choices=("a", "b")), max_evaluations=17)


def test_search_rejects_unknown_stop_rule():
    with pytest.raises(ValueError, match="unknown stop_rule 'patience'"):
        SplineSearch(_space(), stop_rule="patience")


def test_search_tell_rejects_bad_values():
    search = SplineSearch(_space())
    params = {"c1": 40, "phi": 1.2, "lr": 0.01}
    with pytest.raises(ValueError, match="finite"):
        search.tell(params, float("nan"))
    with pytest.raises(ValueError, match="outside its range"):
        search.tell({**params, "c1": 10}, 1.0)
    assert search.measurements == []


def _measured_search(seed: int = 0, **kwargs) -> SplineSearch:
    search = SplineSearch(_space(), seed=seed, **kwargs)
    for proposal in search.ask(count=9):
        search.tell(proposal.params, _accuracy(proposal.params))
    return search


def test_search_proposals_keep_min_distance():
    search = _measured_search(min_distance=0.15)
    pending = [{"c1": 100, "phi": 1.4, "lr": 0.01}, {"c1": 110, "phi": 1.5, "lr": 0.02}]
    proposals = search.ask(count=4, pending=pending)
    assert [p.kind for p in proposals] == ["incremental"] * 4
    chosen = _unit(search.space, [p.params for p in proposals])
    measured = _unit(search.space, [m.params for m in search.measurements])
    others = np.vstack([measured, _unit(search.space, pending)])
    assert cdist(chosen, others).min() >= 0.15 - 1e-9
    between = cdist(chosen, chosen)[np.triu_indices(4, k=1)]
    assert between.min() >= 0.15 - 1e-9


def test_search_pending_points_change_proposals():
    without = _measured_search().ask()[0]
    pending = [without.params]
    with_pending = _measured_search().ask(pending=pending)[0]
    assert with_pending.params != without.params


def test_search_same_history_same_proposals():
    first = _measured_search(seed=4).ask(count=3)
    second = _measured_search(seed=4).ask(count=3)
    assert [p.params for p in first] == [p.params for p in second]
    assert [p.predicted for p in first] == [p.predicted for p in second]


def test_search_different_index_different_draws():
    first = _measured_search(seed=4, proposal_index=9).ask()[0]
    second = _measured_search(seed=4, proposal_index=10).ask()[0]
    assert first.params != second.params


def test_search_resume_matches_uninterrupted_run():
    uninterrupted = SplineSearch(_space(), seed=7, epsilon=0.0)
    proposals = _run(uninterrupted, 14)

    partial = SplineSearch(_space(), seed=7, epsilon=0.0)
    _run(partial, 11)
    resumed = SplineSearch.from_state(_space(), partial.state(), epsilon=0.0)
    assert resumed.proposal_index == 11
    continued = _run(resumed, 3)
    assert [p.params for p in continued] == [p.params for p in proposals[11:]]
    assert [p.predicted for p in continued] == [p.predicted for p in proposals[11:]]


def test_search_one_spline_per_choice():
    space = _space(choices=("basic", "deep"))
    search = SplineSearch(space, seed=2, max_evaluations=60)
    initial = search.ask(count=18)
    assert [p.params["stem"] for p in initial] == ["basic"] * 9 + ["deep"] * 9
    assert {tuple(sorted(p.params.items())) for p in initial[:9]} != set()
    assert [p.params["c1"] for p in initial[:9]] == [p.params["c1"] for p in initial[9:]]
    for proposal in initial:
        search.tell(proposal.params, _accuracy(proposal.params))
    assert search._fit(("basic",), []) is not search._fit(("deep",), [])
    proposals = search.ask(count=3)
    # The deep stem adds 3 points everywhere, so its spline wins every proposal.
    assert [p.params["stem"] for p in proposals] == ["deep"] * 3


def test_search_choice_without_points_gets_initial_design_first():
    space = _space(choices=("basic", "deep"))
    search = SplineSearch(space, complete_initial_design=False, max_evaluations=None)
    for proposal in search.ask(count=9):
        search.tell(proposal.params, _accuracy(proposal.params))
    proposals = search.ask(count=10)
    assert [p.kind for p in proposals] == ["initial"] * 9 + ["incremental"]
    assert all(p.params["stem"] == "deep" for p in proposals[:9])
    assert proposals[9].params["stem"] == "basic"


def test_search_boundary_flags_on_spline_proposal():
    # Increasing in c1 and phi: the spline maximum lies on their upper bounds.
    search = SplineSearch(_space(), seed=0)

    def increasing(p: dict) -> float:
        return p["c1"] / 10 + p["phi"] - 3 * np.log10(p["lr"] / 0.01) ** 2

    for proposal in search.ask(count=9):
        search.tell(proposal.params, increasing(proposal.params))
    proposal = search.ask()[0]
    assert proposal.params["c1"] == 150
    assert proposal.on_boundary.get("c1") == "high"
    assert "lr" not in proposal.on_boundary


def test_search_pending_near_measured_point_still_proposes():
    search = _measured_search()
    measured = search.measurements[2].params
    near = {**measured, "lr": measured["lr"] * (1 + 1e-13)}
    proposals = search.ask(pending=[near])
    assert len(proposals) == 1
    assert proposals[0].kind == "incremental"
