"""Rank detection and ``torch.distributed`` setup under torchrun, Slurm, LSF and submitit.

Launchers announce ranks through different environment variables. :func:`detect_env`
checks them in this order and uses the first complete set:

=================  ==============================================  ========================
launcher           rank, local rank, world size                    job id, restart count
=================  ==============================================  ========================
torchrun           RANK, LOCAL_RANK, WORLD_SIZE                    TORCHELASTIC_RUN_ID,
                                                                   TORCHELASTIC_RESTART_COUNT
submitit (local)   SUBMITIT_LOCAL_GLOBALID, _LOCALID, _NTASKS      SUBMITIT_LOCAL_JOB_ID
Slurm (srun)       SLURM_PROCID, SLURM_LOCALID, SLURM_NTASKS       SLURM_JOB_ID,
                                                                   SLURM_RESTART_COUNT
jsrun / Open MPI   OMPI_COMM_WORLD_RANK, _LOCAL_RANK, _SIZE or     LSB_JOBID
                   JSM_NAMESPACE_RANK, _LOCAL_RANK, _SIZE
(none)             single process
=================  ==============================================  ========================

The submitit local executor is checked before Slurm because a local job started inside
a Slurm batch script inherits that script's ``SLURM_PROCID=0``. A launcher without its
own job id falls back to the first of TORCHELASTIC_RUN_ID, SLURM_JOB_ID, LSB_JOBID and
SUBMITIT_LOCAL_JOB_ID that is set.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

_LAUNCHER_VARS = (
    ("torchrun", ("RANK", "LOCAL_RANK", "WORLD_SIZE")),
    (
        "submitit-local",
        ("SUBMITIT_LOCAL_GLOBALID", "SUBMITIT_LOCAL_LOCALID", "SUBMITIT_LOCAL_NTASKS"),
    ),
    ("slurm", ("SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS")),
    ("openmpi", ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_SIZE")),
    ("jsrun", ("JSM_NAMESPACE_RANK", "JSM_NAMESPACE_LOCAL_RANK", "JSM_NAMESPACE_SIZE")),
)
_JOB_ID_VARS = {
    "torchrun": "TORCHELASTIC_RUN_ID",
    "submitit-local": "SUBMITIT_LOCAL_JOB_ID",
    "slurm": "SLURM_JOB_ID",
    "openmpi": "LSB_JOBID",
    "jsrun": "LSB_JOBID",
}
_FALLBACK_JOB_ID_VARS = (
    "TORCHELASTIC_RUN_ID",
    "SLURM_JOB_ID",
    "LSB_JOBID",
    "SUBMITIT_LOCAL_JOB_ID",
)
# NOTE: LSF exports no restart counter, so a requeued LSF job (same LSB_JOBID) reuses
# its file store path and may read stale keys. A launcher can export
# TORCHELASTIC_RESTART_COUNT with the attempt number to get a fresh store.
_RESTART_VARS = ("SLURM_RESTART_COUNT", "TORCHELASTIC_RESTART_COUNT")


class RendezvousError(RuntimeError):
    """The ranks of a job could not form a process group (a launch failure)."""


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in its job, as announced by the launcher."""

    rank: int
    local_rank: int
    world_size: int
    job_id: str | None
    restart_count: int
    launcher: str

    @property
    def is_main(self) -> bool:
        """True on global rank 0, the rank that writes files and logs."""
        return self.rank == 0


def _int_var(environ: Mapping[str, str], name: str) -> int:
    value = environ[name]
    try:
        return int(value)
    except ValueError:
        raise RendezvousError(
            f"environment variable {name}={value!r} is not an integer. Check the launcher command"
        ) from None


def _job_id(environ: Mapping[str, str], launcher: str) -> str | None:
    """Return the launcher's job id, else the first fallback id that is set."""
    names = [_JOB_ID_VARS[launcher]] if launcher in _JOB_ID_VARS else []
    for name in names + list(_FALLBACK_JOB_ID_VARS):
        value = environ.get(name, "").strip()
        # torchrun reports the run id "none" unless --rdzv-id is given.
        if value and value != "none":
            return value
    return None


