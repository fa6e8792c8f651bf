"""Grade a run's tables: extract every answer, compare it with the gold and the original
answer, and flag every resample (multiple-choice letters by equality, MATH answers by
mathematical equivalence through critical_windows.grading.equivalence), with the audit beside.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from critical_windows.catalog import ANSWER_TYPES, MATH, MULTIPLE_CHOICE
from critical_windows.grading import audit, extraction
from critical_windows.grading.equivalence import MathJudge
from critical_windows.io import tables
from critical_windows.io.atomic import replacing

logger = logging.getLogger(__name__)

KINDS = ("orig", "stump", "resample", "direct")


# (flag, reference column, answer column): the reference goes first into `verify`.
COMPARISONS = (
    ("orig_is_right", "gold", "orig_answer"),
    ("direct_is_right", "gold", "direct_answer"),
    ("is_right", "gold", "resample_answer"),
    ("is_consistent", "orig_answer", "resample_answer"),
    ("stump_is_right", "gold", "stump_answer"),
    ("stump_is_consistent", "orig_answer", "stump_answer"),
    ("is_stump", "stump_answer", "resample_answer"),
)


# --------------------------------------------------------------------------- math-verify


"""math-verify's reading of an answer, and its value when it is one plain number."""


# --------------------------------------------------------------------------- extraction


def _extract_frame(rows: pl.DataFrame, choices: pl.DataFrame) -> pl.DataFrame:
    """Add `answer` and `missing_reason` to rows with answer_text, answer_type, n_choices.

    Each distinct text is extracted once; only choice-text matching depends on the question.
    """
    rows = rows.with_columns(pl.col("answer_text").fill_null(""))
    keys = rows.select("answer_text", "answer_type", "n_choices").unique()
    found = [
        extraction.extract_letter(text, n)
        if kind == MULTIPLE_CHOICE
        else extraction.extract_math(text)
        for text, kind, n in keys.iter_rows()
    ]
    keys = keys.with_columns(
        pl.Series("answer", [f.answer for f in found], dtype=pl.String),
        pl.Series("missing_reason", [f.missing_reason for f in found], dtype=pl.String),
    )
    rows = rows.join(keys, on=["answer_text", "answer_type", "n_choices"], how="left")

    fallback = (pl.col("answer_type") == MULTIPLE_CHOICE) & pl.col("missing_reason").is_in(
        [extraction.NO_ANSWER, extraction.OUT_OF_RANGE]
    )
    retry = rows.filter(fallback).select("question_id", "answer_text").unique()
    wanted = {
        qid: [extraction.normalise_choice(c) for c in options or []]
        for qid, options in choices.join(retry.select("question_id").unique(), on="question_id")
        .select("question_id", "choices")
        .iter_rows()
    }
    phrases = {text: extraction.answer_phrases(text) for text in retry["answer_text"].unique()}
    letters = [
        extraction.letter_of_phrases(phrases[text], wanted.get(qid, []))
        for qid, text in retry.iter_rows()
    ]
    retry = retry.with_columns(pl.Series("choice_letter", letters, dtype=pl.String))
    rows = rows.join(retry, on=["question_id", "answer_text"], how="left")
    matched = fallback & pl.col("choice_letter").is_not_null()
    return rows.with_columns(
        pl.when(matched).then(pl.col("choice_letter")).otherwise(pl.col("answer")).alias("answer"),
        pl.when(matched)
        .then(pl.lit(None, dtype=pl.String))
        .otherwise(pl.col("missing_reason"))
        .alias("missing_reason"),
    ).drop("choice_letter")


def _mark_unparseable(rows: pl.DataFrame, judge: MathJudge) -> pl.DataFrame:
    """MATH answers that math-verify cannot read become missing ("unparseable")."""
    math_answers = rows.filter((pl.col("answer_type") == MATH) & pl.col("answer").is_not_null())
    ok = judge.parses(math_answers["answer"].unique().to_list())
    bad = [s for s, parses in ok.items() if not parses]
    unparseable = (pl.col("answer_type") == MATH) & pl.col("answer").is_in(bad)
    return rows.with_columns(
        pl.when(unparseable)
        .then(pl.lit(None, dtype=pl.String))
        .otherwise(pl.col("answer"))
        .alias("answer"),
        pl.when(unparseable)
        .then(pl.lit(extraction.UNPARSEABLE))
        .otherwise(pl.col("missing_reason"))
        .alias("missing_reason"),
    )


