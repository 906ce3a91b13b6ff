"""Run trials on this machine through submitit's local executor.

Each trial is one submitit local job with ``ranks_per_job`` processes, so local runs go
through the same pickled entry point, submission folder and result handling as Slurm.
The job id is the pid of submitit's per-job controller process. A restarted
orchestrator re-attaches by pid. A live pid whose command line names the trial's folder
is still running. Otherwise submitit's result pickle records whether it succeeded.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit
from submitit.core.utils import JobPaths, pickle_load

from launch.base import Backend, JobState, JobStatus
from launch.config import Section
from launch.entry import TrialEntry

logger = logging.getLogger(__name__)

_KEYS = {
    "ranks_per_job": "default 2",
    "timeout_min": "default 60",
    "signal_delay_s": "default 30",
    "threads_per_rank": "default 1",
    "env": "default none",
}


@dataclass(frozen=True)
class LocalProfile:
    """Shape of a local job: ranks started on this machine, time limit, environment."""

    ranks_per_job: int = 2
    timeout_min: float = 60.0
    signal_delay_s: int = 30
    threads_per_rank: int = 1
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_section(cls, section: Section | None) -> LocalProfile:
        if section is None:
            return cls()
        section.check_keys(_KEYS)
        profile = cls(
            ranks_per_job=section.get_int("ranks_per_job", 2),
            timeout_min=section.get_float("timeout_min", 60.0),
            signal_delay_s=section.get_int("signal_delay_s", 30),
            threads_per_rank=section.get_int("threads_per_rank", 1),
            env=section.get_str_map("env"),
        )
        for key in ("ranks_per_job", "timeout_min", "threads_per_rank"):
            if getattr(profile, key) <= 0:
                raise section.error(key, f"must be positive, got {getattr(profile, key)}")
        return profile


def _log_folder(spec: dict[str, Any]) -> Path:
    return Path(spec["trial_dir"]) / "logs"


def _process_state(pid: int) -> str | None:
    """Return the /proc state letter of ``pid`` (R, S, Z, ...) or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def _process_cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class LocalBackend(Backend):
    """Submit trials as submitit local jobs with ``ranks_per_job`` processes each."""

    name = "local"

    def __init__(self, profile: LocalProfile):
        self.profile = profile
        self._folders: dict[str, Path] = {}
        self._jobs: dict[str, submitit.local.local.LocalJob] = {}

    @property
    def ranks_per_job(self) -> int:
        return self.profile.ranks_per_job

    def _executor(self, folder: Path) -> submitit.LocalExecutor:
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(
            tasks_per_node=self.profile.ranks_per_job,
            timeout_min=self.profile.timeout_min,
            signal_delay_s=self.profile.signal_delay_s,
        )
        return executor

    def _environment(self) -> dict[str, str]:
        threads = str(self.profile.threads_per_rank)
        env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        env.update(self.profile.env)
        return env

    def submit(self, spec: dict[str, Any], exclude_nodes: tuple[str, ...] = ()) -> str:
        folder = _log_folder(spec)
        executor = self._executor(folder)
        spec_path = str(Path(spec["trial_dir"]) / "spec.json")
        # submitit's local executor copies os.environ into the job, so the job's
        # environment is set around the submission and restored afterwards.
        saved = {key: os.environ.get(key) for key in self._environment()}
        os.environ.update(self._environment())
        # A Ctrl-C in the controller's terminal reaches its whole process group. Jobs
        # started while SIGINT is ignored inherit that, so they keep training and the
        # resumed controller collects them.
        previous_sigint = None
        if threading.current_thread() is threading.main_thread():
            previous_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            job = executor.submit(TrialEntry(spec_path))
        finally:
            if previous_sigint is not None:
                signal.signal(signal.SIGINT, previous_sigint)
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        self._folders[job.job_id] = folder
        self._jobs[job.job_id] = job
        logger.debug("started local job %s for %s", job.job_id, spec["trial_id"])
        return job.job_id

    def attach(self, job_id: str, spec: dict[str, Any]) -> None:
        """Tell the backend which trial folder a job id from the journal belongs to."""
        self._folders[job_id] = _log_folder(spec)

    def find_jobs(self, spec: dict[str, Any]) -> list[str]:
        """List job ids that submitit recorded in a trial's folder (for crash recovery)."""
        folder = _log_folder(spec)
        if not folder.is_dir():
            return []
        ids = {path.name.split("_", 1)[0] for path in folder.glob("*_submitted.pkl")}
        ids |= {path.name.split("_", 1)[0] for path in folder.glob("*_0_log.out")}
        return sorted(ids, key=int)

    def _status(self, job_id: str) -> JobStatus:
        job = self._jobs.get(job_id)
        if job is not None and job._process is not None:
            if job._process.poll() is None:
                return JobStatus(JobState.RUNNING)
        else:
            folder = self._folders.get(job_id)
            state = _process_state(int(job_id))
            alive = state is not None and state != "Z"
            if alive and (folder is None or str(folder) in _process_cmdline(int(job_id))):
                return JobStatus(JobState.RUNNING)
        return self._finished_status(job_id)

    def _finished_status(self, job_id: str) -> JobStatus:
        folder = self._folders.get(job_id)
        if folder is None:
            return JobStatus(JobState.UNKNOWN, reason="job id not attached to a trial folder")
        result_pickle = JobPaths(folder, job_id, 0).result_pickle
        if not result_pickle.exists():
            stderr = JobPaths(folder, job_id, 0).stderr
            return JobStatus(JobState.FAILED, reason=_tail(stderr) or "ended without a result")
        outcome, value = pickle_load(result_pickle)
        if outcome == "success":
            if isinstance(value, dict) and value.get("status") == "preempted":
                # The job checkpointed on a signal and stopped before its last epoch.
                return JobStatus(
                    JobState.PREEMPTED, reason="stopped on a signal after a checkpoint"
                )
            return JobStatus(JobState.COMPLETED, exit_code=0)
        text = str(value)
        if "out of memory" in text.lower() or "MemoryError" in text:
            return JobStatus(JobState.OUT_OF_MEMORY, reason=_last_line(text))
        return JobStatus(JobState.FAILED, reason=_last_line(text), exit_code=1)

    def states(self, job_ids: list[str]) -> dict[str, JobStatus]:
        return {job_id: self._status(job_id) for job_id in job_ids}

    def cancel(self, job_id: str) -> None:
        job = self._jobs.get(job_id)
        if job is not None:
            job.cancel()
            return
        folder = self._folders.get(job_id)
        state = _process_state(int(job_id))
        if (
            state is not None
            and folder is not None
            and str(folder) in _process_cmdline(int(job_id))
        ):
            os.kill(int(job_id), 15)

    def render(self, spec: dict[str, Any]) -> str:
        env = " ".join(f"{key}={shlex.quote(value)}" for key, value in self._environment().items())
        return (
            f"# local job: {self.profile.ranks_per_job} ranks started by submitit's "
            "local executor\n"
            f"# each rank runs the equivalent of:\n"
            f"{env} {shlex.quote(sys.executable)} -m jobs.train "
            f"{shlex.quote(str(Path(spec['trial_dir']) / 'spec.json'))}\n"
        )


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _tail(path: Path) -> str:
    try:
        return _last_line(path.read_text(errors="replace")[-4000:])
    except OSError:
        return ""
