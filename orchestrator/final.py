"""Train the chosen architecture at full scale after the search.

Search trials train on a share of the data (``data.train_fraction``). The final run
trains the best measured configuration, or one given on the command line, on the whole
training split. ``--scale`` multiplies the width parameters by one factor, which keeps
the optimum's ratios, after checking the estimated peak GPU memory against the site's
``gpu_memory_gb``. ``--fine-tune-epochs`` then continues from the final run's last
checkpoint with a fresh learning-rate schedule. Both runs are trials of kind ``final``
and ``finetune`` in the same journal, so they get the same retries and resume.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path
from typing import Any

from orchestrator import state as st
from orchestrator.controller import CUDA_CONTEXT_GB, Controller
from orchestrator.space import SearchSpace

logger = logging.getLogger(__name__)

FINAL = "final"
FINETUNE = "finetune"


class FinalError(ValueError):
    """The final run cannot be planned as requested; the message names the fix."""


def parse_params(text: str, space: SearchSpace) -> dict[str, Any]:
    """Parse ``c1=64,g1=128`` into a parameter dict checked against the search space."""
    params: dict[str, Any] = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise FinalError(f"invalid --params item {item!r}; write NAME=VALUE,NAME=VALUE")
        parameter = next((p for p in space.parameters if p.name == name), None)
        if parameter is None:
            raise FinalError(f"--params names unknown parameter {name!r}; known: {space.names}")
        if parameter.is_numeric:
            try:
                number = float(value)
            except ValueError:
                raise FinalError(f"--params {name}={value!r} is not a number") from None
            params[name] = parameter.python_value(number)
        else:
            params[name] = value.strip()
    missing = [name for name in space.names if name not in params]
    if missing:
        raise FinalError(f"--params is missing {missing}; give every search parameter")
    try:
        return space.check_params(params)
    except ValueError as exc:
        raise FinalError(f"--params: {exc}; give a point inside the search box") from None


def scale_widths(
    space: SearchSpace, params: dict[str, Any], factor: float, names: list[str]
) -> dict[str, Any]:
    """Multiply the parameters ``names`` by ``factor`` and round them to legal values.

    The result may lie outside the search box, which is the point of enlarging.
    """
    scaled = dict(params)
    for parameter in space.numeric:
        if parameter.name not in names:
            continue
        value = float(params[parameter.name]) * factor
        if parameter.step is not None:
            value = (
                parameter.low + round((value - parameter.low) / parameter.step) * parameter.step
            )
        scaled[parameter.name] = parameter.python_value(max(value, 1.0))
    return scaled


def width_parameters(space: SearchSpace, requested: list[str] | None) -> list[str]:
    """Return the parameters that --scale multiplies: the requested ones or all ints."""
    if requested:
        unknown = [name for name in requested if name not in [p.name for p in space.numeric]]
        if unknown:
            raise FinalError(f"--scale-params names {unknown}, which are not numeric parameters")
        return requested
    return [p.name for p in space.numeric if p.type == "int"]


def _memory_estimate(spec: dict[str, Any]) -> float:
    from launch.memory import estimate_peak_memory_gb

    return estimate_peak_memory_gb(spec)


def largest_fitting_scale(fits, requested: float, tolerance: float = 0.01) -> float | None:
    """Bisect the largest factor in [1, requested] for which ``fits(factor)`` holds."""
    if not fits(1.0):
        return None
    low, high = 1.0, requested
    while high - low > tolerance:
        middle = (low + high) / 2
        if fits(middle):
            low = middle
        else:
            high = middle
    return math.floor(low * 100) / 100


class FinalRun:
    """Create and drive the final (and fine-tuning) trials of an experiment."""

    def __init__(self, controller: Controller, memory_estimate=_memory_estimate):
        self.controller = controller
        self.memory_estimate = memory_estimate

    def _best_params(self) -> dict[str, Any]:
        best = self.controller.search.best()
        if best is None:
            raise FinalError(
                "the experiment has no measured point yet; run the search first or give --params"
            )
        return best[0]

    def _check_memory(
        self, trial: st.Trial, scale: float, base: dict[str, Any], names: list[str]
    ) -> None:
        limit = self.controller.site.gpu_memory_gb
        if limit is None:
            logger.info(
                "site %s sets no gpu_memory_gb; skipping the memory check",
                self.controller.site.name,
            )
            return
        space = self.controller.experiment.space

        def fits(factor: float) -> bool:
            candidate = st.Trial(
                "check",
                scale_widths(space, base, factor, names),
                FINAL,
                None,
                {},
                time.time(),
                overrides=trial.overrides,
            )
            spec = self.controller.build_spec(candidate)
            return self.memory_estimate(spec) + CUDA_CONTEXT_GB <= limit

        needed = self.memory_estimate(self.controller.build_spec(trial)) + CUDA_CONTEXT_GB
        if needed <= limit:
            logger.info("estimated peak memory %.1f GB fits the site's %.1f GB", needed, limit)
            return
        largest = largest_fitting_scale(fits, scale)
        hint = (
            f"the largest factor that fits is {largest:.2f}"
            if largest is not None
            else "even the unscaled configuration does not fit"
        )
        raise FinalError(
            f"--scale {scale} needs an estimated {needed:.1f} GB of GPU memory per rank, "
            f"more than the site's gpu_memory_gb of {limit:.1f} GB; {hint}"
        )

    def plan(self, args: argparse.Namespace) -> None:
        """Journal the final trial unless one is already running or done."""
        state = self.controller.state
        existing = [t for t in state.final_trials() if t.kind == FINAL]
        last = existing[-1] if existing else None
        if last is not None and not args.new and last.state not in (st.FAILED, st.CANCELLED):
            tunes = [
                t
                for t in state.final_trials()
                if t.kind == FINETUNE and t.trial_id > last.trial_id
            ]
            continuing = last.active or any(t.active for t in tunes)
            fine_tune_next = last.state == st.DONE and args.fine_tune_epochs and not tunes
            if not (continuing or fine_tune_next):
                raise FinalError(
                    f"final run {last.trial_id} already ended ({last.state}); pass --new to "
                    "train another configuration, or see it with 'spline-nas status'"
                )
            logger.info("continuing final run %s (%s)", last.trial_id, last.state)
            return
        space = self.controller.experiment.space
        base = parse_params(args.params, space) if args.params else self._best_params()
        names = width_parameters(space, args.scale_params)
        params = scale_widths(space, base, args.scale, names) if args.scale != 1.0 else base
        overrides: dict[str, dict[str, Any]] = {"data": {"train_fraction": 1.0}}
        if args.epochs is not None:
            overrides["train"] = {"epochs": args.epochs}
        trial = st.Trial(
            state.next_trial_id("f"),
            params,
            FINAL,
            None,
            {},
            time.time(),
            overrides=overrides,
            scale=args.scale,
        )
        self._validate(trial)
        self._check_memory(trial, args.scale, base, names)
        self.controller._record(
            {
                "event": "trial",
                "trial_id": trial.trial_id,
                "params": params,
                "kind": FINAL,
                "predicted": None,
                "on_boundary": {},
                "overrides": overrides,
                "scale": args.scale,
                "base_params": base,
                "proposals_made": state.proposals_made,
            }
        )
        logger.info(
            "final run %s: params %s (scale %s of %s), full training data",
            trial.trial_id,
            params,
            args.scale,
            base,
        )

    def _validate(self, trial: st.Trial) -> None:
        from launch.validate import SpecValidationError

        try:
            self.controller.validate_trial(trial)
        except SpecValidationError as exc:
            raise FinalError(f"the job would reject the final run: {exc}") from None

    def _plan_finetune(self, final: st.Trial, epochs: int, lr: float) -> None:
        checkpoints = sorted(
            (Path(final_dir(self.controller, final)) / "checkpoints").glob("ckpt-*.pt")
        )
        if not checkpoints:
            raise FinalError(f"final run {final.trial_id} left no checkpoint to fine-tune from")
        overrides = {
            "data": {"train_fraction": 1.0},
            "train": {"epochs": epochs, "lr": lr, "init_checkpoint": str(checkpoints[-1])},
        }
        trial_id = self.controller.state.next_trial_id("f")
        self.controller._record(
            {
                "event": "trial",
                "trial_id": trial_id,
                "params": final.params,
                "kind": FINETUNE,
                "predicted": None,
                "on_boundary": {},
                "overrides": overrides,
                "scale": final.scale,
                "proposals_made": self.controller.state.proposals_made,
            }
        )
        logger.info(
            "fine-tuning %s from %s for %d epochs at lr %s", trial_id, checkpoints[-1], epochs, lr
        )

    def run(self, args: argparse.Namespace) -> str:
        """Run the final trial, then the fine-tuning trial if asked; return the outcome."""
        check_arguments(args)
        self.plan(args)
        while True:
            finals = self.controller.state.final_trials()
            final = [t for t in finals if t.kind == FINAL][-1]
            # Trial ids count up, so the fine-tuning runs of this final run come after it.
            tunes = [t for t in finals if t.kind == FINETUNE and t.trial_id > final.trial_id]
            if final.state == st.DONE and args.fine_tune_epochs and not tunes:
                self._plan_finetune(final, args.fine_tune_epochs, args.fine_tune_lr)
                continue
            active = [t for t in finals if t.active]
            if not active:
                return final.state if not tunes else tunes[-1].state
            self.controller.drive(active)


def check_arguments(args: argparse.Namespace) -> None:
    """Reject option values that no final run can use, before anything is recorded."""
    if not math.isfinite(args.scale) or args.scale <= 0:
        raise FinalError(f"--scale must be a positive number, got {args.scale}")
    if args.epochs is not None and args.epochs < 1:
        raise FinalError(f"--epochs must be at least 1, got {args.epochs}")
    if args.fine_tune_epochs < 0:
        raise FinalError(f"--fine-tune-epochs must be 0 or more, got {args.fine_tune_epochs}")
    if not math.isfinite(args.fine_tune_lr) or args.fine_tune_lr <= 0:
        raise FinalError(f"--fine-tune-lr must be a positive number, got {args.fine_tune_lr}")


def final_dir(controller: Controller, trial: st.Trial) -> Path:
    return controller.directory / "trials" / trial.trial_id


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="experiment directory of a finished search")
    parser.add_argument(
        "--params",
        help="configuration to train, as NAME=VALUE,... (default: the best measured point)",
    )
    parser.add_argument(
        "--site",
        help="site profile for the final run, typically with more "
        "nodes (default: the search's profile)",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply the width parameters by this factor (default 1.0)",
    )
    parser.add_argument(
        "--scale-params",
        type=lambda text: text.split(","),
        default=None,
        help="comma-separated parameters that --scale multiplies (default: every int parameter)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="training epochs of the final run (default: the experiment's)",
    )
    parser.add_argument(
        "--fine-tune-epochs",
        type=int,
        default=0,
        help="epochs of fine-tuning from the final checkpoint (default 0: none)",
    )
    parser.add_argument(
        "--fine-tune-lr",
        type=float,
        default=0.01,
        help="initial learning rate of the fine-tuning schedule (default 0.01)",
    )
    parser.add_argument(
        "--new",
        action="store_true",
        help="plan another final run even if one exists (default: continue the last one)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
