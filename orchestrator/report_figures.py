"""Figures of ``spline-nas report``: spline projections, convergence and 1-D slices.

Figures are drawn with matplotlib's Agg backend (no display needed) at print sizes:
labelled axes in the parameters' own units, a colour bar, 11-13 pt text, 150 dpi.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from orchestrator.report_analysis import (  # noqa: E402
    ComboAnalysis,
    ObjectiveSpline,
    ReportPoint,
    measured_points,
    optimum_word,
)
from orchestrator.space import Parameter, SearchSpace  # noqa: E402

_DPI = 150
_GRID = 90
_STYLE: Any = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 12,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
}
_KIND_MARKERS = {"initial": ("o", "white"), "incremental": ("D", "#d62728")}


def axis_label(param: Parameter) -> str:
    """Return an axis label naming the parameter, its type and its range."""
    scale = ", log scale" if param.log else ""
    step = f", step {param.step:g}" if param.step is not None else ""
    return f"{param.name} ({param.type} {param.low:g} to {param.high:g}{step}{scale})"


def _log_axis(ax: Any, axis_name: str, param: Parameter) -> None:
    """Put a log-scaled parameter on a log ``axis_name`` ("x" or "y") axis with plain ticks."""
    if not param.log:
        return
    getattr(ax, f"set_{axis_name}scale")("log")
    axis = getattr(ax, f"{axis_name}axis")
    ticks = np.geomspace(param.low, param.high, 6)
    if param.type == "int":
        ticks = np.unique(np.round(ticks))
    else:
        ticks = np.array([float(f"{tick:.2g}") for tick in ticks])
    axis.set_ticks(ticks)
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=_DPI, bbox_inches="tight")
    plt.close(figure)
    return path


def _values(param: Parameter, unit: np.ndarray) -> np.ndarray:
    return param.from_unit(unit)


def _overlay_points(ax: Any, space: SearchSpace, analysis: ComboAnalysis, i: int, j: int) -> None:
    """Plot the combination's measured points projected onto dimensions i and j."""
    xi, xj = space.numeric[i].name, space.numeric[j].name
    for kind, (marker, colour) in _KIND_MARKERS.items():
        chosen = [p for p in analysis.points if p.kind == kind]
        if chosen:
            ax.scatter(
                [p.params[xi] for p in chosen],
                [p.params[xj] for p in chosen],
                marker=marker,
                s=46,
                c=colour,
                edgecolors="black",
                linewidths=1.0,
                label=f"measured ({kind})",
                zorder=3,
                clip_on=False,
            )
    if analysis.best is not None:
        ax.scatter(
            [analysis.best.params[xi]],
            [analysis.best.params[xj]],
            marker="*",
            s=320,
            c="gold",
            edgecolors="black",
            linewidths=1.0,
            label="best measured",
            zorder=4,
            clip_on=False,
        )
    if analysis.maximum_params is not None:
        ax.scatter(
            [analysis.maximum_params[xi]],
            [analysis.maximum_params[xj]],
            marker="X",
            s=120,
            c="cyan",
            edgecolors="black",
            linewidths=1.0,
            label=f"spline {optimum_word(space)}",
            zorder=4,
            clip_on=False,
        )


def projection_figure(
    space: SearchSpace, analysis: ComboAnalysis, i: int, j: int, path: Path, title: str
) -> Path:
    """Draw the spline over numeric dimensions ``i`` and ``j``, others at the best point."""
    spline = analysis.spline
    assert spline is not None and analysis.best_unit is not None
    px, py = space.numeric[i], space.numeric[j]
    u = np.linspace(0.0, 1.0, _GRID)
    ux, uy = np.meshgrid(u, u)
    grid = np.repeat(analysis.best_unit[None, :], ux.size, axis=0)
    grid[:, i], grid[:, j] = ux.ravel(), uy.ravel()
    z = spline(grid).reshape(ux.shape)
    with plt.rc_context(_STYLE):
        figure, ax = plt.subplots(figsize=(7.0, 5.6))
        filled = ax.contourf(_values(px, ux), _values(py, uy), z, levels=20, cmap="viridis")
        ax.contour(
            _values(px, ux),
            _values(py, uy),
            z,
            levels=10,
            colors="black",
            linewidths=0.4,
            alpha=0.5,
        )
        bar = figure.colorbar(filled, ax=ax)
        bar.set_label(f"spline {space.objective.name} ({space.objective.direction})")
        _overlay_points(ax, space, analysis, i, j)
        _log_axis(ax, "x", px)
        _log_axis(ax, "y", py)
        ax.set_xlim(px.low, px.high)
        ax.set_ylim(py.low, py.high)
        ax.set_xlabel(axis_label(px))
        ax.set_ylabel(axis_label(py))
        ax.set_title(title)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)
        return _save(figure, path)


