"""A complete search on the loopback Slurm cluster, with the controller killed mid-run.

Needs the cluster of tests/slurm/start_cluster.sh (see tests/launch/test_slurm_cluster.py
for how a missing cluster is reported).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_slurm_cluster import cluster  # noqa: F401 (fixture)

from orchestrator.journal import KILL_BEFORE_EVENT_ENV, read_journal
from orchestrator.state import ExperimentState

REPO = Path(__file__).resolve().parents[1]

EXPERIMENT = """\
name: slurm-tiny
space:
  parameters:
    c1: {type: int, low: 4, high: 12}
    g1: {type: int, low: 4, high: 12}
  objective: {name: top1, direction: maximize}
model:
  name: resnet18
  fixed: {g2: 8, g3: 8, g4: 8}
data: {dataset: sklearn-digits, root: DATA, image_size: 8}
training: {epochs: 2, batch_size_per_rank: 16}
search: {seed: 2, epsilon: 100.0, min_distance: 0.1, max_evaluations: 6}
"""

SITE = """\
backend: slurm
max_concurrent_trials: 1
poll_interval_s: 2
result_grace_s: 30
slurm:
  partition: debug
  nodes: 2
  gpus_per_node: 0
  tasks_per_node: 2
  cpus_per_task: 1
  walltime: "00:15:00"
  signal_delay_s: 60
  max_requeues: 3
  env:
    OMP_NUM_THREADS: "1"
    PYTHONPATH: "REPO"
"""

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.usefixtures("cluster")]


def _cli(tmp_path, *args, env_extra=None, timeout=1200):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_slurm_search_survives_controller_kill(tmp_path):
    (tmp_path / "exp.yaml").write_text(EXPERIMENT.replace("DATA", str(tmp_path / "digits")))
    (tmp_path / "site.yaml").write_text(SITE.replace("REPO", str(REPO)))
    # Events: 1 header, then trial, submit_intent, submitted, result per trial. Event 8
    # is the second trial's "submitted": the kill lands after sbatch returned but before
    # the job id reached the journal, the hardest point to recover from.
    crashed = _cli(
        tmp_path,
        "run",
        "exp.yaml",
        "--site",
        "site.yaml",
        "--dir",
        "run",
        env_extra={KILL_BEFORE_EVENT_ENV: "8"},
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-3000:]
    before = ExperimentState.from_events(read_journal(tmp_path / "run" / "journal.jsonl"))
    assert before.trials["t0001"].job_id is None
    time.sleep(1)
    resumed = _cli(tmp_path, "resume", "run")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "found job" in resumed.stderr

    state = ExperimentState.from_events(read_journal(tmp_path / "run" / "journal.jsonl"))
    done = [t for t in state.trials.values() if t.state == "done"]
    assert len(done) == 6
    for trial in state.trials.values():
        # Exactly one Slurm job per trial: the resumed controller found the job that
        # was submitted before the kill instead of submitting it again.
        assert len(trial.attempts) == 1, (trial.trial_id, trial.attempts)
        assert trial.job_id.isdigit()
        result = json.loads((tmp_path / "run" / "results" / f"{trial.trial_id}.json").read_text())
        assert result["world_size"] == 4
        assert result["epochs"] == 2
    for trial_id in state.trials:
        # submitit records each sbatch submission of a trial in its log folder.
        submitted = list((tmp_path / "run" / "trials" / trial_id / "logs").glob("*_submitted.pkl"))
        assert len(submitted) == 1, (trial_id, submitted)
