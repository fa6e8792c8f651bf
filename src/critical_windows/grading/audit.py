"""A second, independent MATH judge beside math-verify, and the audit of where they differ.

The second judge is the MATH benchmark's normalised string comparison, as the research
code's prm800k grader applies it first (`critical_windows.grading.math_normalize`). It knows no
mathematics, so where it disagrees with math-verify one of the two is wrong, and a
researcher can look at the pair.

`audit` judges every distinct MATH pair that a flag of the graded table compares with
both judges and returns the disagreeing pairs; `rates` counts them per dataset, and
`with_rates` / `markdown` put the counts in the run's summary.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import polars as pl

from critical_windows.grading.math_normalize import string_equivalent
from critical_windows.io import tables
from critical_windows.io.atomic import replacing

AUDIT_COLUMNS = {
    "dataset": pl.String,
    "reference": pl.String,  # the gold, or the original / stump answer compared against
    "answer": pl.String,
    "math_verify": pl.Boolean,  # the grading's call (math-verify with answer_forms)
    "normalised_string": pl.Boolean,  # the MATH benchmark's normalised string comparison
    "n_flags": pl.Int64,  # how many flags of the graded table this pair decides
}
RATE_COLUMNS = {
    "dataset": pl.String,
    "n_pairs": pl.Int64,  # distinct MATH pairs compared
    "n_disagree": pl.Int64,
    "disagreement_rate": pl.Float64,  # n_disagree / n_pairs; null without MATH pairs
}


# --------------------------------------------------------------------------- the audit


def audit(pairs: pl.DataFrame, equal: dict[tuple[str, str], bool]) -> pl.DataFrame:
    """The pairs on which the two judges disagree (`AUDIT_COLUMNS`), most flags first.

    `pairs` has dataset, a (the reference), b (the answer) and n_flags, one row per
    distinct pair (`grading.math_pairs`); `equal` is math-verify's call on each.
    """
    rows = [
        (dataset, a, b, equal[a, b], string_equivalent(a, b), n)
        for dataset, a, b, n in pairs.select("dataset", "a", "b", "n_flags").iter_rows()
    ]
    return (
        pl.DataFrame(rows, schema=AUDIT_COLUMNS, orient="row")
        .filter(pl.col("math_verify") != pl.col("normalised_string"))
        .sort("dataset", "n_flags", "reference", "answer", descending=[False, True, False, False])
    )


def rates(pairs: pl.DataFrame, disagreeing: pl.DataFrame) -> pl.DataFrame:
    """Per dataset (`RATE_COLUMNS`): distinct MATH pairs compared, how many the judges
    disagree on, and the share."""
    compared = pairs.group_by("dataset").agg(pl.len().cast(pl.Int64).alias("n_pairs"))
    differ = disagreeing.group_by("dataset").agg(pl.len().cast(pl.Int64).alias("n_disagree"))
    return (
        compared.join(differ, on="dataset", how="left")
        .with_columns(pl.col("n_disagree").fill_null(0))
        .with_columns(disagreement_rate=pl.col("n_disagree") / pl.col("n_pairs"))
        .select(list(RATE_COLUMNS))
        .cast(RATE_COLUMNS)  # type: ignore[arg-type]
        .sort("dataset")
    )


def write_csv(table: pl.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write an audit table as CSV, atomically; an empty audit is its header line."""
    path = Path(path)
    with replacing(path) as tmp:
        table.select(list(AUDIT_COLUMNS)).write_csv(tmp)


def pooled_rate(counts: Iterable[dict[str, int]]) -> dict[str, int | float | None]:
    """n_pairs, n_disagree and disagreement_rate summed over datasets' rate rows."""
    rows = list(counts)
    n = sum(r["n_pairs"] for r in rows)
    k = sum(r["n_disagree"] for r in rows)
    return {"n_pairs": n, "n_disagree": k, "disagreement_rate": k / n if n else None}


# --------------------------------------------------------------------------- the run's summary


def rates_of_graded(paths: Iterable[str | os.PathLike[str]]) -> pl.DataFrame:
    """The audit counts (`RATE_COLUMNS`) that grading stored with each graded table."""
    rows = [row for p in paths for row in tables.read_metadata(p).get("audit", [])]
    return pl.DataFrame(rows, schema=RATE_COLUMNS) if rows else pl.DataFrame(schema=RATE_COLUMNS)


def with_rates(numbers: pl.DataFrame, rates: pl.DataFrame, pooled: str = "all") -> pl.DataFrame:
    """The run's headline numbers with the audit's pairs, disagreements and rate per
    dataset (null where no MATH pair was compared) and pooled over datasets."""
    total = pooled_rate(rates.to_dicts())
    both = pl.concat(
        [rates, pl.DataFrame([{"dataset": pooled, **total}], schema=RATE_COLUMNS)]
        if total["n_pairs"]
        else [rates]
    ).rename(
        {
            "n_pairs": "grading_audit_pairs",
            "n_disagree": "grading_audit_disagree",
            "disagreement_rate": "grading_disagreement_rate",
        }
    )
    return numbers.join(both, on="dataset", how="left")


def markdown(rates: pl.DataFrame) -> str:
    """A section for summary.md: how often the two MATH judges disagree."""
    lines = [
        "",
        "## Grading audit",
        "",
        "A second MATH judge, the MATH benchmark's normalised string comparison (as in "
        "prm800k), beside math-verify; the pairs they disagree on are in "
        "`{dataset}/grading_audit.csv`.",
        "",
    ]
    if rates.is_empty():
        return "\n".join([*lines, "No MATH answers were compared.", ""])
    lines += ["| dataset | pairs compared | disagree | disagreement rate |", "|---|---:|---:|---:|"]
    total = pooled_rate(rates.to_dicts())
    for r in [*rates.to_dicts(), {"dataset": "all", **total}]:
        rate = r["disagreement_rate"]
        shown = "–" if rate is None else f"{rate:.3f}"
        lines.append(f"| {r['dataset']} | {r['n_pairs']} | {r['n_disagree']} | {shown} |")
    return "\n".join(lines) + "\n"