def convergence_figure(
    space: SearchSpace, points: list[ReportPoint], epsilon: float | None, path: Path
) -> Path:
    """Draw measured and predicted values, the best so far and |difference| per iteration."""
    done = measured_points(points)
    steps = np.arange(1, len(done) + 1)
    values = np.array([p.value for p in done], dtype=float)
    sign = space.objective.sign
    best = sign * np.maximum.accumulate(sign * values)
    pred = [(n, p.predicted) for n, p in zip(steps, done, strict=True) if p.predicted is not None]
    name = space.objective.name
    with plt.rc_context(_STYLE):
        figure, (top, bottom) = plt.subplots(
            2, 1, figsize=(7.5, 6.4), sharex=True, gridspec_kw={"height_ratios": [3, 2]}
        )
        top.plot(steps, values, "o-", color="#1f77b4", label="measured")
        if pred:
            top.plot(
                [n for n, _ in pred],
                [v for _, v in pred],
                "s",
                mfc="none",
                ms=9,
                color="#d62728",
                mew=1.6,
                label="predicted before measuring",
            )
        top.step(steps, best, where="post", color="black", linestyle="--", label="best so far")
        top.set_ylabel(name)
        figure.suptitle(f"Convergence of {name} ({space.objective.direction})")
        top.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
        top.grid(alpha=0.3)
        _difference_panel(bottom, done, steps, epsilon, name)
        bottom.set_xlabel("measurement number (iteration)")
        bottom.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        return _save(figure, path)


def _difference_panel(
    ax: Any, done: list[ReportPoint], steps: np.ndarray, epsilon: float | None, name: str
) -> None:
    pairs = [
        (n, abs(p.value - p.predicted))
        for n, p in zip(steps, done, strict=True)
        if p.predicted is not None and p.value is not None
    ]
    if pairs:
        diffs = [max(d, 1e-12) for _, d in pairs]
        ax.plot(
            [n for n, _ in pairs], diffs, "s-", color="#d62728", label="|measured - predicted|"
        )
        ax.set_yscale("log")
    else:
        ax.text(
            0.5,
            0.5,
            "no predicted point measured yet",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    if epsilon is not None:
        ax.axhline(epsilon, color="black", linestyle=":", label=f"epsilon = {epsilon:g}")
        if pairs:
            ax.set_yscale("log")
    if ax.get_yscale() == "log":
        ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_ylabel(f"|difference| ({name})")
    ax.grid(alpha=0.3, which="both")
    if pairs or epsilon is not None:
        ax.legend(loc="best")


def slices_figure(space: SearchSpace, analysis: ComboAnalysis, path: Path, title: str) -> Path:
    """Draw the spline along each numeric dimension through the best measured point."""
    spline: ObjectiveSpline | None = analysis.spline
    assert spline is not None and analysis.best_unit is not None
    count = space.dim
    columns = min(3, count)
    rows = math.ceil(count / columns)
    u = np.linspace(0.0, 1.0, 201)
    with plt.rc_context(_STYLE):
        figure, axes = plt.subplots(
            rows, columns, figsize=(4.3 * columns, 3.4 * rows), squeeze=False
        )
        for k, param in enumerate(space.numeric):
            ax = axes[k // columns][k % columns]
            grid = np.repeat(analysis.best_unit[None, :], len(u), axis=0)
            grid[:, k] = u
            ax.plot(_values(param, u), spline(grid), color="#1f77b4")
            best = analysis.best
            if best is not None and best.value is not None:
                ax.plot(
                    [best.params[param.name]], [best.value], "*", ms=15, color="gold", mec="black"
                )
            _log_axis(ax, "x", param)
            ax.set_xlabel(axis_label(param))
            ax.set_ylabel(space.objective.name)
            ax.grid(alpha=0.3)
        for k in range(count, rows * columns):
            axes[k // columns][k % columns].set_visible(False)
        figure.suptitle(title)
        figure.tight_layout()
        return _save(figure, path)
