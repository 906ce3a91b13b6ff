"""Sections of ``spline-nas report`` as renderer blocks: points, convergence, cost,
and per choice combination the spline's projections, sensitivity and boundary advice.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from orchestrator.report_analysis import (
    WIDEN_FRACTION,
    BoundaryAdvice,
    ComboAnalysis,
    best_point,
    measured_points,
    optimum_word,
    space_size,
)
from orchestrator.report_render import (
    Block,
    Bullets,
    Code,
    Figure,
    Heading,
    Paragraph,
    Table,
)
from orchestrator.space import Parameter, SearchSpace

if TYPE_CHECKING:
    from orchestrator.report import ReportInput

BEST_MARK = "\u2605 best"


def fmt(value: Any) -> str:
    """Format a table value: '-' for None, 6 significant digits for floats."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def combo_slug(space: SearchSpace, combo: tuple[Any, ...]) -> tuple[str, str]:
    """Return a file-name part and a title suffix for a choice combination ("" if none)."""
    if not space.choice:
        return "", ""
    pairs = [f"{p.name}={value}" for p, value in zip(space.choice, combo, strict=True)]
    slug = re.sub(r"[^A-Za-z0-9_=-]+", "_", "_".join(pairs))
    return slug, f" ({', '.join(pairs)})"


def build_blocks(
    report_input: ReportInput, analyses: list[ComboAnalysis], drawn: dict[str, Any]
) -> list[Block]:
    """Return all blocks of the report in order."""
    blocks: list[Block] = [
        Heading(f"Search report: {report_input.title}", 1),
        Paragraph(f"Source: {report_input.source}. Search state: {report_input.status}."),
    ]
    blocks += _overview(report_input, analyses)
    blocks += _points(report_input)
    blocks += _convergence(report_input, drawn)
    blocks += _cost(report_input)
    blocks += _final(report_input)
    for analysis in analyses:
        blocks += _combo_section(report_input.space, analysis, drawn)
    return blocks


def _overview(report_input: ReportInput, analyses: list[ComboAnalysis]) -> list[Block]:
    space = report_input.space
    objective = space.objective
    done = measured_points(report_input.points)
    items = [
        f"Objective: {objective.name}, {objective.direction}d.",
        f"Measured points: {len(done)} of {len(report_input.points)} listed.",
    ]
    best = best_point(space, report_input.points)
    if best is not None:
        items.append(
            f"Best measured point: {best.label}, {_params_text(best.params)}, "
            f"{objective.name} = {fmt(best.value)}."
        )
    for analysis in analyses:
        if analysis.maximum_params is not None:
            _, label = combo_slug(space, analysis.combo)
            items.append(
                f"Spline {optimum_word(space)}{label}: {_params_text(analysis.maximum_params)}, "
                f"predicted {objective.name} = {fmt(analysis.maximum_value)}."
            )
    advice = sum(len(a.advice) for a in analyses)
    items.append(
        f"Boundary advice: {advice} bound{'s' if advice != 1 else ''} to widen."
        if advice
        else "Boundary advice: no bound limits the search."
    )
    return [Heading("Overview"), Bullets(items)]


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{name}={fmt(value)}" for name, value in params.items())


def _points(report_input: ReportInput) -> list[Block]:
    space = report_input.space
    best = best_point(space, report_input.points)
    header = [
        "point",
        "trial",
        *space.names,
        f"measured {space.objective.name}",
        "predicted before measuring",
        "|measured - predicted|",
        "GPU h",
        "state",
        "best",
    ]

    rows, highlight = [], set()
    for number, point in enumerate(report_input.points):
        difference = None
        if point.value is not None and point.predicted is not None:
            difference = abs(point.value - point.predicted)
        is_best = best is not None and point.label == best.label
        if is_best:
            highlight.add(number)
        rows.append(
            [
                point.kind,
                point.label,
                *(fmt(point.params.get(n)) for n in space.names),
                fmt(point.value),
                fmt(point.predicted),
                fmt(difference),
                fmt(point.gpu_hours),
                point.state,
                BEST_MARK if is_best else "",
            ]
        )

    # Right-align the numeric parameter columns and the four value columns.
    first = 2 + len(space.names)
    numeric = {2 + k for k, p in enumerate(space.parameters) if p.is_numeric}
    numeric |= set(range(first, first + 4))

    blocks: list[Block] = [Heading("Points")]
    if not rows:
        return [*blocks, Paragraph("No point has been proposed yet.")]
    blocks.append(
        Paragraph(
            "Initial points form the starting design; incremental points optimize the spline. "
            f"{report_input.prediction_note} The best measured point is marked {BEST_MARK}."
        )
    )
    blocks.append(Table(header, rows, frozenset(numeric), frozenset(highlight)))
    return blocks


def _convergence(report_input: ReportInput, drawn: dict[str, Any]) -> list[Block]:
    blocks: list[Block] = [Heading("Convergence")]
    if "convergence" not in drawn:
        return [*blocks, Paragraph("No point has been measured yet.")]
    blocks.append(drawn["convergence"])
    done = measured_points(report_input.points)
    predicted = [p for p in done if p.predicted is not None]
    epsilon = report_input.epsilon
    if not predicted:
        text = "No incremental point has been measured yet, so no prediction can be checked."
    else:
        last = predicted[-1]
        difference = abs((last.value or 0.0) - (last.predicted or 0.0))
        text = f"Last incremental point {last.label}: |measured - predicted| = {difference:.4g}"
        if epsilon is not None:
            verdict = "below" if difference < epsilon else "not below"
            text += f", {verdict} epsilon = {epsilon:g}"
        text += "."
    return [*blocks, Paragraph(text)]


