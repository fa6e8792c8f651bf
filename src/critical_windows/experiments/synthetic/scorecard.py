"""The truth of the synthetic model's runs and the scorecard of the detection rules.

For every response of the synthetic model (critical_windows.engine.synthetic) the exact
P(original answer | prefix) is known; `truth` turns it into the windows a rule should
find (planted events, the level grid, spans), and `score` compares the windows a run
found with them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from critical_windows.engine.synthetic import (
    DECIMALS,
    POPULATIONS,
    SyntheticModel,
    is_synthetic,
    load,
)
from critical_windows.io import tables

# --- the tokenizer ---------------------------------------------------------------------


# --- the model ---------------------------------------------------------------------------


# --- scoring the detector against the truth ----------------------------------------------


def truth(
    model: SyntheticModel,
    questions: pl.DataFrame,
    base: pl.DataFrame,
    truncated: pl.DataFrame,
    *,
    jump: float,
    drop: float,
    max_span: float = 0.2,
) -> pl.DataFrame:
    """The exact curve and true windows of every base response (a tables.SYNTHETIC_TRUTH frame)."""
    problem_of = dict(zip(questions["question_id"], questions["problem"], strict=True))
    dataset_of = dict(zip(questions["question_id"], questions["dataset"], strict=True))
    cuts: dict[str, list[tuple[float, int]]] = {}
    for t in truncated.select("question_id", "level", "cut_tokens").iter_rows():
        cuts.setdefault(t[0], []).append((t[1], t[2]))
    rows = []
    for qid, ids in base.select("question_id", "response_token_ids").iter_rows():
        problem = problem_of[qid]
        exact = model.exact_curve(problem, ids)
        length = len(ids)
        grid = sorted(cuts.get(qid, [])) + [(1.0, length)]
        p = np.array([exact[c] for _, c in grid])
        rises = np.round(np.diff(exact), DECIMALS)
        token = int(np.argmax(rises)) if length else None
        planted = token if length and rises[token] > jump else None
        row: dict[str, Any] = {
            "question_id": qid,
            "dataset": dataset_of[qid],
            "population": model.plan(problem).population,
            "n_choices": model.plan(problem).n_choices,
            "n_response_tokens": length,
            "levels": [f for f, _ in grid],
            "exact_p": p.tolist(),
            "planted_token": planted,
            "planted_rise": float(rises[token]) if length else None,
            "grid_has_window": None,
            "grid_level_lo": None,
            "grid_level_hi": None,
            "grid_token_start": None,
            "grid_token_end": None,
            "grid_token": None,
            **_span_truth(exact, rises, jump, drop, max_span),
        }
        steps = np.round(np.diff(p), DECIMALS)
        if steps.size:
            i = int(np.argmax(steps))
            (lo, c_lo), (hi, c_hi) = grid[i], grid[i + 1]
            window = bool(steps[i] > jump and max(0.0, float(-steps.min())) <= drop)
            row["grid_has_window"] = window
            if window:
                inside = rises[c_lo:c_hi]
                row.update(
                    grid_level_lo=lo,
                    grid_level_hi=hi,
                    grid_token_start=c_lo,
                    grid_token_end=c_hi,
                    grid_token=c_lo + int(np.argmax(inside)),
                )
        rows.append(row)
    return tables.frame(rows, tables.SYNTHETIC_TRUTH)


def _span_truth(
    exact: np.ndarray, rises: np.ndarray, jump: float, drop: float, max_span: float
) -> dict[str, int | None]:
    """The span truth of one response from its exact P at every token count."""
    none: dict[str, int | None] = {"span_token_start": None, "span_token_end": None}
    none["span_token"] = None
    length = len(exact) - 1
    widest = max(1, math.floor(max_span * length + 1e-9))
    best: tuple[int, int] | None = None
    worst_fall = 0.0
    for width in range(1, min(widest, length) + 1):
        diff = np.round(exact[width:] - exact[:-width], DECIMALS)
        worst_fall = max(worst_fall, float(-diff.min()))
        if best is None and (diff > jump).any():
            start = int(np.argmax(diff))
            best = (start, start + width)
    if best is None or worst_fall > drop:
        return none
    a, b = best
    return {
        "span_token_start": a,
        "span_token_end": b,
        "span_token": a + int(np.argmax(rises[a:b])),
    }


# forced_rule: the research rule on the forced (logprob) curve P(original answer) of
# distributions.readout_windows, the cheap screening curve; scored when a run has one.
METHODS = ("rule", "rule_significant", "significant", "forced_rule")
TRUTHS = ("planted", "grid", "span")
SCORECARD_COLUMNS = [
    "population",
    "truth",
    "method",
    "questions",
    "true_windows",
    "detected",
    "true_positives",
    "precision",
    "recall",
    "start_error_tokens",
    "end_error_tokens",
    "start_error_frac",
    "end_error_frac",
    "width_tokens",
]


def _detections(
    windows: pl.DataFrame,
    truncated: pl.DataFrame,
    truth_: pl.DataFrame,
    readout: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Per question and method: detected or not, and the span [start, end) in tokens."""
    cut = {
        (q, f): c for q, f, c in truncated.select("question_id", "level", "cut_tokens").iter_rows()
    }
    length = dict(zip(truth_["question_id"], truth_["n_response_tokens"], strict=True))
    rows = []
    for w in windows.iter_rows(named=True):
        qid = w["question_id"]
        rule = bool(w["has_window"])
        sig = bool(w["significant"])
        span: tuple[int | None, int | None] = (None, None)
        if w["level_lo"] is not None:
            span = (
                cut[(qid, w["level_lo"])],
                length[qid] if w["level_hi"] == 1.0 else cut[(qid, w["level_hi"])],
            )
        for method, hit in zip(METHODS[:3], (rule, rule and sig, sig), strict=True):
            rows.append(
                {
                    "question_id": qid,
                    "method": method,
                    "detected": hit,
                    "start": span[0],
                    "end": span[1],
                }
            )
    forced = pl.DataFrame() if readout is None else readout.filter(pl.col("n_forced_levels") >= 2)
    for r in forced.iter_rows(named=True):
        qid, lo, hi = r["question_id"], r["forced_level_lo"], r["forced_level_hi"]
        rows.append(
            {
                "question_id": qid,
                "method": "forced_rule",
                "detected": bool(r["forced_has_window"]),
                "start": cut.get((qid, lo), 0 if lo == 0 else None),
                "end": length[qid] if hi == 1.0 else cut.get((qid, hi)),
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "question_id": pl.String,
            "method": pl.String,
            "detected": pl.Boolean,
            "start": pl.Int64,
            "end": pl.Int64,
        },
    )


