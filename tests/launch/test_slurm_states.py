"""Job states of the Slurm backend from squeue and sacct output (fake scheduler commands)."""

from __future__ import annotations

import datetime
import stat
from pathlib import Path

import pytest

from launch.base import JobState, LaunchError, TransientLaunchError
from launch.slurm import SlurmBackend, SlurmProfile, _parse_sacct, map_state


def _install(bin_dir: Path, name: str, body: str) -> None:
    """Write an executable shell script ``name`` into ``bin_dir``."""
    path = bin_dir / name
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory that is the whole PATH, for fake squeue/sacct/scancel scripts."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # Only the fakes, so the real Slurm commands in /usr/bin are not found.
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


def _stamp(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%dT%H:%M:%S")


@pytest.mark.parametrize(
    ("slurm_state", "state"),
    [
        ("PENDING", JobState.PENDING),
        ("REQUEUED", JobState.PENDING),
        ("REQUEUE_HOLD", JobState.PENDING),
        ("REQUEUE_FED", JobState.PENDING),
        ("RUNNING", JobState.RUNNING),
        ("COMPLETING", JobState.RUNNING),
        ("COMPLETED", JobState.COMPLETED),
        ("FAILED", JobState.FAILED),
        ("CANCELLED by 0", JobState.CANCELLED),
        ("CANCELLED+", JobState.CANCELLED),
        ("TIMEOUT", JobState.TIMEOUT),
        ("PREEMPTED", JobState.PREEMPTED),
        ("NODE_FAIL", JobState.NODE_FAIL),
        ("OUT_OF_MEMORY", JobState.OUT_OF_MEMORY),
        ("SOMETHING_NEW", JobState.UNKNOWN),
    ],
)
def test_map_state_table(slurm_state: str, state: JobState) -> None:
    assert map_state(slurm_state) is state


def test_parse_sacct_counts_requeues_and_skips_reused_id() -> None:
    now = 1_800_000_000.0
    text = "\n".join(
        [
            # An older job that had the same id 42 before the counter wrapped.
            f"42|COMPLETED|0:0|{_stamp(now - 86400)}|old01|None",
            f"42|REQUEUED|0:0|{_stamp(now + 5)}|n1|None",
            f"42|TIMEOUT|0:0|{_stamp(now + 60)}|n[1-2]|None",
            f"43|FAILED|3:0|{_stamp(now + 1)}|n2|None",
            f"44|CANCELLED by 0|0:15|{_stamp(now + 2)}|None assigned|None",
        ]
    )
    statuses = _parse_sacct(text, {"42": now - 300, "43": now - 300, "44": now - 300})
    assert statuses["42"].state is JobState.TIMEOUT
    assert statuses["42"].reason == "requeued 1 time"
    assert statuses["42"].node == "n[1-2]"
    assert statuses["43"].state is JobState.FAILED
    assert statuses["43"].exit_code == 3
    assert statuses["44"].state is JobState.CANCELLED
    assert "killed by signal 15" in statuses["44"].reason
    assert statuses["44"].node is None


def test_parse_sacct_only_old_rows_gives_nothing() -> None:
    now = 1_800_000_000.0
    text = f"42|COMPLETED|0:0|{_stamp(now - 86400)}|old01|None"
    assert _parse_sacct(text, {"42": now - 300}) == {}


def test_states_squeue_timeout_is_transient(fake_bin: Path) -> None:
    _install(fake_bin, "squeue", "exec /bin/sleep 5\n")
    backend = SlurmBackend(SlurmProfile(), command_timeout_s=0.5)
    with pytest.raises(TransientLaunchError, match="squeue timed out after 0.5 s"):
        backend.states(["7"])


def test_states_socket_timeout_is_transient(fake_bin: Path) -> None:
    message = "squeue: error: slurm_load_jobs error: Socket timed out on send/recv operation"
    _install(fake_bin, "squeue", f"echo '{message}' >&2\nexit 1\n")
    with pytest.raises(TransientLaunchError, match="could not reach the Slurm controller"):
        SlurmBackend(SlurmProfile()).states(["7"])


def test_states_unreachable_controller_is_transient(fake_bin: Path) -> None:
    message = "squeue: error: Unable to contact slurm controller (connect failure)"
    _install(fake_bin, "squeue", f"echo '{message}' >&2\nexit 1\n")
    with pytest.raises(TransientLaunchError):
        SlurmBackend(SlurmProfile()).states(["7"])


def test_states_other_squeue_error_is_permanent(fake_bin: Path) -> None:
    _install(fake_bin, "squeue", "echo 'squeue: error: Invalid user: nobody' >&2\nexit 1\n")
    with pytest.raises(LaunchError, match="squeue failed") as info:
        SlurmBackend(SlurmProfile()).states(["7"])
    assert not isinstance(info.value, TransientLaunchError)


def test_states_without_accounting(fake_bin: Path) -> None:
    now = datetime.datetime.now().timestamp()
    _install(
        fake_bin,
        "squeue",
        f"echo '8|RUNNING|None|n1|0|{_stamp(now)}|0|'\n",
    )
    _install(
        fake_bin,
        "sacct",
        "echo 'sacct: error: Slurm accounting storage is disabled' >&2\nexit 1\n",
    )
    statuses = SlurmBackend(SlurmProfile()).states(["7", "8"])
    assert statuses["7"].state is JobState.UNKNOWN
    assert statuses["8"].state is JobState.RUNNING
    assert statuses["8"].node == "n1"


def test_states_without_sacct_binary(fake_bin: Path) -> None:
    _install(
        fake_bin, "squeue", "echo 'slurm_load_jobs error: Invalid job id specified' >&2\nexit 1\n"
    )
    statuses = SlurmBackend(SlurmProfile()).states(["7"])
    assert statuses["7"].state is JobState.UNKNOWN


def test_states_squeue_reports_requeue_and_exit_status(fake_bin: Path) -> None:
    now = datetime.datetime.now().timestamp()
    rows = [
        f"5|PENDING|BeginTime||2|{_stamp(now)}|0|",
        # exit_code is a raw wait status: 768 is exit code 3, 9 is SIGKILL.
        f"6|FAILED|NonZeroExitCode|n2|0|{_stamp(now)}|768|",
        f"9|CANCELLED|None|n1|0|{_stamp(now)}|9|",
    ]
    _install(fake_bin, "squeue", "".join(f"echo '{row}'\n" for row in rows))
    statuses = SlurmBackend(SlurmProfile()).states(["5", "6", "9"])
    assert statuses["5"].state is JobState.PENDING
    assert statuses["5"].reason == "requeued 2 times; BeginTime"
    assert statuses["5"].exit_code is None
    assert statuses["6"].state is JobState.FAILED
    assert statuses["6"].exit_code == 3
    assert statuses["9"].state is JobState.CANCELLED
    assert "killed by signal 9" in statuses["9"].reason


def test_states_squeue_row_of_older_job_ignored(fake_bin: Path) -> None:
    now = datetime.datetime.now().timestamp()
    _install(fake_bin, "squeue", f"echo '5|RUNNING|None|n1|0|{_stamp(now - 7200)}|0|'\n")
    _install(fake_bin, "sacct", "exit 0\n")
    statuses = SlurmBackend(SlurmProfile()).states(["5"], submitted_after={"5": now})
    assert statuses["5"].state is JobState.UNKNOWN


def test_cancel_finished_job_is_not_an_error(fake_bin: Path) -> None:
    message = (
        "scancel: error: Kill job error on job id 5: Job/step already completing or completed"
    )
    _install(fake_bin, "scancel", f"echo '{message}' >&2\nexit 1\n")
    SlurmBackend(SlurmProfile()).cancel("5")


def test_cancel_failure_raises(fake_bin: Path) -> None:
    _install(fake_bin, "scancel", "echo 'scancel: error: Access/permission denied' >&2\nexit 1\n")
    with pytest.raises(LaunchError, match="scancel of job 5 failed"):
        SlurmBackend(SlurmProfile()).cancel("5")
