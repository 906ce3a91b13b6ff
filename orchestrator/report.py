"""``spline-nas report``: a Markdown and HTML report of a search, with figures.

Two inputs are accepted: an experiment directory (finished or still running) or a
search-space file with a CSV of measurements, as for ``spline-nas propose``. The
experiment directory is only read: the command takes no lease and writes nothing into
the journal, so it is safe while a controller runs. The output directory receives
``report.md``, a self-contained ``report.html`` and the PNG figures under ``figures/``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from launch.config import ConfigError
from orchestrator import state as st
from orchestrator.design import initial_design
from orchestrator.experiment import experiment_from_text
from orchestrator.journal import JournalError, read_journal
from orchestrator.measurements import MeasurementError, read_measurements
from orchestrator.report_analysis import (
    ComboAnalysis,
    ReportPoint,
    analyse,
    best_point,
    quiet_search,
    replay,
)
from orchestrator.report_figures import (
    convergence_figure,
    projection_figure,
    slices_figure,
)
from orchestrator.report_render import Figure, render_html, render_markdown
from orchestrator.report_sections import build_blocks, combo_slug
from orchestrator.report_table import final_rows
from orchestrator.search import SplineSearch
from orchestrator.space import SearchSpace

logger = logging.getLogger(__name__)

# Figure names this command writes; only these are removed when a report is rebuilt.
_FIGURE_PATTERNS = ("convergence.png", "projection_*.png", "slices*.png")


class ReportError(ValueError):
    """The report cannot be built from the given input; the message states why and what to do."""


@dataclass
class ReportInput:
    """Everything a report is built from.

    Attributes
    ----------
    title : str
        Experiment name or file name.
    source : str
        Where the points came from, in words.
    space : SearchSpace
        Search space of the points.
    points : list of ReportPoint
        Trials or CSV rows, in creation order.
    epsilon : float or None
        Stop threshold on |measured - predicted|; None when unknown.
    seed : int
        Seed for locating spline maxima.
    status : str
        State of the search in words, such as "stopped: epsilon".
    pairs : list of (int, int)
        Numeric dimension pairs to project, in order.
    prediction_note : str
        Where the predicted values come from, in words.
    """

    title: str
    source: str
    space: SearchSpace
    points: list[ReportPoint]
    epsilon: float | None
    seed: int
    status: str
    pairs: list[tuple[int, int]]
    prediction_note: str = (
        "The search predicted the value of each incremental point before it was measured."
    )
    final_table: tuple[list[str], list[list[str]]] | None = None


# -- inputs ------------------------------------------------------------------------------


def load_experiment_dir(directory: Path) -> tuple[ReportInput, str | None]:
    """Read an experiment directory without taking its lease or writing anything.

    Returns the input (pairs not set) and the stop reason recorded in the journal.
    """
    if not directory.is_dir():
        raise ReportError(
            f"experiment directory {directory} not found; pass the directory that "
            "'spline-nas run' created (it holds journal.jsonl and experiment.yaml)"
        )
    yaml_path = directory / "experiment.yaml"
    if not yaml_path.is_file():
        raise ReportError(
            f"{yaml_path} not found; {directory} is not an experiment directory "
            "(for a CSV of measurements use --space and --measurements)"
        )
    events = read_journal(directory / "journal.jsonl")
    experiment = experiment_from_text(
        yaml_path.read_text(encoding="utf-8"), str(yaml_path), directory
    )
    state = st.ExperimentState.from_events(events)
    order = {trial_id: n for n, (trial_id, _, _) in enumerate(state.measurements, start=1)}
    # Final runs may lie outside the search box (scaled widths) and are not spline points.
    points = [
        _trial_point(experiment.space, trial, order.get(trial.trial_id))
        for trial in state.trials.values()
        if trial.is_search_point
    ]
    final_table = final_rows(state, experiment.space) if state.final_trials() else None
    if state.stop_reason:
        status = f"stopped ({state.stop_reason})"
    elif state.active_trials():
        active = len(state.active_trials())
        status = f"running or interrupted ({active} active trial{'s' if active != 1 else ''})"
    else:
        status = "not stopped yet"
    report_input = ReportInput(
        title=experiment.name,
        source=f"experiment directory {directory.resolve()}",
        space=experiment.space,
        points=points,
        epsilon=experiment.search.epsilon,
        seed=experiment.search.seed,
        status=status,
        pairs=[],
        final_table=final_table,
    )
    return report_input, state.stop_reason


def _trial_point(space: SearchSpace, trial: st.Trial, order: int | None) -> ReportPoint:
    if trial.value is not None:
        try:
            space.check_params(trial.params)
        except ValueError as exc:
            raise ReportError(
                f"trial {trial.trial_id}: {exc}; experiment.yaml no longer matches the "
                "journal, restore the file the search started with"
            ) from None
    return ReportPoint(
        label=trial.trial_id,
        kind=trial.kind,
        params=dict(trial.params),
        value=trial.value,
        predicted=trial.predicted,
        gpu_hours=trial.gpu_hours if trial.result else None,
        state=trial.state,
        order=order if trial.value is not None else None,
    )


def load_csv_input(space_path: str, csv_path: str, epsilon: float | None) -> ReportInput:
    """Read a search-space file and a measurements CSV.

    Rows that coincide with an initial-design point are ``initial``; the others are
    ``incremental``, with the prediction of the spline fitted on the rows above them.
    """
    space = SearchSpace.from_yaml(space_path)
    rows = read_measurements(csv_path, space)
    if not rows:
        raise ReportError(f"{csv_path}: no measured points below the header; add at least one row")
    with quiet_search():
        design = initial_design(space)
    search = replay(space, [])
    points = []
    for number, (params, value) in enumerate(rows, start=1):
        unit = space.to_unit(params)
        initial = bool(np.any(np.max(np.abs(design - unit), axis=1) <= 1e-9))
        predicted = None if initial else _predict(search, space, params)
        points.append(
            ReportPoint(
                f"row {number}",
                "initial" if initial else "incremental",
                params,
                value,
                predicted,
                None,
                st.DONE,
                number,
            )
        )
        with quiet_search():
            search.tell(params, value)
    return ReportInput(
        title=Path(csv_path).name,
        source=f"space {Path(space_path).resolve()}, measurements {Path(csv_path).resolve()}",
        space=space,
        points=points,
        epsilon=epsilon,
        seed=0,
        status=f"{len(rows)} rows of measurements",
        pairs=[],
        prediction_note="The prediction of an incremental row is the value of the spline "
        "fitted on the rows above it.",
    )


def _predict(search: SplineSearch, space: SearchSpace, params: dict[str, Any]) -> float | None:
    """Predict a point from the spline of the rows passed to ``search.tell`` so far."""
    spline = search._fit(space.combination_of(params), [])
    if spline is None:
        return None
    return float(space.objective.sign * spline(space.to_unit(params)[None, :])[0])


def parse_pairs(space: SearchSpace, texts: list[str]) -> list[tuple[int, int]]:
    """Return consecutive numeric pairs followed by the ``--pair NAME,NAME`` pairs."""
    names = [p.name for p in space.numeric]
    pairs = [(k, k + 1) for k in range(len(names) - 1)]
    for text in texts:
        parts = [part.strip() for part in text.split(",")]
        if len(parts) != 2 or parts[0] == parts[1]:
            raise ReportError(
                f"--pair {text!r}: give two different parameter names, e.g. "
                f"--pair {','.join(names[:2]) or 'x,y'}"
            )
        unknown = [part for part in parts if part not in names]
        if unknown:
            raise ReportError(
                f"--pair {text!r}: {', '.join(unknown)} is not a numeric "
                f"parameter; the numeric parameters are {', '.join(names)}"
            )
        pair = (names.index(parts[0]), names.index(parts[1]))
        if pair not in pairs and pair[::-1] not in pairs:
            pairs.append(pair)
    return pairs


# -- output ------------------------------------------------------------------------------


def _name(*parts: str) -> str:
    return "_".join(part for part in parts if part) + ".png"


def _draw(report_input: ReportInput, analyses: list[ComboAnalysis], out: Path) -> dict[str, Any]:
    """Draw all figures; return them keyed by their role."""
    space = report_input.space
    figures_dir = out / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    for pattern in _FIGURE_PATTERNS:
        for stale in figures_dir.glob(pattern):
            stale.unlink()
    drawn: dict[str, Any] = {"projections": {}, "slices": {}}
    if any(p.value is not None for p in report_input.points):
        path = convergence_figure(
            space, report_input.points, report_input.epsilon, figures_dir / "convergence.png"
        )
        drawn["convergence"] = Figure(
            path,
            "Measured and predicted value per iteration, best so far and |measured - predicted|",
        )
    for analysis in analyses:
        if analysis.spline is None:
            continue
        slug, label = combo_slug(space, analysis.combo)
        figures = []
        for i, j in report_input.pairs:
            x, y = space.numeric[i].name, space.numeric[j].name
            rest = [p.name for k, p in enumerate(space.numeric) if k not in (i, j)]
            fixed = f"; {', '.join(rest)} fixed at the best point" if rest else ""
            title = f"Spline of {space.objective.name} over {x} and {y}{label}"
            path = projection_figure(
                space, analysis, i, j, figures_dir / _name("projection", slug, x, y), title
            )
            figures.append(
                Figure(path, f"{title}{fixed}; measured points projected onto the plane")
            )
        drawn["projections"][analysis.combo] = figures
        title = f"Spline along each parameter through the best point{label}"
        path = slices_figure(space, analysis, figures_dir / _name("slices", slug), title)
        drawn["slices"][analysis.combo] = Figure(path, title + "; star: best measured point")
    return drawn


def build_report(report_input: ReportInput, out: Path) -> tuple[list[ComboAnalysis], int]:
    """Write ``report.md``, ``report.html`` and the figures; return analyses, figure count."""
    analyses = analyse(report_input.space, report_input.points, report_input.seed)
    out.mkdir(parents=True, exist_ok=True)
    drawn = _draw(report_input, analyses, out)
    blocks = build_blocks(report_input, analyses, drawn)
    (out / "report.md").write_text(render_markdown(blocks, out), encoding="utf-8")
    page = render_html(blocks, f"spline-nas report: {report_input.title}")
    (out / "report.html").write_text(page, encoding="utf-8")
    count = sum(isinstance(block, Figure) for block in blocks)
    return analyses, count


def summary(report_input: ReportInput, analyses: list[ComboAnalysis]) -> list[str]:
    """Return the lines printed after the report is written."""
    space = report_input.space
    measured = [p for p in report_input.points if p.value is not None]
    lines = [
        f"{report_input.title}: {len(measured)} measured points of "
        f"{len(report_input.points)}; {report_input.status}"
    ]
    best = best_point(space, report_input.points)
    if best is not None:
        params = ", ".join(
            f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items()
        )
        lines.append(f"best {space.objective.name} {best.value:.6g} at {best.label} ({params})")
    for analysis in analyses:
        if analysis.spline is None and analysis.missing_points:
            _, label = combo_slug(space, analysis.combo)
            lines.append(
                f"spline{label}: needs {analysis.missing_points} more affinely independent points"
            )
        for advice in analysis.advice:
            lines.append(
                f"boundary: {advice.name} at its {advice.side} bound {advice.bound:g} "
                f"({advice.where}); widen to [{advice.new_low:g}, {advice.new_high:g}]"
            )
    return lines


# -- command line ------------------------------------------------------------------------


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``report`` to ``parser``."""
    parser.add_argument(
        "directory",
        nargs="?",
        metavar="EXPERIMENT_DIR",
        help="experiment directory of 'spline-nas run' (read only)",
    )
    parser.add_argument(
        "--space",
        metavar="SPACE.yaml",
        help="search-space file, with --measurements instead of a directory",
    )
    parser.add_argument(
        "--measurements",
        metavar="POINTS.csv",
        help="CSV of measured points (header: parameter names and objective)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="output directory (default: EXPERIMENT_DIR/report, or ./report for CSV input)",
    )
    parser.add_argument(
        "--pair",
        action="append",
        default=[],
        metavar="X,Y",
        help="also project the spline over these two numeric parameters; "
        "repeatable (default: consecutive pairs only)",
    )
    parser.add_argument(
        "--epsilon",
        type=_positive_float,
        default=None,
        help="stop threshold drawn in the convergence plot (default: the "
        "experiment's search.epsilon; none for CSV input)",
    )


