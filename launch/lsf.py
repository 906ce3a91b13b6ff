"""LSF backend with jsrun launching, for Summit-like clusters (IBM POWER9, 6 V100 per node).

Each trial becomes one batch job. The job script is built as a list of lines: ``#BSUB``
directives, the profile's setup lines, ``export`` lines, then ``jsrun ... python -m
jobs.train SPEC``. It is submitted as ``bsub SCRIPT`` with an argv list, which needs
``LSB_BSUB_PARSE_SCRIPT=Y`` in lsf.conf (IBM Spectrum LSF 10.1, bsub ``job_script``).

Walltime chaining
-----------------
LSF sends ``warning_signal`` (``#BSUB -wa``) ``warning_time_min`` minutes (``#BSUB -wt``)
before the run limit. ``jobs.train`` then writes a checkpoint and exits with code 75
(EX_TEMPFAIL) without a result file, which :meth:`LsfBackend.states` reports as
``PREEMPTED``. A job that ignores the warning is killed at the run limit and ends in EXIT with exit
code 140 (TERM_RUNLIMIT), which :meth:`LsfBackend.states` reports as ``TIMEOUT``. In both
cases the controller submits the same spec again and training resumes from the trial's
checkpoint. ``submit(spec, depends_on=JOB_ID)`` adds ``#BSUB -w "ended(JOB_ID)"`` so a
follow-up job can wait in the queue while the previous one runs. A follow-up job whose
trial already has a result file exits at once without starting jsrun.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launch.base import Backend, JobState, JobStatus, LaunchError, TransientLaunchError
from launch.config import ConfigError, Section

logger = logging.getLogger(__name__)

# NOTE: Summit's batch queue walltime limits in minutes, keyed by the smallest node count
# of each bin, as specified for this project and not checked against the current OLCF
# policy. Other queues are not checked.
_QUEUE_LIMITS_MIN: dict[str, list[tuple[int, int]]] = {
    "batch": [(922, 24 * 60), (92, 12 * 60), (46, 6 * 60), (1, 2 * 60)],
}
_SIGNALS = ("USR1", "USR2", "TERM", "INT", "URG")
_LAYOUTS: dict[str, dict[str, Any]] = {
    # One resource set per GPU: jsrun -n 6*nodes -r 6 -a 1 -g 1 -c 7 -b packed:7
    "gpu": {"per_node": 6, "ranks": 1, "gpus": 1, "cpus": 7, "bind": "packed:7"},
    # One resource set per node holding all 6 GPUs and 6 ranks: -n nodes -r 1 -a 6 -g 6 -c 42
    "node": {"per_node": 1, "ranks": 6, "gpus": 6, "cpus": 42, "bind": None},
}
_PROFILE_KEYS = {
    "backend": "lsf",
    "description": "''",
    "project": "required, -P",
    "queue": "batch, -q",
    "nodes": "1, -nnodes",
    "walltime": "required, -W [hours:]minutes",
    "job_name": "spline-nas, -J prefix",
    "output": "{trial_dir}/logs/lsf-%J.out",
    "error": "{trial_dir}/logs/lsf-%J.err",
    "alloc_flags": "''",
    "setup": "[]",
    "env": "{}",
    "python": "python",
    "warning_signal": "USR1, -wa",
    "warning_time_min": "10, -wt",
    "gpus_per_node": "6",
    "cores_per_node": "42",
    "jsrun": "layout gpu",
}
_JSRUN_KEYS = {
    "layout": "gpu or node",
    "resource_sets_per_node": "-r, from layout",
    "ranks_per_resource_set": "-a, from layout",
    "gpus_per_resource_set": "-g, from layout",
    "cpus_per_resource_set": "-c, from layout",
    "bind": "-b, from layout; 'none' disables binding",
    "world_size": "optional check of -n times -a",
}
_PATH_FIELDS = re.compile(r"\{([^{}]*)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_JOB_ID = re.compile(r"\d+(\[\d+\])?")
_BSUB_PLAIN = re.compile(r"[A-Za-z0-9_.,:/+=@%-]+")
_SUBMIT_REPLY = re.compile(r"Job <(\d+)> is submitted to (?:default )?queue <([^>]*)>")
_NOT_FOUND = re.compile(r"Job <(\d+(?:\[\d+\])?)> is not found")


@dataclass(frozen=True)
class JsrunLayout:
    """Resource sets of one job as jsrun flags; counts are per resource set unless named."""

    resource_sets: int
    resource_sets_per_node: int
    ranks_per_resource_set: int
    gpus_per_resource_set: int
    cpus_per_resource_set: int
    bind: str | None

    @property
    def world_size(self) -> int:
        return self.resource_sets * self.ranks_per_resource_set

    def argv(self) -> list[str]:
        """Return the jsrun command and its resource flags."""
        argv = ["jsrun"]
        for flag, value in (
            ("-n", self.resource_sets),
            ("-r", self.resource_sets_per_node),
            ("-a", self.ranks_per_resource_set),
            ("-g", self.gpus_per_resource_set),
            ("-c", self.cpus_per_resource_set),
        ):
            argv += [flag, str(value)]
        if self.bind is not None:
            argv += ["-b", self.bind]
        return argv


@dataclass(frozen=True)
class LsfProfile:
    """Site profile of an LSF/jsrun cluster, read from a site YAML file.

    Attributes
    ----------
    project, queue : str
        Allocation charged (``-P``) and queue (``-q``).
    nodes : int
        Nodes per job (``-nnodes``).
    walltime_min : int
        Run limit per job in minutes (``-W``).
    job_name : str
        Prefix of the job name; the trial id is appended (``-J``).
    output, error : str
        Paths of the job's stdout and stderr; ``{trial_dir}`` and ``{trial_id}`` are
        replaced per trial and LSF replaces ``%J`` with the job id.
    alloc_flags : str
        The single ``-alloc_flags`` value, e.g. ``"gpumps smt4"``; empty to omit it.
    setup : tuple of str
        Shell lines run before jsrun, written verbatim (module loads, conda activation).
    env : tuple of (name, value)
        Variables exported before jsrun; values are quoted, never expanded.
    python : str
        Interpreter on the compute nodes.
    warning_signal : str
        Signal name without ``SIG`` sent ``warning_time_min`` minutes before the run limit.
    jsrun : JsrunLayout
        Resource sets, ranks, GPUs and cores of every job.
    """

    project: str
    queue: str
    nodes: int
    walltime_min: int
    job_name: str
    output: str
    error: str
    alloc_flags: str
    setup: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    python: str
    warning_signal: str
    warning_time_min: int
    gpus_per_node: int
    cores_per_node: int
    jsrun: JsrunLayout

    @classmethod
    def from_section(cls, section: Section) -> LsfProfile:
        """Read and validate a profile; raise ConfigError naming the key on bad input."""
        section.check_keys(_PROFILE_KEYS, required=("project", "walltime"))
        backend = section.get_str("backend", "lsf")
        if backend != "lsf":
            raise section.error("backend", f"expected 'lsf' for this profile, got {backend!r}")

        nodes = _positive_int(section, "nodes", 1)
        alloc_flags = _bsub_safe(section, "alloc_flags", "")
        gpus_per_node = _positive_int(section, "gpus_per_node", 6)
        cores_per_node = _positive_int(section, "cores_per_node", 42)
        jsrun_section = section.get_section("jsrun", required=False)
        jsrun = _read_layout(
            jsrun_section,
            section,
            nodes,
            gpus_per_node,
            cores_per_node,
            mps="gpumps" in alloc_flags.split(),
        )

        walltime_min = read_walltime_min(section, "walltime")
        warning_time_min = _positive_int(section, "warning_time_min", 10)
        if warning_time_min >= walltime_min:
            raise section.error(
                "warning_time_min",
                f"{warning_time_min} min must be below the walltime ({walltime_min} min) "
                "so that the job gets the warning signal before it is killed",
            )

        profile = cls(
            project=_bsub_safe(section, "project", None),
            queue=_bsub_safe(section, "queue", "batch"),
            nodes=nodes,
            walltime_min=walltime_min,
            job_name=_bsub_safe(section, "job_name", "spline-nas"),
            output=_path_template(section, "output", "{trial_dir}/logs/lsf-%J.out"),
            error=_path_template(section, "error", "{trial_dir}/logs/lsf-%J.err"),
            alloc_flags=alloc_flags,
            setup=tuple(_read_setup(section)),
            env=tuple(_read_env(section).items()),
            python=_nonempty_str(section, "python", "python"),
            warning_signal=_read_signal(section),
            warning_time_min=warning_time_min,
            gpus_per_node=gpus_per_node,
            cores_per_node=cores_per_node,
            jsrun=jsrun,
        )
        check_queue_limit(profile.queue, profile.nodes, profile.walltime_min)
        return profile


# -- profile parsing ----------------------------------------------------------------------


def _nonempty_str(section: Section, key: str, default: str | None) -> str:
    value = section.get_str(key, default, required=default is None)
    assert value is not None
    if not value.strip():
        raise section.error(key, "must not be empty")
    return value


def _bsub_safe(section: Section, key: str, default: str | None) -> str:
    """Read a string that ends up on a ``#BSUB`` line, rejecting what LSF cannot parse."""
    value = section.get_str(key, default, required=default is None)
    assert value is not None
    if not value.strip():
        if default == "":
            return ""
        raise section.error(key, "must not be empty")
    try:
        bsub_quote(value)
    except ValueError as exc:
        raise section.error(key, str(exc)) from None
    return value


