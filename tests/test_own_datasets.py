"""Your own benchmark as a `datasets` mapping (critical_windows.data.benchmarks.custom_spec),
and the start-of-run checks of critical_windows.preflight."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from critical_windows import preflight
from critical_windows.cot import prompts
from critical_windows.data import benchmarks
from critical_windows.data.benchmarks import DatasetError
from critical_windows.grading import extraction
from critical_windows.io import tables

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SEED = 2243

# The three worked entries of the README ("Your own benchmark"), verbatim.
README_JSONL = """\
- name: mmlu_pro_sample
  path: data/mmlu_pro_sample.jsonl
  question: question
  choices: options          # one field holding the list of choices (here 10)
  gold: answer              # a letter, A-J
  id: question_id
  subject: category
  task: multiple choice
"""
README_CSV = """\
- name: capitals
  path: data/capitals.csv
  question: prompt
  choices: [option_1, option_2, option_3, option_4]   # one column per choice
  gold: correct             # the text of the right choice
  gold_format: text
  task: geography
  shuffle_choices: true     # the right answer is always option_1 in this file
"""
README_HUB = """\
- name: gsm8k
  hub: openai/gsm8k         # or a local folder in the hub layout
  subset: main
  split: test
  question: question
  gold: answer              # "... #### 72": see below
  answer_type: math
  task: math
"""

OPTIONS = [f"option {i}" for i in range(10)]


def entry(text: str, **changes: Any) -> dict[str, Any]:
    (parsed,) = yaml.safe_load(text)
    return {**parsed, **changes}


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def mmlu_pro_rows() -> list[dict[str, Any]]:
    return [
        {
            "question_id": 70 + i,
            "question": f"Question {i}?",
            "options": OPTIONS,
            "answer": "ABCDEFGHIJ"[(3 * i) % 10],
            "category": "physics" if i % 2 else "law",
        }
        for i in range(6)
    ]


def capitals_rows() -> list[dict[str, str]]:
    return [
        {"prompt": "Capital of France?", "option_1": "Paris", "option_2": "Lyon",
         "option_3": "Nice", "option_4": "Lille", "correct": "Paris"},
        {"prompt": "Capital of Peru?", "option_1": "Lima", "option_2": "Cusco",
         "option_3": "Arequipa", "option_4": "", "correct": "Lima"},
        {"prompt": "Capital of Chad?", "option_1": "N'Djamena", "option_2": "Moundou, Chad",
         "option_3": "Abeche", "option_4": "Sarh", "correct": "N'Djamena"},
    ]  # fmt: skip


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def prepare(spec: dict[str, Any], root: Path, **options: Any) -> tuple[pl.DataFrame, pl.DataFrame]:
    settings = {"n": None, "seed": SEED, "bad_rows": "error", **options}
    questions, rejects = benchmarks.prepare(
        spec, source="bundled", resources=ROOT / "resources/datasets", root=root, **settings
    )
    tables.conform(questions, tables.QUESTIONS, "questions")
    tables.conform(rejects, tables.REJECTS, "rejects")
    return questions, rejects


def test_readme_shows_the_tested_entries() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for text in (README_JSONL, README_CSV, README_HUB):
        assert text in readme


def test_jsonl_with_letter_gold_and_ten_options(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data/mmlu_pro_sample.jsonl", mmlu_pro_rows())
    questions, rejects = prepare(entry(README_JSONL), tmp_path)
    assert rejects.is_empty()
    assert questions["question_id"].to_list() == [f"mmlu_pro_sample-{70 + i}" for i in range(6)]
    row = questions.row(1, named=True)
    assert row["gold"] == "D"  # (3 * 1) % 10
    assert row["choices"] == OPTIONS
    assert row["problem"] == "Question 1?\n\n" + "\n".join(
        f"({letter}) option {i}" for i, letter in enumerate("ABCDEFGHIJ")
    )
    assert (row["task"], row["subject"], row["answer_type"]) == (
        "multiple choice",
        "physics",
        "multiple_choice",
    )
    assert questions["gold"].to_list() == ["A", "D", "G", "J", "C", "F"]
    drawn, _ = prepare(entry(README_JSONL), tmp_path, n=2)
    assert drawn.height == 2 and set(drawn["question_id"]) <= set(questions["question_id"])


def test_ten_options_reach_extraction_and_prompts() -> None:
    """MMLU-Pro's letters A-J: the extraction reads J, and the prompt lists (J)."""
    assert extraction.extract_letter("The answer is J", 10).answer == "J"
    assert extraction.extract_letter("The answer is (H).", 10).answer == "H"
    assert extraction.extract_letter("The answer is K", 10).answer is None
    problem = benchmarks.format_problem("Q?", OPTIONS)
    text = prompts.cot_messages(problem, "multiple choice")[1]["content"]
    assert "(J) option 9" in text


