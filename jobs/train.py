"""Distributed data-parallel training of one trial: the entry point on compute nodes.

:func:`run_trial` runs on every rank of a job. It reads the trial spec, forms the
process group, trains with SGD and a polynomial learning-rate decay, evaluates top-1
and top-5 accuracy on the validation split, and global rank 0 writes ``result.json``.
Rank 0 also checkpoints at each epoch end; a rerun of the same spec resumes from the
newest checkpoint. On SIGUSR1, SIGUSR2 or SIGTERM all ranks stop at the next step, rank
0 writes a mid-epoch checkpoint and every rank returns ``{"status": "preempted", ...}``.

Run by hand under a launcher with ``python -m jobs.train SPEC.json``, for example
``torchrun --nproc-per-node 2 --rdzv-id t0003 -m jobs.train trials/t0003/spec.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, Subset

from jobs.checkpoint import (
    PreemptionFlag,
    load_latest_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    write_atomic,
)
from jobs.config import SpecError, TrialConfig, load_spec
from jobs.data import DataConfigError, load_datasets
from jobs.distributed import (
    DistEnv,
    RendezvousError,
    detect_env,
    init_process_group,
    rendezvous_url,
    select_device,
)
from jobs.flops import model_complexity
from jobs.models import ModelConfigError, build_model, count_parameters

logger = logging.getLogger(__name__)

RESULT_FORMAT = 1
# sysexits.h EX_TEMPFAIL: the CLI exit status of a preempted run ("try again later").
EXIT_PREEMPTED = 75
# CLI exit status for an invalid spec, image folder or model, or a failed rendezvous.
EXIT_INVALID = 2

_previous_handlers: dict[int, Any] = {}


def previous_signal_handlers() -> dict[int, Any]:
    """Return the handlers that the running (or last) :func:`run_trial` replaced.

    Keys are signal numbers (SIGUSR1, SIGUSR2, SIGTERM); values are what
    ``signal.signal`` returned: a callable, ``SIG_DFL``, ``SIG_IGN`` or None. A launcher
    wrapper that installs its own handler before calling :func:`run_trial` (for example
    submitit's requeue handler) can call it after ``run_trial`` returns
    ``{"status": "preempted"}``; :func:`run_trial` itself never calls them and restores
    them when it returns.
    """
    return dict(_previous_handlers)


@dataclass
class Progress:
    """Position in training: the epoch in progress and steps done in it and overall.

    ``val_history`` lists the validations done at epoch ends (``train.eval_every``).
    """

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    prior_wall_s: float = 0.0
    val_history: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class AmpSettings:
    """Resolved mixed-precision mode: autocast dtype (None: off) and loss scaling."""

    dtype: torch.dtype | None
    use_scaler: bool

    @property
    def name(self) -> str:
        return {None: "off", torch.float16: "fp16", torch.bfloat16: "bf16"}[self.dtype]


def resolve_amp(mode: str, device: torch.device) -> AmpSettings:
    """Pick the autocast dtype for ``train.amp`` on ``device``.

    ``"auto"`` gives bf16 on GPUs of compute capability 8.0 or newer (A100, H100), fp16
    with a gradient scaler on older GPUs (V100) and no autocast on CPUs. ``"bf16"`` on
    a CPU uses CPU autocast.

    Raises
    ------
    SpecError
        If fp16 is requested on a CPU or bf16 on a GPU without bf16 support.
    """
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return AmpSettings(None, False)
    if device.type != "cuda":
        if mode == "fp16":
            raise SpecError(
                "train.amp 'fp16' needs a CUDA GPU, but this rank runs on the CPU. Use "
                "'bf16', 'auto' or 'off'"
            )
        return AmpSettings(torch.bfloat16, False)
    bf16_ok = torch.cuda.get_device_capability(device)[0] >= 8
    if mode == "bf16" and not bf16_ok:
        raise SpecError(
            f"train.amp 'bf16' needs a GPU of compute capability 8.0 or newer, but "
            f"{torch.cuda.get_device_name(device)} is not. Use 'fp16' or 'auto'"
        )
    if mode == "bf16" or (mode == "auto" and bf16_ok):
        return AmpSettings(torch.bfloat16, False)
    return AmpSettings(torch.float16, True)


class SkipSampler(Sampler[int]):
    """Yield the indices of ``base`` after skipping the first ``skip`` of them.

    A resumed epoch skips the batches it already trained on, with the same order,
    because :class:`DistributedSampler` derives its order from the seed and epoch only.
    """

    def __init__(self, base: DistributedSampler) -> None:
        self.base = base
        self.skip = 0

    def __iter__(self) -> Iterator[int]:
        indices = iter(self.base)
        for _ in range(self.skip):
            next(indices, None)
        return indices

    def __len__(self) -> int:
        return max(0, len(self.base) - self.skip)


@dataclass
class Trainer:
    """Model, optimizer, data and job context for one epoch of training."""

    config: TrialConfig
    env: DistEnv
    device: torch.device
    model: DistributedDataParallel
    optimizer: torch.optim.Optimizer
    sampler: DistributedSampler
    skip_sampler: SkipSampler
    loader: DataLoader
    steps_per_epoch: int
    flag: PreemptionFlag
    start_time: float
    amp: AmpSettings
    scaler: torch.amp.GradScaler
    peak_lr: float
    warmup_steps: int
    # Set when the training loop starts, for the ETA of this run.
    loop_start_time: float = 0.0
    loop_start_step: int = 0
    # What train.init_checkpoint loaded, copied into checkpoints and the result file.
    init_record: dict[str, Any] | None = None

    @property
    def total_steps(self) -> int:
        return self.config.train.epochs * self.steps_per_epoch


def learning_rate(
    lr0: float, step: int, total_steps: int, power: float, warmup_steps: int = 0
) -> float:
    """Return the learning rate of optimizer step ``step`` (counted from 0).

    Without warm-up this is the polynomial decay ``lr0 * (1 - step / total_steps) **
    power``. With ``warmup_steps`` the rate rises linearly as ``lr0 * (step + 1) /
    warmup_steps`` over the first steps, then decays polynomially over the remaining
    ``total_steps - warmup_steps`` steps.
    """
    if step < warmup_steps:
        return lr0 * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    return lr0 * max(0.0, 1.0 - (step - warmup_steps) / decay_steps) ** power


def peak_learning_rate(lr: float, lr_scaling: str, global_batch: int) -> float:
    """Return ``lr``, or ``lr * global_batch / 256`` for ``lr_scaling="linear"``."""
    return lr * global_batch / 256 if lr_scaling == "linear" else lr


def _log_step(
    trainer: Trainer,
    progress: Progress,
    loss: float,
    interval_s: float,
    interval_steps: int,
) -> None:
    """Log epoch, step, loss, global images/s and the ETA of this run (rank 0 only)."""
    train = trainer.config.train
    elapsed = time.monotonic() - trainer.loop_start_time
    steps_done = max(1, progress.global_step - trainer.loop_start_step)
    eta_s = elapsed / steps_done * (trainer.total_steps - progress.global_step)
    images = interval_steps * train.batch_size_per_rank * trainer.env.world_size
    memory = "n/a"
    if trainer.device.type == "cuda":
        memory = f"{torch.cuda.max_memory_allocated(trainer.device) / 2**30:.2f} GiB"
    logger.info(
        "%s epoch %d/%d step %d/%d loss %.4f lr %.4g images/s %.1f eta %s peak memory %s",
        trainer.config.trial_id,
        progress.epoch + 1,
        train.epochs,
        progress.step_in_epoch,
        trainer.steps_per_epoch,
        loss,
        trainer.optimizer.param_groups[0]["lr"],
        images / max(interval_s, 1e-9),
        datetime.timedelta(seconds=round(eta_s)),
        memory,
    )


def _autocast(amp: AmpSettings, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    if amp.dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=amp.dtype)


def _to_device(
    images: torch.Tensor, targets: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Copy a batch to ``device``; on a GPU asynchronously and in channels-last layout."""
    if device.type != "cuda":
        return images, targets
    images = images.to(device, non_blocking=True, memory_format=torch.channels_last)
    return images, targets.to(device, non_blocking=True)


def train_one_epoch(trainer: Trainer, progress: Progress) -> str:
    """Train on the rest of the current epoch.

    Each step all-reduces two flags (a preemption signal arrived on some rank, the loss
    is NaN or infinite on some rank), so all ranks stop at the same step.

    Returns
    -------
    str
        ``"ok"`` at the end of the epoch, ``"preempted"`` or ``"diverged"``.
    """
    train = trainer.config.train
    criterion = nn.CrossEntropyLoss()
    trainer.model.train()
    interval_start, interval_steps = time.monotonic(), 0
    for images, targets in trainer.loader:
        images, targets = _to_device(images, targets, trainer.device)
        lr = learning_rate(
            trainer.peak_lr,
            progress.global_step,
            trainer.total_steps,
            train.lr_power,
            trainer.warmup_steps,
        )
        for group in trainer.optimizer.param_groups:
            group["lr"] = lr
        with _autocast(trainer.amp, trainer.device):
            loss = criterion(trainer.model(images), targets)

        flags = torch.tensor(
            [float(trainer.flag.is_set), float(not torch.isfinite(loss))], device=trainer.device
        )
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        if flags[1] > 0:
            return "diverged"
        if flags[0] > 0:
            return "preempted"

        trainer.optimizer.zero_grad(set_to_none=True)
        trainer.scaler.scale(loss).backward()
        trainer.scaler.step(trainer.optimizer)
        trainer.scaler.update()
        progress.step_in_epoch += 1
        progress.global_step += 1
        interval_steps += 1
        last = progress.step_in_epoch == trainer.steps_per_epoch
        if trainer.env.is_main and (interval_steps == train.log_interval or last):
            _log_step(
                trainer,
                progress,
                loss.item(),
                time.monotonic() - interval_start,
                interval_steps,
            )
            interval_start, interval_steps = time.monotonic(), 0
    return "ok"


def evaluate(
    model: nn.Module, val_set: Dataset, num_classes: int, trainer: Trainer
) -> tuple[float, float, int]:
    """Return top-1 and top-k accuracy in percent and the number of images evaluated.

    Rank r evaluates validation images r, r + world_size, ..., and the correct counts
    and totals are summed over ranks, so each image is counted exactly once (unlike a
    padded ``DistributedSampler``). ``k`` is ``min(5, num_classes)``.
    """
    env = trainer.env
    shard = Subset(val_set, range(env.rank, len(val_set), env.world_size))  # type: ignore[arg-type]
    loader = DataLoader(
        shard,
        batch_size=2 * trainer.config.train.batch_size_per_rank,
        num_workers=trainer.config.data.num_workers,
        pin_memory=trainer.device.type == "cuda",
    )
    k = min(5, num_classes)
    counts = torch.zeros(3, dtype=torch.int64, device=trainer.device)
    model.eval()
    with torch.inference_mode(), _autocast(trainer.amp, trainer.device):
        for images, targets in loader:
            images, targets = _to_device(images, targets, trainer.device)
            correct = model(images).topk(k, dim=1).indices.eq(targets[:, None])
            counts[0] += correct[:, 0].sum()
            counts[1] += correct.any(dim=1).sum()
            counts[2] += targets.numel()
    dist.all_reduce(counts)
    top1, topk, total = counts.tolist()
    if total == 0:
        return 0.0, 0.0, 0
    return 100.0 * top1 / total, 100.0 * topk / total, total


def _checkpoint(trainer: Trainer, progress: Progress) -> None:
    """Write a checkpoint of ``progress`` from rank 0. Every rank must call this."""
    rng_states: list[Any] = [None] * trainer.env.world_size
    dist.all_gather_object(rng_states, rng_state())
    if trainer.env.is_main:
        state = {
            "trial_id": trainer.config.trial_id,
            "epoch": progress.epoch,
            "step_in_epoch": progress.step_in_epoch,
            "global_step": progress.global_step,
            "sampler_epoch": trainer.sampler.epoch,
            "world_size": trainer.env.world_size,
            "batch_size_per_rank": trainer.config.train.batch_size_per_rank,
            "wall_s": progress.prior_wall_s + time.monotonic() - trainer.start_time,
            "model": trainer.model.module.state_dict(),
            "optimizer": trainer.optimizer.state_dict(),
            "scaler": trainer.scaler.state_dict(),
            "rng": rng_states,
            "val_history": progress.val_history,
            "init_checkpoint": trainer.init_record,
        }
        save_checkpoint(trainer.config.trial_dir / "checkpoints", state, progress.global_step)
    dist.barrier()


def _resume(trainer: Trainer, model: nn.Module) -> Progress:
    """Load rank 0's newest checkpoint into every rank and return where to continue."""
    trial_id = trainer.config.trial_id
    holder: list[Any] = [None]
    if trainer.env.is_main:
        holder[0] = load_latest_checkpoint(trainer.config.trial_dir / "checkpoints")
    dist.broadcast_object_list(holder, src=0)
    state = holder[0]
    if state is None:
        return Progress()
    if state["trial_id"] != trial_id:
        raise SpecError(
            f"checkpoint in {trainer.config.trial_dir / 'checkpoints'} belongs to trial "
            f"{state['trial_id']!r}, not {trial_id!r}. Delete that folder or fix trial_dir"
        )

    model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    if state.get("scaler"):
        trainer.scaler.load_state_dict(state["scaler"])
    trainer.init_record = state.get("init_checkpoint")
    progress = Progress(
        state["epoch"],
        state["step_in_epoch"],
        state["global_step"],
        state["wall_s"],
        list(state.get("val_history", [])),
    )
    same_layout = (
        state["world_size"] == trainer.env.world_size
        and state["batch_size_per_rank"] == trainer.config.train.batch_size_per_rank
    )
    if same_layout:
        set_rng_state(state["rng"][trainer.env.rank])
    else:
        # Batches map to other images with another layout, so the epoch starts over.
        if trainer.env.is_main:
            logger.warning(
                "checkpoint was written with %d ranks of batch %d, so epoch %d restarts "
                "from its first batch",
                state["world_size"],
                state["batch_size_per_rank"],
                progress.epoch + 1,
            )
        progress.step_in_epoch = 0
        progress.global_step = progress.epoch * trainer.steps_per_epoch
    if trainer.env.is_main:
        logger.info(
            "%s resumes at epoch %d, step %d of %d",
            trainer.config.trial_id,
            progress.epoch + 1,
            progress.step_in_epoch,
            trainer.steps_per_epoch,
        )
    return progress


def _validate_epoch(
    trainer: Trainer, progress: Progress, val_set: Dataset, num_classes: int
) -> None:
    """Validate after a completed epoch, log it and add it to ``val_history``."""
    top1, top5, _ = evaluate(trainer.model.module, val_set, num_classes, trainer)
    progress.val_history.append({"epoch": progress.epoch, "top1": top1, "top5": top5})
    if trainer.env.is_main:
        logger.info(
            "%s: validation after epoch %d: top1 %.2f top5 %.2f",
            trainer.config.trial_id,
            progress.epoch,
            top1,
            top5,
        )


def _write_result(config: TrialConfig, result: dict[str, Any]) -> None:
    """Write ``result.json`` atomically (temporary file, fsync, rename, directory fsync)."""
    config.result_path.parent.mkdir(parents=True, exist_ok=True)
    payload = (json.dumps(result, indent=2, sort_keys=False) + "\n").encode()
    write_atomic(config.result_path, lambda handle: handle.write(payload))
    logger.info(
        "%s: wrote %s (status %s, top1 %.2f)",
        config.trial_id,
        config.result_path,
        result["status"],
        result["top1"],
    )


def _build_trainer(
    config: TrialConfig,
    env: DistEnv,
    flag: PreemptionFlag,
    start: float,
    train_set: Dataset,
    model: nn.Module,
) -> Trainer:
    """Wrap the model in DDP and build the optimizer, sampler, loader and AMP settings."""
    device = next(model.parameters()).device
    amp = resolve_amp(config.train.amp, device)
    ddp = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)

    train = config.train
    optimizer = torch.optim.SGD(
        ddp.parameters(), lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay
    )
    sampler: DistributedSampler[Any] = DistributedSampler(
        train_set,  # type: ignore[arg-type]
        num_replicas=env.world_size,
        rank=env.rank,
        shuffle=True,
        seed=train.seed,
        drop_last=False,
    )

    skip_sampler = SkipSampler(sampler)
    # Drop each rank's last incomplete batch: a batch of one image fails in batch norm
    # once the feature map is 1x1. Keep it when it is the only batch.
    drop_last = len(sampler) >= train.batch_size_per_rank
    loader = DataLoader(
        train_set,
        batch_size=train.batch_size_per_rank,
        sampler=skip_sampler,
        num_workers=config.data.num_workers,
        drop_last=drop_last,
        pin_memory=device.type == "cuda",
        persistent_workers=config.data.num_workers > 0,
    )
    steps = len(sampler) // train.batch_size_per_rank if drop_last else 1

    global_batch = train.batch_size_per_rank * env.world_size
    return Trainer(
        config,
        env,
        device,
        ddp,
        optimizer,
        sampler,
        skip_sampler,
        loader,
        steps,
        flag,
        start,
        amp,
        torch.amp.GradScaler(device.type, enabled=amp.use_scaler),
        peak_learning_rate(train.lr, train.lr_scaling, global_batch),
        round(train.warmup_epochs * steps),
    )


