"""Tests of the scale features of the training loop: warm-up, AMP, init weights,
periodic validation, the file index in a real run, and the data order across resumes.
"""

from __future__ import annotations

import json
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
from jobs.config import SpecError
from jobs.digits import export_digits
from jobs.index import build_index, save_index
from jobs.models import build_model
from jobs.train import (
    EXIT_PREEMPTED,
    learning_rate,
    load_init_checkpoint,
    peak_learning_rate,
    resolve_amp,
)

pytest.importorskip("sklearn")

REPO = Path(__file__).resolve().parents[2]
MODEL: dict[str, Any] = {
    "name": "resnet18",
    "params": {"c1": 4, "g1": 4, "g2": 8, "g3": 8, "g4": 8},
}
LAUNCHER_PREFIXES = ("SLURM_", "OMPI_", "JSM_", "LSB_", "SUBMITIT_", "TORCHELASTIC_", "PMI_")
LAUNCHER_NAMES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
# Run the CLI and append every sample index the training sampler yields to argv[2],
# after a header line per epoch with the epoch and the number of skipped indices.
RECORDING_RUNNER = """
import json, sys
import jobs.train as train
iterate = train.SkipSampler.__iter__
def recording_iter(self):
    out = open(sys.argv[2], "a")
    out.write(json.dumps({"epoch": self.base.epoch, "skip": self.skip}) + "\\n")
    out.flush()
    for index in iterate(self):
        out.write(f"{index}\\n")
        out.flush()
        yield index
train.SkipSampler.__iter__ = recording_iter
sys.exit(train.main([sys.argv[1]]))
"""


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Digits cut to 12-14 images per class (63 validation images)."""
    digits = export_digits(tmp_path_factory.mktemp("export") / "digits")
    root = tmp_path_factory.mktemp("tiny") / "digits"
    for label in range(10):
        (root / str(label)).mkdir(parents=True)
        for path in sorted((digits / str(label)).glob("*.png"))[: 12 + label % 3]:
            shutil.copy(path, root / str(label) / path.name)
    return root


def _write_spec(trial_dir: Path, data: dict[str, Any], **train: Any) -> Path:
    spec = {
        "format": 1,
        "trial_id": trial_dir.name,
        "trial_dir": str(trial_dir),
        "model": MODEL,
        "data": {"image_size": 8, "split_seed": 0, **data},
        "train": {"epochs": 2, "batch_size_per_rank": 8, "lr": 0.1, "log_interval": 1, **train},
        "distributed": {"rendezvous": "file", "timeout_s": 60},
    }
    trial_dir.mkdir(parents=True, exist_ok=True)
    path = trial_dir / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def _start(spec: Path, job_id: str, world_size: int) -> list[subprocess.Popen[bytes]]:
    """Start the ranks under the recording runner, torchrun-style environment."""
    procs = []
    for rank in range(world_size):
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(LAUNCHER_PREFIXES) and k not in LAUNCHER_NAMES
        }
        env.update(PYTHONPATH=str(REPO), RANK=str(rank), LOCAL_RANK=str(rank))
        env.update(WORLD_SIZE=str(world_size), TORCHELASTIC_RUN_ID=job_id)
        record = spec.parent / f"samples-{job_id}-{rank}.txt"
        log = open(spec.parent / f"{job_id}-{rank}.log", "wb")  # noqa: SIM115
        cmd = [sys.executable, "-c", RECORDING_RUNNER, str(spec), str(record)]
        procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
        log.close()
    return procs


def _wait(procs: list[subprocess.Popen[bytes]], timeout_s: float = 180) -> list[int]:
    deadline = time.monotonic() + timeout_s
    try:
        return [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def _wait_for_line(procs: list[subprocess.Popen[bytes]], log: Path, text: str) -> None:
    deadline = time.monotonic() + 120
    while text not in log.read_text() and time.monotonic() < deadline:
        assert all(p.poll() is None for p in procs), log.read_text()
        time.sleep(0.005)
    assert text in log.read_text(), log.read_text()


def _recorded(path: Path) -> list[tuple[int, int, list[int]]]:
    """Return (epoch, skip, indices) per sampler pass recorded by the runner."""
    passes: list[tuple[int, int, list[int]]] = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            header = json.loads(line)
            passes.append((header["epoch"], header["skip"], []))
        else:
            passes[-1][2].append(int(line))
    return passes


def test_learning_rate_warmup_then_decay() -> None:
    assert learning_rate(0.4, 0, 100, 2.0, warmup_steps=10) == pytest.approx(0.04)
    assert learning_rate(0.4, 9, 100, 2.0, warmup_steps=10) == pytest.approx(0.4)
    assert learning_rate(0.4, 10, 100, 2.0, warmup_steps=10) == pytest.approx(0.4)
    assert learning_rate(0.4, 55, 100, 1.0, warmup_steps=10) == pytest.approx(0.2)
    assert learning_rate(0.4, 100, 100, 1.0, warmup_steps=10) == 0.0


def test_peak_learning_rate_linear_scaling() -> None:
    assert peak_learning_rate(0.1, "linear", 1024) == pytest.approx(0.4)
    assert peak_learning_rate(0.1, "none", 1024) == 0.1


def test_resolve_amp_on_cpu() -> None:
    cpu = torch.device("cpu")
    assert resolve_amp("auto", cpu).dtype is None
    assert resolve_amp("off", cpu).dtype is None
    assert resolve_amp("bf16", cpu).dtype == torch.bfloat16
    assert not resolve_amp("bf16", cpu).use_scaler
    with pytest.raises(SpecError, match="'fp16' needs a CUDA GPU"):
        resolve_amp("fp16", cpu)


def test_init_checkpoint_copies_weights(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = build_model(MODEL["name"], MODEL["params"], 10)
    torch.save({"format": 1, "model": source.state_dict()}, tmp_path / "ckpt.pt")
    torch.manual_seed(2)
    target = build_model(MODEL["name"], MODEL["params"], 10)
    record = load_init_checkpoint(target, tmp_path / "ckpt.pt")
    assert record["skipped"] == []
    assert record["loaded"] == len(source.state_dict())
    for name, tensor in source.state_dict().items():
        assert torch.equal(target.state_dict()[name], tensor), name


def test_init_checkpoint_other_head_size(tmp_path: Path) -> None:
    source = build_model(MODEL["name"], MODEL["params"], 10)
    prefixed = {f"module.{k}": v for k, v in source.state_dict().items()}
    torch.save(prefixed, tmp_path / "plain.pt")
    target = build_model(MODEL["name"], MODEL["params"], 20)
    record = load_init_checkpoint(target, tmp_path / "plain.pt")
    assert record["skipped"] == ["fc.bias", "fc.weight"]
    assert torch.equal(target.stem[0].weight, source.stem[0].weight)


def test_init_checkpoint_unrelated_model(tmp_path: Path) -> None:
    torch.save({"model": {"other.weight": torch.zeros(2)}}, tmp_path / "other.pt")
    model = build_model(MODEL["name"], MODEL["params"], 10)
    with pytest.raises(SpecError, match="no tensor that matches"):
        load_init_checkpoint(model, tmp_path / "other.pt")
    with pytest.raises(SpecError, match="cannot be read"):
        load_init_checkpoint(model, tmp_path / "missing.pt")


def test_bf16_index_init_and_eval_every(image_root: Path, tmp_path: Path) -> None:
    """One rank on the CPU with bf16 autocast, the file index, warm-up and init weights."""
    save_index(build_index(image_root), tmp_path / "index.npz")
    torch.manual_seed(3)
    init = build_model(MODEL["name"], MODEL["params"], 10)
    torch.save({"model": init.state_dict()}, tmp_path / "init.pt")
    # One persistent data-loader worker reads the indexed data set in a forked process.
    data = {
        "root": str(image_root),
        "index_path": str(tmp_path / "index.npz"),
        "num_workers": 1,
    }
    spec = _write_spec(
        tmp_path / "t0010",
        data,
        epochs=3,
        amp="bf16",
        eval_every=1,
        lr_scaling="linear",
        warmup_epochs=1,
        init_checkpoint=str(tmp_path / "init.pt"),
    )
    assert _wait(_start(spec, "bf16", world_size=1)) == [0]
    log = (spec.parent / "bf16-0.log").read_text()
    result = json.loads((spec.parent / "result.json").read_text())
    assert result["status"] == "ok", log
    assert result["amp"] == "bf16"
    assert result["peak_lr"] == pytest.approx(0.1 * 8 / 256)
    assert result["num_val_images"] == 63
    assert [entry["epoch"] for entry in result["val_history"]] == [1, 2]
    assert result["init_checkpoint"]["path"] == str(tmp_path / "init.pt")
    assert result["init_checkpoint"]["skipped"] == []
    assert set(result["macs"]) == {"8", "224", "256"}
    assert "validation after epoch 1" in log
    assert "amp bf16" in log


@pytest.mark.slow  # four launches of two ranks; about 2 minutes on 2 shared cores
def test_resume_keeps_data_order(image_root: Path, tmp_path: Path) -> None:
    epochs, batch = 4, 2
    data = {"root": str(image_root)}
    straight = _write_spec(tmp_path / "straight", data, epochs=epochs, batch_size_per_rank=batch)
    assert _wait(_start(straight, "a", world_size=2)) == [0, 0]

    # Same trial, killed (no checkpoint) in epoch 2, then stopped by SIGTERM (mid-epoch
    # checkpoint) in epoch 3, then run to the end.
    spec = _write_spec(tmp_path / "resumed", data, epochs=epochs, batch_size_per_rank=batch)
    procs = _start(spec, "b", world_size=2)
    _wait_for_line(procs, spec.parent / "b-0.log", "epoch 2/4 step 3/")
    for proc in procs:
        proc.send_signal(signal.SIGKILL)
    _wait(procs)
    procs = _start(spec, "c", world_size=2)
    _wait_for_line(procs, spec.parent / "c-0.log", "epoch 3/4 step 5/")
    procs[0].send_signal(signal.SIGTERM)
    assert _wait(procs) == [EXIT_PREEMPTED, EXIT_PREEMPTED]
    stop = torch.load(checkpoint_paths(spec.parent / "checkpoints")[0], weights_only=True)
    assert stop["epoch"] == 2
    assert stop["step_in_epoch"] >= 5
    assert _wait(_start(spec, "d", world_size=2)) == [0, 0]
    assert json.loads((spec.parent / "result.json").read_text())["epochs"] == epochs

    for rank in (0, 1):
        full = {e: idx for e, skip, idx in _recorded(straight.parent / f"samples-a-{rank}.txt")}
        assert sorted(full) == [0, 1, 2, 3]
        killed = _recorded(spec.parent / f"samples-b-{rank}.txt")
        assert [e for e, _, _ in killed] == [0, 1]
        assert killed[0][2] == full[0]
        assert killed[1][2] == full[1][: len(killed[1][2])]
        stopped = _recorded(spec.parent / f"samples-c-{rank}.txt")
        # The killed run left only the epoch-1 checkpoint: epoch 2 restarts in full.
        assert [(e, skip) for e, skip, _ in stopped] == [(1, 0), (2, 0)]
        assert stopped[0][2] == full[1]
        assert stopped[1][2] == full[2][: len(stopped[1][2])]
        finished = _recorded(spec.parent / f"samples-d-{rank}.txt")
        skip = stop["step_in_epoch"] * batch
        assert [(e, s) for e, s, _ in finished] == [(2, skip), (3, 0)]
        assert finished[0][2] == full[2][skip:]
        assert finished[1][2] == full[3]
