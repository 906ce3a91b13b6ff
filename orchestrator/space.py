"""Search space: the parameters a search varies, their bounds, and the objective.

A search space is read from YAML through :mod:`launch.config`, so every error names the
file, line and key::

    parameters:
      c1: {type: int, low: 32, high: 150}
      phi: {type: float, low: 1.0, high: 2.0, step: 0.1}
      lr: {type: float, low: 0.001, high: 0.1, log: true}
      stem: {type: choice, choices: [basic, deep]}
    objective: {name: top1, direction: maximize}

Numeric parameters (``int`` and ``float``) span the spline's coordinates. Each one is
mapped to [0, 1] by its bounds, on a log scale when ``log: true``. ``choice`` parameters
select one of several separate splines (one per combination of choices).
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from launch.config import ConfigError, Section, load_section

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TYPES = ("int", "float", "choice")
_NUMERIC_KEYS = {
    "type": "int, float or choice",
    "low": "required",
    "high": "required",
    "step": "none: any value",
    "log": "false",
}
_CHOICE_KEYS = {"type": "int, float or choice", "choices": "required"}
# NOTE: a step must divide high - low up to this relative tolerance, so that both bounds
# lie on the grid; 1e-9 absorbs decimal round-off such as (2.0 - 1.0) / 0.1 = 9.999...
_STEP_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Parameter:
    """One search dimension.

    Parameters
    ----------
    name : str
        Name used in trial specs and in measurement files.
    type : {"int", "float", "choice"}
        Value type. ``choice`` parameters take one of ``choices``.
    low, high : float
        Bounds of a numeric parameter, both included; ``low < high``.
    step : float or None
        Grid spacing from ``low`` for a numeric parameter; ``None`` means any value
        (integers for ``int``).
    log : bool
        Whether the parameter is normalized on a log scale (requires ``low > 0``).
    choices : tuple
        Allowed values of a ``choice`` parameter (strings or integers).
    """

    name: str
    type: str
    low: float = 0.0
    high: float = 1.0
    step: float | None = None
    log: bool = False
    choices: tuple[str | int, ...] = ()

    @property
    def is_numeric(self) -> bool:
        return self.type != "choice"

    def to_unit(self, values: np.ndarray) -> np.ndarray:
        """Map values in ``[low, high]`` to ``[0, 1]`` (on a log scale if ``log``)."""
        values = np.asarray(values, dtype=float)
        if self.log:
            return (np.log(values) - math.log(self.low)) / (
                math.log(self.high) - math.log(self.low)
            )
        return (values - self.low) / (self.high - self.low)

    def from_unit(self, unit: np.ndarray) -> np.ndarray:
        """Map normalized coordinates back to parameter values (no rounding)."""
        unit = np.clip(np.asarray(unit, dtype=float), 0.0, 1.0)
        if self.log:
            log_low, log_high = math.log(self.low), math.log(self.high)
            return np.exp(log_low + unit * (log_high - log_low))
        return self.low + unit * (self.high - self.low)

    def round_values(self, values: np.ndarray) -> np.ndarray:
        """Round values to the nearest legal value: the step grid, or integers for ints."""
        values = np.clip(np.asarray(values, dtype=float), self.low, self.high)
        if self.step is not None:
            steps = np.round((values - self.low) / self.step)
            values = np.minimum(self.low + steps * self.step, self.high)
        elif self.type == "int":
            values = np.round(values)
        return values

    def round_unit(self, unit: np.ndarray) -> np.ndarray:
        """Round normalized coordinates to those of the nearest legal values."""
        return self.to_unit(self.round_values(self.from_unit(unit)))

    def python_value(self, value: float) -> int | float:
        """Convert a numeric value to the Python type of this parameter.

        Floats are cut to 12 significant digits, which removes decimal noise such as
        1.7000000000000002 from ``low + k * step``.
        """
        if self.type == "int":
            return int(round(value))
        return float(f"{value:.12g}")


@dataclass(frozen=True)
class Objective:
    """The measured quantity and whether larger (``maximize``) or smaller is better."""

    name: str
    direction: str = "maximize"

    @property
    def sign(self) -> float:
        """Factor that turns the objective into one to maximize."""
        return 1.0 if self.direction == "maximize" else -1.0


class SearchSpace:
    """Numeric and choice parameters plus the objective of a search.

    Parameters
    ----------
    parameters : list of Parameter
        At least one numeric parameter; names must be unique.
    objective : Objective
        Its name must differ from every parameter name.
    """

    def __init__(self, parameters: list[Parameter], objective: Objective):
        names = [p.name for p in parameters]
        if len(set(names)) != len(names):
            raise ValueError(f"parameter names must be unique, got {names}")
        if objective.name in names:
            raise ValueError(f"objective name {objective.name!r} is also a parameter name")
        self.parameters = list(parameters)
        self.objective = objective
        self.numeric = [p for p in parameters if p.is_numeric]
        self.choice = [p for p in parameters if not p.is_numeric]
        if not self.numeric:
            raise ValueError("a search space needs at least one int or float parameter")

    @property
    def dim(self) -> int:
        """Number of numeric dimensions, the spline's ``d``."""
        return len(self.numeric)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parameters]

    # -- construction --------------------------------------------------------------

    @classmethod
    def from_yaml(cls, path: str | Path) -> SearchSpace:
        """Read a search-space file whose top level contains ``parameters`` and ``objective``."""
        return cls.from_section(load_section(path))

    @classmethod
    def from_section(cls, section: Section) -> SearchSpace:
        """Build a search space from a YAML section, such as ``space:`` of an experiment.

        Raises
        ------
        launch.config.ConfigError
            On unknown or missing keys, wrong types and inconsistent bounds.
        """
        section.check_keys(
            {"parameters": "required", "objective": "required"},
            required=("parameters", "objective"),
        )
        params_section = section.get_section("parameters")
        assert params_section is not None  # required=True raises instead
        if not params_section.keys():
            raise section.error("parameters", "no parameters given; add at least one")
        parameters = [_parse_parameter(params_section, name) for name in params_section.keys()]
        if not any(p.is_numeric for p in parameters):
            raise section.error("parameters", "needs at least one parameter of type int or float")
        objective = _parse_objective(section, {p.name for p in parameters})
        return cls(parameters, objective)

    # -- conversions ---------------------------------------------------------------

    def combinations(self) -> list[tuple[str | int, ...]]:
        """Return every combination of choice values, in a fixed order (``[()]`` if none)."""
        return list(itertools.product(*(p.choices for p in self.choice)))

    def combination_of(self, params: dict[str, Any]) -> tuple[str | int, ...]:
        return tuple(params[p.name] for p in self.choice)

    def to_unit(self, params: dict[str, Any]) -> np.ndarray:
        """Return the normalized coordinates, shape ``(dim,)``, of a parameter dict."""
        return np.array([float(p.to_unit(params[p.name])) for p in self.numeric])

    def round_unit(self, unit: np.ndarray) -> np.ndarray:
        """Round normalized points, shape ``(m, dim)``, to legal values, column by column."""
        unit = np.atleast_2d(np.asarray(unit, dtype=float))
        rounded = np.empty_like(unit)
        for k, param in enumerate(self.numeric):
            if param.type == "float" and param.step is None:
                rounded[:, k] = np.clip(unit[:, k], 0.0, 1.0)
            else:
                rounded[:, k] = param.round_unit(unit[:, k])
        return rounded

    def from_unit(self, unit: np.ndarray, combination: tuple[str | int, ...]) -> dict[str, Any]:
        """Return the parameter dict of one normalized point, rounded to legal values."""
        params: dict[str, Any] = {}
        numeric = iter(zip(self.numeric, np.ravel(unit), strict=True))
        choices = iter(zip(self.choice, combination, strict=True))
        for param in self.parameters:
            if param.is_numeric:
                _, u = next(numeric)
                value = param.round_values(param.from_unit(np.array([u])))[0]
                params[param.name] = param.python_value(value)
            else:
                params[param.name] = next(choices)[1]
        return params

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Validate a parameter dict and return it with numeric values as int or float.

        Values may lie anywhere in the box; they need not be on a step grid.

        Raises
        ------
        ValueError
            On missing or unknown names, non-finite or out-of-range values, integers with a
            fractional part and choices not in ``choices``.
        """
        missing = [name for name in self.names if name not in params]
        unknown = [name for name in params if name not in self.names]
        if missing or unknown:
            raise ValueError(
                f"parameters do not match the search space: missing {missing}, "
                f"unknown {unknown}; expected {self.names}"
            )
        checked: dict[str, Any] = {}
        for param in self.parameters:
            checked[param.name] = _check_value(param, params[param.name])
        return checked

    def on_boundary(self, unit: np.ndarray) -> dict[str, str]:
        """Name the dimensions of a normalized point that lie on the box boundary."""
        flags = {}
        for param, u in zip(self.numeric, np.ravel(unit), strict=True):
            if u <= 1e-9:
                flags[param.name] = "low"
            elif u >= 1.0 - 1e-9:
                flags[param.name] = "high"
        return flags


def _check_value(param: Parameter, value: Any) -> Any:
    """Validate one value of ``param``; see :meth:`SearchSpace.check_params`."""
    if not param.is_numeric:
        if isinstance(value, bool) or value not in param.choices:
            raise ValueError(
                f"{param.name}={value!r} is not one of the choices {list(param.choices)}"
            )
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{param.name}={value!r} is not a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{param.name}={value!r} is not a finite number")
    if not param.low <= number <= param.high:
        raise ValueError(
            f"{param.name}={value!r} lies outside its range [{param.low:g}, {param.high:g}]"
        )
    if param.type == "int" and number != round(number):
        raise ValueError(f"{param.name}={value!r} must be an integer")
    return param.python_value(number)


def _parse_parameter(params: Section, name: str) -> Parameter:
    """Read one entry of ``parameters``."""
    if not _NAME.match(name):
        raise params.error(
            name, "invalid parameter name; use letters, digits and underscores only"
        )
    section = params.get_section(name)
    assert section is not None
    kind = section.get_str("type", required=True)
    if kind not in _TYPES:
        raise section.error("type", f"unknown type {kind!r}; use one of {', '.join(_TYPES)}")
    if kind == "choice":
        section.check_keys(_CHOICE_KEYS, required=("type", "choices"))
        return Parameter(name, "choice", choices=_parse_choices(section))

    section.check_keys(_NUMERIC_KEYS, required=("type", "low", "high"))
    get = section.get_int if kind == "int" else section.get_float
    low, high = get("low", required=True), get("high", required=True)
    if low >= high:
        raise section.error("high", f"high ({high:g}) must be greater than low ({low:g})")
    log = bool(section.get_bool("log", default=False))
    if log and low <= 0:
        raise section.error("low", f"log: true needs low > 0, got {low:g}")
    step = get("step")
    if step is not None:
        _check_step(section, float(step), float(low), float(high), log)
    return Parameter(
        name, kind, float(low), float(high), None if step is None else float(step), log
    )


def _check_step(section: Section, step: float, low: float, high: float, log: bool) -> None:
    """Reject a step that is not positive, exceeds the range or does not divide it."""
    if log:
        raise section.error("step", "step cannot be combined with log: true; drop one")
    if step <= 0:
        raise section.error("step", f"step must be positive, got {step:g}")
    count = (high - low) / step
    if count < 1 - _STEP_TOLERANCE:
        raise section.error(
            "step", f"step {step:g} is larger than the range high - low = {high - low:g}"
        )
    if abs(count - round(count)) > _STEP_TOLERANCE * max(1.0, count):
        raise section.error(
            "step",
            f"step {step:g} does not divide high - low = {high - low:g} "
            f"({count:.4g} steps); choose high = {low + math.floor(count) * step:g} "
            "or a step that divides the range",
        )


def _parse_choices(section: Section) -> tuple[str | int, ...]:
    """Read ``choices``: a non-empty list of unique strings or integers."""
    nodes = section.get_list("choices", required=True)
    assert nodes is not None
    if not nodes:
        raise section.error("choices", "the list is empty; give at least one choice")
    values: list[str | int] = []
    for index, node in enumerate(nodes):
        key = f"{section._join('choices')}[{index}]"
        line = node.start_mark.line + 1
        if not isinstance(node, yaml.ScalarNode) or node.tag not in (
            "tag:yaml.org,2002:str",
            "tag:yaml.org,2002:int",
        ):
            raise ConfigError(
                section.source,
                line,
                key,
                f"expected a string or an integer, got {node.tag.rsplit(':', 1)[-1]} "
                f"{node.value!r}; put the value in quotes",
            )
        if node.tag == "tag:yaml.org,2002:int" and ":" in node.value:
            raise ConfigError(
                section.source,
                line,
                key,
                f"YAML 1.1 reads {node.value!r} as a base-60 number; put it in quotes",
            )
        value: str | int = (
            node.value if node.tag.endswith(":str") else int(yaml.safe_load(node.value))
        )
        if value in values:
            raise ConfigError(section.source, line, key, f"duplicate choice {value!r}")
        values.append(value)
    return tuple(values)


def _parse_objective(section: Section, parameter_names: set[str]) -> Objective:
    """Read ``objective: {name, direction}``."""
    objective = section.get_section("objective")
    assert objective is not None
    objective.check_keys({"name": "required", "direction": "maximize"}, required=("name",))
    name = objective.get_str("name", required=True)
    assert name is not None
    if not _NAME.match(name):
        raise objective.error("name", "invalid name; use letters, digits and underscores only")
    if name in parameter_names:
        raise objective.error("name", f"{name!r} is also a parameter name; rename one of them")
    direction = objective.get_str("direction", default="maximize")
    if direction not in ("maximize", "minimize"):
        raise objective.error(
            "direction", f"unknown direction {direction!r}; use maximize or minimize"
        )
    assert direction is not None
    return Objective(name, direction)
