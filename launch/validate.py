"""Check trial specs on the login node before any job is submitted."""

from __future__ import annotations

from typing import Any


class SpecValidationError(ValueError):
    """A trial spec would fail on the compute nodes; the message names the key."""


def validate_spec(spec: dict[str, Any], num_classes: int = 10) -> None:
    """Raise SpecValidationError if the job would reject ``spec`` or cannot build its model.

    Runs the job's own spec parser and builds the model on the meta device, so nothing is
    allocated and no data is read.
    """
    from jobs.config import SpecError, TrialConfig
    from jobs.flops import model_complexity
    from jobs.models import ModelConfigError

    try:
        TrialConfig.from_spec(spec, source=f"trial {spec.get('trial_id')}")
        model = spec["model"]
        model_complexity(model["name"], model["params"], num_classes, image_sizes=())
    except (SpecError, ModelConfigError, ValueError, KeyError, TypeError) as exc:
        raise SpecValidationError(str(exc)) from exc
