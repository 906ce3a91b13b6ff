"""Controller tests with the fast function backend: crashes, faults, lease, status."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.journal import KILL_BEFORE_EVENT_ENV, read_journal
from orchestrator.state import ExperimentState

SUPPORT = Path(__file__).resolve().parents[1] / "support"
REPO = Path(__file__).resolve().parents[2]

EXPERIMENT = """\
name: fn-test
space:
  parameters:
    a: {type: int, low: 0, high: 100}
    b: {type: float, low: 0.0, high: 100.0}
    c: {type: int, low: 0, high: 100}
  objective: {name: top1, direction: maximize}
model: {name: quadratic}
data: {dataset: imagefolder, root: /tmp}
search: {seed: 3, epsilon: 0.05, min_distance: 0.05, max_evaluations: 13}
"""

SITE = """\
backend: custom
poll_interval_s: 0.05
result_grace_s: 1
max_concurrent_trials: MAX_CONCURRENT
max_retries: 2
custom:
  class: function_backend:FunctionBackend
  options: {objective: quadratic, delay_s: 0.05, fault_fraction: FAULTS}
"""


def _setup(tmp_path, faults=0.0, concurrent=1):
    (tmp_path / "exp.yaml").write_text(EXPERIMENT)
    site = SITE.replace("FAULTS", str(faults)).replace("MAX_CONCURRENT", str(concurrent))
    (tmp_path / "site.yaml").write_text(site)


def _cli(tmp_path, *args, env_extra=None, timeout=120):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SUPPORT), str(REPO)])
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _measured(directory):
    state = ExperimentState.from_events(read_journal(directory / "journal.jsonl"))
    return [(t.trial_id, t.params, t.value) for t in state.trials.values() if t.value is not None]


def _jobs_per_trial(directory):
    counts = {}
    for trial_dir in sorted((directory / "trials").iterdir()):
        counts[trial_dir.name] = len(list((trial_dir / "jobs").glob("*.job")))
    return counts


def _wait_for_jobs(directory, timeout=10.0):
    """Wait until every started fake job has written its exit file."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        jobs = list(directory.glob("trials/*/jobs/*.job"))
        if all(job.with_suffix(".exit").exists() for job in jobs):
            return
        time.sleep(0.05)


def test_controller_runs_to_epsilon(tmp_path):
    _setup(tmp_path)
    completed = _cli(tmp_path, "run", "exp.yaml", "--site", "site.yaml", "--dir", "run")
    assert completed.returncode == 0, completed.stderr
    assert "best measured point" in completed.stdout
    measured = _measured(tmp_path / "run")
    assert len(measured) >= 9
    assert all(count == 1 for count in _jobs_per_trial(tmp_path / "run").values())


@pytest.mark.slow
def test_controller_sigkill_resume_matches_uninterrupted(tmp_path):
    _setup(tmp_path)
    reference = _cli(tmp_path, "run", "exp.yaml", "--site", "site.yaml", "--dir", "ref")
    assert reference.returncode == 0, reference.stderr
    expected = _measured(tmp_path / "ref")
    events = read_journal(tmp_path / "ref" / "journal.jsonl")
    # Kill before each of 20 different events: header, trial, submit_intent, submitted,
    # result and stop events all appear among them.
    kill_points = sorted({2 + round(i * (len(events) - 2) / 19) for i in range(20)})
    assert len(kill_points) == 20
    kinds = set()
    for point in kill_points:
        directory = tmp_path / f"kill{point}"
        kinds.add(events[point - 1]["event"])
        crashed = _cli(
            tmp_path,
            "run",
            "exp.yaml",
            "--site",
            "site.yaml",
            "--dir",
            directory.name,
            env_extra={KILL_BEFORE_EVENT_ENV: str(point)},
        )
        assert crashed.returncode == -signal.SIGKILL, (point, crashed.stderr[-2000:])
        _wait_for_jobs(directory)
        resumed = _cli(tmp_path, "resume", directory.name)
        assert resumed.returncode == 0, (point, resumed.stderr[-2000:])
        assert _measured(directory) == expected, f"kill before event {point}"
        jobs = _jobs_per_trial(directory)
        assert all(count == 1 for count in jobs.values()), (point, jobs)
    assert {"trial", "submit_intent", "submitted", "result"} <= kinds


def test_controller_second_instance_exits_2(tmp_path):
    _setup(tmp_path)
    directory = tmp_path / "run"
    first = _cli(tmp_path, "run", "exp.yaml", "--site", "site.yaml", "--dir", "run")
    assert first.returncode == 0
    # Pretend a live controller on another host holds the lease.
    now = time.time()
    (directory / "lease.json").write_text(
        json.dumps({"host": "login2", "pid": 4242, "started": now, "heartbeat": now})
    )
    second = _cli(tmp_path, "resume", "run")
    assert second.returncode == 2
    assert "pid 4242 on host login2" in second.stderr


def test_controller_parallel_initial_design(tmp_path):
    _setup(tmp_path, concurrent=4)
    completed = _cli(tmp_path, "run", "exp.yaml", "--site", "site.yaml", "--dir", "run")
    assert completed.returncode == 0, completed.stderr
    events = read_journal(tmp_path / "run" / "journal.jsonl")
    # Four trials are submitted before the first result arrives.
    first_result = next(i for i, e in enumerate(events) if e["event"] == "result")
    submitted_before = [e for e in events[:first_result] if e["event"] == "submitted"]
    assert len(submitted_before) == 4
    assert all(count == 1 for count in _jobs_per_trial(tmp_path / "run").values())


@pytest.mark.slow
def test_controller_survives_faults(tmp_path):
    _setup(tmp_path, faults=0.6)
    completed = _cli(
        tmp_path, "run", "exp.yaml", "--site", "site.yaml", "--dir", "run", timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    directory = tmp_path / "run"
    state = ExperimentState.from_events(read_journal(directory / "journal.jsonl"))
    sys.path.insert(0, str(SUPPORT))
    from function_backend import fault_of

    seen = set()
    for trial in state.trials.values():
        fault = fault_of(trial.params, 0.6)
        classes = [a.classification for a in trial.attempts if a.classification]
        seen.add(fault)
        if fault is None:
            assert trial.state == "done"
            assert classes == []
        elif fault == "oom":
            assert trial.state == "infeasible"
            assert classes == ["infeasible"]
        elif fault == "diverged":
            assert trial.state == "diverged"
        elif fault == "timeout":
            assert trial.state == "done"
            assert classes == ["requeue"]
            assert trial.requeues == 1
            assert trial.failures == 0
        elif fault == "launch":
            assert trial.state == "done"
            assert classes == ["launch_failure"]
        elif fault == "train_error":
            assert trial.state == "done"
            assert classes == ["training_error"]
            assert trial.failures == 1
    assert len(seen - {None}) >= 4, seen
    assert state.stop_reason is not None
    status = _cli(tmp_path, "status", "run")
    assert status.returncode == 0
    assert "requeue" in status.stdout or "infeasible" in status.stdout


def test_controller_deadline_then_resume(tmp_path):
    _setup(tmp_path)
    reference = _cli(tmp_path, "run", "exp.yaml", "--site", "site.yaml", "--dir", "ref")
    assert reference.returncode == 0, reference.stderr
    stopped = _cli(
        tmp_path,
        "run",
        "exp.yaml",
        "--site",
        "site.yaml",
        "--dir",
        "run",
        "--stop-after-min",
        "0.01",
    )
    assert stopped.returncode == 0, stopped.stderr
    assert "spline-nas resume" in stopped.stdout
    events = read_journal(tmp_path / "run" / "journal.jsonl")
    assert events[-1]["event"] == "stop"
    assert events[-1]["reason"] == "allocation_ending"
    assert len(_measured(tmp_path / "run")) < len(_measured(tmp_path / "ref"))
    _wait_for_jobs(tmp_path / "run")
    resumed = _cli(tmp_path, "resume", "run")
    assert resumed.returncode == 0, resumed.stderr
    assert _measured(tmp_path / "run") == _measured(tmp_path / "ref")


def test_cli_bad_experiment_exits_2(tmp_path):
    _setup(tmp_path)
    (tmp_path / "bad.yaml").write_text(EXPERIMENT.replace("high: 100}", "high: '100'}", 1))
    completed = _cli(tmp_path, "run", "bad.yaml", "--site", "site.yaml", "--dir", "run")
    assert completed.returncode == 2
    assert "bad.yaml:4" in completed.stderr
    assert "remove the quotes" in completed.stderr
    assert not (tmp_path / "run").exists()


def test_cli_resume_missing_directory_exits_2(tmp_path):
    completed = _cli(tmp_path, "resume", "nowhere")
    assert completed.returncode == 2
    assert "experiment directory nowhere not found" in completed.stderr


def test_cli_run_refuses_existing_experiment(tmp_path):
    _setup(tmp_path)
    first = _cli(tmp_path, "run", "exp.yaml", "--site", "site.yaml", "--dir", "run")
    assert first.returncode == 0
    journal_before = (tmp_path / "run" / "journal.jsonl").read_bytes()
    second = _cli(tmp_path, "run", "exp.yaml", "--site", "site.yaml", "--dir", "run")
    assert second.returncode == 2
    assert "already holds an experiment" in second.stderr
    assert (tmp_path / "run" / "journal.jsonl").read_bytes() == journal_before


def test_experiment_search_rules_reach_search(tmp_path):
    from orchestrator.experiment import load_experiment

    text = EXPERIMENT.replace(
        "search: {seed: 3,",
        "search: {proposal_rule: argmax, stop_rule: epsilon, patience: 2, smoothing: 0.1,"
        " remeasure_best: true, weights: [1.0, 0.5], seed: 3,",
    )
    (tmp_path / "exp.yaml").write_text(text)
    arguments = load_experiment(tmp_path / "exp.yaml").search.search_arguments()
    assert arguments["proposal_rule"] == "argmax"
    assert arguments["stop_rule"] == "epsilon"
    assert arguments["patience"] == 2
    assert arguments["smoothing"] == 0.1
    assert arguments["remeasure_best"] is True
    assert arguments["weights"] == (1.0, 0.5)


@pytest.mark.parametrize(
    "setting,message",
    [
        ("proposal_rule: best", "'best' is not one of srbf, argmax"),
        ("stop_rule: soon", "'soon' is not one of stall, epsilon, none"),
        ("weights: [1.5]", "each weight must be a number in"),
        ("patience: 0", "must be at least 1"),
        ("remeasure_best: yes please", "expected true or false"),
    ],
)
def test_experiment_bad_search_rule(tmp_path, setting, message):
    from launch.config import ConfigError
    from orchestrator.experiment import load_experiment

    (tmp_path / "exp.yaml").write_text(
        EXPERIMENT.replace("search: {seed: 3,", f"search: {{{setting}, seed: 3,")
    )
    with pytest.raises(ConfigError, match=message):
        load_experiment(tmp_path / "exp.yaml")


def test_resume_keeps_relative_data_root(tmp_path):
    conf = tmp_path / "conf"
    (conf / "imgs").mkdir(parents=True)
    (conf / "exp.yaml").write_text(EXPERIMENT.replace("root: /tmp", "root: imgs"))
    _setup(tmp_path)
    crashed = _cli(
        tmp_path,
        "run",
        "conf/exp.yaml",
        "--site",
        "site.yaml",
        "--dir",
        "runs/E",
        env_extra={KILL_BEFORE_EVENT_ENV: "6"},
    )
    assert crashed.returncode == -signal.SIGKILL
    _wait_for_jobs(tmp_path / "runs" / "E")
    resumed = _cli(tmp_path, "resume", "runs/E")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    roots = {
        json.loads(p.read_text())["data"]["root"]
        for p in (tmp_path / "runs" / "E" / "trials").glob("*/spec.json")
    }
    assert roots == {str(conf / "imgs")}


