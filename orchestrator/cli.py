"""The ``spline-nas`` command line: run, resume, status, cancel, propose, report."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from launch.allocation import slurm_allocation_end
from launch.base import LaunchError
from launch.config import ConfigError
from launch.site import load_site, make_backend
from launch.validate import SpecValidationError
from orchestrator import final, propose, report
from orchestrator import state as st
from orchestrator.controller import CANCEL_MARKER, Controller
from orchestrator.experiment import Experiment, experiment_from_text, load_experiment
from orchestrator.journal import JournalError, read_journal
from orchestrator.lease import LeaseHeldError
from orchestrator.report_table import format_final, format_status, format_summary

logger = logging.getLogger("orchestrator")


class UsageError(Exception):
    """A command-line value is invalid; the message names the value and the fix."""


def _setup_logging(verbose: bool, log_file: Path | None = None) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    formatter = logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%Y-%m-%d %H:%M:%S"
    )
    root = logging.getLogger()
    root.setLevel(level)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(formatter)
    root.addHandler(stream)
    if log_file is not None:
        file_handler = logging.FileHandler(log_file)
        file_handler.setFormatter(formatter)
        root.addHandler(file_handler)


def _prepare_data(experiment: Experiment) -> None:
    if experiment.data["dataset"] == "sklearn-digits":
        from launch.datasets import export_digits

        export_digits(Path(experiment.data["root"]))
    elif not Path(experiment.data["root"]).is_dir():
        raise UsageError(
            f"data root {experiment.data['root']} is not a directory; "
            "fix data.root in the experiment file"
        )


def _experiment_dir(args: argparse.Namespace, experiment: Experiment) -> Path:
    if args.dir:
        return Path(args.dir)
    return Path("experiments") / f"{experiment.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _deadline(args: argparse.Namespace) -> float | None:
    """Return when to stop submitting: --stop-after-min, or before the allocation ends."""
    deadlines = []
    if args.stop_after_min is not None:
        if args.stop_after_min <= 0:
            raise UsageError(f"--stop-after-min must be positive, got {args.stop_after_min}")
        deadlines.append(time.time() + args.stop_after_min * 60)
    if args.end_margin_min < 0:
        raise UsageError(f"--end-margin-min must be 0 or more, got {args.end_margin_min}")
    end = slurm_allocation_end()
    if end is not None:
        deadlines.append(end - args.end_margin_min * 60)
        logger.info(
            "controller allocation ends at %s; will stop %.0f min before",
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(end)),
            args.end_margin_min,
        )
    return min(deadlines) if deadlines else None


def _validate(controller: Controller) -> None:
    try:
        controller.validate_design()
    except SpecValidationError as exc:
        raise UsageError(
            f"the jobs would reject this experiment: {exc}; fix the model or training "
            "section of the experiment file"
        ) from None


def cmd_run(args: argparse.Namespace) -> int:
    experiment = load_experiment(args.experiment)
    site = load_site(args.site)
    backend = make_backend(site)
    directory = _experiment_dir(args, experiment)
    deadline = _deadline(args)
    controller = Controller(directory, experiment, site, backend, deadline=deadline)
    _validate(controller)
    if args.dry_run:
        return _dry_run(controller)
    if (directory / "journal.jsonl").exists():
        raise UsageError(
            f"{directory} already holds an experiment; use "
            f"'spline-nas resume {directory}' or choose another --dir"
        )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "experiment.yaml").write_text(experiment.text, encoding="utf-8")
    (directory / "site.yaml").write_text(Path(site.source).read_text(encoding="utf-8"))
    _setup_logging(args.verbose, directory / "controller.log")
    logger.info(
        "experiment %s in %s, site %s (%s backend)",
        experiment.name,
        directory.resolve(),
        site.name,
        site.backend,
    )
    _prepare_data(experiment)
    controller.start(None, header={"base": str(Path(args.experiment).resolve().parent)})
    return _finish(controller)


def _finish(controller: Controller) -> int:
    reason = controller.run()
    print(format_summary(controller.state, controller.experiment.space))
    if not controller.state.measurements and reason != "allocation_ending":
        print(
            "error: no point was measured; see the trials' logs with 'spline-nas status "
            f"{controller.directory}'",
            file=sys.stderr,
        )
        return 1
    if reason == "allocation_ending":
        print(
            f"\nstopped before the allocation ends; continue with: "
            f"spline-nas resume {controller.directory}"
        )
    return 0


def _dry_run(controller: Controller) -> int:
    # Building a Controller creates no files, so the script names the real trial folder.
    proposal = controller.search.ask(count=1)[0]
    trial = st.Trial(
        "t0000",
        proposal.params,
        proposal.kind,
        proposal.predicted,
        proposal.on_boundary,
        time.time(),
    )
    spec = controller.build_spec(trial)
    print(controller.backend.render(spec).rstrip("\n"))
    return 0


def _load_directory(directory: Path) -> tuple[Experiment, list[dict]]:
    if not directory.is_dir():
        raise UsageError(f"experiment directory {directory} not found")
    events = read_journal(directory / "journal.jsonl")
    text = (directory / "experiment.yaml").read_text(encoding="utf-8")
    # Relative data paths resolve against the folder of the original experiment file.
    base = Path(events[0].get("base", directory))
    experiment = experiment_from_text(text, str(directory / "experiment.yaml"), base)
    return experiment, events


def cmd_resume(args: argparse.Namespace) -> int:
    directory = Path(args.directory)
    experiment, events = _load_directory(directory)
    site = load_site(args.site) if args.site else load_site(str(directory / "site.yaml"))
    controller = Controller(
        directory, experiment, site, make_backend(site), deadline=_deadline(args)
    )
    controller.lease.acquire()
    # The file log starts only once the lease is ours, so a refused second controller
    # writes nothing into the experiment.
    _setup_logging(args.verbose, directory / "controller.log")
    logger.info("resuming %s from %d journal events", directory.resolve(), len(events))
    _prepare_data(experiment)
    controller.start(events, lease_held=True)
    return _finish(controller)


def cmd_status(args: argparse.Namespace) -> int:
    directory = Path(args.directory)
    experiment, events = _load_directory(directory)
    state = st.ExperimentState.from_events(events)
    print(format_status(state, experiment.space))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    directory = Path(args.directory)
    experiment, events = _load_directory(directory)
    state = st.ExperimentState.from_events(events)
    site = load_site(str(directory / "site.yaml"))
    backend = make_backend(site)
    if args.trial and args.trial not in state.trials:
        raise UsageError(f"trial {args.trial} not found in {directory}")
    trials = [state.trials[args.trial]] if args.trial else state.active_trials(False)
    for trial in trials:
        if not (trial.job_id and trial.active):
            print(f"trial {trial.trial_id} has no running job ({trial.state}); nothing to cancel")
            continue
        if trial.job_id and trial.active:
            if hasattr(backend, "attach"):
                spec_path = directory / "trials" / trial.trial_id / "spec.json"
                backend.attach(trial.job_id, {"trial_dir": str(spec_path.parent)})
            (directory / "trials" / trial.trial_id / CANCEL_MARKER).touch()
            backend.cancel(trial.job_id)
            print(f"cancelled job {trial.job_id} of trial {trial.trial_id}")
    # A running controller owns the journal, so cancel leaves a marker file in the trial
    # folder. The controller records the trial as cancelled when its job has ended.
    return 0


def cmd_final(args: argparse.Namespace) -> int:
    directory = Path(args.directory)
    experiment, events = _load_directory(directory)
    site = load_site(args.site) if args.site else load_site(str(directory / "site.yaml"))
    _setup_logging(args.verbose, directory / "controller.log")
    _prepare_data(experiment)
    controller = Controller(directory, experiment, site, make_backend(site))
    controller.start(events, resume_event="final_start")
    try:
        outcome = final.FinalRun(controller).run(args)
    finally:
        controller.close()
    print(format_final(controller.state, experiment.space))
    return 0 if outcome == "done" else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spline-nas", description="Polyharmonic-spline neural architecture search."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start a search from an experiment file")
    run.add_argument("experiment", help="experiment YAML file (see examples/)")
    run.add_argument(
        "--site",
        default="local",
        help="site profile name in site_configs/ or a path (default: local)",
    )
    run.add_argument("--dir", help="experiment directory (default: experiments/NAME-TIMESTAMP)")
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the job script of the first trial and submit nothing",
    )
    run.add_argument(
        "--stop-after-min",
        type=float,
        default=None,
        help="stop submitting and save state after this many minutes, e.g. "
        "shortly before the controller's own allocation ends",
    )
    run.add_argument(
        "--end-margin-min",
        type=float,
        default=10.0,
        help="inside a Slurm allocation, stop this many minutes before it ends (default 10)",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    run.set_defaults(func=cmd_run)

    resume = sub.add_parser("resume", help="continue a search after a crash or expiry")
    resume.add_argument("directory", help="experiment directory")
    resume.add_argument("--site", help="site profile (default: the one the search started with)")
    resume.add_argument(
        "--stop-after-min",
        type=float,
        default=None,
        help="stop submitting and save state after this many minutes",
    )
    resume.add_argument(
        "--end-margin-min",
        type=float,
        default=10.0,
        help="inside a Slurm allocation, stop this many minutes before it ends (default 10)",
    )
    resume.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    resume.set_defaults(func=cmd_resume)

    status = sub.add_parser("status", help="print the table of trials")
    status.add_argument("directory", help="experiment directory")
    status.set_defaults(func=cmd_status)

    cancel = sub.add_parser("cancel", help="cancel the jobs of running trials")
    cancel.add_argument("directory", help="experiment directory")
    cancel.add_argument("trial", nargs="?", help="trial id such as t0003 (default: all active)")
    cancel.set_defaults(func=cmd_cancel)

    offline = sub.add_parser(
        "propose", help="suggest the next point(s) from a CSV of measurements"
    )
    propose.add_arguments(offline)
    offline.set_defaults(func=propose.run)

    final_parser = sub.add_parser(
        "final", help="train the chosen architecture on the full data after the search"
    )
    final.add_arguments(final_parser)
    final_parser.set_defaults(func=cmd_final)

    report_parser = sub.add_parser("report", help="write a Markdown and HTML report with figures")
    report.add_arguments(report_parser)
    report_parser.set_defaults(func=report.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        _setup_logging(getattr(args, "verbose", False))
    try:
        return int(args.func(args) or 0)
    except (ConfigError, UsageError, JournalError, LeaseHeldError, final.FinalError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except BrokenPipeError:
        # The reader of our output (such as `head`) went away; that is not an error.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted; resume with 'spline-nas resume DIR'", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
