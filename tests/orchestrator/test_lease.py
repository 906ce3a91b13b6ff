import json
import os
import socket
import subprocess
import sys
import time

import pytest

from orchestrator.lease import Lease, LeaseHeldError


def test_lease_second_holder_rejected(tmp_path):
    first = Lease(tmp_path)
    first.acquire()
    second = Lease(tmp_path)
    with pytest.raises(LeaseHeldError, match=f"pid {os.getpid()} on host"):
        second.acquire()
    first.release()
    second.acquire()
    second.release()
    assert not (tmp_path / "lease.json").exists()


def test_lease_dead_local_pid_is_taken_over(tmp_path):
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    now = time.time()
    (tmp_path / "lease.json").write_text(
        json.dumps(
            {"host": socket.gethostname(), "pid": process.pid, "started": now, "heartbeat": now}
        )
    )
    lease = Lease(tmp_path)
    lease.acquire()
    assert lease.read().pid == os.getpid()


def test_lease_old_heartbeat_is_taken_over(tmp_path):
    old = time.time() - 1000
    (tmp_path / "lease.json").write_text(
        json.dumps({"host": "other-login-node", "pid": 1, "started": old, "heartbeat": old})
    )
    lease = Lease(tmp_path, stale_after_s=300)
    lease.acquire()
    assert lease.read().host == socket.gethostname()


def test_lease_fresh_remote_holder_rejected(tmp_path):
    now = time.time()
    (tmp_path / "lease.json").write_text(
        json.dumps({"host": "other-login-node", "pid": 1, "started": now, "heartbeat": now})
    )
    with pytest.raises(LeaseHeldError, match="other-login-node"):
        Lease(tmp_path).acquire()


def test_lease_heartbeat_detects_loss(tmp_path):
    lease = Lease(tmp_path)
    lease.acquire()
    lease.heartbeat()
    now = time.time()
    (tmp_path / "lease.json").write_text(
        json.dumps({"host": "thief", "pid": 7, "started": now, "heartbeat": now})
    )
    with pytest.raises(LeaseHeldError, match="lost the lease"):
        lease.heartbeat()