def _load(args: argparse.Namespace) -> tuple[ReportInput, Path]:
    if args.directory and (args.space or args.measurements):
        raise ReportError("give either EXPERIMENT_DIR or --space with --measurements, not both")
    if args.directory:
        directory = Path(args.directory)
        report_input, _ = load_experiment_dir(directory)
        if args.epsilon is not None:
            report_input.epsilon = args.epsilon
        out = Path(args.out) if args.out else directory / "report"
    elif args.space and args.measurements:
        report_input = load_csv_input(args.space, args.measurements, args.epsilon)
        out = Path(args.out) if args.out else Path("report")
    else:
        raise ReportError(
            "give an experiment directory, or both --space SPACE.yaml and "
            "--measurements POINTS.csv"
        )
    report_input.pairs = parse_pairs(report_input.space, args.pair)
    return report_input, out


def run(args: argparse.Namespace) -> int:
    """Write the report and print a summary; return 0, or 2 on invalid input."""
    try:
        report_input, out = _load(args)
        analyses, figures = build_report(report_input, out)
    except (ConfigError, MeasurementError, JournalError, ReportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in summary(report_input, analyses):
        print(line)
    print(f"wrote {out / 'report.md'}")
    print(f"wrote {out / 'report.html'} ({figures} figure{'s' if figures != 1 else ''} embedded)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``report`` as a stand-alone program (the package CLI calls :func:`run`)."""
    parser = argparse.ArgumentParser(prog="spline-nas report", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
