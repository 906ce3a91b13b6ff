"""The callable every backend runs on the compute nodes: train one trial from its spec file.

:class:`TrialEntry` is what the Slurm backend pickles through submitit. It contains only
the spec path and the name of the training function, so the pickle stays small and
independent of the controller's state. ``python -m launch.entry SPEC_PATH`` runs the
same code without submitit.

Requeueing under Slurm. The training function installs its own handlers for SIGUSR1,
SIGUSR2 and SIGTERM, which replace the ones submitit 1.5.4 installs in
``submitit.core.submission.process_job`` (SIGUSR2: checkpoint and ``scontrol requeue``;
SIGTERM: only logged). On a signal it writes a checkpoint and returns
``{"status": "preempted", ...}`` on every rank, so submitit's handler never runs and
submitit would record a normal completion. :meth:`TrialEntry.__call__` therefore
requeues the job itself on global rank 0, but only while the controller still reports
it RUNNING: that is the pre-timeout signal (``--signal=USR2@signal_delay_s``). During
``scancel`` and ``scontrol requeue`` the job is already COMPLETING when the tasks get
SIGTERM, so a cancelled job stays cancelled and an externally requeued one is not
requeued twice. If the signal arrives before the training function installed its
handlers, submitit's own handler checkpoints this object and requeues instead.
"""

from __future__ import annotations

import importlib
import logging
import os
import subprocess
import sys
from typing import Any

import submitit

logger = logging.getLogger(__name__)

# Set by the Slurm backend in the batch script: how often a job may requeue itself.
MAX_REQUEUES_ENV = "SPLINE_NAS_MAX_REQUEUES"
DEFAULT_TARGET = "jobs.train:run_trial"
# Exit status of `python -m launch.entry` after a preemption (EX_TEMPFAIL in sysexits.h).
EXIT_PREEMPTED = 75
_SCHEDULER_TIMEOUT_S = 60


class RequeueError(RuntimeError):
    """A preempted job could not be requeued (limit reached or scontrol failed)."""


class TrialEntry(submitit.helpers.Checkpointable):
    """Run the training function on one trial spec file.

    Parameters
    ----------
    spec_path
        Path of the trial's ``spec.json``.
    target
        Training function as "module:function"; it takes the spec path and returns the
        result dict (``{"status": "preempted", ...}`` after a preemption signal).
    """

    def __init__(self, spec_path: str, target: str = DEFAULT_TARGET):
        self.spec_path = str(spec_path)
        self.target = str(target)

    def __call__(self) -> dict[str, Any]:
        if not logging.getLogger().handlers:
            logging.basicConfig(
                level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
            )
        result = _load_target(self.target)(self.spec_path)
        if isinstance(result, dict) and result.get("status") == "preempted":
            if os.environ.get("SUBMITIT_EXECUTOR") == "slurm" and "SLURM_JOB_ID" in os.environ:
                requeue_after_preemption()
        return result

    def __repr__(self) -> str:
        return f"TrialEntry({self.spec_path!r}, target={self.target!r})"


def _load_target(target: str) -> Any:
    module_name, _, function_name = target.partition(":")
    if not function_name:
        raise ValueError(f"invalid training target {target!r}; expected 'module:function'")
    return getattr(importlib.import_module(module_name), function_name)


def requeue_after_preemption() -> None:
    """Requeue the current Slurm job from global rank 0 if the controller still runs it.

    Raises
    ------
    RequeueError
        The job restarted ``SPLINE_NAS_MAX_REQUEUES`` times already, or scontrol failed;
        the job then ends as FAILED instead of completing without a result.
    """
    job_id = os.environ["SLURM_JOB_ID"]
    if int(os.environ.get("SLURM_PROCID", "0")) != 0:
        return
    state = _controller_state(job_id)
    if state != "RUNNING":
        logger.info(
            "job %s is %s at the controller (cancelled or requeued by Slurm); not requeueing it",
            job_id,
            state or "unknown",
        )
        return
    restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
    limit = int(os.environ.get(MAX_REQUEUES_ENV, "3"))
    if restarts >= limit:
        raise RequeueError(
            f"job {job_id} was preempted after {restarts} requeues; the limit is {limit} "
            "(max_requeues in the site profile), so it is not requeued again"
        )
    argv = ["scontrol", "requeue", job_id]
    completed = subprocess.run(
        argv, capture_output=True, text=True, timeout=_SCHEDULER_TIMEOUT_S, check=False
    )
    if completed.returncode != 0:
        raise RequeueError(
            f"{' '.join(argv)} failed (exit {completed.returncode}): {completed.stderr.strip()}"
        )
    logger.info(
        "requeued job %s after preemption (restart %d of at most %d)", job_id, restarts + 1, limit
    )


def _controller_state(job_id: str) -> str:
    """Return the job's state name from squeue, or "" when squeue cannot tell."""
    argv = ["squeue", "--noheader", f"--jobs={job_id}", "--format=%T"]
    try:
        completed = subprocess.run(
            argv, capture_output=True, text=True, timeout=_SCHEDULER_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.warning("could not read the state of job %s: %s", job_id, exc)
        return ""
    return completed.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    """Run one trial outside submitit: ``python -m launch.entry SPEC_PATH``.

    Returns 0 after a result, or 75 (EX_TEMPFAIL) after a preemption.
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m launch.entry SPEC_PATH", file=sys.stderr)
        return 2
    result = TrialEntry(args[0])()
    return EXIT_PREEMPTED if result.get("status") == "preempted" else 0


if __name__ == "__main__":
    sys.exit(main())
