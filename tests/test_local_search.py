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
data: {dataset: sklearn-digits, root: DATA, image_size: 8}
training: {epochs: 3, batch_size_per_rank: 32}
search: {seed: 1, epsilon: 50.0, min_distance: 0.1, max_evaluations: 6}
"""


@pytest.mark.slow
def test_local_search_trains_real_networks(tmp_path):
    (tmp_path / "exp.yaml").write_text(EXPERIMENT.replace("DATA", str(tmp_path / "digits")))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    completed = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "run", "exp.yaml", "--site", "local",
         "--dir", "run"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
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
