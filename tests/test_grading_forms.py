"""Issue #16: the answer forms a careful human grades right, the golds, and the audit.

Every string here is written for these tests in the style of real model outputs and
MATH golds; none is taken from a held-out set.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import polars as pl
import pytest

from critical_windows.grading import (
    answer_forms,
    audit,
    cli,
    equivalence,
    golds,
    grader,
    math_normalize,
)
from critical_windows.grading.extraction import Extraction, extract_choice
from critical_windows.io import tables

ROOT = Path(__file__).resolve().parents[1]
CHOICES = ["Paris", "London", "Rome", "Berlin"]

# --------------------------------------------------------------------------- multiple choice


@pytest.mark.parametrize(
    ("text", "n", "letter"),
    [
        # The final committed answer wins over one the text takes back.
        (
            "Answer: C\n\nWait, I misread the question. Comets are mostly ice, not rock, so "
            "the correct answer is B.",
            4,
            "B",
        ),
        (
            "The answer is (A).\n\nHmm, actually, let me reconsider. Option A ignores "
            "friction entirely. Taking friction into account, the answer is (D).",
            4,
            "D",
        ),
        (
            "I think the answer is B. No wait - B is the boiling point, not the melting "
            "point. The answer is C.",
            4,
            "C",
        ),
        (
            "The answer is D.\n\nOn second thought, the question asks for the smallest "
            "value, so the answer is actually (A).",
            4,
            "A",
        ),
        # An answer first, then an explanation naming the other options: the first.
        (
            "The answer is (B). Option A is wrong because the mitochondria do not make "
            "proteins, option C confuses the two membranes, and D is about plants only.",
            4,
            "B",
        ),
        (
            "Answer: D\n\nExplanation: (A) and (B) describe mitosis, and (C) only holds for "
            "prokaryotes, which have no nucleus.",
            4,
            "D",
        ),
        (
            "The answer is (C). Actually, many students pick (A) here, but that confuses "
            "weight with mass.",
            4,
            "C",
        ),
        # Markdown headings and bold, XML-like tags, upper-case labels.
        ("## Final Answer\n\n**C**", 4, "C"),
        ("**Answer:** (B) London", 4, "B"),
        ("### Answer\nThe correct choice is **(A)**.", 4, "A"),
        ("<answer>D</answer>", 4, "D"),
        ("<answer>\n(b)\n</answer>", 4, "B"),
        ("Reasoning done.\n<final_answer>E</final_answer>", 5, "E"),
        ("FINAL ANSWER - b", 4, "B"),
        ("ANSWER: C", 4, "C"),
        ("**FINAL ANSWER: (G)**", 10, "G"),
        ("THE ANSWER IS (B).", 4, "B"),
        # Plain commitments without "the answer is".
        ("Looking at the four options, my pick would be D.", 4, "D"),
        ("E is the best fit here.", 5, "E"),
        ("After ruling out the rest, only A is left.", 4, "A"),
        ("Heat always flows from the hotter body to the colder one. Thus B.", 4, "B"),
        ("I'd go with C, since it is the only one that mentions the ozone layer.", 4, "C"),
        ("So the most reasonable choice is H.", 10, "H"),
        ("Between the two options that remain, I would say J.", 10, "J"),
        ("Both B and D are too large, which leaves option C as the correct one.", 4, "C"),
        ("Answer: (B)\n\nWait, no. 3 x 4 is 12, not 14. So the answer is (A).", 4, "A"),
        ("I believe the answer is (C), but actually it's (D).", 4, "D"),
        (
            "Answer: B\n\nHowever, upon closer inspection, option D accounts for both "
            "effects.\n\nFinal answer: D",
            4,
            "D",
        ),
        ("The answer is (A). Wait, let me double-check. Yes, the answer is (A).", 4, "A"),
        (
            "**Answer: (C)**\n\nActually, to be thorough: (A) ignores the tides and (B) the moon.",
            4,
            "C",
        ),
        ("C seems the best fit, because it names both causes.", 4, "C"),
        ("I'm going with B.", 4, "B"),
        ("Therefore, B is correct.", 4, "B"),
        ("Option C, Rome.", 4, "C"),
        ("Of these, I think option B fits the description.", 4, "B"),
        (
            "The answer is (C).\n\nRe-reading the question, it asks which statement is NOT "
            "true, so the answer is (A).",
            4,
            "A",
        ),
        ("Answer: A\nActually no, it's B.", 4, "B"),
        ("Answer: C\n\nWait, the question asks for the exception. Thus B.", 4, "B"),
        ("The answer is C.\n\nHmm, that's wrong; it should be B.", 4, "B"),
        # Up to ten options.
        ("The answer is (I).", 10, "I"),
        ("The answer is I think (F).", 10, "F"),
        ("Answer: J", 10, "J"),
    ],
)
def test_choice_commitments(text: str, n: int, letter: str) -> None:
    assert extract_choice(text, n) == Extraction(letter)


@pytest.mark.parametrize(
    ("text", "n"),
    [
        # An analysis that stops before it concludes.
        (
            "Let's go through the options one by one. Option A says that plants absorb "
            "oxygen at night, which is",
            4,
        ),
        (
            "First, consider each choice.\n\nA) Paris is the capital of France, so it could "
            "be right.\nB) London is the capital of",
            4,
        ),
        ("To decide, compare option B with the definition of a", 4),
        ("Looking at option C: the mitochondria", 4),
        ("Let's go through the options. Option A says plants absorb oxygen at night.", 4),
        # The article "A" and the pronoun "I".
        ("A good way to think about this is to compare the boiling points first.", 4),
        ("A 2019 survey of river deltas found that most of the sediment is", 4),
        ("I need to compare the densities of the two liquids first, and then", 10),
        ("I (the examiner) would rather see the working, so let me start over.", 10),
        ("The answer is a matter of definition.", 4),
        ("Option B is correct only if the gas is ideal, and option D", 4),
    ],
)
def test_no_letter_without_a_commitment(text: str, n: int) -> None:
    assert extract_choice(text, n).answer is None


def test_take_back_ignores_a_made_up_next_question() -> None:
    text = (
        "The answer is (A).\n\nQuestion: Which gas do plants release? Wait, think about "
        "photosynthesis.\nThe answer is (B)."
    )
    assert extract_choice(text, 4) == Extraction("A")


def test_the_prompt_placeholder_is_not_an_answer() -> None:
    text = 'Your answer should have the format "The answer is ANSWER", where ANSWER is (A)-(D).'
    assert extract_choice(text, 4).answer is None


# --------------------------------------------------------------------------- math equivalence

EQUIVALENT = [
    # Text answers: the case of a name or a direction is not a different answer.
    ("\\text{Tuesday}", "Tuesday"),
    ("\\text{north}", "North"),
    ("\\text{Evelyn}", "evelyn"),
    ("\\text{south-west}", "\\text{South-West}"),
    ("\\text{southeast}", "South East"),
    ("\\text{no}", "No"),
    ("\\text{none}", "None."),
    # Units and wrappers on either side.
    ("48\\text{ cm}^2", "48"),
    ("48", "48 \\text{ cm}^2"),
    ("15\\text{ inches}", "15"),
    ("7 \\mbox{ dollars}", "7"),
    ("35\\%", "35"),
    ("35", "35\\%"),
    ("120^\\circ", "120"),
    ("120", "120^{\\circ}"),
    ("\\$42.50", "42.50"),
    ("42.5", "\\$42.50"),
    ("2,\\!187", "2187"),
    ("\\frac{3}{1,\\!024}", "\\frac{3}{1024}"),
    ("\\frac{12}{5,\\!525}", "\\frac{12}{5525}"),
    ("4,096 + 4", "4100"),
    ("\\frac{7}{5} + \\frac{1}{5} i.", "\\frac75+\\frac15i"),
    ("19.", "19"),
    ("\\frac{5}{8}.", "0.625"),
    ("1{,}250", "1250"),
    ("2\\,500", "2500"),
    ("12 cm^2", "12"),
    ("111, \\! 111, \\! 111", "111111111"),
    ("10\\;\\text{edges}", "10"),
    ("7, -2, \\text{ and } -5", "-5, -2, 7"),
    # Repeating decimals.
    ("0.\\overline{3}", "\\frac{1}{3}"),
    ("\\frac{7}{11}", "0.\\overline{63}"),
    ("0.1\\overline{6}", "\\frac{1}{6}"),
    ("2.\\overline{5}", "\\frac{23}{9}"),
    ("\\frac{1}{6}", "0.1666\\ldots"),
    ("\\frac{1}{7}", "0.142857142857..."),
    # Complex numbers: decimals against fractions, factor order.
    ("\\frac12 - \\frac32 i", "0.5 - 1.5i"),
    ("-0.25+0.75i", "-\\frac{1}{4} + \\frac{3}{4}i"),
    ("3i\\sqrt{2}", "3\\sqrt{2}i"),
    ("2\\sqrt{3}i", "2i\\sqrt3"),
    ("-\\sqrt{5}i+1", "1 - i\\sqrt{5}"),
    ("5\\sqrt{2}\\pi", "5\\pi\\sqrt{2}"),
    ("2\\cos 15^{\\circ}", "2\\cos\\frac{\\pi}{12}"),
    # Vectors and tuples, set membership.
    ("\\begin{pmatrix} 2 \\\\ -1 \\end{pmatrix}", "(2, -1)"),
    ("(3, 0, -4)", "\\begin{pmatrix} 3 \\\\ 0 \\\\ -4 \\end{pmatrix}"),
    ("\\begin{pmatrix} 1/2 \\\\ 0 \\\\ 7 \\end{pmatrix}", "\\left( \\frac{1}{2}, 0, 7 \\right)"),
    ("(1, 4]", "x \\in (1, 4]"),
    ("[-2, 3)", "t \\in [-2,3)"),
    ("(1, 4]", "1 < x \\le 4"),
    ("x \\in (-\\infty, 2) \\cup (3, \\infty)", "(-\\infty,2)\\cup(3,\\infty)"),
    # Several answers (golds.all_values) in any order.
    ("-2, 1", "1, -2"),
    ("-2, 1", "x = -2, 1"),
    ("5 - 10i, 11, -3 + 6i", "d = 11, 5-10i, -3+6i"),
    ("-2, 1", "x=-2 \\text{ or } x=1"),
    ("30^\\circ, 45^\\circ, 105^\\circ", "105, 30, 45"),
]
NOT_EQUIVALENT = [
    # Known false positives of math-verify.
    ("\\frac{1}{2004!}", "\\frac{1}{2006!}"),
    ("\\frac{1}{3^{100}}", "\\frac{1}{3^{101}}"),
    ("\\frac{x}{2004!}", "\\frac{x}{2006!}"),
    ("\\pm 2021", "2021"),
    ("2021", "\\pm 2021"),
    ("1 + 1 = 2", "3 - 1 = 2 \\cdot 1"),
    ("x - x = 0", "2y - y - y = 0"),
    # Forms that must not make different answers equal.
    ("\\text{north}", "\\text{south}"),
    ("\\text{yes}", "No"),
    ("f \\circ g", "f g"),
    ("2\\cos 15^{\\circ}", "2\\cos 15"),
    ("xy", "yx + 1"),
    ("abc", "cab + 1"),
    ("0.\\overline{6}", "0.6"),
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "(1, 2, 3, 4)"),
    ("3 + 2i", "3 - 2i"),
    ("(1, 4]", "1 < x < 4"),
    ("-2, 1", "1"),
    ("(1, 2)", "x = 1, y = 3"),
    ("1,000", "1"),
    ("12\\text{ cm}^2", "13"),
]


@pytest.fixture(scope="module")
def judge():
    with equivalence.MathJudge(processes=1) as judge:
        yield judge


@pytest.mark.parametrize(("gold", "answer"), EQUIVALENT)
def test_equivalent_forms(judge: equivalence.MathJudge, gold: str, answer: str) -> None:
    assert judge.equivalent([(gold, answer)]) == {(gold, answer): True}


@pytest.mark.parametrize(("gold", "answer"), NOT_EQUIVALENT)
def test_different_answers_stay_different(
    judge: equivalence.MathJudge, gold: str, answer: str
) -> None:
    assert judge.equivalent([(gold, answer)]) == {(gold, answer): False}


def test_equivalence_holds_in_workers_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """The forms are handled where math-verify runs, also in forked workers."""
    pairs = EQUIVALENT + NOT_EQUIVALENT
    monkeypatch.setattr(equivalence, "PARALLEL_FROM", 1)
    with equivalence.MathJudge(processes=2) as judge:
        equal = judge.equivalent(pairs)
    assert [equal[p] for p in pairs] == [True] * len(EQUIVALENT) + [False] * len(NOT_EQUIVALENT)


@pytest.mark.parametrize(
    ("latex", "text"),
    [
        ("\\text{Tuesday}", "tuesday"),
        ("North", "north"),
        ("\\textbf{Blue whale}", "bluewhale"),
        ("South-East", "southeast"),
        ("None", "none"),
        ("xy", None),
        ("\\sin x", None),
        ("12", None),
        ("\\text{(C)}", None),
    ],
)
def test_text_answers(latex: str, text: str | None) -> None:
    assert answer_forms.text_answer(latex) == text


def test_bare_short_words_stay_mathematics(judge: equivalence.MathJudge) -> None:
    assert answer_forms.same_text("abc", "cba") is None
    assert judge.equivalent([("abc", "cba")]) == {("abc", "cba"): True}
    assert answer_forms.same_text("\\text{Red}", "red") is True
    assert answer_forms.same_text("North", "south") is False


def test_text_answers_count_as_parsed(judge: equivalence.MathJudge) -> None:
    assert judge.parses(["North", "\\text{Tuesday}", "\\frac{1}{"]) == {
        "North": True,
        "\\text{Tuesday}": True,
        "\\frac{1}{": False,
    }


# --------------------------------------------------------------------------- golds


def _math_rows() -> list[dict]:
    path = ROOT / "resources" / "datasets" / "math" / "test.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_multi_boxed_golds_follow_the_listed_rules() -> None:
    """resources/grading/math_multi_boxed.csv lists every MATH solution boxing several
    different strings, with the rule and the gold; math_gold gives exactly those."""
    rows = _math_rows()
    with open(ROOT / "resources" / "grading" / "math_multi_boxed.csv", encoding="utf-8") as f:
        listed = list(csv.DictReader(f))
    several = [i for i, r in enumerate(rows) if len({v for v, _ in golds.boxes(r["solution"])}) > 1]
    assert [int(r["source_row"]) for r in listed] == several
    assert len(listed) == 23
    for r in listed:
        row = rows[int(r["source_row"])]
        assert [v for v, _ in golds.boxes(row["solution"])] == json.loads(r["boxes"])
        assert golds.math_gold(row["problem"], row["solution"]) == (r["gold"], r["rule"])
    assert {r["rule"] for r in listed} == set(golds.RULES) - {golds.SINGLE}


@pytest.mark.parametrize(
    ("problem", "solution", "gold", "rule"),
    [
        (
            "Find all real roots of $x^2 - 5x + 6 = 0$. Enter them separated by commas.",
            "It factors as $(x-2)(x-3)$, so $x = \\boxed{2}$ or $x = \\boxed{3}$.",
            "2, 3",
            golds.ALL_VALUES,
        ),
        (
            "What is one value of $x$ with $x^2 = 9$?",
            "So $x = \\boxed{3}$. Note that $\\boxed{-3}$ is also accepted.",
            "3",
            golds.FIRST_OF_ALTERNATIVES,
        ),
        (
            "What is $2 + 2 \\cdot 3$?",
            "First $2 \\cdot 3 = \\boxed{6}$, then $2 + 6 = \\boxed{8}$.",
            "8",
            golds.FINAL_BOX,
        ),
        (
            "Simplify $\\frac{6}{4}$.",
            "We get $\\boxed{\\frac{3}{2}}$, that is $\\boxed{\\frac32}$.",
            "\\frac32",
            golds.FINAL_BOX,
        ),
        (
            "Let $\\boxed{n}$ be the sum of the digits of $n$. Find $\\boxed{\\boxed{99}}$.",
            "First $\\boxed{99} = 18$, and then $\\boxed{18} = 9$.",
            "9",
            golds.BOX_IS_NOTATION,
        ),
        ("Compute $3^2$.", "We have $3^2 = \\boxed{9}$.", "9", golds.SINGLE),
        ("Compute $3^2$.", "There is no box here.", None, golds.SINGLE),
    ],
)
def test_math_gold_rules(problem: str, solution: str, gold: str | None, rule: str) -> None:
    assert golds.math_gold(problem, solution) == (gold, rule)


def test_the_bundled_math_golds_all_parse(judge: equivalence.MathJudge) -> None:
    """Two of the 5000 MATH golds did not parse before answer_forms (a `,\\!` separator
    inside a fraction, a trailing period); now none is unparseable."""
    rows = _math_rows()
    picked = [1598, 2269] + list(range(0, 5000, 50))
    gold = [golds.math_gold(rows[i]["problem"], rows[i]["solution"])[0] for i in picked]
    parses = judge.parses(gold)
    assert [g for g in gold if not parses[g]] == []


# --------------------------------------------------------------------------- golds in grading


def _questions(gold: str) -> pl.DataFrame:
    df = pl.DataFrame(
        {
            "question_id": ["m1", "m2"],
            "dataset": "math",
            "problem": "a question",
            "choices": [[], []],
            "gold": ["\\frac{1}{", gold],
            "answer_type": "math",
            "task": "t",
            "subject": None,
            "level": None,
            "source_row": [0, 1],
        },
        schema_overrides={"choices": pl.List(pl.String)},
    )
    return pl.from_arrow(tables.conform(df, tables.QUESTIONS, "questions"))


def _elicited(rows: list[tuple]) -> pl.DataFrame:
    df = pl.DataFrame(
        {
            "question_id": [r[0] for r in rows],
            "kind": [r[1] for r in rows],
            "level": [r[2] for r in rows],
            "sample": [r[3] for r in rows],
            "source_finish_reason": "stop",
            "answer_text": [r[4] for r in rows],
            "n_answer_tokens": 12,
            "answer_finish_reason": "stop",
        },
        schema_overrides={"level": pl.Float64, "sample": pl.Int32, "n_answer_tokens": pl.Int32},
    )
    df = df.with_columns(
        pl.lit(None).alias(c) for c in tables.ELICITED.names if c not in df.columns
    )
    return pl.from_arrow(tables.conform(df, tables.ELICITED, "elicited"))


ROWS = [
    ("m1", "orig", None, None, "The answer is $\\frac{1}{2}$."),
    ("m1", "stump", 0.5, None, "The answer is $\\frac{1}{2}$."),
    ("m1", "resample", 0.5, 0, "The answer is $0.5$."),
    ("m2", "orig", None, None, "The answer is $\\frac{1}{2}$."),
    ("m2", "stump", 0.5, None, "The answer is $\\frac{2}{4}$."),
    ("m2", "resample", 0.5, 0, "The answer is $0.5$."),
    ("m2", "resample", 0.5, 1, "The answer is $\\frac{1}{3}$."),
]


def test_an_unparseable_gold_nulls_its_flags(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="critical_windows.grading.grader"):
        result = grader.grade_and_audit(_questions("0.5"), _elicited(ROWS), processes=1)
    graded = result.graded
    tables.conform(graded, tables.GRADED, "graded")
    bad = graded.filter(pl.col("question_id") == "m1").row(0, named=True)
    assert bad["gold_missing_reason"] == "gold_unparseable"
    assert [bad[f] for f in ("orig_is_right", "is_right", "stump_is_right")] == [None] * 3
    # What does not involve the gold is still graded.
    assert (bad["is_consistent"], bad["is_stump"], bad["stump_is_consistent"]) == (True,) * 3
    good = graded.filter(pl.col("question_id") == "m2").sort("sample").rows(named=True)
    assert [r["gold_missing_reason"] for r in good] == [None, None]
    assert [r["is_right"] for r in good] == [True, False]
    assert ("math", "gold", "gold_unparseable", 1) in result.missing.rows()
    assert "question m1: math-verify cannot read the gold" in caplog.text


def test_the_audit_lists_where_the_two_judges_disagree(tmp_path: Path) -> None:
    result = grader.grade_and_audit(_questions("\\dfrac{1}{2}"), _elicited(ROWS), processes=1)
    disagree = {(r["reference"], r["answer"]): r for r in result.audit.iter_rows(named=True)}
    # math-verify: 1/2 = 0.5; the MATH string normaliser only maps exactly "0.5" to 1/2,
    # so it agrees there, but not on 2/4 against 1/2.
    assert disagree[("\\frac{1}{2}", "\\frac{2}{4}")]["math_verify"] is True
    assert disagree[("\\frac{1}{2}", "\\frac{2}{4}")]["normalised_string"] is False
    assert ("\\frac{1}{2}", "0.5") not in disagree
    assert ("\\dfrac{1}{2}", "\\frac{1}{3}") not in disagree  # both: not equal
    rates = result.audit_rates.row(0, named=True)
    assert rates["dataset"] == "math"
    assert rates["n_disagree"] == len(disagree)
    assert rates["n_pairs"] == len(grader.math_pairs(result.graded))
    assert rates["disagreement_rate"] == pytest.approx(len(disagree) / rates["n_pairs"])
    path = tmp_path / "grading_audit.csv"
    audit.write_csv(result.audit, path)
    assert pl.read_csv(path).columns == list(audit.AUDIT_COLUMNS)
    assert pl.read_csv(path).height == len(disagree)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("\\frac{1}{2}", "0.5", True),
        ("\\dfrac{1}{2}", "\\frac12", True),
        ("\\text{Tuesday}", "Tuesday", True),
        ("10\\%", "10", True),
        ("5\\text{ cm}", "5", True),
        ("\\sqrt3", "\\sqrt{3}", True),
        ("k = 7", "7", True),
        ("0.25", "\\frac{1}{4}", False),
        ("\\text{north}", "North", False),
        ("x+1", "1+x", False),
    ],
)
def test_the_math_string_judge(a: str, b: str, same: bool) -> None:
    assert math_normalize.string_equivalent(a, b) is same


# --------------------------------------------------------------------------- the CLI


def test_cli_reports_an_unparseable_gold(tmp_path: Path) -> None:
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    records = [
        {"answer_type": "math", "gold": "\\frac{1}{", "response": "The answer is $0.5$."},
        {"answer_type": "math", "gold": "\\text{north}", "response": "The answer is North."},
        {"answer_type": "math", "gold": "0.\\overline{3}", "response": "The answer is $1/3$."},
        {
            "answer_type": "multiple_choice",
            "gold": "H",
            "n_choices": 10,
            "response": "Answer: C\nWait, C is a noble gas. The answer is (H).",
        },
    ]
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert cli.main(["--in", str(source), "--out", str(out), "--processes", "1"]) == 0
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["extracted"], r["correct"], r["missing_reason"]) for r in results] == [
        ("0.5", None, "gold_unparseable"),
        ("\\text{North}", True, None),
        ("1/3", True, None),
        ("H", True, None),
    ]


def test_the_run_summary_states_the_disagreement_rate(tmp_path: Path) -> None:
    result = grader.grade_and_audit(_questions("\\dfrac{1}{2}"), _elicited(ROWS), processes=1)
    path = tmp_path / "graded.parquet"
    tables.write_table(result.graded, path, tables.GRADED, {"audit": result.audit_rates.to_dicts()})
    rates = audit.rates_of_graded([path])
    assert rates.equals(result.audit_rates)
    numbers = pl.DataFrame({"model": "m", "dataset": ["math", "arc_easy", "all"]})
    row = audit.with_rates(numbers, rates).rows_by_key("dataset", named=True)
    n, k = rates["n_pairs"][0], rates["n_disagree"][0]
    assert row["math"][0]["grading_disagreement_rate"] == pytest.approx(k / n)
    assert row["all"][0]["grading_audit_pairs"] == n
    assert row["arc_easy"][0]["grading_disagreement_rate"] is None
    text = audit.markdown(rates)
    assert f"| math | {n} | {k} | {k / n:.3f} |" in text
    assert "No MATH answers were compared." in audit.markdown(audit.rates_of_graded([]))


MINI_SNAKEFILE = """\
from snakemake.utils import validate


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/grading.smk"
"""


@pytest.mark.slow
def test_the_grading_rule_writes_the_audit(tmp_path: Path) -> None:
    """grade_answers on a fake upstream: the audit CSV is a declared output, and the graded
    table carries the counts the run's summary reads."""
    import os
    import shutil
    import subprocess
    import sys

    (tmp_path / "src").symlink_to(ROOT / "src")
    (tmp_path / "workflow").symlink_to(ROOT / "workflow")
    (tmp_path / "Snakefile").write_text(MINI_SNAKEFILE)
    (tmp_path / "config.yaml").write_text(
        "models: {fake: {path: embedded}}\ndatasets: [math]\nshards: 1\n"
    )
    run = tmp_path / "results" / "fake" / "math"
    run.mkdir(parents=True)
    questions = _questions("\\frac{1}{2}").with_columns(pl.lit("math").alias("dataset"))
    tables.write_table(questions, tmp_path / "results/datasets/math.parquet", tables.QUESTIONS)
    tables.write_table(_elicited(ROWS), run / "elicited.parquet", tables.ELICITED)
    snakemake = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or "snakemake"
    done = subprocess.run(
        [snakemake, "--cores", "1", "results/fake/math/grading_audit.csv"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    found = pl.read_csv(run / "grading_audit.csv")
    assert found.columns == list(audit.AUDIT_COLUMNS)
    assert ("\\frac{1}{2}", "\\frac{2}{4}") in found.select("reference", "answer").rows()
    rates = audit.rates_of_graded([run / "graded.parquet"])
    assert rates["n_disagree"].to_list() == [found.height]
    graded = tables.read_table(run / "graded.parquet", tables.GRADED)
    assert graded.filter(pl.col("question_id") == "m1")["gold_missing_reason"].to_list() == [
        "gold_unparseable"
    ]
