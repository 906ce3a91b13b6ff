"""``spline-nas report`` on a recorded search, a running search and CSV measurements."""

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from orchestrator import report
from orchestrator.journal import read_journal
from orchestrator.report_analysis import widened_range
from orchestrator.space import Parameter
from orchestrator.state import ExperimentState

SUPPORT = Path(__file__).resolve().parents[1] / "support"
REPO = Path(__file__).resolve().parents[2]

EXPERIMENT = """\
name: fn-report
space:
  parameters:
    a: {type: int, low: 0, high: 100}
    b: {type: float, low: 0.0, high: 100.0}
    c: {type: int, low: 0, high: 100}
  objective: {name: top1, direction: maximize}
model: {name: quadratic}
data: {dataset: imagefolder, root: /tmp}
search: {seed: 3, epsilon: 0.05, min_distance: 0.05, max_evaluations: 13}
"""

SITE = """\
backend: custom
poll_interval_s: 0.05
result_grace_s: 1
max_concurrent_trials: 1
max_retries: 2
custom:
  class: function_backend:FunctionBackend
  options: {objective: quadratic, delay_s: 0.05, fault_fraction: 0.0}
"""

# Two numeric parameters (one log-scaled int) and a choice: one spline per stem.
SPACE = """\
parameters:
  width: {type: int, low: 8, high: 128, log: true}
  depth: {type: int, low: 1, high: 9, step: 2}
  stem: {type: choice, choices: [basic, deep]}
objective: {name: loss, direction: minimize}
"""


