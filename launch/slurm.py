"""Slurm backend: site profile, sbatch scripts through submitit, and job states.

A trial becomes one Slurm batch job. submitit writes the batch script, pickles a
:class:`launch.entry.TrialEntry` (which holds only the spec path) into
``TRIAL_DIR/logs`` and starts ``nodes * tasks_per_node`` ranks with ``srun``. States come
from one ``squeue`` call per poll plus, for jobs that already left ``squeue``, one
``sacct`` call when accounting is available.
"""

from __future__ import annotations

import datetime
import logging
import math
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit
from submitit.core import utils as submitit_utils

from launch.base import Backend, JobState, JobStatus, LaunchError, TransientLaunchError
from launch.config import Section, parse_walltime_min
from launch.entry import DEFAULT_TARGET, MAX_REQUEUES_ENV, TrialEntry

logger = logging.getLogger(__name__)

# Valid keys of a site file's `slurm:` section, with their defaults for error messages.
PROFILE_KEYS = {
    "partition": "cluster default",
    "account": "none",
    "qos": "none",
    "nodes": "1",
    "gpus_per_node": "0",
    "tasks_per_node": "gpus_per_node, or 1 without GPUs",
    "cpus_per_task": "cluster default",
    "mem_gb": "cluster default",
    "walltime": '"01:00:00"',
    "constraint": "none",
    "exclude": "none",
    "setup": "none",
    "env": "none",
    "signal_delay_s": "120, at most half the walltime",
    "max_requeues": "3",
    "python": "this interpreter",
}
_NAME_CHARS = re.compile(r"^[A-Za-z0-9_.\-\[\],:+=@/]+$")
_CONSTRAINT_CHARS = re.compile(r"^[A-Za-z0-9_.\-\[\],:*&|()!]+$")
_WALLTIME = re.compile(r"^(\d+-)?\d+:\d\d:\d\d$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_JOB_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")

# Slurm job states (squeue %T and sacct State, 22.05) mapped to backend states.
_STATE_MAP = {
    "PENDING": JobState.PENDING,
    "REQUEUED": JobState.PENDING,
    "REQUEUE_FED": JobState.PENDING,
    "REQUEUE_HOLD": JobState.PENDING,
    "RESV_DEL_HOLD": JobState.PENDING,
    "SPECIAL_EXIT": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING,
    "CONFIGURING": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING,
    "RESIZING": JobState.RUNNING,
    "SUSPENDED": JobState.RUNNING,
    "STOPPED": JobState.RUNNING,
    "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED,
    "REVOKED": JobState.CANCELLED,
    "TIMEOUT": JobState.TIMEOUT,
    "DEADLINE": JobState.TIMEOUT,
    "PREEMPTED": JobState.PREEMPTED,
    "NODE_FAIL": JobState.NODE_FAIL,
    "BOOT_FAIL": JobState.NODE_FAIL,
    "OUT_OF_MEMORY": JobState.OUT_OF_MEMORY,
}
_SQUEUE_FIELDS = ("JobID", "State", "Reason", "NodeList", "RestartCnt", "SubmitTime", "exit_code")
_SACCT_FIELDS = ("JobIDRaw", "State", "ExitCode", "Submit", "NodeList", "Reason")
_TRANSIENT_MARKERS = (
    "socket timed out",
    "unable to contact slurm controller",
    "slurm_load_jobs error: unable to contact",
    "connection refused",
    "slurmctld is not responding",
    "temporarily unavailable",
    "slurmdbd: connection",
)
_SACCT_DISABLED_MARKERS = ("accounting storage is disabled",)


