"""The headline numbers of a run (METHOD.md §2, step 10), beside the paper's.

One row per dataset and one pooled row `all`: accuracy of the chain of thought, the direct
answer and the stump, the share of questions with a critical window, the accuracy gap
between questions without and with one, and how much more often wrong answers have windows
than right ones.
"""

from __future__ import annotations

import polars as pl

# Llama-3.1-8B-Instruct, 400 questions per dataset (METHOD.md, headline numbers).
PAPER_WINDOW_SHARE = {"math": 0.422}
PAPER_ACCURACY_GAP = {
    "aqua_rat": 0.42,
    "arc_challenge": 0.53,
    "arc_easy": 0.73,
    "logiqa": 0.15,
    "math": 0.41,
    "mmlu": 0.45,
    "truthfulqa": 0.44,
}
PAPER_WINDOW_FREQ_GAP = (0.11, 0.33)
POOLED = "all"


def level_column(level: float) -> str:
    return f"stump_accuracy_f{level:g}"


def summarize(
    curves: pl.DataFrame,
    windows: pl.DataFrame,
    model: str,
    datasets: list[str] | None = None,
) -> pl.DataFrame:
    """Headline numbers per dataset of one run (in the order of `datasets`), then pooled.

    Shares are over questions where the quantity is defined: accuracies leave out
    questions whose answer is missing (counted in `*_missing`), window shares leave out
    questions without a curve (their original answer is missing).
    """
    order = datasets or sorted(windows["dataset"].unique().to_list())
    both = [(windows, curves), (_pooled(windows), _pooled(curves))]
    parts = [_per_dataset(w, c) for w, c in both]
    levels = sorted(curves.filter(pl.col("level") < 1)["level"].unique().to_list())
    stumps = [
        c.filter(pl.col("level") < 1)
        .group_by("dataset", "level")
        .agg(pl.col("stump_is_right").mean())
        .pivot("level", index="dataset", values="stump_is_right")
        .rename({str(f): level_column(f) for f in levels}, strict=False)
        for _, c in both
    ]
    out = pl.concat(
        [
            part.join(stump, on="dataset", how="left")
            for part, stump in zip(parts, stumps, strict=True)
        ],
        how="diagonal_relaxed",
    )
    rank = {d: i for i, d in enumerate([*order, POOLED])}
    columns = [level_column(f) for f in levels]
    return (
        out.with_columns(
            pl.lit(model).alias("model"),
            stump_accuracy_mean=pl.mean_horizontal(columns) if columns else pl.lit(None),
        )
        .sort(pl.col("dataset").replace_strict(rank, default=len(rank), return_dtype=pl.Int64))
        .select("model", "dataset", *_HEAD, "stump_accuracy_mean", *columns, *_TAIL)
    )


_HEAD = ["n_questions", "n_curve", "cot_accuracy", "cot_missing", "direct_accuracy"]
_HEAD += ["direct_missing"]
_TAIL = [
    "mean_consistency",
    "window_share",
    "window_share_significant",
    "n_window",
    "accuracy_with_window",
    "accuracy_without_window",
    "accuracy_gap",
    "window_freq_wrong",
    "window_freq_right",
    "window_freq_gap",
]


def _pooled(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(dataset=pl.lit(POOLED))


def _per_dataset(windows: pl.DataFrame, curves: pl.DataFrame) -> pl.DataFrame:
    window = pl.col("has_window")
    right = pl.col("orig_is_right")
    w = windows.group_by("dataset", maintain_order=True).agg(
        n_questions=pl.len(),
        n_curve=window.is_not_null().sum(),
        cot_accuracy=right.mean(),
        cot_missing=right.is_null().sum(),
        direct_accuracy=pl.col("direct_is_right").mean(),
        direct_missing=pl.col("direct_is_right").is_null().sum(),
        window_share=window.mean(),
        window_share_significant=(window & pl.col("significant").fill_null(False)).mean(),
        n_window=window.sum(),
        accuracy_with_window=right.filter(window).mean(),
        accuracy_without_window=right.filter(~window).mean(),
        window_freq_wrong=window.filter(~right).mean(),
        window_freq_right=window.filter(right).mean(),
    )
    consistency = (
        curves.filter(pl.col("level") < 1)
        .group_by("dataset")
        .agg(mean_consistency=pl.col("p_consistent").mean())
    )
    return w.join(consistency, on="dataset", how="left").with_columns(
        accuracy_gap=pl.col("accuracy_without_window") - pl.col("accuracy_with_window"),
        window_freq_gap=pl.col("window_freq_wrong") - pl.col("window_freq_right"),
    )


def _fmt(value: float | int | None, share: bool = True) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if share else str(value)


def to_markdown(summary: pl.DataFrame, thresholds: dict[str, float]) -> str:
    """The summary as Markdown, the paper's numbers beside ours where it reports them."""
    model = summary["model"][0] if summary.height else "?"
    low, high = PAPER_WINDOW_FREQ_GAP
    lines = [
        f"# Critical windows: {model}",
        "",
        f"Window rule: a step of P(f) rises by more than {thresholds['jump']} and no step "
        f"falls by more than {thresholds['drop']}. *Significant*: that step's one-sided "
        f"Fisher test passes Benjamini-Hochberg at FDR {thresholds['fdr']} over the run.",
        "Paper: Llama-3.1-8B-Instruct, 400 questions per dataset (Li, Karan, Chen, ICML 2025).",
        "",
        "## Headline numbers",
        "",
        "| dataset | n | CoT acc. | direct acc. | stump acc. (mean) | window share "
        "| significant | paper share | acc. gap (without − with) | paper gap "
        f"| window freq. wrong − right (paper {low:.2f} to {high:.2f}) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in summary.iter_rows(named=True):
        d = r["dataset"]
        lines.append(
            f"| {d} | {r['n_questions']} | {_fmt(r['cot_accuracy'])} "
            f"| {_fmt(r['direct_accuracy'])} | {_fmt(r['stump_accuracy_mean'])} "
            f"| {_fmt(r['window_share'])} | {_fmt(r['window_share_significant'])} "
            f"| {_fmt(PAPER_WINDOW_SHARE.get(d))} | {_fmt(r['accuracy_gap'])} "
            f"| {_fmt(PAPER_ACCURACY_GAP.get(d))} | {_fmt(r['window_freq_gap'])} |"
        )
    stumps = [c for c in summary.columns if c.startswith("stump_accuracy_f")]
    lines += [
        "",
        "## Accuracy of the stump by level, and what is missing",
        "",
        "| dataset | "
        + " | ".join(f"f = {c.removeprefix('stump_accuracy_f')}" for c in stumps)
        + " | mean P(f) | CoT missing | direct missing | no curve |",
        "|---|" + "---:|" * (len(stumps) + 4),
    ]
    for r in summary.iter_rows(named=True):
        cells = [_fmt(r[c]) for c in stumps] + [
            _fmt(r["mean_consistency"]),
            _fmt(r["cot_missing"], share=False),
            _fmt(r["direct_missing"], share=False),
            _fmt(r["n_questions"] - r["n_curve"], share=False),
        ]
        lines.append(f"| {r['dataset']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