@dataclass
class Prepared:
    """Data sets and model, built before the rendezvous so bad input fails on all ranks.

    ``macs`` maps image sizes (strings) to multiply-adds per image; ``init_record`` says
    what ``train.init_checkpoint`` loaded, or is None.
    """

    train_set: Dataset
    val_set: Dataset
    num_classes: int
    model: nn.Module
    num_params: int
    macs: dict[str, int]
    init_record: dict[str, Any] | None


def load_init_checkpoint(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Copy the model weights of checkpoint ``path`` into ``model``.

    ``path`` is a checkpoint written by this module (its ``model`` entry is used) or a
    plain state dict; a ``module.`` prefix left by DDP is removed. Tensors whose name
    and shape match are copied. The rest (for example a classifier head sized for
    another number of classes) keep their fresh initialization and are logged.

    Returns
    -------
    dict
        ``{"path", "loaded", "skipped"}``: the path, the number of tensors copied and
        the names of the model's tensors left at their initialization.

    Raises
    ------
    SpecError
        If the file cannot be read or no tensor matches the model.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise SpecError(f"train.init_checkpoint {str(path)!r} cannot be read: {exc}") from exc
    weights = state.get("model", state) if isinstance(state, dict) else None
    if not isinstance(weights, dict):
        raise SpecError(f"train.init_checkpoint {str(path)!r} holds no model state dict")
    weights = {k.removeprefix("module."): v for k, v in weights.items()}
    own = model.state_dict()
    matching = {
        k: v
        for k, v in weights.items()
        if k in own and isinstance(v, torch.Tensor) and v.shape == own[k].shape
    }
    if not matching:
        raise SpecError(
            f"train.init_checkpoint {str(path)!r} has no tensor that matches the model's "
            "names and shapes. Check that it was trained with the same model family"
        )
    model.load_state_dict(matching, strict=False)
    skipped = sorted(set(own) - set(matching))
    if skipped:
        logger.warning(
            "init checkpoint %s: %d tensors left at their initialization (missing or of "
            "another shape): %s",
            path,
            len(skipped),
            ", ".join(skipped[:10]) + (" ..." if len(skipped) > 10 else ""),
        )
    return {"path": str(path), "loaded": len(matching), "skipped": skipped}


def _prepare(config: TrialConfig, env: DistEnv) -> Prepared:
    """Open the data sets and build the model on this rank's device."""
    data = config.data
    train_set, val_set, num_classes = load_datasets(
        data.root,
        data.image_size,
        data.split_seed,
        data.val_fraction,
        data.train_fraction,
        data.hflip,
        data.augment,
        data.index_path,
    )
    sizes = sorted({data.image_size, 224, 256})
    macs = model_complexity(config.model_name, config.model_params, num_classes, sizes)["macs"]
    torch.manual_seed(config.train.seed)
    model = build_model(config.model_name, config.model_params, num_classes)
    num_params = count_parameters(model)
    init_record = None
    if config.train.init_checkpoint is not None:
        init_record = load_init_checkpoint(model, config.train.init_checkpoint)
    device = select_device(env)
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return Prepared(train_set, val_set, num_classes, model, num_params, macs, init_record)


def _train(
    config: TrialConfig, env: DistEnv, flag: PreemptionFlag, start: float, prepared: Prepared
) -> dict[str, Any]:
    """Run the trial on this rank inside an initialized process group."""
    model, train_set, val_set = prepared.model, prepared.train_set, prepared.val_set
    num_classes, num_params = prepared.num_classes, prepared.num_params
    trainer = _build_trainer(config, env, flag, start, train_set, model)
    trainer.init_record = prepared.init_record
    progress = _resume(trainer, model)
    if env.is_main:
        logger.info(
            "%s: %s with %d parameters and %.3g GMACs per %d-pixel image, %d train / %d "
            "validation images, %d ranks, %d steps per epoch, amp %s, peak lr %.4g",
            config.trial_id,
            config.model_name,
            num_params,
            prepared.macs[str(config.data.image_size)] / 1e9,
            config.data.image_size,
            len(train_set),  # type: ignore[arg-type]
            len(val_set),  # type: ignore[arg-type]
            env.world_size,
            trainer.steps_per_epoch,
            trainer.amp.name,
            trainer.peak_lr,
        )

    trainer.loop_start_time, trainer.loop_start_step = time.monotonic(), progress.global_step
    status = "ok"
    while progress.epoch < config.train.epochs:
        trainer.sampler.set_epoch(progress.epoch)
        trainer.skip_sampler.skip = progress.step_in_epoch * config.train.batch_size_per_rank
        status = train_one_epoch(trainer, progress)
        if status == "diverged":
            if env.is_main:
                logger.warning(
                    "%s: loss is not finite at epoch %d step %d, stopping as diverged",
                    config.trial_id,
                    progress.epoch + 1,
                    progress.step_in_epoch,
                )
            break
        if status == "preempted":
            _checkpoint(trainer, progress)
            if env.is_main:
                logger.info(
                    "%s: stopped by a preemption signal at epoch %d step %d, checkpoint written",
                    config.trial_id,
                    progress.epoch + 1,
                    progress.step_in_epoch,
                )
            return {"status": "preempted", "trial_id": config.trial_id, "epoch": progress.epoch}
        progress.epoch += 1
        progress.step_in_epoch = 0
        every = config.train.eval_every
        if every and progress.epoch % every == 0 and progress.epoch < config.train.epochs:
            _validate_epoch(trainer, progress, val_set, num_classes)
        _checkpoint(trainer, progress)

    if status == "ok":
        top1, top5, num_val = evaluate(model, val_set, num_classes, trainer)
    else:
        top1, top5, num_val = 0.0, 0.0, len(val_set)  # type: ignore[arg-type]
    wall_s = progress.prior_wall_s + time.monotonic() - start
    on_gpu = trainer.device.type == "cuda"
    result = {
        "format": RESULT_FORMAT,
        "trial_id": config.trial_id,
        "status": status,
        "top1": top1,
        "top5": top5,
        "num_val_images": num_val,
        "epochs": progress.epoch,
        "wall_s": round(wall_s, 3),
        "gpu_hours": wall_s * env.world_size / 3600 if on_gpu else 0.0,
        "cpu_core_hours": wall_s * env.world_size * torch.get_num_threads() / 3600,
        "num_params": num_params,
        "macs": prepared.macs,
        "amp": trainer.amp.name,
        "peak_lr": trainer.peak_lr,
        "val_history": progress.val_history,
        "init_checkpoint": trainer.init_record,
        "world_size": env.world_size,
        "device": trainer.device.type,
        "spec": config.spec,
    }
    if env.is_main:
        _write_result(config, result)
    holder = [result]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def run_trial(spec_path: str) -> dict[str, Any]:
    """Train one trial on this rank and return its result.

    Parameters
    ----------
    spec_path : str
        Path of the trial's ``spec.json`` (see ``docs/architecture.md``).

    Returns
    -------
    dict
        On every rank, the result dict that global rank 0 wrote to ``result_path``
        (``status`` ``"ok"`` or ``"diverged"``), or ``{"status": "preempted",
        "trial_id": ..., "epoch": ...}`` when a SIGUSR1, SIGUSR2 or SIGTERM stopped
        training after a checkpoint. ``epoch`` counts completed epochs.

    Raises
    ------
    jobs.config.SpecError, jobs.data.DataConfigError, jobs.models.ModelConfigError
        If the spec, the image folder or the model parameters are invalid.
    jobs.distributed.RendezvousError
        If the ranks do not all join within ``distributed.timeout_s``.
    """
    start = time.monotonic()
    config = load_spec(spec_path)
    env = detect_env()
    if config.train.num_threads is not None:
        torch.set_num_threads(config.train.num_threads)
    elif not torch.cuda.is_available():
        torch.set_num_threads(1)
    random.seed(config.train.seed)
    np.random.seed(config.train.seed % 2**32)

    # NOTE: the handlers exist only from here on. A warning signal that arrives while
    # `python -m jobs.train` is still importing torch ends the rank with SIGUSR1's default
    # action, which the scheduler reports as a failure, not a preemption.
    flag = PreemptionFlag()
    flag.install()
    _previous_handlers.clear()
    _previous_handlers.update(flag.previous)
    try:
        prepared = _prepare(config, env)
        init_method = rendezvous_url(env, config.distributed.rendezvous, config.trial_dir)
        init_process_group(env, init_method, config.distributed.timeout_s)
        try:
            return _train(config, env, flag, start, prepared)
        finally:
            dist.destroy_process_group()
    finally:
        flag.restore()


def get_args_parser() -> argparse.ArgumentParser:
    """Return the command-line parser of ``python -m jobs.train``."""
    parser = argparse.ArgumentParser(
        prog="python -m jobs.train",
        description="Train one spline-nas trial on this rank (run under torchrun, srun or "
        "jsrun for several ranks). Exit status: 0 when a result file was written (status "
        f"ok or diverged), {EXIT_PREEMPTED} when preempted after a checkpoint, {EXIT_INVALID} "
        f"for an invalid spec or a failed rendezvous.",
    )
    parser.add_argument("spec", help="path of the trial's spec.json")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (default: INFO)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run :func:`run_trial` from the command line and return the exit status."""
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        result = run_trial(args.spec)
    except (SpecError, DataConfigError, ModelConfigError, RendezvousError) as exc:
        logger.error("%s", exc)
        return EXIT_INVALID
    return EXIT_PREEMPTED if result["status"] == "preempted" else 0


if __name__ == "__main__":
    sys.exit(main())
