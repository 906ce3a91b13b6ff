"""Ask/tell spline search: initial design, spline proposals and the stop rule.

The search keeps no state besides its measurements and a proposal counter, so a
controller rebuilds it after a restart by replaying its journal::

    search = SplineSearch(space, seed=0, proposal_index=proposals_made)
    for params, value, predicted in journal_measurements:
        search.tell(params, value, predicted)

``ask`` then returns the same proposals as an uninterrupted run would, given the same
pending points. :meth:`SplineSearch.state` and :meth:`SplineSearch.from_state` do the
same with a plain dict.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orchestrator.design import initial_design
from orchestrator.maximize import (
    DEFAULT_LEVELS,
    DEFAULT_SAMPLES_PER_LEVEL,
    maximize,
    proposal_rng,
)
from orchestrator.space import SearchSpace
from orchestrator.spline import PolyharmonicSpline, SplineFitError, affine_rank

logger = logging.getLogger(__name__)

Combination = tuple[str | int, ...]
# Two normalized points closer than this are the same point (an initial-design point
# counts as measured when a measurement lies this close to it).
_SAME_POINT = 1e-9


@dataclass(frozen=True)
class Proposal:
    """A point to measure next.

    Attributes
    ----------
    params : dict
        Parameter values, ints as int, floats rounded to their step grid.
    predicted : float or None
        Spline prediction of the objective; None for initial-design points.
    kind : {"initial", "incremental"}
        Whether the point belongs to the initial design or maximizes the spline.
    on_boundary : dict
        Numeric parameters of a spline proposal that lie at a bound of the search box,
        mapped to "low" or "high". Such a flag hints that the range may be too narrow.
        Empty for initial-design points.
    index : int
        Proposal index, counted over all proposals of the search.
    """

    params: dict[str, Any]
    predicted: float | None
    kind: str
    on_boundary: dict[str, str] = field(default_factory=dict)
    index: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-compatible dict of the proposal."""
        return {
            "params": dict(self.params),
            "predicted": self.predicted,
            "kind": self.kind,
            "on_boundary": dict(self.on_boundary),
        }


@dataclass(frozen=True)
class Measurement:
    """One measured point, as passed to :meth:`SplineSearch.tell`."""

    params: dict[str, Any]
    value: float
    predicted: float | None = None


def _epsilon_rule(search: SplineSearch, measurement: Measurement) -> bool:
    """Stop when an incremental point's measurement is within epsilon of its prediction."""
    if measurement.predicted is None:
        return False
    return abs(measurement.value - measurement.predicted) < search.epsilon


StopRule = Callable[["SplineSearch", Measurement], bool]
STOP_RULES: dict[str, StopRule] = {"epsilon": _epsilon_rule}


@dataclass
class _Pool:
    """Points of one choice combination in normalized coordinates, with values to maximize."""

    points: list[np.ndarray] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def arrays(self, dim: int) -> tuple[np.ndarray, np.ndarray]:
        if not self.points:
            return np.empty((0, dim)), np.empty(0)
        return np.array(self.points), np.array(self.values)


