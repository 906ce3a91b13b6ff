"""``spline-nas propose``: the next points to measure, from a space file and a CSV file.

The command fits the spline on whatever measured points are given, wherever they lie
in the search box, as long as they determine it (d + 1 affinely independent points
per choice combination). Only a combination whose points do not determine its spline
gets its missing initial-design points proposed. Proposal k draws its samples from
``(seed, k)`` with k counted from the number of measured rows, so rerunning the
command on the same file gives the same proposals.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from launch.config import ConfigError
from orchestrator.measurements import MeasurementError, read_measurements
from orchestrator.search import Proposal, SplineSearch
from orchestrator.space import SearchSpace


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``propose`` to ``parser``."""
    parser.add_argument(
        "--space",
        required=True,
        metavar="SPACE.yaml",
        help="search-space file with 'parameters' and 'objective'",
    )
    parser.add_argument(
        "--measurements",
        required=True,
        metavar="POINTS.csv",
        help="CSV file with a header of parameter names and the objective name, "
        "one measured point per row",
    )
    parser.add_argument(
        "--count", type=_positive_int, default=1, help="number of points to propose (default: 1)"
    )
    parser.add_argument(
        "--json", action="store_true", help="print the proposals as JSON instead of a table"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the maximizer's samples (default: 0)"
    )
    parser.add_argument(
        "--min-distance",
        type=_non_negative_float,
        default=0.05,
        help="minimum distance of a proposal from every measured point, in normalized "
        "[0, 1] coordinates (default: 0.05)",
    )


def run(args: argparse.Namespace) -> int:
    """Print the proposals; return 0, 1 if none could be made, or 2 on invalid input."""
    try:
        space = SearchSpace.from_yaml(args.space)
        rows = read_measurements(args.measurements, space)
    except (ConfigError, MeasurementError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    search = SplineSearch(
        space,
        seed=args.seed,
        min_distance=args.min_distance,
        max_evaluations=None,
        proposal_index=len(rows),
        complete_initial_design=False,
    )
    for params, value in rows:
        search.tell(params, value)
    proposals = search.ask(count=args.count)
    if not proposals:
        print(
            f"error: no point lies at least --min-distance {args.min_distance:g} away from "
            "every measured point; lower --min-distance",
            file=sys.stderr,
        )
        return 1

    if args.json:
        print(json.dumps({"proposals": [_proposal_json(p) for p in proposals]}))
    else:
        print(format_table(proposals, space))
    if len(proposals) < args.count:
        print(
            f"warning: only {len(proposals)} of {args.count} points could be proposed",
            file=sys.stderr,
        )
    return 0


def _proposal_json(proposal: Proposal) -> dict[str, Any]:
    return {
        "params": proposal.params,
        "predicted": proposal.predicted,
        "kind": proposal.kind,
        "on_boundary": proposal.on_boundary,
    }


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.6g}"
        return text if any(c in text for c in ".enai") else text + ".0"
    return str(value)


def format_table(proposals: list[Proposal], space: SearchSpace) -> str:
    """Format proposals as an aligned text table, one row per proposal."""
    header = ["kind", *space.names, f"predicted {space.objective.name}", "on_boundary"]
    rows = [header]
    for proposal in proposals:
        boundary = ", ".join(f"{name}={side}" for name, side in proposal.on_boundary.items())
        rows.append(
            [
                proposal.kind,
                *(_format_value(proposal.params[name]) for name in space.names),
                "-" if proposal.predicted is None else f"{proposal.predicted:.6g}",
                boundary or "-",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def main(argv: list[str] | None = None) -> int:
    """Run ``propose`` as a stand-alone program (the package CLI calls :func:`run`)."""
    parser = argparse.ArgumentParser(prog="spline-nas propose", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
