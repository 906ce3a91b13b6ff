"""The long-running controller: propose, submit, poll, record, refit, stop.

Every decision is journaled (and fsynced) before it is acted on, and the whole state is
rebuilt from the journal on resume, so a controller killed at any point neither loses a
measured point nor pays for one twice:

* a trial is journaled before its spec is written and before it is submitted;
* ``submit_intent`` is journaled before the scheduler is called, and ``submitted`` with
  the job id right after. After a crash between the two, resume queries the backend for
  the jobs it started for that trial (``find_jobs``) before it resubmits.
* a result is journaled before it is added to the spline's measurements.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from launch.base import Backend, JobState, JobStatus, LaunchError, TransientLaunchError
from launch.results import InvalidResultError, list_result_files, read_result
from launch.site import SiteProfile
from orchestrator import state as st
from orchestrator.experiment import Experiment
from orchestrator.journal import Journal
from orchestrator.lease import Lease
from orchestrator.search import SplineSearch

logger = logging.getLogger(__name__)

# NOTE: backoff for launch failures (node failure, rendezvous timeout) doubles from this
# base up to the cap; training errors are retried at once.
_BACKOFF_BASE_S = 10.0
_BACKOFF_CAP_S = 600.0
# Launch failures are scheduler or node trouble, not the trial's fault, so they get a
# larger allowance than training errors before the trial is given up.
_MAX_LAUNCH_FAILURES = 5
# NOTE: the memory estimate covers what torch allocates, not the CUDA context and the
# NCCL buffers. This allowance for them is an estimate, not a measurement.
CUDA_CONTEXT_GB = 1.0
# File in a trial folder that 'spline-nas cancel' writes so the controller does not retry.
CANCEL_MARKER = "cancelled"
# NOTE: walltime expiries and preemptions resume from a checkpoint and are not failures.
# A trial that never gets past one (say, a checkpoint that cannot be written) must not be
# resubmitted forever, and 50 allocations is far beyond any planned chaining.
_MAX_REQUEUES = 50


class Controller:
    """Drive one experiment directory to completion with one backend."""

    def __init__(
        self,
        directory: Path,
        experiment: Experiment,
        site: SiteProfile,
        backend: Backend,
        deadline: float | None = None,
    ):
        self.directory = Path(directory).resolve()
        self.experiment = experiment
        self.site = site
        self.backend = backend
        self.deadline = deadline
        self.journal = Journal(self.directory / "journal.jsonl")
        self.lease = Lease(self.directory)
        self.state = st.ExperimentState()
        self.search = self._new_search()
        self.results_dir = self.directory / "results"
        self._finished_since: dict[str, float] = {}
        parameters = inspect.signature(backend.states).parameters
        self._states_take_submit_times = "submitted_after" in parameters
        self._partial_since: dict[str, float] = {}

    def _new_search(self) -> SplineSearch:
        return SplineSearch(self.experiment.space, **self.experiment.search.search_arguments())

    # -- journal helpers ---------------------------------------------------------------

    def _record(self, event: dict[str, Any]) -> None:
        """Append an event to the journal (fsynced), then apply it to the state."""
        self.journal.append(event)
        self.state.apply({"time": time.time(), **event})

    def restore(self, events: list[dict[str, Any]]) -> None:
        """Rebuild state and the search from journal events, in their original order."""
        self.state = st.ExperimentState.from_events(events)
        self.search = self._new_search()
        for trial_id, params, value in self.state.measurements:
            self.search.tell(params, value, predicted=self.state.trials[trial_id].predicted)
        self.search.proposal_index = self.state.proposals_made

    # -- trials ------------------------------------------------------------------------

    def _trial_dir(self, trial_id: str) -> Path:
        return self.directory / "trials" / trial_id

    def build_spec(self, trial: st.Trial) -> dict[str, Any]:
        """Build the plain-data spec a job receives."""
        experiment = self.experiment
        model_params = dict(experiment.model["fixed"])
        model_params.update(trial.params)
        trial_dir = self._trial_dir(trial.trial_id)
        spec = {
            "format": 1,
            "trial_id": trial.trial_id,
            "trial_dir": str(trial_dir),
            "result_path": str(self.results_dir / f"{trial.trial_id}.json"),
            "model": {"name": experiment.model["name"], "params": model_params},
            "data": {key: value for key, value in experiment.data.items() if key != "dataset"},
            "train": dict(experiment.training),
            "distributed": dict(experiment.distributed),
        }
        for section, values in trial.overrides.items():
            spec[section].update(values)
        return spec

    def validate_trial(self, trial: st.Trial) -> None:
        """Raise SpecValidationError if the jobs would reject this trial's spec.

        Custom backends may run models the job package does not know, so they are not
        checked.
        """
        if self.site.backend == "custom":
            return
        from launch.validate import validate_spec

        validate_spec(self.build_spec(trial))

    def validate_design(self) -> None:
        """Check the specs of every initial-design point before anything is submitted."""
        search = self._new_search()
        for proposal in search.ask(count=10_000):
            trial = st.Trial("check", proposal.params, proposal.kind, None, {}, time.time())
            self.validate_trial(trial)

    def _write_spec(self, spec: dict[str, Any]) -> None:
        trial_dir = Path(spec["trial_dir"])
        trial_dir.mkdir(parents=True, exist_ok=True)
        path = trial_dir / "spec.json"
        temporary = trial_dir / "spec.json.tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(spec, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)

    def _create_trials(self, count: int) -> None:
        pending = [trial.params for trial in self.state.active_trials()]
        avoid = [
            trial.params
            for trial in self.state.trials.values()
            if trial.state in (st.DIVERGED, st.INFEASIBLE, st.FAILED)
        ]
        proposals = self.search.ask(count=count, pending=pending + avoid)
        for proposal in proposals:
            trial_id = self.state.next_trial_id()
            # proposals_made lets a resumed search continue the same random sequence.
            self._record(
                {
                    "event": "trial",
                    "trial_id": trial_id,
                    "params": proposal.params,
                    "kind": proposal.kind,
                    "predicted": proposal.predicted,
                    "on_boundary": proposal.on_boundary,
                    "proposals_made": self.search.proposal_index,
                }
            )
            predicted = "-" if proposal.predicted is None else f"{proposal.predicted:.3f}"
            logger.info(
                "trial %s (%s): params %s, predicted %s",
                trial_id,
                proposal.kind,
                proposal.params,
                predicted,
            )
            if proposal.on_boundary:
                logger.info(
                    "trial %s sits on the box boundary in %s; the range may be too narrow",
                    trial_id,
                    proposal.on_boundary,
                )

    def _fits_memory(self, trial: st.Trial, spec: dict[str, Any]) -> bool:
        """Record the trial infeasible, unsubmitted, if its memory estimate exceeds the GPU's."""
        limit = self.site.gpu_memory_gb
        if limit is None or trial.attempts:
            return True
        from launch.memory import estimate_peak_memory_gb

        try:
            needed = estimate_peak_memory_gb(spec) + CUDA_CONTEXT_GB
        except (ValueError, KeyError, OSError) as exc:
            logger.warning(
                "trial %s: no memory estimate (%s); submitting it unchecked", trial.trial_id, exc
            )
            return True
        if needed <= limit:
            return True
        reason = (
            f"estimated peak memory {needed:.1f} GB per rank exceeds the site's "
            f"gpu_memory_gb of {limit:.1f} GB; not submitted"
        )
        self._record(
            {
                "event": "trial_final",
                "trial_id": trial.trial_id,
                "state": st.INFEASIBLE,
                "reason": reason,
                "estimate_gb": needed,
            }
        )
        logger.warning("trial %s is infeasible: %s", trial.trial_id, reason)
        return False

    def _submit(self, trial: st.Trial) -> None:
        spec = self.build_spec(trial)
        if not self._fits_memory(trial, spec):
            return
        self._write_spec(spec)
        attempt = len(trial.attempts) + 1
        self._record({"event": "submit_intent", "trial_id": trial.trial_id, "attempt": attempt})
        try:
            job_id = self.backend.submit(spec, exclude_nodes=tuple(trial.exclude_nodes))
        except TransientLaunchError as exc:
            # The scheduler timed out, which is not the trial's fault, so retry next round.
            logger.warning("submission of %s timed out, will retry: %s", trial.trial_id, exc)
            self._end_attempt(
                trial, JobStatus(JobState.UNKNOWN, reason=str(exc)), "scheduler_timeout"
            )
            return
        except LaunchError as exc:
            logger.warning("submission of %s failed: %s", trial.trial_id, exc)
            self._end_attempt(trial, JobStatus(JobState.FAILED, reason=str(exc)), "launch_failure")
            return
        self._record(
            {
                "event": "submitted",
                "trial_id": trial.trial_id,
                "attempt": attempt,
                "job_id": job_id,
            }
        )
        logger.info("trial %s submitted as job %s (attempt %d)", trial.trial_id, job_id, attempt)

    def _recover_submissions(self) -> None:
        """Repair trials whose submission was interrupted by a crash."""
        for trial in self.state.active_trials(search_only=False):
            spec = self.build_spec(trial)
            if trial.attempts and trial.attempts[-1].job_id is None:
                found = self._find_jobs(spec)
                if found:
                    job_id = found[-1]
                    logger.warning(
                        "trial %s: found job %s submitted before the crash", trial.trial_id, job_id
                    )
                    self._record(
                        {
                            "event": "submitted",
                            "trial_id": trial.trial_id,
                            "attempt": trial.attempts[-1].number,
                            "job_id": job_id,
                        }
                    )
                else:
                    # Never reached the scheduler: forget the attempt, resubmit.
                    trial.attempts.pop()
            if trial.job_id is not None and hasattr(self.backend, "attach"):
                self.backend.attach(trial.job_id, spec)

    def _find_jobs(self, spec: dict[str, Any]) -> list[str]:
        finder = getattr(self.backend, "find_jobs", None)
        if finder is None:
            return []
        known = {a.job_id for t in self.state.trials.values() for a in t.attempts}
        return [job for job in finder(spec) if job not in known]

    # -- polling -----------------------------------------------------------------------

    def poll(self) -> None:
        """Collect result files and scheduler states for all submitted trials."""
        submitted = [
            t for t in self.state.active_trials(search_only=False) if t.state == st.SUBMITTED
        ]
        if not submitted:
            return
        names = list_result_files(self.results_dir)
        waiting = []
        for trial in submitted:
            if f"{trial.trial_id}.json" in names and self._collect(trial):
                continue
            waiting.append(trial)
        if not waiting:
            return
        job_ids = [t.job_id for t in waiting if t.job_id]
        try:
            if self._states_take_submit_times:
                # Lets the backend ignore accounting rows of an older job with a reused id.
                submitted = {
                    t.job_id: t.attempts[-1].submitted_at
                    for t in waiting
                    if t.job_id and t.attempts[-1].submitted_at is not None
                }
                statuses = self.backend.states(job_ids, submitted_after=submitted)
            else:
                statuses = self.backend.states(job_ids)
        except TransientLaunchError as exc:
            logger.warning("scheduler query timed out, will retry next round: %s", exc)
            return
        for trial in waiting:
            status = statuses.get(trial.job_id, JobStatus(JobState.UNKNOWN))
            self._handle_status(trial, status)

    def _collect(self, trial: st.Trial) -> bool:
        """Read a trial's result file; return True when the trial is settled by it."""
        path = self.results_dir / f"{trial.trial_id}.json"
        try:
            result = read_result(path, trial.trial_id)
        except InvalidResultError as exc:
            logger.error("rejected result file of %s: %s", trial.trial_id, exc)
            quarantine = path.with_name(f"{path.name}.rejected.{int(time.time())}")
            os.replace(path, quarantine)
            return False
        if result is None:
            first = self._partial_since.setdefault(trial.trial_id, time.time())
            if time.time() - first > self.site.result_grace_s:
                logger.error(
                    "result file of %s stayed incomplete for %.0f s",
                    trial.trial_id,
                    self.site.result_grace_s,
                )
                os.replace(path, path.with_name(f"{path.name}.partial.{int(time.time())}"))
            return False
        objective = self.experiment.space.objective.name
        value = result.metric(objective) if result.status == "ok" else None
        summary = {
            key: result.raw.get(key)
            for key in (
                "top1",
                "top5",
                "num_val_images",
                "epochs",
                "wall_s",
                "gpu_hours",
                "num_params",
                "world_size",
                "device",
                "cpu_core_hours",
                "macs",
                "amp",
                "train_images",
                "init_checkpoint",
            )
            if key in result.raw
        }
        self._record(
            {
                "event": "result",
                "trial_id": trial.trial_id,
                "job_id": trial.job_id,
                "status": result.status,
                "value": value,
                "result": summary,
            }
        )
        if value is not None and trial.is_search_point:
            self.search.tell(trial.params, value, predicted=trial.predicted)
            self._log_measurement(trial, value)
        elif value is not None:
            logger.info("%s run %s measured %.3f", trial.kind, trial.trial_id, value)
        else:
            logger.warning("trial %s diverged; recorded as a failed measurement", trial.trial_id)
        return True

    def _log_measurement(self, trial: st.Trial, value: float) -> None:
        best = self.search.best()
        predicted = "-" if trial.predicted is None else f"{trial.predicted:.3f}"
        logger.info(
            "trial %s measured %.3f (predicted %s); best so far %.3f at %s",
            trial.trial_id,
            value,
            predicted,
            best[1],
            best[0],
        )

    def _handle_status(self, trial: st.Trial, status: JobStatus) -> None:
        if (
            not status.state.is_active
            and (self._trial_dir(trial.trial_id) / CANCEL_MARKER).exists()
        ):
            self._record(
                {
                    "event": "trial_final",
                    "trial_id": trial.trial_id,
                    "state": st.CANCELLED,
                    "reason": "cancelled with 'spline-nas cancel'",
                }
            )
            logger.warning("trial %s was cancelled; it will not be retried", trial.trial_id)
            return
        if status.state.is_active:
            self._finished_since.pop(trial.trial_id, None)
            return
        # The job has ended but no result file is visible yet: on a parallel file system
        # the rename may take a while to appear on this node, so wait a grace period.
        first = self._finished_since.setdefault(trial.trial_id, time.time())
        if status.state == JobState.COMPLETED and time.time() - first < self.site.result_grace_s:
            return
        if status.state == JobState.UNKNOWN and time.time() - first < self.site.result_grace_s:
            return
        self._finished_since.pop(trial.trial_id, None)
        if status.state == JobState.COMPLETED:
            path = self.results_dir / f"{trial.trial_id}.json"
            status = JobStatus(
                JobState.FAILED,
                reason=f"job completed but its result file {path} did not appear within "
                f"{self.site.result_grace_s:.0f} s",
                exit_code=status.exit_code,
            )
        self._end_attempt(trial, status, _classify(status))

    def _end_attempt(self, trial: st.Trial, status: JobStatus, classification: str) -> None:
        not_before = 0.0
        exclude = None
        if classification == "launch_failure":
            delay = min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2**trial.launch_failures)
            not_before = time.time() + delay
            exclude = status.node
        self._record(
            {
                "event": "attempt_end",
                "trial_id": trial.trial_id,
                "job_id": trial.job_id,
                "state": status.state.value,
                "reason": status.reason,
                "classification": classification,
                "not_before": not_before,
                "exclude_node": exclude,
            }
        )
        logger.warning(
            "trial %s job %s ended %s (%s): %s",
            trial.trial_id,
            trial.job_id,
            status.state.value,
            classification,
            status.reason or "no reason given",
        )
        final = None
        if classification == "infeasible":
            final = (st.INFEASIBLE, f"out of memory: {status.reason}")
        elif trial.failures > self.site.max_retries:
            final = (st.FAILED, f"training failed {trial.failures} times; last: {status.reason}")
        elif trial.requeues > _MAX_REQUEUES:
            final = (st.FAILED, f"requeued {trial.requeues} times without finishing")
        elif trial.launch_failures > _MAX_LAUNCH_FAILURES:
            final = (st.FAILED, f"launch failed {trial.launch_failures} times: {status.reason}")
        if final is not None:
            self._record(
                {
                    "event": "trial_final",
                    "trial_id": trial.trial_id,
                    "state": final[0],
                    "reason": final[1],
                }
            )
            logger.error("trial %s is %s: %s", trial.trial_id, final[0], final[1])

    # -- stopping ----------------------------------------------------------------------

    def _stop_reason(self) -> str | None:
        reason = self.search.stop_reason()
        if reason:
            return reason
        settings = self.experiment.search
        if settings.max_gpu_hours is not None and self.state.gpu_hours() >= settings.max_gpu_hours:
            return "max_gpu_hours"
        if settings.max_wall_hours is not None and self.state.started_at is not None:
            if time.time() - self.state.started_at >= settings.max_wall_hours * 3600:
                return "max_wall_hours"
        return None

    # -- main loop ---------------------------------------------------------------------

    def start(
        self,
        events: list[dict[str, Any]] | None,
        resume_event: str = "resume",
        header: dict[str, Any] | None = None,
        lease_held: bool = False,
    ) -> None:
        """Acquire the lease and create or resume the journal.

        A "resume" event clears the recorded stop reason, so that the search loop
        re-evaluates its stop rules; the final run records "final_start" instead.
        """
        if not lease_held:
            self.lease.acquire()
        if events is None:
            self.journal.create(
                {
                    "experiment": self.experiment.name,
                    "site": self.site.name,
                    "seed": self.experiment.search.seed,
                    **(header or {}),
                }
            )
        else:
            self.journal.repair_tail()
            self.restore(events)
            self._record({"event": resume_event, "site": self.site.name})
            self._recover_submissions()
        self.results_dir.mkdir(parents=True, exist_ok=True)

    def run(self) -> str:
        """Run until a stop rule fires and all submitted trials have ended; return the reason."""
        try:
            while True:
                self.lease.heartbeat()
                self.poll()
                if self.deadline is not None and time.time() >= self.deadline:
                    self._record({"event": "stop", "reason": "allocation_ending"})
                    logger.warning(
                        "allocation ends soon: state saved, submitted jobs keep running; "
                        "continue with: spline-nas resume %s",
                        self.directory,
                    )
                    return "allocation_ending"
                reason = self.state.stop_reason or self._stop_reason()
                active = self.state.active_trials()
                if reason and self.state.stop_reason is None:
                    self._record({"event": "stop", "reason": reason})
                    logger.info("stopping: %s", reason)
                if reason and not any(t.state == st.SUBMITTED for t in active):
                    return reason
                if not reason:
                    self._fill_slots()
                    if not self.state.active_trials():
                        reason = "no_proposal"
                        self._record({"event": "stop", "reason": reason})
                        return reason
                time.sleep(self.site.poll_interval_s)
        finally:
            self.close()

    def drive(self, trials: list[st.Trial]) -> None:
        """Submit and poll ``trials`` (outside the search loop) until none is active."""
        trial_ids = [trial.trial_id for trial in trials]
        while True:
            self.lease.heartbeat()
            self.poll()
            pending = [self.state.trials[i] for i in trial_ids if self.state.trials[i].active]
            if not pending:
                return
            now = time.time()
            for trial in pending:
                if trial.state == st.CREATED and trial.not_before <= now:
                    self._submit(trial)
            time.sleep(self.site.poll_interval_s)

    def close(self) -> None:
        """Close the journal and release the lease."""
        self.journal.close()
        self.lease.release()

    def _fill_slots(self) -> None:
        active = self.state.active_trials()
        free = self.site.max_concurrent_trials - sum(t.state == st.SUBMITTED for t in active)
        budget_left = (
            self.experiment.search.max_evaluations
            - len([t for t in self.state.trials.values() if t.state in (st.DONE, st.DIVERGED)])
            - sum(1 for t in active)
        )
        unsubmitted = [t for t in active if t.state == st.CREATED]
        if free > len(unsubmitted) and budget_left > 0:
            self._create_trials(min(free - len(unsubmitted), budget_left))
        now = time.time()
        for trial in self.state.active_trials():
            if free <= 0:
                break
            if trial.state == st.CREATED and trial.not_before <= now:
                self._submit(trial)
                free -= 1


def _classify(status: JobStatus) -> str:
    """Map a job that ended without a result to how the controller reacts."""
    state = status.state
    if state in (JobState.TIMEOUT, JobState.PREEMPTED):
        return "requeue"
    if state == JobState.OUT_OF_MEMORY:
        return "infeasible"
    if state in (JobState.NODE_FAIL, JobState.UNKNOWN):
        return "launch_failure"
    text = status.reason.lower()
    if "rendezvous" in text or "launch failure" in text:
        return "launch_failure"
    if state == JobState.CANCELLED:
        return "launch_failure"
    return "training_error"
