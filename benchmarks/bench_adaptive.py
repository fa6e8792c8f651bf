"""Benchmark: adaptive resampling against the fixed grid on the synthetic model.

The fixed strategy samples M continuations at every level of a grid (scored like
bench_synthetic_sweep.py: one simulation at the largest M, sub-sampled). The adaptive
strategy (critical_windows.cot.adaptive) runs its driver through a Generator on the synthetic
model, then the workflow's own elicitation, grading and detection on what it sampled.
Both are scored against the exact truth (scorecard.score, truth "planted", method "rule").

Per strategy and budget: generated tokens per question (base response and continuations),
model calls per question (sequences generated: base, continuations and elicitations of
orig, stumps and continuations), window recall and precision, and the mean localization
error in tokens ((|start error| + |end error|) / 2 over located true windows). Writes
results/benchmarks/adaptive.csv.

    python benchmarks/bench_adaptive.py [--questions 300] [--model synthetic]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import polars as pl

from critical_windows.cot import adaptive
from critical_windows.data import benchmarks
from critical_windows.engine import synthetic
from critical_windows.experiments.synthetic import scorecard, simulation

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ["arc_easy", "mmlu"]
FIXED = {
    "paper": [0.05, 0.1, 0.3, 0.5, 0.7, 0.9],
    "deciles": [round(0.1 * i, 2) for i in range(1, 10)],
}
FIXED_SAMPLES = [10, 25, 50, 100]
REFERENCES = ["paper_m25", "paper_m100"]  # the research scripts' M and the paper's
# Adaptive budgets: (name, settings of the `adaptive` block; the schema's defaults otherwise)
ADAPTIVE = {
    "default": {},
    "confidence_0.5": dict(confidence=0.5),
    "confidence_0.8": dict(confidence=0.8),
    "gap_8": dict(min_gap_tokens=8),
    "gap_4": dict(min_gap_tokens=4),
    "confirm_15": dict(confirm_samples=15),
    "confirm_49": dict(confirm_samples=49),
    "confirm_99": dict(confirm_samples=99),
    "confirm_99_confidence_0.8": dict(confirm_samples=99, confidence=0.8),
    "cap_800": dict(max_tokens_per_question=800),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=300, help="per dataset")
    parser.add_argument("--model", default="synthetic", help='"synthetic" or "synthetic:<preset>"')
    parser.add_argument("--seed", type=int, default=2243)
    parser.add_argument("--jump", type=float, default=0.5)
    parser.add_argument("--drop", type=float, default=0.3)
    parser.add_argument("--fdr", type=float, default=0.05)
    parser.add_argument("--only", nargs="*", help="adaptive budgets to run (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "results/benchmarks/adaptive.csv")
    args = parser.parse_args()
    thresholds = dict(jump=args.jump, drop=args.drop, fdr=args.fdr)

    start = time.monotonic()
    questions = benchmarks.prepare_bundled(
        DATASETS, resources=ROOT / "resources/datasets", n=args.questions, seed=args.seed
    )
    model = synthetic.load(args.model)
    rows = []
    levels = sorted({f for grid in FIXED.values() for f in grid})
    sim = simulation.simulate(model, questions, levels, max(FIXED_SAMPLES), args.seed)
    for grid, grid_levels in FIXED.items():
        for m in FIXED_SAMPLES:
            card, cost = simulation.evaluate(model, sim, grid_levels, m, **thresholds)
            calls = 1 + len(grid_levels) * m + cost["elicitations_per_question"]
            rows.append(
                {
                    "strategy": "fixed",
                    "budget": f"{grid}_m{m}",
                    "tokens_per_question": cost["tokens_per_question"],
                    "calls_per_question": calls,
                    "levels_per_question": len(grid_levels),
                    **scorecard.quality(card),
                }
            )
    print(f"fixed grids scored in {time.monotonic() - start:.1f} s")
    for name, values in ADAPTIVE.items():
        if args.only and name not in args.only:
            continue
        s = adaptive.AdaptiveSettings.from_mapping(values, jump=args.jump, drop=args.drop)
        with tempfile.TemporaryDirectory() as tmp:
            card, cost, _ = simulation.run_adaptive(
                model, questions, s, args.seed, Path(tmp), **thresholds
            )
        rows.append({"strategy": "adaptive", "budget": name, **cost, **scorecard.quality(card)})
        print(f"adaptive {name} done at {time.monotonic() - start:.1f} s")
    out = pl.DataFrame(rows)
    for ref in REFERENCES:
        r = out.filter(pl.col("budget") == ref).row(0, named=True)
        out = out.with_columns(
            (r["tokens_per_question"] / pl.col("tokens_per_question")).alias(
                f"token_ratio_vs_{ref}"
            ),
            (
                (pl.col("recall") >= r["recall"]) & (pl.col("error_tokens") <= r["error_tokens"])
            ).alias(f"matches_{ref}"),
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out.write_csv(args.out)
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=250, tbl_hide_dataframe_shape=True):
        print(out.with_columns(pl.col(pl.Float64).round(3)))
    for ref in REFERENCES:
        best = out.filter((pl.col("strategy") == "adaptive") & pl.col(f"matches_{ref}"))
        if best.height:
            b = best.sort(f"token_ratio_vs_{ref}", descending=True).row(0, named=True)
            print(
                f"against fixed {ref}: adaptive {b['budget']} reaches its recall and error "
                f"with {b[f'token_ratio_vs_{ref}']:.2f}x fewer generated tokens"
            )
        else:
            print(f"against fixed {ref}: no adaptive budget reaches its recall and error")
    print(f"wrote {args.out} in {time.monotonic() - start:.1f} s")


if __name__ == "__main__":
    main()
