"""End-to-end tests of LsfBackend against the LSF stand-ins in lsf_standins/.

The stand-ins imitate bsub, bjobs, bkill, bmod and jsrun on this machine, and every "host"
is local. One stand-in minute lasts one second here, so ``walltime: 600`` gives a job ten
real minutes. Training jobs run the real entry point ``python -m jobs.train`` on the 8x8
digits images. Only the quoting and bookkeeping tests use the small ``payload_env``
module, which records every rank's argv and environment.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jobs.digits import export_digits
from launch.base import JobState, JobStatus, LaunchError
from launch.config import parse_section
from launch.lsf import LsfBackend, LsfProfile
from launch.results import read_result

STANDINS = Path(__file__).resolve().parent / "lsf_standins"
WORKTREE = Path(__file__).resolve().parents[2]
# Both ranks import torch before training, which took about 27 s on a 2-core machine at
# load 8 (a few seconds when idle).
JOB_TIMEOUT_S = 300.0


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_digits(tmp_path_factory.mktemp("data") / "digits")


@pytest.fixture
def lsf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Put the stand-ins on PATH with their state in tmp_path; kill leftover jobs after."""
    state = tmp_path / "lsf-state"
    monkeypatch.setenv("PATH", f"{STANDINS}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("LSF_STANDIN_DIR", str(state))
    monkeypatch.setenv("LSF_STANDIN_SECONDS_PER_MINUTE", "1")
    monkeypatch.setenv("PYTHONPATH", f"{WORKTREE}{os.pathsep}{STANDINS}")
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield state
    jobs = sorted(p.name for p in (state / "jobs").glob("*")) if state.exists() else []
    if jobs:
        subprocess.run(["bkill", *jobs], capture_output=True, check=False)


def make_backend(
    extra: str = "", entry: str = "jobs.train", walltime: int = 600, warning: int = 5
) -> LsfBackend:
    # The debug queue has no walltime check, so long test limits log no warning.
    text = f"""
project: PROJ
queue: debug
nodes: 2
walltime: {walltime}
warning_time_min: {warning}
python: {json.dumps(sys.executable)}
jsrun:
  resource_sets_per_node: 1
  world_size: 2
{extra}
"""
    return LsfBackend(LsfProfile.from_section(parse_section(text, "test.yaml")), entry)


def train_spec(
    trial_dir: Path, data_root: Path, epochs: int, batch_size: int = 32
) -> dict[str, Any]:
    """Return a real trial spec: a narrow ResNet-18 on the 8x8 digits, one thread per rank."""
    trial_dir.mkdir(parents=True, exist_ok=True)
    return {
        "format": 1,
        "trial_id": "t0001",
        "trial_dir": str(trial_dir),
        "result_path": str(trial_dir / "result.json"),
        "model": {"name": "resnet18", "params": {"c1": 4, "g1": 4, "g2": 4, "g3": 8, "g4": 8}},
        "data": {"root": str(data_root), "image_size": 8},
        "train": {
            "epochs": epochs,
            "batch_size_per_rank": batch_size,
            "num_threads": 1,
            "log_interval": 10,
        },
        "distributed": {"rendezvous": "file", "timeout_s": 240},
    }


def bare_spec(trial_dir: Path) -> dict[str, Any]:
    """Return a spec for payload_env, which reads only trial_dir."""
    trial_dir.mkdir(parents=True, exist_ok=True)
    return {"format": 1, "trial_id": "t0001", "trial_dir": str(trial_dir)}


def wait_ended(backend: LsfBackend, job_id: str, timeout_s: float = JOB_TIMEOUT_S) -> JobStatus:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = backend.states([job_id])[job_id]
        if not status.state.is_active:
            return status
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still active after {timeout_s} s")


def wait_for(
    condition: Callable[[], bool], description: str, timeout_s: float = JOB_TIMEOUT_S
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {description}")
        time.sleep(0.2)


def job_log(trial_dir: Path, job_id: str | None = None) -> str:
    pattern = f"lsf-{job_id}.err" if job_id else "lsf-*.err"
    return "\n".join(p.read_text() for p in sorted((trial_dir / "logs").glob(pattern)))


def read_standin_status(state: Path, job_id: str) -> dict:
    return json.loads((state / "jobs" / job_id / "status.json").read_text())


def shorten_run_limit(state: Path, job_id: str, remaining_s: int) -> None:
    """Set a running job's run limit to ``remaining_s`` seconds from now with bmod -W."""
    elapsed_s = time.time() - read_standin_status(state, job_id)["start_time"]
    minutes = math.ceil(elapsed_s) + remaining_s  # one stand-in minute is one second
    reply = subprocess.run(["bmod", "-W", str(minutes), job_id], capture_output=True, text=True)
    assert reply.returncode == 0, reply.stderr


def run_chain(
    backend: LsfBackend, spec: dict, first: str, chain_after: bool = True
) -> list[tuple[str, JobStatus]]:
    """Resubmit after each job until the result exists, as the controller does.

    With ``chain_after`` each follow-up waits in the queue with ``depends_on``; without
    it a follow-up is submitted only once the previous job's end state was seen.
    """
    result_path = Path(spec["result_path"])
    jobs: list[tuple[str, JobStatus]] = []
    job_id = first
    for _ in range(4):
        follow_up = backend.submit(spec, depends_on=job_id) if chain_after else None
        jobs.append((job_id, wait_ended(backend, job_id)))
        if result_path.exists():
            if follow_up is not None:
                jobs.append((follow_up, wait_ended(backend, follow_up)))
            return jobs
        job_id = follow_up or backend.submit(spec)
    raise AssertionError(f"no result after jobs {jobs}:\n{job_log(Path(spec['trial_dir']))}")


@pytest.mark.slow
def test_two_node_gloo_training_writes_result(lsf: Path, tmp_path: Path, digits: Path):
    backend = make_backend()
    trial_dir = tmp_path / "trials" / "t0001"
    spec = train_spec(trial_dir, digits, epochs=2)
    job_id = backend.submit(spec)

    status = wait_ended(backend, job_id)

    log = job_log(trial_dir)
    assert status.state is JobState.COMPLETED, log
    assert status.node == "h1,h2"
    result = read_result(Path(spec["result_path"]), "t0001")
    assert result is not None
    assert result.status == "ok"
    assert result.epochs == 2
    assert result.world_size == 2
    # 50/50 per class: 896 of the 1,797 images are validation images, each counted once.
    assert result.num_val_images == 896
    assert result.raw["device"] == "cpu"
    assert result.raw["spec"] == spec
    assert "2 ranks" in log
    assert "resumes at" not in log


@pytest.mark.slow
def test_warning_signal_checkpoints_and_chained_job_resumes(
    lsf: Path, tmp_path: Path, digits: Path
):
    # When training is under way, bmod moves the run limit so that the USR1 warning
    # (30 stand-in minutes before the limit) arrives within a second or two.
    backend = make_backend("warning_signal: USR1", warning=30)
    trial_dir = tmp_path / "trials" / "t0001"
    spec = train_spec(trial_dir, digits, epochs=3, batch_size=4)
    first = backend.submit(spec)
    follow_up = backend.submit(spec, depends_on=first)
    assert '#BSUB -w "ended(' in (lsf / "jobs" / follow_up / "script.sh").read_text()
    assert backend.states([follow_up])[follow_up].state is JobState.PENDING

    wait_for(lambda: "epoch 1/3 step" in job_log(trial_dir, first), "training steps")
    shorten_run_limit(lsf, first, remaining_s=31)
    jobs = [(first, wait_ended(backend, first))]
    jobs += run_chain(backend, spec, follow_up)

    first_log, resumed_log = job_log(trial_dir, first), job_log(trial_dir, follow_up)
    assert "warned_at" in read_standin_status(lsf, first)
    assert jobs[0][1].state is JobState.PREEMPTED, first_log
    assert jobs[0][1].exit_code == 75
    assert "received SIGUSR1" in first_log
    assert re.search(r"preemption signal at epoch \d step \d+, checkpoint written", first_log)
    assert jobs[1][1].state is JobState.COMPLETED, resumed_log
    assert re.search(r"resumes at epoch \d, step \d+ of \d+", resumed_log), resumed_log
    last_id, last_status = jobs[-1]
    assert last_status.state is JobState.COMPLETED
    assert "result file exists; nothing to run" in job_log(trial_dir, last_id)
    result = read_result(Path(spec["result_path"]), "t0001")
    assert result is not None
    assert result.epochs == 3
    assert result.world_size == 2


@pytest.mark.slow
def test_run_limit_kill_then_resubmitted_job_resumes(lsf: Path, tmp_path: Path, digits: Path):
    # SIGURG is ignored by bash, jsrun and the ranks, so the job runs into its limit.
    # bmod sets the limit one second ahead once the first epoch's checkpoint exists.
    backend = make_backend("warning_signal: URG")
    trial_dir = tmp_path / "trials" / "t0001"
    spec = train_spec(trial_dir, digits, epochs=3, batch_size=4)
    first = backend.submit(spec)

    wait_for(lambda: any((trial_dir / "checkpoints").glob("ckpt-*.pt")), "a checkpoint")
    shorten_run_limit(lsf, first, remaining_s=1)
    jobs = run_chain(backend, spec, first, chain_after=False)

    first_log = job_log(trial_dir, jobs[0][0])
    assert jobs[0][1].state is JobState.TIMEOUT, first_log
    assert jobs[0][1].exit_code == 140
    assert jobs[0][1].reason.startswith("TERM_RUNLIMIT")
    assert f"wrote {spec['result_path']}" not in first_log
    resumed_log = job_log(trial_dir, jobs[1][0])
    assert jobs[1][1].state is JobState.COMPLETED, resumed_log
    # The kill came after an epoch-end checkpoint, so the follow-up starts a new epoch.
    assert re.search(r"resumes at epoch [23], step 0 of \d+", resumed_log), resumed_log
    result = read_result(Path(spec["result_path"]), "t0001")
    assert result is not None
    assert result.epochs == 3


def test_bmod_rejects_finished_and_unknown_jobs(lsf: Path, tmp_path: Path):
    backend = make_backend(entry="payload_env")
    job_id = backend.submit(bare_spec(tmp_path / "trials" / "t0001"))
    assert wait_ended(backend, job_id, timeout_s=60).state is JobState.COMPLETED

    finished = subprocess.run(["bmod", "-W", "5", job_id], capture_output=True, text=True)
    unknown = subprocess.run(["bmod", "-W", "5", "999999"], capture_output=True, text=True)

    assert finished.returncode == 255
    assert "already finished" in finished.stderr
    assert unknown.returncode == 255
    assert "No matching job found" in unknown.stderr


def test_hostile_values_are_not_executed(lsf: Path, tmp_path: Path):
    marker = tmp_path / "marker"
    payload = f"$(touch {marker}) `touch {marker}`; touch {marker}"
    hostile_value = f"a b 'c' \"d\" {payload}\nsecond line $HOME"
    extra = (
        f"job_name: {json.dumps('nas ' + payload)}\nenv:\n  HOSTILE: {json.dumps(hostile_value)}"
    )
    backend = make_backend(extra, "payload_env")
    trial_dir = tmp_path / f"trial 'x' {payload}"
    spec = bare_spec(trial_dir)

    script = backend.render(spec)
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    status = wait_ended(backend, backend.submit(spec), timeout_s=60)

    assert status.state is JobState.COMPLETED, job_log(trial_dir)
    assert not marker.exists()
    for rank in (0, 1):
        record = json.loads((trial_dir / f"env-rank{rank}.json").read_text())
        assert record["env"]["HOSTILE"] == hostile_value
        assert record["argv"][1] == str(trial_dir / "spec.json")


@pytest.mark.parametrize("bad", ['quote"d', "new\nline", "back\\slash"])
def test_submit_rejects_unsafe_trial_dir(lsf: Path, tmp_path: Path, bad: str):
    backend = make_backend()
    with pytest.raises(LaunchError, match="#BSUB -o"):
        backend.submit(bare_spec(tmp_path / bad))
    assert not (lsf / "jobs").exists() or not any((lsf / "jobs").iterdir())


def test_cancel_kills_running_training_job(lsf: Path, tmp_path: Path, digits: Path):
    backend = make_backend()
    trial_dir = tmp_path / "trials" / "t0001"
    job_id = backend.submit(train_spec(trial_dir, digits, epochs=3))
    rank_groups = lsf / "jobs" / job_id / "rank_groups"
    wait_for(lambda: rank_groups.exists() and len(rank_groups.read_text().split()) == 2, "ranks")

    backend.cancel(job_id)
    status = wait_ended(backend, job_id, timeout_s=10)
    backend.cancel(job_id)  # cancelling a finished job is not an error

    assert status.state is JobState.CANCELLED
    assert not (trial_dir / "result.json").exists()
    groups = [int(pgid) for pgid in rank_groups.read_text().split()]
    wait_for(lambda: not any(process_group_exists(pgid) for pgid in groups), "ranks to end", 10)


def process_group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_forgotten_job_is_unknown(lsf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    backend = make_backend(entry="payload_env")
    job_id = backend.submit(bare_spec(tmp_path / "trials" / "t0001"))
    assert wait_ended(backend, job_id, timeout_s=60).state is JobState.COMPLETED
    monkeypatch.setenv("LSF_STANDIN_FORGET_S", "0")
    time.sleep(0.05)

    statuses = backend.states([job_id, "999999"])

    assert statuses[job_id].state is JobState.UNKNOWN
    assert statuses["999999"].state is JobState.UNKNOWN
