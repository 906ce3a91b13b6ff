"""Experiment state rebuilt from journal events: trials, their attempts and measurements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.journal import JournalError

# Trial states. "created" and "submitted" are active; the rest are final.
CREATED = "created"
SUBMITTED = "submitted"
DONE = "done"
FAILED = "failed"
DIVERGED = "diverged"
INFEASIBLE = "infeasible"
CANCELLED = "cancelled"
FINAL_STATES = (DONE, FAILED, DIVERGED, INFEASIBLE, CANCELLED)


@dataclass
class Attempt:
    """One submission of a trial to the scheduler."""

    number: int
    job_id: str | None = None
    submitted_at: float | None = None
    state: str = "submitting"
    reason: str = ""
    classification: str = ""


@dataclass
class Trial:
    """One proposed architecture and everything that happened to it."""

    trial_id: str
    params: dict[str, Any]
    kind: str
    predicted: float | None
    on_boundary: dict[str, str]
    created_at: float
    state: str = CREATED
    attempts: list[Attempt] = field(default_factory=list)
    failures: int = 0
    launch_failures: int = 0
    requeues: int = 0
    value: float | None = None
    result: dict[str, Any] | None = None
    reason: str = ""
    not_before: float = 0.0
    exclude_nodes: list[str] = field(default_factory=list)
    # Spec changes for this trial only, e.g. the final run's full data share and epochs.
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    scale: float | None = None

    @property
    def is_search_point(self) -> bool:
        """Whether the trial belongs to the search (not the final training after it)."""
        return self.kind in ("initial", "incremental", "repeat")

    @property
    def active(self) -> bool:
        return self.state in (CREATED, SUBMITTED)

    @property
    def job_id(self) -> str | None:
        return self.attempts[-1].job_id if self.attempts else None

    @property
    def gpu_hours(self) -> float:
        return float(self.result.get("gpu_hours", 0.0)) if self.result else 0.0


@dataclass
class ExperimentState:
    """The controller's view of an experiment, rebuilt by :meth:`apply` over journal events."""

    header: dict[str, Any] = field(default_factory=dict)
    trials: dict[str, Trial] = field(default_factory=dict)
    measurements: list[tuple[str, dict[str, Any], float]] = field(default_factory=list)
    proposals_made: int = 0
    stop_reason: str | None = None
    started_at: float | None = None
    resumes: int = 0

    @classmethod
    def from_events(cls, events: list[dict[str, Any]]) -> ExperimentState:
        state = cls()
        for number, event in enumerate(events, start=1):
            try:
                state.apply(event)
            except (KeyError, TypeError, ValueError, IndexError) as exc:
                raise JournalError(
                    f"journal line {number} ({event.get('event')!r} event) does not fit the "
                    f"events before it: {type(exc).__name__}: {exc}; restore the journal "
                    "from a backup or remove that line"
                ) from None
        return state

    def apply(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(event)

    def _on_header(self, event: dict[str, Any]) -> None:
        self.header = event
        self.started_at = event.get("time")

    def _on_resume(self, event: dict[str, Any]) -> None:
        self.resumes += 1
        self.stop_reason = None

    def _on_trial(self, event: dict[str, Any]) -> None:
        self.trials[event["trial_id"]] = Trial(
            trial_id=event["trial_id"],
            params=event["params"],
            kind=event["kind"],
            predicted=event.get("predicted"),
            on_boundary=event.get("on_boundary", {}),
            created_at=event["time"],
            overrides=event.get("overrides", {}),
            scale=event.get("scale"),
        )
        self.proposals_made = max(self.proposals_made, int(event.get("proposals_made", 0)))

    def _on_submit_intent(self, event: dict[str, Any]) -> None:
        trial = self.trials[event["trial_id"]]
        trial.attempts.append(Attempt(number=event["attempt"]))

    def _on_submitted(self, event: dict[str, Any]) -> None:
        trial = self.trials[event["trial_id"]]
        attempt = trial.attempts[-1]
        attempt.job_id = event["job_id"]
        attempt.submitted_at = event["time"]
        attempt.state = "submitted"
        trial.state = SUBMITTED

    def _on_attempt_end(self, event: dict[str, Any]) -> None:
        trial = self.trials[event["trial_id"]]
        attempt = trial.attempts[-1]
        attempt.state = event["state"]
        attempt.reason = event.get("reason", "")
        attempt.classification = event["classification"]
        classification = event["classification"]
        if classification == "requeue":
            trial.requeues += 1
        elif classification == "launch_failure":
            trial.launch_failures += 1
        elif classification == "training_error":
            trial.failures += 1
        if event.get("exclude_node"):
            trial.exclude_nodes.append(event["exclude_node"])
        trial.not_before = float(event.get("not_before", 0.0))
        trial.state = CREATED

    def _on_result(self, event: dict[str, Any]) -> None:
        trial = self.trials[event["trial_id"]]
        trial.result = event["result"]
        if event["status"] == "ok":
            trial.state = DONE
            trial.value = event["value"]
            if trial.is_search_point:
                self.measurements.append((trial.trial_id, trial.params, event["value"]))
        else:
            trial.state = DIVERGED
            trial.reason = "training diverged (loss became NaN or infinite)"
        if trial.attempts:
            trial.attempts[-1].state = "completed"

    def _on_trial_final(self, event: dict[str, Any]) -> None:
        trial = self.trials[event["trial_id"]]
        trial.state = event["state"]
        trial.reason = event.get("reason", "")

    def _on_stop(self, event: dict[str, Any]) -> None:
        self.stop_reason = event["reason"]

    # -- queries --------------------------------------------------------------

    def active_trials(self, search_only: bool = True) -> list[Trial]:
        """Return trials still created or submitted; by default only search points."""
        return [
            trial
            for trial in self.trials.values()
            if trial.active and (trial.is_search_point or not search_only)
        ]

    def final_trials(self) -> list[Trial]:
        return [trial for trial in self.trials.values() if not trial.is_search_point]

    def gpu_hours(self) -> float:
        return sum(trial.gpu_hours for trial in self.trials.values())

    def next_trial_id(self, prefix: str = "t") -> str:
        count = sum(trial_id.startswith(prefix) for trial_id in self.trials)
        return f"{prefix}{count:04d}"
