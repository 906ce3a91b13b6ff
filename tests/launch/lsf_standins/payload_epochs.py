"""Torch-free payload for the walltime tests, so rank startup takes well under a second.

Rank 0 runs ``train.epochs`` epochs of ``train.epoch_s`` seconds and after each one
replaces TRIAL_DIR/checkpoint.json, whose history lists [JOB_ID, EPOCH] pairs. On SIGUSR1,
SIGUSR2 or SIGTERM it stops after the current epoch and exits with 75 (EX_TEMPFAIL, as
jobs.train does); at the end it writes the result file. Other ranks wait for a signal or
the result. Set PAYLOAD_IGNORE_WARNING=1 to ignore SIGUSR1, so only the run limit stops it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

stop_requested = False


def request_stop(signum: int, frame: object) -> None:
    global stop_requested
    stop_requested = True


def main() -> int:
    for signum in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM):
        signal.signal(signum, request_stop)
    if os.environ.get("PAYLOAD_IGNORE_WARNING") == "1":
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    spec = json.loads(Path(sys.argv[1]).read_text())
    result_path = Path(spec["result_path"])
    if os.environ["OMPI_COMM_WORLD_RANK"] != "0":
        while not stop_requested and not result_path.exists():
            time.sleep(0.05)
        return 0 if result_path.exists() else 75
    checkpoint = Path(spec["trial_dir"]) / "checkpoint.json"
    saved = json.loads(checkpoint.read_text()) if checkpoint.exists() else {"history": []}
    history = saved["history"]
    for epoch in range(len(history), spec["train"]["epochs"]):
        time.sleep(spec["train"]["epoch_s"])
        history.append([os.environ["LSB_JOBID"], epoch + 1])
        checkpoint.with_suffix(".tmp").write_text(json.dumps({"history": history}))
        os.replace(checkpoint.with_suffix(".tmp"), checkpoint)
        if stop_requested:
            return 75
    result = {"trial_id": spec["trial_id"], "status": "ok", "epochs": len(history),
              "history": history}  # fmt: skip
    result_path.with_suffix(".tmp").write_text(json.dumps(result))
    os.replace(result_path.with_suffix(".tmp"), result_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
