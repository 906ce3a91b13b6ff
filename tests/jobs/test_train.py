"""Real multi-process training runs: result file, preemption and resume, divergence.

Each test starts two training processes with the environment a launcher would set
(torchrun-style or submitit's local executor) and a ``file://`` rendezvous, on a small
image folder cut from scikit-learn's digits.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from jobs.checkpoint import checkpoint_paths
from jobs.data import load_datasets
from jobs.digits import export_digits
from jobs.models import build_model, count_parameters
from jobs.train import EXIT_INVALID, EXIT_PREEMPTED, SkipSampler, learning_rate

REPO = Path(__file__).resolve().parents[2]
MODEL: dict[str, Any] = {
    "name": "resnet18",
    "params": {"c1": 4, "g1": 4, "g2": 8, "g3": 8, "g4": 8},
}
LAUNCHER_PREFIXES = ("SLURM_", "OMPI_", "JSM_", "LSB_", "SUBMITIT_", "TORCHELASTIC_", "PMI_")
LAUNCHER_NAMES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
# Run run_trial and save what it returned on this rank.
RUNNER = (
    "import json, sys, logging; logging.basicConfig(level='INFO'); "
    "from jobs.train import run_trial; "
    "open(sys.argv[2], 'w').write(json.dumps(run_trial(sys.argv[1])))"
)


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Digits cut to 12-14 images per class, so the validation split has 63 images."""
    digits = export_digits(tmp_path_factory.mktemp("export") / "digits")
    root = tmp_path_factory.mktemp("tiny") / "digits"
    for label in range(10):
        (root / str(label)).mkdir(parents=True)
        for path in sorted((digits / str(label)).glob("*.png"))[: 12 + label % 3]:
            shutil.copy(path, root / str(label) / path.name)
    return root


def _write_spec(trial_dir: Path, image_root: Path, **train: Any) -> Path:
    spec = {
        "format": 1,
        "trial_id": trial_dir.name,
        "trial_dir": str(trial_dir),
        "result_path": str(trial_dir / "result.json"),
        "model": MODEL,
        "data": {"root": str(image_root), "image_size": 8, "split_seed": 0},
        "train": {"epochs": 2, "batch_size_per_rank": 8, "lr": 0.1, "log_interval": 1, **train},
        "distributed": {"rendezvous": "file", "timeout_s": 60},
    }
    trial_dir.mkdir(parents=True, exist_ok=True)
    path = trial_dir / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def _rank_env(launcher: str, rank: int, world_size: int, job_id: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(LAUNCHER_PREFIXES) and k not in LAUNCHER_NAMES
    }
    env["PYTHONPATH"] = str(REPO)
    if launcher == "torchrun":
        env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size))
        env["TORCHELASTIC_RUN_ID"] = job_id
    else:
        env.update(
            SUBMITIT_LOCAL_GLOBALID=str(rank),
            SUBMITIT_LOCAL_LOCALID=str(rank),
            SUBMITIT_LOCAL_NTASKS=str(world_size),
            SUBMITIT_LOCAL_JOB_ID=job_id,
        )
    return env


def _start(
    spec: Path, launcher: str, job_id: str, world_size: int = 2, ranks: tuple[int, ...] = (0, 1)
) -> list[subprocess.Popen[bytes]]:
    """Start training ranks with ``python -m jobs.train``, logging to logs/<job>-<rank>.log."""
    logs = spec.parent / "logs"
    logs.mkdir(exist_ok=True)
    procs = []
    for rank in ranks:
        log = open(logs / f"{job_id}-{rank}.log", "wb")  # noqa: SIM115 (closed by the child)
        cmd = [sys.executable, "-m", "jobs.train", str(spec)]
        env = _rank_env(launcher, rank, world_size, job_id)
        procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
        log.close()
    return procs


def _wait(procs: list[subprocess.Popen[bytes]], timeout_s: float = 120) -> list[int]:
    deadline = time.monotonic() + timeout_s
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            for other in procs:
                other.kill()
            raise
    return codes


def _log(spec: Path, job_id: str, rank: int) -> str:
    return (spec.parent / "logs" / f"{job_id}-{rank}.log").read_text()


def _val_size(image_root: Path) -> int:
    _, val_set, _ = load_datasets(image_root, image_size=8, split_seed=0)
    return len(val_set)  # type: ignore[arg-type]


def test_learning_rate_polynomial_decay() -> None:
    assert learning_rate(0.1, 0, 100, 2.0) == pytest.approx(0.1)
    assert learning_rate(0.1, 50, 100, 2.0) == pytest.approx(0.025)
    assert learning_rate(0.1, 99, 100, 1.0) == pytest.approx(0.001)
    assert learning_rate(0.1, 120, 100, 2.0) == 0.0


def test_skip_sampler_continues_same_order() -> None:
    dataset = torch.utils.data.TensorDataset(torch.arange(50))
    sampler: torch.utils.data.DistributedSampler[Any] = torch.utils.data.DistributedSampler(
        dataset, num_replicas=2, rank=1, seed=4
    )
    sampler.set_epoch(3)
    full = list(sampler)
    skipping = SkipSampler(sampler)
    skipping.skip = 8
    assert list(skipping) == full[8:]
    assert len(skipping) == len(full) - 8


