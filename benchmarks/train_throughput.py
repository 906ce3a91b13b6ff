"""Training-step throughput of jobs.train's loop against a bare PyTorch loop, on the CPU.

Usage: python benchmarks/train_throughput.py [--repeats 7] [--steps 15] [--batch 32]

Both loops train the same model (resnet18 with c1=16, g=16/32/64/128, 10 classes) on
the same in-memory batches of 32x32 images with one torch thread. The product's loop
is :func:`jobs.train.train_one_epoch` with everything it does per step: DDP over a
one-rank gloo group, the all-reduce of the stop flags, the learning-rate schedule, the
(disabled) gradient scaler and rank-0 progress logging. The bare loop is forward,
``zero_grad``, backward and ``SGD.step``. The two alternate within each repetition, and
the script reports the median images per second of each and their ratio.
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, TensorDataset

from jobs.checkpoint import PreemptionFlag
from jobs.config import TrialConfig
from jobs.distributed import detect_env, init_process_group
from jobs.models import build_model
from jobs.train import Progress, _build_trainer, train_one_epoch

PARAMS = {"c1": 16, "g1": 16, "g2": 32, "g3": 64, "g4": 128}


def _spec(trial_dir: Path, batch: int) -> dict[str, object]:
    return {
        "format": 1,
        "trial_id": "bench",
        "trial_dir": str(trial_dir),
        "model": {"name": "resnet18", "params": PARAMS},
        "data": {"root": str(trial_dir), "image_size": 32},
        "train": {"epochs": 1, "batch_size_per_rank": batch, "log_interval": 5, "amp": "off"},
    }


def _bare_loop(model: torch.nn.Module, loader: DataLoader) -> float:
    """Train one pass over ``loader`` and return the seconds taken."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    criterion = torch.nn.CrossEntropyLoss()
    model.train()
    start = time.perf_counter()
    for images, targets in loader:
        loss = criterion(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="repetitions (default: 7)")
    parser.add_argument("--steps", type=int, default=15, help="steps per pass (default: 15)")
    parser.add_argument("--batch", type=int, default=32, help="batch size (default: 32)")
    args = parser.parse_args()
    logging.basicConfig(level="WARNING")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    n = args.steps * args.batch
    dataset = TensorDataset(torch.randn(n, 3, 32, 32), torch.randint(0, 10, (n,)))
    bare_loader = DataLoader(dataset, batch_size=args.batch, shuffle=True, drop_last=True)

    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        env = detect_env({})
        init_process_group(env, f"file://{tmp}/store", 60)
        config = TrialConfig.from_spec(_spec(Path(tmp), args.batch))
        product_model = build_model("resnet18", PARAMS, 10)
        bare_model = copy.deepcopy(product_model)
        trainer = _build_trainer(
            config, env, PreemptionFlag(), time.monotonic(), dataset, product_model
        )
        rates: dict[str, list[float]] = {"product": [], "bare": []}
        for _ in range(args.repeats + 1):  # the first pass of each warms up and is dropped
            trainer.sampler.set_epoch(0)
            trainer.loop_start_time = time.monotonic()
            start = time.perf_counter()
            status = train_one_epoch(trainer, Progress())
            product_s = time.perf_counter() - start
            assert status == "ok", status
            bare_s = _bare_loop(bare_model, bare_loader)
            rates["product"].append(trainer.steps_per_epoch * args.batch / product_s)
            rates["bare"].append(args.steps * args.batch / bare_s)
        dist.destroy_process_group()

    for name, values in rates.items():
        kept = values[1:]
        rounded = [round(v) for v in kept]
        print(f"{name}: median {statistics.median(kept):.1f} images/s, all {rounded}")
    ratio = statistics.median(rates["product"][1:]) / statistics.median(rates["bare"][1:])
    pairs = [p / b for p, b in zip(rates["product"][1:], rates["bare"][1:], strict=True)]
    print(f"product / bare: {ratio:.3f} (per-repetition ratios: {[round(r, 3) for r in pairs]})")


if __name__ == "__main__":
    main()
