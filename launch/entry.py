"""The callable that submitit pickles for every trial: it holds only the spec path."""

from __future__ import annotations

from typing import Any

import submitit


class TrialEntry(submitit.helpers.Checkpointable):
    """Run ``jobs.train.run_trial`` on one rank for the trial spec at ``spec_path``."""

    def __init__(self, spec_path: str):
        self.spec_path = str(spec_path)

    def __call__(self) -> dict[str, Any]:
        from jobs.train import run_trial

        return run_trial(self.spec_path)
