"""The job process of the function backend: evaluate, write the result, record the exit."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

EXIT_CODES = {"none": 0, "launch": 11, "train_error": 12, "oom": 13, "timeout": 14}


def evaluate(objective: str, params: dict[str, float]) -> float:
    """Analytic stand-ins for accuracy, with maxima inside the box."""
    values = [float(v) for k, v in sorted(params.items()) if isinstance(v, (int, float))]
    if objective == "quadratic":
        # Maximum 90 at 0.6 of each parameter's value range [0, 100].
        return 90.0 - sum(((v - 60.0) / 50.0) ** 2 for v in values) * 10.0
    if objective == "ripple":
        return 80.0 + 5 * math.sin(values[0] / 20.0) - sum(((v - 50) / 60) ** 2 for v in values)
    raise ValueError(f"unknown objective {objective!r}")


def write_atomic(path: Path, data: dict) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def main() -> int:
    spec_path, objective, delay, fault = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    spec = json.loads(Path(spec_path).read_text())
    time.sleep(delay)
    code = EXIT_CODES.get(fault, 0)
    if fault in ("none", "diverged"):
        top1 = 0.0 if fault == "diverged" else evaluate(objective, spec["model"]["params"])
        result_path = Path(spec["result_path"])
        result_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(
            result_path,
            {
                "format": 1,
                "trial_id": spec["trial_id"],
                "status": "diverged" if fault == "diverged" else "ok",
                "top1": top1,
                "top5": min(100.0, top1 + 5),
                "num_val_images": 100,
                "epochs": 1,
                "wall_s": delay,
                "gpu_hours": 0.01,
                "num_params": 1000,
                "world_size": 1,
                "device": "cpu",
                "spec": spec,
            },
        )
    jobs_dir = Path(spec["trial_dir"]) / "jobs"
    write_atomic(jobs_dir / f"{os.getpid()}.exit", code)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
