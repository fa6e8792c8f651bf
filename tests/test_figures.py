"""Every figure of a small fake run, as HTML and PNG; the report stage of the workflow."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from test_windows import FAKE_TEXTS, detect_fake_run, write_fake_run

from critical_windows import catalog
from critical_windows.analysis import summary
from critical_windows.views import figures

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    write_fake_run(root)
    curves, windows = detect_fake_run(root)
    return root, curves, windows


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_MAGIC, f"{path} is not a PNG"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


@pytest.mark.parametrize("name", list(figures.FIGURES))
def test_every_figure_is_written_as_html_and_png(fake_run, tmp_path, name):
    _, curves, windows = fake_run
    html, png = tmp_path / f"{name}.html", tmp_path / f"{name}.png"
    figures.render(name, curves, windows, html, png)
    width, height = _png_size(png)
    assert width > 300 and height > 200
    page = html.read_text()
    assert "vegaEmbed" in page and "https://cdn" not in page, "the HTML must be self-contained"
    assert len(page) > 100_000
    assert not list(tmp_path.glob(".*.tmp")), "temporary files left behind"


def test_unknown_figure_is_refused_by_name(fake_run, tmp_path):
    _, curves, windows = fake_run
    with pytest.raises(ValueError, match="unknown figure 'nope'; known figures: accuracy,"):
        figures.render("nope", curves, windows, tmp_path / "a.html", tmp_path / "a.png")


def _chart_rows(chart) -> list[dict]:
    spec = chart.to_dict()
    return [row for rows in spec["datasets"].values() for row in rows]


def test_accuracy_by_window_shows_the_summary_numbers(fake_run):
    _, curves, windows = fake_run
    numbers = summary.summarize(curves, windows, "fake").filter(pl.col("dataset") == "math")
    chart = figures.accuracy_by_window(curves, windows)
    rows = {r["group"]: r for r in _chart_rows(chart) if r["dataset"] == "math"}
    assert rows["with window"]["share"] == pytest.approx(numbers["accuracy_with_window"].item())
    assert rows["without window"]["share"] == pytest.approx(
        numbers["accuracy_without_window"].item()
    )


def test_window_share_counts_rule_and_significant_windows(fake_run):
    _, curves, windows = fake_run
    rows = _chart_rows(figures.window_share(curves, windows))
    logiqa = {r["call"]: r for r in rows if r["dataset"] == "logiqa"}
    found = windows.filter((pl.col("dataset") == "logiqa") & pl.col("has_window").is_not_null())
    assert logiqa["research rule"]["k"] == found["has_window"].sum()
    assert logiqa["research rule"]["n"] == found.height == 7
    assert (
        logiqa["rule and significant jump"]["k"]
        == (found["has_window"] & found["significant"]).sum()
    )


def test_question_curves_are_bounded_and_windows_come_first(fake_run):
    _, curves, windows = fake_run
    many = pl.concat([windows.with_columns(pl.col("question_id") + f"-{i}") for i in range(5)])
    picked = figures.pick_questions(many, figures.QUESTION_CURVES)
    assert picked.height == figures.QUESTION_CURVES
    assert picked["has_window"].all()
    assert set(picked["dataset"]) == set(FAKE_TEXTS)


def test_figures_without_any_window_still_render(fake_run, tmp_path):
    _, curves, windows = fake_run
    none = windows.with_columns(has_window=pl.col("has_window") & False)
    for name in ("window_positions", "question_curves", "accuracy_by_window"):
        figures.render(name, curves, none, tmp_path / f"{name}.html", tmp_path / f"{name}.png")
        assert _png_size(tmp_path / f"{name}.png")[0] > 100


def test_the_catalog_lists_every_figure_with_its_caption():
    """The workflow asks for the figures of the catalog; each is drawn and has a caption."""
    assert tuple(figures.FIGURES) == catalog.FIGURES
    for name in figures.FIGURES:
        assert (REPO / "workflow" / "report" / f"{name}.rst").is_file()


MINI_SNAKEFILE = """\
from snakemake.utils import validate


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/windows.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        final_targets(),
    default_target: True
"""


@pytest.mark.slow
def test_workflow_builds_summary_figures_explorer_and_report(tmp_path):
    """The windows and report rules on fake upstream tables, then `snakemake --report`."""
    (tmp_path / "src").symlink_to(REPO / "src")
    (tmp_path / "workflow").symlink_to(REPO / "workflow")
    (tmp_path / "Snakefile").write_text(MINI_SNAKEFILE)
    (tmp_path / "config.yaml").write_text(
        "models: {fake: {path: embedded}}\n"
        f"datasets: [{', '.join(FAKE_TEXTS)}]\n"
        "shards: 1\n"
        "windows: {jump: 0.5, drop: 0.3, fdr: 0.05}\n"
    )
    write_fake_run(tmp_path)
    snakemake = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or "snakemake"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}

    def run(*args: str) -> None:
        done = subprocess.run(
            [snakemake, *args], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    run("--cores", str(min(4, os.cpu_count() or 1)))
    out = tmp_path / "results" / "fake"
    for name in figures.FIGURES:
        assert _png_size(out / "figures" / f"{name}.png")[0] > 100
        assert (out / "figures" / f"{name}.html").stat().st_size > 100_000
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["dataset"] for r in rows] == [*FAKE_TEXTS, "all"]
    assert rows[-1]["n_questions"] == "24"
    assert "| math | 8 |" in (out / "summary.md").read_text()
    assert 'data-status="pending"' in (out / "explorer.html").read_text()
    for dataset in FAKE_TEXTS:
        assert (out / dataset / "windows.parquet").is_file()

    run("--report", "report.html")
    report = (tmp_path / "report.html").read_text()
    for caption in (
        "Accuracy per dataset: chain of thought, direct answer and stump.",
        "Accuracy of questions without and with a critical window.",
        "Individual consistency curves.",
        "Headline numbers of the run",
        "Explorer.",
    ):
        assert caption in report, caption


@pytest.mark.parametrize("name", ["window_share", "accuracy_by_window"])
def test_figures_without_graded_answers_still_render(tmp_path, name):
    """A tiny run whose answers all went missing: a message, not a failed PNG export."""
    windows = pl.DataFrame(
        {"dataset": ["math", "mmlu"], "has_window": [None, None]},
        schema={"dataset": pl.String, "has_window": pl.Boolean},
    ).with_columns(significant=pl.lit(None, pl.Boolean), orig_is_right=pl.lit(None, pl.Boolean))
    figures.save(figures.FIGURES[name](None, windows), tmp_path / "f.html", tmp_path / "f.png")
    assert _png_size(tmp_path / "f.png")[0] > 100
