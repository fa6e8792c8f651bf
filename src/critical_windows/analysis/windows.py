"""Consistency curves and critical windows (METHOD.md §2, steps 8 and 9).

`curves` turns the graded continuations into P(f) per question and level, `detect` applies
the research rule (a step rises by more than `jump`, no step falls by more than `drop`) and,
beside it, a statistical call: every step between consecutive levels gets a one-sided
Fisher exact test that P rises, with Benjamini-Hochberg control over all steps of the run,
so that a jump of 0 -> 0.75 seen in 4 samples can be told from one seen in 100.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import polars as pl

from critical_windows.analysis.statistics import bh_adjust, fisher_greater, wilson_interval

# P(f) differences are rounded before the thresholds are applied, so that 0.8 - 0.3 counts
# as a rise of exactly 0.5 (not more) whatever the floating-point error.
_DECIMALS = 12
_QUESTION = ["dataset", "question_id"]


def curves(graded: pl.DataFrame) -> pl.DataFrame:
    """P(f) per question and level from a GRADED table, plus the original at f = 1.

    A continuation whose consistency is null (its answer or the original's is missing) is
    left out of P(f) and counted in `n_missing`. At f = 1 the original is its own single,
    consistent sample: P(1) = 1 by construction, null when the original answer is missing.
    """
    beyond = graded.filter(pl.col("level") >= 1)
    if beyond.height:
        row = beyond.row(0, named=True)
        raise ValueError(
            f"question {row['question_id']!r}: graded level {row['level']} is not below 1; "
            "f = 1 is the original response and must not be resampled"
        )
    sampled = graded.group_by([*_QUESTION, "level"]).agg(
        n_graded=pl.col("is_consistent").is_not_null().sum(),
        n_missing=pl.col("is_consistent").is_null().sum(),
        n_consistent=pl.col("is_consistent").sum(),
        p_right=pl.col("is_right").mean(),
        p_stump=pl.col("is_stump").mean(),
        stump_answer=pl.col("stump_answer").first(),
        stump_is_right=pl.col("stump_is_right").first(),
        stump_is_consistent=pl.col("stump_is_consistent").first(),
    )
    present = pl.col("orig_answer").is_not_null()
    orig = (
        graded.group_by(_QUESTION)
        .agg(pl.col("orig_answer").first(), pl.col("orig_is_right").first())
        .select(
            *_QUESTION,
            level=pl.lit(1.0),
            n_graded=present.cast(pl.UInt32),
            n_missing=(~present).cast(pl.UInt32),
            n_consistent=present.cast(pl.UInt32),
            p_right=pl.col("orig_is_right").cast(pl.Float64),
            p_stump=pl.when(present).then(1.0),
            stump_answer=pl.col("orig_answer"),
            stump_is_right=pl.col("orig_is_right"),
            stump_is_consistent=pl.when(present).then(True),
        )
    )
    out = (
        pl.concat([sampled, orig], how="vertical_relaxed")
        .with_columns(
            pl.col("n_graded", "n_missing", "n_consistent").cast(pl.Int32),
            p_consistent=pl.when(pl.col("n_graded") > 0).then(
                pl.col("n_consistent") / pl.col("n_graded")
            ),
        )
        .sort(*_QUESTION, "level")
    )
    low, high = wilson_interval(out["n_consistent"].to_numpy(), out["n_graded"].to_numpy())
    at_one = pl.col("level") == 1.0
    return out.with_columns(
        ci_low=pl.when(at_one).then(pl.col("p_consistent")).otherwise(pl.Series(low)),
        ci_high=pl.when(at_one).then(pl.col("p_consistent")).otherwise(pl.Series(high)),
    ).with_columns(pl.col("ci_low", "ci_high").fill_nan(None))


@dataclass(frozen=True)
class CurveColumns:
    """Which columns of a curve table `steps` and `find_windows` read.

    The defaults are the consistency curves of the chain-of-thought protocol, whose point at
    `anchor` (f = 1, the original response) is exact by construction; other curves (the
    compliance rate of a prefill attack against the prefix length) name their own columns
    and have no anchor.
    """

    unit: tuple[str, ...] = tuple(_QUESTION)  # what one curve belongs to
    p: str = "p_consistent"  # the rate at a level
    k: str = "n_consistent"  # its successes
    n: str = "n_graded"  # its trials
    anchor: float | None = 1.0  # a level whose rate is exact, not measured


CONSISTENCY = CurveColumns()


def steps(curve: pl.DataFrame, columns: CurveColumns = CONSISTENCY) -> pl.DataFrame:
    """Every step between consecutive levels with a defined P(f), with its test.

    Levels where nothing could be graded are skipped. The step into the anchor (f = 1)
    compares the last sampled level with P(1) = 1 counted as if measured with as many samples
    as that level: the exact P(1) would make any inconsistent sample significant, and this is
    the conservative choice that keeps the last step as hard to call as the others.
    """
    unit = list(columns.unit)
    defined = curve.filter(pl.col(columns.p).is_not_null()).sort(*unit, "level")
    nxt = {
        name: pl.col(col).shift(-1).over(unit)
        for name, col in [
            ("level_hi", "level"),
            ("p_hi", columns.p),
            ("k_hi", columns.k),
            ("n_hi", columns.n),
        ]
    }
    anchored = pl.lit(False) if columns.anchor is None else pl.col("level_hi") == columns.anchor
    out = (
        defined.select(
            *unit,
            pl.col("level").alias("level_lo"),
            pl.col(columns.p).alias("p_lo"),
            pl.col(columns.k).alias("k_lo"),
            pl.col(columns.n).alias("n_lo"),
            **nxt,
        )
        .filter(pl.col("level_hi").is_not_null())
        .with_columns(
            rise=(pl.col("p_hi") - pl.col("p_lo")).round(_DECIMALS),
            k_hi=pl.when(anchored).then(pl.col("n_lo")).otherwise(pl.col("k_hi")),
            n_hi=pl.when(anchored).then(pl.col("n_lo")).otherwise(pl.col("n_hi")),
        )
    )
    p = fisher_greater(
        out["k_hi"].to_numpy(),
        out["n_hi"].to_numpy(),
        out["k_lo"].to_numpy(),
        out["n_lo"].to_numpy(),
    )
    return out.with_columns(p_value=pl.Series(p, dtype=pl.Float64).fill_nan(None))


def find_windows(
    curve: pl.DataFrame,
    *,
    jump: float,
    drop: float,
    fdr: float,
    columns: CurveColumns = CONSISTENCY,
) -> pl.DataFrame:
    """The window call of every curve in `curve`: one row per unit with `n_levels`, the step of
    the largest rise (`level_lo`, `level_hi`, `jump`, its `p_value` and `q_value`), the largest
    fall `max_drop`, `significant` and `has_window` (the research rule; null with fewer than
    two defined levels).

    The Benjamini-Hochberg control spans every step of every curve passed in.
    """
    unit = list(columns.unit)
    step = steps(curve, columns)
    step = step.with_columns(
        q_value=pl.Series(bh_adjust(step["p_value"].to_numpy()), dtype=pl.Float64).fill_nan(None)
    )
    largest = (
        step.sort([*unit, "rise", "level_lo"], descending=[*(False for _ in unit), True, False])
        .group_by(unit, maintain_order=True)
        .first()
        .select(*unit, "level_lo", "level_hi", "p_value", "q_value", jump=pl.col("rise"))
        .with_columns(_over=pl.col("jump") > jump)
    )
    falls = step.group_by(unit).agg(max_drop=(-pl.col("rise")).max().clip(lower_bound=0.0))
    return _call(curve, unit, columns.p, largest, falls, drop=drop, fdr=fdr)


RULES = ("steps", "span")
MAX_SPAN = 0.2  # the widest span of the span rule, as a fraction of the response's tokens
# The research rule compares each step's estimated rise with `jump`: in effect a one-sided
# test that the rise exceeds `jump` at level 1/2 (z = 0). The span rule spends that level
# over the spans it compares where the research rule compares one step (`rise_bounds`).
STEP_LEVEL = 0.5
# A level joins the plateau of its neighbours while their Wilson intervals at z = 1 (one
# standard error) still share a point (`plateaus`).
PLATEAU_Z = 1.0


def plateaus(
    curve: pl.DataFrame, columns: CurveColumns = CONSISTENCY, z: float = PLATEAU_Z
) -> pl.DataFrame:
    """Per measured level of each curve, its samples pooled with its plateau on either side:
    `k_before`, `n_before` over the level and the consecutive levels before it, `k_after`,
    `n_after` over the level and those after it. The anchor is exact, not measured, and is
    in no plateau.

    A plateau grows one level at a time while the Wilson intervals at `z` of every run
    pooled so far still share a point (the intersection-of-confidence-intervals rule,
    Goldenshluger and Nemirovski 1997): levels on a flat stretch of P pool their samples,
    and a level across a change larger than the noise ends the plateau.
    """
    unit = list(columns.unit)
    measured = curve.filter(pl.col(columns.p).is_not_null())
    if columns.anchor is not None:
        measured = measured.filter(pl.col("level") != columns.anchor)
    measured = measured.sort(*unit, "level").select(*unit, "level", k=columns.k, n=columns.n)
    pooled: dict[str, list[int]] = {c: [] for c in ("k_before", "n_before", "k_after", "n_after")}
    for group in measured.partition_by(unit, maintain_order=True):
        k = group["k"].to_numpy().astype(np.int64)
        n = group["n"].to_numpy().astype(np.int64)
        for i in range(len(k)):
            for side, order in (("before", np.arange(i, -1, -1)), ("after", np.arange(i, len(k)))):
                k_run, n_run = np.cumsum(k[order]), np.cumsum(n[order])
                low, high = wilson_interval(k_run, n_run, z)
                meet = np.maximum.accumulate(low) <= np.minimum.accumulate(high)
                last = len(order) - 1 if meet.all() else int(np.argmin(meet)) - 1
                pooled[f"k_{side}"].append(int(k_run[last]))
                pooled[f"n_{side}"].append(int(n_run[last]))
    return measured.select(*unit, "level").with_columns(
        **{c: pl.Series(v, dtype=pl.Int64) for c, v in pooled.items()}
    )


def spans(
    curve: pl.DataFrame, columns: CurveColumns = CONSISTENCY, max_span: float = MAX_SPAN
) -> pl.DataFrame:
    """Every span between two levels with a defined P(f) at most `max_span` apart, and every
    step between consecutive levels however wide; with the number of steps it covers
    (`n_steps`), whether it ends at the anchor (`anchored`), the samples it is read from
    (`k_lo`, `n_lo`, `k_hi`, `n_hi`), its `rise` and the one-sided Fisher test that P rises
    across it (`p_value`).

    A span is read from the plateau before its lower level and the plateau after its upper
    one (`plateaus`), so that on a dense grid each end has the samples of the flat stretch
    it sits on, not of one level. On a curve whose spans are its steps (a grid whose
    consecutive levels are all more than `max_span` apart but for the widest step, like the
    paper's 0.05, 0.1, 0.3, ..., 0.9, 1) each level is read alone, as the research rule
    reads it. The anchor is counted as in `steps`, with as many samples as the lower end.
    """
    unit = list(columns.unit)
    defined = (
        curve.filter(pl.col(columns.p).is_not_null())
        .sort(*unit, "level")
        .with_columns(_i=pl.int_range(pl.len()).over(unit))
        .select(*unit, "_i", "level", p=columns.p, k=columns.k, n=columns.n)
    )
    lo = defined.rename({c: f"{c}_lo" for c in ("_i", "level", "p", "k", "n")})
    hi = defined.rename({c: f"{c}_hi" for c in ("_i", "level", "p", "k", "n")})
    width = (pl.col("level_hi") - pl.col("level_lo")).round(_DECIMALS)
    plateau = plateaus(curve, columns)
    before = plateau.select(*unit, level_lo="level", _k_lo="k_before", _n_lo="n_before")
    after = plateau.select(*unit, level_hi="level", _k_hi="k_after", _n_hi="n_after")
    anchored = pl.lit(False) if columns.anchor is None else pl.col("level_hi") == columns.anchor
    out = (
        lo.join(hi, on=unit, how="inner")
        .with_columns(n_steps=pl.col("_i_hi") - pl.col("_i_lo"))
        .filter((pl.col("n_steps") > 0) & ((width <= max_span) | (pl.col("n_steps") == 1)))
        .with_columns(width=width, anchored=anchored)
        .with_columns(_alone=(pl.col("n_steps") == 1).all().over(unit))
        .join(before, on=[*unit, "level_lo"], how="left")
        .join(after, on=[*unit, "level_hi"], how="left")
    )
    alone = pl.col("_alone")
    k_lo = pl.when(alone).then("k_lo").otherwise("_k_lo")
    n_lo = pl.when(alone).then("n_lo").otherwise("_n_lo")
    out = (
        out.with_columns(k_lo=k_lo, n_lo=n_lo)
        .with_columns(
            k_hi=pl.when("anchored").then("n_lo").when(alone).then("k_hi").otherwise("_k_hi"),
            n_hi=pl.when("anchored").then("n_lo").when(alone).then("n_hi").otherwise("_n_hi"),
        )
        .with_columns(
            rise=pl.when(alone)
            .then(pl.col("p_hi") - pl.col("p_lo"))
            .otherwise(pl.col("k_hi") / pl.col("n_hi") - pl.col("k_lo") / pl.col("n_lo"))
            .round(_DECIMALS),
        )
        .drop("_i_lo", "_i_hi", "_alone", "_k_lo", "_n_lo", "_k_hi", "_n_hi")
        .sort(*unit, "level_lo", "level_hi")
    )
    k_hi, n_hi, k_lo, n_lo = (out[c].to_numpy() for c in ("k_hi", "n_hi", "k_lo", "n_lo"))
    return out.with_columns(
        p_value=pl.Series(fisher_greater(k_hi, n_hi, k_lo, n_lo), dtype=pl.Float64).fill_nan(None)
    )


def rise_bounds(span: pl.DataFrame, unit: list[str]) -> pl.DataFrame:
    """`span` (a `spans` frame) with one-sided bounds on each span's rise, `rise_low` and
    `rise_high`: Newcombe's hybrid score interval (his method 10) at a level that counts the
    spans of its curve.

    The research rule calls a step by its estimate against the threshold, a one-sided test
    at level `STEP_LEVEL` (z = 0). A curve with S spans over K steps tests each span at
    STEP_LEVEL * K / S (Bonferroni over the S / K spans that stand where one step stood),
    so that comparing more spans does not carry more noise over the threshold. Where the
    spans are the steps, z = 0 and both bounds are the rise itself. P at the anchor is
    exact: its side adds no width.
    """
    level = STEP_LEVEL * (pl.col("n_steps") == 1).sum() / pl.len()
    span = span.with_columns(_level=level.over(unit))
    z_of = {a: NormalDist().inv_cdf(1 - a) for a in span["_level"].unique().to_list()}
    z = span["_level"].replace_strict(z_of, return_dtype=pl.Float64).to_numpy()
    exact = span["anchored"].to_numpy()
    k_hi, n_hi, k_lo, n_lo = (span[c].to_numpy() for c in ("k_hi", "n_hi", "k_lo", "n_lo"))
    with np.errstate(divide="ignore", invalid="ignore"):
        p_hi, p_lo = k_hi / n_hi, k_lo / n_lo
    l_hi, u_hi = wilson_interval(k_hi, n_hi, z)
    l_lo, u_lo = wilson_interval(k_lo, n_lo, z)
    l_hi, u_hi = np.where(exact, p_hi, l_hi), np.where(exact, p_hi, u_hi)
    rise = span["rise"].to_numpy()
    low = np.round(rise - np.hypot(p_hi - l_hi, u_lo - p_lo), _DECIMALS)
    high = np.round(rise + np.hypot(u_hi - p_hi, p_lo - l_lo), _DECIMALS)
    alone = z == 0
    return span.drop("_level").with_columns(
        rise_low=pl.Series(np.where(alone, rise, low), dtype=pl.Float64),
        rise_high=pl.Series(np.where(alone, rise, high), dtype=pl.Float64),
    )


def find_windows_span(
    curve: pl.DataFrame,
    *,
    jump: float,
    drop: float,
    fdr: float,
    max_span: float = MAX_SPAN,
    columns: CurveColumns = CONSISTENCY,
) -> pl.DataFrame:
    """The span rule (issue #17): a window is a span of `spans` whose rise is above `jump`
    by its lower bound (`rise_bounds`), on a curve where no span falls by more than `drop`
    by the same bound; of several such spans, the one with the largest lower bound (ties:
    the fewest steps, then the earlier), so that a short span that noise carried over
    `jump` does not win over the best-supported rise. A level that noise lifts or drops on
    a dense grid neither makes nor vetoes a window.

    Columns as `find_windows`: `level_lo`, `level_hi`, `jump` (its estimated rise) are the
    chosen span (without a rise above `jump`, the span of the largest rise, ties the
    earlier); `max_drop` is the largest fall by its lower bound (0 without a fall);
    `q_value` is Benjamini-Hochberg over every span of every curve passed in. On a curve
    whose spans are its steps, every column is the research rule's.
    """
    unit = list(columns.unit)
    span = rise_bounds(spans(curve, columns, max_span), unit)
    span = span.with_columns(
        q_value=pl.Series(bh_adjust(span["p_value"].to_numpy()), dtype=pl.Float64).fill_nan(None),
        _over=pl.col("rise_low") > jump,
    )
    first = [False for _ in unit]
    ranked = pl.concat(
        [
            span.filter(pl.col("_over")).sort(
                [*unit, "rise_low", "n_steps", "level_lo"], descending=[*first, True, False, False]
            ),
            span.filter(~pl.col("_over")).sort(
                [*unit, "rise", "level_lo"], descending=[*first, True, False]
            ),
        ]
    )
    chosen = (
        ranked.group_by(unit, maintain_order=True)
        .first()
        .select(*unit, "level_lo", "level_hi", "p_value", "q_value", "_over", jump=pl.col("rise"))
    )
    falls = span.group_by(unit).agg(max_drop=(-pl.col("rise_high")).max().clip(lower_bound=0.0))
    return _call(curve, unit, columns.p, chosen, falls, drop=drop, fdr=fdr)


def call_windows(
    curve: pl.DataFrame,
    *,
    jump: float,
    drop: float,
    fdr: float,
    rule: str = "steps",
    max_span: float = MAX_SPAN,
    columns: CurveColumns = CONSISTENCY,
) -> pl.DataFrame:
    """`find_windows` (rule "steps", the research rule) or `find_windows_span` ("span")."""
    if rule == "steps":
        return find_windows(curve, jump=jump, drop=drop, fdr=fdr, columns=columns)
    if rule == "span":
        return find_windows_span(
            curve,
            jump=jump,
            drop=drop,
            fdr=fdr,
            max_span=max_span,
            columns=columns,
        )
    raise ValueError(f"windows.rule {rule!r}: expected one of {', '.join(RULES)}")


def detect(
    graded: pl.DataFrame,
    truncated: pl.DataFrame,
    base: pl.DataFrame,
    *,
    jump: float,
    drop: float,
    fdr: float,
    rule: str = "steps",
    max_span: float = MAX_SPAN,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Curves and windows of one run: every dataset of a model at once.

    The Benjamini-Hochberg control spans every step (rule "span": every span) of every
    question passed in, so pass the whole run. Returns (CURVES, WINDOWS) frames; split them
    by `dataset` to write.
    """
    curve = _with_cuts(curves(graded), truncated, base)
    calls = call_windows(curve, jump=jump, drop=drop, fdr=fdr, rule=rule, max_span=max_span)
    questions = graded.group_by(_QUESTION).agg(
        pl.col("gold", "orig_answer", "direct_answer", "orig_is_right", "direct_is_right").first()
    )
    found = questions.join(calls, on=_QUESTION, how="left")
    windows = _spans(found, truncated, base).sort(_QUESTION)
    return curve, windows


def _with_cuts(curve: pl.DataFrame, truncated: pl.DataFrame, base: pl.DataFrame) -> pl.DataFrame:
    """`cut_tokens`, `char_offset` and `unit_index` of every level of a curve; at f = 1 the
    whole response (its tokens, its length and, for unit cuts, its number of units)."""
    cuts = truncated.select(
        "question_id", "level", "cut_tokens", "char_offset", "unit_index", "n_units"
    )
    whole = base.select(
        "question_id",
        _L=pl.col("n_response_tokens"),
        _chars=pl.col("response_text").str.len_chars(),
    )
    units = cuts.group_by("question_id").agg(_units=pl.col("n_units").first())
    at_one = pl.col("level") == 1.0
    return (
        curve.join(cuts, on=["question_id", "level"], how="left")
        .join(whole, on="question_id", how="left")
        .join(units, on="question_id", how="left")
        .with_columns(
            cut_tokens=pl.when(at_one).then("_L").otherwise("cut_tokens").cast(pl.Int32),
            char_offset=pl.when(at_one).then("_chars").otherwise("char_offset").cast(pl.Int32),
            unit_index=pl.when(at_one).then("_units").otherwise("unit_index").cast(pl.Int32),
        )
        .drop("_L", "_chars", "_units", "n_units")
    )


def _spans(found: pl.DataFrame, truncated: pl.DataFrame, base: pl.DataFrame) -> pl.DataFrame:
    """Token and character span, and text, of each window in the original response."""
    cuts = truncated.select("question_id", "level", "cut_tokens", "char_offset", "unit_index")
    lower = cuts.rename(
        {
            "level": "level_lo",
            "cut_tokens": "token_start",
            "char_offset": "char_start",
            "unit_index": "unit_start",
        }
    )
    upper = cuts.rename(
        {
            "level": "level_hi",
            "cut_tokens": "token_end",
            "char_offset": "char_end",
            "unit_index": "unit_end",
        }
    )
    units = truncated.group_by("question_id").agg(n_units=pl.col("n_units").first())
    response = base.select(
        "question_id",
        "response_text",
        "n_response_tokens",
        n_chars=pl.col("response_text").str.len_chars(),
    )
    whole = pl.col("level_hi") == 1.0
    out = (
        found.join(lower, on=["question_id", "level_lo"], how="left")
        .join(upper, on=["question_id", "level_hi"], how="left")
        .join(response, on="question_id", how="left")
        .join(units, on="question_id", how="left")
        .with_columns(
            token_end=pl.when(whole).then(pl.col("n_response_tokens")).otherwise("token_end"),
            char_end=pl.when(whole).then(pl.col("n_chars")).otherwise("char_end"),
            unit_end=pl.when(whole).then(pl.col("n_units")).otherwise("unit_end"),
        )
    )
    lost = out.filter(
        pl.col("has_window")
        & pl.any_horizontal(pl.col("response_text", "char_start", "char_end").is_null())
    )
    if lost.height:
        row = lost.row(0, named=True)
        raise ValueError(
            f"question {row['question_id']!r}: the window {row['level_lo']} -> {row['level_hi']} "
            "has no cut in the truncated table or no response in the base table "
            f"({lost.height} windows affected); the tables are from different runs, re-run "
            "truncation and grading"
        )
    span = ["token_start", "token_end", "char_start", "char_end", "unit_start", "unit_end"]
    return out.with_columns(
        *(pl.when(pl.col("has_window")).then(pl.col(c)).cast(pl.Int32).alias(c) for c in span),
        window_text=pl.when(pl.col("has_window")).then(
            pl.col("response_text").str.slice(
                pl.col("char_start"), pl.col("char_end") - pl.col("char_start")
            )
        ),
    ).drop("response_text", "n_response_tokens", "n_chars")


def _call(
    curve: pl.DataFrame,
    unit: list[str],
    p: str,
    chosen: pl.DataFrame,
    falls: pl.DataFrame,
    *,
    drop: float,
    fdr: float,
) -> pl.DataFrame:
    """Per unit: its number of levels, the chosen rise (`jump`, its q-value, `_over`: whether
    it clears the threshold by the rule's measure) and the largest fall that counts
    (`max_drop`), and the calls of both rules: `has_window` and `significant`."""
    levels = curve.group_by(unit).agg(n_levels=pl.col(p).is_not_null().sum())
    return (
        levels.join(chosen, on=unit, how="left")
        .join(falls, on=unit, how="left")
        .with_columns(
            significant=pl.col("q_value") <= fdr,
            has_window=pl.when(pl.col("level_lo").is_not_null()).then(
                pl.col("_over") & (pl.col("max_drop") <= drop)
            ),
        )
        .drop("_over")
    )
