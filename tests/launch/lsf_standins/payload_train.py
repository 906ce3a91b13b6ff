"""Small DDP training payload run by the LSF stand-in tests until jobs.train is merged.

It imitates the contract of ``python -m jobs.train SPEC``: ranks from OMPI_COMM_WORLD_*,
a file:// rendezvous in the trial directory, a checkpoint after every epoch, and on
SIGUSR1/SIGUSR2/SIGTERM a checkpoint and exit code 75 (EX_TEMPFAIL) without a result
file. The checkpoint and the result keep a history of [JOB_ID, EPOCH] pairs so tests can
check that every epoch ran exactly once.
Set PAYLOAD_IGNORE_WARNING=1 to ignore SIGUSR1, so that only the run limit stops it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

stop_requested = False


def request_stop(signum: int, frame: object) -> None:
    global stop_requested
    stop_requested = True


def main() -> int:
    for signum in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM):
        signal.signal(signum, request_stop)
    if os.environ.get("PAYLOAD_IGNORE_WARNING") == "1":
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    spec = json.loads(Path(sys.argv[1]).read_text())
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    rank = int(os.environ["OMPI_COMM_WORLD_RANK"])
    world_size = int(os.environ["OMPI_COMM_WORLD_SIZE"])
    job_id = os.environ["LSB_JOBID"]
    trial_dir = Path(spec["trial_dir"])
    (trial_dir / "rendezvous").mkdir(parents=True, exist_ok=True)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{trial_dir}/rendezvous/store-{job_id}",
        rank=rank,
        world_size=world_size,
    )
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    checkpoint = trial_dir / "checkpoints" / "state.pt"
    start, history = 0, []
    if checkpoint.exists():
        saved = torch.load(checkpoint)
        model.module.load_state_dict(saved["model"])
        start, history = saved["epoch"], saved["history"]
    generator = torch.Generator().manual_seed(rank)
    epochs = spec["train"]["epochs"]
    for epoch in range(start, epochs):
        inputs = torch.randn(64, 4, generator=generator)
        loss = ((model(inputs) - inputs.sum(1, keepdim=True)) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        time.sleep(spec["train"]["epoch_s"])
        flag = torch.tensor([1 if stop_requested else 0])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if rank == 0:
            checkpoint.parent.mkdir(exist_ok=True)
            history.append([job_id, epoch + 1])
            state = {"model": model.module.state_dict(), "epoch": epoch + 1, "history": history}
            torch.save(state, f"{checkpoint}.tmp")
            os.replace(f"{checkpoint}.tmp", checkpoint)
        if flag.item():
            dist.barrier()
            dist.destroy_process_group()
            return 75
    hosts = [None] * world_size
    dist.all_gather_object(hosts, os.environ.get("LSF_STANDIN_HOST"))
    if rank == 0:
        result = {
            "format": 1,
            "trial_id": spec["trial_id"],
            "status": "ok",
            "epochs": epochs,
            "world_size": world_size,
            "hosts": hosts,
            "history": history,
            "loss": loss.item(),
        }
        path = Path(spec["result_path"])
        path.with_suffix(".tmp").write_text(json.dumps(result))
        os.replace(path.with_suffix(".tmp"), path)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
