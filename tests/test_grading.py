"""Answer extraction, math equivalence and the graded table."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from pathlib import Path

import polars as pl
import pytest

from critical_windows.grading import cli, equivalence, extraction, grader
from critical_windows.grading.extraction import Extraction, extract_choice, extract_math
from critical_windows.io import tables

# --------------------------------------------------------------------------- multiple choice

CHOICES = ["Paris", "London", "Rome", "Berlin"]


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("The answer is (B).", "B"),
        ("The answer is B.", "B"),
        ("answer: c", "C"),
        ("Answer: (b)", "B"),
        ("**B**", "B"),
        ("The answer is **(D)**", "D"),
        ("\\boxed{C}", "C"),
        ("The answer is $\\boxed{\\text{B}}$", "B"),
        ("The answer is $\\text{(A)}$.", "A"),
        ("Option D", "D"),
        ("B) Paris", "B"),
        ("(C) 25", "C"),
        ("The answer is B: Paris", "B"),
        ("The answer is (B), not (C).", "B"),
        ("The answer is (C) 25", "C"),
        ("The answer is: **C) 25**", "C"),
        ("The correct option is D.", "D"),
        ("The answer is option B", "B"),
        ("The correct answer is choice (a).", "A"),
        ("I choose B.", "B"),
        ("A", "A"),
        ("The answer is A because Paris is the capital of France.", "A"),
        ("The answer is A, i.e. the first choice.", "A"),
        ("The answer is B, I think.", "B"),
        ("The answer is I think (C).", "C"),
        ("The answer is:\n\nD", "D"),
        (
            "The single most likely answer to the question of which gas is most abundant is (B).",
            "B",
        ),
        # The answer comes first; what a small model rambles on with afterwards does not count.
        (
            "The answer is (A) 3.\n\nQuestion: What is 2 + 2?\n(A) 3\n(B) 4\nThe answer is (B).",
            "A",
        ),
        # The choice text itself, when it names exactly one choice.
        ("The answer is Paris.", "A"),
        ("Rome", "C"),
    ],
)
def test_choice_letters(text: str, letter: str) -> None:
    assert extract_choice(text, 4, CHOICES) == Extraction(letter)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty_response"),
        ("   \n", "empty_response"),
        ("The answer is a function of the temperature.", "no_answer"),
        ("I think the answer is unclear.", "no_answer"),
        ("The answer is e.g. something else", "no_answer"),
        ("The answer is", "no_answer"),
        # A lone "i" or "a" at the end is a word cut short, not a choice.
        ("The answer i", "no_answer"),
        ("The answer is a", "no_answer"),
        ("I don't know.", "no_answer"),
        ("The answer is (E).", "letter_out_of_range"),
        ("The answer is F.", "letter_out_of_range"),
        ("The answer is (B) or (C).", "ambiguous"),
        ("The answer is A and B.", "ambiguous"),
        ("(A) 1 (B) 2 (C) 3 (D) 4", "ambiguous"),
        ("A. Paris\nB. London\nC. Rome\nD. Berlin", "ambiguous"),
        (
            "Given all of the above, what's the single, most likely answer? Your answer "
            'should have the format "The answer is ANSWER", where ANSWER is your answer.',
            "no_answer",
        ),
    ],
)
def test_choice_missing(text: str, reason: str) -> None:
    assert extract_choice(text, 4, CHOICES) == Extraction(None, reason)


def test_choice_letters_follow_the_number_of_choices() -> None:
    assert extract_choice("The answer is (E).", 5) == Extraction("E")
    assert extract_choice("The answer is (E).", 4) == Extraction(None, "letter_out_of_range")
    assert extract_choice("The answer is (C).", 2).missing_reason == "letter_out_of_range"


def test_choice_text_must_name_one_choice() -> None:
    assert extract_choice("The answer is Paris.", 2, ["Paris", "Paris"]).answer is None
    assert extract_choice("The answer is Paris, France.", 4, CHOICES).answer is None


# --------------------------------------------------------------------------- MATH


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("The answer is $\\frac{1}{2}$.", "\\frac{1}{2}"),
        ("The answer is $\\boxed{\\frac{\\sqrt{3}}{2}}$", "\\frac{\\sqrt{3}}{2}"),
        ("The answer is \\boxed{\\frac{1}{\\sqrt{2}}}.", "\\frac{1}{\\sqrt{2}}"),
        (
            "So the result is \\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}",
            "\\left( 3, \\frac{\\pi}{2} \\right)",
        ),
        ("The answer is: $$x = 5$$", "x = 5"),
        ("The final answer is \\(3\\sqrt{2}\\).", "3\\sqrt{2}"),
        ("The answer is \\[ [2, 5) \\]", "[2, 5)"),
        ("The answer is $\\{1,2\\}$", "\\{1,2\\}"),
        ("Final Answer: The final answer is $4$. I hope it is correct.", "4"),
        ("The answer is 12.", "12"),
        ("The answer is 12 cm.", "12"),
        ("The answer is 45 degrees.", "45"),
        ("The answer is 2 pi.", "2 \\pi"),
        ("The answer is $18.90.", "18.90"),
        ("The answer is \\$1,000.", "\\$1,000"),
        ("The answer is 0.5", "0.5"),
        ("The answer is 1/2.", "1/2"),
        ("The answer is √2.", "\\sqrt{2}"),
        ("The answer is 5 because 2 + 3 = 5.", "5"),
        ("The answer is Monday.", "\\text{Monday}"),
        ("The answer is **12**.", "12"),
        ("The answer is 2 * 3 = 6", "2 * 3 = 6"),
        (
            "The single most likely answer to the question of how many positive whole-number "
            "divisors 196 has is 1.",
            "1",
        ),
        ("12", "12"),
        ("$\\frac12$", "\\frac12"),
        # Echoing the instruction before answering.
        (
            'Your answer should have the format "The answer is $ANSWER$". The answer is $7$.',
            "7",
        ),
        # Rambling on with a made-up question: the first answer counts.
        ("The answer is $6$.\n\nQuestion: What is 3 + 4?\nThe answer is $7$.", "6"),
    ],
)
def test_math_answers(text: str, answer: str) -> None:
    assert extract_math(text) == Extraction(answer)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty_response"),
        ("I don't know.", "no_answer"),
        ("The answer is the number of apples in the basket.", "no_answer"),
        ("The answer is a positive number.", "no_answer"),
        (
            "Given all of the above, what's the single, most likely answer? Simplify it "
            'completely. Your answer should have the format "The answer is $ANSWER$", where '
            "ANSWER is your answer in LaTeX.",
            "no_answer",
        ),
    ],
)
def test_math_missing(text: str, reason: str) -> None:
    assert extract_math(text) == Extraction(None, reason)


# Real follow-up answers of SmolLM2-135M-Instruct (the embedded model), greedy after a
# sampled chain of thought, to the MATH-500 and ARC-Easy prompts of METHOD.md.
SMOLLM2_MATH = [
    ("The answer is $ANSWER$", None),
    (
        "The single most likely answer to the question is $\\sum_{j = 1}^\\infty \\frac{1}{j^3}$.",
        "\\sum_{j = 1}^\\infty \\frac{1}{j^3}",
    ),
    (
        "The single most likely answer to the question of how many positive whole-number "
        "divisors 196 has is 1.",
        "1",
    ),
    ("The answer is 6*n inches.", "6*n"),
    ("The single most likely answer is 8.", "8"),
]
ARC_EASY_2 = ["safety goggles", "breathing mask", "rubber gloves", "lead apron"]
SMOLLM2_CHOICE = [
    (
        'The single most likely answer to the question "Which piece of safety equipment is '
        'used to keep mold spores from entering the respiratory system?" is a single answer: '
        "safety goggles.",
        "A",
    ),
    (
        'The single most likely answer to the question "Which of the following is not a '
        'logical fallacy?" is "The answer is not a logical fallacy."',
        None,
    ),
]


@pytest.mark.parametrize(("text", "answer"), SMOLLM2_MATH)
def test_smollm2_math_answers(text: str, answer: str | None) -> None:
    assert extract_math(text).answer == answer
    if answer is not None:
        with equivalence.MathJudge(processes=1) as judge:
            assert judge.parses([answer]) == {answer: True}


@pytest.mark.parametrize(("text", "letter"), SMOLLM2_CHOICE)
def test_smollm2_choice_answers(text: str, letter: str | None) -> None:
    assert extract_choice(text, 4, ARC_EASY_2).answer == letter


def test_cut_answers_get_their_own_reason() -> None:
    assert extraction.missing_after_finish("no_answer", "length") == "cut_by_max_tokens"
    assert extraction.missing_after_finish("unparseable", "length") == "cut_by_max_tokens"
    assert extraction.missing_after_finish("no_answer", "stop") == "no_answer"
    assert extraction.missing_after_finish("ambiguous", "length") == "ambiguous"


# --------------------------------------------------------------------------- equivalence


@pytest.mark.parametrize(
    ("gold", "answer", "same"),
    [
        ("\\frac{1}{2}", "0.5", True),
        ("\\frac{1}{2}", "\\dfrac{1}{2}", True),
        ("\\frac{1}{2}", "\\frac12", True),
        ("\\frac{1}{2}", "1/2", True),
        ("\\frac{1}{2}", "\\frac{1}{3}", False),
        ("2\\frac{1}{4}", "\\frac{9}{4}", True),
        ("\\$18.90", "18.9", True),
        ("1,000", "1000", True),
        ("10\\%", "0.1", True),
        ("90^\\circ", "90", True),
        ("12", "12 \\text{ cm}", True),
        ("[2,5)", "[2, 5)", True),
        ("[2,5)", "(2,5)", False),
        ("\\{1,2\\}", "\\{2, 1\\}", True),
        ("3\\sqrt{2}", "\\sqrt{18}", True),
        ("2\\pi", "\\frac{4\\pi}{2}", True),
        ("\\pi", "3.14", False),
        ("\\frac{\\sqrt{3}}{2}", "0.866", False),
        ("\\frac{1}{3}", "0.333333", True),
        ("70 \\sqrt{2}", "916", False),
        ("5", "x = 5", True),
        ("x^2+1", "1+x^2", True),
        ("\\text{Evelyn}", "\\text{Evelyn}", True),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi/2)", True),
        ("6", "7", False),
    ],
)
def test_math_equivalence(gold: str, answer: str, same: bool) -> None:
    with equivalence.MathJudge(processes=1) as judge:
        assert judge.equivalent([(gold, answer)]) == {(gold, answer): same}


def test_numeric_shortcut_agrees_with_math_verify() -> None:
    pairs = [
        ("70 \\sqrt{2}", "916"),
        ("\\frac{1}{3}", "0.333333"),
        ("\\frac{\\sqrt{3}}{2}", "0.8660254"),
        ("10\\%", "10"),
        ("\\pi", "3.14159265"),
        ("2^{100}", "1267650600228229401496703205376"),
        ("\\infty", "1000"),
        ("1000000", "1000000.0000001"),
        ("\\frac{14}{3}", "4.67"),
        ("3+2i", "3"),
    ]
    for a, b in pairs:
        pa, pb = equivalence.parse_math(a), equivalence.parse_math(b)
        apart = equivalence.numerically_apart(
            pa, pb, equivalence.numeric_value(pa), equivalence.numeric_value(pb)
        )
        assert not (apart and equivalence.verify_math(pa, pb)), (a, b)
    pa, pb = equivalence.parse_math("70 \\sqrt{2}"), equivalence.parse_math("916")
    assert equivalence.numerically_apart(
        pa, pb, equivalence.numeric_value(pa), equivalence.numeric_value(pb)
    )
    assert equivalence.numeric_value(equivalence.parse_math("10\\%")) is None


def test_unparseable_math() -> None:
    with equivalence.MathJudge(processes=1) as judge:
        assert judge.parses(["\\frac{1}{", "\\frac{1}{2}"]) == {
            "\\frac{1}{": False,
            "\\frac{1}{2}": True,
        }


def _slow_on_short_limits(items: list[str], limit: int) -> list[tuple[str, list | None]]:
    return [(s, None if limit < 10 else [1]) for s in items]


def _slow_on_one(items: list[str], limit: int) -> list[tuple[str, tuple | None]]:
    return [(s, None if s == "slow" else (equivalence.parse_math(s), None)) for s in items]


def test_timeouts_are_retried_longer_and_not_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with equivalence.MathJudge(processes=1) as judge:
        assert judge._run(_slow_on_short_limits, ["a"], 5) == [("a", [1])]
        assert judge.stats["timeouts"] == 0

    cache = tmp_path / "equivalence.parquet"
    monkeypatch.setattr(equivalence, "_parse_chunk", _slow_on_one)
    with caplog.at_level(logging.WARNING), equivalence.MathJudge(cache, processes=1) as judge:
        assert judge.parses(["slow", "12"]) == {"slow": False, "12": True}
        assert judge.stats["timeouts"] == 1
    assert "timed out twice on 'slow'" in caplog.text
    assert pl.read_parquet(cache)["a"].to_list() == ["12"]


def test_workers_give_the_same_results_and_run_off_the_main_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = [str(n) for n in range(40)] + [f"\\frac{{{n}}}{{2}}" for n in range(40)]
    pairs = [(a, b) for a in answers[:10] for b in answers[30:50]]
    with equivalence.MathJudge(processes=1) as judge:
        serial = judge.equivalent(pairs)
    monkeypatch.setattr(equivalence, "PARALLEL_FROM", 1)
    with equivalence.MathJudge(processes=2) as judge:
        assert judge.equivalent(pairs) == serial
        assert judge._pool is not None
    assert serial[("2", "\\frac{4}{2}")] is True

    found: dict = {}

    def in_a_thread() -> None:
        with equivalence.MathJudge(processes=1) as judge:
            found.update(judge.equivalent(pairs[:5]))

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join()
    assert found == {p: serial[p] for p in pairs[:5]}


# --------------------------------------------------------------------------- grade()


def _questions() -> pl.DataFrame:
    rows = [
        ("m1", "math", [], "\\frac{1}{2}", "math"),
        ("c1", "arc_easy", ["Paris", "London", "Rome", "Berlin"], "B", "multiple_choice"),
        ("c2", "arc_easy", ["yes", "no"], "A", "multiple_choice"),
    ]
    df = pl.DataFrame(
        {
            "question_id": [r[0] for r in rows],
            "dataset": [r[1] for r in rows],
            "problem": "a question",
            "choices": [r[2] for r in rows],
            "gold": [r[3] for r in rows],
            "answer_type": [r[4] for r in rows],
            "task": "t",
            "subject": None,
            "level": None,
            "source_row": [0, 1, 2],
        },
        schema_overrides={"choices": pl.List(pl.String)},
    )
    return pl.from_arrow(tables.conform(df, tables.QUESTIONS, "questions"))


def _elicited(rows: list[tuple]) -> pl.DataFrame:
    """Rows of (question_id, kind, level, sample, answer_text[, answer_finish_reason])."""
    df = pl.DataFrame(
        {
            "question_id": [r[0] for r in rows],
            "kind": [r[1] for r in rows],
            "level": [r[2] for r in rows],
            "sample": [r[3] for r in rows],
            "source_finish_reason": "stop",
            "answer_text": [r[4] for r in rows],
            "n_answer_tokens": 12,
            "answer_finish_reason": [r[5] if len(r) > 5 else "stop" for r in rows],
        },
        schema_overrides={"level": pl.Float64, "sample": pl.Int32, "n_answer_tokens": pl.Int32},
    )
    # Columns that grading does not read (such as answer probabilities) stay null.
    df = df.with_columns(
        pl.lit(None).alias(c) for c in tables.ELICITED.names if c not in df.columns
    )
    return pl.from_arrow(tables.conform(df, tables.ELICITED, "elicited"))


ELICITED_ROWS = [
    # MATH: right orig (0.5), wrong direct, stump without an answer at 0.3,
    # a right stump at 0.7; resamples right in another form, wrong, and cut.
    ("m1", "orig", None, None, "The answer is $0.5$."),
    ("m1", "direct", None, None, "The answer is $\\frac{1}{3}$."),
    ("m1", "stump", 0.3, None, "Let's think step by step: we need the"),
    ("m1", "stump", 0.7, None, "The answer is $\\dfrac{1}{2}$."),
    ("m1", "resample", 0.3, 0, "The answer is $\\frac{1}{2}$."),
    ("m1", "resample", 0.3, 1, "The answer is $\\boxed{3}$"),
    ("m1", "resample", 0.7, 0, "The answer is $\\frac{1}{", "length"),
    ("m1", "resample", 0.7, 1, "The answer is $\\frac{2}{4}$"),
    # Multiple choice: wrong orig (C), no stump elicited at 0.5, direct names the text.
    ("c1", "orig", None, None, "The answer is (C) Rome"),
    ("c1", "direct", None, None, "The answer is London."),
    ("c1", "resample", 0.5, 0, "The answer is (B)."),
    ("c1", "resample", 0.5, 1, "answer: c"),
    ("c1", "resample", 0.5, 2, "The answer is (B) or (C)."),
    # No orig elicited at all.
    ("c2", "direct", None, None, "The answer is (A)."),
    ("c2", "stump", 0.5, None, "The answer is (A)."),
    ("c2", "resample", 0.5, 0, "The answer is (A)."),
]


@pytest.fixture(scope="module")
def graded() -> tuple[pl.DataFrame, pl.DataFrame]:
    return grader.grade(_questions(), _elicited(ELICITED_ROWS), cache=None, processes=1)


def _row(graded: pl.DataFrame, qid: str, level: float, sample: int) -> dict:
    rows = graded.filter(
        (pl.col("question_id") == qid) & (pl.col("level") == level) & (pl.col("sample") == sample)
    )
    assert len(rows) == 1
    return rows.row(0, named=True)


def test_grade_tables_follow_their_schemas(graded: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    table, summary = graded
    tables.conform(table, tables.GRADED, "graded")
    tables.conform(summary, tables.MISSING_SUMMARY, "summary")
    assert len(table) == sum(r[1] == "resample" for r in ELICITED_ROWS)


def test_grade_math_flags(graded: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    table, _ = graded
    right = _row(table, "m1", 0.3, 0)
    assert right["orig_answer"] == "0.5"
    assert right["resample_answer"] == "\\frac{1}{2}"
    assert (right["orig_is_right"], right["direct_is_right"]) == (True, False)
    assert (right["is_right"], right["is_consistent"]) == (True, True)
    # The stump at 0.3 has no answer: everything that needs it is null, nothing else.
    assert right["stump_answer"] is None
    assert right["stump_missing_reason"] == "no_answer"
    assert (right["stump_is_right"], right["stump_is_consistent"], right["is_stump"]) == (None,) * 3

    wrong = _row(table, "m1", 0.3, 1)
    assert (wrong["is_right"], wrong["is_consistent"]) == (False, False)

    cut = _row(table, "m1", 0.7, 0)
    assert cut["resample_answer"] is None
    assert cut["resample_missing_reason"] == "cut_by_max_tokens"
    assert (cut["is_right"], cut["is_consistent"], cut["is_stump"]) == (None, None, None)
    assert (cut["stump_is_right"], cut["stump_is_consistent"]) == (True, True)

    same = _row(table, "m1", 0.7, 1)
    assert (same["is_right"], same["is_consistent"], same["is_stump"]) == (True, True, True)


def test_grade_choice_flags(graded: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    table, _ = graded
    right = _row(table, "c1", 0.5, 0)
    assert (right["gold"], right["orig_answer"], right["direct_answer"]) == ("B", "C", "B")
    assert (right["orig_is_right"], right["direct_is_right"]) == (False, True)
    assert (right["is_right"], right["is_consistent"]) == (True, False)
    assert right["stump_missing_reason"] == "not_elicited"
    assert (right["stump_is_right"], right["is_stump"]) == (None, None)

    consistent = _row(table, "c1", 0.5, 1)
    assert (consistent["is_right"], consistent["is_consistent"]) == (False, True)

    ambiguous = _row(table, "c1", 0.5, 2)
    assert ambiguous["resample_missing_reason"] == "ambiguous"
    assert (ambiguous["is_right"], ambiguous["is_consistent"]) == (None, None)

    no_orig = _row(table, "c2", 0.5, 0)
    assert no_orig["orig_missing_reason"] == "not_elicited"
    assert (no_orig["orig_is_right"], no_orig["is_consistent"]) == (None, None)
    assert (no_orig["is_right"], no_orig["is_stump"], no_orig["stump_is_right"]) == (True,) * 3


def test_grade_missing_summary(graded: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    _, summary = graded
    counts = {(d, k, r): n for d, k, r, n in summary.iter_rows()}
    assert counts == {
        ("math", "stump", "no_answer"): 1,
        ("math", "resample", "cut_by_max_tokens"): 1,
        ("arc_easy", "resample", "ambiguous"): 1,
        ("arc_easy", "stump", "not_elicited"): 1,
        ("arc_easy", "orig", "not_elicited"): 1,
    }


def test_grade_logs_missing_counts(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="critical_windows.grading.grader"):
        grader.grade(_questions(), _elicited(ELICITED_ROWS), processes=1)
    assert "resample: 2 of 8 answers missing (ambiguous 1, cut_by_max_tokens 1)" in caplog.text


def test_grade_nothing() -> None:
    table, summary = grader.grade(_questions(), _elicited([]), processes=1)
    assert table.is_empty() and summary.is_empty()
    tables.conform(table, tables.GRADED, "graded")


def test_unparseable_answers_are_missing() -> None:
    rows = [
        ("m1", "orig", None, None, "The answer is $\\frac{1}{2}$."),
        ("m1", "resample", 0.5, 0, "The answer is $\\sqrt{$ and more"),
    ]
    table, summary = grader.grade(_questions(), _elicited(rows), processes=1)
    assert table["resample_missing_reason"].to_list() == ["unparseable"]
    assert table["is_consistent"].to_list() == [None]
    assert ("math", "resample", "unparseable", 1) in summary.rows()


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([("zz", "orig", None, None, "x")], "not in the questions table"),
        ([("c1", "guess", None, None, "x")], "unknown kind"),
        (
            [("c1", "resample", 0.5, 0, "(A)"), ("c1", "resample", 0.5, 0, "(B)")],
            "several answers",
        ),
    ],
)
def test_grade_rejects_bad_input(rows: list[tuple], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        grader.grade(_questions(), _elicited(rows), processes=1)


def test_cache_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache" / "equivalence.parquet"
    first, _ = grader.grade(_questions(), _elicited(ELICITED_ROWS), cache=cache, processes=1)
    stored = pl.read_parquet(cache)
    assert stored.filter(pl.col("b").is_null())["a"].to_list()  # what parses
    assert ("\\frac{1}{2}", "0.5", True) in stored.select("a", "b", "result").rows()

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("math-verify called although the cache holds the answer")

    monkeypatch.setattr(equivalence, "parse_math", fail)
    monkeypatch.setattr(equivalence, "verify_math", fail)
    again, _ = grader.grade(_questions(), _elicited(ELICITED_ROWS), cache=cache, processes=1)
    assert again.equals(first)


def test_a_broken_or_foreign_cache_is_ignored(tmp_path: Path) -> None:
    cache = tmp_path / "equivalence.parquet"
    cache.write_bytes(b"not parquet")
    first, _ = grader.grade(_questions(), _elicited(ELICITED_ROWS), cache=cache, processes=1)
    stale = pl.read_parquet(cache).with_columns(result=~pl.col("result"), method=pl.lit("old"))
    stale.write_parquet(cache)
    again, _ = grader.grade(_questions(), _elicited(ELICITED_ROWS), cache=cache, processes=1)
    assert again.equals(first)
    assert set(pl.read_parquet(cache)["method"]) == {equivalence.METHOD}


def test_summary_csv(tmp_path: Path, graded: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    path = tmp_path / "missing.csv"
    grader.write_summary_csv(graded[1], path)
    assert pl.read_csv(path).sort(pl.all()).equals(graded[1].sort(pl.all()))


# --------------------------------------------------------------------------- re-grading CLI

RECORDS = [
    {"answer_type": "math", "gold": "\\frac{1}{2}", "response": "The answer is $0.5$."},
    {"answer_type": "math", "gold": "3", "response": "The answer is $4$.", "id": 7},
    {
        "answer_type": "math",
        "gold": "3",
        "response": "The answer is $\\frac{",
        "finish_reason": "length",
    },
    {
        "answer_type": "multiple_choice",
        "gold": "B",
        "n_choices": 4,
        "response": "The answer is (B).",
    },
    {"answer_type": "multiple_choice", "gold": "b", "n_choices": 4, "response": "answer: c"},
    {
        "answer_type": "multiple_choice",
        "gold": "A",
        "n_choices": 4,
        "response": "The answer is (F).",
    },
    {
        "answer_type": "multiple_choice",
        "gold": "C",
        "n_choices": 3,
        "choices": ["yes", "no", "maybe"],
        "response": "The answer is maybe.",
    },
]


def _write_jsonl(path: Path, lines: list) -> None:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))


def test_cli_round_trip(tmp_path: Path) -> None:
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_jsonl(source, RECORDS)
    assert cli.main(["--in", str(source), "--out", str(out)]) == 0
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [{k: r[k] for k in ("extracted", "correct", "missing_reason")} for r in results] == [
        {"extracted": "0.5", "correct": True, "missing_reason": None},
        {"extracted": "4", "correct": False, "missing_reason": None},
        {"extracted": None, "correct": None, "missing_reason": "cut_by_max_tokens"},
        {"extracted": "B", "correct": True, "missing_reason": None},
        {"extracted": "C", "correct": False, "missing_reason": None},
        {"extracted": None, "correct": None, "missing_reason": "letter_out_of_range"},
        {"extracted": "C", "correct": True, "missing_reason": None},
    ]
    assert results[1]["id"] == 7  # the input fields are kept


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", "line 2: not valid JSON"),
        ({"answer_type": "essay", "gold": "x", "response": "y"}, "line 2: answer_type"),
        ({"answer_type": "math", "response": "y"}, "line 2: gold"),
        ({"answer_type": "multiple_choice", "gold": "B", "response": "(B)"}, "line 2: n_choices"),
        (
            {"answer_type": "multiple_choice", "gold": "E", "n_choices": 4, "response": "x"},
            "line 2: gold",
        ),
        ({"answer_type": "math", "gold": "1"}, "line 2: response"),
    ],
)
def test_cli_names_the_bad_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, bad, message
) -> None:
    source = tmp_path / "in.jsonl"
    _write_jsonl(source, [RECORDS[0], bad])
    assert cli.main(["--in", str(source), "--out", str(tmp_path / "out.jsonl")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()


def test_cli_as_a_module(tmp_path: Path) -> None:
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_jsonl(source, RECORDS[:2])
    subprocess.run(
        [sys.executable, "-m", "critical_windows.grading.cli", "--in", source, "--out", out],
        check=True,
        capture_output=True,
    )
    assert [json.loads(line)["correct"] for line in out.read_text().splitlines()] == [True, False]