class SplineSearch:
    """Polyharmonic-spline search driven by ``ask`` and ``tell``.

    Each combination of choice values has its own initial design (2d + 3 points, see
    :func:`orchestrator.design.initial_design`) and its own spline over the numeric
    parameters. ``ask`` first returns initial-design points that are neither measured
    nor pending, then points that maximize the splines, the best over combinations.
    Internally the objective is maximized; a ``minimize`` objective is negated.

    Parameters
    ----------
    space : SearchSpace
        Parameters and objective.
    seed : int
        Experiment seed. Proposal k draws its samples from ``SeedSequence([seed, k, c])``
        for combination c, so proposals depend only on the seed, the proposal index and
        the history.
    epsilon : float
        The ``epsilon`` stop rule ends the search when an incremental point's
        measurement differs from its prediction by less than this (objective units).
    min_distance : float
        Minimum Euclidean distance in normalized [0, 1]^d coordinates between a
        spline proposal and every measured or pending point of its combination.
    max_evaluations : int or None
        Stop after this many measurements; ``ask`` never proposes more points than
        the remaining budget allows. None means no limit.
    stop_rule : str
        Name of the rule checked after each measurement; one of ``STOP_RULES``.
    proposal_index : int
        Number of proposals made so far (all kinds); set it when rebuilding a search.
    complete_initial_design : bool
        If True (default), every combination's initial design is proposed in full.
        If False, a combination whose measured points already determine its spline
        gets no initial-design points (used by the offline ``propose`` command).
    samples_per_level, levels : int
        Maximizer settings, see :func:`orchestrator.maximize.maximize`.

    Raises
    ------
    ValueError
        When ``max_evaluations`` is smaller than the complete initial design, or on an
        unknown ``stop_rule``.
    """

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        epsilon: float = 0.5,
        min_distance: float = 0.05,
        max_evaluations: int | None = 30,
        stop_rule: str = "epsilon",
        proposal_index: int = 0,
        complete_initial_design: bool = True,
        samples_per_level: int = DEFAULT_SAMPLES_PER_LEVEL,
        levels: int = DEFAULT_LEVELS,
    ):
        if stop_rule not in STOP_RULES:
            raise ValueError(
                f"unknown stop_rule {stop_rule!r}; valid rules are {', '.join(STOP_RULES)}"
            )
        if min_distance < 0:
            raise ValueError(f"min_distance must be >= 0, got {min_distance}")
        self.space = space
        self.seed = int(seed)
        self.epsilon = float(epsilon)
        self.min_distance = float(min_distance)
        self.max_evaluations = max_evaluations
        self.stop_rule = stop_rule
        self.proposal_index = int(proposal_index)
        self.complete_initial_design = complete_initial_design
        self.samples_per_level = samples_per_level
        self.levels = levels
        self.combinations = space.combinations()
        self.design = initial_design(space)
        self.measurements: list[Measurement] = []
        self._pools = {combo: _Pool() for combo in self.combinations}
        self._stop: str | None = None

        design_size = len(self.design) * len(self.combinations)
        if complete_initial_design and max_evaluations is not None:
            if max_evaluations < design_size:
                raise ValueError(
                    f"max_evaluations={max_evaluations} is smaller than the initial design "
                    f"({len(self.design)} points x {len(self.combinations)} choice "
                    f"combinations = {design_size}); raise it to at least {design_size}"
                )

    # -- state ---------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Return the JSON-compatible state that :meth:`from_state` rebuilds a search from."""
        return {
            "seed": self.seed,
            "proposal_index": self.proposal_index,
            "measurements": [
                {"params": m.params, "value": m.value, "predicted": m.predicted}
                for m in self.measurements
            ],
        }

    @classmethod
    def from_state(cls, space: SearchSpace, state: dict[str, Any], **kwargs: Any) -> SplineSearch:
        """Rebuild a search by replaying the measurements of :meth:`state`.

        ``kwargs`` are the other constructor arguments (epsilon, min_distance, ...).
        """
        search = cls(space, seed=state["seed"], proposal_index=state["proposal_index"], **kwargs)
        for item in state["measurements"]:
            search.tell(item["params"], item["value"], item.get("predicted"))
        return search

    # -- tell ----------------------------------------------------------------------

    def tell(self, params: dict[str, Any], value: float, predicted: float | None = None) -> None:
        """Record a measurement and check the stop rules.

        Parameters
        ----------
        params : dict
            Measured point; must lie in the search box, but not necessarily on its grid.
        value : float
            Finite measured objective.
        predicted : float or None
            The proposal's ``predicted`` value; None for initial-design or foreign
            points, which the ``epsilon`` rule ignores.
        """
        params = self.space.check_params(params)
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"measured value must be finite, got {value} at {params}")
        measurement = Measurement(params, value, None if predicted is None else float(predicted))
        self.measurements.append(measurement)
        pool = self._pools[self.space.combination_of(params)]
        pool.points.append(self.space.to_unit(params))
        pool.values.append(self.space.objective.sign * value)
        logger.info(
            "measured %s: %s = %.6g (predicted %s)",
            params,
            self.space.objective.name,
            value,
            "none" if predicted is None else f"{predicted:.6g}",
        )
        self._check_stop(measurement)

    def _check_stop(self, measurement: Measurement) -> None:
        if self._stop is not None:
            return
        if STOP_RULES[self.stop_rule](self, measurement):
            self._stop = self.stop_rule
        elif self.max_evaluations is not None and len(self.measurements) >= self.max_evaluations:
            self._stop = "max_evaluations"
        if self._stop is not None:
            logger.info(
                "search stops (%s) after %d measurements", self._stop, len(self.measurements)
            )

    def stop_reason(self) -> str | None:
        """Return why the search stopped ("epsilon", "max_evaluations") or None.

        The first reason met is kept; later measurements do not clear it.
        """
        return self._stop

    def best(self) -> tuple[dict[str, Any], float] | None:
        """Return the best measured point and its value, or None before any measurement."""
        if not self.measurements:
            return None
        sign = self.space.objective.sign
        best = max(self.measurements, key=lambda m: sign * m.value)
        return dict(best.params), best.value

    # -- ask -----------------------------------------------------------------------

    def ask(self, count: int = 1, pending: list[dict[str, Any]] | None = None) -> list[Proposal]:
        """Propose up to ``count`` points to measure next.

        Initial-design points come first (those neither measured nor pending), then
        spline maximizers. While choosing several points, each pending point and each
        point already chosen in this call enters its combination's spline as a temporary
        measurement equal to its prediction ("kriging believer"), and every spline
        proposal keeps ``min_distance`` from measured and pending points.

        Fewer than ``count`` proposals are returned when the budget of
        ``max_evaluations`` is used up, when no combination's measured points determine
        a spline yet (its initial design is still pending), or when no admissible point
        remains at ``min_distance``.

        Parameters
        ----------
        count : int
            Number of proposals wanted.
        pending : list of dict, optional
            Points proposed earlier whose measurements have not arrived.
        """
        pending_params = [self.space.check_params(p) for p in pending or []]
        if self.max_evaluations is not None:
            budget = self.max_evaluations - len(self.measurements) - len(pending_params)
            count = min(count, max(budget, 0))

        taken: dict[Combination, list[np.ndarray]] = {c: [] for c in self.combinations}
        for params in pending_params:
            taken[self.space.combination_of(params)].append(self.space.to_unit(params))
        proposals = self._ask_initial(count, taken)

        if len(proposals) == count:
            return proposals
        splines = {combo: self._fit(combo, []) for combo in self.combinations}
        believed = self._pending_beliefs(taken, splines)
        while len(proposals) < count:
            proposal = self._ask_spline(taken, believed, splines)
            if proposal is None:
                break
            proposals.append(proposal)
        return proposals

    def _ask_initial(
        self, count: int, taken: dict[Combination, list[np.ndarray]]
    ) -> list[Proposal]:
        """Return missing initial-design points and add them to ``taken``."""
        proposals: list[Proposal] = []
        for combo in self.combinations:
            measured, _ = self._pools[combo].arrays(self.space.dim)
            if not self.complete_initial_design and affine_rank(measured) > self.space.dim:
                continue
            for point in self.design:
                if len(proposals) >= count:
                    return proposals
                if _contains(measured, point) or _contains(np.array(taken[combo]), point):
                    continue
                taken[combo].append(point)
                proposals.append(self._make_proposal(point, combo, None, "initial"))
        return proposals

    def _pending_beliefs(
        self,
        taken: dict[Combination, list[np.ndarray]],
        splines: dict[Combination, PolyharmonicSpline | None],
    ) -> dict[Combination, list[tuple[np.ndarray, float]]]:
        """Predict each pending point from its combination's spline of measured points."""
        believed: dict[Combination, list[tuple[np.ndarray, float]]] = {}
        for combo in self.combinations:
            spline = splines[combo]
            if spline is None or not taken[combo]:
                believed[combo] = []
                continue
            points = np.array(taken[combo])
            believed[combo] = list(zip(points, spline(points), strict=True))
        return believed

    def _ask_spline(
        self,
        taken: dict[Combination, list[np.ndarray]],
        believed: dict[Combination, list[tuple[np.ndarray, float]]],
        splines: dict[Combination, PolyharmonicSpline | None],
    ) -> Proposal | None:
        """Maximize every combination's spline and return the best admissible point.

        ``splines`` contains the fits on measured points alone. A combination with
        believed points is refitted with them.
        """
        best: tuple[float, np.ndarray, Combination] | None = None
        fitted = 0
        for number, combo in enumerate(self.combinations):
            spline = splines[combo]
            if spline is None:
                continue
            if believed[combo]:
                # If the refit with believed points fails, the spline of measured
                # points alone is still valid, and min_distance still applies.
                spline = self._fit(combo, believed[combo]) or spline
            fitted += 1
            measured, _ = self._pools[combo].arrays(self.space.dim)
            excluded = np.vstack([measured, *[p[None, :] for p in taken[combo]]])
            result = maximize(
                spline,
                self.space.dim,
                proposal_rng(self.seed, self.proposal_index, number),
                round_points=self.space.round_unit,
                excluded=excluded,
                min_distance=self.min_distance,
                samples_per_level=self.samples_per_level,
                levels=self.levels,
                gradient=spline.gradient,
            )
            if result is not None and (best is None or result.value > best[0]):
                best = (result.value, result.point, combo)

        if best is None and fitted == 0:
            logger.info(
                "no spline proposal yet: no choice combination has d + 1 = %d affinely "
                "independent measured points",
                self.space.dim + 1,
            )
            return None
        if best is None:
            logger.warning(
                "no spline proposal: no point lies at least min_distance=%g from every "
                "measured and pending point; lower min_distance",
                self.min_distance,
            )
            return None
        value, point, combo = best
        taken[combo].append(point)
        believed[combo].append((point, value))
        predicted = self.space.objective.sign * value
        return self._make_proposal(point, combo, predicted, "incremental")

    def _fit(
        self, combo: Combination, extra: list[tuple[np.ndarray, float]]
    ) -> PolyharmonicSpline | None:
        """Fit the spline of ``combo`` on its measurements plus ``extra`` believed points."""
        points, values = self._pools[combo].arrays(self.space.dim)
        if affine_rank(points) <= self.space.dim:
            return None
        if extra:
            points = np.vstack([points, [p for p, _ in extra]])
            values = np.concatenate([values, [v for _, v in extra]])
        try:
            return PolyharmonicSpline(points, values)
        except SplineFitError as exc:
            logger.warning("spline for choices %s not fitted: %s", combo, exc)
            return None

    def _make_proposal(
        self, point: np.ndarray, combo: Combination, predicted: float | None, kind: str
    ) -> Proposal:
        params = self.space.from_unit(point, combo)
        # Initial-design points lie on the boundary by construction, so only spline
        # proposals get the hint that a range may be too narrow.
        boundary = self.space.on_boundary(point) if kind == "incremental" else {}
        proposal = Proposal(params, predicted, kind, boundary, self.proposal_index)
        self.proposal_index += 1
        logger.info(
            "proposal %d (%s): %s predicted %s%s",
            proposal.index,
            kind,
            params,
            "none" if predicted is None else f"{predicted:.6g}",
            f", on boundary {proposal.on_boundary}" if proposal.on_boundary else "",
        )
        return proposal


def _contains(points: np.ndarray, point: np.ndarray) -> bool:
    """Check whether ``point`` is among ``points``, up to round-off."""
    if len(points) == 0:
        return False
    return bool(np.any(np.max(np.abs(points - point), axis=1) <= _SAME_POINT))
