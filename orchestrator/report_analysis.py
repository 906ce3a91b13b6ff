"""Numbers behind ``spline-nas report``: splines per choice combination, sensitivity,
boundary advice and the size of the search space.

The splines come from :class:`orchestrator.search.SplineSearch` fed with the measured
points in measurement order, so the report shows the surrogate the search itself
maximizes. Everything here works in objective units (a ``minimize`` objective is not
negated) and in the parameters' own units unless a name says ``unit``, which means
the normalized [0, 1] coordinates of :class:`orchestrator.space.SearchSpace`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orchestrator.maximize import maximize, proposal_rng
from orchestrator.search import Combination, SplineSearch
from orchestrator.space import Parameter, SearchSpace
from orchestrator.spline import PolyharmonicSpline, affine_rank

# Coordinates closer than this to 0 or 1 lie on a bound (as in SearchSpace.on_boundary).
_ON_BOUND = 1e-9
# Share of the range by which boundary advice widens a range.
WIDEN_FRACTION = 0.5
_DESIGN_LOGGER = "orchestrator.design"
# Points per 1-D slice of the sensitivity analysis.
_SLICE_POINTS = 101


@dataclass(frozen=True)
class ReportPoint:
    """One row of the points table.

    Attributes
    ----------
    label : str
        Trial id, or ``row N`` for line N of a measurements file.
    kind : {"initial", "incremental"}
        Initial-design point or spline proposal.
    params : dict
        Parameter values.
    value : float or None
        Measured objective; None when not measured (yet).
    predicted : float or None
        Spline prediction made before the point was measured.
    gpu_hours : float or None
        GPU hours the point cost; None when unknown.
    state : str
        Trial state such as ``done``, ``submitted`` or ``failed``.
    order : int or None
        Position (from 1) among the measurements; None when not measured.
    """

    label: str
    kind: str
    params: dict[str, Any]
    value: float | None
    predicted: float | None
    gpu_hours: float | None
    state: str
    order: int | None = None


class ObjectiveSpline:
    """A fitted spline of one combination in objective units over normalized coordinates."""

    def __init__(self, spline: PolyharmonicSpline, sign: float):
        self.internal = spline
        self.sign = sign

    def __call__(self, unit: np.ndarray) -> np.ndarray:
        return self.sign * self.internal(unit)

    def gradient(self, unit: np.ndarray) -> np.ndarray:
        return self.sign * self.internal.gradient(unit)


@dataclass(frozen=True)
class Sensitivity:
    """Effect of one parameter along a slice through the best point."""

    name: str
    spread: float
    slope: float
    slice_min: float
    slice_max: float


@dataclass(frozen=True)
class BoundaryAdvice:
    """A bound at which the spline still improves outward, with a wider range."""

    name: str
    where: str
    side: str
    bound: float
    slope: float
    new_low: float
    new_high: float
    note: str = ""


@dataclass
class ComboAnalysis:
    """Spline, best point, sensitivity and boundary advice of one choice combination."""

    combo: Combination
    points: list[ReportPoint]
    spline: ObjectiveSpline | None = None
    missing_points: int = 0
    fit_error: str = ""
    best: ReportPoint | None = None
    best_unit: np.ndarray | None = None
    maximum_unit: np.ndarray | None = None
    maximum_params: dict[str, Any] | None = None
    maximum_value: float | None = None
    sensitivity: list[Sensitivity] = field(default_factory=list)
    advice: list[BoundaryAdvice] = field(default_factory=list)


def measured_points(points: list[ReportPoint]) -> list[ReportPoint]:
    """Return the measured points in measurement order."""
    done = [p for p in points if p.value is not None and p.order is not None]
    return sorted(done, key=lambda p: p.order or 0)


def best_point(space: SearchSpace, points: list[ReportPoint]) -> ReportPoint | None:
    """Return the measured point with the best objective (the first one on ties)."""
    done = measured_points(points)
    if not done:
        return None
    sign = space.objective.sign
    return max(done, key=lambda p: sign * (p.value or 0.0))


def analyse(space: SearchSpace, points: list[ReportPoint], seed: int = 0) -> list[ComboAnalysis]:
    """Fit each combination's spline as the search does and analyse it.

    Parameters
    ----------
    space : SearchSpace
        Space of the points.
    points : list of ReportPoint
        All points; only measured ones enter the splines.
    seed : int
        Seed of the maximizer that locates each spline's maximum.
    """
    done = measured_points(points)
    search = replay(space, [(p.params, float(p.value or 0.0), p.predicted) for p in done], seed)
    analyses = []
    for number, combo in enumerate(space.combinations()):
        members = [p for p in done if space.combination_of(p.params) == combo]
        analysis = ComboAnalysis(combo, members)
        _fit(space, search, analysis)
        if analysis.spline is not None:
            _locate(space, analysis, seed, number)
        analyses.append(analysis)
    return analyses


@contextmanager
def quiet_search() -> Iterator[None]:
    """Hide the search's INFO lines (design merges, measurements) while the report replays."""
    loggers = [logging.getLogger(name) for name in (SplineSearch.__module__, _DESIGN_LOGGER)]
    levels = [item.level for item in loggers]
    for item in loggers:
        item.setLevel(max(item.level, logging.WARNING))
    try:
        yield
    finally:
        for item, level in zip(loggers, levels, strict=True):
            item.setLevel(level)


