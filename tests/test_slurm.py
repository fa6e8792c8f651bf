"""The workflow on a real SLURM scheduler. tests/slurm/start_cluster.sh brings up a
one-node cluster on this machine (munged, slurmctld, slurmd from Debian's packages, and a
stand-in GPU); the tiny config then runs through profiles/slurm, with tests/slurm/profile
adding only what a cluster without an accounting database needs. Every job must go
through sbatch with the resources the profile and the rules ask for and finish there,
and the tables must equal those of a local run."""

from __future__ import annotations

import os
import re
import subprocess
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import E2E_CONFIG as CONFIG
from conftest import E2E_TARGETS as TARGETS
from conftest import MODEL, MODEL_STAGES, ROOT, SNAKEMAKE, make_workdir, with_package
from polars.testing import assert_frame_equal

SLURM = ROOT / "tests" / "slurm"
OVERLAY = SLURM / "profile"
JOBCOMP = Path("/var/log/slurm/jobcomp.log")  # written by start_cluster.sh's slurm.conf
CONFIGS = sorted([ROOT / "config.yaml", *(ROOT / "config").glob("*.yaml")])

pytestmark = pytest.mark.slow


def _job_resources(dry_run: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of each job of a dry run's job listing."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", dry_run):
        head = re.match(r"(?:local)?rule (\w+):", block)
        found = re.search(r"^\s+resources: (.*)$", block, re.M)
        if head and found and head[1] != "all":
            jobs.append((head[1], dict(item.split("=", 1) for item in found[1].split(", "))))
    return jobs


@pytest.mark.parametrize("configfile", CONFIGS, ids=lambda p: p.name)
def test_profile_sends_gpu_jobs_and_only_those_to_the_gpu_partition(
    configfile: Path, tmp_path: Path
) -> None:
    """profiles/slurm names the GPU rules one by one: a dry run of every ready config
    (no cluster needed) catches a GPU rule it misses, or a CPU job it sends to the GPUs."""
    work = make_workdir(tmp_path, CONFIG)
    proc = subprocess.run(
        [str(SNAKEMAKE), "--profile", "profiles/slurm", "--dry-run", "--configfile", configfile],
        cwd=work,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs = _job_resources(proc.stdout)
    assert jobs, proc.stdout[-3000:]
    for rule, res in jobs:
        assert "mem_mb" in res and "runtime" in res, (rule, res)
        gpu = res.get("gpu", "0") != "0"
        assert res["slurm_partition"] == ("gpu" if gpu else "cpu"), (rule, res)
        if rule in MODEL_STAGES:
            # the rule's attempt-scaled requests, not the profile's defaults for CPU jobs
            assert res["gpu"] == "1" and res["mem_mb"] == "16000", (rule, res)


def test_overlay_leaves_resources_alone() -> None:
    """A later profile replaces whole keys: tests/slurm/profile must not touch the
    resources, or the SLURM run would not test profiles/slurm's."""
    overlay = yaml.safe_load((OVERLAY / "config.v8+.yaml").read_text())
    assert not {k for k in overlay if "resources" in k or k.startswith("set-")}


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
    slurm_cluster: None,
    tmp_path_factory: pytest.TempPathFactory,
    embedded_model: Path,
    package_copy: Path,
) -> tuple[Path, str]:
    """The tiny config through profiles/slurm; returns the workdir and Snakemake's log."""
    work = with_package(tmp_path_factory.mktemp("slurm_run"), package_copy)
    make_workdir(work, CONFIG, embedded_model)
    cpus = len(os.sched_getaffinity(0))
    cmd = [
        str(SNAKEMAKE),
        "--profile", "profiles/slurm",
        "--profile", str(OVERLAY),
        # sbatch refuses a job that asks for more CPUs than the node has
        "--max-threads", str(cpus),
        "--verbose",  # logs each sbatch call
        *TARGETS,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(work / "src")}  # sbatch --export=ALL passes it on
    try:
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=3600)
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


def _sbatch_calls(log: str) -> list[dict[str, str]]:
    """The options of each sbatch call the executor logged, with the rule it submitted."""
    calls = []
    for line in re.findall(r"^sbatch call: (.*)$", log, re.M):
        options = line.split(" --wrap=")[0]  # the job's own command line follows
        found = {
            "rule": r"slurm_logs/rule_(\w+)/",
            "partition": r" -p '?(\w+)",
            "mem": r" --mem (\d+)",
            "time": r" -t '?(\d+)",
            "gpus": r" --gpus=(\S+)",
            "gres": r" --gres=(\S+)",
        }
        calls.append({k: m[1] for k, p in found.items() if (m := re.search(p, options))})
    return calls


def test_every_job_went_through_sbatch(slurm_run: tuple[Path, str]) -> None:
    work, log = slurm_run
    planned = _job_stats(log)
    assert sum(planned.values()) >= 15, planned
    assert "localrule" not in log
    calls = _sbatch_calls(log)
    assert Counter(call["rule"] for call in calls) == planned
    for call in calls:
        if call["rule"] in MODEL_STAGES:
            # the rules' requests at attempt 1, in the profile's GPU partition
            assert call["gpus"] == "1" and call["partition"] == "gpu", call
            assert call["mem"] == "16000" and call["time"] in {"120", "240"}, call
        else:
            assert "gpus" not in call and "gres" not in call, call
            assert call["partition"] == "cpu" and call["mem"] == "4000", call
    submitted = re.findall(
        r"Job (\d+) has been submitted with SLURM jobid (\d+) "
        r"\(log: .*/slurm_logs/rule_(\w+)/",
        log,
    )
    assert Counter(rule for _, _, rule in submitted) == planned
    assert len({slurm_id for _, slurm_id, _ in submitted}) == len(submitted)
    finished = _jobcomp()
    for _, slurm_id, rule in submitted:
        job = finished[slurm_id]
        assert job["JobState"] == "COMPLETED" and job["WorkDir"] == str(work), job
        assert job["Partition"] == ("gpu" if rule in MODEL_STAGES else "cpu"), job


SLURM_TABLES = ["base", "truncated", "resampled", "elicited", "graded", "curves", "windows"]


@pytest.mark.parametrize("dataset", CONFIG["datasets"])
@pytest.mark.parametrize("table", SLURM_TABLES)
def test_slurm_tables_equal_a_local_run(
    slurm_run: tuple[Path, str], tiny_run: Path, dataset: str, table: str
) -> None:
    path = Path("results", MODEL, dataset, f"{table}.parquet")
    slurm = pl.read_parquet(slurm_run[0] / path)
    assert slurm.height > 0
    assert_frame_equal(slurm, pl.read_parquet(tiny_run / path))


def test_slurm_summary_equals_a_local_run(slurm_run: tuple[Path, str], tiny_run: Path) -> None:
    path = Path("results", MODEL, "summary.csv")
    assert (slurm_run[0] / path).read_text() == (tiny_run / path).read_text()
