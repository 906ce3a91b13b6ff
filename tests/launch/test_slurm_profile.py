"""Site profile schema of the Slurm backend (no cluster needed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from launch.config import ConfigError, load_section, parse_section
from launch.slurm import SlurmProfile

REPO = Path(__file__).resolve().parents[2]


def _profile(body: str) -> SlurmProfile:
    return SlurmProfile.from_section(parse_section(body, "site.yaml").get_section("slurm"))


@pytest.mark.parametrize(
    ("walltime", "minutes"),
    [("02:00:00", 120), ("1-00:00:00", 1440), ("1-02:03:00", 1563), ("00:00:30", 1)],
)
def test_profile_walltime_forms(walltime: str, minutes: int) -> None:
    profile = _profile(f'slurm:\n  walltime: "{walltime}"\n')
    assert profile.walltime_min == minutes


def test_profile_unquoted_walltime_rejected() -> None:
    # PyYAML reads 2:00:00 as the base-60 integer 7200.
    with pytest.raises(ConfigError, match=r"site.yaml:2: key 'slurm.walltime'.*base-60"):
        _profile("slurm:\n  walltime: 2:00:00\n")


def test_profile_integer_walltime_rejected() -> None:
    with pytest.raises(ConfigError, match=r"slurm.walltime.*expected a string.*quotes"):
        _profile("slurm:\n  walltime: 120\n")


@pytest.mark.parametrize("walltime", ["2 hours", "30:00", "90", "1-02", "00:61:00"])
def test_profile_invalid_walltime_rejected(walltime: str) -> None:
    with pytest.raises(ConfigError, match=f"slurm.walltime': invalid walltime '{walltime}'"):
        _profile(f'slurm:\n  walltime: "{walltime}"\n')


def test_profile_unknown_key_lists_valid_keys() -> None:
    with pytest.raises(ConfigError) as info:
        _profile("slurm:\n  nodes: 1\n  gpus: 4\n")
    message = str(info.value)
    assert "site.yaml:3: key 'slurm.gpus': unknown key" in message
    for key in ("gpus_per_node", "tasks_per_node", "walltime", "signal_delay_s", "python"):
        assert key in message


def test_profile_more_ranks_than_gpus_rejected() -> None:
    with pytest.raises(ConfigError, match="5 ranks per node but only 4 GPUs per node"):
        _profile("slurm:\n  gpus_per_node: 4\n  tasks_per_node: 5\n")


def test_profile_tasks_default_to_gpus() -> None:
    profile = _profile("slurm:\n  nodes: 2\n  gpus_per_node: 4\n")
    assert profile.tasks_per_node == 4
    assert profile.num_ranks == 8


def test_profile_defaults_without_gpus() -> None:
    profile = _profile("slurm: {}\n")
    assert profile.tasks_per_node == 1
    assert profile.nodes == 1
    assert profile.walltime_min == 60
    assert profile.python == sys.executable
    assert profile.max_requeues == 3


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("nodes: 0", "slurm.nodes': must be at least 1, got 0"),
        ("mem_gb: -2", "slurm.mem_gb': must be positive"),
        ('nodes: "2"', "remove the quotes"),
        ("max_requeues: -1", "must be at least 0"),
        ("signal_delay_s: 3600", "not shorter than the walltime"),
        ('account: "my account"', "invalid value 'my account'"),
        ('partition: "gpu\\nrm -rf x"', "invalid value"),
        ("exclude: node1", "expected a list"),
        ('exclude: ["n1", "n 2"]', "invalid node name 'n 2'"),
        ("env: {1BAD: x}", "invalid environment variable name '1BAD'"),
        ("env: {OMP_NUM_THREADS: 4}", "expected a string"),
        ("setup: ['source \"/opt/my env/activate']", "not a complete shell command"),
    ],
)
def test_profile_invalid_values_rejected(body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        _profile(f"slurm:\n  {body}\n")


def test_profile_example_site_files_load() -> None:
    example = load_section(REPO / "site_configs" / "slurm_example.yaml")
    profile = SlurmProfile.from_section(example.get_section("slurm"))
    assert example.get_str("backend") == "slurm"
    assert profile.gpus_per_node == profile.tasks_per_node == 4
    assert profile.walltime_min == 120

    loopback = load_section(REPO / "site_configs" / "slurm_loopback.yaml")
    profile = SlurmProfile.from_section(loopback.get_section("slurm"))
    assert (profile.nodes, profile.tasks_per_node, profile.gpus_per_node) == (2, 2, 0)
    assert profile.partition == "debug"