def score(
    windows: pl.DataFrame,
    truncated: pl.DataFrame,
    truth_: pl.DataFrame,
    readout: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Precision, recall and location error of the detected windows against the truth.

    Two truths: ``planted``, a single token that lifts the exact P by more than the jump
    threshold (true span [t, t+1)); and ``grid``, the research rule applied to the exact P
    on the same grid of levels (true span: that step's cuts). Three detectors from the
    WINDOWS table: ``rule`` (has_window), ``rule_significant`` (has_window and
    significant) and ``significant`` (the Fisher test of the largest step alone); with a
    READOUT_WINDOWS frame `readout`, also ``forced_rule``, the rule on the forced (logprob)
    curve. A
    detection is a true positive when its span contains the true window's token. Location
    errors are |detected start - true start| and |detected end - true end| over detections
    on questions that have a true window, in tokens and as a fraction of the response.
    One row per sub-population and ``all``.
    """
    found = _detections(windows, truncated, truth_, readout).join(
        truth_.select(
            "question_id",
            "population",
            "n_response_tokens",
            "planted_token",
            "grid_has_window",
            "grid_token_start",
            "grid_token_end",
            "grid_token",
            "span_token_start",
            "span_token_end",
            "span_token",
        ),
        on="question_id",
        how="inner",
    )
    truths = {
        "planted": found.with_columns(
            is_true=pl.col("planted_token").is_not_null(),
            token=pl.col("planted_token"),
            true_start=pl.col("planted_token"),
            true_end=pl.col("planted_token") + 1,
        ),
        "grid": found.with_columns(
            is_true=pl.col("grid_has_window").fill_null(False),
            token=pl.col("grid_token"),
            true_start=pl.col("grid_token_start"),
            true_end=pl.col("grid_token_end"),
        ),
        "span": found.with_columns(
            is_true=pl.col("span_token").is_not_null(),
            token=pl.col("span_token"),
            true_start=pl.col("span_token_start"),
            true_end=pl.col("span_token_end"),
        ),
    }
    L = pl.col("n_response_tokens")
    scored = pl.concat(
        [
            df.with_columns(truth=pl.lit(name)).with_columns(
                tp=pl.col("detected")
                & pl.col("is_true")
                & (pl.col("start") <= pl.col("token"))
                & (pl.col("token") < pl.col("end")),
                located=pl.col("detected") & pl.col("is_true"),
                start_err=(pl.col("start") - pl.col("true_start")).abs(),
                end_err=(pl.col("end") - pl.col("true_end")).abs(),
            )
            for name, df in truths.items()
        ]
    )
    pooled = scored.with_columns(population=pl.lit("all"))
    located = pl.col("located")

    def mean_where(expr: pl.Expr) -> pl.Expr:
        return expr.filter(located).cast(pl.Float64).mean()

    out = (
        pl.concat([pooled, scored])
        .group_by("population", "truth", "method")
        .agg(
            questions=pl.len(),
            true_windows=pl.col("is_true").sum(),
            detected=pl.col("detected").sum(),
            true_positives=pl.col("tp").sum(),
            start_error_tokens=mean_where(pl.col("start_err")),
            end_error_tokens=mean_where(pl.col("end_err")),
            start_error_frac=mean_where(pl.col("start_err") / L),
            end_error_frac=mean_where(pl.col("end_err") / L),
            width_tokens=mean_where(pl.col("end") - pl.col("start")),
        )
        .with_columns(
            precision=pl.when(pl.col("detected") > 0).then(
                pl.col("true_positives") / pl.col("detected")
            ),
            recall=pl.when(pl.col("true_windows") > 0).then(
                pl.col("true_positives") / pl.col("true_windows")
            ),
        )
    )
    order = {p: i for i, p in enumerate(("all", *POPULATIONS))}
    return (
        out.with_columns(
            _p=pl.col("population").replace_strict(order, default=len(order)),
            _t=pl.col("truth").replace_strict({t: i for i, t in enumerate(TRUTHS)}),
            _m=pl.col("method").replace_strict({m: i for i, m in enumerate(METHODS)}),
        )
        .sort("_p", "population", "_t", "_m")
        .select(SCORECARD_COLUMNS)
    )


def score_run(
    model_path: str,
    questions: pl.DataFrame,
    base: pl.DataFrame,
    truncated: pl.DataFrame,
    windows: pl.DataFrame,
    *,
    jump: float,
    drop: float,
    max_span: float = 0.2,
    readout: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(tables.SYNTHETIC_TRUTH, scorecard) of a workflow run of the synthetic model
    `model_path`, its span truth with the run's `windows.max_span`; `readout`: its
    READOUT_WINDOWS, scored as ``forced_rule`` when they hold a forced curve."""
    if not is_synthetic(model_path):
        raise ValueError(
            f"model path {model_path!r} is not the synthetic model: only its windows are "
            "known exactly and can be scored"
        )
    truth_ = truth(
        load(model_path), questions, base, truncated, jump=jump, drop=drop, max_span=max_span
    )
    return truth_, score(windows, truncated, truth_, readout)


# --- simulated runs: the stages without the workflow, for benchmarks and tests ------------


def quality(card: pl.DataFrame) -> dict[str, float]:
    """The headline of a scorecard: all populations, planted truth, the research rule."""
    row = card.filter(
        (pl.col("population") == "all")
        & (pl.col("truth") == "planted")
        & (pl.col("method") == "rule")
    ).row(0, named=True)
    err = None
    if row["start_error_tokens"] is not None:
        err = (row["start_error_tokens"] + row["end_error_tokens"]) / 2
    return {
        "true_windows": row["true_windows"],
        "detected": row["detected"],
        "recall": row["recall"],
        "precision": row["precision"],
        "error_tokens": err,
        "width_tokens": row["width_tokens"],
    }