def _mark_cut(rows: pl.DataFrame, finish: str) -> pl.DataFrame:
    cut = (pl.col(finish) == "length") & pl.col("missing_reason").is_in(
        [extraction.NO_ANSWER, extraction.UNPARSEABLE]
    )
    return rows.with_columns(
        pl.when(cut)
        .then(pl.lit(extraction.CUT))
        .otherwise(pl.col("missing_reason"))
        .alias("missing_reason")
    )


# --------------------------------------------------------------------------- grading


def _check_inputs(questions: pl.DataFrame, elicited: pl.DataFrame) -> None:
    duplicated = questions.filter(pl.col("question_id").is_duplicated())
    if len(duplicated):
        raise ValueError(f"questions: question_id {duplicated['question_id'][0]!r} repeats")
    types = set(questions["answer_type"].unique().to_list()) - set(ANSWER_TYPES)
    if types:
        raise ValueError(f"questions: unknown answer_type {sorted(map(str, types))}")
    kinds = set(elicited["kind"].unique().to_list()) - set(KINDS)
    if kinds:
        raise ValueError(f"elicited: unknown kind {sorted(map(str, kinds))}, expected {KINDS}")
    unknown = elicited.join(questions.select("question_id"), on="question_id", how="anti")
    if len(unknown):
        raise ValueError(
            f"elicited: {unknown['question_id'].n_unique()} question_id(s) not in the "
            f"questions table, e.g. {unknown['question_id'][0]!r}"
        )
    key = ["question_id", "kind", "level", "sample"]
    repeated = elicited.group_by(key).len().filter(pl.col("len") > 1)
    if len(repeated):
        raise ValueError(f"elicited: several answers for {repeated.select(key).row(0, named=True)}")


def _kind_columns(answers: pl.DataFrame, kind: str, key: list[str]) -> pl.DataFrame:
    return answers.filter(pl.col("kind") == kind).select(
        *key,
        pl.col("answer").alias(f"{kind}_answer"),
        pl.col("missing_reason").alias(f"{kind}_missing_reason"),
    )


def _assemble(answers: pl.DataFrame, meta: pl.DataFrame) -> pl.DataFrame:
    """One row per resample with the answers of its question and prefix beside it."""
    graded = (
        _kind_columns(answers, "resample", ["question_id", "level", "sample"])
        .join(meta, on="question_id", how="left")
        .join(_kind_columns(answers, "orig", ["question_id"]), on="question_id", how="left")
        .join(_kind_columns(answers, "direct", ["question_id"]), on="question_id", how="left")
        .join(
            _kind_columns(answers, "stump", ["question_id", "level"]),
            on=["question_id", "level"],
            how="left",
        )
    )
    not_elicited = [
        pl.when(pl.col(f"{k}_answer").is_null() & pl.col(f"{k}_missing_reason").is_null())
        .then(pl.lit(extraction.NOT_ELICITED))
        .otherwise(pl.col(f"{k}_missing_reason"))
        .alias(f"{k}_missing_reason")
        for k in ("orig", "stump", "direct")
    ]
    return graded.with_columns(not_elicited)


def _gold_reasons(meta: pl.DataFrame, judge: MathJudge) -> pl.DataFrame:
    """`meta` with `gold_missing_reason`: "gold_unparseable" for a MATH gold that
    math-verify cannot read, whose flags are then null rather than False."""
    golds = meta.filter(pl.col("answer_type") == MATH)["gold"].drop_nulls().unique().to_list()
    bad = [g for g, ok in judge.parses(golds).items() if not ok]
    for qid in meta.filter((pl.col("answer_type") == MATH) & pl.col("gold").is_in(bad))[
        "question_id"
    ].head(5):
        logger.warning("question %s: math-verify cannot read the gold; its flags are null", qid)
    return meta.with_columns(
        pl.when((pl.col("answer_type") == MATH) & pl.col("gold").is_in(bad))
        .then(pl.lit(extraction.GOLD_UNPARSEABLE))
        .otherwise(pl.lit(None, dtype=pl.String))
        .alias("gold_missing_reason")
    )