def test_csv_with_the_answer_as_text_shuffled(tmp_path: Path) -> None:
    write_csv(tmp_path / "data/capitals.csv", capitals_rows())
    questions, rejects = prepare(entry(README_CSV), tmp_path)
    assert rejects.is_empty()
    by_id = {r["question_id"]: r for r in questions.iter_rows(named=True)}
    for row, source in zip(
        [by_id[f"capitals-{i:04d}"] for i in range(3)], capitals_rows(), strict=True
    ):
        expected = [source[f"option_{k}"] for k in range(1, 5) if source[f"option_{k}"]]
        assert sorted(row["choices"]) == sorted(expected)  # the blank 4th option is dropped
        assert row["choices"][benchmarks.LETTERS.index(row["gold"])] == source["correct"]
        assert row["task"] == "geography"
    assert len(by_id["capitals-0001"]["choices"]) == 3
    assert by_id["capitals-0002"]["choices"].count("Moundou, Chad") == 1  # quoted comma
    golds = [by_id[f"capitals-{i:04d}"]["gold"] for i in range(3)]
    assert golds != ["A", "A", "A"]  # shuffled with the seed: not always the first
    again, _ = prepare(entry(README_CSV), tmp_path)
    assert again.equals(questions)
    other, _ = prepare(entry(README_CSV), tmp_path, seed=SEED + 1)
    assert other["choices"].to_list() != questions["choices"].to_list()


def gsm8k_rows() -> list[dict[str, str]]:
    return [
        {"question": "Natalia sold 48 clips in April and half as many in May. How many?",
         "answer": "In May she sold 48/2 = 24.\n48 + 24 = 72\n#### 72"},
        {"question": "A robe takes 2 bolts of blue fiber and half that white. How many?",
         "answer": "It takes 2/2=1 bolt of white fiber.\nSo 2+1=3\n#### 3"},
    ]  # fmt: skip


def write_hub_copy(root: Path, subset: str, split: str, rows: list[dict[str, Any]]) -> Path:
    """Parquet files laid out as on the hub, with the README card naming the subset."""
    (root / subset).mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), root / subset / f"{split}-00000-of-00001.parquet")
    card = [
        "---",
        "configs:",
        f"- config_name: {subset}",
        "  data_files:",
        f"  - split: {split}",
        f"    path: {subset}/{split}-*",
        "---",
        "",
    ]
    (root / "README.md").write_text("\n".join(card), encoding="utf-8")
    return root


def test_hub_dataset_from_a_local_copy_in_the_hub_layout(tmp_path: Path) -> None:
    """GSM8K's gold ends in "#### 72": a math gold is the text after the last ####."""
    import datasets as hf

    copy = write_hub_copy(tmp_path / "gsm8k", "main", "test", gsm8k_rows())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hf.config, "HF_HUB_OFFLINE", True)
        spec = benchmarks.custom_spec(entry(README_HUB, hub=str(copy)))
        rows = benchmarks.read_custom(spec, cache_dir=tmp_path / "cache")
        questions, rejects = benchmarks.build_tables(
            spec, rows, n=None, seed=SEED, bad_rows="error"
        )
    assert rejects.is_empty()
    assert questions["question_id"].to_list() == ["gsm8k-0000", "gsm8k-0001"]
    assert questions["gold"].to_list() == ["72", "3"]
    assert set(questions["answer_type"]) == {"math"} and set(questions["task"]) == {"math"}
    assert questions["choices"].to_list() == [[], []]
    assert questions["problem"][0] == gsm8k_rows()[0]["question"]


BAD = [
    ({"answer": "K"}, "gold letter 'K' is not among the choices A-J"),
    ({"question": "  "}, "question field 'question' is empty"),
    ({"options": ["only one"]}, "1 choice(s); a multiple-choice question needs at least 2"),
    ({"options": "not a list"}, "field 'options' is not a list (nor a JSON list)"),
    ({"answer": 3}, "gold field 'answer' holds 3, not a letter"),
    ({"category": None, "question": None}, "field 'question' is empty or not text"),
]


