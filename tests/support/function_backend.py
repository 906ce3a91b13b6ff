"""A fast launch backend for controller tests: jobs evaluate an analytic function.

Each job is a detached Python process (its own session, so killing the controller does
not kill it) that sleeps briefly, then writes a result file in the real format. Faults
can be injected per trial: the first ``fault_attempts`` attempts of a trial whose
parameters hash into a fault class fail in that class's way.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from launch.base import Backend, JobState, JobStatus

FAULTS = ("launch", "train_error", "oom", "diverged", "timeout")
_EXIT_STATES = {
    0: (JobState.COMPLETED, ""),
    11: (JobState.FAILED, "RendezvousError: launch failure, ranks did not join"),
    12: (JobState.FAILED, "RuntimeError: loss computation failed"),
    13: (JobState.OUT_OF_MEMORY, "CUDA out of memory"),
    14: (JobState.TIMEOUT, "walltime reached, checkpoint written"),
}


def fault_of(params: dict[str, Any], fault_fraction: float) -> str | None:
    """Return the fault class of a parameter set, or None; stable across processes."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).digest()
    draw = int.from_bytes(digest[:4], "big") / 2**32
    if draw >= fault_fraction:
        return None
    return FAULTS[int.from_bytes(digest[4:8], "big") % len(FAULTS)]


class FunctionBackend(Backend):
    """Run each trial as a short process that evaluates ``objective`` on its parameters."""

    name = "function"

    def __init__(
        self,
        objective: str = "quadratic",
        delay_s: float = 0.2,
        fault_fraction: float = 0.0,
        fault_attempts: int = 1,
    ):
        self.objective = objective
        self.delay_s = delay_s
        self.fault_fraction = fault_fraction
        self.fault_attempts = fault_attempts
        self._processes: dict[str, subprocess.Popen] = {}
        self._dirs: dict[str, Path] = {}

    def submit(self, spec: dict[str, Any], exclude_nodes: tuple[str, ...] = ()) -> str:
        jobs_dir = Path(spec["trial_dir"]) / "jobs"
        jobs_dir.mkdir(parents=True, exist_ok=True)
        attempt = len(list(jobs_dir.glob("*.job"))) + 1
        fault = fault_of(spec["model"]["params"], self.fault_fraction)
        if fault is not None and attempt > self.fault_attempts and fault != "oom":
            fault = None
        command = [
            sys.executable,
            "-m",
            "function_job",
            str(Path(spec["trial_dir"]) / "spec.json"),
            self.objective,
            str(self.delay_s),
            fault or "none",
        ]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(Path(__file__).parent), env.get("PYTHONPATH", "")]
        )
        process = subprocess.Popen(
            command,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        job_id = str(process.pid)
        (jobs_dir / f"{job_id}.job").write_text(json.dumps({"attempt": attempt, "fault": fault}))
        self._processes[job_id] = process
        self._dirs[job_id] = jobs_dir
        return job_id

    def attach(self, job_id: str, spec: dict[str, Any]) -> None:
        self._dirs[job_id] = Path(spec["trial_dir"]) / "jobs"

    def find_jobs(self, spec: dict[str, Any]) -> list[str]:
        jobs_dir = Path(spec["trial_dir"]) / "jobs"
        return sorted((p.stem for p in jobs_dir.glob("*.job")), key=int)

    def _status(self, job_id: str) -> JobStatus:
        process = self._processes.get(job_id)
        if process is not None and process.poll() is None:
            return JobStatus(JobState.RUNNING)
        jobs_dir = self._dirs.get(job_id)
        exit_file = jobs_dir / f"{job_id}.exit" if jobs_dir else None
        if exit_file is None or not exit_file.exists():
            if process is None and Path(f"/proc/{job_id}").exists():
                return JobStatus(JobState.RUNNING)
            if process is not None:
                # Our child ended without writing its exit file: it was killed.
                return JobStatus(JobState.FAILED, reason="killed")
            return JobStatus(JobState.UNKNOWN)
        code = int(exit_file.read_text())
        state, reason = _EXIT_STATES.get(code, (JobState.FAILED, f"exit {code}"))
        return JobStatus(state, reason=reason, exit_code=code, node="fake-node")

    def states(self, job_ids: list[str]) -> dict[str, JobStatus]:
        return {job_id: self._status(job_id) for job_id in job_ids}

    def cancel(self, job_id: str) -> None:
        try:
            os.killpg(int(job_id), 15)
        except ProcessLookupError:
            pass

    def render(self, spec: dict[str, Any]) -> str:
        return f"function_job {spec['trial_id']} {self.objective}\n"
