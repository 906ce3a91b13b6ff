"""A small distributed training function for the Slurm backend tests.

It follows the contract of ``jobs.train.run_trial`` (spec path in, result dict out on
every rank, ``{"status": "preempted"}`` after SIGUSR1/SIGUSR2/SIGTERM with a checkpoint
written), so the requeue path of the backend can be tested without the ``jobs``
package: it fits a linear model to a fixed random regression problem with gloo
all-reduce over a file:// rendezvous in the trial directory, one checkpoint per epoch.
``spec["train"]["epoch_sleep_s"]`` slows epochs down so a test can requeue mid-run.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)


def run_trial(spec_path: str) -> dict[str, Any]:
    """Train for ``spec["train"]["epochs"]`` epochs, resuming from the last checkpoint."""
    torch.set_num_threads(1)
    spec = json.loads(Path(spec_path).read_text())
    trial_dir = Path(spec["trial_dir"])
    rank = int(os.environ["SLURM_PROCID"])
    world_size = int(os.environ["SLURM_NTASKS"])
    restart = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
    store = trial_dir / "rendezvous" / f"store-{os.environ['SLURM_JOB_ID']}-{restart}"
    store.parent.mkdir(parents=True, exist_ok=True)

    caught: list[int] = []
    previous = {
        signum: signal.signal(signum, lambda s, f: caught.append(s)) for signum in _SIGNALS
    }
    dist.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=world_size
    )
    try:
        return _train(spec, trial_dir, rank, world_size, restart, caught)
    finally:
        dist.destroy_process_group()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _train(
    spec: dict[str, Any],
    trial_dir: Path,
    rank: int,
    world_size: int,
    restart: int,
    caught: list[int],
) -> dict[str, Any]:
    train = spec["train"]
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(256, 8, generator=generator)
    targets = inputs @ torch.arange(1.0, 9.0) + 0.5
    weights = torch.zeros(8, requires_grad=True)
    checkpoint = trial_dir / "checkpoints" / "last.pt"
    start_epoch, resumed_from = 0, None
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True)
        weights.data.copy_(state["weights"])
        start_epoch = resumed_from = int(state["epoch"])

    shard = slice(rank, None, world_size)
    for epoch in range(start_epoch, int(train["epochs"])):
        loss = ((inputs[shard] @ weights - targets[shard]) ** 2).mean()
        loss.backward()
        dist.all_reduce(weights.grad)
        with torch.no_grad():
            weights -= 0.01 * weights.grad / world_size
            weights.grad.zero_()
        time.sleep(float(train.get("epoch_sleep_s", 0)))
        if rank == 0:
            checkpoint.parent.mkdir(exist_ok=True)
            torch.save({"weights": weights.detach(), "epoch": epoch + 1}, f"{checkpoint}.tmp")
            os.replace(f"{checkpoint}.tmp", checkpoint)
        # Every rank must see the signal before any leaves the loop, or the collective
        # in the next epoch would hang.
        flag = torch.tensor([1.0 if caught else 0.0])
        dist.all_reduce(flag)
        if flag.item() > 0:
            return {"status": "preempted", "epoch": epoch + 1, "restart": restart}

    result = {
        "format": 1,
        "trial_id": spec["trial_id"],
        "status": "ok",
        "epochs": int(train["epochs"]),
        "world_size": world_size,
        "restarts": restart,
        "resumed_from_epoch": resumed_from,
        "loss": float(((inputs @ weights - targets) ** 2).mean()),
    }
    if rank == 0:
        tmp = Path(f"{spec['result_path']}.tmp")
        tmp.write_text(json.dumps(result))
        os.replace(tmp, spec["result_path"])
    dist.barrier()
    return result


def fail_trial(spec_path: str) -> dict[str, Any]:
    """Exit with status 3 on every rank, like a training script that hits a bad input."""
    raise SystemExit(3)