@dataclass(frozen=True)
class SlurmProfile:
    """Resources and environment of one Slurm job, read from a site file's ``slurm:`` section.

    Attributes
    ----------
    walltime_min
        Time limit in minutes (``walltime`` in the file, as "HH:MM:SS" or "D-HH:MM:SS").
    tasks_per_node
        Ranks per node; one rank per GPU when ``gpus_per_node > 0``.
    mem_gb
        Memory per node in GB, or None for the cluster default.
    exclude
        Node names never to run on (joined with the nodes a caller excludes per job).
    setup
        Shell lines run in the batch script before ``srun``, copied verbatim.
    env
        Environment variables exported (quoted) before the setup lines, as (name, value).
    signal_delay_s
        Seconds before the time limit at which Slurm sends SIGUSR2 so the job can
        checkpoint and requeue itself.
    max_requeues
        How often a job requeues itself after a pre-timeout signal before it fails.
    python
        Interpreter path on the compute nodes.
    """

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    nodes: int = 1
    gpus_per_node: int = 0
    tasks_per_node: int = 1
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    walltime_min: int = 60
    constraint: str | None = None
    exclude: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    signal_delay_s: int = 120
    max_requeues: int = 3
    python: str = sys.executable

    @property
    def num_ranks(self) -> int:
        """Total number of training processes per job."""
        return self.nodes * self.tasks_per_node

    @classmethod
    def from_section(cls, section: Section) -> SlurmProfile:
        """Read and validate a ``slurm:`` section.

        Raises
        ------
        launch.config.ConfigError
            On unknown keys (the message lists the valid ones), wrong types, a walltime
            written without quotes, values Slurm cannot take, or more ranks per node
            than GPUs.
        """
        section.check_keys(PROFILE_KEYS)
        gpus_per_node = _positive(section, "gpus_per_node", 0, minimum=0)
        tasks_per_node = _positive(section, "tasks_per_node", max(gpus_per_node, 1))
        if gpus_per_node > 0 and tasks_per_node > gpus_per_node:
            raise section.error(
                "tasks_per_node",
                f"{tasks_per_node} ranks per node but only {gpus_per_node} GPUs per node; "
                "each rank needs its own GPU, so set tasks_per_node <= gpus_per_node",
            )
        if 0 < tasks_per_node < gpus_per_node:
            logger.warning(
                "%s: %d GPUs per node but only %d ranks per node; GPUs stay idle",
                section.source,
                gpus_per_node,
                tasks_per_node,
            )
        walltime = section.get_str("walltime", "01:00:00")
        # Slurm reads "30:00" as MM:SS and LSF as HH:MM, so only the unambiguous forms pass.
        if not _WALLTIME.match(walltime.strip()):
            raise section.error(
                "walltime", f'invalid walltime {walltime!r}; use "HH:MM:SS" or "D-HH:MM:SS"'
            )
        walltime_min = parse_walltime_min(walltime, section, "walltime")
        # The default lead time is 120 s, or half the walltime for short test jobs.
        signal_delay_s = _positive(
            section, "signal_delay_s", min(120, walltime_min * 30), minimum=0
        )
        if signal_delay_s >= walltime_min * 60:
            raise section.error(
                "signal_delay_s",
                f"{signal_delay_s} s is not shorter than the walltime {walltime!r}; "
                "the pre-timeout signal must come before the time limit",
            )
        mem_gb = section.get_float("mem_gb")
        if mem_gb is not None and mem_gb <= 0:
            raise section.error("mem_gb", f"must be positive, got {mem_gb}")
        return cls(
            partition=_slurm_name(section, "partition", _NAME_CHARS),
            account=_slurm_name(section, "account", _NAME_CHARS),
            qos=_slurm_name(section, "qos", _NAME_CHARS),
            nodes=_positive(section, "nodes", 1),
            gpus_per_node=gpus_per_node,
            tasks_per_node=tasks_per_node,
            cpus_per_task=_positive(section, "cpus_per_task", None),
            mem_gb=mem_gb,
            walltime_min=walltime_min,
            constraint=_slurm_name(section, "constraint", _CONSTRAINT_CHARS),
            exclude=_exclude_list(section),
            setup=_setup_lines(section),
            env=_env_pairs(section),
            signal_delay_s=signal_delay_s,
            max_requeues=_positive(section, "max_requeues", 3, minimum=0),
            python=_python_path(section),
        )


