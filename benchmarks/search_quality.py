"""Compare the spline search with random search and Optuna's samplers on test functions.

Each optimizer minimizes seeded instances of the functions in
:mod:`benchmarks.test_functions` (it maximizes the negated value, as the product
maximizes accuracy). Every run starts from the same 2d + 3 initial design of
:func:`orchestrator.design.initial_design`, enqueued as the first trials of an Optuna
study; the ``-default`` variants use their sampler's own start instead. A run goes on
to the largest budget, and the best value after each smaller budget is read off the
same run, so the spline search runs through ``ask``/``tell`` with its stop rule
ignored (a fixed budget).

The metric is the normalized simple regret, (best found - minimum) / (median of random
points - minimum), median over the instances of a function. Each optimizer's seconds
per proposal are the wall time of its ``ask`` after the initial design.

Usage::

    PYTHONPATH=. python benchmarks/search_quality.py [--instances 10] [--workers 2]
        [--results benchmarks/RESULTS.md]
"""

from __future__ import annotations

import os

# One thread per worker process; set before numpy loads its BLAS.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from multiprocessing import Pool  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.test_functions import FUNCTIONS, GRID, Instance, make_instance  # noqa: E402
from orchestrator.design import initial_design  # noqa: E402
from orchestrator.search import SplineSearch  # noqa: E402
from orchestrator.space import Objective, Parameter, SearchSpace  # noqa: E402

logger = logging.getLogger(__name__)

EXTRA_BUDGETS = (5, 10, 20)
HEADING = "# Search quality"
OPTIMIZERS = (
    "spline",
    "spline-argmax",
    "random",
    "tpe",
    "tpe-default",
    "gp",
    "gp-default",
)


@dataclass(frozen=True)
class Run:
    """Best value after each evaluation and the seconds of each model proposal."""

    optimizer: str
    function: str
    seed: int
    trace: list[float]
    seconds: list[float]
    cpu_seconds: list[float]


def _space(instance: Instance) -> SearchSpace:
    params = [
        Parameter(f"x{k}", "int", 0, GRID)
        if k in instance.base.integer_dims
        else Parameter(f"x{k}", "float", 0.0, 1.0)
        for k in range(instance.dim)
    ]
    return SearchSpace(params, Objective("y", "maximize"))


def _unit(instance: Instance, params: dict[str, Any]) -> np.ndarray:
    return np.array(
        [
            params[f"x{k}"] / GRID if k in instance.base.integer_dims else params[f"x{k}"]
            for k in range(instance.dim)
        ]
    )


def _evaluate(instance: Instance, params: dict[str, Any]) -> float:
    return float(instance(_unit(instance, params)[None, :])[0])


def _start(space: SearchSpace) -> list[dict[str, Any]]:
    return [space.from_unit(point, ()) for point in initial_design(space)]


def run_spline(
    instance: Instance, budget: int, **settings: Any
) -> tuple[list[float], list[tuple[float, float]]]:
    """Run the spline search for ``budget`` evaluations; return values and proposal times."""
    space = _space(instance)
    search = SplineSearch(
        space, seed=instance.seed, max_evaluations=budget, stop_rule="none", **settings
    )
    values, seconds = [], []
    while len(values) < budget:
        start, cpu = time.perf_counter(), time.process_time()
        (proposal,) = search.ask()
        elapsed = (time.perf_counter() - start, time.process_time() - cpu)
        if proposal.kind == "incremental":
            seconds.append(elapsed)
        value = _evaluate(instance, proposal.params)
        values.append(value)
        search.tell(proposal.params, -value, proposal.predicted)
    return values, seconds


def run_random(instance: Instance, budget: int) -> tuple[list[float], list[tuple[float, float]]]:
    """Measure the initial design, then uniform random legal points."""
    space = _space(instance)
    start = _start(space)
    rng = np.random.default_rng([instance.seed, 7])
    values = [_evaluate(instance, params) for params in start]
    points = instance.round_unit(rng.uniform(size=(budget - len(start), instance.dim)))
    values.extend(float(v) for v in instance(points))
    return values, []


