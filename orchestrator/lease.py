"""One controller per experiment, enforced with a lease file that works on NFS and GPFS.

flock may be node-local or unsupported on parallel file systems, so the lease is a
file created with O_CREAT | O_EXCL (atomic on NFSv3+ and GPFS) holding the owner's
host, pid, start time and a heartbeat. The owner rewrites the heartbeat through a
temporary file and a rename. A lease may be taken over when its heartbeat is older
than ``stale_after_s``, or when its owner lived on this host and its pid is gone. The
taker renames the old lease away first, and only the process whose rename succeeds
creates a new one.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_STALE_AFTER_S = 300.0


class LeaseHeldError(RuntimeError):
    """Another live controller owns the experiment."""


@dataclass
class LeaseInfo:
    host: str
    pid: int
    started: float
    heartbeat: float

    def describe(self) -> str:
        age = time.time() - self.heartbeat
        return (
            f"pid {self.pid} on host {self.host}, started "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.started))}, "
            f"last heartbeat {age:.0f} s ago"
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lease:
    """The lease file of one experiment directory."""

    def __init__(self, directory: Path, stale_after_s: float = DEFAULT_STALE_AFTER_S):
        self.path = Path(directory) / "lease.json"
        self.stale_after_s = stale_after_s
        self.info: LeaseInfo | None = None

    def read(self) -> LeaseInfo | None:
        try:
            data = json.loads(self.path.read_text())
            return LeaseInfo(
                str(data["host"]),
                int(data["pid"]),
                float(data["started"]),
                float(data["heartbeat"]),
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            # A lease being written right now, or damaged: judge it by its mtime.
            try:
                mtime = self.path.stat().st_mtime
            except FileNotFoundError:
                return None
            return LeaseInfo("unknown", -1, mtime, mtime)

    def is_stale(self, info: LeaseInfo) -> bool:
        if info.host == socket.gethostname() and info.pid > 0 and not _pid_alive(info.pid):
            return True
        return time.time() - info.heartbeat > self.stale_after_s

    def acquire(self) -> None:
        """Create the lease, taking over a stale one; raise LeaseHeldError otherwise."""
        now = time.time()
        info = LeaseInfo(socket.gethostname(), os.getpid(), now, now)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self.read()
                if holder is None:
                    continue
                if not self.is_stale(holder):
                    raise LeaseHeldError(
                        f"experiment {self.path.parent} is owned by another controller: "
                        f"{holder.describe()}. Stop that controller first, or wait until its "
                        f"heartbeat is older than {self.stale_after_s:.0f} s"
                    ) from None
                self._break(holder)
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump(info.__dict__, handle)
                handle.flush()
                os.fsync(handle.fileno())
            self.info = info
            return
        raise LeaseHeldError(f"could not acquire {self.path}: another controller keeps taking it")

    def _break(self, holder: LeaseInfo) -> None:
        stale = self.path.with_name(f"lease.stale.{os.getpid()}.{time.time_ns()}")
        try:
            os.rename(self.path, stale)
        except FileNotFoundError:
            return
        logger.warning("took over stale lease of %s", holder.describe())
        stale.unlink(missing_ok=True)

    def heartbeat(self) -> None:
        """Refresh the heartbeat; raise LeaseHeldError if another process took the lease."""
        if self.info is None:
            raise RuntimeError("heartbeat() called before acquire()")
        current = self.read()
        if current is None or current.pid != self.info.pid or current.host != self.info.host:
            raise LeaseHeldError(
                f"lost the lease of {self.path.parent}"
                + (f" to {current.describe()}" if current else "")
            )
        self.info.heartbeat = time.time()
        temporary = self.path.with_name(f"lease.json.tmp.{os.getpid()}")
        temporary.write_text(json.dumps(self.info.__dict__))
        os.replace(temporary, self.path)

    def release(self) -> None:
        if self.info is None:
            return
        current = self.read()
        if current is not None and current.pid == self.info.pid and current.host == self.info.host:
            self.path.unlink(missing_ok=True)
        self.info = None