def _positive(section: Section, key: str, default: int | None, minimum: int = 1) -> Any:
    """Read an integer that must be at least ``minimum``."""
    value = section.get_int(key, default)
    if value is not None and value < minimum:
        raise section.error(key, f"must be at least {minimum}, got {value}")
    return value


def _slurm_name(section: Section, key: str, pattern: re.Pattern[str]) -> str | None:
    """Read a name that goes into an ``#SBATCH`` line (no spaces or control characters)."""
    value = section.get_str(key)
    if value is not None and not pattern.match(value):
        raise section.error(
            key,
            f"invalid value {value!r}: Slurm names contain no spaces, quotes or control "
            "characters",
        )
    return value


def _exclude_list(section: Section) -> tuple[str, ...]:
    """Read ``exclude``, a list of node names."""
    names = section.get_str_list("exclude")
    for name in names:
        if not _NAME_CHARS.match(name):
            raise section.error("exclude", f"invalid node name {name!r}")
    return tuple(names)


def _setup_lines(section: Section) -> tuple[str, ...]:
    """Read ``setup``; each entry must be a complete shell command (checked with bash -n)."""
    lines = section.get_str_list("setup")
    for index, line in enumerate(lines):
        if "\0" in line:
            raise section.error("setup", f"entry {index} contains a NUL character")
        bash = shutil.which("bash")
        if bash is None:
            continue
        check = subprocess.run(
            [bash, "-n"], input=line, capture_output=True, text=True, timeout=30, check=False
        )
        if check.returncode != 0:
            raise section.error(
                "setup",
                f"entry {index} ({line!r}) is not a complete shell command: "
                f"{check.stderr.strip()}; close its quotes or brackets",
            )
    return tuple(lines)


def _env_pairs(section: Section) -> tuple[tuple[str, str], ...]:
    """Read ``env`` as (name, value) pairs with valid variable names."""
    env = section.get_str_map("env")
    for name, value in env.items():
        if not _ENV_NAME.match(name):
            raise section.error("env", f"invalid environment variable name {name!r}")
        if "\0" in value:
            raise section.error("env", f"the value of {name} contains a NUL character")
    return tuple(env.items())


def _python_path(section: Section) -> str:
    """Read ``python``, an interpreter path on the compute nodes."""
    python = section.get_str("python", sys.executable)
    if not python or any(ord(char) < 32 for char in python):
        raise section.error("python", f"invalid interpreter path {python!r}")
    return python


# -- scheduler commands ---------------------------------------------------------------


