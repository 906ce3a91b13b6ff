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
from orchestrator.rules import (
    DEFAULT_PATIENCE,
    DEFAULT_WEIGHTS,
    PROPOSAL_RULES,
    SmoothedSpline,
    epsilon_met,
    srbf_candidates,
    srbf_select,
    stalled,
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
    kind : {"initial", "incremental", "repeat"}
        Whether the point belongs to the initial design, comes from the spline, or
        re-measures the best point before the search stops (``remeasure_best``).
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
    return epsilon_met(measurement.value, measurement.predicted, search.epsilon)


def _stall_rule(search: SplineSearch, measurement: Measurement) -> bool:
    """Stop when recent predictions held, the best stalled and the spline promises no gain."""
    sign = search.space.objective.sign
    values = [sign * m.value for m in search.measurements]
    predicted = [None if m.predicted is None else sign * m.predicted for m in search.measurements]
    if not stalled(values, predicted, search.epsilon, search.patience):
        return False
    gain = search.predicted_gain()
    logger.info("stall rule: the spline predicts a gain of %.6g over the best", gain)
    return gain < search.epsilon


def _no_rule(search: SplineSearch, measurement: Measurement) -> bool:
    """Never stop before max_evaluations."""
    return False


StopRule = Callable[["SplineSearch", Measurement], bool]
STOP_RULES: dict[str, StopRule] = {
    "epsilon": _epsilon_rule,
    "stall": _stall_rule,
    "none": _no_rule,
}
# Maximizer settings of the stall rule's predicted gain, cheaper than a proposal's.
_GAIN_SAMPLES_PER_LEVEL = 256
_GAIN_LEVELS = 6


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
    nor pending, then spline proposals in the combination whose spline has the highest
    maximum. Internally the objective is maximized; a ``minimize`` objective is negated.
    The proposal and stopping rules are described in :mod:`orchestrator.rules`.

    Parameters
    ----------
    space : SearchSpace
        Parameters and objective.
    seed : int
        Experiment seed. Proposal k draws its samples from ``SeedSequence([seed, k, c])``
        for combination c, so proposals depend only on the seed, the proposal index and
        the history.
    epsilon : float
        Tolerance of the stop rules, in objective units: the ``epsilon`` rule ends the
        search when an incremental point's measurement differs from its prediction by
        less than this; the ``stall`` rule also uses it for improvement and gain.
    min_distance : float
        Minimum Euclidean distance in normalized [0, 1]^d coordinates between a
        spline proposal and every measured or pending point of its combination.
    max_evaluations : int or None
        Stop after this many measurements; ``ask`` never proposes more points than
        the remaining budget allows. None means no limit.
    stop_rule : {"stall", "epsilon", "none"}
        Rule checked after each measurement, see :mod:`orchestrator.rules`. ``stall``
        (default) needs ``patience`` agreeing incremental points without improvement
        and no predicted gain; ``epsilon`` stops at the first agreeing point.
    proposal_index : int
        Number of proposals made so far (all kinds); set it when rebuilding a search.
    complete_initial_design : bool
        If True (default), every combination's initial design is proposed in full.
        If False, a combination whose measured points already determine its spline
        gets no initial-design points (used by the offline ``propose`` command).
    samples_per_level, levels : int
        Maximizer settings, see :func:`orchestrator.maximize.maximize`.
    proposal_rule : {"srbf", "argmax"}
        ``srbf`` (default) trades spline value against distance from measured points
        with weights cycled from ``weights``; ``argmax`` proposes the spline maximum.
    weights : sequence of float
        Weights in [0, 1] of the spline value in the ``srbf`` score; incremental
        proposal k uses ``weights[k % len(weights)]``.
    patience : int
        Number of recent incremental points the ``stall`` rule looks at.
    smoothing : float
        Regularization lambda >= 0 added to the spline's kernel diagonal; 0 (default)
        interpolates, a positive value smooths noisy measurements.
    remeasure_best : bool
        If True, when the stop rule is met and the best point was measured once, the
        search asks for that point again (kind ``"repeat"``) and stops only if the
        mean of its measurements is still the best value; otherwise it goes on.

    Raises
    ------
    ValueError
        When ``max_evaluations`` is smaller than the complete initial design, or on an
        unknown ``stop_rule`` or ``proposal_rule`` or an invalid setting.
    """

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        epsilon: float = 0.5,
        min_distance: float = 0.05,
        max_evaluations: int | None = 30,
        stop_rule: str = "stall",
        proposal_index: int = 0,
        complete_initial_design: bool = True,
        samples_per_level: int = DEFAULT_SAMPLES_PER_LEVEL,
        levels: int = DEFAULT_LEVELS,
        proposal_rule: str = "srbf",
        weights: tuple[float, ...] = DEFAULT_WEIGHTS,
        patience: int = DEFAULT_PATIENCE,
        smoothing: float = 0.0,
        remeasure_best: bool = False,
    ):
        if stop_rule not in STOP_RULES:
            raise ValueError(
                f"unknown stop_rule {stop_rule!r}; valid rules are {', '.join(STOP_RULES)}"
            )
        if proposal_rule not in PROPOSAL_RULES:
            raise ValueError(
                f"unknown proposal_rule {proposal_rule!r}; valid rules are "
                f"{', '.join(PROPOSAL_RULES)}"
            )
        if not weights or not all(0.0 <= w <= 1.0 for w in weights):
            raise ValueError(
                f"weights must be a non-empty list of values in [0, 1], got {weights}"
            )
        if patience < 1:
            raise ValueError(f"patience must be at least 1, got {patience}")
        if smoothing < 0:
            raise ValueError(f"smoothing must be >= 0, got {smoothing}")
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
        self.proposal_rule = proposal_rule
        self.weights = tuple(float(w) for w in weights)
        self.patience = int(patience)
        self.smoothing = float(smoothing)
        self.remeasure_best = remeasure_best
        self._repeat: dict[str, Any] | None = None
        self.combinations = space.combinations()
        self.design = initial_design(space)
        self.measurements: list[Measurement] = []
        self._pools = {combo: _Pool() for combo in self.combinations}
        self._stop: str | None = None

        design_size = len(self.design) * len(self.combinations)
        self._design_size = design_size
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
        if self._repeat is not None:
            if measurement.params == self._repeat:
                self._confirm_repeat()
        elif STOP_RULES[self.stop_rule](self, measurement):
            best = self.best()
            if self.remeasure_best and best is not None and self._count(best[0]) < 2:
                self._repeat = best[0]
                logger.info(
                    "stop rule %s met; re-measuring the best point %s first",
                    self.stop_rule,
                    best[0],
                )
            else:
                self._stop = self.stop_rule
        if (
            self._stop is None
            and self.max_evaluations is not None
            and len(self.measurements) >= self.max_evaluations
        ):
            self._stop = "max_evaluations"
        if self._stop is not None:
            logger.info(
                "search stops (%s) after %d measurements", self._stop, len(self.measurements)
            )

    def _confirm_repeat(self) -> None:
        """Stop if the re-measured point is still the best; otherwise search on."""
        incumbent, self._repeat = self._repeat, None
        best = self.best()
        if best is not None and best[0] == incumbent:
            self._stop = self.stop_rule
        else:
            logger.info(
                "re-measured point %s is no longer the best; the search goes on", incumbent
            )

    def _count(self, params: dict[str, Any]) -> int:
        return sum(1 for m in self.measurements if m.params == params)

    def stop_reason(self) -> str | None:
        """Return why the search stopped (the stop rule's name, "max_evaluations") or None.

        The first reason met is kept; later measurements do not clear it.
        """
        return self._stop

    def best(self) -> tuple[dict[str, Any], float] | None:
        """Return the best measured point and its value, or None before any measurement.

        A point measured more than once counts with the mean of its values.
        """
        if not self.measurements:
            return None
        groups: dict[tuple[tuple[str, Any], ...], list[float]] = {}
        for m in self.measurements:
            groups.setdefault(tuple(m.params.items()), []).append(m.value)
        sign = self.space.objective.sign
        key, values = max(groups.items(), key=lambda item: sign * float(np.mean(item[1])))
        mean = values[0] if len(values) == 1 else float(np.mean(values))
        return dict(key), mean

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
        proposals: list[Proposal] = []
        if self._repeat is not None and self._repeat not in pending_params and count > 0:
            proposals.append(self._make_repeat(self._repeat))
        proposals += self._ask_initial(count - len(proposals), taken)

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
        best: tuple[float, np.ndarray, Combination, PolyharmonicSpline, np.ndarray] | None = None
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
                best = (result.value, result.point, combo, spline, excluded)

        if best is not None and self.proposal_rule == "srbf":
            best = self._srbf(*best)
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
        value, point, combo, _, _ = best
        taken[combo].append(point)
        believed[combo].append((point, value))
        predicted = self.space.objective.sign * value
        return self._make_proposal(point, combo, predicted, "incremental")

    def _srbf(
        self,
        value: float,
        point: np.ndarray,
        combo: Combination,
        spline: PolyharmonicSpline,
        excluded: np.ndarray,
    ) -> tuple[float, np.ndarray, Combination, PolyharmonicSpline, np.ndarray]:
        """Replace the spline maximizer of ``combo`` by the best srbf candidate.

        The candidates surround the maximizer and the best measured point of ``combo``.
        If no candidate is admissible, the maximizer stays.
        """
        step = max(0, self.proposal_index - self._design_size)
        weight = self.weights[step % len(self.weights)]
        measured, values = self._pools[combo].arrays(self.space.dim)
        centres = [point, measured[int(np.argmax(values))]]
        number = self.combinations.index(combo)
        rng = proposal_rng(self.seed, self.proposal_index, number, 1)
        candidates = self.space.round_unit(srbf_candidates(centres, self.space.dim, rng))
        chosen = srbf_select(spline, candidates, excluded, self.min_distance, weight)
        if chosen is None:
            return value, point, combo, spline, excluded
        return chosen[1], chosen[0], combo, spline, excluded

    def predicted_gain(self) -> float:
        """Return how far the best spline maximum exceeds the best measured value.

        Both are oriented so that larger is better. Combinations without a spline are
        skipped; with none at all the gain is infinite.
        """
        best_measured = max(max(pool.values) for pool in self._pools.values() if pool.values)
        best_predicted = -math.inf
        for number, combo in enumerate(self.combinations):
            spline = self._fit(combo, [])
            if spline is None:
                continue
            result = maximize(
                spline,
                self.space.dim,
                proposal_rng(self.seed, len(self.measurements), number, 2),
                round_points=self.space.round_unit,
                samples_per_level=_GAIN_SAMPLES_PER_LEVEL,
                levels=_GAIN_LEVELS,
                gradient=spline.gradient,
            )
            if result is not None:
                best_predicted = max(best_predicted, result.value)
        return best_predicted - best_measured

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
            if self.smoothing > 0:
                return SmoothedSpline(points, values, self.smoothing)
            return PolyharmonicSpline(points, values)
        except SplineFitError as exc:
            logger.warning("spline for choices %s not fitted: %s", combo, exc)
            return None

    def _make_repeat(self, params: dict[str, Any]) -> Proposal:
        proposal = Proposal(dict(params), None, "repeat", {}, self.proposal_index)
        self.proposal_index += 1
        logger.info("proposal %d (repeat): %s", proposal.index, params)
        return proposal

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