def math_pairs(graded: pl.DataFrame) -> pl.DataFrame:
    """The distinct (reference, answer) pairs of MATH rows that the flags compare, with
    the dataset and the number of flags each decides (columns dataset, a, b, n_flags)."""
    usable = pl.col("gold_missing_reason").is_null()
    parts = [
        graded.filter((pl.col("answer_type") == MATH) & (usable if ref == "gold" else True))
        .select("dataset", pl.col(ref).alias("a"), pl.col(ans).alias("b"))
        .drop_nulls()
        for _, ref, ans in COMPARISONS
    ]
    schema = {"dataset": pl.String, "a": pl.String, "b": pl.String}
    return (
        pl.concat([p.cast(schema) for p in parts])  # type: ignore[arg-type]
        .group_by("dataset", "a", "b")
        .agg(pl.len().cast(pl.Int64).alias("n_flags"))
        .sort("dataset", "a", "b")
    )


def _add_flags(graded: pl.DataFrame, equal: dict[tuple[str, str], bool]) -> pl.DataFrame:
    """The flags of `COMPARISONS`; `equal` holds math-verify's call on every MATH pair."""
    is_math = pl.col("answer_type") == MATH
    table = pl.DataFrame(
        {"a": [a for a, _ in equal], "b": [b for _, b in equal], "same": list(equal.values())},
        schema={"a": pl.String, "b": pl.String, "same": pl.Boolean},
    )
    for flag, ref, ans in COMPARISONS:
        graded = graded.join(
            table.rename({"a": ref, "b": ans, "same": f"_{flag}"}), on=[ref, ans], how="left"
        ).with_columns(
            pl.when(
                pl.col(ref).is_null()
                | pl.col(ans).is_null()
                | (pl.col("gold_missing_reason").is_not_null() if ref == "gold" else False)
            )
            .then(pl.lit(None, dtype=pl.Boolean))
            .when(is_math)
            .then(pl.col(f"_{flag}"))
            .otherwise(pl.col(ref) == pl.col(ans))
            .alias(flag)
        )
    return graded.drop([f"_{flag}" for flag, _, _ in COMPARISONS]).sort(
        "question_id", "level", "sample"
    )


def _missing_summary(answers: pl.DataFrame, graded: pl.DataFrame) -> pl.DataFrame:
    found = answers.filter(pl.col("missing_reason").is_not_null()).select(
        "dataset", "kind", "missing_reason"
    )
    gaps = [
        graded.filter(pl.col(f"{kind}_missing_reason") == extraction.NOT_ELICITED)
        .unique(subset=key)
        .select(
            "dataset",
            pl.lit(kind).alias("kind"),
            pl.col(f"{kind}_missing_reason").alias("missing_reason"),
        )
        for kind, key in (
            ("orig", ["question_id"]),
            ("direct", ["question_id"]),
            ("stump", ["question_id", "level"]),
        )
    ]
    golds = (
        graded.filter(pl.col("gold_missing_reason").is_not_null())
        .unique(subset="question_id")
        .select("dataset", pl.lit("gold").alias("kind"), pl.col("gold_missing_reason"))
        .rename({"gold_missing_reason": "missing_reason"})
    )
    return (
        pl.concat([found, *gaps, golds])
        .group_by("dataset", "kind", "missing_reason")
        .agg(pl.len().cast(pl.Int64).alias("count"))
        .sort("dataset", "kind", "missing_reason")
    )


def _log_missing(answers: pl.DataFrame, summary: pl.DataFrame) -> None:
    elicited = dict(answers.group_by("kind").len().iter_rows())
    for kind in KINDS:
        rows = summary.filter(pl.col("kind") == kind)
        by_reason = dict(
            rows.group_by("missing_reason")
            .agg(pl.col("count").sum())
            .sort("missing_reason")
            .iter_rows()
        )
        total = elicited.get(kind, 0) + by_reason.get(extraction.NOT_ELICITED, 0)
        detail = ", ".join(f"{reason} {n}" for reason, n in by_reason.items())
        logger.info(
            "%s: %d of %d answers missing%s",
            kind,
            sum(by_reason.values()),
            total,
            f" ({detail})" if detail else "",
        )