def run_optuna(
    instance: Instance, budget: int, sampler_name: str, same_start: bool
) -> tuple[list[float], list[tuple[float, float]]]:
    """Run an Optuna sampler through ``ask``/``tell``; return values and proposal times."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = _space(instance)
    start = _start(space)
    startup = {"n_startup_trials": len(start)} if same_start else {}
    if sampler_name == "tpe":
        sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(
            seed=instance.seed, **startup
        )
    else:
        sampler = optuna.samplers.GPSampler(
            seed=instance.seed, deterministic_objective=True, **startup
        )
    study = optuna.create_study(direction="maximize", sampler=sampler)
    if same_start:
        for params in start:
            study.enqueue_trial(params)
    first_model_trial = len(start) if same_start else 10
    values, seconds = [], []
    for number in range(budget):
        begin, cpu = time.perf_counter(), time.process_time()
        trial = study.ask()
        params: dict[str, Any] = {}
        for param in space.numeric:
            if param.type == "int":
                params[param.name] = trial.suggest_int(param.name, 0, GRID)
            else:
                params[param.name] = trial.suggest_float(param.name, 0.0, 1.0)
        elapsed = (time.perf_counter() - begin, time.process_time() - cpu)
        if number >= first_model_trial:
            seconds.append(elapsed)
        value = _evaluate(instance, params)
        values.append(value)
        study.tell(trial, -value)
    return values, seconds


RUNNERS: dict[str, Callable[[Instance, int], tuple[list[float], list[tuple[float, float]]]]] = {
    "spline": lambda i, b: run_spline(i, b),
    "spline-argmax": lambda i, b: run_spline(i, b, proposal_rule="argmax"),
    "random": run_random,
    "tpe": lambda i, b: run_optuna(i, b, "tpe", True),
    "tpe-default": lambda i, b: run_optuna(i, b, "tpe", False),
    "gp": lambda i, b: run_optuna(i, b, "gp", True),
    "gp-default": lambda i, b: run_optuna(i, b, "gp", False),
}


def _task(job: tuple[str, str, int, Path | None]) -> Run:
    optimizer, function, seed, cache = job
    path = None if cache is None else cache / f"{optimizer}-{function}-{seed}.json"
    if path is not None and path.exists():
        return Run(**json.loads(path.read_text()))
    import torch

    torch.set_num_threads(1)
    base = next(f for f in FUNCTIONS if f.name == function)
    instance = make_instance(base, seed)
    budget = 2 * base.dim + 3 + max(EXTRA_BUDGETS)
    values, times = RUNNERS[optimizer](instance, budget)
    trace = [float(v) for v in np.minimum.accumulate(values)]
    run = Run(optimizer, function, seed, trace, [t[0] for t in times], [t[1] for t in times])
    if path is not None:
        path.write_text(json.dumps(run.__dict__))
    return run


def summarize(runs: list[Run], optimizers: list[str]) -> str:
    """Return the Markdown tables of median regret, mean rank and proposal time."""
    instances = {
        (f.name, seed): make_instance(f, seed)
        for f in FUNCTIONS
        for seed in {run.seed for run in runs}
    }
    lines: list[str] = []
    dims = {f.name: f.dim for f in FUNCTIONS}
    functions = [f.name for f in FUNCTIONS if any(r.function == f.name for r in runs)]
    for extra in EXTRA_BUDGETS:
        lines += [
            f"### Budget 2d + 3 + {extra}: median normalized regret (lower is better)",
            "",
            "| function | d | " + " | ".join(optimizers) + " |",
            "|---|---|" + "---|" * len(optimizers),
        ]
        ranks: dict[str, list[float]] = {name: [] for name in optimizers}
        for function in functions:
            budget = 2 * dims[function] + 3 + extra
            medians = []
            for name in optimizers:
                regrets = [
                    instances[(function, run.seed)].regret(run.trace[budget - 1])
                    for run in runs
                    if run.optimizer == name and run.function == function
                ]
                medians.append(statistics.median(regrets))
            order = _ranks(medians)
            for name, rank in zip(optimizers, order, strict=True):
                ranks[name].append(rank)
            best = min(medians)
            cells = [f"**{m:.3g}**" if m == best else f"{m:.3g}" for m in medians]
            lines.append(f"| {function} | {dims[function]} | " + " | ".join(cells) + " |")
        mean_ranks = [statistics.mean(ranks[name]) for name in optimizers]
        lines.append("| mean rank | | " + " | ".join(f"{r:.2f}" for r in mean_ranks) + " |")
        lines.append("")
    lines += [
        "### Seconds per proposal: median wall / median CPU time over the model proposals",
        "",
        "| d | " + " | ".join(optimizers) + " |",
        "|---|" + "---|" * len(optimizers),
    ]
    for dim in sorted(set(dims[f] for f in functions)):
        cells = []
        for name in optimizers:
            chosen = [r for r in runs if r.optimizer == name and dims[r.function] == dim]
            wall = [t for run in chosen for t in run.seconds]
            cpu = [t for run in chosen for t in run.cpu_seconds]
            cells.append(
                f"{statistics.median(wall):.3f} / {statistics.median(cpu):.3f}" if wall else "-"
            )
        lines.append(f"| {dim} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _ranks(values: list[float]) -> list[float]:
    """Return ranks starting at 1, ties sharing their mean rank."""
    array = np.array(values)
    return [float(np.sum(array < v) + (np.sum(array == v) + 1) / 2) for v in array]


def _setup(args: argparse.Namespace, seconds: float) -> str:
    import optuna
    import scipy
    import torch

    load = os.getloadavg()
    model = "unknown"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next(
            (line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line),
            model,
        )
    except OSError:
        pass
    return "\n".join(
        [
            f"- Date: {time.strftime('%a %b %d %H:%M:%S UTC %Y', time.gmtime())}",
            f"- Machine: {os.cpu_count()} cores ({model}), {platform.machine()}, "
            f"Python {platform.python_version()}, numpy {np.__version__}, scipy "
            f"{scipy.__version__}, optuna {optuna.__version__}, torch {torch.__version__}.",
            f"- Load average at the end: {load[0]:.1f} (1 min), shared with other processes.",
            f"- {args.instances} instances per function, {args.workers} worker processes, "
            f"{seconds / 60:.1f} minutes in all.",
            "- Command: `PYTHONPATH=. python benchmarks/search_quality.py "
            f"--instances {args.instances} --workers {args.workers}"
            + (f" --cache {args.cache}" if args.cache else "")
            + (f" --results {args.results}`" if args.results else "`"),
        ]
    )


def write_results(path: Path, section: str) -> None:
    """Replace the search-quality section of ``path``, or append it."""
    text = path.read_text() if path.exists() else ""
    index = text.find(HEADING)
    if index >= 0:
        text = text[:index].rstrip("\n") + "\n\n"
    elif text:
        text = text.rstrip("\n") + "\n\n"
    path.write_text(text + section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=10, help="seeded instances per function")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument(
        "--optimizers",
        nargs="+",
        default=[name for name in OPTIMIZERS if name != "gp-default"],
        choices=OPTIMIZERS,
        help="gp-default is left out by default: its proposals take seconds each",
    )
    parser.add_argument("--functions", nargs="+", default=[f.name for f in FUNCTIONS])
    parser.add_argument("--results", type=Path, help="Markdown file whose section to replace")
    parser.add_argument(
        "--cache",
        type=Path,
        help="folder that keeps the runs of the peers (not of the spline search) for reuse",
    )
    args = parser.parse_args()

    unknown = set(args.functions) - {f.name for f in FUNCTIONS}
    if unknown:
        parser.error(f"unknown functions {sorted(unknown)}; use {[f.name for f in FUNCTIONS]}")
    logging.basicConfig(level=logging.WARNING)

    if args.cache is not None:
        args.cache.mkdir(parents=True, exist_ok=True)
    jobs = [
        (optimizer, function, seed, None if optimizer.startswith("spline") else args.cache)
        for optimizer in args.optimizers
        for function in args.functions
        for seed in range(args.instances)
    ]
    begin = time.perf_counter()
    with Pool(args.workers) as pool:
        runs = pool.map(_task, jobs, chunksize=1)
    seconds = time.perf_counter() - begin

    tables = summarize(runs, args.optimizers)
    section = f"{HEADING}\n\n## Setup\n\n{_setup(args, seconds)}\n\n## Results\n\n{tables}"
    print(section)
    if args.results:
        write_results(args.results, section)


if __name__ == "__main__":
    main()