def _positive_int(section: Section, key: str, default: int) -> int:
    value = section.get_int(key, default)
    if value < 1:
        raise section.error(key, f"must be a positive integer, got {value}")
    return value


def read_walltime_min(section: Section, key: str) -> int:
    """Read an LSF walltime, an integer of minutes or a string "[hours:]minutes".

    YAML 1.1 reads an unquoted ``2:00`` as the base-60 integer 120, which LSF would take
    as minutes anyway, but ``2:00:00`` becomes 7200; both are rejected so the user quotes.
    """
    value = section.scalar_value(key)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise section.error(key, f'expected minutes or "[hours:]minutes", got {value!r}')
    if isinstance(value, int):
        try:
            minutes = section.get_int(key)
        except ConfigError:
            raise section.error(
                key,
                f"YAML 1.1 reads an unquoted time as a base-60 number ({value}); "
                'write it in quotes ("2:00") or as minutes (120)',
            ) from None
    else:
        match = re.fullmatch(r"(?:(\d+):)?(\d+)", value.strip())
        if match is None:
            raise section.error(key, f'invalid walltime {value!r}; use "[hours:]minutes"')
        hours, mins = match.groups()
        if hours is not None and int(mins) >= 60:
            raise section.error(key, f"invalid walltime {value!r}: minutes must be below 60")
        minutes = int(hours or 0) * 60 + int(mins)
    if minutes < 1:
        raise section.error(key, f"walltime must be at least 1 minute, got {value!r}")
    return minutes


