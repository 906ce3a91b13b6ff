"""The Slurm backend on the real loopback cluster of tests/slurm/start_cluster.sh.

Every test here needs that cluster (two nodes n1, n2 in partition ``debug``). Without
``sinfo`` they are skipped, or fail when SPLINE_NAS_REQUIRE_SLURM=1 (as in CI). They
run one after another: each job takes both nodes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from launch.base import JobState, JobStatus
from launch.config import load_section
from launch.slurm import SlurmBackend, SlurmProfile

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TRAINER = "slurm_trainer:run_trial"

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def cluster() -> None:
    """Require the loopback cluster with both nodes up."""
    reason = ""
    if shutil.which("sinfo") is None:
        reason = "sinfo not found: start the test cluster with tests/slurm/start_cluster.sh"
    else:
        probe = subprocess.run(
            ["sinfo", "--noheader", "--partition=debug", "--format=%D %t"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if probe.returncode != 0 or not probe.stdout.strip():
            reason = (
                f"no partition 'debug' in sinfo ({probe.stderr.strip()}): run start_cluster.sh"
            )
    if reason:
        if os.environ.get("SPLINE_NAS_REQUIRE_SLURM") == "1":
            pytest.fail(f"SPLINE_NAS_REQUIRE_SLURM=1 but {reason}")
        pytest.skip(reason)


def _loopback_backend(target: str = TRAINER, **changes: Any) -> SlurmBackend:
    section = load_section(REPO / "site_configs" / "slurm_loopback.yaml").get_section("slurm")
    profile = SlurmProfile.from_section(section)
    # The jobs import this checkout's packages and the test trainer next to this file.
    env = (*profile.env, ("PYTHONPATH", f"{REPO}:{HERE}"))
    profile = dataclasses.replace(profile, env=env, **changes)
    return SlurmBackend(profile, entry_target=target)


def _write_spec(trial_dir: Path, epochs: int, epoch_sleep_s: float = 0.5) -> dict[str, Any]:
    trial_dir.mkdir(parents=True)
    spec = {
        "format": 1,
        "trial_id": trial_dir.name,
        "trial_dir": str(trial_dir),
        "result_path": str(trial_dir / "result.json"),
        "train": {"epochs": epochs, "epoch_sleep_s": epoch_sleep_s},
    }
    (trial_dir / "spec.json").write_text(json.dumps(spec))
    return spec


def _wait(
    backend: SlurmBackend,
    job_id: str,
    done: Callable[[JobStatus], bool],
    timeout_s: float,
    seen: list[JobStatus] | None = None,
) -> JobStatus:
    """Poll states() every second until ``done`` holds; record every status seen."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = backend.states([job_id])[job_id]
        if seen is not None and (not seen or seen[-1] != status):
            seen.append(status)
        if done(status):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {status} after {timeout_s} s: {seen}")
        time.sleep(1)


def _finished(status: JobStatus) -> bool:
    return not status.state.is_active and status.state is not JobState.UNKNOWN