@pytest.mark.parametrize(("change", "reason"), BAD)
def test_bad_row_is_named_or_set_aside(tmp_path: Path, change: dict[str, Any], reason: str) -> None:
    rows = mmlu_pro_rows()
    rows[4] = {**rows[4], **change}
    write_jsonl(tmp_path / "data/mmlu_pro_sample.jsonl", rows)
    spec = entry(README_JSONL)
    message = f"dataset 'mmlu_pro_sample': data/mmlu_pro_sample.jsonl row 4: {reason}"
    with pytest.raises(DatasetError, match=re.escape(message)):
        prepare(spec, tmp_path)
    questions, rejects = prepare(spec, tmp_path, bad_rows="skip")
    assert rejects.rows() == [("mmlu_pro_sample", "data/mmlu_pro_sample.jsonl", 4, reason)]
    assert "mmlu_pro_sample-74" not in questions["question_id"].to_list()
    assert questions.height == 5


@pytest.mark.parametrize(
    ("spec_change", "row_change", "reason"),
    [
        ({}, {"correct": "Marseille"}, "gold 'Marseille' is not the text of any choice"),
        ({}, {"option_2": "Paris"}, "gold 'Paris' is the text of several choices"),
        ({"gold_format": "index"}, {"correct": "4"}, "gold index 4 is not among the 4 choices"),
        ({}, {"option_2": "", "option_3": "", "option_4": ""}, "1 choice(s)"),
        ({}, {"option_2": ""}, "choice (B) is empty"),
    ],
)
def test_bad_csv_row_is_named(
    tmp_path: Path, spec_change: dict[str, Any], row_change: dict[str, str], reason: str
) -> None:
    rows = capitals_rows()
    rows[0] = {**rows[0], **row_change}
    write_csv(tmp_path / "data/capitals.csv", rows)
    with pytest.raises(DatasetError, match=re.escape("data/capitals.csv row 0: " + reason)):
        prepare(entry(README_CSV, shuffle_choices=False, **spec_change), tmp_path)


def test_math_gold_without_an_answer_is_named(tmp_path: Path) -> None:
    rows = [
        {"q": "1+1?", "solution": "so $\\boxed{2}$"},
        {"q": "2+2?", "solution": "so $\\boxed{4"},
        {"q": "3+3?", "solution": "   "},
    ]
    write_jsonl(tmp_path / "m.parquet.jsonl", rows)
    spec = {"name": "m", "path": "m.parquet.jsonl", "question": "q", "gold": "solution",
            "answer_type": "math", "task": "math"}  # fmt: skip
    with pytest.raises(DatasetError, match=re.escape("m.parquet.jsonl row 1: math gold")):
        prepare(spec, tmp_path)
    questions, rejects = prepare(spec, tmp_path, bad_rows="skip")
    assert questions["gold"].to_list() == ["2"]
    assert rejects["row"].to_list() == [1, 2]
    assert all("has no answer math-verify can read" in r for r in rejects["reason"])


def test_parquet_file_with_index_gold(tmp_path: Path) -> None:
    rows = [{"q": f"Q{i}", "c": ["a", "b", "c"], "g": i % 3} for i in range(4)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "x.parquet")
    spec = {"name": "x", "path": "x.parquet", "question": "q", "choices": "c", "gold": "g",
            "gold_format": "index", "task": "letters"}  # fmt: skip
    questions, _ = prepare(spec, tmp_path)
    assert questions["gold"].to_list() == ["A", "B", "C", "A"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"path": None}, "datasets[2]: give exactly one of `path` (a local file) and `hub`"),
        ({"hub": "org/name"}, "datasets[2]: give exactly one of `path`"),
        ({"name": "mmlu"}, "datasets[2].name: 'mmlu' is a built-in dataset"),
        ({"name": "a/b"}, "datasets[2].name: 'a/b' must match"),
        ({"path": "x.txt"}, "datasets[2].path: x.txt: expected a .jsonl, .json, .csv, .parquet"),
        ({"split": "test"}, "datasets[2].split: only for a `hub` dataset"),
        ({"gold_format": "word"}, "datasets[2].gold_format: 'word'"),
        ({"choices": ["one"]}, "datasets[2].choices: a field holding a list, or a list of at"),
        ({"answer_type": "math"}, "datasets[2].choices: a math dataset has no choices"),
        ({"colour": "red"}, "datasets[2]: unknown field(s) colour"),
        ({"task": ""}, "datasets[2].task: required"),
    ],
)
def test_bad_entry_names_its_key(change: dict[str, Any], message: str) -> None:
    spec = {k: v for k, v in entry(README_JSONL, **change).items() if v is not None}
    with pytest.raises(DatasetError, match=re.escape(message)):
        benchmarks.custom_spec(spec, "datasets[2]")


