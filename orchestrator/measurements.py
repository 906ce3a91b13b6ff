"""Reading measured points from CSV files for the offline ``propose`` command.

The header names every parameter of the search space and the objective, in any order,
for example ``c1,phi,top1``; each further row is one measured point.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from orchestrator.space import Parameter, SearchSpace


class MeasurementError(ValueError):
    """A measurements file is unreadable or one of its rows is invalid.

    The message starts with ``FILE:LINE:`` (``FILE:`` for the whole file).
    """

    def __init__(self, path: str | Path, line: int | None, message: str):
        self.path = str(path)
        self.line = line
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


def read_measurements(path: str | Path, space: SearchSpace) -> list[tuple[dict[str, Any], float]]:
    """Read measured points from a CSV file.

    Parameters
    ----------
    path : str or Path
        CSV file with a header of parameter names and the objective name.
    space : SearchSpace
        Search space the points belong to.

    Returns
    -------
    list of (dict, float)
        Parameter dict and objective value of each row, in file order. Blank lines are
        skipped.

    Raises
    ------
    MeasurementError
        When the file cannot be read or the header lacks or adds columns. Also when a
        row has a missing field, a value that is not a finite number, a value outside
        the search box, a fractional integer or a choice not in ``choices``. The
        message names the file and the line.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as stream:
            return _read_rows(path, csv.reader(stream), space)
    except FileNotFoundError:
        raise MeasurementError(path, None, "file not found; check the path") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MeasurementError(path, None, f"cannot read the file: {exc}") from exc


def _read_rows(
    path: str | Path, reader: Any, space: SearchSpace
) -> list[tuple[dict[str, Any], float]]:
    header = _read_header(path, reader, space)
    rows: list[tuple[dict[str, Any], float]] = []
    for fields in reader:
        if not any(field.strip() for field in fields):
            continue
        line = reader.line_num
        if len(fields) != len(header):
            raise MeasurementError(
                path,
                line,
                f"expected {len(header)} fields ({','.join(header)}), got {len(fields)}",
            )
        record = dict(zip(header, (field.strip() for field in fields), strict=True))
        params = {p.name: _parse_value(path, line, p, record[p.name]) for p in space.parameters}
        value = _parse_number(path, line, space.objective.name, record[space.objective.name])
        rows.append((params, value))
    return rows


def _read_header(path: str | Path, reader: Any, space: SearchSpace) -> list[str]:
    """Read the header row and check it names exactly the parameters and the objective."""
    header = next(reader, None)
    if header is None:
        raise MeasurementError(path, None, "the file is empty; expected a header row")
    header = [name.strip() for name in header]
    expected = [*space.names, space.objective.name]
    duplicates = sorted({name for name in header if header.count(name) > 1})
    unknown = [name for name in header if name not in expected]
    missing = [name for name in expected if name not in header]
    problems = []
    if duplicates:
        problems.append(f"duplicate columns {duplicates}")
    if unknown:
        problems.append(f"unknown columns {unknown}")
    if missing:
        problems.append(f"missing columns {missing}")
    if problems:
        raise MeasurementError(
            path, 1, f"invalid header: {'; '.join(problems)}; expected {','.join(expected)}"
        )
    return header


def _parse_number(path: str | Path, line: int, name: str, text: str) -> float:
    """Parse a finite float."""
    if not text:
        raise MeasurementError(path, line, f"column {name!r} is empty")
    try:
        value = float(text)
    except ValueError:
        raise MeasurementError(path, line, f"column {name!r}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise MeasurementError(path, line, f"column {name!r}: {text!r} is not a finite number")
    return value


def _parse_value(path: str | Path, line: int, param: Parameter, text: str) -> Any:
    """Parse and range-check one parameter value."""
    if not param.is_numeric:
        by_text = {str(choice): choice for choice in param.choices}
        if text not in by_text:
            raise MeasurementError(
                path,
                line,
                f"column {param.name!r}: {text!r} is not one of the choices {list(by_text)}",
            )
        return by_text[text]
    value = _parse_number(path, line, param.name, text)
    if not param.low <= value <= param.high:
        raise MeasurementError(
            path,
            line,
            f"column {param.name!r}: {text} lies outside the range "
            f"[{param.low:g}, {param.high:g}] of the search space",
        )
    if param.type == "int" and value != round(value):
        raise MeasurementError(path, line, f"column {param.name!r}: {text} is not an integer")
    return param.python_value(value)