def _final(report_input: ReportInput) -> list[Block]:
    if report_input.final_table is None:
        return []
    header, rows = report_input.final_table
    return [
        Heading("Final training"),
        Paragraph(
            "The chosen configuration trained on the whole training split after the search, "
            "next to the best search point; scale multiplies the width parameters. GMACs are "
            "multiply-adds per image in billions."
        ),
        Table(header, rows),
    ]


def _cost(report_input: ReportInput) -> list[Block]:
    space = report_input.space
    known = [p for p in report_input.points if p.gpu_hours is not None]
    measured = len(measured_points(report_input.points))
    items = []
    if known:
        total = sum(p.gpu_hours or 0.0 for p in known)
        hours = [p.gpu_hours or 0.0 for p in known]
        items.append(
            f"GPU hours: {total:.4g} in total over {len(known)} points with a result "
            f"(per point: min {min(hours):.3g}, mean {total / len(known):.3g}, "
            f"max {max(hours):.3g})."
        )
    else:
        items.append("GPU hours: not recorded for these points.")
    size = space_size(space)
    if size is None:
        items.append(
            f"Search space: continuous (a float parameter has no step); "
            f"{measured} points measured."
        )
    else:
        items.append(
            f"Search space: {size:,} combinations of legal values; {measured} "
            f"points measured ({100.0 * measured / size:.3g}% of them)."
        )
    return [Heading("Cost"), Bullets(items)]


def _combo_section(
    space: SearchSpace, analysis: ComboAnalysis, drawn: dict[str, Any]
) -> list[Block]:
    _, label = combo_slug(space, analysis.combo)
    blocks: list[Block] = [Heading(f"Spline{label}")]
    if analysis.spline is None:
        return [*blocks, Paragraph(_unfitted_text(space, analysis))]
    blocks.append(
        Paragraph(
            f"Cubic polyharmonic spline fitted on {len(analysis.points)} measured points, "
            "as the search fits it."
        )
    )
    blocks.append(Heading("Projections", 3))
    projections = drawn["projections"].get(analysis.combo, [])
    if projections:
        blocks += projections
    else:
        blocks.append(
            Paragraph("One numeric parameter: the slice plot below shows the whole spline.")
        )
    blocks += _sensitivity(space, analysis, drawn["slices"].get(analysis.combo))
    blocks += _advice(space, analysis)
    return blocks


def _unfitted_text(space: SearchSpace, analysis: ComboAnalysis) -> str:
    if analysis.fit_error:
        return f"The spline could not be fitted: {analysis.fit_error}."
    need = analysis.missing_points
    return (
        f"Not enough points for a spline yet: {len(analysis.points)} measured, and a "
        f"spline over {space.dim} numeric parameters needs {space.dim + 1} affinely "
        f"independent points, so {need} more affinely independent point"
        f"{'s' if need != 1 else ''} must be measured. The table and convergence "
        "sections above show what there is."
    )


def _sensitivity(
    space: SearchSpace, analysis: ComboAnalysis, figure: Figure | None
) -> list[Block]:
    name = space.objective.name
    header = [
        "rank",
        "parameter",
        f"spread of {name} along slice",
        "slice min",
        "slice max",
        f"slope at best point ({name} per unit)",
    ]
    rows = [
        [
            str(rank),
            row.name,
            f"{row.spread:.4g}",
            f"{row.slice_min:.4g}",
            f"{row.slice_max:.4g}",
            f"{row.slope:+.4g}",
        ]
        for rank, row in enumerate(analysis.sensitivity, start=1)
    ]
    blocks: list[Block] = [
        Heading("Sensitivity", 3),
        Paragraph(
            "Each parameter is varied over its whole range with the others fixed at "
            "the best measured point; parameters are ranked by the spread of the "
            "spline along that slice. The slope is the spline gradient at the best "
            "point, in objective units per unit of the parameter."
        ),
        Table(header, rows, frozenset({0, 2, 3, 4, 5})),
    ]
    if figure is not None:
        blocks.append(figure)
    return blocks


def _advice(space: SearchSpace, analysis: ComboAnalysis) -> list[Block]:
    blocks: list[Block] = [Heading("Boundary advice", 3)]
    if not analysis.advice:
        return [
            *blocks,
            Paragraph(
                f"Neither the best measured point nor the spline {optimum_word(space)} sits on "
                "a bound where the spline still improves outward; the ranges look wide enough."
            ),
        ]
    params = {p.name: p for p in space.numeric}
    items = [_advice_text(space, advice) for advice in analysis.advice]
    widened = {a.name: (a.new_low, a.new_high) for a in analysis.advice}
    lines = [_yaml_line(params[name], low, high) for name, (low, high) in widened.items()]
    return [
        *blocks,
        Bullets(items),
        Paragraph("Suggested ranges for the 'parameters' section of the space:"),
        Code("\n".join(lines)),
    ]


def _advice_text(space: SearchSpace, advice: BoundaryAdvice) -> str:
    verb = "rises" if space.objective.direction == "maximize" else "falls"
    text = (
        f"{advice.name}: the {advice.where} lies on the {advice.side} bound "
        f"{advice.bound:g} and the spline still {verb} beyond it ({advice.slope:+.3g} "
        f"{space.objective.name} per unit of {advice.name}); widen the range to "
        f"[{advice.new_low:g}, {advice.new_high:g}] ({WIDEN_FRACTION:.0%} of the range "
        f"on the {advice.side} side)."
    )
    if advice.note:
        text += f" Note: {advice.note}."
    return text


def _yaml_line(param: Parameter, low: float, high: float) -> str:
    parts = [f"type: {param.type}", f"low: {low:.12g}", f"high: {high:.12g}"]
    if param.step is not None:
        parts.append(f"step: {param.step:g}")
    if param.log:
        parts.append("log: true")
    return f"{param.name}: {{{', '.join(parts)}}}"
