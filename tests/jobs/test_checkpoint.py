"""Tests of atomic writes, rolling checkpoints, RNG state and the preemption flag."""

from __future__ import annotations

import logging
import os
import random
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from jobs.checkpoint import (
    PreemptionFlag,
    checkpoint_paths,
    load_latest_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    write_atomic,
)


def test_write_atomic_replaces_file(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    target.write_text("old")
    write_atomic(target, lambda handle: handle.write(b"new"))
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_write_atomic_failure_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    target.write_text("old")

    def fail(handle: object) -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(target, fail)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_save_checkpoint_keeps_two_newest(tmp_path: Path) -> None:
    for step in (10, 20, 30):
        save_checkpoint(tmp_path, {"step": step}, step)
    names = [p.name for p in checkpoint_paths(tmp_path)]
    assert names == ["ckpt-000000030.pt", "ckpt-000000020.pt"]
    state = load_latest_checkpoint(tmp_path)
    assert state is not None
    assert state["step"] == 30


def test_load_skips_truncated_checkpoint(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    save_checkpoint(tmp_path, {"step": 1, "weights": torch.ones(100)}, 1)
    newest = save_checkpoint(tmp_path, {"step": 2, "weights": torch.ones(100)}, 2)
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="jobs.checkpoint"):
        state = load_latest_checkpoint(tmp_path)
    assert state is not None
    assert state["step"] == 1
    assert "skipping unreadable checkpoint" in caplog.text


def test_load_ignores_temporary_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    save_checkpoint(tmp_path, {"step": 5}, 5)
    (tmp_path / "ckpt-000000009.pt.tmp-4321").write_bytes(b"partial")
    with caplog.at_level(logging.WARNING, logger="jobs.checkpoint"):
        state = load_latest_checkpoint(tmp_path)
    assert state is not None
    assert state["step"] == 5
    assert "temporary checkpoint file" in caplog.text


def test_load_returns_none_without_checkpoints(tmp_path: Path) -> None:
    assert load_latest_checkpoint(tmp_path / "missing") is None
    assert load_latest_checkpoint(tmp_path) is None


def test_rng_state_round_trip_through_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    save_checkpoint(tmp_path, {"rng": rng_state()}, 1)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    state = load_latest_checkpoint(tmp_path)
    assert state is not None
    set_rng_state(state["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]


def test_preemption_flag_sets_and_restores() -> None:
    seen: list[int] = []

    def previous(signum: int, frame: object) -> None:
        seen.append(signum)

    old = signal.signal(signal.SIGUSR1, previous)
    try:
        flag = PreemptionFlag()
        flag.install()
        assert flag.previous[signal.SIGUSR1] is previous
        os.kill(os.getpid(), signal.SIGUSR1)
        assert flag.is_set
        assert flag.signum == signal.SIGUSR1
        assert seen == []  # the flag handler does not chain by itself
        flag.restore()
        assert signal.getsignal(signal.SIGUSR1) is previous
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGUSR1, old)