def replay(
    space: SearchSpace,
    measurements: list[tuple[dict[str, Any], float, float | None]],
    seed: int = 0,
) -> SplineSearch:
    """Return a search fed ``(params, value, predicted)`` in order, without a budget."""
    with quiet_search():
        search = SplineSearch(
            space, seed=seed, max_evaluations=None, complete_initial_design=False
        )
        for params, value, predicted in measurements:
            search.tell(params, value, predicted)
    return search


def _fit(space: SearchSpace, search: SplineSearch, analysis: ComboAnalysis) -> None:
    """Set the spline of ``analysis``, or why it cannot be fitted yet."""
    analysis.best = best_point(space, analysis.points)
    if analysis.best is not None:
        analysis.best_unit = space.to_unit(analysis.best.params)
    units = np.array([space.to_unit(p.params) for p in analysis.points]).reshape(-1, space.dim)
    rank = affine_rank(units)
    if rank <= space.dim:
        analysis.missing_points = space.dim + 1 - rank
        return
    # Reuse the search's own fit so that the report shows the spline it maximizes.
    spline = search._fit(analysis.combo, [])
    if spline is None:
        analysis.fit_error = (
            "the spline system is numerically singular; some measured points are nearly coincident"
        )
        return
    analysis.spline = ObjectiveSpline(spline, space.objective.sign)


def _locate(space: SearchSpace, analysis: ComboAnalysis, seed: int, number: int) -> None:
    """Find the spline maximum, then compute sensitivity and boundary advice."""
    spline = analysis.spline
    assert spline is not None and analysis.best_unit is not None
    result = maximize(
        spline.internal,
        space.dim,
        proposal_rng(seed, 0, number),
        round_points=space.round_unit,
        gradient=spline.internal.gradient,
    )
    if result is not None:
        analysis.maximum_unit = np.asarray(result.point, dtype=float)
        analysis.maximum_params = space.from_unit(result.point, analysis.combo)
        analysis.maximum_value = float(spline(result.point[None, :])[0])
    analysis.sensitivity = sensitivity(space, spline, analysis.best_unit)
    analysis.advice = boundary_advice(space, spline, analysis.best_unit, "best measured point")
    if analysis.maximum_unit is not None:
        known = {(a.name, a.side) for a in analysis.advice}
        for advice in boundary_advice(
            space, spline, analysis.maximum_unit, f"spline {optimum_word(space)}"
        ):
            if (advice.name, advice.side) not in known:
                analysis.advice.append(advice)


def optimum_word(space: SearchSpace) -> str:
    """Return "maximum" or "minimum", the spline optimum for the objective's direction."""
    return "maximum" if space.objective.direction == "maximize" else "minimum"


def unit_slope(param: Parameter, value: float) -> float:
    """Return d(unit)/d(value) of ``param`` at ``value``."""
    if param.log:
        return 1.0 / (value * math.log(param.high / param.low))
    return 1.0 / (param.high - param.low)