def check_queue_limit(queue: str, nodes: int, walltime_min: int) -> None:
    """Log a warning when the walltime exceeds the queue's limit for this node count."""
    for min_nodes, limit_min in _QUEUE_LIMITS_MIN.get(queue, []):
        if nodes >= min_nodes:
            if walltime_min > limit_min:
                logger.warning(
                    "walltime %s exceeds the %s limit of queue '%s' for %d nodes; LSF will "
                    "reject or hold the job, so lower walltime or raise nodes",
                    format_walltime(walltime_min),
                    format_walltime(limit_min),
                    queue,
                    nodes,
                )
            return


def _path_template(section: Section, key: str, default: str) -> str:
    value = _bsub_safe(section, key, default)
    for field in _PATH_FIELDS.findall(value):
        if field not in ("trial_dir", "trial_id"):
            raise section.error(
                key, f"unknown placeholder {{{field}}}; valid ones are {{trial_dir}}, {{trial_id}}"
            )
    return value


def _read_setup(section: Section) -> list[str]:
    lines = section.get_str_list("setup")
    for index, line in enumerate(lines):
        if "\n" in line or "\r" in line:
            raise section.error("setup", f"entry {index} spans lines; write one per entry")
    return lines


def _read_env(section: Section) -> dict[str, str]:
    env = section.get_str_map("env")
    for name in env:
        if not _ENV_NAME.fullmatch(name):
            raise section.error(
                "env", f"invalid variable name {name!r}; use [A-Za-z_][A-Za-z0-9_]*"
            )
    return env


