"""Tests of the 2d + 3 initial design."""

import logging

import numpy as np
import pytest

from orchestrator.design import initial_design, initial_design_unit
from orchestrator.space import Objective, Parameter, SearchSpace


def _float_space(d: int) -> SearchSpace:
    params = [Parameter(f"x{k}", "float", 0.0, 1.0) for k in range(d)]
    return SearchSpace(params, Objective("y"))


def _expected_set(d: int) -> set[tuple[float, ...]]:
    points = {tuple([1.0] * d), tuple([0.0] * d), tuple([0.5] * d)}
    for k in range(d):
        points.add(tuple(0.0 if j == k else 1.0 for j in range(d)))
        points.add(tuple(1.0 if j == k else 0.0 for j in range(d)))
    return points


@pytest.mark.parametrize("d", [3, 5])
def test_design_has_2d_plus_3_points(d):
    design = initial_design(_float_space(d))
    assert design.shape == (2 * d + 3, d)
    assert {tuple(p) for p in design} == _expected_set(d)


def test_design_order_starts_with_corners_and_centre():
    design = initial_design_unit(3)
    np.testing.assert_array_equal(design[:3], [[1, 1, 1], [0, 0, 0], [0.5, 0.5, 0.5]])
    np.testing.assert_array_equal(design[3:5], [[0, 1, 1], [1, 0, 0]])


def test_design_d2_merges_coinciding_points(caplog):
    with caplog.at_level(logging.INFO, logger="orchestrator.design"):
        design = initial_design(_float_space(2))
    unrounded = initial_design_unit(2)
    assert len(unrounded) == 7
    assert len({tuple(p) for p in unrounded}) == 5
    assert design.shape == (5, 2)
    assert {tuple(p) for p in design} == _expected_set(2)
    assert "2 of 7 points coincide" in caplog.text


def test_design_rounds_to_legal_values():
    params = [
        Parameter("c1", "int", 32, 151),
        Parameter("phi", "float", 1.0, 2.0, step=0.25),
        Parameter("k", "int", 0, 1),
    ]
    space = SearchSpace(params, Objective("y"))
    design = initial_design(space)
    values = [space.from_unit(p, ()) for p in design]
    centre = values[2]
    # numpy rounds half to even: the centre 91.5 becomes 92 and k's centre 0.5 becomes 0.
    assert centre == {"c1": 92, "phi": 1.5, "k": 0}
    assert all(isinstance(v["c1"], int) for v in values)
    assert len(design) == 2 * 3 + 3


def test_design_merges_after_rounding(caplog):
    # With two int parameters in [0, 1] the centre rounds onto the all-minimum corner.
    params = [Parameter("a", "int", 0, 1), Parameter("b", "int", 0, 1)]
    space = SearchSpace(params, Objective("y"))
    with caplog.at_level(logging.INFO, logger="orchestrator.design"):
        design = initial_design(space)
    assert len(design) == 4
    assert "3 of 7 points coincide" in caplog.text


def test_design_rejects_zero_dimensions():
    with pytest.raises(ValueError, match="at least 1"):
        initial_design_unit(0)