def _cli(cwd, *args, timeout=180):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SUPPORT), str(REPO)])
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A finished search of the function backend (quadratic, optimum inside the box)."""
    root = tmp_path_factory.mktemp("recorded")
    (root / "exp.yaml").write_text(EXPERIMENT)
    (root / "site.yaml").write_text(SITE)
    completed = _cli(root, "run", "exp.yaml", "--site", "site.yaml", "--dir", "run")
    assert completed.returncode == 0, completed.stderr[-3000:]
    return root / "run"


def _loss(width, depth, stem):
    """A smooth loss with its minimum inside the box, lower for the deep stem."""
    shift = 0.0 if stem == "deep" else 0.3
    return (np.log2(width) - 5.0) ** 2 / 4 + (depth - 5) ** 2 / 8 + 1.0 + shift


def _write_csv(path, rows):
    lines = ["width,depth,stem,loss"]
    lines += [f"{w},{d},{s},{_loss(w, d, s):.6f}" for w, d, s in rows]
    path.write_text("\n".join(lines) + "\n")


CSV_ROWS = [
    (w, d, s)
    for s in ("basic", "deep")
    for w, d in [(128, 9), (8, 1), (32, 5), (8, 9), (128, 1), (45, 3), (23, 7)]
]


def _figures_embedded(out):
    html = (out / "report.html").read_text()
    figures = sorted((out / "figures").glob("*.png"))
    for png in figures:
        assert base64.b64encode(png.read_bytes()).decode() in html, f"{png.name} not embedded"
    assert html.count('src="data:image/png;base64,') == len(figures)
    return html, figures


def _check_png(png):
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 20_000, f"{png} is only {png.stat().st_size} bytes"
    image = matplotlib.image.imread(png)
    assert image.shape[0] > 400
    assert image.shape[1] > 600
    # Not a blank canvas: many distinct colours (contours, lines, text).
    assert len(np.unique(image.reshape(-1, image.shape[-1])[::7], axis=0)) > 50


def _table_rows(markdown):
    return [
        line
        for line in markdown.splitlines()
        if line.startswith("| initial") or line.startswith("| incremental")
    ]


def test_report_of_recorded_experiment(recorded):
    journal = recorded / "journal.jsonl"
    before = journal.read_bytes()
    completed = _cli(recorded.parent, "report", "run")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "Traceback" not in completed.stderr
    out = recorded / "report"
    assert f"wrote {Path('run') / 'report' / 'report.html'}" in completed.stdout

    state = ExperimentState.from_events(read_journal(journal))
    best = max((t for t in state.trials.values() if t.value is not None), key=lambda t: t.value)
    assert f"best top1 {best.value:.6g} at {best.trial_id}" in completed.stdout
    markdown = (out / "report.md").read_text()
    rows = _table_rows(markdown)
    assert len(rows) == len(state.trials)
    for trial in state.trials.values():
        row = next(r for r in rows if f"| {trial.trial_id} |" in r)
        assert row.startswith(f"| {trial.kind} |")
        assert f"| {trial.value:.6g} |" in row
        assert row.endswith("| ★ best |") == (trial.trial_id == best.trial_id)
        if trial.predicted is not None:
            assert f"| {abs(trial.value - trial.predicted):.6g} |" in row
    assert "below epsilon = 0.05" in markdown
    assert "Boundary advice: no bound limits the search." in markdown
    assert "Search space: continuous" in markdown
    assert (
        f"GPU hours: {state.gpu_hours():.4g} in total over {len(state.trials)} points" in markdown
    )

    html, figures = _figures_embedded(out)
    names = {png.name for png in figures}
    assert names == {"convergence.png", "projection_a_b.png", "projection_b_c.png", "slices.png"}
    for png in figures:
        _check_png(png)
        assert f"](figures/{png.name})" in markdown
    assert "http://" not in html
    assert "https://" not in html
    # Read only: the journal is unchanged and no lease was taken.
    assert journal.read_bytes() == before
    assert not (recorded / "lease.json").exists()


def test_report_of_running_search_is_read_only(recorded, tmp_path):
    """A journal cut in the middle of a search, with a torn last line and a live lease."""
    running = tmp_path / "running"
    shutil.copytree(recorded, running, ignore=shutil.ignore_patterns("report"))
    lines = (running / "journal.jsonl").read_bytes().splitlines(keepends=True)
    cut = [n for n, line in enumerate(lines) if b'"event":"result"' in line][10]
    text = b"".join(lines[:cut]) + lines[cut][:25]
    (running / "journal.jsonl").write_bytes(text)
    lease = json.dumps({"host": "login2", "pid": 4242, "started": 1.0, "heartbeat": 2.0})
    (running / "lease.json").write_text(lease)

    assert report.main([str(running), "--out", str(tmp_path / "out")]) == 0
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "Search state: running or interrupted (1 active trial)." in markdown
    assert "| submitted |" in markdown
    assert len(_table_rows(markdown)) == 11
    assert (running / "journal.jsonl").read_bytes() == text
    assert (running / "lease.json").read_text() == lease
    assert not (running / "report").exists()


def test_report_from_csv_with_choices(tmp_path, capsys):
    (tmp_path / "space.yaml").write_text(SPACE)
    _write_csv(tmp_path / "points.csv", CSV_ROWS)
    out = tmp_path / "out"
    args = [
        "--space",
        str(tmp_path / "space.yaml"),
        "--measurements",
        str(tmp_path / "points.csv"),
        "--out",
        str(out),
        "--epsilon",
        "0.01",
        "--pair",
        "depth,width",
    ]
    assert report.main(args) == 0
    printed = capsys.readouterr().out
    assert "points.csv: 14 measured points of 14" in printed
    assert "best loss 1 at row 10 (width=32, depth=5, stem=deep)" in printed

    markdown = (out / "report.md").read_text()
    assert "## Spline (stem=basic)" in markdown
    assert "## Spline (stem=deep)" in markdown
    rows = _table_rows(markdown)
    assert len(rows) == 14
    assert sum(row.startswith("| initial") for row in rows) == 10
    best_rows = [row for row in rows if "★ best" in row]
    assert len(best_rows) == 1
    assert "| row 10 |" in best_rows[0]
    # Incremental rows carry the prediction of the spline of the rows above them.
    assert all(" | - | - | - | done |" not in row for row in rows if "incremental" in row)
    # 121 widths x 5 depths x 2 stems.
    assert "Search space: 1,210 combinations of legal values; 14 points measured" in markdown
    assert "GPU hours: not recorded" in markdown

    _, figures = _figures_embedded(out)
    # The --pair is the reverse of the consecutive pair, so it adds no figure.
    assert {png.name for png in figures} == {
        "convergence.png",
        "projection_stem=basic_width_depth.png",
        "projection_stem=deep_width_depth.png",
        "slices_stem=basic.png",
        "slices_stem=deep.png",
    }
    for png in figures:
        _check_png(png)


def test_boundary_advice_for_optimum_beyond_box(tmp_path):
    """The quadratic's maximum at 60 lies above the box [0, 40] of a and b."""
    (tmp_path / "space.yaml").write_text(
        "parameters:\n"
        "  a: {type: int, low: 0, high: 40}\n"
        "  b: {type: float, low: 10.0, high: 40.0, step: 5.0}\n"
        "objective: {name: top1}\n"
    )
    points = [(40, 40.0), (0, 10.0), (20, 25.0), (0, 40.0), (40, 10.0), (30, 35.0), (35, 30.0)]
    lines = ["a,b,top1"]
    lines += [
        f"{a},{b},{90 - ((a - 60) / 50) ** 2 * 10 - ((b - 60) / 50) ** 2 * 10:.6f}"
        for a, b in points
    ]
    (tmp_path / "points.csv").write_text("\n".join(lines) + "\n")

    out = tmp_path / "out"
    assert (
        report.main(
            [
                "--space",
                str(tmp_path / "space.yaml"),
                "--measurements",
                str(tmp_path / "points.csv"),
                "--out",
                str(out),
            ]
        )
        == 0
    )

    markdown = (out / "report.md").read_text()
    assert (
        "a: the best measured point lies on the high bound 40 and the spline still rises"
        in markdown
    )
    assert "b: the best measured point lies on the high bound 40" in markdown
    assert "a: {type: int, low: 0, high: 60}" in markdown
    assert "b: {type: float, low: 10, high: 55, step: 5}" in markdown
    assert "Boundary advice: 2 bounds to widen." in markdown