def _in_squeue(job_id: str) -> bool:
    completed = subprocess.run(
        ["squeue", "--noheader", "--states=all", f"--jobs={job_id}", "--format=%i"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return completed.stdout.strip() == job_id


@pytest.mark.slow
def test_cluster_job_completes_with_result(cluster: None, tmp_path: Path) -> None:
    # A space and quotes in the path check that sbatch reads submitit's quoting.
    spec = _write_spec(tmp_path / "exp dir 'q'" / "t0001", epochs=4)
    backend = _loopback_backend()
    seen: list[JobStatus] = []
    job_id = backend.submit(spec)
    status = _wait(backend, job_id, _finished, timeout_s=120, seen=seen)

    assert status.state is JobState.COMPLETED, seen
    assert status.exit_code == 0
    assert JobState.RUNNING in [entry.state for entry in seen]
    result = json.loads(Path(spec["result_path"]).read_text())
    assert result["status"] == "ok"
    assert result["world_size"] == 4
    assert result["epochs"] == 4
    assert (Path(spec["trial_dir"]) / "logs" / f"{job_id}_submission.sh").is_file()

    # After MinJobAge (30 s on the test cluster) the job leaves squeue and sacct reports it.
    deadline = time.monotonic() + 120
    while _in_squeue(job_id) and time.monotonic() < deadline:
        time.sleep(2)
    assert not _in_squeue(job_id)
    status = backend.states([job_id])[job_id]
    assert status.state is JobState.COMPLETED
    assert status.exit_code == 0
    assert status.node == "n[1-2]"


@pytest.mark.slow
def test_cluster_requeue_resumes_from_checkpoint(cluster: None, tmp_path: Path) -> None:
    spec = _write_spec(tmp_path / "t0002", epochs=16, epoch_sleep_s=1.0)
    checkpoint = Path(spec["trial_dir"]) / "checkpoints" / "last.pt"
    backend = _loopback_backend()
    job_id = backend.submit(spec)
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert checkpoint.exists(), "no checkpoint written within 120 s"
    time.sleep(2)
    subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=30)

    seen: list[JobStatus] = []
    status = _wait(backend, job_id, _finished, timeout_s=240, seen=seen)
    assert status.state is JobState.COMPLETED, seen
    assert status.reason == "requeued 1 time"
    assert JobState.PENDING in [entry.state for entry in seen]
    result = json.loads(Path(spec["result_path"]).read_text())
    assert result["epochs"] == 16
    assert result["restarts"] == 1
    assert result["resumed_from_epoch"] is not None
    assert 1 <= result["resumed_from_epoch"] < 16


def test_cluster_failed_job_reports_exit_code(cluster: None, tmp_path: Path) -> None:
    spec = _write_spec(tmp_path / "t0003", epochs=1)
    backend = _loopback_backend(target="slurm_trainer:fail_trial")
    job_id = backend.submit(spec)
    status = _wait(backend, job_id, _finished, timeout_s=120)
    assert status.state is JobState.FAILED
    assert status.exit_code == 3
    assert not Path(spec["result_path"]).exists()


@pytest.mark.slow
def test_cluster_cancel_is_not_requeued(cluster: None, tmp_path: Path) -> None:
    spec = _write_spec(tmp_path / "t0004", epochs=200, epoch_sleep_s=1.0)
    checkpoint = Path(spec["trial_dir"]) / "checkpoints" / "last.pt"
    backend = _loopback_backend()
    job_id = backend.submit(spec)
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    backend.cancel(job_id)
    status = _wait(backend, job_id, _finished, timeout_s=60)
    assert status.state is JobState.CANCELLED
    # The training returns "preempted" on SIGTERM; the entry must not requeue a cancel.
    time.sleep(15)
    status = backend.states([job_id])[job_id]
    assert status.state is JobState.CANCELLED
    assert "requeued" not in status.reason
    backend.cancel(job_id)


def test_cluster_states_unknown_and_reused_ids(cluster: None, tmp_path: Path) -> None:
    spec = _write_spec(tmp_path / "t0005", epochs=1)
    backend = _loopback_backend()
    job_id = backend.submit(spec)
    _wait(backend, job_id, _finished, timeout_s=120)

    statuses = backend.states(["99999999", job_id])
    assert statuses["99999999"].state is JobState.UNKNOWN
    assert statuses[job_id].state is JobState.COMPLETED
    # A caller that submitted its job with this id an hour later must not see this row.
    later = {job_id: time.time() + 3600}
    assert backend.states([job_id], submitted_after=later)[job_id].state is JobState.UNKNOWN


@pytest.mark.slow
def test_cluster_pretimeout_signal_requeues(cluster: None, tmp_path: Path) -> None:
    # The 2-minute limit ends before the 60 epochs of 1 s do; SIGUSR2 comes 30 to 60 s
    # before it (Slurm checks limits about every 30 s), so each run trains a while and
    # requeues itself from a checkpoint.
    spec = _write_spec(tmp_path / "t0006", epochs=60, epoch_sleep_s=1.0)
    backend = _loopback_backend(walltime_min=2, signal_delay_s=60, max_requeues=4)
    job_id = backend.submit(spec)
    seen: list[JobStatus] = []
    status = _wait(backend, job_id, _finished, timeout_s=540, seen=seen)
    assert status.state is JobState.COMPLETED, seen
    assert status.reason.startswith("requeued")
    result = json.loads(Path(spec["result_path"]).read_text())
    assert result["epochs"] == 60
    assert result["restarts"] >= 1
    assert all(entry.state is not JobState.TIMEOUT for entry in seen)
