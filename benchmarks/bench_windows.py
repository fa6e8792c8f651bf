"""Benchmark: detection, summary, figures and explorer on a one-million-row graded table.

A synthetic run (7 datasets, 6 levels, 25 continuations per level: about 6,700 questions),
written as Parquet the way the grading stage writes it, then every stage after grading timed
on it. Reports figures, asserts nothing. Writes results/benchmarks/windows.csv.

    python benchmarks/bench_windows.py [--rows 1000000] [--out results/benchmarks/windows.csv]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import polars as pl

from critical_windows.analysis import summary, windows
from critical_windows.io import tables
from critical_windows.io.atomic import write_atomic
from critical_windows.views import explorer, figures

DATASETS = ["math", "logiqa", "truthfulqa", "arc_challenge", "arc_easy", "mmlu", "aqua_rat"]
LEVELS = [0.05, 0.1, 0.3, 0.5, 0.7, 0.9]
SAMPLES = 25
TOKENS = 400
SENTENCE = "We compare each option with the facts given in the question and keep the best. "


def synthetic_run(rows: int, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """GRADED, TRUNCATED and BASE frames of a run with about `rows` graded continuations."""
    rng = np.random.default_rng(seed)
    n_q = max(len(DATASETS), rows // (len(LEVELS) * SAMPLES))
    qids = np.array([f"{DATASETS[i % len(DATASETS)]}-{i:06d}" for i in range(n_q)])
    dataset = np.array([DATASETS[i % len(DATASETS)] for i in range(n_q)])
    # true curves: a sharp window at a random step for 40% of questions, a ramp otherwise
    step = rng.integers(0, len(LEVELS), n_q)
    sharp = rng.random(n_q) < 0.4
    start = rng.uniform(0, 0.5, n_q)
    grid = np.arange(len(LEVELS))
    ramp = start[:, None] + (1 - start[:, None]) * (grid + 1) / (len(LEVELS) + 1)
    truth = np.where(sharp[:, None], np.where(grid[None, :] > step[:, None], 0.97, 0.1), ramp)
    orig_right = rng.random(n_q) < np.where(sharp, 0.45, 0.7)
    orig_missing = rng.random(n_q) < 0.02

    q = np.repeat(np.arange(n_q), len(LEVELS) * SAMPLES)
    lvl = np.tile(np.repeat(grid, SAMPLES), n_q)
    consistent = rng.random(q.size) < truth[q, lvl]
    missing = rng.random(q.size) < 0.05
    orig = np.where(orig_missing, None, "B")[q]
    gold = np.where(orig_right, "B", "A")[q]
    answer = np.where(missing, None, np.where(consistent, "B", "C"))
    stump = np.where(truth[q, lvl] >= 0.5, "B", "C")
    graded = pl.DataFrame(
        {
            "question_id": qids[q],
            "dataset": dataset[q],
            "answer_type": "multiple_choice",
            "level": np.array(LEVELS)[lvl],
            "sample": np.tile(np.arange(SAMPLES), n_q * len(LEVELS)).astype(np.int32),
            "gold": gold,
            "orig_answer": orig,
            "stump_answer": stump,
            "resample_answer": answer,
            "direct_answer": np.where(rng.random(n_q) < 0.5, "B", "D")[q],
        }
    ).with_columns(
        orig_missing_reason=pl.when(pl.col("orig_answer").is_null()).then(pl.lit("no_answer")),
        stump_missing_reason=pl.lit(None, pl.String),
        resample_missing_reason=pl.when(pl.col("resample_answer").is_null()).then(
            pl.lit("no_answer")
        ),
        direct_missing_reason=pl.lit(None, pl.String),
        orig_is_right=pl.col("orig_answer") == pl.col("gold"),
        direct_is_right=pl.col("direct_answer") == pl.col("gold"),
        is_right=pl.col("resample_answer") == pl.col("gold"),
        is_consistent=pl.col("resample_answer") == pl.col("orig_answer"),
        stump_is_right=pl.col("stump_answer") == pl.col("gold"),
        stump_is_consistent=pl.col("stump_answer") == pl.col("orig_answer"),
        is_stump=pl.col("resample_answer") == pl.col("stump_answer"),
    )
    text = (SENTENCE * (TOKENS * 5 // len(SENTENCE) + 1))[: TOKENS * 5]
    base = pl.DataFrame(
        {
            "question_id": qids,
            "prompt_token_ids": [[1, 2, 3]] * n_q,
            "response_token_ids": [list(range(TOKENS))] * n_q,
            "response_text": [text] * n_q,
            "n_response_tokens": TOKENS,
            "finish_reason": "stop",
            "direct_text": "The answer is B.",
            "n_direct_tokens": 5,
            "direct_finish_reason": "stop",
        }
    )
    cuts = [int(f * TOKENS) for f in LEVELS]
    truncated = pl.DataFrame(
        {
            "question_id": np.repeat(qids, len(LEVELS)),
            "level": np.tile(LEVELS, n_q),
            "n_response_tokens": TOKENS,
            "cut_tokens": np.tile(cuts, n_q),
            "prefix_token_ids": [[]] * (n_q * len(LEVELS)),
            "prefix_text": "",
            "char_offset": np.tile([c * 5 for c in cuts], n_q),
        }
    )
    return graded, truncated, base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/windows.csv"))
    args = parser.parse_args()

    timings: list[tuple[str, float, str]] = []

    @contextmanager
    def timed(stage: str, note: str = ""):
        start = time.perf_counter()
        yield
        timings.append((stage, time.perf_counter() - start, note))

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        graded, truncated, base = synthetic_run(args.rows)
        for name, df, schema in [
            ("graded", graded, tables.GRADED),
            ("truncated", truncated, tables.TRUNCATED),
            ("base", base, tables.BASE),
        ]:
            tables.write_table(df, tmp / f"{name}.parquet", schema)
        n_rows, n_q = graded.height, base.height
        del graded, truncated, base

        with timed("read tables", f"{n_rows} graded rows, {n_q} questions"):
            graded = tables.read_table(tmp / "graded.parquet", tables.GRADED)
            truncated = tables.read_table(tmp / "truncated.parquet", tables.TRUNCATED)
            base = tables.read_table(tmp / "base.parquet", tables.BASE)
        with timed("detect (curves, tests, BH, spans)"):
            curves, found = windows.detect(graded, truncated, base, jump=0.5, drop=0.3, fdr=0.05)
        with timed("write curves and windows", f"{curves.height} curve points"):
            for d in DATASETS:
                mine = pl.col("dataset") == d
                tables.write_table(curves.filter(mine), tmp / f"{d}.curves.parquet", tables.CURVES)
                tables.write_table(found.filter(mine), tmp / f"{d}.windows.parquet", tables.WINDOWS)
        with timed("summary (csv + md)"):
            numbers = summary.summarize(curves, found, "bench", datasets=DATASETS)
            write_atomic(tmp / "summary.csv", numbers.write_csv())
            write_atomic(
                tmp / "summary.md",
                summary.to_markdown(numbers, {"jump": 0.5, "drop": 0.3, "fdr": 0.05}),
            )
        for name in figures.FIGURES:
            html, png = tmp / f"{name}.html", tmp / f"{name}.png"
            with timed(f"figure {name}"):
                figures.render(name, curves, found, html, png)
            stage, seconds, _ = timings[-1]
            note = f"html {html.stat().st_size / 1e6:.1f} MB, png {png.stat().st_size / 1e3:.0f} kB"
            timings[-1] = (stage, seconds, note)
        with timed("explorer (100 per dataset)"):
            questions = found.select(
                "question_id", "dataset", problem=pl.lit("A synthetic question.")
            )
            page = explorer.build("bench", questions, base, truncated, curves, found)
            write_atomic(tmp / "explorer.html", page)
        timings[-1] = (*timings[-1][:2], f"{len(page) / 1e6:.1f} MB")

    stats = pl.DataFrame(timings, schema=["stage", "seconds", "note"], orient="row")
    after_grading = stats.filter(~pl.col("stage").str.starts_with("explorer"))["seconds"].sum()
    stats = pl.concat(
        [
            stats,
            pl.DataFrame(
                {
                    "stage": ["total: detection + summary + figures"],
                    "seconds": [after_grading],
                    "note": ["target: under 60 s"],
                }
            ),
        ]
    ).with_columns(pl.col("seconds").round(2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    stats.write_csv(args.out)
    with pl.Config(
        tbl_rows=-1, tbl_width_chars=120, fmt_str_lengths=60, tbl_hide_dataframe_shape=True
    ):
        print(stats)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
