"""End time of the batch allocation the controller itself runs in, if any."""

from __future__ import annotations

import logging
import os
import subprocess
import time

logger = logging.getLogger(__name__)


def slurm_allocation_end(timeout_s: float = 20.0) -> float | None:
    """Return the end of the Slurm job this process runs in (epoch seconds), or None.

    Reads SLURM_JOB_ID and queries ``squeue -o %e`` for the job's end time. Returns None
    outside an allocation, when squeue fails, or when the job has no time limit.
    """
    job_id = os.environ.get("SLURM_JOB_ID")
    if not job_id:
        return None
    argv = ["squeue", "--noheader", "--jobs", job_id, "--format", "%e"]
    try:
        output = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout_s, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("could not read the end time of allocation %s: %s", job_id, exc)
        return None
    try:
        return time.mktime(time.strptime(output, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        # "N/A" or "Unknown" for jobs without a time limit.
        return None
