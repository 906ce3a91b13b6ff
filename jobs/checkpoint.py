"""Atomic files, rolling training checkpoints and preemption signals.

Checkpoints are written by global rank 0 only, as ``ckpt-<global step>.pt`` in the
trial's ``checkpoints/`` folder, through a temporary file that is fsynced and renamed, so
a reader sees either a complete file or none. The two newest are kept.

Schedulers announce preemption or the end of the wall time with a signal (Slurm's
``--signal``, LSF's ``bkill -s`` or a job-control warning action). The handlers installed
here only set a flag; the training loop polls it each step and writes a mid-epoch
checkpoint. The handlers that were installed before are kept, so a launcher wrapper can
call the scheduler's own handler too (see :func:`previous_signal_handlers`).
"""

from __future__ import annotations

import logging
import os
import random
import re
import signal
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, BinaryIO, cast

import numpy as np
import torch

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
KEEP_CHECKPOINTS = 2
_NAME = re.compile(r"^ckpt-(\d+)\.pt$")
PREEMPTION_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)


def fsync_dir(path: Path) -> None:
    """Flush a directory entry to disk so a completed rename survives a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` through a temporary file in the same directory.

    ``write`` receives the open binary file. The file is flushed and fsynced, renamed
    over ``path`` with ``os.replace`` and the directory is fsynced. If ``write`` raises,
    the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def rng_state() -> dict[str, Any]:
    """Capture the torch, CUDA, numpy and Python RNG states of this process."""
    legacy = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state(legacy=True))
    name, keys, pos, has_gauss, cached = legacy
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore RNG states captured by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])


def checkpoint_paths(directory: Path) -> list[Path]:
    """Return the checkpoint files in ``directory``, newest (highest step) first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [path for _, path in sorted(found, reverse=True)]


def save_checkpoint(directory: Path, state: dict[str, Any], global_step: int) -> Path:
    """Write ``state`` as ``ckpt-<global_step>.pt`` atomically and keep the two newest.

    Parameters
    ----------
    directory : Path
        The trial's ``checkpoints`` folder; created if missing.
    state : dict
        Picklable training state; ``format`` is added.
    global_step : int
        Optimizer steps done so far, used to order checkpoints.

    Returns
    -------
    Path
        The written checkpoint.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"ckpt-{global_step:09d}.pt"
    write_atomic(path, lambda handle: torch.save({"format": CHECKPOINT_FORMAT, **state}, handle))
    for old in checkpoint_paths(directory)[KEEP_CHECKPOINTS:]:
        old.unlink(missing_ok=True)
    logger.debug("wrote checkpoint %s", path)
    return path


def load_latest_checkpoint(directory: Path) -> dict[str, Any] | None:
    """Load the newest readable checkpoint in ``directory``, or return None.

    Temporary files left by an interrupted write and unreadable (for example truncated)
    checkpoints are skipped with a warning, falling back to the next older one.
    """
    if not directory.is_dir():
        return None
    for tmp in sorted(directory.glob("*.tmp-*")):
        logger.warning("ignoring temporary checkpoint file %s left by an interrupted write", tmp)
    for path in checkpoint_paths(directory):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
            logger.warning("skipping unreadable checkpoint %s: %s", path, exc)
            continue
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            logger.warning(
                "skipping checkpoint %s: not a format-%d checkpoint", path, CHECKPOINT_FORMAT
            )
            continue
        logger.info("resuming from checkpoint %s", path)
        return state
    return None


class PreemptionFlag:
    """A flag set by SIGUSR1, SIGUSR2 or SIGTERM, with the replaced handlers kept."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}

    @property
    def is_set(self) -> bool:
        """True once one of the signals arrived."""
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # Only set the flag: logging or I/O inside a signal handler can deadlock.
        self.signum = signum

    def install(self, signals: tuple[int, ...] = PREEMPTION_SIGNALS) -> None:
        """Install the handlers. Outside the main thread, log a warning and do nothing."""
        if threading.current_thread() is not threading.main_thread():
            logger.warning("not in the main thread: preemption signals are not handled")
            return
        for signum in signals:
            self.previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        """Put back the handlers that :meth:`install` replaced."""
        for signum, handler in self.previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self.previous = {}
