"""Benchmark: how much of a run's answers each readout reads (issue #14).

Compares the finished runs of one model under two readouts (e.g. the embedded default
with `elicitation: followup` + `answer_readout: greedy`, and the same config with `forced`
+ `logprobs`), per dataset: the share of missing answers among the original responses,
the stumps and the continuations, and the questions left without a curve (the original's
answer missing, or no level with a graded continuation). For a logprob run it also checks
that every letter distribution sums to 1 over the question's letters and reports the mean
gap between the forced curve P(original answer) and the sampled P(f).

    python benchmarks/bench_readout.py RUN_DIR_BEFORE RUN_DIR_AFTER [--model smollm2]

RUN_DIR is a workflow directory holding results/{model}/{dataset}/*.parquet.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl

from critical_windows.analysis import distributions


def run_figures(root: Path, model: str) -> pl.DataFrame:
    """Per dataset: missing shares by kind, questions without a curve, logprob checks."""
    rows = []
    for folder in sorted((root / "results" / model).iterdir()):
        if not (folder / "graded.parquet").is_file():
            continue
        # plain reads: a run from before a schema change still compares
        graded = pl.read_parquet(folder / "graded.parquet")
        curves = pl.read_parquet(folder / "curves.parquet")
        elicited = pl.read_parquet(folder / "elicited.parquet")
        if "answer_probs" not in elicited.columns:  # a run from before the logprob readout
            elicited = elicited.with_columns(answer_probs=pl.lit(None, pl.List(pl.Float64)))
        orig = graded.unique("question_id")
        stumps = graded.unique(["question_id", "level"])
        sampled = curves.filter(pl.col("level") < 1)
        has_curve = (
            curves.group_by("question_id")
            .agg(
                ok=(pl.col("level") == 1).any()
                & pl.col("p_consistent").filter(pl.col("level") == 1).is_not_null().all()
                & pl.col("p_consistent").filter(pl.col("level") < 1).is_not_null().any()
            )
            .filter("ok")
            .height
        )
        probs = elicited.filter(pl.col("answer_probs").is_not_null())["answer_probs"]
        sums = probs.list.sum()
        levels = distributions.level_distributions(graded, elicited)
        gap = distributions.readout_windows(levels, curves, jump=0.5, drop=0.3)["forced_gap"]
        rows.append(
            {
                "dataset": folder.name,
                "questions": orig.height,
                "orig_missing": orig["orig_answer"].is_null().mean(),
                "stump_missing": stumps["stump_answer"].is_null().mean(),
                "continuation_missing": graded["resample_answer"].is_null().mean(),
                "all_missing": (
                    orig["orig_answer"].is_null().sum()
                    + stumps["stump_answer"].is_null().sum()
                    + graded["resample_answer"].is_null().sum()
                )
                / (orig.height + stumps.height + graded.height),
                "no_curve": orig.height - has_curve,
                "mean_p_consistent": sampled["p_consistent"].mean(),
                "distributions": probs.len(),
                "max_sum_error": float((sums - 1).abs().max()) if probs.len() else None,
                "mean_forced_gap": gap.mean(),
            }
        )
    return pl.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--model", default="smollm2")
    args = ap.parse_args()
    before, after = run_figures(args.before, args.model), run_figures(args.after, args.model)
    both = before.join(after, on="dataset", suffix="_after")
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=250, float_precision=3):
        print("before:", args.before)
        print(before)
        print("after:", args.after)
        print(after)
        print(
            both.select(
                "dataset",
                "all_missing",
                "all_missing_after",
                "no_curve",
                "no_curve_after",
                ratio=pl.col("all_missing_after") / pl.col("all_missing"),
            )
        )


if __name__ == "__main__":
    main()
