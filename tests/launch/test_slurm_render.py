"""Batch scripts of the Slurm backend: golden files, quoting of hostile values, dry runs."""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

from launch.base import LaunchError
from launch.config import load_section, parse_section
from launch.slurm import SlurmBackend, SlurmProfile

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
TRIAL_DIR = "/experiments/demo/trials/t0003"
FOLDER_PLACEHOLDER = "TRIAL_DIR"


def _site_profile(name: str, python: str = "/opt/venv/bin/python") -> SlurmProfile:
    section = load_section(REPO / "site_configs" / name).get_section("slurm")
    profile = SlurmProfile.from_section(section)
    # The default interpreter is the test runner's, which differs between machines.
    return SlurmProfile(**{**profile.__dict__, "python": python})


def _spec(trial_dir: str = TRIAL_DIR, trial_id: str = "t0003") -> dict:
    return {
        "trial_id": trial_id,
        "trial_dir": trial_dir,
        "result_path": f"{trial_dir}/result.json",
    }


@pytest.mark.parametrize(
    ("site_file", "golden"),
    [
        ("slurm_loopback.yaml", "slurm_loopback.sbatch"),
        ("slurm_example.yaml", "slurm_example.sbatch"),
    ],
)
def test_render_matches_golden_file(site_file: str, golden: str) -> None:
    backend = SlurmBackend(_site_profile(site_file))
    script = backend.render(_spec(), exclude_nodes=("bad01",) if "example" in site_file else ())
    normalized = script.replace(TRIAL_DIR, FOLDER_PLACEHOLDER)
    expected = (DATA / golden).read_text()
    assert normalized == expected


def test_render_passes_bash_syntax_check(tmp_path: Path) -> None:
    script = SlurmBackend(_site_profile("slurm_example.yaml")).render(_spec())
    path = tmp_path / "job.sh"
    path.write_text(script)
    check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_render_creates_no_files(tmp_path: Path) -> None:
    trial_dir = tmp_path / "trials" / "t0001"
    SlurmBackend(_site_profile("slurm_loopback.yaml")).render(_spec(str(trial_dir)))
    assert not (tmp_path / "trials").exists()


def test_render_excludes_profile_and_caller_nodes() -> None:
    section = parse_section('slurm:\n  exclude: ["a01", "a02"]\n', "site.yaml")
    backend = SlurmBackend(SlurmProfile.from_section(section.get_section("slurm")))
    script = backend.render(_spec(), exclude_nodes=("a02", "b07"))
    assert "#SBATCH --exclude=a01,a02,b07\n" in script


@pytest.mark.parametrize(
    "trial_dir",
    ["relative/t0001", "/exp/100%/t0001", "/exp/line\nbreak/t0001", ""],
)
def test_render_rejects_unusable_trial_dir(trial_dir: str) -> None:
    backend = SlurmBackend(_site_profile("slurm_loopback.yaml"))
    with pytest.raises(LaunchError, match="trial_dir"):
        backend.render(_spec(trial_dir))


def test_render_rejects_invalid_exclude_node() -> None:
    backend = SlurmBackend(_site_profile("slurm_loopback.yaml"))
    with pytest.raises(LaunchError, match="invalid node name to exclude: 'n1 n2'"):
        backend.render(_spec(), exclude_nodes=("n1 n2",))


# -- hostile values ----------------------------------------------------------------------

_FAKE_SRUN = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["FAKE_SRUN_LOG"], "w") as log:
    json.dump({"argv": sys.argv[1:], "env": os.environ.get("HOSTILE"),
               "executor": os.environ.get("SUBMITIT_EXECUTOR")}, log)
"""


def _hostile_backend(tmp_path: Path, marker: Path) -> tuple[SlurmBackend, str, str]:
    """Build a backend whose env value, python path and setup line carry shell syntax."""
    env_value = f"a b 'c' \"d\" $(touch {marker}) `touch {marker}` ; touch {marker}\nline 2"
    python = str(tmp_path / f"my python $(touch {marker})" / "bin" / "python")
    setup_out = tmp_path / "setup ran.txt"
    setup_line = f"echo \"setup 'quoted' $((1 + 2))\" > {shlex.quote(str(setup_out))}"
    body = (
        "slurm:\n"
        f"  python: {json.dumps(python)}\n"
        f"  env: {{HOSTILE: {json.dumps(env_value)}}}\n"
        f"  setup: [{json.dumps(setup_line)}]\n"
    )
    profile = SlurmProfile.from_section(parse_section(body, "site.yaml").get_section("slurm"))
    return SlurmBackend(profile), env_value, python


def test_render_quotes_hostile_values(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    backend, env_value, python = _hostile_backend(tmp_path, marker)
    trial_dir = tmp_path / f"exp 'q' \"dq\" $(touch {marker}) `touch {marker}`;" / "t0001"
    trial_id = f"t 1'; $(touch {marker})"
    script = backend.render(_spec(str(trial_dir), trial_id))

    # The job name is reduced to safe characters; everything else is quoted.
    job_names = re.findall(r"^#SBATCH --job-name=(.*)$", script, flags=re.MULTILINE)
    assert len(job_names) == 1
    assert re.fullmatch(r"spline-nas-t_1_____touch_[A-Za-z0-9_.-]+", job_names[0])
    script_path = tmp_path / "job.sh"
    script_path.write_text(script)
    check = subprocess.run(["bash", "-n", str(script_path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr

    # Run the script with a fake srun that records its arguments and environment.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_srun = bin_dir / "srun"
    fake_srun.write_text(_FAKE_SRUN)
    fake_srun.chmod(fake_srun.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "srun.json"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_SRUN_LOG": str(log)}
    run = subprocess.run(
        ["bash", str(script_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=30,
    )
    assert run.returncode == 0, run.stderr
    recorded = json.loads(log.read_text())

    assert not marker.exists()
    assert recorded["env"] == env_value
    assert recorded["executor"] == "slurm"
    assert recorded["argv"][-5:] == [
        python,
        "-u",
        "-m",
        "submitit.core._submit",
        str(trial_dir / "logs"),
    ]
    assert f"{trial_dir}/logs/%j_%t_log.out" in recorded["argv"]
    assert (tmp_path / "setup ran.txt").read_text() == "setup 'quoted' 3\n"


def test_render_quotes_directive_paths(tmp_path: Path) -> None:
    # sbatch 22.05 strips these single quotes itself (checked on the loopback cluster).
    backend, _, _ = _hostile_backend(tmp_path, tmp_path / "pwned")
    script = backend.render(_spec(str(tmp_path / "exp dir" / "t0001")))
    assert f"#SBATCH --output='{tmp_path}/exp dir/t0001/logs/%j_0_log.out'" in script