# --- start-of-run checks --------------------------------------------------------------------


def test_preflight_names_missing_files_models_and_repeated_names(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data/mmlu_pro_sample.jsonl", mmlu_pro_rows())
    config = {
        "datasets": [
            "math",
            entry(README_JSONL),
            entry(README_CSV),
            entry(README_HUB, hub="./copies/gsm8k"),
            "math",
        ],
        "models": {
            "ok": {"path": "embedded"},
            "gone": {"path": "/nowhere/model"},
            "relative": {"path": "models/my/model"},
            "synthetic": {"path": "synthetic:sharp"},
        },
        "backend": "vllm",
    }
    with pytest.raises(preflight.ConfigError) as caught:
        preflight.check_config(config, tmp_path)
    assert str(caught.value).splitlines()[1:] == [
        "  datasets[2].path: dataset file data/capitals.csv does not exist",
        "  datasets[3].hub: dataset folder ./copies/gsm8k does not exist",
        "  datasets[4]: the name 'math' is also datasets[0]",
        "  models.gone.path: model folder /nowhere/model does not exist",
        "  models.relative.path: model folder models/my/model does not exist",
    ]
    write_csv(tmp_path / "data/capitals.csv", capitals_rows())
    config["datasets"] = config["datasets"][:3]
    config["models"] = {"ok": {"path": "embedded"}}
    preflight.check_config(config, tmp_path)


def test_preflight_hub_model_missing_from_the_cache_while_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    config = {"datasets": ["math"], "models": {"big": {"path": "org/not-here"}}}
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(preflight.ConfigError, match=re.escape("models.big.path: org/not-here")):
        preflight.check_config(config, tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # online: the hub is asked when the job runs
    preflight.check_config(config, tmp_path)


def test_preflight_server_that_does_not_answer(tmp_path: Path) -> None:
    config = {
        "datasets": ["math"],
        "models": {"m": {"path": "embedded"}},
        "backend": "openai",
        "server": {"url": "http://127.0.0.1:9/v1"},  # the discard port: nothing listens
    }
    with pytest.raises(preflight.ConfigError, match=re.escape("server.url: http://127.0.0.1:9/v1")):
        preflight.check_config(config, tmp_path)
    config["server"]["check"] = False
    preflight.check_config(config, tmp_path)
    # the other experiments would not reach the server: refused even in a dry run
    config["experiments"] = ["chain_of_thought", "structured"]
    with pytest.raises(preflight.ConfigError, match=re.escape("backend: openai with experiments")):
        preflight.check_config(config, tmp_path, run=False)


@pytest.mark.slow
def test_own_dataset_in_the_workflow_and_null_from_the_command_line(tmp_path: Path) -> None:
    """`--config questions_per_dataset=null` takes the whole split (not the string "null")."""
    from conftest import TINY_CONFIG, make_workdir, snakemake

    config = {**TINY_CONFIG, "datasets": ["math500", entry(README_JSONL)]}
    workdir = make_workdir(tmp_path / "run", config)
    write_jsonl(workdir / "data/mmlu_pro_sample.jsonl", mmlu_pro_rows())
    target = "results/datasets/mmlu_pro_sample.parquet"
    snakemake(workdir, target, "results/datasets/math500.parquet")
    assert pl.read_parquet(workdir / target).height == TINY_CONFIG["questions_per_dataset"]
    assert pl.read_parquet(workdir / "results/datasets/math500.parquet").height == 2
    snakemake(workdir, target, "--forcerun", "prepare_dataset", "--config",
              "questions_per_dataset=null")  # fmt: skip
    assert pl.read_parquet(workdir / target).height == len(mmlu_pro_rows())
