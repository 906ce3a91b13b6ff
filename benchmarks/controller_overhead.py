"""Controller overhead: one poll round over many outstanding trials, and a journal load.

Usage: python benchmarks/controller_overhead.py [--trials 1000] [--events 10000]

The backend here reports every job as running without calling a scheduler, so the
figures are the controller's own cost: one listing of the results folder, result-file
parsing for the trials that finished, journal writes, and state bookkeeping.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from launch.base import Backend, JobState, JobStatus
from launch.site import SiteProfile
from orchestrator import state as st
from orchestrator.controller import Controller
from orchestrator.experiment import experiment_from_text
from orchestrator.journal import Journal, read_journal

EXPERIMENT = """\
name: overhead
space:
  parameters:
    c1: {type: int, low: 32, high: 150}
    g1: {type: int, low: 32, high: 300}
    g2: {type: int, low: 32, high: 600}
    g3: {type: int, low: 32, high: 1200}
    g4: {type: int, low: 32, high: 2400}
  objective: {name: top1, direction: maximize}
model: {name: resnet18}
data: {dataset: imagefolder, root: /tmp}
search: {max_evaluations: 100000}
"""


class RunningBackend(Backend):
    """Report every job as running; count the scheduler queries."""

    def __init__(self) -> None:
        self.queries = 0

    def submit(self, spec: dict[str, Any], exclude_nodes: tuple[str, ...] = ()) -> str:
        raise NotImplementedError

    def states(self, job_ids: list[str]) -> dict[str, JobStatus]:
        self.queries += 1
        return {job_id: JobStatus(JobState.RUNNING) for job_id in job_ids}

    def cancel(self, job_id: str) -> None:
        pass

    def render(self, spec: dict[str, Any]) -> str:
        return ""


def _events_for(trial_index: int, params: dict[str, int]) -> list[dict[str, Any]]:
    trial_id = f"t{trial_index:05d}"
    return [
        {
            "event": "trial",
            "trial_id": trial_id,
            "params": params,
            "kind": "incremental",
            "predicted": 50.0,
            "on_boundary": {},
            "proposals_made": trial_index + 1,
        },
        {"event": "submit_intent", "trial_id": trial_id, "attempt": 1},
        {
            "event": "submitted",
            "trial_id": trial_id,
            "attempt": 1,
            "job_id": str(10000 + trial_index),
        },
    ]


def _params(index: int) -> dict[str, int]:
    return {
        "c1": 32 + index % 118,
        "g1": 32 + index % 268,
        "g2": 32 + (7 * index) % 568,
        "g3": 32 + (13 * index) % 1168,
        "g4": 32 + (31 * index) % 2368,
    }


def bench_poll(trials: int, finished: int, repeats: int) -> list[float]:
    """Time Controller.poll() with ``trials`` submitted trials, ``finished`` with results."""
    timings = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as scratch:
            directory = Path(scratch)
            experiment = experiment_from_text(EXPERIMENT, "overhead.yaml", directory)
            site = SiteProfile("bench", "bench.yaml", "custom", None, max_concurrent_trials=trials)
            backend = RunningBackend()
            controller = Controller(directory, experiment, site, backend)
            controller.journal.create({"experiment": "overhead"})
            controller.results_dir.mkdir()
            for index in range(trials):
                for event in _events_for(index, _params(index)):
                    controller.state.apply({"time": time.time(), **event})
            for index in range(finished):
                trial_id = f"t{index:05d}"
                (controller.results_dir / f"{trial_id}.json").write_text(
                    json.dumps(
                        {
                            "format": 1,
                            "trial_id": trial_id,
                            "status": "ok",
                            "top1": 50.0 + index % 7,
                            "top5": 80.0,
                            "num_val_images": 1000,
                            "epochs": 60,
                            "wall_s": 3600.0,
                            "gpu_hours": 2500.0,
                            "num_params": 11_000_000,
                            "world_size": 64,
                        }
                    )
                )
            start = time.perf_counter()
            controller.poll()
            timings.append(time.perf_counter() - start)
            assert backend.queries == 1
            controller.journal.close()
    return timings


def bench_journal(events: int, repeats: int) -> list[float]:
    """Time reading a journal of ``events`` lines and rebuilding state and search."""
    timings = []
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        journal = Journal(directory / "journal.jsonl")
        journal.create({"experiment": "overhead"})
        written, index = 1, 0
        while written < events:
            trial_events = _events_for(index, _params(index))
            trial_events.append(
                {
                    "event": "result",
                    "trial_id": f"t{index:05d}",
                    "job_id": str(10000 + index),
                    "status": "ok",
                    "value": 50.0 + (index % 17) * 0.5,
                    "result": {"top1": 50.0, "gpu_hours": 2500.0},
                }
            )
            for event in trial_events:
                journal.append(event)
            written += len(trial_events)
            index += 1
        journal.close()
        experiment = experiment_from_text(EXPERIMENT, "overhead.yaml", directory)
        site = SiteProfile("bench", "bench.yaml", "custom", None)
        for _ in range(repeats):
            start = time.perf_counter()
            loaded = read_journal(directory / "journal.jsonl")
            controller = Controller(directory, experiment, site, RunningBackend())
            controller.restore(loaded)
            timings.append(time.perf_counter() - start)
            assert len(controller.state.measurements) == index
            assert all(t.state == st.DONE for t in controller.state.trials.values())
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--trials", type=int, default=1000, help="outstanding trials (default 1000)"
    )
    parser.add_argument(
        "--finished",
        type=int,
        default=100,
        help="of those, trials whose result file is waiting (default 100)",
    )
    parser.add_argument("--events", type=int, default=10000, help="journal lines (default 10000)")
    parser.add_argument("--repeats", type=int, default=5, help="repetitions (default 5)")
    args = parser.parse_args()
    poll = bench_poll(args.trials, args.finished, args.repeats)
    load = bench_journal(args.events, args.repeats)
    print(
        f"poll round, {args.trials} outstanding trials ({args.finished} with results): "
        f"median {statistics.median(poll):.3f} s, max {max(poll):.3f} s"
    )
    print(
        f"journal load and state rebuild, {args.events} lines: "
        f"median {statistics.median(load):.3f} s, max {max(load):.3f} s"
    )


if __name__ == "__main__":
    main()