def test_cancelled_trial_is_not_retried(tmp_path):
    _setup(tmp_path)
    site = (tmp_path / "site.yaml").read_text().replace("delay_s: 0.05", "delay_s: 10")
    (tmp_path / "site.yaml").write_text(site)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SUPPORT), str(REPO)]))
    controller = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "run",
            "exp.yaml",
            "--site",
            "site.yaml",
            "--dir",
            "run",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    journal = tmp_path / "run" / "journal.jsonl"
    marker = '"event":"submitted","trial_id":"t0000"'
    while not journal.exists() or marker not in journal.read_text():
        assert time.time() < deadline, "trial t0000 was never submitted"
        time.sleep(0.1)
    cancelled = _cli(tmp_path, "cancel", "run", "t0000")
    assert cancelled.returncode == 0, cancelled.stderr
    assert "cancelled job" in cancelled.stdout
    # The controller notices the ended job, records the cancellation and moves on.
    while '"state":"cancelled"' not in journal.read_text():
        assert time.time() < deadline + 60, "the cancellation was never recorded"
        time.sleep(0.2)
    time.sleep(1)
    controller.kill()
    controller.communicate(timeout=60)
    state = ExperimentState.from_events(read_journal(journal))
    assert state.trials["t0000"].state == "cancelled"
    assert len(state.trials["t0000"].attempts) == 1
    assert "t0001" in state.trials


def test_journal_content_error_names_line(tmp_path):
    _setup(tmp_path)
    assert _cli(tmp_path, "run", "exp.yaml", "--site", "site.yaml", "--dir", "run").returncode == 0
    path = tmp_path / "run" / "journal.jsonl"
    lines = path.read_text().splitlines()
    lines.insert(3, '{"event":"result","trial_id":"t9999","value":1}')
    path.write_text("\n".join(lines) + "\n")
    status = _cli(tmp_path, "status", "run")
    assert status.returncode == 2
    assert "journal line 4 ('result' event)" in status.stderr


def test_run_rejects_unknown_model_before_submitting(tmp_path):
    (tmp_path / "exp.yaml").write_text(
        EXPERIMENT.replace("model: {name: quadratic}", "model: {name: resnet99}")
    )
    completed = _cli(tmp_path, "run", "exp.yaml", "--site", "local", "--dir", "run")
    assert completed.returncode == 2
    assert "unknown model 'resnet99'" in completed.stderr
    assert not (tmp_path / "run").exists()
