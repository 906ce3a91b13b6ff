"""End-to-end tests of LsfBackend against the LSF stand-ins in lsf_standins/.

The stand-ins imitate bsub, bjobs, bkill and jsrun on this machine; every "host" is local.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launch.base import JobState, JobStatus, LaunchError
from launch.config import parse_section
from launch.lsf import LsfBackend, LsfProfile

STANDINS = Path(__file__).resolve().parent / "lsf_standins"
WORKTREE = Path(__file__).resolve().parents[2]


@pytest.fixture
def lsf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Put the stand-ins on PATH with their state in tmp_path; kill leftover jobs after."""
    state = tmp_path / "lsf-state"
    monkeypatch.setenv("PATH", f"{STANDINS}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("LSF_STANDIN_DIR", str(state))
    monkeypatch.setenv("LSF_STANDIN_SECONDS_PER_MINUTE", "1")
    monkeypatch.setenv("PYTHONPATH", f"{WORKTREE}{os.pathsep}{STANDINS}")
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield state
    jobs = sorted(p.name for p in (state / "jobs").glob("*")) if state.exists() else []
    if jobs:
        subprocess.run(["bkill", *jobs], capture_output=True, check=False)


def make_backend(extra: str, entry: str, walltime: int = 30, warning: int = 5) -> LsfBackend:
    text = f"""
project: PROJ
nodes: 2
walltime: {walltime}
warning_time_min: {warning}
python: {json.dumps(sys.executable)}
jsrun:
  resource_sets_per_node: 1
  world_size: 2
{extra}
"""
    return LsfBackend(LsfProfile.from_section(parse_section(text, "test.yaml")), entry)


def make_spec(trial_dir: Path, epochs: int = 3, epoch_s: float = 0.1) -> dict:
    trial_dir.mkdir(parents=True, exist_ok=True)
    return {
        "format": 1,
        "trial_id": "t0001",
        "trial_dir": str(trial_dir),
        "result_path": str(trial_dir / "result.json"),
        "train": {"epochs": epochs, "epoch_s": epoch_s},
        "distributed": {"rendezvous": "file", "timeout_s": 60},
    }


def wait_ended(backend: LsfBackend, job_id: str, timeout_s: float = 60) -> JobStatus:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = backend.states([job_id])[job_id]
        if not status.state.is_active:
            return status
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still active after {timeout_s} s")


def job_log(trial_dir: Path) -> str:
    return "\n".join(p.read_text() for p in sorted((trial_dir / "logs").glob("lsf-*.err")))


def test_lsf_two_node_gloo_job_writes_result(lsf: Path, tmp_path: Path):
    # Two torch ranks take 3 s to start on an idle 2-core machine and up to 30 s under load.
    backend = make_backend("", "payload_train", walltime=110)
    trial_dir = tmp_path / "trials" / "t0001"
    job_id = backend.submit(make_spec(trial_dir))

    status = wait_ended(backend, job_id, timeout_s=120)

    assert status.state is JobState.COMPLETED, job_log(trial_dir)
    assert status.node == "h1,h2"
    result = json.loads((trial_dir / "result.json").read_text())
    assert result["epochs"] == 3
    assert result["world_size"] == 2
    assert result["hosts"] == ["h1", "h2"]
    assert [epoch for _, epoch in result["history"]] == [1, 2, 3]


def run_chain(backend: LsfBackend, spec: dict, first: str, deadline_s: float) -> list[JobStatus]:
    """Resubmit with ``depends_on`` after each job until the result exists, as the controller."""
    result_path = Path(spec["result_path"])
    deadline = time.monotonic() + deadline_s
    jobs, statuses = [first], []
    while True:
        statuses.append(wait_ended(backend, jobs[-1]))
        if result_path.exists() or time.monotonic() > deadline:
            return statuses
        jobs.append(backend.submit(spec, depends_on=jobs[-1]))


def test_lsf_walltime_chain_resumes_from_checkpoint(lsf: Path, tmp_path: Path):
    # Each job gets its warning 4 s after it starts, checkpoints and exits with 75. The
    # torch-free payload starts fast, so 20 epochs of 0.3 s need two or three jobs.
    backend = make_backend("", "payload_epochs", walltime=8, warning=4)
    trial_dir = tmp_path / "trials" / "t0001"
    spec = make_spec(trial_dir, epochs=20, epoch_s=0.3)
    first = backend.submit(spec)
    follow_up = backend.submit(spec, depends_on=first)
    assert '#BSUB -w "ended(' in (lsf / "jobs" / follow_up / "script.sh").read_text()
    assert backend.states([follow_up])[follow_up].state is JobState.PENDING

    statuses = [wait_ended(backend, first)]
    assert "warned_at" in read_standin_status(lsf, first)
    statuses += run_chain(backend, spec, follow_up, deadline_s=60)

    log = job_log(trial_dir)
    assert statuses[0].state is JobState.PREEMPTED, log
    assert statuses[0].exit_code == 75
    assert all(s.state is not JobState.FAILED for s in statuses), log
    result = json.loads((trial_dir / "result.json").read_text())
    assert result["epochs"] == 20
    assert [epoch for _, epoch in result["history"]] == list(range(1, 21))
    assert len({job for job, _ in result["history"]}) >= 2


def test_lsf_timeout_then_resubmit_continues(lsf: Path, tmp_path: Path):
    # The payload ignores the warning, so the stand-in kills it at the run limit (5 s)
    # before its 6 s of epochs are done; the resubmitted job finishes the rest.
    backend = make_backend("env:\n  PAYLOAD_IGNORE_WARNING: '1'", "payload_epochs", 5, 2)
    trial_dir = tmp_path / "trials" / "t0001"
    spec = make_spec(trial_dir, epochs=20, epoch_s=0.3)
    statuses = run_chain(backend, spec, backend.submit(spec), deadline_s=60)

    assert statuses[0].state is JobState.TIMEOUT, job_log(trial_dir)
    assert statuses[0].exit_code == 140
    assert statuses[0].reason.startswith("TERM_RUNLIMIT")
    result = json.loads((trial_dir / "result.json").read_text())
    assert [epoch for _, epoch in result["history"]] == list(range(1, 21))


def test_lsf_hostile_values_are_not_executed(lsf: Path, tmp_path: Path):
    marker = tmp_path / "marker"
    payload = f"$(touch {marker}) `touch {marker}`; touch {marker}"
    hostile_value = f"a b 'c' \"d\" {payload}\nsecond line $HOME"
    extra = (
        f"job_name: {json.dumps('nas ' + payload)}\nenv:\n  HOSTILE: {json.dumps(hostile_value)}"
    )
    backend = make_backend(extra, "payload_env")
    trial_dir = tmp_path / f"trial 'x' {payload}"
    spec = make_spec(trial_dir)

    script = backend.render(spec)
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    status = wait_ended(backend, backend.submit(spec))

    assert status.state is JobState.COMPLETED, job_log(trial_dir)
    assert not marker.exists()
    for rank in (0, 1):
        record = json.loads((trial_dir / f"env-rank{rank}.json").read_text())
        assert record["env"]["HOSTILE"] == hostile_value
        assert record["argv"][1] == str(trial_dir / "spec.json")


@pytest.mark.parametrize("bad", ['quote"d', "new\nline", "back\\slash"])
def test_lsf_submit_rejects_unsafe_trial_dir(lsf: Path, tmp_path: Path, bad: str):
    backend = make_backend("", "payload_env")
    with pytest.raises(LaunchError, match="#BSUB -o"):
        backend.submit(make_spec(tmp_path / bad))
    assert not (lsf / "jobs").exists() or not any((lsf / "jobs").iterdir())


def test_lsf_cancel_kills_running_job(lsf: Path, tmp_path: Path):
    backend = make_backend("", "payload_train")
    trial_dir = tmp_path / "trials" / "t0001"
    job_id = backend.submit(make_spec(trial_dir, epochs=200, epoch_s=0.2))
    deadline = time.monotonic() + 20
    while backend.states([job_id])[job_id].state is not JobState.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.1)

    backend.cancel(job_id)
    status = wait_ended(backend, job_id, timeout_s=10)
    backend.cancel(job_id)  # cancelling a finished job is not an error

    assert status.state is JobState.CANCELLED
    assert not (trial_dir / "result.json").exists()


def test_lsf_forgotten_job_is_unknown(lsf: Path, tmp_path: Path, monkeypatch):
    backend = make_backend("", "payload_env")
    job_id = backend.submit(make_spec(tmp_path / "trials" / "t0001"))
    assert wait_ended(backend, job_id).state is JobState.COMPLETED
    monkeypatch.setenv("LSF_STANDIN_FORGET_S", "0")
    time.sleep(0.05)

    statuses = backend.states([job_id, "999999"])

    assert statuses[job_id].state is JobState.UNKNOWN
    assert statuses["999999"].state is JobState.UNKNOWN


def read_standin_status(state: Path, job_id: str) -> dict:
    return json.loads((state / "jobs" / job_id / "status.json").read_text())
