"""Tests of the measurements CSV reader and the offline propose command."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.measurements import MeasurementError, read_measurements
from orchestrator.propose import add_arguments, run
from orchestrator.space import SearchSpace

WORKTREE = Path(__file__).resolve().parents[2]
SPACE = """\
parameters:
  c1: {type: int, low: 32, high: 150}
  phi: {type: float, low: 1.0, high: 2.0, step: 0.1}
  stem: {type: choice, choices: [basic, deep]}
objective: {name: top1, direction: maximize}
"""
# Five affinely independent points per stem determine both splines (d = 2).
POINTS = """\
c1,phi,stem,top1
32,1.0,basic,40
150,1.0,basic,52
32,2.0,basic,47
100,1.5,basic,61
75,1.2,basic,58.5
32,1.0,deep,42
150,2.0,deep,55
90,1.5,deep,60
"""


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    points = tmp_path / "points.csv"
    points.write_text(POINTS)
    return space, points


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_measurements_read_valid_file(files):
    space_path, points = files
    rows = read_measurements(points, SearchSpace.from_yaml(space_path))
    assert len(rows) == 8
    assert rows[0] == ({"c1": 32, "phi": 1.0, "stem": "basic"}, 40.0)
    assert isinstance(rows[0][0]["c1"], int)


def test_measurements_columns_in_any_order_and_blank_lines(files, tmp_path):
    space_path, _ = files
    path = tmp_path / "reordered.csv"
    path.write_text("top1,stem,phi,c1\n\n61,deep,1.5,100.0\n")
    rows = read_measurements(path, SearchSpace.from_yaml(space_path))
    assert rows == [({"c1": 100, "phi": 1.5, "stem": "deep"}, 61.0)]


@pytest.mark.parametrize(
    "text, message",
    [
        ("c1,phi,top1\n40,1.2,50\n", r":1: invalid header: missing columns \['stem'\]"),
        (
            "c1,phi,stem,top1,lr\n40,1.2,deep,50,0.1\n",
            r":1: invalid header: unknown columns \['lr'\]",
        ),
        ("c1,phi,phi,stem,top1\n", r":1: invalid header: duplicate columns \['phi'\]"),
        ("c1,phi,stem,top1\n40,1.2,deep,50\n40,1.2,deep\n", r":3: expected 4 fields"),
        ("c1,phi,stem,top1\n40,abc,deep,50\n", r":2: column 'phi': 'abc' is not a number"),
        ("c1,phi,stem,top1\n40,1.2,deep,nan\n", r":2: column 'top1': 'nan' is not a finite"),
        ("c1,phi,stem,top1\n40,1.2,deep,inf\n", r":2: column 'top1': 'inf' is not a finite"),
        ("c1,phi,stem,top1\n40,,deep,50\n", r":2: column 'phi' is empty"),
        ("c1,phi,stem,top1\n40,2.5,deep,50\n", r":2: column 'phi': 2.5 lies outside the range"),
        ("c1,phi,stem,top1\n20,1.5,deep,50\n", r":2: column 'c1': 20 lies outside"),
        ("c1,phi,stem,top1\n40.5,1.5,deep,50\n", r":2: column 'c1': 40.5 is not an integer"),
        ("c1,phi,stem,top1\n40,1.5,wide,50\n", r":2: column 'stem': 'wide' is not one of"),
        ("", r": the file is empty"),
    ],
)
def test_measurements_reject_bad_rows(files, tmp_path, text, message):
    space_path, _ = files
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(MeasurementError, match=rf"{path}{message}"):
        read_measurements(path, SearchSpace.from_yaml(space_path))


def test_measurements_missing_file(files, tmp_path):
    space_path, _ = files
    with pytest.raises(MeasurementError, match="file not found"):
        read_measurements(tmp_path / "none.csv", SearchSpace.from_yaml(space_path))


def test_propose_json_output(files, capsys):
    space, points = files
    assert (
        run(_args("--space", str(space), "--measurements", str(points), "--json", "--count", "2"))
        == 0
    )
    output = json.loads(capsys.readouterr().out)
    proposals = output["proposals"]
    assert len(proposals) == 2
    for proposal in proposals:
        assert set(proposal) >= {"params", "predicted", "on_boundary"}
        assert isinstance(proposal["params"]["c1"], int)
        assert proposal["predicted"] is not None
        assert proposal["kind"] == "incremental"


def test_propose_fits_points_outside_initial_design(files, capsys):
    space, points = files
    run(_args("--space", str(space), "--measurements", str(points), "--json", "--count", "3"))
    proposals = json.loads(capsys.readouterr().out)["proposals"]
    assert [p["kind"] for p in proposals] == ["incremental"] * 3


def test_propose_missing_initial_points_when_undetermined(files, tmp_path, capsys):
    space, _ = files
    points = tmp_path / "few.csv"
    points.write_text("c1,phi,stem,top1\n32,1.0,basic,40\n150,2.0,basic,52\n")
    assert (
        run(_args("--space", str(space), "--measurements", str(points), "--json", "--count", "2"))
        == 0
    )
    proposals = json.loads(capsys.readouterr().out)["proposals"]
    assert proposals[0] == {
        "params": {"c1": 91, "phi": 1.5, "stem": "basic"},
        "predicted": None,
        "kind": "initial",
        "on_boundary": {},
    }
    assert proposals[1]["params"] == {"c1": 32, "phi": 2.0, "stem": "basic"}


def test_propose_table_output(files, capsys):
    space, points = files
    assert run(_args("--space", str(space), "--measurements", str(points))) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["kind", "c1", "phi", "stem", "predicted", "top1", "on_boundary"]
    fields = lines[1].split()
    assert fields[0] == "incremental"
    assert fields[1].isdigit()
    assert "." in fields[2]


def test_propose_same_input_same_output(files, capsys):
    space, points = files
    argv = ("--space", str(space), "--measurements", str(points), "--json", "--seed", "3")
    run(_args(*argv))
    first = capsys.readouterr().out
    run(_args(*argv))
    assert capsys.readouterr().out == first


@pytest.mark.parametrize(
    "space_text, csv_text, message",
    [
        (SPACE, "c1,phi,top1\n40,1.2,50\n", "missing columns"),
        (SPACE, "c1,phi,stem,top1\n40,1.2,deep,x\n", "points.csv:2: column 'top1'"),
        (SPACE.replace("low: 32", "low: '32'"), POINTS, "space.yaml:2: key 'parameters.c1.low'"),
    ],
)
def test_propose_bad_input_exits_2(tmp_path, capsys, space_text, csv_text, message):
    space = tmp_path / "space.yaml"
    space.write_text(space_text)
    points = tmp_path / "points.csv"
    points.write_text(csv_text)
    assert run(_args("--space", str(space), "--measurements", str(points))) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ")
    assert message in captured.err


def test_propose_subprocess_exit_status(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    points = tmp_path / "points.csv"
    points.write_text("c1,phi,stem,top1\n40,1.2,deep,50\n999,1.2,deep,50\n")
    code = (
        "import sys; from orchestrator.propose import main; "
        f"sys.exit(main(['--space', {str(space)!r}, '--measurements', {str(points)!r}]))"
    )
    env = {**os.environ, "PYTHONPATH": str(WORKTREE)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 2
    assert f"error: {points}:3: column 'c1': 999 lies outside" in result.stderr


def test_propose_no_admissible_point_exits_1(tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text(
        "parameters:\n  a: {type: int, low: 0, high: 1}\n  b: {type: int, low: 0, high: 1}\n"
        "objective: {name: y}\n"
    )
    points = tmp_path / "points.csv"
    points.write_text("a,b,y\n0,0,1\n0,1,2\n1,0,3\n1,1,4\n")
    assert run(_args("--space", str(space), "--measurements", str(points))) == 1
    assert "lower --min-distance" in capsys.readouterr().err


def test_propose_rejects_bad_count():
    with pytest.raises(SystemExit):
        _args("--space", "s", "--measurements", "m", "--count", "0")
