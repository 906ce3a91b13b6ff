"""The final run after a search, driven through the fast function backend."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from launch.site import load_site, make_backend
from orchestrator.controller import CUDA_CONTEXT_GB, Controller
from orchestrator.experiment import experiment_from_text
from orchestrator.final import FinalError, FinalRun, largest_fitting_scale, scale_widths
from orchestrator.journal import read_journal
from orchestrator.state import ExperimentState

SUPPORT = Path(__file__).resolve().parents[1] / "support"
REPO = Path(__file__).resolve().parents[2]

EXPERIMENT = """\
name: fn-final
space:
  parameters:
    a: {type: int, low: 10, high: 100}
    b: {type: int, low: 10, high: 100}
    r: {type: float, low: 0.0, high: 1.0, step: 0.1}
  objective: {name: top1, direction: maximize}
model: {name: quadratic}
data: {dataset: imagefolder, root: /tmp, train_fraction: 0.5}
search: {seed: 1, epsilon: 5.0, min_distance: 0.05, max_evaluations: 12}
"""

SITE = """\
backend: custom
poll_interval_s: 0.05
result_grace_s: 1
gpu_memory_gb: GPU_MEMORY
custom:
  class: function_backend:FunctionBackend
  options: {objective: quadratic, delay_s: 0.05}
"""


@pytest.fixture()
def searched(tmp_path, monkeypatch):
    """An experiment directory whose search has finished."""
    (tmp_path / "exp.yaml").write_text(EXPERIMENT)
    (tmp_path / "site.yaml").write_text(SITE.replace("GPU_MEMORY", "16"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SUPPORT), str(REPO)]))
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "run",
            "exp.yaml",
            "--site",
            "site.yaml",
            "--dir",
            "run",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    monkeypatch.syspath_prepend(str(SUPPORT))
    return tmp_path / "run"


def _args(**values):
    defaults = {
        "params": None,
        "scale": 1.0,
        "scale_params": None,
        "epochs": None,
        "fine_tune_epochs": 0,
        "fine_tune_lr": 0.01,
        "new": False,
    }
    defaults.update(values)
    return argparse.Namespace(**defaults)


def _controller(directory):
    events = read_journal(directory / "journal.jsonl")
    text = (directory / "experiment.yaml").read_text()
    experiment = experiment_from_text(text, "experiment.yaml", directory)
    site = load_site(str(directory / "site.yaml"))
    controller = Controller(directory, experiment, site, make_backend(site))
    controller.start(events, resume_event="final_start")
    return controller


def _memory_by_width(spec):
    """A stand-in estimate: 0.1 GB per unit of width a + b."""
    params = spec["model"]["params"]
    return 0.1 * (params["a"] + params["b"])


def test_final_scales_widths_on_full_data(searched):
    controller = _controller(searched)
    best_params, _ = controller.search.best()
    try:
        outcome = FinalRun(controller, memory_estimate=lambda spec: 1.0).run(
            _args(scale=1.5, epochs=3)
        )
    finally:
        controller.close()
    assert outcome == "done"
    state = ExperimentState.from_events(read_journal(searched / "journal.jsonl"))
    final = state.final_trials()[0]
    assert final.kind == "final"
    assert final.params["a"] == round(best_params["a"] * 1.5)
    assert final.params["b"] == round(best_params["b"] * 1.5)
    # Floats are not widths, so the default --scale-params leaves them alone.
    assert final.params["r"] == best_params["r"]
    spec = json.loads((searched / "trials" / final.trial_id / "spec.json").read_text())
    assert spec["data"]["train_fraction"] == 1.0
    assert spec["train"]["epochs"] == 3
    # The search trials used half of the training split.
    first = json.loads((searched / "trials" / "t0000" / "spec.json").read_text())
    assert first["data"]["train_fraction"] == 0.5
    # The final run is not a search measurement.
    assert len(state.measurements) == sum(
        t.is_search_point and t.value is not None for t in state.trials.values()
    )


def test_final_too_large_scale_reports_largest(searched):
    controller = _controller(searched)
    best_params, _ = controller.search.best()
    try:
        with pytest.raises(FinalError, match="the largest factor that fits is") as error:
            FinalRun(controller, memory_estimate=_memory_by_width).run(_args(scale=10.0))
    finally:
        controller.close()
    fitting = (16 - CUDA_CONTEXT_GB) / (0.1 * (best_params["a"] + best_params["b"]))
    reported = float(str(error.value).rsplit(" ", 1)[-1])
    assert reported <= fitting
    assert reported >= fitting - 0.1
    state = ExperimentState.from_events(read_journal(searched / "journal.jsonl"))
    assert state.final_trials() == []


def test_final_cli_unknown_param_exits_2(searched):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SUPPORT), str(REPO)]))
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "final",
            str(searched),
            "--params",
            "a=50,zz=3",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2
    assert "unknown parameter 'zz'" in completed.stderr


def test_scale_widths_rounds_to_legal_values():
    from launch.config import parse_section
    from orchestrator.space import SearchSpace

    space = SearchSpace.from_section(
        parse_section(
            "parameters:\n  c: {type: int, low: 8, high: 64}\n"
            "  phi: {type: float, low: 1.0, high: 2.0, step: 0.1}\n"
            "objective: {name: top1}\n",
            "space.yaml",
        )
    )
    scaled = scale_widths(space, {"c": 33, "phi": 1.3}, 1.5, ["c", "phi"])
    assert scaled == {"c": 50, "phi": 2.0}


def test_largest_fitting_scale_bisects():
    assert largest_fitting_scale(lambda f: f <= 2.5, 4.0) == pytest.approx(2.49, abs=0.02)
    assert largest_fitting_scale(lambda f: False, 4.0) is None


def test_final_again_needs_new(searched):
    controller = _controller(searched)
    try:
        assert FinalRun(controller, memory_estimate=lambda spec: 1.0).run(_args()) == "done"
        with pytest.raises(FinalError, match="already ended .*pass --new"):
            FinalRun(controller, memory_estimate=lambda spec: 1.0).run(_args(scale=2.0))
        assert (
            FinalRun(controller, memory_estimate=lambda spec: 1.0).run(_args(scale=2.0, new=True))
            == "done"
        )
    finally:
        controller.close()
    state = ExperimentState.from_events(read_journal(searched / "journal.jsonl"))
    assert [t.scale for t in state.final_trials()] == [1.0, 2.0]


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"epochs": 0}, "--epochs must be at least 1"),
        ({"scale": float("nan")}, "--scale must be a positive number"),
        ({"fine_tune_epochs": -1}, "--fine-tune-epochs must be 0 or more"),
    ],
)
def test_final_rejects_bad_options(searched, changes, message):
    controller = _controller(searched)
    try:
        with pytest.raises(FinalError, match=message):
            FinalRun(controller, memory_estimate=lambda spec: 1.0).run(_args(**changes))
    finally:
        controller.close()
