"""The real training (``jobs.train.run_trial``) as Slurm jobs on the loopback cluster.

These tests need the cluster of tests/slurm/start_cluster.sh: 2 nodes x 2 ranks, gloo
on CPU, a small ResNet on scikit-learn's digits.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from test_slurm_cluster import _finished, _loopback_backend, _wait, cluster  # noqa: F401 (fixture)

from launch.base import JobState, JobStatus

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.usefixtures("cluster"),
    pytest.mark.slow,
]
MODEL = {"name": "resnet18", "params": {"c1": 4, "g1": 4, "g2": 8, "g3": 8, "g4": 8}}


@pytest.fixture(scope="module")
def digits_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from jobs.digits import export_digits

    return export_digits(tmp_path_factory.mktemp("data") / "digits")


def _write_spec(trial_dir: Path, digits_root: Path, epochs: int) -> dict[str, Any]:
    trial_dir.mkdir(parents=True)
    spec = {
        "format": 1,
        "trial_id": trial_dir.name,
        "trial_dir": str(trial_dir),
        "result_path": str(trial_dir / "result.json"),
        "model": MODEL,
        "data": {"root": str(digits_root), "image_size": 8, "split_seed": 0},
        "train": {"epochs": epochs, "batch_size_per_rank": 8, "lr": 0.05},
        "distributed": {"rendezvous": "file", "timeout_s": 120},
    }
    (trial_dir / "spec.json").write_text(json.dumps(spec))
    return spec


def test_slurm_real_training_finishes(digits_root: Path, tmp_path: Path) -> None:
    spec = _write_spec(tmp_path / "t0101", digits_root, epochs=2)
    backend = _loopback_backend(target="jobs.train:run_trial")
    job_id = backend.submit(spec)
    seen: list[JobStatus] = []
    status = _wait(backend, job_id, _finished, timeout_s=300, seen=seen)
    assert status.state is JobState.COMPLETED, seen
    result = json.loads(Path(spec["result_path"]).read_text())
    assert result["status"] == "ok"
    assert result["world_size"] == 4
    assert result["epochs"] == 2
    assert 0 <= result["top1"] <= 100


def test_slurm_real_training_resumes_after_requeue(digits_root: Path, tmp_path: Path) -> None:
    spec = _write_spec(tmp_path / "t0102", digits_root, epochs=8)
    checkpoints = Path(spec["trial_dir"]) / "checkpoints"
    backend = _loopback_backend(target="jobs.train:run_trial")
    job_id = backend.submit(spec)
    deadline = time.monotonic() + 300
    while not list(checkpoints.glob("ckpt-*.pt")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert list(checkpoints.glob("ckpt-*.pt")), "no checkpoint within 300 s"
    subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=30)

    seen: list[JobStatus] = []
    status = _wait(backend, job_id, _finished, timeout_s=400, seen=seen)
    assert status.state is JobState.COMPLETED, seen
    assert status.reason == "requeued 1 time"
    result = json.loads(Path(spec["result_path"]).read_text())
    assert result["epochs"] == 8
    logs = "".join(path.read_text() for path in (Path(spec["trial_dir"]) / "logs").glob("*.err"))
    assert "resuming from checkpoint" in logs