def test_two_ranks_write_result(image_root: Path, tmp_path: Path) -> None:
    spec = _write_spec(tmp_path / "t0001", image_root)
    env_list = [_rank_env("torchrun", rank, 2, "run-a") for rank in (0, 1)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RUNNER, str(spec), str(tmp_path / f"returned-{rank}.json")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for rank, env in enumerate(env_list)
    ]
    outputs = [proc.communicate(timeout=120)[0].decode() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs

    result = json.loads((tmp_path / "t0001" / "result.json").read_text())
    assert result["status"] == "ok"
    assert result["num_val_images"] == _val_size(image_root) == 63
    assert result["epochs"] == 2
    assert result["world_size"] == 2
    assert result["device"] == "cpu"
    assert result["gpu_hours"] == 0.0
    assert result["cpu_core_hours"] > 0
    assert 0 <= result["top1"] <= result["top5"] <= 100
    assert result["wall_s"] > 0
    model = build_model(MODEL["name"], MODEL["params"], 10)
    assert result["num_params"] == count_parameters(model)
    assert result["spec"] == json.loads(spec.read_text())
    for rank in (0, 1):
        assert json.loads((tmp_path / f"returned-{rank}.json").read_text()) == result

    assert "epoch 2/2" in outputs[0]
    assert "epoch 1/2" not in outputs[1]  # only global rank 0 logs progress
    assert len(checkpoint_paths(tmp_path / "t0001" / "checkpoints")) == 2
    assert not list((tmp_path / "t0001").glob("*.tmp-*"))


@pytest.mark.slow  # four process starts; about 80 s on 2 cores shared with other tests
def test_sigterm_checkpoints_and_resumes(image_root: Path, tmp_path: Path) -> None:
    epochs, batch = 6, 2
    spec = _write_spec(tmp_path / "t0002", image_root, epochs=epochs, batch_size_per_rank=batch)
    ckpt_dir = tmp_path / "t0002" / "checkpoints"
    procs = _start(spec, "submitit", "701")
    log = spec.parent / "logs" / "701-0.log"
    deadline = time.monotonic() + 90
    while "epoch 2/6 step 2/16" not in log.read_text() and time.monotonic() < deadline:
        if any(proc.poll() is not None for proc in procs):
            break
        time.sleep(0.005)
    # Only rank 1 gets the signal: the ranks must agree to stop through the all-reduce.
    procs[1].send_signal(signal.SIGTERM)
    assert _wait(procs) == [EXIT_PREEMPTED, EXIT_PREEMPTED], _log(spec, "701", 0)
    assert "stopped by a preemption signal" in _log(spec, "701", 0)
    state = torch.load(checkpoint_paths(ckpt_dir)[0], weights_only=True)
    assert state["epoch"] == 1
    assert 2 <= state["step_in_epoch"] < 16  # a mid-epoch checkpoint
    assert not (tmp_path / "t0002" / "result.json").exists()
    state = torch.load(checkpoint_paths(ckpt_dir)[0], weights_only=True)
    assert state["epoch"] < epochs

    procs = _start(spec, "submitit", "702")
    assert _wait(procs) == [0, 0], _log(spec, "702", 0)
    resumed = f"resumes at epoch {state['epoch'] + 1}, step {state['step_in_epoch']}"
    assert resumed in _log(spec, "702", 0)
    result = json.loads((tmp_path / "t0002" / "result.json").read_text())
    assert result["status"] == "ok"
    assert result["epochs"] == epochs
    assert result["num_val_images"] == 63

    # The steps of both runs add up to the full schedule: no batch repeated or lost.
    train_per_rank = math.ceil(len(load_datasets(image_root, 8, 0)[0]) / 2)  # type: ignore[arg-type]
    total_steps = epochs * (train_per_rank // batch)  # the last incomplete batch is dropped
    assert checkpoint_paths(ckpt_dir)[0].name == f"ckpt-{total_steps:09d}.pt"


def test_diverging_run_writes_diverged(image_root: Path, tmp_path: Path) -> None:
    spec = _write_spec(tmp_path / "t0003", image_root, lr=1e12, lr_power=0.0, epochs=3)
    procs = _start(spec, "torchrun", "run-div")
    assert _wait(procs) == [0, 0], _log(spec, "run-div", 0)
    result = json.loads((tmp_path / "t0003" / "result.json").read_text())
    assert result["status"] == "diverged"
    assert result["top1"] == 0.0
    assert result["num_val_images"] == 63
    assert "loss is not finite" in _log(spec, "run-div", 0)


def test_missing_rank_times_out(image_root: Path, tmp_path: Path) -> None:
    spec = _write_spec(tmp_path / "t0004", image_root)
    config = json.loads(spec.read_text())
    config["distributed"]["timeout_s"] = 2
    spec.write_text(json.dumps(config))
    procs = _start(spec, "torchrun", "run-lonely", world_size=2, ranks=(0,))
    assert _wait(procs) == [EXIT_INVALID]
    assert "launch failure: the 2 ranks did not join within 2 s" in _log(spec, "run-lonely", 0)
    assert not (tmp_path / "t0004" / "result.json").exists()
