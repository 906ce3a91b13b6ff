"""Tests of the LSF profile, the generated job scripts and the parsing of LSF replies."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

import pytest

from launch.base import JobState, LaunchError, TransientLaunchError
from launch.config import ConfigError, parse_section
from launch.lsf import (
    LsfBackend,
    LsfProfile,
    build_script_lines,
    parse_bjobs,
    parse_submit_reply,
)
from launch.site import load_site

DATA = Path(__file__).resolve().parent / "data"
SUMMIT = Path(__file__).resolve().parents[2] / "site_configs" / "summit.yaml"
BASE = """
project: PROJECT123
queue: batch
nodes: 2
walltime: "1:30"
"""
SPEC = {
    "format": 1,
    "trial_id": "t0003",
    "trial_dir": "/EXPERIMENT/trials/t0003",
    "result_path": "/EXPERIMENT/trials/t0003/result.json",
}


def profile(extra: str = "", base: str = BASE) -> LsfProfile:
    return LsfProfile.from_section(parse_section(base + extra, "site.yaml"))


# -- golden files and shell syntax --------------------------------------------------------


@pytest.mark.parametrize(
    ("golden", "extra"),
    [
        ("lsf_gpu_layout.sh", ""),
        ("lsf_node_layout.sh", "alloc_flags: gpumps\njsrun:\n  layout: node\n"),
    ],
)
def test_lsf_script_matches_golden(golden: str, extra: str):
    backend = LsfBackend(profile(extra + "setup:\n  - module load open-ce\n"))
    script = backend.render(SPEC)
    if os.environ.get("SPLINE_NAS_UPDATE_GOLDEN") == "1":
        (DATA / golden).write_text(script)
    assert script == (DATA / golden).read_text()


def test_lsf_summit_profile_renders_valid_bash():
    site = load_site(str(SUMMIT))
    assert site.backend == "lsf"
    backend = LsfBackend(site.backend_profile)
    script = backend.render(SPEC)
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    assert "jsrun -n 12 -r 6 -a 1 -g 1 -c 7 -b packed:7 python -m jobs.train" in script
    assert script.count("-alloc_flags") == 1
    assert "#BSUB -wa USR1 -wt 10" in script


def test_lsf_dependency_and_exclusion_directives():
    lines = build_script_lines(profile(), SPEC, Path("/x/spec.json"), depends_on="4242",
                               exclude_nodes=("h7", "a12n03"))  # fmt: skip
    assert '#BSUB -w "ended(4242)"' in lines
    assert '#BSUB -R "select[hname!=a12n03 && hname!=h7]"' in lines
    script = "\n".join(lines) + "\n"
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"depends_on": "12; rm"}, "invalid dependency job id"),
        ({"exclude_nodes": ("h1 h2",)}, "invalid host name"),
    ],
)
def test_lsf_script_rejects_bad_ids(kwargs: dict, match: str):
    with pytest.raises(LaunchError, match=match):
        build_script_lines(profile(), SPEC, Path("/x/spec.json"), **kwargs)


def test_lsf_hostile_env_and_paths_are_quoted(tmp_path: Path):
    marker = tmp_path / "marker"
    hostile = f"$(touch {marker}) `touch {marker}` 'q' \"dq\"\nnext $HOME"
    job_name = json.dumps(f"nas $(touch {marker})")
    extra = f"job_name: {job_name}\nenv:\n  HOSTILE: {json.dumps(hostile)}\n"
    backend = LsfBackend(profile(extra))
    trial_dir = f"/tmp/a b/'$(touch {marker})'"
    script = backend.render(dict(SPEC, trial_dir=trial_dir, result_path="/r b/x.json"))
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    # Run the script with jsrun as a shell function that prints its arguments.
    harness = "jsrun() { printf '%s\\n' \"$@\"; printf 'HOSTILE=%s\\n' \"$HOSTILE\"; }\n"
    body = script.replace("#!/bin/bash\n", "#!/bin/bash\n" + harness, 1)
    run = subprocess.run(["bash", "-c", body], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert f"HOSTILE={hostile}\n" in run.stdout
    assert f"{trial_dir}/spec.json" in run.stdout.splitlines()
    assert not marker.exists()


@pytest.mark.parametrize("bad", ["a\nb", 'a"b', "a\\b"])
def test_lsf_render_rejects_unsafe_bsub_values(bad: str):
    with pytest.raises(LaunchError, match="#BSUB -o"):
        LsfBackend(profile()).render(dict(SPEC, trial_dir=f"/tmp/{bad}"))


# -- profile validation -------------------------------------------------------------------


def test_lsf_profile_defaults():
    loaded = profile()
    assert loaded.walltime_min == 90
    assert loaded.warning_signal == "USR1"
    assert loaded.warning_time_min == 10
    assert loaded.jsrun.world_size == 12
    assert loaded.jsrun.argv() == "jsrun -n 12 -r 6 -a 1 -g 1 -c 7 -b packed:7".split()


def test_lsf_profile_node_layout():
    loaded = profile("alloc_flags: 'gpumps smt4'\njsrun:\n  layout: node\n  world_size: 12\n")
    assert loaded.jsrun.argv() == "jsrun -n 2 -r 1 -a 6 -g 6 -c 42".split()


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("walltime: 120", 120), ("walltime: '2:00'", 120), ("walltime: '45'", 45),
     ('walltime: "0:05"', 5)],
)  # fmt: skip
def test_lsf_walltime_forms(text: str, minutes: int):
    base = "project: P\nqueue: debug\nwarning_time_min: 1\n"
    assert profile(text, base).walltime_min == minutes


@pytest.mark.parametrize(
    ("extra", "key", "match"),
    [
        ("walltime: 2:00\n", "walltime", "base-60"),
        ("walltime: '2:75'\n", "walltime", "below 60"),
        ("walltime: '2h'\n", "walltime", "invalid walltime"),
        ("walltime: 0\n", "walltime", "at least 1 minute"),
        ("warning_time_min: 30\nwalltime: 30\n", "warning_time_min", "below the walltime"),
        ("project: ''\n", "project", "must not be empty"),
        ("python: ' '\n", "python", "must not be empty"),
        ("queue: ''\n", "queue", "must not be empty"),
        ('job_name: "a\\nb"\n', "job_name", "newline"),
        ("output: '{trial_dir}/{job}.out'\n", "output", "unknown placeholder"),
        ("warning_signal: KILL\n", "warning_signal", "unsupported signal"),
        ("nodes: 0\n", "nodes", "positive"),
        ("env:\n  BAD-NAME: x\n", "env", "invalid variable name"),
        ('setup:\n  - "a\\nb"\n', "setup", "spans lines"),
        ("backend: slurm\n", "backend", "expected 'lsf'"),
        ("jsrun:\n  layout: socket\n", "jsrun.layout", "unknown layout"),
        ("jsrun:\n  world_size: 8\n", "jsrun.world_size", "make 12"),
        ("jsrun:\n  ranks_per_resource_set: 2\n", "jsrun.ranks_per_resource_set", "gpumps"),
        ("jsrun:\n  gpus_per_resource_set: 2\n", "jsrun.gpus_per_resource_set", "has 6"),
        ("jsrun:\n  cpus_per_resource_set: 8\n", "jsrun.cpus_per_resource_set", "has 42"),
        ("jsrun:\n  gpus_per_resource_set: 0\n", "jsrun.gpus_per_resource_set", "positive"),
    ],
)
def test_lsf_profile_rejects(extra: str, key: str, match: str):
    keys = {line.split(":")[0] for line in extra.splitlines() if not line.startswith(" ")}
    base = "\n".join(line for line in BASE.splitlines() if line.split(":")[0] not in keys)
    with pytest.raises(ConfigError, match=match) as info:
        profile(extra, base + "\n")
    assert info.value.key == key


def test_lsf_profile_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match="unknown key.*valid keys are: backend.*alloc_flags"):
        profile("allocflags: gpumps\n")
    with pytest.raises(ConfigError, match="jsrun.ranks.*valid keys are: layout"):
        profile("jsrun:\n  ranks: 6\n")


def test_lsf_mps_allows_shared_gpus():
    loaded = profile("alloc_flags: gpumps\njsrun:\n  ranks_per_resource_set: 2\n")
    assert loaded.jsrun.world_size == 24


@pytest.mark.parametrize(
    ("nodes", "walltime", "warned"),
    [(45, "2:00", False), (45, "2:01", True), (46, "6:00", False), (91, "6:30", True),
     (92, "12:00", False), (921, "13:00", True), (922, "24:00", False), (1000, "24:01", True)],
)  # fmt: skip
def test_lsf_walltime_queue_limit_warning(caplog, nodes: int, walltime: str, warned: bool):
    text = f"project: P\nqueue: batch\nnodes: {nodes}\nwalltime: '{walltime}'\n"
    with caplog.at_level(logging.WARNING, logger="launch.lsf"):
        LsfProfile.from_section(parse_section(text, "site.yaml"))
    assert any("exceeds" in record.message for record in caplog.records) is warned


# -- scheduler replies --------------------------------------------------------------------


def test_lsf_parse_submit_reply():
    assert parse_submit_reply("Job <12345> is submitted to queue <batch>.\n") == "12345"
    reply = (
        "Warning: project is almost out of hours\nJob <7> is submitted to default queue <normal>."
    )
    assert parse_submit_reply(reply) == "7"
    with pytest.raises(ValueError, match="no 'Job <ID> is submitted' line"):
        parse_submit_reply("Request aborted by esub. Job not submitted.")


def test_lsf_parse_bjobs_states():
    stdout = "\n".join(
        [
            "1|PEND|-|-|-",
            "2|RUN|-|-|1*batch1:42*h1:42*h2",
            "3|DONE|-|-|1*batch1:42*a01n01",
            "4|EXIT|140|TERM_RUNLIMIT: job killed after reaching LSF run time limit|1*b:42*h1",
            "5|EXIT|1|-|1*batch1:42*h1",
            "6|EXIT|130|TERM_OWNER: job killed by owner|1*batch1:42*h1",
            "7|USUSP|-|-|1*batch1:42*h1",
            "8|PSUSP|-|-|-",
            "9|SSUSP|-|-|1*batch1:42*h1",
            "10|EXIT|140|-|1*batch1:42*h1",
            "11|EXIT|9|TERM_MEMLIMIT: job killed after reaching LSF memory usage limit|-",
        ]
    )
    stderr = "Job <12> is not found\n"
    statuses = parse_bjobs(stdout, stderr)
    expected = {
        "1": JobState.PENDING, "2": JobState.RUNNING, "3": JobState.COMPLETED,
        "4": JobState.TIMEOUT, "5": JobState.FAILED, "6": JobState.CANCELLED,
        "7": JobState.PENDING, "8": JobState.PENDING, "9": JobState.PENDING,
        "10": JobState.TIMEOUT, "11": JobState.OUT_OF_MEMORY, "12": JobState.UNKNOWN,
    }  # fmt: skip
    assert {job: status.state for job, status in statuses.items()} == expected
    assert statuses["2"].node == "h1,h2"
    assert statuses["3"].node == "a01n01"
    assert statuses["4"].exit_code == 140
    assert statuses["5"].exit_code == 1
    assert statuses["1"].exit_code is None


def test_lsf_parse_bjobs_rejects_garbage():
    with pytest.raises(ValueError, match="unexpected bjobs line"):
        parse_bjobs("1 RUN\n", "")


def test_lsf_command_timeout_is_transient(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    slow = tmp_path / "bjobs"
    slow.write_text("#!/bin/sh\nsleep 5\n")
    slow.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    backend = LsfBackend(profile(), command_timeout_s=0.3)
    with pytest.raises(TransientLaunchError, match="bjobs timed out after 0.3 s"):
        backend.states(["1"])