def _read_signal(section: Section) -> str:
    name = _nonempty_str(section, "warning_signal", "USR1").strip().upper()
    name = name.removeprefix("SIG")
    if name not in _SIGNALS:
        raise section.error(
            "warning_signal", f"unsupported signal {name!r}; use one of {_SIGNALS}"
        )
    return name


def _read_layout(
    jsrun: Section | None,
    top: Section,
    nodes: int,
    gpus_per_node: int,
    cores_per_node: int,
    mps: bool,
) -> JsrunLayout:
    """Build the jsrun layout from its preset and overrides, then check it fits a node."""
    if jsrun is None:
        return _check_layout(
            top, "jsrun", _make_layout("gpu", {}, nodes), gpus_per_node, cores_per_node, mps, None
        )
    jsrun.check_keys(_JSRUN_KEYS)
    name = jsrun.get_str("layout", "gpu")
    if name not in _LAYOUTS:
        raise jsrun.error("layout", f"unknown layout {name!r}; use one of {sorted(_LAYOUTS)}")
    overrides: dict[str, Any] = {}
    for key, field in (
        ("resource_sets_per_node", "per_node"),
        ("ranks_per_resource_set", "ranks"),
        ("gpus_per_resource_set", "gpus"),
        ("cpus_per_resource_set", "cpus"),
    ):
        if key in jsrun:
            overrides[field] = _positive_int(jsrun, key, 1)
    if "bind" in jsrun:
        overrides["bind"] = _nonempty_str(jsrun, "bind", None)
    layout = _make_layout(name, overrides, nodes)
    world_size = jsrun.get_int("world_size") if "world_size" in jsrun else None
    return _check_layout(jsrun, "", layout, gpus_per_node, cores_per_node, mps, world_size)


def _make_layout(name: str, overrides: dict[str, Any], nodes: int) -> JsrunLayout:
    values = {**_LAYOUTS[name], **overrides}
    return JsrunLayout(
        resource_sets=nodes * values["per_node"],
        resource_sets_per_node=values["per_node"],
        ranks_per_resource_set=values["ranks"],
        gpus_per_resource_set=values["gpus"],
        cpus_per_resource_set=values["cpus"],
        bind=values["bind"],
    )


