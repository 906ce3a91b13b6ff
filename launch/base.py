"""The interface every launch backend implements, and the job states it reports."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any


class JobState(enum.Enum):
    """Scheduler state of one job, normalized across Slurm, LSF and local processes."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    PREEMPTED = "preempted"
    NODE_FAIL = "node_fail"
    OUT_OF_MEMORY = "out_of_memory"
    # The scheduler no longer lists the job (it left squeue/bjobs and no accounting row
    # matches). Combined with a missing result file after a grace period it means lost.
    UNKNOWN = "unknown"

    @property
    def is_active(self) -> bool:
        return self in (JobState.PENDING, JobState.RUNNING)


@dataclass(frozen=True)
class JobStatus:
    """A job's state plus the scheduler's details about it (exit code, reason, node)."""

    state: JobState
    reason: str = ""
    exit_code: int | None = None
    node: str | None = None


class LaunchError(RuntimeError):
    """A scheduler command failed; keeps its argv, exit code and output for the log."""

    def __init__(
        self,
        message: str,
        argv: list[str] | None = None,
        returncode: int | None = None,
        stdout: str = "",
        stderr: str = "",
    ):
        self.argv = argv or []
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        details = f" (exit {returncode}): {stderr.strip() or stdout.strip()}" if argv else ""
        super().__init__(message + details)


class TransientLaunchError(LaunchError):
    """A scheduler command timed out or the controller daemon was unreachable; retry later."""


class Backend(ABC):
    """Submits trial specs as jobs, reports their states and cancels them.

    Trial specs are plain JSON-compatible dicts (see docs/architecture.md). A backend
    must not keep state that a restarted controller cannot rebuild from job ids.
    """

    name: str = "base"

    @abstractmethod
    def submit(self, spec: dict[str, Any], exclude_nodes: tuple[str, ...] = ()) -> str:
        """Submit one trial; return the scheduler's job id."""

    @abstractmethod
    def states(self, job_ids: list[str]) -> dict[str, JobStatus]:
        """Return the status of each job id, querying the scheduler once per call."""

    @abstractmethod
    def cancel(self, job_id: str) -> None:
        """Cancel a job; cancelling a finished job is not an error."""

    @abstractmethod
    def render(self, spec: dict[str, Any]) -> str:
        """Return the batch script (or command line) that submit would run, for --dry-run."""

    @property
    def ranks_per_job(self) -> int:
        """Number of training processes each job starts."""
        return 1
