"""Benchmark `grader.grade` on a one-million-row elicited table. Not a test: it reports.

The table mimics the paper's protocol (6 levels x 25 resamples, orig, direct and a stump per
level: 158 answers per question) over ~6,300 questions, one in seven from MATH with the
gold answers of MATH-500. Answers repeat as greedy follow-ups do: a few phrasings of a few
values per question, the gold in other forms (0.5 for \\frac{1}{2}), some rambling unique
texts, some answers with nothing to extract and some cut by max_tokens.

    python benchmarks/bench_grading.py [--rows 1000000] [--processes N]

Prints figures and appends them to results/benchmarks/grading.csv. The first run grades
with an empty equivalence cache, the second reuses it. Each run is what the grading rule
does: `grader.grade_and_audit`, the grading and its audit by the MATH string judge.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from critical_windows.grading import grader
from critical_windows.io import tables

ROOT = Path(__file__).resolve().parents[1]
MATH500 = ROOT / "resources" / "datasets" / "math" / "math500_test.jsonl"
OUT = ROOT / "results" / "benchmarks" / "grading.csv"
LEVELS = [0.05, 0.1, 0.3, 0.5, 0.7, 0.9]
SAMPLES = 25
PER_QUESTION = 2 + len(LEVELS) * (1 + SAMPLES)
MATH_SHARE = 1 / 7

MC_TEMPLATES = [
    "The answer is ({L}).",
    "The answer is {L}.",
    "The answer is ({L}) {T}",
    "The answer is {L}: {T}",
    "answer: {l}",
    "**{L}**",
    "The correct answer is option {L}. {T} is the best choice because it fits the question.",
    "The answer is $\\boxed{{{L}}}$",
    "## Final Answer\n\n**{L}**",
    "<answer>{L}</answer>",
    "After ruling out the others, my pick would be {L}.",
    "Answer: {L}\n\nWait, let me double-check the units. Yes, the answer is ({L}).",
]
MATH_TEMPLATES = [
    "The answer is ${X}$.",
    "The answer is $\\boxed{{{X}}}$",
    "The answer is ${X}$. This is because we simplify the expression step by step.",
    "The answer is $$ {X} $$",
    "Final answer: ${X}$",
]
NO_ANSWER = [
    "I'm sorry, I cannot determine the answer from the given information.",
    "Given all of the above, what's the single, most likely answer? Your answer should have",
    "Let's think step by step again: the question asks for the value of",
]


def _weights(n: int) -> np.ndarray:
    """How often the k-th most common answer (or phrasing) of a question is given: Zipf-like."""
    w = 1 / np.arange(1, n + 1) ** 1.5
    return w / w.sum()


def _golds() -> list[str]:
    with open(MATH500, encoding="utf-8") as rows:
        return [json.loads(row)["answer"] for row in rows]


def _other_forms(gold: str) -> list[str]:
    """The gold written another way, as models do."""
    forms = [gold]
    if gold.lstrip("-").isdigit():
        forms += [f"{gold}.0", f"{int(gold):,}"]
    if gold.startswith("\\frac"):
        forms.append(gold.replace("\\frac", "\\dfrac", 1))
    return forms


def build(n_rows: int, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Questions and an elicited table of about `n_rows` rows."""
    rng = np.random.default_rng(seed)
    golds = _golds()
    n_questions = max(1, n_rows // PER_QUESTION)
    q_rows: list[tuple] = []
    pools: list[list[list[str]]] = []  # per question: answer values x phrasings
    for i in range(n_questions):
        if rng.random() < MATH_SHARE:
            gold = golds[i % len(golds)]
            values = _other_forms(gold)[:2]
            values += [str(v) for v in rng.integers(-50, 5000, size=5)]
            values += [f"\\frac{{{rng.integers(1, 30)}}}{{{rng.integers(2, 40)}}}"]
            pools.append([[t.format(X=v) for t in MATH_TEMPLATES] for v in values])
            q_rows.append((f"math-{i}", "math", [], gold, "math"))
        else:
            n = 5 if i % 3 == 0 else 4
            choices = [f"choice {c} of question {i}" for c in range(n)]
            gold = "ABCDE"[int(rng.integers(0, n))]
            pools.append(
                [
                    [t.format(L="ABCDE"[j], l="abcde"[j], T=choices[j]) for t in MC_TEMPLATES]
                    for j in rng.permutation(n)
                ]
            )
            q_rows.append((f"mc-{i}", "mmlu", choices, gold, "multiple_choice"))

    questions = pl.DataFrame(
        {
            "question_id": [r[0] for r in q_rows],
            "dataset": [r[1] for r in q_rows],
            "problem": "benchmark question",
            "choices": [r[2] for r in q_rows],
            "gold": [r[3] for r in q_rows],
            "answer_type": [r[4] for r in q_rows],
            "task": "benchmark",
            "subject": None,
            "level": None,
            "source_row": list(range(len(q_rows))),
        },
        schema_overrides={"choices": pl.List(pl.String)},
    )

    kinds = ["orig", "direct"] + ["stump"] * len(LEVELS) + ["resample"] * (len(LEVELS) * SAMPLES)
    levels = [None, None, *LEVELS] + [lv for lv in LEVELS for _ in range(SAMPLES)]
    samples = [None] * (2 + len(LEVELS)) + [s for _ in LEVELS for s in range(SAMPLES)]
    texts = []
    for pool in pools:
        value = rng.choice(len(pool), size=PER_QUESTION, p=_weights(len(pool)))
        phrasing = rng.choice(len(pool[0]), size=PER_QUESTION, p=_weights(len(pool[0])))
        texts += [pool[v][t] for v, t in zip(value, phrasing, strict=True)]
    n = len(texts)
    noise = rng.random(n)
    rambling = np.flatnonzero(noise < 0.01)
    for k in rambling:
        texts[k] = f"{texts[k]} Question {k}: what is {k} plus one? The answer is {k + 1}."
    for k in np.flatnonzero((noise >= 0.01) & (noise < 0.04)):
        texts[k] = NO_ANSWER[k % len(NO_ANSWER)]
    finish = np.where((noise >= 0.04) & (noise < 0.05), "length", "stop")
    for k in np.flatnonzero(finish == "length"):
        texts[k] = texts[k][: len(texts[k]) // 2]

    elicited = pl.DataFrame(
        {
            "question_id": np.repeat(questions["question_id"].to_numpy(), PER_QUESTION),
            "kind": kinds * n_questions,
            "level": levels * n_questions,
            "sample": samples * n_questions,
            "source_finish_reason": "stop",
            "answer_text": texts,
            "n_answer_tokens": 20,
            "answer_finish_reason": finish,
        },
        schema_overrides={"level": pl.Float64, "sample": pl.Int32, "n_answer_tokens": pl.Int32},
    )
    elicited = elicited.with_columns(  # columns grading does not read stay null
        pl.lit(None).alias(c) for c in tables.ELICITED.names if c not in elicited.columns
    )
    return (
        pl.from_arrow(tables.conform(questions, tables.QUESTIONS, "questions")),
        pl.from_arrow(tables.conform(elicited, tables.ELICITED, "elicited")),
    )


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished worker processes."""
    own, workers = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


def distinct_comparisons(graded: pl.DataFrame) -> tuple[int, int]:
    """Distinct MATH (reference, answer) pairs over all flags, and those of unequal strings."""
    math = graded.filter(pl.col("answer_type") == "math")
    pairs = (
        pl.concat(
            [
                math.select(pl.col(r).alias("a"), pl.col(c).alias("b"))
                for _, r, c in grader.COMPARISONS
            ]
        )
        .drop_nulls()
        .unique()
    )
    return len(pairs), len(pairs.filter(pl.col("a") != pl.col("b")))


class _JudgeStats(logging.Handler):
    """Keeps the math-verify counts that `grade` logs last ("parsed 12, verified 3, ...")."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.counts: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "math-verify: " in message:
            tail = message.split("math-verify: ", 1)[1]
            pairs = (item.rsplit(" ", 1) for item in tail.split(", ") if " " in item)
            self.counts = {name: int(n) for name, n in pairs}


def run(questions: pl.DataFrame, elicited: pl.DataFrame, cache: Path, processes: int) -> dict:
    stats = _JudgeStats()
    logging.getLogger("critical_windows.grading.grader").addHandler(stats)
    cpu_before = _cpu_seconds()
    start = time.perf_counter()
    result = grader.grade_and_audit(questions, elicited, cache=cache, processes=processes)
    graded, summary = result.graded, result.missing
    wall = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu_before
    logging.getLogger("critical_windows.grading.grader").removeHandler(stats)
    tables.conform(graded, tables.GRADED, "graded")
    tables.conform(summary, tables.MISSING_SUMMARY, "summary")
    pairs, unequal = distinct_comparisons(graded)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "graded_rows": len(graded),
        "missing": int(summary["count"].sum()),
        "pairs": pairs,
        "unequal_strings": unequal,
        "parsed": stats.counts.get("parsed", 0),
        "numerically_apart": stats.counts.get("numerically_apart", 0),
        "verified": stats.counts.get("verified", 0),
        "audit_disagree": int(result.audit_rates["n_disagree"].sum()),
        "audit_pairs": int(result.audit_rates["n_pairs"].sum()),
        "math_answers": graded.filter(pl.col("answer_type") == "math")
        .select(pl.concat_list(f"{k}_answer" for k in grader.KINDS).explode().drop_nulls())
        .n_unique(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--processes", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    start = time.perf_counter()
    questions, elicited = build(args.rows)
    built = time.perf_counter() - start
    math_rows = elicited.join(
        questions.filter(pl.col("answer_type") == "math").select("question_id"), on="question_id"
    )
    figures = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "processes": args.processes,
        "rows": len(elicited),
        "questions": len(questions),
        "distinct_texts": elicited["answer_text"].n_unique(),
        "distinct_math_texts": math_rows["answer_text"].n_unique(),
        "build_s": round(built, 2),
    }
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "equivalence.parquet"
        cold = run(questions, elicited, cache, args.processes)
        warm = run(questions, elicited, cache, args.processes)
    figures |= {
        "distinct_math_answers": cold["math_answers"],
        "distinct_math_comparisons": cold["pairs"],
        "of_unequal_strings": cold["unequal_strings"],
        "math_strings_parsed": cold["parsed"],
        "settled_numerically": cold["numerically_apart"],
        "math_verify_calls": cold["verified"],
        "audit_pairs": cold["audit_pairs"],
        "audit_disagree": cold["audit_disagree"],
        "audit_disagreement_rate": round(cold["audit_disagree"] / max(1, cold["audit_pairs"]), 4),
        "cold_wall_s": round(cold["wall_s"], 2),
        "cold_rows_per_s": round(len(elicited) / cold["wall_s"]),
        "cold_cpu_s": round(cold["cpu_s"], 2),
        "warm_wall_s": round(warm["wall_s"], 2),
        "warm_rows_per_s": round(len(elicited) / warm["wall_s"]),
        "warm_cpu_s": round(warm["cpu_s"], 2),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "graded_rows": cold["graded_rows"],
        "missing_answers": cold["missing"],
    }
    width = max(map(len, figures))
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    row = pl.DataFrame([figures])
    if OUT.exists():
        row = pl.concat([pl.read_csv(OUT), row], how="diagonal_relaxed")
    row.write_csv(OUT)
    print(f"appended to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