def _check_layout(
    section: Section,
    prefix: str,
    layout: JsrunLayout,
    gpus_per_node: int,
    cores_per_node: int,
    mps: bool,
    world_size: int | None,
) -> JsrunLayout:
    """Apply the jsrun rules: sizes match, sets fit a node, ranks share GPUs only under MPS."""

    def key(name: str) -> str:
        return f"{prefix}.{name}" if prefix else name

    per_node = layout.resource_sets_per_node
    if world_size is not None and world_size != layout.world_size:
        raise section.error(
            key("world_size"),
            f"{world_size} ranks requested but {layout.resource_sets} resource sets times "
            f"{layout.ranks_per_resource_set} ranks per set make {layout.world_size}",
        )
    if per_node * layout.gpus_per_resource_set > gpus_per_node:
        raise section.error(
            key("gpus_per_resource_set"),
            f"{per_node} resource sets per node times {layout.gpus_per_resource_set} GPUs "
            f"need {per_node * layout.gpus_per_resource_set} GPUs, but a node has {gpus_per_node}",
        )
    if per_node * layout.cpus_per_resource_set > cores_per_node:
        raise section.error(
            key("cpus_per_resource_set"),
            f"{per_node} resource sets per node times {layout.cpus_per_resource_set} cores "
            f"need {per_node * layout.cpus_per_resource_set} cores, "
            f"but a node has {cores_per_node}",
        )
    if layout.ranks_per_resource_set > layout.gpus_per_resource_set and not mps:
        raise section.error(
            key("ranks_per_resource_set"),
            f"{layout.ranks_per_resource_set} ranks would share {layout.gpus_per_resource_set} "
            "GPUs per resource set; add 'gpumps' to alloc_flags to enable CUDA MPS or use "
            "one rank per GPU",
        )
    return layout


# -- script generation --------------------------------------------------------------------


def bsub_quote(value: str) -> str:
    """Quote a value for a ``#BSUB`` line, which LSF parses itself and no shell expands.

    Plain values stay unquoted and others are put in double quotes. Values that LSF
    cannot carry on one directive line raise ValueError.
    """
    if not value:
        raise ValueError("an empty value cannot be written on a #BSUB line")
    for char, name in (
        ("\n", "a newline"),
        ("\r", "a carriage return"),
        ("\0", "a NUL byte"),
        ('"', "a double quote"),
        ("\\", "a backslash"),
    ):
        if char in value:
            raise ValueError(
                f"{value!r} contains {name}, which a #BSUB directive line cannot carry; "
                "remove it from the value"
            )
    if _BSUB_PLAIN.fullmatch(value):
        return value
    return f'"{value}"'


def format_walltime(minutes: int) -> str:
    """Format minutes as LSF's ``[hours:]minutes``."""
    return f"{minutes // 60}:{minutes % 60:02d}" if minutes >= 60 else str(minutes)


def _trial_fields(spec: dict[str, Any]) -> tuple[str, Path]:
    try:
        trial_id = str(spec["trial_id"])
        trial_dir = Path(spec["trial_dir"])
    except KeyError as exc:
        raise LaunchError(
            f"trial spec is missing {exc.args[0]!r}; see docs/architecture.md"
        ) from None
    if not trial_dir.is_absolute():
        raise LaunchError(f"trial_dir {str(trial_dir)!r} must be an absolute path")
    return trial_id, trial_dir


def build_script_lines(
    profile: LsfProfile,
    spec: dict[str, Any],
    spec_path: Path,
    entry_module: str = "jobs.train",
    depends_on: str | None = None,
    exclude_nodes: tuple[str, ...] = (),
) -> list[str]:
    """Build the job script of one trial as a list of lines.

    Raises
    ------
    LaunchError
        When a value cannot be written safely (a newline in a name or path on a ``#BSUB``
        line, an invalid dependency job id or host name).
    """
    trial_id, trial_dir = _trial_fields(spec)
    lines = ["#!/bin/bash"] + _directives(profile, trial_id, trial_dir, depends_on, exclude_nodes)
    lines += [f"# spline-nas trial {trial_id}; submit with: bsub THIS_FILE", ""]
    lines += list(profile.setup)
    lines += [f"export {name}={shlex.quote(value)}" for name, value in profile.env]
    lines += [f"export SPLINE_NAS_TRIAL_ID={shlex.quote(trial_id)}", ""]
    result_path = Path(spec.get("result_path") or trial_dir / "result.json")
    lines += [
        "# A follow-up job of a walltime chain has nothing to do once the result exists.",
        f"if [ -e {shlex.quote(str(result_path))} ]; then",
        '    echo "spline-nas: result file exists; nothing to run" >&2',
        "    exit 0",
        "fi",
        "",
        # NOTE: signal delivery to jsrun and on to the ranks is tested only with the
        # stand-in jsrun, which forwards SIGUSR1, SIGUSR2, SIGTERM, SIGINT and SIGHUP.
        "# The warning signal (-wa) reaches jsrun, which passes it on to the ranks. The trap",
        "# keeps this shell running until jsrun exits.",
        f"trap 'echo \"spline-nas: received SIG{profile.warning_signal}\" >&2' "
        f"{profile.warning_signal}",
    ]
    command = profile.jsrun.argv() + [profile.python, "-m", entry_module, str(spec_path)]
    lines.append(shlex.join(command))
    return lines


