"""Tests of critical_windows.data.benchmarks on the files shipped in resources/datasets."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from critical_windows.data import benchmarks
from critical_windows.data.benchmarks import DatasetError
from critical_windows.io import tables

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # `datasets` is imported later, lazily

RESOURCES = Path(__file__).resolve().parents[1] / "resources" / "datasets"
SEED = 2243

SPLIT_SIZES = {
    "math": 5000,
    "logiqa": 651,
    "truthfulqa": 817,
    "arc_challenge": 1172,
    "arc_easy": 2376,
    "mmlu": 14042,
    "aqua_rat": 254,
    "math500": 500,
}


def prepare(dataset: str, resources: Path = RESOURCES, **options: Any) -> pl.DataFrame:
    settings = {"source": "bundled", "n": None, "seed": SEED, "bad_rows": "error", **options}
    questions, rejects = benchmarks.prepare(dataset, resources=resources, **settings)
    assert rejects.is_empty()
    return questions


@pytest.fixture(scope="module")
def full() -> dict[str, pl.DataFrame]:
    return {name: prepare(name) for name in benchmarks.DATASETS}


def _logiqa_reordered() -> set[str]:
    """The LogiQA blocks whose option lines are not in A, B, C, D order but are a permutation."""
    lines = (RESOURCES / "logiqa" / "Test.txt").read_text(encoding="utf-8").split("\n")
    firsts = ["".join(line[:1] for line in lines[i + 4 : i + 8]) for i in range(0, len(lines), 8)]
    return {
        f"logiqa-{row:04d}"
        for row, letters in enumerate(firsts)
        if letters != "ABCD" and sorted(letters) == list("ABCD")
    }


LOGIQA_REORDERED = _logiqa_reordered()


def by_id(questions: pl.DataFrame, question_id: str) -> dict[str, Any]:
    rows = questions.filter(pl.col("question_id") == question_id).to_dicts()
    assert len(rows) == 1, question_id
    return rows[0]


# --- whole splits -------------------------------------------------------------------------


def test_every_dataset_is_covered() -> None:
    assert set(benchmarks.DATASETS) == set(SPLIT_SIZES)


@pytest.mark.parametrize("dataset", list(SPLIT_SIZES))
def test_full_split_matches_the_published_size_and_schema(
    full: dict[str, pl.DataFrame], dataset: str
) -> None:
    questions = full[dataset]
    assert len(questions) == SPLIT_SIZES[dataset]
    tables.conform(questions, tables.QUESTIONS, dataset)
    ids = questions["question_id"].to_list()
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(i.startswith(f"{dataset}-") for i in ids)
    assert set(questions["dataset"]) == {dataset}
    assert set(questions["task"]) == {benchmarks.TASKS[dataset]}


@pytest.mark.parametrize("dataset", [d for d in SPLIT_SIZES if d not in ("math", "math500")])
def test_multiple_choice_gold_is_one_of_the_row_s_letters(
    full: dict[str, pl.DataFrame], dataset: str
) -> None:
    for row in full[dataset].iter_rows(named=True):
        letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: len(row["choices"])]
        assert row["answer_type"] == "multiple_choice"
        assert len(row["gold"]) == 1 and row["gold"] in letters, row["question_id"]
        assert row["problem"].endswith(f"({letters[-1]}) {row['choices'][-1]}")


def test_task_words_follow_the_method() -> None:
    assert benchmarks.TASKS == {
        "math": "math",
        "logiqa": "logic",
        "truthfulqa": "true or false",
        "arc_challenge": "science",
        "arc_easy": "science",
        "mmlu": "multiple choice",
        "aqua_rat": "math",
        "math500": "math",
    }


# --- real rows ----------------------------------------------------------------------------


def test_math_row_keeps_problem_subject_and_level(full: dict[str, pl.DataFrame]) -> None:
    row = by_id(full["math"], "math-0000")
    assert row["problem"] == (
        "How many vertical asymptotes does the graph of $y=\\frac{2}{x^2+x-6}$ have?"
    )
    assert row["gold"] == "2"
    assert row["choices"] == []
    assert (row["answer_type"], row["subject"], row["level"]) == ("math", "Algebra", "Level 3")
    assert row["source_row"] == 0


def test_math_gold_handles_nested_braces_and_takes_the_last_box(
    full: dict[str, pl.DataFrame],
) -> None:
    math = full["math"]
    assert by_id(math, "math-0015")["gold"] == "\\frac{11}{2}"
    assert by_id(math, "math-0091")["gold"] == "161"  # an earlier \boxed holds a fraction
    # "-3", then "Note: $\boxed{3}$ is also accepted": the derived answer (golds.py)
    assert by_id(math, "math-0333")["gold"] == "-3"
    assert by_id(math, "math-0414")["gold"] == "-2, 1"  # "the answers are -2 and 1"


def test_math_gold_equals_the_math500_answer_field(full: dict[str, pl.DataFrame]) -> None:
    """MATH500 ships its own `answer` column for 500 of the 5000 problems."""
    gold = dict(zip(full["math"]["problem"], full["math"]["gold"], strict=True))
    lines = (RESOURCES / "math" / "math500_test.jsonl").read_text(encoding="utf-8").splitlines()
    subset = [json.loads(line) for line in lines]
    assert len(subset) == 500
    assert [gold[r["problem"].strip()] for r in subset] == [r["answer"] for r in subset]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so $\\boxed{\\frac{\\sqrt{3}}{2}}$.", "\\frac{\\sqrt{3}}{2}"),
        ("$\\boxed{1}$ or $\\boxed{2}$", "2"),
        ("the answer is $\\boxed 5$.", "5"),
        ("\\fbox{x+1} done", "x+1"),
        ("$\\boxed{\\{1, 2\\}}$", "\\{1, 2\\}"),
        ("$\\boxed {7}$", "7"),
        ("$\\boxed{3}$ and then $\\boxed{4$", "3"),  # the last box never closes
        ("no box here", None),
        ("\\boxedfoo{1}", None),
    ],
)
def test_last_boxed(text: str, expected: str | None) -> None:
    assert benchmarks.last_boxed(text) == expected


def test_logiqa_block_is_split_into_question_and_stripped_choices(
    full: dict[str, pl.DataFrame],
) -> None:
    row = by_id(full["logiqa"], "logiqa-0000")
    assert row["problem"].startswith("In the planning of a new district in a township")
    assert (
        "\nBased on the above statement, which of the following can be derived?\n\n(A) "
        in (row["problem"])
    )
    assert row["choices"][0] == "Civic Park is north of the administrative service area"
    assert row["choices"][3] == "The business district is southeast of the leisure area"
    assert row["gold"] == "A"


def test_logiqa_odd_option_prefixes(full: dict[str, pl.DataFrame]) -> None:
    logiqa = full["logiqa"]
    third = by_id(logiqa, "logiqa-0002")  # "A No dangshen": a space instead of "A."
    assert third["choices"] == ["No dangshen", "No Shouwu", "有 白 术", "不 白 术"]
    assert third["gold"] == "B"
    question_marks = by_id(logiqa, "logiqa-0010")  # "A? Many Chinese people ..."
    assert question_marks["choices"][0].startswith("Many Chinese people buy homes")
    garbled = by_id(logiqa, "logiqa-0524")  # the source lost this line's prefix: keep it whole
    assert garbled["choices"][0].startswith("When the land in City A.B was listed")
    assert by_id(logiqa, "logiqa-0594")["gold"] == "C"


def test_logiqa_options_listed_a_c_b_d_are_put_in_letter_order(
    full: dict[str, pl.DataFrame],
) -> None:
    """Block 108 lists A, C, B, D; its answer "b" is the line "B.No.2 valve and No.3 valve."
    (valve 1 open forces 2 open and 5 closed, so 4 closed, so 3 open)."""
    row = by_id(full["logiqa"], "logiqa-0108")
    assert row["choices"] == [
        "No.2 valve and No.4 valve.",
        "No.2 valve and No.3 valve.",
        "No.3 valve and No.5 valve.",
        "No.4 valve and No.5 valve.",
    ]
    assert row["gold"] == "B"
    assert len(LOGIQA_REORDERED) == 19


def test_truthfulqa_choices_are_shuffled_so_gold_is_not_always_a(
    full: dict[str, pl.DataFrame],
) -> None:
    tqa = full["truthfulqa"]
    source = json.loads((RESOURCES / "truthfulqa" / "mc_task.json").read_text(encoding="utf-8"))
    for row in tqa.iter_rows(named=True):
        original = list(source[row["source_row"]]["mc1_targets"])
        assert sorted(row["choices"]) == sorted(original)
        assert row["choices"]["ABCDEFGHIJKLM".index(row["gold"])] == original[0]
    share_a = (tqa["gold"] == "A").mean()
    assert share_a < 0.35
    first = by_id(tqa, "truthfulqa-0000")
    assert first["problem"].startswith(
        "What is the smallest country in the world that is at least one square mile in area?\n\n"
    )


def test_truthfulqa_shuffle_is_fixed_by_the_seed_not_by_the_draw(
    full: dict[str, pl.DataFrame],
) -> None:
    whole = full["truthfulqa"]
    drawn = prepare("truthfulqa", n=40)
    assert (
        drawn.to_dicts()
        == whole.filter(pl.col("question_id").is_in(drawn["question_id"].to_list())).to_dicts()
    )
    other_seed = prepare("truthfulqa", seed=SEED + 1)
    assert other_seed["question_id"].to_list() == whole["question_id"].to_list()
    assert (other_seed["gold"] != whole["gold"]).sum() > 100


def test_arc_numeric_labels_become_letters(full: dict[str, pl.DataFrame]) -> None:
    row = by_id(full["arc_challenge"], "arc_challenge-NYSEDREGENTS_2008_8_11")
    assert row["problem"] == (
        "What is the nutrient source for some fungi?\n\n"
        "(A) sunlight\n(B) oxygen\n(C) carbon dioxide\n(D) dead organisms"
    )
    assert row["gold"] == "D"  # answerKey "4"
    three = by_id(full["arc_challenge"], "arc_challenge-NYSEDREGENTS_2012_8_42")
    assert (three["choices"], three["gold"]) == (["decrease", "increase", "remain the same"], "B")


def test_arc_three_and_five_choices(full: dict[str, pl.DataFrame]) -> None:
    sizes = full["arc_challenge"]["choices"].list.len().value_counts().sort("choices")
    assert sizes.rows() == [(3, 4), (4, 1165), (5, 3)]
    five = by_id(full["arc_easy"], "arc_easy-TIMSS_1995_8_P4")
    assert five["gold"] == "E"
    assert five["problem"].endswith("(E) It is using less energy than when it is active.")


def test_mmlu_quoted_newline_and_subject(full: dict[str, pl.DataFrame]) -> None:
    row = by_id(full["mmlu"], "mmlu-college_biology-0013")
    assert row["problem"] == (
        "A cell nucleus contains which of the following?\nI. DNA\nII. Protein\nIII. RNA\n\n"
        "(A) I only\n(B) II only\n(C) III only\n(D) I, II, and III"
    )
    assert (row["gold"], row["subject"], row["source_row"]) == ("D", "college_biology", 13)
    counts = dict(full["mmlu"]["subject"].value_counts().rows())
    assert len(counts) == 57
    assert (counts["professional_law"], counts["moral_scenarios"]) == (1534, 895)


def test_aqua_option_prefixes_are_stripped(full: dict[str, pl.DataFrame]) -> None:
    row = by_id(full["aqua_rat"], "aqua_rat-0001")
    assert row["choices"] == ["$61", "$65", "$67.40", "$70", "$78.20"]
    assert row["gold"] == "E"
    assert row["problem"].endswith("\n\n(A) $61\n(B) $65\n(C) $67.40\n(D) $70\n(E) $78.20")


# --- the draw -----------------------------------------------------------------------------


def test_same_seed_same_questions_other_seed_other_questions() -> None:
    first = prepare("mmlu", n=20)
    assert len(first) == 20
    assert first.equals(prepare("mmlu", n=20))
    other = prepare("mmlu", n=20, seed=SEED + 1)
    assert set(first["question_id"]) != set(other["question_id"])
    assert first["question_id"].to_list() == sorted(first["question_id"])


def test_a_smaller_draw_is_part_of_a_larger_one() -> None:
    small = set(prepare("arc_easy", n=5)["question_id"])
    assert small <= set(prepare("arc_easy", n=50)["question_id"])


def test_n_larger_than_the_split_takes_it_all(full: dict[str, pl.DataFrame]) -> None:
    assert prepare("aqua_rat", n=10_000).equals(full["aqua_rat"])


def test_draw_is_pinned() -> None:
    """The draw and the TruthfulQA shuffle must be the same on every machine: pin them."""
    ids = [f"q-{i:03d}" for i in range(100)]
    assert benchmarks.draw(ids, 3, 0) == ["q-036", "q-082", "q-085"]
    assert benchmarks.draw(reversed(ids), 3, 0) == ["q-036", "q-082", "q-085"]
    assert prepare("mmlu", n=3)["question_id"].to_list() == [
        "mmlu-college_chemistry-0075",
        "mmlu-marketing-0228",
        "mmlu-philosophy-0128",
    ]
    truthfulqa = prepare("truthfulqa", n=3)
    assert truthfulqa["question_id"].to_list() == [
        "truthfulqa-0272",
        "truthfulqa-0409",
        "truthfulqa-0454",
    ]
    assert truthfulqa["gold"].to_list() == ["C", "A", "B"]
    with pytest.raises(ValueError, match="n must be positive"):
        benchmarks.draw(ids, 0, 0)


# --- malformed rows -----------------------------------------------------------------------


def corrupt_lines(edit: Callable[[list[str]], None]) -> Callable[[str], str]:
    def apply(text: str) -> str:
        lines = text.split("\n")
        edit(lines)
        return "\n".join(lines)

    return apply


def _mmlu_drop_choice(text: str) -> str:
    rows = list(csv.reader(io.StringIO(text, newline="")))
    del rows[12][3]
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def _json_edit(row: int, edit: Callable[[dict[str, Any]], None]) -> Callable[[str], str]:
    def apply(lines: list[str]) -> None:
        item = json.loads(lines[row])
        edit(item)
        lines[row] = json.dumps(item)

    return corrupt_lines(apply)


def _tqa_two_right(text: str) -> str:
    items = json.loads(text)
    first = items[7]["mc1_targets"]
    first[list(first)[1]] = 1
    return json.dumps(items)


def _set(*keys: str, value: object) -> Callable[[dict[str, Any]], None]:
    def edit(item: dict[str, Any]) -> None:
        for key in keys[:-1]:
            item = item[key]
        item[keys[-1]] = value

    return edit


CORRUPTIONS = [
    pytest.param(
        "mmlu",
        "mmlu/test/anatomy_test.csv",
        _mmlu_drop_choice,
        12,
        "expected 4 choices, found 3",
        id="mmlu-missing-choice",
    ),
    pytest.param(
        "math",
        "math/test.jsonl",
        _json_edit(
            42, lambda item: item.update(solution=item["solution"].replace("\\boxed", "\\mathbf"))
        ),
        42,
        "no \\boxed{...} answer in the solution",
        id="math-no-box",
    ),
    pytest.param(
        "logiqa",
        "logiqa/Test.txt",
        corrupt_lines(lambda lines: lines.pop(3 * 8 + 5)),
        3,
        "lines 25-31: expected an 8-line block (blank, answer, context, question, 4 options), "
        "found 7 lines",
        id="logiqa-missing-option",
    ),
    pytest.param(
        "logiqa",
        "logiqa/Test.txt",
        corrupt_lines(lambda lines: lines.__setitem__(9 * 8 + 1, "e")),
        9,
        "lines 73-80: answer line 'e' is not one of a, b, c, d",
        id="logiqa-bad-answer",
    ),
    pytest.param(
        "truthfulqa",
        "truthfulqa/mc_task.json",
        _tqa_two_right,
        7,
        "mc1_targets must mark exactly one choice right, found 2",
        id="truthfulqa-two-right",
    ),
    pytest.param(
        "arc_challenge",
        "arc_challenge/ARC-Challenge-Test.jsonl",
        _json_edit(5, _set("answerKey", value="E")),
        5,
        "answer key 'E' is not among the labels A, B, C, D",
        id="arc-gold-not-a-choice",
    ),
    pytest.param(
        "arc_easy",
        "arc_easy/ARC-Easy-Test.jsonl",
        _json_edit(0, lambda item: item.pop("answerKey")),
        0,
        "missing or malformed field 'answerKey'",
        id="arc-missing-answer",
    ),
    pytest.param(
        "aqua_rat",
        "aqua_rat/test.json",
        _json_edit(3, lambda item: item.pop("correct")),
        3,
        "field 'correct' is missing or not text",
        id="aqua-missing-answer",
    ),
    pytest.param(
        "aqua_rat",
        "aqua_rat/test.json",
        _json_edit(4, lambda item: item["options"].pop()),
        4,
        "expected 5 choices, found 4",
        id="aqua-four-options",
    ),
    pytest.param(
        "aqua_rat",
        "aqua_rat/test.json",
        corrupt_lines(lambda lines: lines.__setitem__(6, lines[6][:40])),
        6,
        "unparseable JSON line",
        id="aqua-unparseable",
    ),
]


@pytest.mark.parametrize(("dataset", "file", "corrupt", "row", "reason"), CORRUPTIONS)
def test_malformed_row_stops_the_run_naming_file_and_row(
    tmp_path: Path,
    dataset: str,
    file: str,
    corrupt: Callable[[str], str],
    row: int,
    reason: str,
) -> None:
    path = tmp_path / file
    path.parent.mkdir(parents=True)
    path.write_text(corrupt((RESOURCES / file).read_text(encoding="utf-8")), encoding="utf-8")
    with pytest.raises(DatasetError) as caught:
        prepare(dataset, resources=tmp_path)
    assert str(caught.value).startswith(f"dataset '{dataset}': {path} row {row}: {reason}")


@pytest.mark.parametrize(("dataset", "file", "corrupt", "row", "reason"), CORRUPTIONS)
def test_malformed_row_is_skipped_and_rejected(
    full: dict[str, pl.DataFrame],
    tmp_path: Path,
    dataset: str,
    file: str,
    corrupt: Callable[[str], str],
    row: int,
    reason: str,
) -> None:
    path = tmp_path / file
    path.parent.mkdir(parents=True)
    path.write_text(corrupt((RESOURCES / file).read_text(encoding="utf-8")), encoding="utf-8")
    questions, rejects = benchmarks.prepare(
        dataset, source="bundled", resources=tmp_path, n=None, seed=SEED, bad_rows="skip"
    )
    tables.conform(rejects, tables.REJECTS, "rejects")
    assert rejects.select("dataset", "file", "row").rows() == [(dataset, str(path), row)]
    assert rejects["reason"][0].startswith(reason)
    clean = full[dataset]
    if dataset == "mmlu":
        clean = clean.filter(pl.col("subject") == "anatomy")
    kept = clean.filter(pl.col("source_row") != row)
    assert questions.equals(kept)  # the other rows keep their ids, text and gold


def test_unknown_dataset_source_and_mode_are_named() -> None:
    with pytest.raises(DatasetError, match="unknown dataset 'gsm8k'; expected one of math"):
        prepare("gsm8k")
    with pytest.raises(DatasetError, match="unknown source 'web'"):
        prepare("math", source="web")
    with pytest.raises(DatasetError, match="bad_rows must be error or skip"):
        prepare("math", bad_rows="ignore")


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=re.escape(f"{tmp_path}/logiqa/Test.txt not found")):
        prepare("logiqa", resources=tmp_path)
    with pytest.raises(DatasetError, match="no \\*_test.csv files"):
        prepare("mmlu", resources=tmp_path)


# --- the hub path, on a local copy in the Hugging Face layout -------------------------------


def _math_config(subject: str) -> str:
    return subject.lower().replace(" & ", "_and_").replace(" ", "_")


def _hf_layout() -> dict[str, dict[str, list[dict[str, Any]]]]:
    """The shipped files converted to each hub dataset's columns (README, "HF mapping").

    Written independently of the package's readers, with the standard library only.
    """

    def json_lines(file: str) -> list[dict[str, Any]]:
        lines = (RESOURCES / file).read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines]

    math: dict[str, list[dict[str, Any]]] = {}
    for item in json_lines("math/test.jsonl"):
        del item["idx"]
        math.setdefault(_math_config(item["type"]), []).append(item)

    lines = (RESOURCES / "logiqa" / "Test.txt").read_text(encoding="utf-8").split("\n")
    logiqa = [
        {
            "context": block[2],
            "query": block[3],
            # the hub loader drops "A." from lines that start with an option letter
            "options": [line[2:] if line[:1] in "ABCD" else line for line in block[4:8]],
            "correct_option": "abcd".index(block[1]),
        }
        for block in (lines[i : i + 8] for i in range(0, len(lines), 8))
    ]

    tqa_items = json.loads((RESOURCES / "truthfulqa" / "mc_task.json").read_text("utf-8"))
    truthfulqa = [
        {
            "question": item["question"],
            **{
                f: {"choices": list(item[f]), "labels": list(item[f].values())}
                for f in ("mc1_targets", "mc2_targets")
            },
        }
        for item in tqa_items
    ]

    def arc(file: str) -> list[dict[str, Any]]:
        return [
            {
                "id": item["id"],
                "question": item["question"]["stem"],
                "choices": {
                    "text": [c["text"] for c in item["question"]["choices"]],
                    "label": [c["label"] for c in item["question"]["choices"]],
                },
                "answerKey": item["answerKey"],
            }
            for item in json_lines(file)
        ]

    mmlu = [
        {
            "question": r[0],
            "subject": p.name[: -len("_test.csv")],
            "choices": r[1:5],
            "answer": "ABCD".index(r[5]),
        }
        for p in sorted((RESOURCES / "mmlu" / "test").glob("*_test.csv"))
        for r in csv.reader(p.open(encoding="utf-8", newline=""))
    ]
    return {
        "math": math,
        "logiqa": {"default": logiqa},
        "truthfulqa": {"multiple_choice": truthfulqa},
        "arc_challenge": {"ARC-Challenge": arc("arc_challenge/ARC-Challenge-Test.jsonl")},
        "arc_easy": {"ARC-Easy": arc("arc_easy/ARC-Easy-Test.jsonl")},
        "mmlu": {"all": mmlu},
        "aqua_rat": {"raw": json_lines("aqua_rat/test.json")},
        "math500": {"default": json_lines("math/math500_test.jsonl")},
    }


def _write_hub_copy(root: Path, dataset: str, configs: dict[str, list[dict[str, Any]]]) -> None:
    """Parquet files laid out as on the hub: a README with `configs`, or (LogiQA) the
    refs/convert/parquet branch layout `default/<split>/0000.parquet`."""
    spec = benchmarks.HUB[dataset]
    if spec.data_dir is not None:
        (root / spec.data_dir / spec.split).mkdir(parents=True)
        path = root / spec.data_dir / spec.split / "0000.parquet"
        pq.write_table(pa.Table.from_pylist(configs["default"]), path)
        return
    card = ["---", "configs:"]
    for config, rows in configs.items():
        (root / config).mkdir(parents=True)
        name = f"{spec.split}-00000-of-00001.parquet"
        pq.write_table(pa.Table.from_pylist(rows), root / config / name)
        card += [
            f"- config_name: {config}",
            "  data_files:",
            f"  - split: {spec.split}",
            f"    path: {config}/{spec.split}-*",
        ]
    (root / "README.md").write_text("\n".join([*card, "---", ""]), encoding="utf-8")


HubRows = dict[str, tuple[Path, list[benchmarks.SourceRow]]]


@pytest.fixture(scope="module")
def hub_rows(tmp_path_factory: pytest.TempPathFactory) -> HubRows:
    """Each benchmark written as a local hub copy and read back through `load_hub`, offline."""
    import datasets as hf

    root = tmp_path_factory.mktemp("hub")
    loaded = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hf.config, "HF_HUB_OFFLINE", True)
        for dataset, configs in _hf_layout().items():
            copy = root / dataset
            _write_hub_copy(copy, dataset, configs)
            rows = benchmarks.load_hub(dataset, path=copy, cache_dir=root / "cache")
            loaded[dataset] = (copy, rows)
    return loaded


@pytest.mark.parametrize("dataset", list(SPLIT_SIZES))
def test_hub_path_gives_the_bundled_questions(
    full: dict[str, pl.DataFrame], hub_rows: HubRows, dataset: str
) -> None:
    _, rows = hub_rows[dataset]
    assert len(rows) == SPLIT_SIZES[dataset]
    questions, rejects = benchmarks.build_tables(dataset, rows, n=None, seed=SEED, bad_rows="error")
    assert rejects.is_empty()
    bundled = full[dataset]
    assert questions["question_id"].to_list() == bundled["question_id"].to_list()
    differ = {
        a["question_id"]
        for a, b in zip(questions.iter_rows(named=True), bundled.iter_rows(named=True), strict=True)
        if a != b
    }
    # The hub's LogiQA loader drops the option prefixes, so it keeps the file's A, C, B, D
    # order where the bundled reader restores letter order: only those rows may differ.
    assert differ == (LOGIQA_REORDERED if dataset == "logiqa" else set())
    drawn, _ = benchmarks.build_tables(dataset, rows, n=25, seed=SEED, bad_rows="error")
    assert drawn["question_id"].to_list() == prepare(dataset, n=25)["question_id"].to_list()


def test_hub_specs_name_the_readme_datasets() -> None:
    assert {name: (s.repo, s.configs, s.split) for name, s in benchmarks.HUB.items()} == {
        "math": ("EleutherAI/hendrycks_math", benchmarks.MATH_SUBJECTS, "test"),
        "logiqa": ("lucasmccabe/logiqa", (None,), "test"),
        "truthfulqa": ("truthfulqa/truthful_qa", ("multiple_choice",), "validation"),
        "arc_challenge": ("allenai/ai2_arc", ("ARC-Challenge",), "test"),
        "arc_easy": ("allenai/ai2_arc", ("ARC-Easy",), "test"),
        "mmlu": ("cais/mmlu", ("all",), "test"),
        "aqua_rat": ("deepmind/aqua_rat", ("raw",), "test"),
        "math500": ("HuggingFaceH4/MATH-500", (None,), "test"),
    }


def test_hub_rows_are_checked_like_bundled_rows(hub_rows: HubRows) -> None:
    copy, rows = hub_rows["mmlu"]
    broken = [
        r._replace(record={**r.record, "answer": 7})
        if r.row == 3 and r.record["subject"] == "virology"
        else r
        for r in rows
    ]
    label = f"{copy} [all] test (subject virology)"
    message = f"dataset 'mmlu': {label} row 3: gold index 7 is not among the 4 choices"
    with pytest.raises(DatasetError, match=re.escape(message)):
        benchmarks.build_tables("mmlu", broken, n=None, seed=SEED, bad_rows="error")
    questions, rejects = benchmarks.build_tables("mmlu", broken, n=None, seed=SEED, bad_rows="skip")
    assert rejects.rows() == [("mmlu", label, 3, "gold index 7 is not among the 4 choices")]
    assert "mmlu-virology-0003" not in questions["question_id"].to_list()
    assert len(questions) == SPLIT_SIZES["mmlu"] - 1
