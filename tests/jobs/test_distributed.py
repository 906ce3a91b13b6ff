"""Tests of rank detection, host-list parsing and rendezvous URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.distributed import (
    DistEnv,
    RendezvousError,
    detect_env,
    expand_slurm_hostlist,
    lsf_compute_hosts,
    master_address,
    master_port,
    rendezvous_url,
)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (
            {
                "RANK": "3",
                "LOCAL_RANK": "1",
                "WORLD_SIZE": "4",
                "TORCHELASTIC_RUN_ID": "t7",
                "TORCHELASTIC_RESTART_COUNT": "2",
            },
            DistEnv(3, 1, 4, "t7", 2, "torchrun"),
        ),
        (
            {
                "SLURM_PROCID": "5",
                "SLURM_LOCALID": "1",
                "SLURM_NTASKS": "8",
                "SLURM_JOB_ID": "4242",
                "SLURM_RESTART_COUNT": "1",
            },
            DistEnv(5, 1, 8, "4242", 1, "slurm"),
        ),
        (
            {
                "OMPI_COMM_WORLD_RANK": "2",
                "OMPI_COMM_WORLD_LOCAL_RANK": "2",
                "OMPI_COMM_WORLD_SIZE": "6",
                "LSB_JOBID": "998",
            },
            DistEnv(2, 2, 6, "998", 0, "openmpi"),
        ),
        (
            {
                "JSM_NAMESPACE_RANK": "7",
                "JSM_NAMESPACE_LOCAL_RANK": "1",
                "JSM_NAMESPACE_SIZE": "12",
                "LSB_JOBID": "31",
            },
            DistEnv(7, 1, 12, "31", 0, "jsrun"),
        ),
        (
            {
                "SUBMITIT_LOCAL_GLOBALID": "1",
                "SUBMITIT_LOCAL_LOCALID": "1",
                "SUBMITIT_LOCAL_NTASKS": "2",
                "SUBMITIT_LOCAL_JOB_ID": "5151",
            },
            DistEnv(1, 1, 2, "5151", 0, "submitit-local"),
        ),
        ({}, DistEnv(0, 0, 1, None, 0, "single")),
    ],
)
def test_detect_env_launchers(environ: dict[str, str], expected: DistEnv) -> None:
    assert detect_env(environ) == expected


def test_detect_env_torchrun_before_slurm() -> None:
    environ = {
        "RANK": "1",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "2",
        "TORCHELASTIC_RUN_ID": "none",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NTASKS": "1",
        "SLURM_JOB_ID": "77",
    }
    env = detect_env(environ)
    assert (env.launcher, env.rank, env.world_size) == ("torchrun", 1, 2)
    assert env.job_id == "77"  # run id "none" falls back to the Slurm job id


def test_detect_env_submitit_local_inside_slurm_batch_script() -> None:
    environ = {
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NTASKS": "4",
        "SLURM_JOB_ID": "12",
        "SUBMITIT_LOCAL_GLOBALID": "1",
        "SUBMITIT_LOCAL_LOCALID": "1",
        "SUBMITIT_LOCAL_NTASKS": "2",
        "SUBMITIT_LOCAL_JOB_ID": "900",
    }
    env = detect_env(environ)
    assert (env.launcher, env.rank, env.world_size, env.job_id) == ("submitit-local", 1, 2, "900")


@pytest.mark.parametrize(
    ("environ", "pattern"),
    [
        ({"RANK": "x", "LOCAL_RANK": "0", "WORLD_SIZE": "2"}, "RANK='x' is not an integer"),
        ({"RANK": "2", "LOCAL_RANK": "0", "WORLD_SIZE": "2"}, "invalid ranks RANK=2"),
    ],
)
def test_detect_env_invalid(environ: dict[str, str], pattern: str) -> None:
    with pytest.raises(RendezvousError, match=pattern):
        detect_env(environ)


@pytest.mark.parametrize(
    ("hostlist", "hosts"),
    [
        ("n[1-3],m4", ["n1", "n2", "n3", "m4"]),
        ("node17", ["node17"]),
        ("cn[001-003,010]", ["cn001", "cn002", "cn003", "cn010"]),
        ("nid0[0998-1001]", ["nid00998", "nid00999", "nid01000", "nid01001"]),
        ("gpu-a[7-8],gpu-b3", ["gpu-a7", "gpu-a8", "gpu-b3"]),
        ("rack[1-2]-n[01-02]", ["rack1-n01", "rack1-n02", "rack2-n01", "rack2-n02"]),
        ("a1,b[2,5-6],c", ["a1", "b2", "b5", "b6", "c"]),
        ("node[9-11]", ["node9", "node10", "node11"]),
    ],
)
def test_expand_slurm_hostlist(hostlist: str, hosts: list[str]) -> None:
    assert expand_slurm_hostlist(hostlist) == hosts


@pytest.mark.parametrize(
    ("hostlist", "pattern"),
    [("n[1-3", "unbalanced"), ("n[3-1]", "descending range"), ("n[a-b]", "invalid range")],
)
def test_expand_slurm_hostlist_invalid(hostlist: str, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        expand_slurm_hostlist(hostlist)


def test_lsf_hostfile_drops_batch_node_and_repeats(tmp_path: Path) -> None:
    # LSF writes one line per slot. On jsrun systems the launch node comes first.
    lines = ["batch3"] + ["a01n05"] * 42 + ["a02n11"] * 42 + ["a01n05"]
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("\n".join(lines) + "\n")
    assert lsf_compute_hosts({"LSB_DJOB_HOSTFILE": str(hostfile)}) == ["a01n05", "a02n11"]


def test_lsf_mcpu_hosts_pairs() -> None:
    environ = {"LSB_MCPU_HOSTS": "batch1 1 f12n01 42 f12n02 42 f13n07 42"}
    assert lsf_compute_hosts(environ) == ["f12n01", "f12n02", "f13n07"]


def test_lsf_hosts_words() -> None:
    environ = {"LSB_HOSTS": "login2 h1 h1 h1 h2 h2 h2"}
    assert lsf_compute_hosts(environ) == ["h1", "h2"]


def test_lsf_single_host_kept() -> None:
    assert lsf_compute_hosts({"LSB_HOSTS": "h1 h1 h1 h1"}) == ["h1"]


def test_lsf_hostfile_preferred_over_variables(tmp_path: Path) -> None:
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("batch1\nc1\nc1\nc2\n")
    environ = {"LSB_DJOB_HOSTFILE": str(hostfile), "LSB_HOSTS": "x y z"}
    assert lsf_compute_hosts(environ) == ["c1", "c2"]


def test_master_address_sources() -> None:
    assert master_address({"SLURM_JOB_NODELIST": "n[4-6],m1"}) == "n4"
    step_first = {"SLURM_STEP_NODELIST": "n[5-6]", "SLURM_JOB_NODELIST": "n[4-6]"}
    assert master_address(step_first) == "n5"
    assert master_address({"LSB_MCPU_HOSTS": "batch1 1 f1 42"}) == "f1"
    assert master_address({"MASTER_ADDR": "10.1.2.3", "SLURM_JOB_NODELIST": "n1"}) == "10.1.2.3"
    with pytest.raises(RendezvousError, match="needs MASTER_ADDR"):
        master_address({})


def test_master_port() -> None:
    assert master_port({}, "123456") == 23456
    assert master_port({}, "19999") == 39999
    assert master_port({"MASTER_PORT": "29500"}, "123456") == 29500
    assert 20000 <= master_port({}, "local-abc") < 40000


def test_rendezvous_url_file_is_fresh_per_launch(tmp_path: Path) -> None:
    env = DistEnv(0, 0, 2, "4242", 1, "slurm")
    url = rendezvous_url(env, "file", tmp_path, environ={})
    assert url == f"file://{tmp_path.resolve()}/rendezvous/store-4242-1"
    assert (tmp_path / "rendezvous").is_dir()


def test_rendezvous_url_tcp() -> None:
    env = DistEnv(0, 0, 8, "987654", 0, "slurm")
    url = rendezvous_url(env, "tcp", "/unused", environ={"SLURM_JOB_NODELIST": "g[07-08]"})
    assert url == "tcp://g07:27654"


def test_rendezvous_url_torchrun_without_id_uses_env(tmp_path: Path) -> None:
    env = DistEnv(1, 1, 2, None, 0, "torchrun")
    environ = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29400"}
    assert rendezvous_url(env, "file", tmp_path, environ=environ) == "env://"


def test_rendezvous_url_needs_job_id_for_several_ranks(tmp_path: Path) -> None:
    env = DistEnv(1, 1, 2, None, 0, "slurm")
    with pytest.raises(RendezvousError, match="no job id"):
        rendezvous_url(env, "file", tmp_path, environ={})


def test_rendezvous_url_unknown_method(tmp_path: Path) -> None:
    env = DistEnv(0, 0, 1, None, 0, "single")
    with pytest.raises(RendezvousError, match="'file' or 'tcp', got 'nfs'"):
        rendezvous_url(env, "nfs", tmp_path, environ={})