def _directives(
    profile: LsfProfile,
    trial_id: str,
    trial_dir: Path,
    depends_on: str | None,
    exclude_nodes: tuple[str, ...],
) -> list[str]:
    """Return the ``#BSUB`` lines; every value passes through :func:`bsub_quote`."""
    fields = {"trial_dir": str(trial_dir), "trial_id": trial_id}
    options: list[tuple[str, str]] = [
        ("-P", profile.project),
        ("-q", profile.queue),
        ("-nnodes", str(profile.nodes)),
        ("-W", format_walltime(profile.walltime_min)),
        ("-J", f"{profile.job_name}-{trial_id}"),
        ("-o", profile.output.format(**fields)),
        ("-e", profile.error.format(**fields)),
    ]
    if profile.alloc_flags:
        options.append(("-alloc_flags", profile.alloc_flags))
    if depends_on is not None:
        if not _JOB_ID.fullmatch(depends_on):
            raise LaunchError(f"invalid dependency job id {depends_on!r}; expected digits")
        options.append(("-w", f"ended({depends_on})"))
    if exclude_nodes:
        options.append(("-R", _exclude_requirement(exclude_nodes)))
    lines = []
    for flag, value in options:
        try:
            lines.append(f"#BSUB {flag} {bsub_quote(value)}")
        except ValueError as exc:
            raise LaunchError(f"cannot write #BSUB {flag} for trial {trial_id!r}: {exc}") from None
    lines.append(f"#BSUB -wa {profile.warning_signal} -wt {profile.warning_time_min}")
    return lines


def _exclude_requirement(hosts: tuple[str, ...]) -> str:
    # NOTE: only tested with the stand-in bsub; Summit's -nnodes (CSM) scheduling may
    # ignore a select[] requirement.
    for host in hosts:
        if not _HOST_NAME.fullmatch(host):
            raise LaunchError(f"invalid host name {host!r} in exclude_nodes")
    return "select[" + " && ".join(f"hname!={host}" for host in sorted(hosts)) + "]"


# -- scheduler replies --------------------------------------------------------------------


def parse_submit_reply(stdout: str) -> str:
    """Return the job id from bsub's reply ``Job <12345> is submitted to queue <batch>.``."""
    match = _SUBMIT_REPLY.search(stdout)
    if match is None:
        raise ValueError(f"no 'Job <ID> is submitted' line in bsub output {stdout.strip()!r}")
    return match.group(1)


_STATES = {
    "PEND": JobState.PENDING,
    "PSUSP": JobState.PENDING,
    "USUSP": JobState.PENDING,
    "SSUSP": JobState.PENDING,
    "WAIT": JobState.PENDING,
    "PROV": JobState.PENDING,
    "RUN": JobState.RUNNING,
    "DONE": JobState.COMPLETED,
    "UNKWN": JobState.UNKNOWN,
    "ZOMBI": JobState.FAILED,
}
_EXIT_REASONS = {
    "TERM_RUNLIMIT": JobState.TIMEOUT,
    "TERM_OWNER": JobState.CANCELLED,
    "TERM_FORCE_OWNER": JobState.CANCELLED,
    "TERM_ADMIN": JobState.CANCELLED,
    "TERM_FORCE_ADMIN": JobState.CANCELLED,
    "TERM_MEMLIMIT": JobState.OUT_OF_MEMORY,
    "TERM_PREEMPT": JobState.PREEMPTED,
}
# LSF reports exit code 140 for a job killed at its run limit.
_RUNLIMIT_EXIT_CODE = 140
# jobs.train exits with EX_TEMPFAIL (75) after it checkpointed on the warning signal.
_PREEMPTED_EXIT_CODE = 75
BJOBS_FIELDS = "jobid stat exit_code exit_reason exec_host"


