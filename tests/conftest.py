"""Shared fixtures: the embedded model, and copies of the workflow to run Snakemake in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_CACHE_ROOT", str(ROOT / ".vllm_cache"))

# A run small enough for CI that still goes through every stage with the real model.
TINY_CONFIG = {
    "models": {"smollm2": {"path": "embedded"}},
    "datasets": ["math", "arc_easy"],
    "questions_per_dataset": 2,
    "seed": 2243,
    "engine": {"dtype": "float32", "max_model_len": 2048, "cpu_kv_cache_gib": 1},
    "sampling": {"temperature": 0.6, "top_p": 0.9, "max_tokens": 48},
    "levels": [0.3, 0.7],
    "samples_per_level": 2,
    "elicitation_max_tokens": 32,
}


@pytest.fixture(scope="session")
def embedded_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct as a safetensors folder, built once per test session."""
    from critical_windows.engine.models import materialize_embedded

    return materialize_embedded(tmp_path_factory.mktemp("model") / "embedded")


def make_workdir(path: Path, config: dict, model: Path | None = None) -> Path:
    """A copy of the workflow at `path` with `config` as its config.yaml. A prebuilt
    embedded model is linked in so that runs skip materialising it."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "Snakefile", path / "Snakefile")
    shutil.copytree(ROOT / "workflow", path / "workflow", dirs_exist_ok=True)
    for name in ("resources", "src", "profiles"):
        if not (path / name).exists():
            (path / name).symlink_to(ROOT / name)
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    if model is not None:
        target = path / "results" / "models" / "embedded"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            shutil.copytree(model, target)
    return path


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run Snakemake in `workdir`; on failure show its output and the failing job's log."""
    proc = subprocess.run(
        [str(SNAKEMAKE), "--cores", "2", "--resources", "gpu=1", "--nolock", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    if check and proc.returncode != 0:
        logs = "\n".join(
            f"--- {p}\n{p.read_text()[-3000:]}" for p in (workdir / "results/logs").rglob("*.log")
        )
        raise AssertionError(
            f"snakemake {args} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}\n{logs}"
        )
    return proc


# --- the shared tiny run ------------------------------------------------------------------

MODEL = "smollm2"
MODEL_STAGES = ["generate_base", "resample_prefixes", "elicit_answers"]
# The tiny config with answers read by the forced readout and letter probabilities: every
# answer of the embedded model is graded, so comparisons of its tables compare values.
E2E_CONFIG = {
    **TINY_CONFIG,
    "questions_per_dataset": 1,
    "elicitation": "forced",
    "answer_readout": "logprobs",
}
# Two figures stand for all seven (tests/test_figures.py draws every one).
E2E_FIGURES = ["accuracy", "consistency"]
E2E_TARGETS = [
    f"results/{MODEL}/summary.csv",
    f"results/{MODEL}/summary.md",
    f"results/{MODEL}/explorer.html",
    *(f"results/{MODEL}/figures/{f}.{ext}" for f in E2E_FIGURES for ext in ("html", "png")),
]


@pytest.fixture(scope="session")
def package_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the package for the runs that compare code digests: edits to the
    repository while the tests run change neither the digests nor what the runs import."""
    copy = tmp_path_factory.mktemp("package") / "src"
    shutil.copytree(ROOT / "src", copy, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return copy


def with_package(work: Path, package: Path) -> Path:
    """Gives `work` its own copy of the package (make_workdir links the repository's);
    run_snakemake puts it first on PYTHONPATH."""
    shutil.copytree(package, work / "src")
    return work


def run_snakemake(work: Path, *args: str) -> subprocess.CompletedProcess:
    """`snakemake`, importing the workdir's copy of the package."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYTHONPATH", str(work / "src"))
        return snakemake(work, *args)


@pytest.fixture(scope="session")
def tiny_run(
    tmp_path_factory: pytest.TempPathFactory, embedded_model: Path, package_copy: Path
) -> Path:
    """E2E_CONFIG run once per session through profiles/local, up to E2E_TARGETS: the run
    that tests reading a real run's tables share (reruns, SLURM against local)."""
    work = with_package(tmp_path_factory.mktemp("tiny_run"), package_copy)
    make_workdir(work, E2E_CONFIG, embedded_model)
    run_snakemake(work, "--profile", "profiles/local", *E2E_TARGETS)
    return work
