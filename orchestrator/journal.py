"""Append-only JSON-lines journal: the single source of truth of an experiment.

Every event is written as one compact JSON line and fsynced before the controller acts
on it, so after a crash the search state can be rebuilt by replaying the file. The
first line is a header with the format version. When reading, a torn last line (a
crash during the write) is ignored. A bad line followed by more lines is corruption,
and raises :class:`JournalError` with its line number.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

JOURNAL_FORMAT = 1
# Fault injection for the crash tests: when set to N, the process kills itself with
# SIGKILL just before appending its N-th event (counting from 1 in this process).
KILL_BEFORE_EVENT_ENV = "SPLINE_NAS_TEST_KILL_BEFORE_EVENT"


class JournalError(RuntimeError):
    """The journal cannot be read: corrupt line, unknown format or missing header."""


class Journal:
    """Appends events to ``path``; one instance per controller process."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: int | None = None
        self._appended = 0
        kill_at = os.environ.get(KILL_BEFORE_EVENT_ENV)
        self._kill_before = int(kill_at) if kill_at else None

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return self._fd

    def create(self, header: dict[str, Any]) -> None:
        """Start a new journal with a header line; fails if the file already exists."""
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        self._fd = fd
        self.append({"event": "header", "format": JOURNAL_FORMAT, **header})
        _fsync_dir(self.path.parent)

    def append(self, event: dict[str, Any]) -> None:
        """Write one event and fsync it; adds a wall-clock ``time`` field."""
        self._appended += 1
        if self._kill_before is not None and self._appended == self._kill_before:
            os.kill(os.getpid(), signal.SIGKILL)
        record = {"time": round(time.time(), 3), **event}
        line = json.dumps(record, separators=(",", ":"), sort_keys=False) + "\n"
        data = line.encode("utf-8")
        fd = self._open()
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
        os.fsync(fd)

    def repair_tail(self) -> None:
        """Cut a torn last line so that new events start on a line of their own."""
        size = self.path.stat().st_size
        if size == 0:
            return
        with open(self.path, "rb+") as handle:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) == b"\n":
                return
            handle.seek(0)
            keep = handle.read().rfind(b"\n") + 1
            logger.warning(
                "journal %s: dropping a torn last line of %d bytes", self.path, size - keep
            )
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_journal(path: Path) -> list[dict[str, Any]]:
    """Read and validate all events; ignore a torn last line.

    Raises
    ------
    JournalError
        If the file is missing, has no header, has an unknown format version, or has a
        damaged line anywhere but at the end.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise JournalError(
            f"{path}: journal not found; is this an experiment directory?"
        ) from None
    lines = raw.split(b"\n")
    # A complete file ends with a newline, so the last element is empty.
    trailing = lines.pop()
    events: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        events.append(_parse_line(path, number, line))
    if trailing.strip():
        try:
            events.append(_parse_line(path, len(lines) + 1, trailing))
            logger.warning("journal %s: last line has no newline but is complete", path)
        except JournalError:
            logger.warning("journal %s: ignoring torn last line %d", path, len(lines) + 1)
    if not events or events[0].get("event") != "header":
        raise JournalError(f"{path}: line 1 is not a journal header")
    version = events[0].get("format")
    if version != JOURNAL_FORMAT:
        raise JournalError(
            f"{path}: journal format {version!r} is not supported (this version reads "
            f"format {JOURNAL_FORMAT}); use the spline-nas release that wrote it"
        )
    return events


def _parse_line(path: Path, number: int, line: bytes) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise JournalError(
            f"{path}: line {number} is damaged ({exc}); restore the file from a backup or "
            f"remove that line and the lines after it"
        ) from None
    if not isinstance(record, dict) or "event" not in record:
        raise JournalError(f"{path}: line {number} is not a journal event")
    return record