def sensitivity(
    space: SearchSpace, spline: ObjectiveSpline, unit: np.ndarray
) -> list[Sensitivity]:
    """Rank the parameters by the spline's spread along 1-D slices through ``unit``.

    The slope is the spline gradient at ``unit`` in objective units per unit of the
    parameter.
    """
    gradient = spline.gradient(unit[None, :])[0]
    rows = []
    for k, param in enumerate(space.numeric):
        grid = np.repeat(unit[None, :], _SLICE_POINTS, axis=0)
        grid[:, k] = np.linspace(0.0, 1.0, _SLICE_POINTS)
        values = spline(grid)
        value = float(param.from_unit(np.array([unit[k]]))[0])
        slope = float(gradient[k]) * unit_slope(param, value)
        rows.append(
            Sensitivity(
                param.name,
                float(values.max() - values.min()),
                slope,
                float(values.min()),
                float(values.max()),
            )
        )
    return sorted(rows, key=lambda row: -row.spread)


def boundary_advice(
    space: SearchSpace, spline: ObjectiveSpline, unit: np.ndarray, where: str
) -> list[BoundaryAdvice]:
    """Name the bounds at ``unit`` across which the spline still improves.

    ``where`` describes the point ("best measured point", "spline maximum").
    """
    # Improvement direction: the gradient of the maximized (sign-corrected) spline.
    rising = spline.internal.gradient(unit[None, :])[0]
    tolerance = 1e-9 * max(1.0, float(np.max(np.abs(spline.internal.values))))
    advice = []
    for k, param in enumerate(space.numeric):
        if unit[k] <= _ON_BOUND and rising[k] < -tolerance:
            side, bound = "low", param.low
        elif unit[k] >= 1.0 - _ON_BOUND and rising[k] > tolerance:
            side, bound = "high", param.high
        else:
            continue
        slope = spline.sign * float(rising[k]) * unit_slope(param, bound)
        new_low, new_high, note = widened_range(param, side)
        advice.append(
            BoundaryAdvice(param.name, where, side, bound, slope, new_low, new_high, note)
        )
    return advice


def widened_range(
    param: Parameter, side: str, fraction: float = WIDEN_FRACTION
) -> tuple[float, float, str]:
    """Return ``(low, high, note)`` with one side moved out by ``fraction`` of the range.

    A log-scaled range grows by the same fraction of its log width. Integer bounds are
    rounded outward and step bounds moved by whole steps. A non-negative low bound is
    not moved below half its value (nor an integer one below 1), since widths, counts
    and rates are rarely negative; when the bound cannot move, the note explains why.
    """
    low, high = param.low, param.high
    if param.log:
        factor = (high / low) ** fraction
        new = high * factor if side == "high" else low / factor
    else:
        delta = fraction * (high - low)
        new = high + delta if side == "high" else low - delta
    note = ""
    if side == "low" and not param.log and low >= 0 and new < low / 2:
        new = low / 2
    if param.step is not None:
        steps = math.ceil(abs(new - (high if side == "high" else low)) / param.step - 1e-9)
        if side == "low" and low >= 0:
            steps = min(steps, math.floor(low / param.step + 1e-9))
        new = high + steps * param.step if side == "high" else low - steps * param.step
    elif param.type == "int":
        new = float(math.ceil(new) if side == "high" else math.floor(new))
        if side == "low" and low >= 1:
            new = max(new, 1.0)
    if param.type == "float":
        new = float(param.python_value(new))
    if side == "low" and new == low:
        note = f"the low bound {low:g} cannot move lower without negative values or zero"
    return (low, new, note) if side == "high" else (new, high, note)


def space_size(space: SearchSpace) -> int | None:
    """Return the number of legal parameter combinations, or None if a float is continuous."""
    total = 1
    for param in space.parameters:
        if not param.is_numeric:
            total *= len(param.choices)
        elif param.step is not None:
            total *= int(round((param.high - param.low) / param.step)) + 1
        elif param.type == "int":
            total *= int(param.high - param.low) + 1
        else:
            return None
    return total
