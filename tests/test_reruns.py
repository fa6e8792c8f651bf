"""Targeted reruns: what Snakemake plans after a change of config, of library code or of the
dataset list. One tiny run is made for real; each test changes a copy of it and reads the
plan from `snakemake --summary` (a dry run: one row per output file with its rule and
whether it would be remade)."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import E2E_CONFIG as CONFIG
from conftest import E2E_TARGETS as TARGETS
from conftest import MODEL, MODEL_STAGES, run_snakemake, snakemake
from polars.testing import assert_frame_equal

from critical_windows.io import tables

pytestmark = pytest.mark.slow

DETECTION_ONWARD = {"detect_windows", "summarize_run", "plot_figure", "build_explorer"}
GRADING_ONWARD = {"grade_answers"} | DETECTION_ONWARD
GENERATION_ONWARD = {
    *MODEL_STAGES,
    "gather_shards",
    "truncate_responses",
} | GRADING_ONWARD


def _copy_file(src: str, dst: str) -> None:
    # The model's files are never written again: link them instead of copying 260 MB.
    if f"{os.sep}results{os.sep}models{os.sep}" in src:
        os.link(src, dst)
    else:
        shutil.copy2(src, dst)


@pytest.fixture
def work(tiny_run: Path, tmp_path: Path) -> Path:
    """A copy of the finished run: outputs with their mtimes, the package copy, and
    Snakemake's records (.snakemake/metadata) of the params and code each job ran with."""
    dest = tmp_path / "work"
    shutil.copytree(tiny_run, dest, symlinks=True, copy_function=_copy_file)
    return dest


def set_config(work: Path, **changes) -> None:
    config = yaml.safe_load((work / "config.yaml").read_text())
    config.update(changes)
    (work / "config.yaml").write_text(yaml.safe_dump(config))


def plan(work: Path, *targets: str) -> list[dict[str, str]]:
    """`snakemake --summary`: one row per output file the targets need, with `rule`,
    `status` (why it is out of date) and `plan` ("update pending" or "no update")."""
    out = snakemake(work, "--summary", *(targets or TARGETS)).stdout
    rows = list(csv.DictReader(io.StringIO(out[out.index("output_file\t") :]), delimiter="\t"))
    assert rows, out
    return rows


def pending(rows: list[dict[str, str]]) -> dict[str, set[str]]:
    """Rule -> the output files it would remake."""
    jobs: dict[str, set[str]] = {}
    for row in rows:
        if row["plan"] == "update pending":
            jobs.setdefault(row["rule"], set()).add(row["output_file"])
    return jobs


def outputs(rows: list[dict[str, str]], rule: str) -> set[str]:
    return {row["output_file"] for row in rows if row["rule"] == rule}


def status(rows: list[dict[str, str]], rule: str) -> set[str]:
    return {row["status"] for row in rows if row["rule"] == rule}


def test_the_tiny_run_grades_its_answers(tiny_run: Path) -> None:
    """The end-to-end config reads an answer from every continuation and grades it, so the
    comparisons of its tables (reruns, SLURM against local) compare values, not nulls."""

    def graded(dataset: str) -> pl.DataFrame:
        path = tiny_run / "results" / MODEL / dataset / "graded.parquet"
        return tables.read_table(path, tables.GRADED)

    letters = graded("arc_easy")  # letter probabilities: an answer every time
    assert letters.height > 0 and letters["is_consistent"].is_not_null().all()
    assert letters["is_right"].is_not_null().all()
    assert graded("math")["is_consistent"].is_not_null().any()  # a boxed answer, graded
    for dataset in CONFIG["datasets"]:
        curves = pl.read_parquet(tiny_run / "results" / MODEL / dataset / "curves.parquet")
        assert curves["p_consistent"].is_not_null().any(), dataset


def test_a_copy_of_a_tiny_run_has_nothing_to_do(work: Path) -> None:
    rows = plan(work)
    assert pending(rows) == {}
    assert {row["rule"] for row in rows} >= GENERATION_ONWARD | {"prepare_dataset"}


def test_sampling_settings_rerun_generation_onward(work: Path) -> None:
    set_config(work, sampling={**CONFIG["sampling"], "temperature": 0.7})
    rows = plan(work)
    jobs = pending(rows)
    assert set(jobs) == GENERATION_ONWARD
    for rule in GENERATION_ONWARD:
        assert jobs[rule] == outputs(rows, rule), rule
    for rule in MODEL_STAGES:
        assert status(rows, rule) == {"params changed"}, rule


def test_window_thresholds_rerun_detection_onward(work: Path) -> None:
    set_config(work, windows={"jump": 0.4, "drop": 0.3, "fdr": 0.05})
    rows = plan(work)
    jobs = pending(rows)
    assert set(jobs) == DETECTION_ONWARD
    for rule in DETECTION_ONWARD:
        assert jobs[rule] == outputs(rows, rule), rule
    assert status(rows, "detect_windows") == {"params changed"}


