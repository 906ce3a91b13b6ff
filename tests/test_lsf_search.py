"""A complete search through the LSF backend and the LSF stand-ins, with real training.

Also checks ``spline-nas run --dry-run`` with the Summit profile, which prints the first
trial's bsub script and submits nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.journal import read_journal
from orchestrator.state import ExperimentState

REPO = Path(__file__).resolve().parents[1]
STANDINS = REPO / "tests" / "launch" / "lsf_standins"
SITE = REPO / "tests" / "launch" / "data" / "lsf_standin.yaml"

EXPERIMENT = """\
name: digits-lsf
space:
  parameters:
    c1: {type: int, low: 4, high: 12}
    g1: {type: int, low: 4, high: 12}
  objective: {name: top1, direction: maximize}
model:
  name: resnet18
  fixed: {g2: 8, g3: 8, g4: 8}
data: {dataset: sklearn-digits, root: DATA, image_size: 8}
training: {epochs: 2, batch_size_per_rank: 32}
search: {seed: 1, epsilon: 50.0, min_distance: 0.1, max_evaluations: 6}
"""


def standin_env(state: Path) -> dict[str, str]:
    """Return an environment with the stand-ins and this interpreter first on PATH."""
    path = os.pathsep.join([str(STANDINS), str(Path(sys.executable).parent), os.environ["PATH"]])
    return dict(
        os.environ,
        PATH=path,
        PYTHONPATH=str(REPO),
        LSF_STANDIN_DIR=str(state),
        LSF_STANDIN_SECONDS_PER_MINUTE="1",
        GLOO_SOCKET_IFNAME="lo",
        OMP_NUM_THREADS="1",
    )


def wait_jobs_ended(state: Path, env: dict[str, str], timeout_s: float = 120.0) -> None:
    """Wait for every stand-in job to end, then kill the ones still running."""
    jobs = sorted(p.name for p in (state / "jobs").glob("*")) if state.exists() else []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(
        job_stat(state, job) in ("PEND", "RUN") for job in jobs
    ):
        time.sleep(0.5)
    if jobs:
        subprocess.run(["bkill", *jobs], env=env, capture_output=True, check=False)


def job_stat(state: Path, job_id: str) -> str:
    return json.loads((state / "jobs" / job_id / "status.json").read_text())["stat"]


@pytest.mark.slow
def test_lsf_search_trains_real_networks(tmp_path: Path):
    (tmp_path / "exp.yaml").write_text(EXPERIMENT.replace("DATA", str(tmp_path / "digits")))
    state = tmp_path / "lsf-state"
    env = standin_env(state)
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "run", "exp.yaml", "--site", str(SITE),
             "--dir", "run"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500,
        )  # fmt: skip
    finally:
        # The controller stops once the last result file appears, while that job's ranks
        # may still be shutting down.
        wait_jobs_ended(state, env)

    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "best measured point" in completed.stdout
    run = tmp_path / "run"
    trials = ExperimentState.from_events(read_journal(run / "journal.jsonl")).trials
    done = [t for t in trials.values() if t.state == "done"]
    assert len(done) == 6, completed.stderr[-3000:]
    assert [t.kind for t in done].count("incremental") == 1
    job_ids = [attempt.job_id for t in trials.values() for attempt in t.attempts]
    assert all(job_id is not None and re.fullmatch(r"\d+", job_id) for job_id in job_ids)
    assert len(set(job_ids)) == len(job_ids)
    for trial in done:
        job_id = trial.job_id
        assert job_id is not None
        standin = json.loads((state / "jobs" / job_id / "status.json").read_text())
        assert standin["stat"] == "DONE"
        assert standin["exec_host"].endswith(":42*h1:42*h2")
        meta = json.loads((state / "jobs" / job_id / "meta.json").read_text())
        assert meta["name"] == f"spline-nas-{trial.trial_id}"
        result = json.loads((run / "results" / f"{trial.trial_id}.json").read_text())
        assert result["world_size"] == 2
        assert result["epochs"] == 2
        assert result["num_val_images"] == 896
        assert result["spec"]["model"]["params"]["c1"] == trial.params["c1"]
        assert result["spec"]["trial_dir"] == str((run / "trials" / trial.trial_id).resolve())
        assert trial.value == result["top1"]
    # Real training: after 2 epochs the best network is well above chance (10 %, about
    # 1 point standard error on 896 images).
    assert max(t.value for t in done) > 15.0


def test_dry_run_prints_summit_bsub_script(tmp_path: Path):
    state = tmp_path / "lsf-state"
    script = shutil.which("spline-nas", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "orchestrator.cli"]
    completed = subprocess.run(
        [*command, "run", str(REPO / "examples" / "digits.yaml"),
         "--site", str(REPO / "site_configs" / "summit.yaml"), "--dry-run"],
        cwd=tmp_path, env=standin_env(state), capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    assert completed.returncode == 0, completed.stderr
    text = completed.stdout
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0
    directives = [line for line in lines if line.startswith("#BSUB")]
    assert directives[:5] == [
        "#BSUB -P PROJECT123",
        "#BSUB -q batch",
        "#BSUB -nnodes 2",
        "#BSUB -W 2:00",
        "#BSUB -J spline-nas-t0000",
    ]
    assert re.fullmatch(r"#BSUB -o /\S+/trials/t0000/logs/lsf-%J\.out", directives[5])
    assert re.fullmatch(r"#BSUB -e /\S+/trials/t0000/logs/lsf-%J\.err", directives[6])
    assert directives[7:] == ['#BSUB -alloc_flags "gpumps smt4"', "#BSUB -wa USR1 -wt 10"]
    assert "module load open-ce/1.5.2-py39-0" in lines
    assert "export OMP_NUM_THREADS=7" in lines
    assert "export SPLINE_NAS_TRIAL_ID=t0000" in lines
    assert "trap 'echo \"spline-nas: received SIGUSR1\" >&2' USR1" in lines
    assert re.fullmatch(
        r"jsrun -n 12 -r 6 -a 1 -g 1 -c 7 -b packed:7 python -m jobs\.train "
        r"/\S+/trials/t0000/spec\.json",
        lines[-1],
    )
    trial_dir = directives[5].split()[2].removesuffix("/logs/lsf-%J.out")
    assert lines[-1].endswith(f" {trial_dir}/spec.json")
    assert "error" not in completed.stderr.lower()
    assert not (state / "jobs").exists()
    assert not list(tmp_path.glob("experiments"))
