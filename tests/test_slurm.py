"""The workflow on a real SLURM scheduler. tests/slurm/start_cluster.sh brings up a
one-node cluster on this machine (munged, slurmctld, slurmd from Debian's packages); the
tiny config then runs through profiles/slurm, with tests/slurm/profile switching the GPU
requests off (the node has none; the embedded model runs on its CPUs). Every job must go
through sbatch and finish there, and the tables must equal those of a local run."""

from __future__ import annotations

import os
import re
import subprocess
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import ROOT, SNAKEMAKE, make_workdir
from polars.testing import assert_frame_equal
from test_reruns import CONFIG, MODEL, MODEL_STAGES, TARGETS, finished_tiny_run

SLURM = ROOT / "tests" / "slurm"
OVERLAY = SLURM / "profile"
JOBCOMP = Path("/var/log/slurm/jobcomp.log")  # written by start_cluster.sh's slurm.conf
PROFILE = ROOT / "profiles" / "slurm" / "config.v8+.yaml"


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A dry run with profiles/slurm alone: no cluster needed."""
    work = make_workdir(tmp_path_factory.mktemp("slurm_dry_run"), CONFIG)
    proc = subprocess.run(
        [str(SNAKEMAKE), "--profile", "profiles/slurm", "--dry-run", *TARGETS],
        cwd=work,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _job_resources(dry_run: str) -> dict[str, list[dict[str, str]]]:
    """Rule -> the resources of each of its jobs, from a dry run's job listing."""
    jobs: dict[str, list[dict[str, str]]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", dry_run):
        head = re.match(r"(?:local)?rule (\w+):", block)
        found = re.search(r"^\s+resources: (.*)$", block, re.M)
        if head and found:
            pairs = (item.split("=", 1) for item in found[1].split(", "))
            jobs.setdefault(head[1], []).append(dict(pairs))
    return jobs


def test_profile_asks_gpus_for_model_stages_only(dry_run: str) -> None:
    jobs = _job_resources(dry_run)
    assert set(MODEL_STAGES) < set(jobs), jobs
    for rule in MODEL_STAGES:
        for res in jobs[rule]:
            # the rules' attempt-scaled requests, not the profile's defaults for CPU jobs
            assert res["gpu"] == "1" and res["mem_mb"] == "16000", (rule, res)
    for rule, resources in jobs.items():
        for res in resources:
            assert "mem_mb" in res and "runtime" in res, (rule, res)
            if res.get("gpu", "0") != "0":
                assert res["slurm_partition"] == "gpu", (rule, res)
            else:
                assert res["slurm_partition"] == "cpu", (rule, res)


def test_overlay_only_switches_gpus_off() -> None:
    """tests/slurm/profile replaces profiles/slurm's `set-resources` (a later profile
    replaces whole keys): it must keep everything else the same."""
    profile = yaml.safe_load(PROFILE.read_text())["set-resources"]
    overlay = yaml.safe_load((OVERLAY / "config.v8+.yaml").read_text())["set-resources"]
    assert set(overlay) == set(profile) == set(MODEL_STAGES)
    for rule, resources in overlay.items():
        assert resources.pop("gpu") == 0
        assert resources == {k: v for k, v in profile[rule].items() if k != "gpu_model"}


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """The one-node cluster, started (or found running) by tests/slurm/start_cluster.sh."""
    if os.geteuid() != 0 and not os.environ.get("CI"):
        pytest.skip("starting munged, slurmctld and slurmd needs root; runs in CI")
    proc = subprocess.run(
        [str(SLURM / "start_cluster.sh")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"start_cluster.sh failed:\n{proc.stdout}\n{proc.stderr}"


@pytest.fixture(scope="module")
def slurm_run(
    slurm_cluster: None, tmp_path_factory: pytest.TempPathFactory, embedded_model: Path
) -> tuple[Path, str]:
    """The tiny config through profiles/slurm; returns the workdir and Snakemake's log."""
    work = tmp_path_factory.mktemp("slurm_run")
    make_workdir(work, CONFIG, embedded_model)
    cpus = len(os.sched_getaffinity(0))
    cmd = [
        str(SNAKEMAKE),
        "--profile", "profiles/slurm",
        "--profile", str(OVERLAY),
        # sbatch refuses a job that asks for more CPUs than the node has
        "--max-threads", str(cpus),
        *TARGETS,
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=3600)
    except subprocess.TimeoutExpired as e:
        queue = subprocess.run(["squeue", "--states=all"], capture_output=True, text=True)
        pytest.fail(f"the SLURM run took over an hour:\n{queue.stdout}\n{e.stderr}")
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        slurm_logs = "\n".join(
            f"--- {p}\n{p.read_text()[-3000:]}"
            for p in (work / ".snakemake" / "slurm_logs").rglob("*.log")
        )
        pytest.fail(f"the SLURM run failed:\n{log[-8000:]}\n{slurm_logs}")
    return work, log


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory, embedded_model: Path) -> Path:
    return finished_tiny_run(tmp_path_factory, embedded_model)


def _job_stats(log: str) -> Counter[str]:
    table = log[log.index("Job stats:") :].split("\n\n")[0]
    rows = re.findall(r"^(\w+)\s+(\d+)$", table, re.M)
    return Counter({rule: int(n) for rule, n in rows if rule != "total"})


def _jobcomp() -> dict[str, dict[str, str]]:
    """SLURM's record of every finished job (jobcomp/filetxt), by job id."""
    jobs = {}
    for line in JOBCOMP.read_text().splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        jobs[fields["JobId"]] = fields
    return jobs


def test_every_job_went_through_sbatch(slurm_run: tuple[Path, str]) -> None:
    work, log = slurm_run
    submitted = re.findall(
        r"Job (\d+) has been submitted with SLURM jobid (\d+) "
        r"\(log: .*/slurm_logs/rule_(\w+)/",
        log,
    )
    planned = _job_stats(log)
    assert sum(planned.values()) >= 20, planned
    # one sbatch per Snakemake job, each under its own SLURM job id
    assert Counter(rule for _, _, rule in submitted) == planned
    assert len({slurm_id for _, slurm_id, _ in submitted}) == len(submitted)
    assert "localrule" not in log
    finished = _jobcomp()
    for _, slurm_id, rule in submitted:
        job = finished[slurm_id]
        assert job["JobState"] == "COMPLETED" and job["WorkDir"] == str(work), job
        assert "gpu" not in job["Tres"], job
        if rule in MODEL_STAGES:
            assert job["Partition"] == "gpu" and "mem=16000M" in job["Tres"], job
        else:
            assert job["Partition"] == "cpu", job


SLURM_TABLES = ["base", "truncated", "resampled", "elicited", "graded", "curves", "windows"]


@pytest.mark.parametrize("dataset", CONFIG["datasets"])
@pytest.mark.parametrize("table", SLURM_TABLES)
def test_slurm_tables_equal_a_local_run(
    slurm_run: tuple[Path, str], local_run: Path, dataset: str, table: str
) -> None:
    path = Path("results", MODEL, dataset, f"{table}.parquet")
    slurm = pl.read_parquet(slurm_run[0] / path)
    assert slurm.height > 0
    assert_frame_equal(slurm, pl.read_parquet(local_run / path))


def test_slurm_summary_equals_a_local_run(slurm_run: tuple[Path, str], local_run: Path) -> None:
    path = Path("results", MODEL, "summary.csv")
    assert (slurm_run[0] / path).read_text() == (local_run / path).read_text()