@pytest.mark.parametrize(
    ("param", "side", "expected"),
    [
        (Parameter("c1", "int", 32, 150), "high", (32, 209, "")),
        (Parameter("c1", "int", 32, 150), "low", (16, 150, "")),
        (Parameter("lr", "float", 0.001, 0.1, log=True), "high", (0.001, 1.0, "")),
        (Parameter("phi", "float", 1.0, 2.0, step=0.1), "low", (0.5, 2.0, "")),
        (Parameter("g", "int", 1, 8), "low", (1, 8, "cannot move lower")),
        (Parameter("a", "int", 0, 100), "low", (0, 100, "cannot move lower")),
    ],
)
def test_widened_range(param, side, expected):
    low, high, note = widened_range(param, side)
    assert (low, high) == pytest.approx(expected[:2])
    assert expected[2] in note
    assert bool(note) == bool(expected[2])


def test_one_point_gives_partial_report(tmp_path):
    (tmp_path / "space.yaml").write_text(SPACE)
    _write_csv(tmp_path / "points.csv", [(32, 5, "deep")])
    out = tmp_path / "out"
    assert (
        report.main(
            [
                "--space",
                str(tmp_path / "space.yaml"),
                "--measurements",
                str(tmp_path / "points.csv"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    markdown = (out / "report.md").read_text()
    assert len(_table_rows(markdown)) == 1
    assert "| ★ best |" in markdown
    assert "(stem=deep)\n\nNot enough points for a spline yet: 1 measured" in markdown
    assert "needs 3 affinely independent points, so 2 more affinely independent points" in markdown
    assert "(stem=basic)\n\nNot enough points for a spline yet: 0 measured" in markdown
    assert [png.name for png in (out / "figures").glob("*.png")] == ["convergence.png"]
    _figures_embedded(out)


def test_collinear_points_say_how_many_more(tmp_path, capsys):
    (tmp_path / "space.yaml").write_text(SPACE.replace(", deep", ""))
    _write_csv(tmp_path / "points.csv", [(8, 1, "basic"), (32, 5, "basic"), (128, 9, "basic")])
    assert (
        report.main(
            [
                "--space",
                str(tmp_path / "space.yaml"),
                "--measurements",
                str(tmp_path / "points.csv"),
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    assert "spline (stem=basic): needs 1 more affinely independent points" in (
        capsys.readouterr().out
    )


@pytest.mark.parametrize(
    ("files", "argv", "message"),
    [
        ({}, ["missing"], "experiment directory missing not found"),
        ({"empty/x": ""}, ["empty"], "empty/experiment.yaml not found"),
        (
            {"space.yaml": SPACE, "p.csv": ""},
            ["--space", "space.yaml", "--measurements", "p.csv"],
            "the file is empty; expected a header row",
        ),
        (
            {"space.yaml": SPACE, "p.csv": "width,depth,stem,loss\n"},
            ["--space", "space.yaml", "--measurements", "p.csv"],
            "no measured points below",
        ),
        (
            {"space.yaml": SPACE, "p.csv": "width,depth,stem,loss\n8,1,basic,2\n"},
            ["--space", "space.yaml", "--measurements", "p.csv", "--pair", "width,stem"],
            "stem is not a numeric parameter; the numeric parameters are width, depth",
        ),
        ({}, ["--space", "space.yaml"], "give an experiment directory, or both --space"),
        (
            {"d/x": ""},
            ["d", "--space", "s.yaml", "--measurements", "p.csv"],
            "either EXPERIMENT_DIR or --space",
        ),
        (
            {"space.yaml": "parameters: {}\nobjective: {name: loss}\n", "p.csv": "x\n"},
            ["--space", "space.yaml", "--measurements", "p.csv"],
            "no parameters given",
        ),
    ],
)
def test_bad_inputs_exit_2(tmp_path, monkeypatch, capsys, files, argv, message):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    assert report.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: "), captured.err
    assert message in captured.err
    assert not (tmp_path / "report").exists()


def test_cli_bad_journal_exit_2(recorded, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(recorded, broken, ignore=shutil.ignore_patterns("report"))
    lines = (broken / "journal.jsonl").read_text().splitlines(keepends=True)
    lines[3] = "{not json\n"
    (broken / "journal.jsonl").write_text("".join(lines))
    completed = _cli(tmp_path, "report", "broken")
    assert completed.returncode == 2
    assert completed.stderr.startswith("error: ")
    assert "line 4 is damaged" in completed.stderr
    assert "Traceback" not in completed.stderr