def write_summary_csv(summary: pl.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write the missing-answer counts (`tables.MISSING_SUMMARY`) as CSV, atomically."""
    path = Path(path)
    table = pl.from_arrow(tables.conform(summary, tables.MISSING_SUMMARY, str(path)))
    with replacing(path) as tmp:
        table.write_csv(tmp)  # type: ignore[union-attr]


@dataclass(frozen=True)
class Grading:
    """What grading one elicited table gives (`grade_and_audit`)."""

    graded: pl.DataFrame  # tables.GRADED
    missing: pl.DataFrame  # tables.MISSING_SUMMARY
    audit: pl.DataFrame  # audit.AUDIT_COLUMNS: pairs the two MATH judges disagree on
    audit_rates: pl.DataFrame  # audit.RATE_COLUMNS, one row per dataset with MATH pairs


def grade_and_audit(
    questions: pl.DataFrame,
    elicited: pl.DataFrame,
    *,
    cache: Path | None = None,
    processes: int | None = None,
) -> Grading:
    """Grade, and audit every MATH comparison with a second judge (`grading.audit`).

    `questions` follows `tables.QUESTIONS`, `elicited` follows `tables.ELICITED`. The graded
    table has one row per resample, with the answers of its orig, stump and direct beside it.
    An answer that cannot be extracted is null with a `*_missing_reason`
    (`extraction.MISSING_REASONS`), and every flag that involves it is null; so is every
    flag against a MATH gold that math-verify cannot read (`gold_missing_reason`). `cache`
    is a Parquet file of math-verify results kept across runs; `processes` defaults to the
    CPUs this process may use.
    """
    start = time.perf_counter()
    _check_inputs(questions, elicited)
    meta = questions.select(
        "question_id",
        "dataset",
        "answer_type",
        pl.when(pl.col("answer_type") == MULTIPLE_CHOICE)
        .then(pl.col("gold").str.strip_chars().str.to_uppercase())
        .otherwise(pl.col("gold"))
        .alias("gold"),
    )
    shape = questions.select(
        "question_id",
        pl.col("choices").list.len().fill_null(0).cast(pl.Int32).alias("n_choices"),
    )
    rows = elicited.join(meta, on="question_id", how="left").join(
        shape, on="question_id", how="left"
    )
    answers = _extract_frame(rows, questions.select("question_id", "choices"))
    with MathJudge(cache, processes) as judge:
        answers = _mark_cut(_mark_unparseable(answers, judge), "answer_finish_reason")
        assembled = _assemble(answers, _gold_reasons(meta, judge))
        pairs = math_pairs(assembled)
        equal = judge.equivalent(pairs.select("a", "b").unique().iter_rows())
        graded = _add_flags(assembled, equal)
    summary = _missing_summary(answers, graded)
    _log_missing(answers, summary)
    disagreeing = audit.audit(pairs, equal)
    rates = audit.rates(pairs, disagreeing)
    for dataset, n, k, rate in rates.iter_rows():
        logger.info(
            "%s: math-verify and the MATH normalised string comparison disagree on %d of "
            "%d distinct pairs (%.3f)",
            dataset,
            k,
            n,
            rate,
        )
    logger.info(
        "graded %d elicited answers into %d rows in %.1f s; math-verify: %s",
        len(elicited),
        len(graded),
        time.perf_counter() - start,
        ", ".join(f"{k} {v}" for k, v in sorted(judge.stats.items())),
    )
    return Grading(
        graded.select(tables.GRADED.names),
        summary.select(tables.MISSING_SUMMARY.names),
        disagreeing,
        rates,
    )


def grade(
    questions: pl.DataFrame,
    elicited: pl.DataFrame,
    *,
    cache: Path | None = None,
    processes: int | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The graded table (`tables.GRADED`) and the missing-answer counts
    (`tables.MISSING_SUMMARY`) of `grade_and_audit`."""
    result = grade_and_audit(questions, elicited, cache=cache, processes=processes)
    return result.graded, result.missing


# --------------------------------------------------------------------------- re-grading CLI
