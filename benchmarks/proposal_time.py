"""Measure the time and memory of one spline proposal (fit plus maximize).

For each dimension d and number of measured points N, a search over d float
parameters in [0, 1] records N measurements of a smooth test function: the 2d + 3
initial design, then scrambled Halton points. Then ``ask()`` is timed
``--repeats`` times, each with the next proposal index. The table reports the median
wall and CPU (process) time and the peak memory that tracemalloc sees during one
extra ``ask()``, plus the process's maximum resident set size at the end. CPU time is
less sensitive to other processes on a shared machine; the load average is printed.

Usage::

    python benchmarks/proposal_time.py [--repeats 7] [--dims 3 5 10 20]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
import tracemalloc

import numpy as np
from scipy.stats import qmc

from orchestrator.design import initial_design
from orchestrator.maximize import DEFAULT_LEVELS, DEFAULT_SAMPLES_PER_LEVEL, POLISH_ITERATIONS
from orchestrator.search import SplineSearch
from orchestrator.space import Objective, Parameter, SearchSpace


def _objective(x: np.ndarray) -> np.ndarray:
    return np.sin(3.0 * x).sum(axis=1) - np.sum((x - 0.4) ** 2, axis=1)


def _search(dim: int, count: int) -> SplineSearch:
    """Build a search over [0, 1]^dim with ``count`` measured points."""
    space = SearchSpace(
        [Parameter(f"x{k}", "float", 0.0, 1.0) for k in range(dim)], Objective("y")
    )
    design = initial_design(space)
    extra = qmc.Halton(dim, scramble=True, rng=np.random.default_rng(dim)).random(
        max(0, count - len(design))
    )
    points = np.vstack([design, extra])[:count]
    search = SplineSearch(
        space,
        seed=0,
        max_evaluations=None,
        complete_initial_design=False,
        proposal_index=count,
    )
    for point, value in zip(points, _objective(points), strict=True):
        search.tell(space.from_unit(point, ()), float(value))
    return search


def measure(dim: int, count: int, repeats: int) -> tuple[float, float, float]:
    """Return the median wall and CPU seconds per proposal and the peak traced MB."""
    search = _search(dim, count)
    wall, cpu = [], []
    for _ in range(repeats):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        (proposal,) = search.ask()
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.process_time() - start_cpu)
        if proposal.kind != "incremental":
            raise RuntimeError(f"expected a spline proposal for d={dim}, N={count}")
    tracemalloc.start()
    search.ask()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return statistics.median(wall), statistics.median(cpu), peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed proposals per case")
    parser.add_argument("--dims", type=int, nargs="+", default=[3, 5, 10, 20])
    args = parser.parse_args()

    print(
        f"maximizer: {DEFAULT_LEVELS} levels x {DEFAULT_SAMPLES_PER_LEVEL} samples, "
        f"L-BFGS-B polish of at most {POLISH_ITERATIONS} iterations; "
        f"median of {args.repeats} proposals"
    )
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print("| d | N | median wall time (s) | median CPU time (s) | peak traced memory (MB) |")
    print("|---|---|---|---|---|")
    for dim in args.dims:
        counts = sorted(n for n in {2 * dim + 3, 30, 50, 200} if n >= 2 * dim + 3)
        for count in counts:
            wall, cpu, peak_mb = measure(dim, count, args.repeats)
            print(f"| {dim} | {count} | {wall:.3f} | {cpu:.3f} | {peak_mb:.1f} |", flush=True)
    maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nprocess maximum resident set size: {maxrss_mb:.0f} MB")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
