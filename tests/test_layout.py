"""The package's layout: imports only go down the stages, the workflow parses without the
heavy libraries, each stage's code digest covers what the stage imports, and two runs'
tables compare value for value."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from critical_windows.code_digest import PACKAGE, imported_modules, stage_code
from critical_windows.io import compare

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "workflow" / "scripts"
BIN = Path(sys.executable).parent


def test_import_contracts_hold() -> None:
    """pyproject.toml's contracts: layers top to bottom, experiments independent, and the
    modules read at parse time free of heavy imports."""
    proc = subprocess.run(
        [str(BIN / "lint-imports")], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_the_workflow_parses_without_the_heavy_libraries() -> None:
    code = (
        "import sys\n"
        "import critical_windows.catalog, critical_windows.code_digest\n"
        "import critical_windows.experiments.likelihood.sources\n"
        "heavy = ('polars', 'pyarrow', 'numpy', 'altair', 'torch', 'transformers', 'vllm')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_engine_finds_the_repository_root() -> None:
    """vLLM's cache goes to the repository's .vllm_cache (git-ignored), not into src/."""
    from critical_windows.engine.types import PROJECT_ROOT

    assert PROJECT_ROOT == ROOT and (PROJECT_ROOT / "pyproject.toml").is_file()


def _names(script: str) -> set[str]:
    return {str(p.relative_to(PACKAGE)) for p in imported_modules(SCRIPTS / f"{script}.py")}


def test_stage_code_follows_the_imports_of_each_stage() -> None:
    model_stage = _names("run_model_stage")
    # direct, transitive and function-level imports (the registry loads backends lazily)
    assert {"cot/runner.py", "cot/generation.py", "engine/journal.py"} <= model_stage
    assert {"engine/vllm_backend.py", "engine/synthetic.py", "cot/adaptive.py"} <= model_stage
    assert "views/figures.py" not in model_stage and "grading/grader.py" not in model_stage
    figure = _names("plot_figure")
    assert "views/figures.py" in figure and not any(n.startswith("engine/") for n in figure)
    assert "views/templates/explorer.js" in _names("build_explorer")
    assert not any("templates" in n for n in figure)  # figures read no template


def test_stage_code_changes_with_the_code_and_not_with_the_checkout(tmp_path: Path) -> None:
    script = tmp_path / "plot_figure.py"
    shutil.copy(SCRIPTS / "plot_figure.py", script)
    assert stage_code(script) == stage_code(SCRIPTS / "plot_figure.py")
    script.write_text(script.read_text() + "\n# an edit\n")
    assert stage_code(script) != stage_code(SCRIPTS / "plot_figure.py")


def test_stage_code_reads_the_package_it_is_given(tmp_path: Path) -> None:
    """The workflow digests its own checkout's package, whichever copy Python imports."""
    copy = tmp_path / "critical_windows"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    script = SCRIPTS / "plot_figure.py"
    assert stage_code(script, copy) == stage_code(script)
    figures = copy / "views" / "figures.py"
    figures.write_text(figures.read_text() + "\n# an edit\n")
    assert stage_code(script, copy) != stage_code(script)
    assert stage_code(SCRIPTS / "grade_answers.py", copy) == stage_code(
        SCRIPTS / "grade_answers.py"
    )


def _run(root: Path, values: list[float]) -> Path:
    (root / "smollm2" / "math").mkdir(parents=True)
    frame = pl.DataFrame({"question_id": ["a", "b"], "p": values})
    frame.write_parquet(root / "smollm2" / "math" / "curves.parquet")
    (root / "smollm2" / ".journal").mkdir()
    pl.DataFrame({"x": values}).write_parquet(root / "smollm2" / ".journal" / "j.parquet")
    return root


def test_compare_runs_finds_a_changed_value(tmp_path: Path, capsys) -> None:
    a = _run(tmp_path / "a", [0.1, 0.2])
    b = _run(tmp_path / "b", [0.1, 0.2])
    assert compare.main([str(a), str(b)]) == 0
    assert "1 of 1 tables identical" in capsys.readouterr().out
    c = _run(tmp_path / "c", [0.1, 0.3])
    assert compare.main([str(a), str(c)]) == 1
    assert "smollm2/math/curves.parquet: column p: 1 rows differ" in capsys.readouterr().out
    (c / "smollm2" / "math" / "curves.parquet").unlink()
    assert compare.compare_runs(a, c) == {"smollm2/math/curves.parquet": [f"only in {a}"]}


def test_compare_refuses_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        compare.main([str(tmp_path), str(tmp_path / "nope")])
