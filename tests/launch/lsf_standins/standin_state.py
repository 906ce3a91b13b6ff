"""Shared state of the LSF stand-ins (bsub, bjobs, bkill, bmod, jsrun) used by the tests.

These programs only imitate IBM Spectrum LSF and jsrun on one machine so that tests can
run generated job scripts end to end. Every "host" (batch1, h1, h2, ...) is the local
machine. They implement the few options spline-nas uses, not LSF's behaviour in general.

Environment variables:

LSF_STANDIN_DIR
    Directory holding the job counter and one folder per job (required).
LSF_STANDIN_SECONDS_PER_MINUTE
    Seconds that stand for one LSF minute in -W and -wt (default 60).
LSF_STANDIN_FORGET_S
    Seconds after its end when bjobs forgets a finished job (default 3600).
LSF_STANDIN_SLOTS_PER_HOST, LSF_STANDIN_GPUS_PER_HOST
    Slots listed per compute host in LSB_DJOB_HOSTFILE (default 42) and GPUs per host
    that jsrun may hand out (default 6).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

FINISHED = ("DONE", "EXIT")


def root() -> Path:
    """Return the state directory named by LSF_STANDIN_DIR."""
    value = os.environ.get("LSF_STANDIN_DIR")
    if not value:
        sys.exit("lsf stand-in: LSF_STANDIN_DIR is not set")
    path = Path(value)
    (path / "jobs").mkdir(parents=True, exist_ok=True)
    return path


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def next_job_id() -> str:
    """Allocate a job id under a file lock."""
    counter = root() / "next_id"
    with open(root() / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        value = int(counter.read_text()) if counter.exists() else 1001
        counter.write_text(str(value + 1))
    return str(value)


def job_dir(job_id: str) -> Path:
    return root() / "jobs" / job_id


def write_json(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps(data))
    os.replace(temporary, path)


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def read_status(job_id: str) -> dict[str, Any] | None:
    path = job_dir(job_id) / "status.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def update_status(job_id: str, **changes: Any) -> None:
    status = read_status(job_id) or {}
    status.update(changes)
    write_json(job_dir(job_id) / "status.json", status)


def register_rank_group(job_id: str, pgid: int) -> None:
    """Record a process group that jsrun started, so that kills reach the ranks."""
    with open(job_dir(job_id) / "rank_groups", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(f"{pgid}\n")


def rank_groups(job_id: str) -> list[int]:
    path = job_dir(job_id) / "rank_groups"
    if not path.exists():
        return []
    return [int(line) for line in path.read_text().split()]


def signal_groups(groups: list[int], signum: int) -> None:
    for pgid in groups:
        try:
            os.killpg(pgid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def kill_job(job_id: str) -> None:
    """Send SIGKILL to the job's process group and to every rank group jsrun started."""
    status = read_status(job_id) or {}
    groups = rank_groups(job_id)
    if status.get("pgid"):
        groups.append(int(status["pgid"]))
    signal_groups(groups, signal.SIGKILL)


def now() -> float:
    return time.time()
