"""Plain-text tables of an experiment's trials for the terminal."""

from __future__ import annotations

from typing import Any

from orchestrator import state as st
from orchestrator.space import SearchSpace


def _format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1e4 else f"{value:.4g}"
    return str(value)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(header[i]), *(len(row[i]) for row in rows)) if rows else len(header[i])
        for i in range(len(header))
    ]
    lines = ["  ".join(text.ljust(width) for text, width in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * width for width in widths))
    for row in rows:
        lines.append("  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)))
    return "\n".join(lines)


def _best(state: st.ExperimentState, maximize: bool) -> st.Trial | None:
    done = [t for t in state.trials.values() if t.state == st.DONE and t.value is not None]
    if not done:
        return None
    return max(done, key=lambda t: t.value if maximize else -t.value)


def format_summary(state: st.ExperimentState, space: SearchSpace) -> str:
    """Return the method's result table (point type, parameters, measured, predicted)."""
    names = [p.name for p in space.parameters]
    maximize = space.objective.direction == "maximize"
    best = _best(state, maximize)
    header = ["point", "trial", *names, "measured", "predicted"]
    rows = []
    for trial in state.trials.values():
        if trial.state != st.DONE:
            continue
        mark = " *" if best is not None and trial.trial_id == best.trial_id else ""
        rows.append(
            [
                trial.kind,
                trial.trial_id + mark,
                *(_format_value(trial.params.get(name)) for name in names),
                _format_value(trial.value),
                _format_value(trial.predicted),
            ]
        )
    lines = [_table(header, rows), ""]
    lines.append(f"stop reason: {state.stop_reason or 'not stopped'}")
    if best is not None:
        params = ", ".join(f"{k}={_format_value(v)}" for k, v in best.params.items())
        lines.append(
            f"best measured point: {best.trial_id} {params} -> "
            f"{space.objective.name} {_format_value(best.value)}"
        )
    else:
        lines.append("no point was measured")
    return "\n".join(lines)


def format_status(state: st.ExperimentState, space: SearchSpace) -> str:
    """Return the status table of all trials, with attempts and GPU hours."""
    names = [p.name for p in space.parameters]
    maximize = space.objective.direction == "maximize"
    header = [
        "trial",
        "kind",
        "state",
        "attempts",
        "job ids",
        *names,
        "measured",
        "predicted",
        "best so far",
        "gpu h",
        "note",
    ]
    rows = []
    best_value: float | None = None
    for trial in state.trials.values():
        if trial.value is not None and trial.is_search_point:
            if best_value is None or (
                trial.value > best_value if maximize else trial.value < best_value
            ):
                best_value = trial.value
        jobs = ",".join(a.job_id for a in trial.attempts if a.job_id) or "-"
        note = trial.reason
        retries = [f"{a.classification}: {a.reason}" for a in trial.attempts if a.classification]
        if retries and not note:
            note = "; ".join(retries)[-80:]
        rows.append(
            [
                trial.trial_id,
                trial.kind,
                trial.state,
                str(len(trial.attempts)),
                jobs,
                *(_format_value(trial.params.get(name)) for name in names),
                _format_value(trial.value),
                _format_value(trial.predicted),
                _format_value(best_value),
                f"{trial.gpu_hours:.2f}",
                note,
            ]
        )
    lines = [_table(header, rows), ""]
    active = len(state.active_trials())
    done = sum(t.state == st.DONE for t in state.trials.values())
    lines.append(
        f"{len(state.trials)} trials: {done} measured, {active} active; "
        f"{state.gpu_hours():.2f} GPU hours; stop reason: {state.stop_reason or '-'}"
    )
    return "\n".join(lines)


def final_rows(state: st.ExperimentState, space: SearchSpace) -> tuple[list[str], list[list[str]]]:
    """Return the header and rows of the final runs, after the best search point."""
    names = [p.name for p in space.parameters]
    best = _best(state, space.objective.direction == "maximize")
    header = [
        "run",
        "kind",
        "state",
        *names,
        "scale",
        "data share",
        "top1",
        "top5",
        "GMACs@224",
        "GMACs@256",
        "params",
        "gpu h",
        "wall s",
        "epochs",
    ]
    rows = []
    trials = ([best] if best is not None else []) + state.final_trials()
    for trial in trials:
        result = trial.result or {}
        share = trial.overrides.get("data", {}).get("train_fraction")
        macs = result.get("macs") or {}
        giga_macs = [macs[size] / 1e9 if macs.get(size) else None for size in ("224", "256")]
        rows.append(
            [
                trial.trial_id,
                "best search point" if trial.is_search_point else trial.kind,
                trial.state,
                *(_format_value(trial.params.get(name)) for name in names),
                _format_value(trial.scale),
                _format_value(share),
                _format_value(result.get("top1")),
                _format_value(result.get("top5")),
                *(_format_value(value) for value in giga_macs),
                _format_value(result.get("num_params")),
                _format_value(result.get("gpu_hours")),
                _format_value(result.get("wall_s")),
                _format_value(result.get("epochs")),
            ]
        )
    return header, rows


def format_final(state: st.ExperimentState, space: SearchSpace) -> str:
    """Return the final and fine-tuning runs next to the best search point."""
    header, rows = final_rows(state, space)
    return _table(header, rows)