def parse_bjobs(stdout: str, stderr: str) -> dict[str, JobStatus]:
    """Parse ``bjobs -noheader -o "jobid stat exit_code exit_reason exec_host delimiter='|'"``.

    Job ids that bjobs no longer knows (``Job <ID> is not found``) map to ``UNKNOWN``.
    """
    statuses: dict[str, JobStatus] = {}
    for line in stdout.splitlines():
        if not line.strip() or _NOT_FOUND.search(line):
            continue
        fields = [field.strip() for field in line.split("|")]
        if len(fields) != 5:
            raise ValueError(f"unexpected bjobs line {line!r}; expected 5 '|'-separated fields")
        job_id, stat, exit_text, reason, hosts = (_none_if_dash(f) for f in fields)
        exit_code = int(exit_text) if exit_text and exit_text.isdigit() else None
        statuses[job_id or ""] = JobStatus(
            state=_map_state(stat or "", exit_code, reason or ""),
            reason=reason or stat or "",
            exit_code=exit_code,
            node=_compute_hosts(hosts),
        )
    for match in _NOT_FOUND.finditer(stdout + "\n" + stderr):
        statuses[match.group(1)] = JobStatus(JobState.UNKNOWN, reason="not found by bjobs")
    return statuses


def _none_if_dash(text: str) -> str | None:
    return None if text in ("", "-") else text


def _map_state(stat: str, exit_code: int | None, reason: str) -> JobState:
    if stat == "EXIT":
        if exit_code == _RUNLIMIT_EXIT_CODE:
            return JobState.TIMEOUT
        if exit_code == _PREEMPTED_EXIT_CODE:
            return JobState.PREEMPTED
        keyword = re.match(r"TERM_[A-Z_]+", reason)
        return _EXIT_REASONS.get(keyword.group(0) if keyword else "", JobState.FAILED)
    if stat not in _STATES:
        logger.warning("unknown LSF job state %r; reporting it as unknown", stat)
    return _STATES.get(stat, JobState.UNKNOWN)


def _compute_hosts(exec_host: str | None) -> str | None:
    """Turn ``1*batch1:42*h1:42*h2`` into ``h1,h2``, dropping the launch node."""
    if not exec_host:
        return None
    hosts = [entry.split("*")[-1] for entry in exec_host.split(":") if entry]
    if len(hosts) > 1:
        hosts = hosts[1:]
    return ",".join(dict.fromkeys(hosts))


# -- backend ------------------------------------------------------------------------------


