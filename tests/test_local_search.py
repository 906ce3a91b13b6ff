"""A complete search on the local site: real DDP training on real digit images."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.journal import read_journal
from orchestrator.state import ExperimentState

REPO = Path(__file__).resolve().parents[1]

EXPERIMENT = """\
name: digits-tiny
space:
  parameters:
    c1: {type: int, low: 4, high: 12}
    g1: {type: int, low: 4, high: 12}
  objective: {name: top1, direction: maximize}
model:
  name: resnet18
  fixed: {g2: 8, g3: 8, g4: 8}
data: {dataset: sklearn-digits, root: DATA, image_size: 16, train_fraction: 0.5}
training: {epochs: 5, batch_size_per_rank: 16}
search: {seed: 1, epsilon: 50.0, min_distance: 0.1, max_evaluations: 6}
"""


@pytest.mark.slow
def test_local_search_trains_real_networks(tmp_path):
    (tmp_path / "exp.yaml").write_text(EXPERIMENT.replace("DATA", str(tmp_path / "digits")))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "run",
            "exp.yaml",
            "--site",
            "local",
            "--dir",
            "run",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "best measured point" in completed.stdout
    state = ExperimentState.from_events(read_journal(tmp_path / "run" / "journal.jsonl"))
    done = [t for t in state.trials.values() if t.state == "done"]
    # d = 2: the 2d + 3 = 7 initial points collapse to 5 distinct ones, then at least
    # one incremental point follows (epsilon 50 stops after the first).
    assert len(done) == 6
    assert [t.kind for t in done].count("incremental") == 1
    for trial in done:
        result = json.loads((tmp_path / "run" / "results" / f"{trial.trial_id}.json").read_text())
        assert result["world_size"] == 2
        # 50/50 per class: 896 of the 1,797 images are validation images, each counted once.
        assert result["num_val_images"] == 896
        assert 0.0 <= result["top1"] <= 100.0
        assert result["spec"]["model"]["params"]["c1"] == trial.params["c1"]
        assert result["spec"]["model"]["params"]["g2"] == 8
    # Real training: the widest network learns clearly better than chance (10 %).
    assert max(t.value for t in done) > 20.0
    _check_final(tmp_path, env, state)


def _check_final(tmp_path, env, state):
    """Run the final training with a scale factor and fine-tuning after the search."""
    best = max((t for t in state.trials.values() if t.value is not None), key=lambda t: t.value)
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "final",
            "run",
            "--scale",
            "1.5",
            "--epochs",
            "2",
            "--fine-tune-epochs",
            "1",
            "--fine-tune-lr",
            "0.01",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    state = ExperimentState.from_events(read_journal(tmp_path / "run" / "journal.jsonl"))
    final, tune = state.final_trials()
    assert (final.kind, tune.kind) == ("final", "finetune")
    assert final.state == "done"
    assert tune.state == "done"
    assert final.params["c1"] == round(best.params["c1"] * 1.5)
    assert final.params["g1"] == round(best.params["g1"] * 1.5)
    assert tune.params == final.params
    run = tmp_path / "run"
    search_spec = json.loads((run / "trials" / best.trial_id / "spec.json").read_text())
    final_spec = json.loads((run / "trials" / final.trial_id / "spec.json").read_text())
    tune_spec = json.loads((run / "trials" / tune.trial_id / "spec.json").read_text())
    # Search trials train on half of the training split, the final runs on all of it.
    assert search_spec["data"]["train_fraction"] == 0.5
    assert final_spec["data"]["train_fraction"] == 1.0
    assert tune_spec["data"]["train_fraction"] == 1.0
    # Fine-tuning starts from the final run's last checkpoint with its own schedule.
    checkpoint = Path(tune_spec["train"]["init_checkpoint"])
    assert checkpoint.parent == run / "trials" / final.trial_id / "checkpoints"
    assert tune_spec["train"]["lr"] == 0.01
    tune_result = json.loads((run / "results" / f"{tune.trial_id}.json").read_text())
    assert tune_result["init_checkpoint"]["path"] == str(checkpoint)
    assert tune_result["init_checkpoint"]["loaded"]
    assert tune_result["epochs"] == 1
    final_result = json.loads((run / "results" / f"{final.trial_id}.json").read_text())
    assert final_result["epochs"] == 2
    assert "final" in completed.stdout
    assert "finetune" in completed.stdout
    report = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "report", "run", "--out", "report"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stderr[-2000:]
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "## Final training" in markdown
    assert f"| {final.trial_id} | final | done |" in markdown
    assert f"| {tune.trial_id} | finetune | done |" in markdown

    # A scale whose memory estimate exceeds the site's GPU memory is an error that
    # names the largest factor that fits.
    from launch.memory import estimate_peak_memory_gb
    from orchestrator.controller import CUDA_CONTEXT_GB

    needed = estimate_peak_memory_gb(search_spec)
    site = tmp_path / "small_gpu.yaml"
    site.write_text(
        "backend: local\n"
        f"gpu_memory_gb: {CUDA_CONTEXT_GB + 3 * needed:.6f}\n"
        "local: {ranks_per_job: 2}\n"
    )
    journal_before = (run / "journal.jsonl").read_bytes()
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "final",
            "run",
            "--site",
            str(site),
            "--params",
            ",".join(f"{k}={v}" for k, v in best.params.items()),
            "--scale",
            "20",
            "--new",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "the largest factor that fits is" in refused.stderr
    largest = float(refused.stderr.strip().rsplit(" ", 1)[-1])
    assert 1.0 <= largest < 20
    # Nothing was recorded for the refused run, apart from the start event.
    events = read_journal(run / "journal.jsonl")
    assert len(events) == len(journal_before.splitlines()) + 1
    assert events[-1]["event"] == "final_start"