@pytest.mark.parametrize(
    ("module", "rerun"),
    [
        ("cot/prompts", GENERATION_ONWARD),
        # the model stages import adaptive sampling (and its answer extraction) whatever the
        # strategy: their digests cover it, and their journals make the rerun cheap
        ("cot/adaptive", GENERATION_ONWARD),
        ("grading/grader", GRADING_ONWARD),
        ("analysis/windows", DETECTION_ONWARD),
        ("views/figures", {"plot_figure"}),
        ("views/templates/explorer", {"build_explorer"}),
        ("experiments/prefill/attack", set()),
    ],
)
def test_library_change_reruns_the_stages_that_use_it(
    work: Path, module: str, rerun: set[str]
) -> None:
    suffix = ".js" if "templates" in module else ".py"
    source = work / "src" / "critical_windows" / f"{module}{suffix}"
    assert not source.is_symlink() and not source.parent.is_symlink()
    source.write_text(source.read_text() + "\n# edited by test_reruns\n")
    rows = plan(work)
    jobs = pending(rows)
    assert set(jobs) == rerun
    for rule in rerun:
        assert jobs[rule] == outputs(rows, rule), rule


def test_adding_a_model_runs_only_its_jobs(work: Path) -> None:
    set_config(work, models={**CONFIG["models"], "second": {"path": "embedded"}})
    theirs = [t.replace(f"results/{MODEL}/", "results/second/") for t in TARGETS]
    rows = plan(work, *TARGETS, *theirs)
    jobs = pending(rows)
    assert set(jobs) == GENERATION_ONWARD
    for rule, files in jobs.items():
        assert all(f.startswith("results/second/") for f in files), (rule, files)
        assert files == outputs(rows, rule) - outputs(plan(work), rule), rule


def _journal_counts(log: Path, stage: str) -> tuple[int, int]:
    found = re.search(rf"{stage}: (\d+) requests, (\d+) already journaled", log.read_text())
    assert found, log.read_text()[-2000:]
    return int(found[1]), int(found[2])


def test_adding_a_dataset(work: Path, tiny_run: Path) -> None:
    """The new dataset is prepared alone, and the model stages generate only its requests.

    The model stages run as one job per (model, shard) over every dataset, so that an
    engine starts once per stage; a new dataset changes the input set of those jobs, so
    they re-run, and Snakemake plans everything downstream of them again for every
    dataset (it cannot know that the old datasets' tables come out the same). Their
    journal (results/{model}/.journal) holds every finished request, so the engine only
    sees the new dataset's requests, and the old datasets' tables come out identical."""
    old = CONFIG["datasets"]
    set_config(work, datasets=[*old, "logiqa"])
    rows = plan(work)
    jobs = pending(rows)
    assert jobs["prepare_dataset"] == {
        "results/datasets/logiqa.parquet",
        "results/datasets/logiqa.rejects.parquet",
    }
    assert "materialize_embedded_model" not in jobs
    for stage in MODEL_STAGES:
        assert jobs[stage] == outputs(rows, stage), stage
        assert status(rows, stage) == {"set of input files changed", "missing"}, stage
    # Everything else is planned again, for every dataset.
    assert set(jobs) == GENERATION_ONWARD | {"prepare_dataset"}
    for rule in GENERATION_ONWARD:
        assert jobs[rule] == outputs(rows, rule), rule

    tables = ["base", "truncated", "resampled", "elicited"]
    run_snakemake(
        work, *(f"results/{MODEL}/{ds}/{t}.parquet" for ds in [*old, "logiqa"] for t in tables)
    )
    # With the forced readout, resample_prefixes elicits every answer in its own engine:
    # elicit_answers then finds all of its requests journaled, in both runs.
    fused = {"elicit_answers"} if CONFIG["elicitation"] == "forced" else set()
    for stage in MODEL_STAGES:
        log = Path("results/logs", MODEL, stage, "000.log")
        before, first = _journal_counts(tiny_run / log, stage)
        total, journaled = _journal_counts(work / log, stage)
        if stage in fused:
            assert first == before and journaled == total > before, stage
        else:
            assert first == 0 and journaled == before < total, stage
    for ds in old:
        for t in tables:
            path = Path("results", MODEL, ds, f"{t}.parquet")
            assert_frame_equal(pl.read_parquet(work / path), pl.read_parquet(tiny_run / path))


def test_code_edit_reruns_the_model_stages_but_generates_nothing(
    work: Path, tiny_run: Path
) -> None:
    """A comment edited in the generation code reruns the model stages (Snakemake tracks
    the code they run), but their journal keys hold only what the output depends on
    (model, backend and version, prompt ids, sampling), so every request is found there
    and the tables come out identical."""
    source = work / "src" / "critical_windows" / "cot" / "generation.py"
    source.write_text(source.read_text() + "\n# a comment edited by test_reruns\n")
    jobs = pending(plan(work))
    assert set(MODEL_STAGES) <= set(jobs)
    tables = ["base", "truncated", "resampled", "elicited"]
    targets = [f"results/{MODEL}/{ds}/{t}.parquet" for ds in CONFIG["datasets"] for t in tables]
    run_snakemake(work, *targets)
    for stage in MODEL_STAGES:
        log = Path("results/logs", MODEL, stage, "000.log")
        total, journaled = _journal_counts(work / log, stage)
        assert total == journaled == _journal_counts(tiny_run / log, stage)[0] > 0, stage
    for path in targets:
        assert_frame_equal(pl.read_parquet(work / path), pl.read_parquet(tiny_run / path))