def detect_env(environ: Mapping[str, str] | None = None) -> DistEnv:
    """Detect rank, local rank, world size, job id and restart count.

    Parameters
    ----------
    environ : mapping, optional
        Environment to read; defaults to ``os.environ``.

    Returns
    -------
    DistEnv
        ``launcher`` is ``"single"`` with rank 0 of 1 when no launcher variables are set.

    Raises
    ------
    RendezvousError
        If a variable is not an integer or the rank is out of range.
    """
    environ = os.environ if environ is None else environ
    for launcher, names in _LAUNCHER_VARS:
        if not all(name in environ for name in names):
            continue
        rank, local_rank, world_size = (_int_var(environ, name) for name in names)
        if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
            raise RendezvousError(
                f"{launcher}: invalid ranks {names[0]}={rank}, "
                f"{names[1]}={local_rank}, {names[2]}={world_size}"
            )
        restart = next((_int_var(environ, n) for n in _RESTART_VARS if environ.get(n)), 0)
        return DistEnv(rank, local_rank, world_size, _job_id(environ, launcher), restart, launcher)
    return DistEnv(0, 0, 1, _job_id(environ, "single"), 0, "single")


def _split_top_level(text: str) -> list[str]:
    """Split a Slurm host list at commas that are not inside brackets."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [part.strip() for part in parts if part.strip()]


def _expand_range_list(spec: str, hostlist: str) -> list[str]:
    """Expand ``01-03,7`` into ``["01", "02", "03", "7"]``, keeping zero padding."""
    values = []
    for item in spec.split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", item.strip())
        if not match:
            raise ValueError(f"invalid range {item!r} in host list {hostlist!r}")
        low, high = match.group(1), match.group(2) or match.group(1)
        width = len(low) if low.startswith("0") else 0
        if int(high) < int(low):
            raise ValueError(f"descending range {item!r} in host list {hostlist!r}")
        values += [str(n).zfill(width) for n in range(int(low), int(high) + 1)]
    return values


def expand_slurm_hostlist(hostlist: str) -> list[str]:
    """Expand a Slurm host list such as ``n[1-3],m4`` or ``rack[1-2]-gpu[01-02]``.

    Parameters
    ----------
    hostlist : str
        Value of ``SLURM_JOB_NODELIST`` or ``SLURM_STEP_NODELIST``.

    Returns
    -------
    list of str
        Host names in Slurm's order; several bracket groups in one name expand to
        their Cartesian product, the last group varying fastest.

    Raises
    ------
    ValueError
        If brackets are unbalanced or a range is not ``low-high`` with digits.
    """
    if hostlist.count("[") != hostlist.count("]"):
        raise ValueError(f"unbalanced brackets in host list {hostlist!r}")
    hosts: list[str] = []
    for item in _split_top_level(hostlist):
        names = [""]
        for literal, ranges in re.findall(r"([^\[\]]*)(?:\[([^\]]*)\])?", item):
            suffixes = _expand_range_list(ranges, hostlist) if ranges else [""]
            names = [name + literal + suffix for name in names for suffix in suffixes]
        hosts.extend(names)
    return hosts


def lsf_compute_hosts(environ: Mapping[str, str]) -> list[str]:
    """Return the compute hosts of an LSF job, without the launch node, in order.

    Reads ``LSB_DJOB_HOSTFILE`` (one line per slot), else ``LSB_MCPU_HOSTS`` (host and
    slot-count pairs), else ``LSB_HOSTS`` (one word per slot). The first host runs the
    batch script (the "batch" or launch node on jsrun systems). It is dropped unless it
    is the only host. Repeated hosts are reduced to their first entry.
    """
    hostfile = environ.get("LSB_DJOB_HOSTFILE")
    if hostfile and Path(hostfile).is_file():
        entries = Path(hostfile).read_text().split()
    elif environ.get("LSB_MCPU_HOSTS"):
        entries = environ["LSB_MCPU_HOSTS"].split()[::2]
    else:
        entries = environ.get("LSB_HOSTS", "").split()
    if not entries:
        return []
    # NOTE: on LSF sites without a separate launch node, the batch script runs on the
    # first compute host, and "tcp" works only if rank 0 runs on the second host. The
    # default "file" rendezvous does not depend on this.
    unique = list(dict.fromkeys(entries))
    return unique[1:] if len(unique) > 1 else unique


def master_address(environ: Mapping[str, str]) -> str:
    """Return MASTER_ADDR if set, else the first compute host from Slurm or LSF."""
    if environ.get("MASTER_ADDR"):
        return environ["MASTER_ADDR"]
    for name in ("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST"):
        if environ.get(name):
            return expand_slurm_hostlist(environ[name])[0]
    hosts = lsf_compute_hosts(environ)
    if hosts:
        return hosts[0]
    if "SUBMITIT_LOCAL_JOB_ID" in environ:
        return "127.0.0.1"
    raise RendezvousError(
        "rendezvous 'tcp' needs MASTER_ADDR or a Slurm/LSF host list in "
        "the environment; set MASTER_ADDR or use rendezvous 'file'"
    )


def master_port(environ: Mapping[str, str], job_id: str | None) -> int:
    """Return MASTER_PORT if set, else ``20000 + job_id % 20000``.

    A job id that is not an integer is hashed with CRC-32 first.
    """
    if environ.get("MASTER_PORT"):
        return int(environ["MASTER_PORT"])
    if job_id is None:
        raise RendezvousError("rendezvous 'tcp' needs MASTER_PORT or a scheduler job id")
    number = int(job_id) if job_id.isdigit() else zlib.crc32(job_id.encode())
    return 20000 + number % 20000


def rendezvous_url(
    env: DistEnv, method: str, trial_dir: str | Path, environ: Mapping[str, str] | None = None
) -> str:
    """Return the ``init_method`` URL for ``torch.distributed.init_process_group``.

    Parameters
    ----------
    env : DistEnv
        Output of :func:`detect_env`.
    method : {"file", "tcp"}
        ``"file"`` uses ``file://TRIAL_DIR/rendezvous/store-<job id>-<restart count>``,
        a fresh store for each launch (the directory is created). Under torchrun without
        a job id it returns ``env://``, the store torchrun already runs. ``"tcp"`` uses
        :func:`master_address` and :func:`master_port`.
    trial_dir : str or Path
        Trial directory; must be on a file system all ranks share for ``"file"``.
    environ : mapping, optional
        Environment to read; defaults to ``os.environ``.
    """
    environ = os.environ if environ is None else environ
    if method == "tcp":
        return f"tcp://{master_address(environ)}:{master_port(environ, env.job_id)}"
    if method != "file":
        raise RendezvousError(f"distributed.rendezvous must be 'file' or 'tcp', got {method!r}")
    if env.job_id is None:
        if env.launcher == "torchrun" and environ.get("MASTER_ADDR"):
            return "env://"
        if env.world_size > 1:
            raise RendezvousError(
                f"{env.launcher}: no job id in the environment, so the ranks "
                "cannot agree on a fresh rendezvous file; set "
                "TORCHELASTIC_RUN_ID (torchrun --rdzv-id) or use 'tcp'"
            )
    store_dir = Path(trial_dir) / "rendezvous"
    store_dir.mkdir(parents=True, exist_ok=True)
    job_id = env.job_id or f"single{os.getpid()}"
    return f"file://{store_dir.resolve()}/store-{job_id}-{env.restart_count}"


def select_device(env: DistEnv) -> torch.device:
    """Return ``cuda:<local rank mod GPU count>`` if CUDA is available, else the CPU."""
    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        device = torch.device("cuda", env.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")


def init_process_group(env: DistEnv, init_method: str, timeout_s: float) -> str:
    """Join the job's process group (NCCL on CUDA, else gloo) and return the backend name.

    Raises
    ------
    RendezvousError
        If not all ranks join within ``timeout_s`` seconds.
    """
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    logger.debug("rank %d/%d joining %s via %s", env.rank, env.world_size, backend, init_method)
    try:
        dist.init_process_group(
            backend,
            init_method=init_method,
            rank=env.rank,
            world_size=env.world_size,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
    except (RuntimeError, ValueError) as exc:
        raise RendezvousError(
            f"launch failure: the {env.world_size} ranks did not join within {timeout_s:g} s "
            f"at {init_method} (rank {env.rank}: {exc}); check that the launcher "
            f"started {env.world_size} processes and that they share the trial directory"
        ) from exc
    return backend
