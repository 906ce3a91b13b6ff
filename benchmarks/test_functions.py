"""Test functions of the search-quality benchmark, with seeded shifted instances.

Every function is minimized over a box. An instance shifts the function so that one of
its global minimizers lands at a random point of the box's inner 80 %. Some dimensions
are integer: each takes ``GRID + 1`` evenly spaced values. The shifted minimizer lies on
that grid, so the minimum over the legal points is the known global minimum.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Intervals of an integer dimension: it takes GRID + 1 values from low to high.
GRID = 50
# Random points per instance for the median that normalizes the regret.
REFERENCE_POINTS = 10_000

_H3_A = np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]])
_H3_P = 1e-4 * np.array(
    [[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]]
)
_H6_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_H6_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)
_H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def branin(x: np.ndarray) -> np.ndarray:
    x1, x2 = x[:, 0], x[:, 1]
    b, c = 5.1 / (4 * np.pi**2), 5 / np.pi
    t = 1 / (8 * np.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * np.cos(x1) + 10


def _hartmann(x: np.ndarray, a: np.ndarray, p: np.ndarray) -> np.ndarray:
    inner = np.einsum("ij,mij->mi", a, (x[:, None, :] - p[None, :, :]) ** 2)
    return -np.exp(-inner) @ _H_ALPHA


def hartmann3(x: np.ndarray) -> np.ndarray:
    return _hartmann(x, _H3_A, _H3_P)


def hartmann6(x: np.ndarray) -> np.ndarray:
    return _hartmann(x, _H6_A, _H6_P)


def ackley(x: np.ndarray) -> np.ndarray:
    d = x.shape[1]
    first = -20 * np.exp(-0.2 * np.sqrt(np.sum(x**2, axis=1) / d))
    second = -np.exp(np.sum(np.cos(2 * np.pi * x), axis=1) / d)
    return first + second + 20 + np.e


def levy(x: np.ndarray) -> np.ndarray:
    w = 1 + (x - 1) / 4
    head = np.sin(np.pi * w[:, 0]) ** 2
    body = np.sum((w[:, :-1] - 1) ** 2 * (1 + 10 * np.sin(np.pi * w[:, :-1] + 1) ** 2), axis=1)
    tail = (w[:, -1] - 1) ** 2 * (1 + np.sin(2 * np.pi * w[:, -1]) ** 2)
    return head + body + tail


def rosenbrock(x: np.ndarray) -> np.ndarray:
    return np.sum(100 * (x[:, 1:] - x[:, :-1] ** 2) ** 2 + (1 - x[:, :-1]) ** 2, axis=1)


def styblinski_tang(x: np.ndarray) -> np.ndarray:
    return 0.5 * np.sum(x**4 - 16 * x**2 + 5 * x, axis=1)


@dataclass(frozen=True)
class TestFunction:
    """A minimization problem: function, box, one global minimizer and the minimum."""

    name: str
    function: Callable[[np.ndarray], np.ndarray]
    low: np.ndarray
    high: np.ndarray
    minimizer: np.ndarray
    minimum: float
    integer_dims: tuple[int, ...] = ()

    @property
    def dim(self) -> int:
        return len(self.low)


def _box(dim: int, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    return np.full(dim, low), np.full(dim, high)


FUNCTIONS: list[TestFunction] = [
    TestFunction(
        "branin",
        branin,
        np.array([-5.0, 0.0]),
        np.array([10.0, 15.0]),
        np.array([np.pi, 2.275]),
        0.397887,
    ),
    TestFunction(
        "hartmann3",
        hartmann3,
        *_box(3, 0, 1),
        np.array([0.114614, 0.555649, 0.852547]),
        -3.86278,
    ),
    TestFunction(
        "hartmann6",
        hartmann6,
        *_box(6, 0, 1),
        np.array([0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573]),
        -3.32237,
        (0, 3),
    ),
    TestFunction("ackley5", ackley, *_box(5, -5, 5), np.zeros(5), 0.0, (2,)),
    TestFunction("levy5", levy, *_box(5, -10, 10), np.ones(5), 0.0, (4,)),
    TestFunction("rosenbrock4", rosenbrock, *_box(4, -5, 10), np.ones(4), 0.0),
    TestFunction(
        "styblinski_tang5",
        styblinski_tang,
        *_box(5, -5, 5),
        np.full(5, -2.903534),
        -39.16599 * 5,
        (0, 1),
    ),
]


@dataclass(frozen=True)
class Instance:
    """A shifted test function over [0, 1]^d; integer dimensions take GRID + 1 values."""

    base: TestFunction
    seed: int
    shift: np.ndarray
    reference: float

    @property
    def dim(self) -> int:
        return self.base.dim

    @property
    def minimum(self) -> float:
        return self.base.minimum

    def to_box(self, unit: np.ndarray) -> np.ndarray:
        unit = np.atleast_2d(unit)
        return self.base.low + unit * (self.base.high - self.base.low)

    def __call__(self, unit: np.ndarray) -> np.ndarray:
        """Evaluate at normalized points of shape ``(m, d)``."""
        return self.base.function(self.to_box(unit) - self.shift)

    def round_unit(self, unit: np.ndarray) -> np.ndarray:
        """Round the integer dimensions of normalized points to their grid."""
        unit = np.array(np.atleast_2d(unit), dtype=float)
        for k in self.base.integer_dims:
            unit[:, k] = np.round(unit[:, k] * GRID) / GRID
        return unit

    def regret(self, best: float) -> float:
        """Normalized simple regret of the best value found (0 at the optimum)."""
        return (best - self.minimum) / (self.reference - self.minimum)


def make_instance(base: TestFunction, seed: int) -> Instance:
    """Shift ``base`` so that its minimizer lies at a random legal point of the inner box."""
    rng = np.random.default_rng([seed, sum(map(ord, base.name))])
    target = rng.uniform(0.1, 0.9, base.dim)
    for k in base.integer_dims:
        target[k] = rng.integers(round(0.1 * GRID), round(0.9 * GRID) + 1) / GRID
    shift = base.low + target * (base.high - base.low) - base.minimizer
    instance = Instance(base, seed, shift, np.nan)
    points = instance.round_unit(rng.uniform(size=(REFERENCE_POINTS, base.dim)))
    reference = float(np.median(instance(points)))
    instance = Instance(base, seed, shift, reference)
    check = float(instance(target[None, :])[0])
    if abs(check - base.minimum) > 1e-4 * max(1.0, abs(base.minimum)):
        raise RuntimeError(f"{base.name}: value {check} at the shifted minimizer")
    return instance