class LsfBackend(Backend):
    """Submit trials with bsub, poll them with bjobs and cancel them with bkill.

    Parameters
    ----------
    profile : LsfProfile
        Site profile that sets the directives, setup lines and jsrun layout.
    entry_module : str
        Module run on every rank as ``python -m ENTRY SPEC``.
    command_timeout_s : float
        Time limit in seconds for each bsub, bjobs and bkill call; a call that exceeds it
        raises TransientLaunchError.
    """

    name = "lsf"

    def __init__(
        self,
        profile: LsfProfile,
        entry_module: str = "jobs.train",
        command_timeout_s: float = 60.0,
    ):
        self.profile = profile
        self.entry_module = entry_module
        self.command_timeout_s = command_timeout_s

    @property
    def ranks_per_job(self) -> int:
        return self.profile.jsrun.world_size

    def render(self, spec: dict[str, Any]) -> str:
        _, trial_dir = _trial_fields(spec)
        lines = build_script_lines(self.profile, spec, trial_dir / "spec.json", self.entry_module)
        return "\n".join(lines) + "\n"

    def submit(
        self,
        spec: dict[str, Any],
        exclude_nodes: tuple[str, ...] = (),
        depends_on: str | None = None,
    ) -> str:
        """Write the spec and job script into the trial directory and submit it with bsub.

        ``depends_on`` is a job id; the new job then starts only after that job ended
        (``#BSUB -w "ended(ID)"``), whether it finished, failed or hit its walltime.
        """
        trial_id, trial_dir = _trial_fields(spec)
        spec_path = trial_dir / "spec.json"
        lines = build_script_lines(
            self.profile, spec, spec_path, self.entry_module, depends_on, tuple(exclude_nodes)
        )
        logs = trial_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        _write_atomic(spec_path, json.dumps(spec, indent=2, sort_keys=True) + "\n")
        fd, script_name = tempfile.mkstemp(prefix="lsf-", suffix=".sh", dir=logs)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        result = self._run(["bsub", script_name])
        try:
            job_id = parse_submit_reply(result.stdout)
        except ValueError as exc:
            raise LaunchError(
                str(exc), result.args, result.returncode, result.stdout, result.stderr
            ) from None
        logger.info("submitted trial %s as LSF job %s (%s)", trial_id, job_id, script_name)
        return job_id

    def states(self, job_ids: list[str]) -> dict[str, JobStatus]:
        if not job_ids:
            return {}
        argv = ["bjobs", "-a", "-noheader", "-o", f"{BJOBS_FIELDS} delimiter='|'", *job_ids]
        result = self._run(argv, check=False)
        try:
            statuses = parse_bjobs(result.stdout, result.stderr)
        except ValueError as exc:
            raise LaunchError(
                str(exc), argv, result.returncode, result.stdout, result.stderr
            ) from None
        missing = [job_id for job_id in job_ids if job_id not in statuses]
        if missing:
            # bjobs exits 255 when a listed id is unknown, so only a gap in the reply is an error.
            raise TransientLaunchError(
                f"bjobs returned no status for jobs {missing}",
                argv,
                result.returncode,
                result.stdout,
                result.stderr,
            )
        logger.debug("bjobs states: %s", {k: statuses[k].state.value for k in job_ids})
        return {job_id: statuses[job_id] for job_id in job_ids}

    def cancel(self, job_id: str) -> None:
        result = self._run(["bkill", job_id], check=False)
        output = result.stdout + result.stderr
        finished = ("already finished", "not found", "No matching job found")
        if result.returncode == 0 or any(text in output for text in finished):
            logger.info("cancelled LSF job %s", job_id)
            return
        raise LaunchError(
            f"bkill failed for job {job_id}",
            result.args,
            result.returncode,
            result.stdout,
            result.stderr,
        )

    def _run(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a scheduler command with a time limit; raise LaunchError when it fails."""
        try:
            result = subprocess.run(
                argv, capture_output=True, text=True, timeout=self.command_timeout_s, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise TransientLaunchError(
                f"{argv[0]} timed out after {self.command_timeout_s:g} s",
                argv,
                None,
                _text(exc.stdout),
                _text(exc.stderr),
            ) from exc
        except FileNotFoundError as exc:
            raise LaunchError(f"{argv[0]} not found on PATH; run on an LSF login node") from exc
        if check and result.returncode != 0:
            error = TransientLaunchError if _is_transient(result.stderr) else LaunchError
            raise error(f"{argv[0]} failed", argv, result.returncode, result.stdout, result.stderr)
        return result


def _text(data: bytes | str | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""


def _is_transient(stderr: str) -> bool:
    return any(text in stderr for text in ("not responding", "try again", "Try again"))


def _write_atomic(path: Path, text: str) -> None:
    """Write a file through a temporary file in the same directory, fsynced, then renamed."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