def run_command(argv: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Run a scheduler command; raise TransientLaunchError on timeouts and lost controllers.

    A non-zero exit that is not transient is returned, so callers can read the output.
    """
    try:
        completed = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise TransientLaunchError(
            f"{argv[0]} timed out after {timeout_s:g} s", argv, None, "", "timed out"
        ) from exc
    except FileNotFoundError as exc:
        raise LaunchError(
            f"{argv[0]} not found on PATH; is this a Slurm login node?", argv, None, "", str(exc)
        ) from exc
    if completed.returncode != 0 and _is_transient(completed.stderr):
        raise TransientLaunchError(
            f"{argv[0]} could not reach the Slurm controller",
            argv,
            completed.returncode,
            completed.stdout,
            completed.stderr,
        )
    return completed


def _is_transient(stderr: str) -> bool:
    text = stderr.lower()
    return any(marker in text for marker in _TRANSIENT_MARKERS)


def _parse_slurm_time(text: str) -> float | None:
    """Parse Slurm's local "YYYY-MM-DDTHH:MM:SS" into epoch seconds (None for Unknown)."""
    try:
        return datetime.datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        return None


def _exit_code(text: str) -> tuple[int | None, int]:
    """Split sacct's ExitCode "CODE:SIGNAL" into (code, signal)."""
    parts = text.strip().split(":")
    try:
        code = int(parts[0])
    except ValueError:
        return None, 0
    signal = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return code, signal


def _wait_status(text: str) -> tuple[int | None, int]:
    """Decode squeue's exit_code, a raw wait(2) status (36608 is exit code 143), into
    (code, signal)."""
    try:
        status = int(text.strip())
    except ValueError:
        return None, 0
    return status >> 8, status & 0x7F


def _restart_text(restarts: int) -> str:
    return f"requeued {restarts} time{'s' if restarts != 1 else ''}" if restarts else ""


def _join_reason(*parts: str) -> str:
    return "; ".join(part for part in parts if part and part != "None")


def map_state(slurm_state: str) -> JobState:
    """Map a Slurm state name ("CANCELLED by 0", "RUNNING", ...) to a :class:`JobState`."""
    words = slurm_state.strip().split()
    name = words[0].rstrip("+") if words else ""
    return _STATE_MAP.get(name, JobState.UNKNOWN)


# -- the backend ----------------------------------------------------------------------


class _Executor(submitit.SlurmExecutor):
    """SlurmExecutor that runs sbatch under a time limit and builds scripts without srun.

    submitit refuses to build an executor where ``srun`` is missing; the backend checks
    for ``sbatch`` itself at submission, so ``render`` works on any machine.
    """

    sbatch_timeout_s: float = 60.0

    @classmethod
    def affinity(cls) -> int:
        return 1

    def _make_submission_command(self, submission_file_path: Path) -> list[str]:
        # coreutils `timeout` exits with 124 when sbatch hangs on an unresponsive controller.
        return [
            "timeout",
            "--kill-after=5",
            f"{self.sbatch_timeout_s:g}",
            "sbatch",
            str(submission_file_path),
        ]


class SlurmBackend(Backend):
    """Submit trials as Slurm batch jobs through submitit.

    Parameters
    ----------
    profile
        Resources and environment of every job.
    command_timeout_s
        Time limit for each sbatch, squeue, sacct and scancel call.
    clock_skew_s
        Accounting rows submitted more than this many seconds before the recorded
        submission time belong to an older job with the same (reused) id and are ignored.
    job_name_prefix
        Prefix of the Slurm job name, followed by the trial id.
    entry_target
        Training function the job runs, as "module:function" (see
        :class:`launch.entry.TrialEntry`).
    """

    name = "slurm"

    def __init__(
        self,
        profile: SlurmProfile,
        command_timeout_s: float = 60.0,
        clock_skew_s: float = 300.0,
        job_name_prefix: str = "spline-nas",
        entry_target: str = DEFAULT_TARGET,
    ):
        self.profile = profile
        self.command_timeout_s = command_timeout_s
        self.clock_skew_s = clock_skew_s
        self.job_name_prefix = job_name_prefix
        self.entry_target = entry_target
        self._sacct_available: bool | None = None
        # Submission times of jobs submitted by this instance; callers that restart
        # pass them to states() as submitted_after instead.
        self._submitted_at: dict[str, float] = {}

    @property
    def ranks_per_job(self) -> int:
        return self.profile.num_ranks

    # -- scripts -----------------------------------------------------------------

    def _executor(self, spec: Mapping[str, Any], exclude_nodes: tuple[str, ...]) -> _Executor:
        """Build the submitit executor for one trial (creates no files)."""
        trial_dir = _trial_dir(spec)
        executor = _Executor(folder=trial_dir / "logs", max_num_timeout=self.profile.max_requeues)
        executor.sbatch_timeout_s = self.command_timeout_s
        executor.python = shlex.quote(self.profile.python)
        executor.update_parameters(**self._parameters(spec, exclude_nodes))
        return executor

    def _parameters(self, spec: Mapping[str, Any], exclude_nodes: tuple[str, ...]) -> dict:
        """Collect the sbatch parameters for one trial, in submitit's names."""
        profile = self.profile
        for node in exclude_nodes:
            if not _NAME_CHARS.match(node):
                raise LaunchError(f"invalid node name to exclude: {node!r}")
        exclude = ",".join(dict.fromkeys((*profile.exclude, *exclude_nodes)))
        setup = [f"export {name}={shlex.quote(value)}" for name, value in profile.env]
        setup.append(f"export {MAX_REQUEUES_ENV}={profile.max_requeues}")
        setup.extend(profile.setup)
        trial_id = str(spec.get("trial_id", "trial"))
        optional = {
            "partition": profile.partition,
            "account": profile.account,
            "qos": profile.qos,
            "constraint": profile.constraint,
            "exclude": exclude or None,
            "cpus_per_task": profile.cpus_per_task,
            "gpus_per_node": profile.gpus_per_node or None,
            "mem": _mem_text(profile.mem_gb) if profile.mem_gb is not None else None,
        }
        return {
            "job_name": f"{self.job_name_prefix}-{_JOB_NAME_UNSAFE.sub('_', trial_id)}",
            "time": profile.walltime_min,
            "nodes": profile.nodes,
            "ntasks_per_node": profile.tasks_per_node,
            "signal_delay_s": profile.signal_delay_s,
            "setup": setup,
            "wckey": None,
            # Requeueing must work even where the cluster sets JobRequeue=0.
            "additional_parameters": {"requeue": True},
            **{key: value for key, value in optional.items() if value is not None},
        }

    def render(self, spec: dict[str, Any], exclude_nodes: tuple[str, ...] = ()) -> str:
        """Return the sbatch script that :meth:`submit` would submit; submits nothing."""
        executor = self._executor(spec, exclude_nodes)
        return executor._make_submission_file_text(executor._submitit_command_str, "render")

    # -- submit and cancel ---------------------------------------------------------

    def submit(self, spec: dict[str, Any], exclude_nodes: tuple[str, ...] = ()) -> str:
        """Submit one trial; return the Slurm job id.

        Writes only the submitit folder ``TRIAL_DIR/logs``; ``TRIAL_DIR/spec.json`` must
        exist already.

        Raises
        ------
        TransientLaunchError
            sbatch timed out or the controller was unreachable. NOTE: a timed-out sbatch
            may still have queued the job; it then runs under the job name
            ``<job_name_prefix>-<trial id>`` without the caller knowing its id.
        LaunchError
            sbatch is missing or rejected the job, or the spec file is missing.
        """
        spec_path = _trial_dir(spec) / "spec.json"
        if not spec_path.is_file():
            raise LaunchError(f"trial spec {spec_path} not found; write it before submitting")
        if shutil.which("sbatch") is None:
            raise LaunchError("sbatch not found on PATH; is this a Slurm login node?")
        executor = self._executor(spec, exclude_nodes)
        submitted_at = time.time()
        try:
            job = executor.submit(TrialEntry(str(spec_path), self.entry_target))
        except submitit_utils.FailedJobError as exc:
            raise _sbatch_error(exc) from exc
        self._submitted_at[job.job_id] = submitted_at
        logger.info("submitted trial %s as Slurm job %s", spec.get("trial_id"), job.job_id)
        return job.job_id

    def find_jobs(self, spec: dict[str, Any]) -> list[str]:
        """List job ids submitted for a trial, for a controller that crashed mid-submit.

        submitit writes ``<job id>_submitted.pkl`` into the trial's log folder as soon
        as sbatch returns, so the folder lists every job of the trial, newest last.
        """
        folder = Path(spec["trial_dir"]) / "logs"
        ids = {path.name.split("_", 1)[0] for path in folder.glob("*_submitted.pkl")}
        return sorted((job_id for job_id in ids if job_id.isdigit()), key=int)

    def cancel(self, job_id: str) -> None:
        """Cancel a job with scancel; a job that already ended is not an error."""
        argv = ["scancel", str(job_id)]
        completed = run_command(argv, self.command_timeout_s)
        text = completed.stderr.lower()
        if completed.returncode != 0 and not (
            "invalid job id" in text or "already completing or completed" in text
        ):
            raise LaunchError(
                f"scancel of job {job_id} failed",
                argv,
                completed.returncode,
                completed.stdout,
                completed.stderr,
            )
        logger.info("cancelled Slurm job %s", job_id)

    # -- states --------------------------------------------------------------------

    def states(
        self, job_ids: list[str], submitted_after: Mapping[str, float] | None = None
    ) -> dict[str, JobStatus]:
        """Return the status of each job: one squeue call, plus one sacct call if needed.

        Parameters
        ----------
        job_ids
            Slurm job ids as returned by :meth:`submit`.
        submitted_after
            Epoch seconds at which the caller submitted each job. Scheduler rows
            submitted more than ``clock_skew_s`` earlier belong to an older job with a
            reused id and are ignored. Defaults to the times this instance recorded.

        Returns
        -------
        dict
            Job id to :class:`JobStatus`. ``reason`` names requeues ("requeued 2 times")
            and Slurm's pending reason. A job no row matches is ``UNKNOWN``.
        """
        ids = [str(job_id) for job_id in job_ids]
        if not ids:
            return {}
        floor = {job_id: self._submission_floor(job_id, submitted_after) for job_id in ids}
        found = self._squeue(ids, floor)
        missing = [job_id for job_id in ids if job_id not in found]
        if missing:
            found.update(self._sacct(missing, floor))
        return {
            job_id: found.get(job_id, JobStatus(JobState.UNKNOWN, "not found by squeue or sacct"))
            for job_id in ids
        }

    def _submission_floor(self, job_id: str, submitted_after: Mapping[str, float] | None) -> float:
        if submitted_after is not None and job_id in submitted_after:
            return submitted_after[job_id] - self.clock_skew_s
        if job_id in self._submitted_at:
            return self._submitted_at[job_id] - self.clock_skew_s
        return -math.inf

    def _squeue(self, ids: list[str], floor: Mapping[str, float]) -> dict[str, JobStatus]:
        fields = ",".join(f"{field}:|" for field in _SQUEUE_FIELDS)
        argv = [
            "squeue",
            "--noheader",
            "--states=all",
            f"--jobs={','.join(ids)}",
            f"--Format={fields}",
        ]
        completed = run_command(argv, self.command_timeout_s)
        if completed.returncode != 0:
            # squeue exits 1 when the only id it was given is not in the queue any more.
            if "invalid job id" in completed.stderr.lower():
                return {}
            raise LaunchError(
                "squeue failed", argv, completed.returncode, completed.stdout, completed.stderr
            )
        statuses = {}
        for line in completed.stdout.splitlines():
            values = line.split("|")
            if len(values) < len(_SQUEUE_FIELDS):
                continue
            row = dict(zip(_SQUEUE_FIELDS, (value.strip() for value in values), strict=False))
            job_id = row["JobID"]
            submit = _parse_slurm_time(row["SubmitTime"])
            if job_id not in floor or (submit is not None and submit < floor[job_id]):
                continue
            restarts = int(row["RestartCnt"]) if row["RestartCnt"].isdigit() else 0
            state = map_state(row["State"])
            code, signal = _wait_status(row["exit_code"])
            reason = _join_reason(
                _restart_text(restarts),
                row["Reason"],
                f"killed by signal {signal}" if signal and not state.is_active else "",
            )
            if state is JobState.UNKNOWN:
                reason = _join_reason(f"unrecognized Slurm state {row['State']!r}", reason)
            statuses[job_id] = JobStatus(
                state,
                reason,
                code if not state.is_active else None,
                row["NodeList"] or None,
            )
        return statuses

    def _sacct(self, ids: list[str], floor: Mapping[str, float]) -> dict[str, JobStatus]:
        if self._sacct_available is False:
            return {}
        argv = [
            "sacct",
            "--noheader",
            "--parsable2",
            "--allocations",
            "--duplicates",
            f"--format={','.join(_SACCT_FIELDS)}",
            f"--jobs={','.join(ids)}",
        ]
        # sacct rejects a start time in the future (a caller's clock may run ahead).
        earliest = min(min(floor.values()), time.time() - 60)
        if math.isfinite(earliest):
            start = datetime.datetime.fromtimestamp(earliest).strftime("%Y-%m-%dT%H:%M:%S")
            argv.append(f"--starttime={start}")
        try:
            completed = run_command(argv, self.command_timeout_s)
        except TransientLaunchError:
            raise
        except LaunchError as exc:
            logger.warning("sacct is not available (%s); finished jobs will read as unknown", exc)
            self._sacct_available = False
            return {}
        if completed.returncode != 0:
            text = completed.stderr.lower()
            if any(marker in text for marker in _SACCT_DISABLED_MARKERS):
                logger.warning(
                    "Slurm accounting is not available (%s); finished jobs will read as unknown",
                    completed.stderr.strip(),
                )
                self._sacct_available = False
                return {}
            raise LaunchError(
                "sacct failed", argv, completed.returncode, completed.stdout, completed.stderr
            )
        self._sacct_available = True
        return _parse_sacct(completed.stdout, floor)


def _parse_sacct(text: str, floor: Mapping[str, float]) -> dict[str, JobStatus]:
    """Turn ``sacct --parsable2 --duplicates --allocations`` rows into job statuses.

    With ``--duplicates`` a requeued job has one row per run; all but the newest are
    counted as restarts. Rows submitted before the job's floor are from an older job
    with the same id.
    """
    runs: dict[str, list[tuple[float, dict[str, str]]]] = {}
    for line in text.splitlines():
        values = line.split("|")
        if len(values) < len(_SACCT_FIELDS):
            continue
        row = dict(zip(_SACCT_FIELDS, values, strict=False))
        job_id = row["JobIDRaw"]
        if job_id not in floor:
            continue
        submit = _parse_slurm_time(row["Submit"])
        if submit is not None and submit < floor[job_id]:
            continue
        runs.setdefault(job_id, []).append((submit or 0.0, row))
    statuses = {}
    for job_id, rows in runs.items():
        rows.sort(key=lambda item: item[0])
        row = rows[-1][1]
        restarts = len(rows) - 1
        state = map_state(row["State"])
        code, signal = _exit_code(row["ExitCode"])
        reason = _join_reason(
            _restart_text(restarts),
            row["State"] if " " in row["State"] else "",
            f"killed by signal {signal}" if signal else "",
            row["Reason"] if state.is_active else "",
        )
        if state is JobState.UNKNOWN:
            reason = _join_reason(f"unrecognized Slurm state {row['State']!r}", reason)
        node = row["NodeList"] if row["NodeList"] not in ("", "None assigned") else None
        statuses[job_id] = JobStatus(state, reason, None if state.is_active else code, node)
    return statuses


def _mem_text(mem_gb: float) -> str:
    """Format memory for --mem as submitit's AutoExecutor does: "64GB" or "1536MB"."""
    if mem_gb == int(mem_gb):
        return f"{int(mem_gb)}GB"
    return f"{int(mem_gb * 1024)}MB"


def _trial_dir(spec: Mapping[str, Any]) -> Path:
    """Return the spec's absolute trial directory, rejecting paths Slurm cannot take."""
    value = spec.get("trial_dir")
    if not isinstance(value, str) or not value:
        raise LaunchError(f"trial spec has no trial_dir string: {value!r}")
    path = Path(value)
    if not path.is_absolute():
        raise LaunchError(f"trial_dir {value!r} must be an absolute path")
    if any(ord(char) < 32 for char in value) or "%" in value:
        raise LaunchError(
            f"trial_dir {value!r} contains a control character or '%'; Slurm expands '%' "
            "in log file names and a newline breaks #SBATCH lines, so choose another "
            "experiment directory"
        )
    return path


def _sbatch_error(exc: submitit_utils.FailedJobError) -> LaunchError:
    """Classify a failed sbatch call from submitit as transient or permanent."""
    cause = exc.__cause__
    returncode = getattr(cause, "returncode", None)
    stdout = getattr(cause, "output", "") or ""
    stderr = getattr(cause, "stderr", "") or str(exc)
    argv = list(getattr(cause, "cmd", ["sbatch"]))
    if returncode in (124, 137) or _is_transient(stderr):
        return TransientLaunchError(
            "sbatch timed out or could not reach the controller", argv, returncode, stdout, stderr
        )
    return LaunchError("sbatch rejected the job", argv, returncode, stdout, stderr)
