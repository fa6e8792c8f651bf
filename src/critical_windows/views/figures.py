"""The figures of a run (METHOD.md §2, step 10), as Altair charts.

Every figure is drawn from the CURVES and WINDOWS tables of all datasets of one model,
aggregated with polars first so that the charts carry small data whatever the run size.
`FIGURES` maps each figure's name (the `{figure}` of the workflow) to its builder.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass

import altair as alt
import numpy as np
import polars as pl

from critical_windows.analysis.statistics import Z95, wilson_interval
from critical_windows.io.atomic import write_atomic

QUESTION_CURVES = 24  # individual curves drawn in `question_curves`
_LEVEL_TICKS = [0, 0.25, 0.5, 0.75, 1]
_SHARE = alt.Scale(domain=[0, 1])
_FACET_COLUMNS = 4


@dataclass(frozen=True)
class CurveStyle:
    """What the curve figures (`consistency`, `window_share`, `question_curves`) plot.

    The default is the chain-of-thought consistency curve P(f); the prefill-attack figures
    pass the compliance rate against the prefix length (experiments.prefill.attack).
    """

    unit: str = "question_id"  # the id of one curve
    value: str = "p_consistent"  # the rate at a level
    n: str = "n_graded"  # samples behind it
    n_missing: str = "n_missing"
    level_title: str = "fraction f of the response kept"
    level_short: str = "f"
    level_ticks: tuple[float, ...] = tuple(_LEVEL_TICKS)
    level_domain: tuple[float, float] = (0, 1)
    value_title: str = "P(f)"
    mean_title: str = "mean P(f): share of consistent continuations"
    noun: str = "questions"  # what a curve belongs to, in titles
    curve_name: str = "consistency curve"

    def axis(self, short: bool = False) -> alt.Axis:
        title = self.level_short if short else self.level_title
        return alt.Axis(title=title, values=list(self.level_ticks), format=".2~f")

    def x(self, field: str = "level", short: bool = False) -> alt.X:
        return alt.X(
            f"{field}:Q", axis=self.axis(short), scale=alt.Scale(domain=list(self.level_domain))
        )


CONSISTENCY = CurveStyle()


def _datasets(windows: pl.DataFrame) -> list[str]:
    return windows["dataset"].unique(maintain_order=True).to_list()


def _with_wilson(df: pl.DataFrame, k: str, n: str) -> pl.DataFrame:
    low, high = wilson_interval(df[k].to_numpy(), df[n].to_numpy())
    return df.with_columns(
        share=pl.when(pl.col(n) > 0).then(pl.col(k) / pl.col(n)),
        low=pl.Series(low).fill_nan(None),
        high=pl.Series(high).fill_nan(None),
    )


def _empty(message: str) -> alt.Chart:
    return (
        alt.Chart(pl.DataFrame({"text": [message]}))
        .mark_text(size=14)
        .encode(text="text:N")
        .properties(width=400, height=60)
    )


def accuracy(curves: pl.DataFrame, windows: pl.DataFrame) -> alt.TopLevelMixin:
    """Accuracy of the chain of thought, the direct answer and the stump at each level."""
    right = pl.col("orig_is_right")
    per_question = windows.group_by("dataset").agg(
        k_cot=right.sum(),
        n_cot=right.is_not_null().sum(),
        k_direct=pl.col("direct_is_right").sum(),
        n_direct=pl.col("direct_is_right").is_not_null().sum(),
    )
    rows = pl.concat(
        [
            per_question.select(
                "dataset", kind=pl.lit(kind), level=pl.lit(level), k=f"k_{col}", n=f"n_{col}"
            )
            for kind, level, col in [
                ("chain of thought", 1.0, "cot"),
                ("direct answer", 0.0, "direct"),
            ]
        ]
        + [
            curves.filter(pl.col("level") < 1)
            .group_by("dataset", "level")
            .agg(k=pl.col("stump_is_right").sum(), n=pl.col("stump_is_right").is_not_null().sum())
            .select("dataset", kind=pl.lit("stump"), level="level", k="k", n="n")
        ],
        how="vertical_relaxed",
    )
    data = _with_wilson(rows, "k", "n").sort("dataset", "level")
    kinds = ["chain of thought", "direct answer", "stump"]
    color = alt.Color("kind:N", title=None, scale=alt.Scale(domain=kinds))
    base = alt.Chart().encode(
        x=CONSISTENCY.x(short=True),
        tooltip=["dataset", "kind", "level", alt.Tooltip("share:Q", format=".3f"), "n"],
    )
    y = alt.Y("share:Q", title="accuracy", scale=_SHARE)
    stump_line = (
        base.transform_filter(alt.datum.kind != "direct answer")
        .mark_line(color="#999", strokeDash=[3, 2])
        .encode(y=y)
    )
    bars = base.mark_errorbar(ticks=True).encode(
        y=alt.Y("low:Q", title="accuracy"), y2="high:Q", color=color
    )
    points = base.mark_point(filled=True, size=50).encode(
        y=y, color=color, shape=alt.Shape("kind:N", title=None, scale=alt.Scale(domain=kinds))
    )
    return (
        alt.layer(stump_line, bars, points, data=data)
        .properties(width=180, height=140)
        .facet(facet=alt.Facet("dataset:N", sort=_datasets(windows)), columns=_FACET_COLUMNS)
        .properties(title="Accuracy: chain of thought (f = 1), direct answer (f = 0), stump at f")
    )


def consistency(
    curves: pl.DataFrame,
    windows: pl.DataFrame,
    style: CurveStyle = CONSISTENCY,
    title: str = "Mean consistency curve per dataset",
) -> alt.TopLevelMixin:
    """Mean consistency curve P(f) per dataset, with a normal 95% interval of the mean."""
    p = pl.col(style.value)
    data = (
        curves.filter(p.is_not_null())
        .group_by("dataset", "level")
        .agg(mean=p.mean(), sd=p.std(), n=pl.len())
        .with_columns(half=Z95 * pl.col("sd").fill_null(0) / pl.col("n").sqrt())
        .with_columns(
            low=(pl.col("mean") - pl.col("half")).clip(0, 1),
            high=(pl.col("mean") + pl.col("half")).clip(0, 1),
        )
        .sort("dataset", "level")
    )
    if data.is_empty():
        return _empty(f"no {style.noun.removesuffix('s')} has a {style.curve_name}")
    color = alt.Color("dataset:N", sort=_datasets(windows))
    base = alt.Chart(data).encode(x=style.x())
    band = base.mark_area(opacity=0.15).encode(
        y=alt.Y("low:Q", scale=_SHARE), y2="high:Q", color=color
    )
    line = base.mark_line(point=True).encode(
        y=alt.Y("mean:Q", title=style.mean_title, scale=_SHARE),
        color=color,
        tooltip=["dataset", "level", alt.Tooltip("mean:Q", format=".3f"), "n"],
    )
    return (band + line).properties(width=420, height=280, title=title)


def _grouped_bars(
    data: pl.DataFrame, group: str, groups: list[str], order: list[str], y_title: str
):
    x = alt.X("dataset:N", sort=order, title=None, axis=alt.Axis(labelAngle=0))
    offset = alt.XOffset(f"{group}:N", sort=groups)
    color = alt.Color(f"{group}:N", sort=groups, title=None)
    base = alt.Chart(data).encode(x=x, xOffset=offset)
    bars = base.mark_bar().encode(
        y=alt.Y("share:Q", title=y_title, scale=_SHARE),
        color=color,
        tooltip=["dataset", group, alt.Tooltip("share:Q", format=".3f"), "k", "n"],
    )
    whiskers = base.mark_errorbar(color="black").encode(
        y=alt.Y("low:Q", title=y_title), y2="high:Q"
    )
    return (bars + whiskers).properties(width=max(240, 70 * len(order)), height=260)


def window_share(
    curves: pl.DataFrame, windows: pl.DataFrame, style: CurveStyle = CONSISTENCY
) -> alt.TopLevelMixin:
    """Share of questions with a critical window, by the rule and by rule and test."""
    window = pl.col("has_window")
    counts = (
        windows.filter(window.is_not_null())
        .group_by("dataset")
        .agg(
            rule=window.sum(),
            significant=(window & pl.col("significant").fill_null(False)).sum(),
            n=pl.len(),
        )
    )
    if counts.is_empty():
        return _empty(f"no {style.noun.removesuffix('s')} has a {style.curve_name}")
    groups = ["research rule", "rule and significant jump"]
    data = pl.concat(
        [
            counts.select("dataset", call=pl.lit(g), k=c, n="n")
            for g, c in zip(groups, ["rule", "significant"], strict=True)
        ]
    )
    return _grouped_bars(
        _with_wilson(data, "k", "n"), "call", groups, _datasets(windows), f"share of {style.noun}"
    ).properties(title=f"{style.noun.capitalize()} with a critical window (95% Wilson intervals)")


def accuracy_by_window(curves: pl.DataFrame, windows: pl.DataFrame) -> alt.TopLevelMixin:
    """Accuracy of questions with and without a window: the paper's headline comparison."""
    right = pl.col("orig_is_right")
    data = (
        windows.filter(pl.col("has_window").is_not_null() & right.is_not_null())
        .group_by("dataset", "has_window")
        .agg(k=right.sum(), n=pl.len())
        .with_columns(
            group=pl.when(pl.col("has_window"))
            .then(pl.lit("with window"))
            .otherwise(pl.lit("without window"))
        )
    )
    if data.is_empty():
        return _empty("no question has both a window call and a graded answer")
    groups = ["without window", "with window"]
    return _grouped_bars(
        _with_wilson(data, "k", "n"),
        "group",
        groups,
        _datasets(windows),
        "accuracy of the chain of thought",
    ).properties(title="Accuracy of questions without and with a critical window")


def stump_vs_consistency(curves: pl.DataFrame, windows: pl.DataFrame) -> alt.TopLevelMixin:
    """Per level, questions binned by share of is_stump (x) and of is_consistent (y)."""
    data = (
        curves.filter(
            (pl.col("level") < 1)
            & pl.col("p_stump").is_not_null()
            & pl.col("p_consistent").is_not_null()
        )
        .group_by(
            "level",
            stump=(pl.col("p_stump") * 10).round(0) / 10,
            consistent=(pl.col("p_consistent") * 10).round(0) / 10,
        )
        .agg(questions=pl.len())
    )
    if data.is_empty():
        return _empty("no level has both is_stump and is_consistent graded")
    ticks = [round(i / 10, 1) for i in range(11)]
    return (
        alt.Chart(data)
        .mark_rect()
        .encode(
            x=alt.X(
                "stump:O",
                title="share giving the stump's answer",
                sort=ticks,
                scale=alt.Scale(domain=ticks),
            ),
            y=alt.Y(
                "consistent:O", title="P(f)", sort=ticks[::-1], scale=alt.Scale(domain=ticks[::-1])
            ),
            color=alt.Color("questions:Q", scale=alt.Scale(scheme="blues")),
            tooltip=["level", "stump", "consistent", "questions"],
        )
        .properties(width=150, height=150)
        .facet(facet=alt.Facet("level:O", title="level f"), columns=_FACET_COLUMNS)
        .properties(title="is_stump against is_consistent, per level (questions per cell)")
    )


def _histogram(
    found: pl.DataFrame, values: pl.Expr, title: str, axis: str, color: alt.Color
) -> alt.Chart:
    """Windows per bin of `values` (at most 20 bins), stacked by dataset."""
    data = found.select("dataset", value=values.cast(pl.Float64))
    v = data["value"].to_numpy()
    edges = np.histogram_bin_edges(v, bins=min(20, max(1, len(np.unique(v)))))
    index = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, len(edges) - 2)
    binned = (
        data.with_columns(start=pl.Series(edges[index]), end=pl.Series(edges[index + 1]))
        .group_by("dataset", "start", "end")
        .agg(windows=pl.len())
    )
    return (
        alt.Chart(binned)
        .mark_bar()
        .encode(
            x=alt.X("start:Q", title=axis, bin="binned"),
            x2="end:Q",
            y=alt.Y("sum(windows):Q", title="windows"),
            color=color,
            tooltip=["dataset", "start", "end", "windows"],
        )
        .properties(width=300, height=240, title=title)
    )


def window_positions(curves: pl.DataFrame, windows: pl.DataFrame) -> alt.TopLevelMixin:
    """Where windows fall: the step they span, and their length in tokens; with sentence or
    step cuts (each response its own levels), where they start as a fraction of the tokens
    and in units, and their length in units."""
    found = windows.filter(pl.col("has_window").fill_null(False))
    if found.is_empty():
        return _empty("no question has a critical window")
    order = _datasets(windows)
    color = alt.Color("dataset:N", sort=order)
    if "unit_start" in found.columns and found["unit_start"].is_not_null().any():
        return alt.hconcat(
            _histogram(found, pl.col("level_lo"), "Start", "window start (fraction)", color),
            _histogram(found, pl.col("unit_start"), "Start unit", "first unit inside", color),
            _histogram(
                found,
                pl.col("unit_end") - pl.col("unit_start"),
                "Length in units",
                "window length (units)",
                color,
            ),
        ).properties(title="Where critical windows fall")
    steps = (
        found.group_by("dataset", "level_lo", "level_hi")
        .agg(windows=pl.len())
        .with_columns(step=pl.format("{} → {}", "level_lo", "level_hi"))
        .sort("level_lo")
    )
    by_step = (
        alt.Chart(steps)
        .mark_bar()
        .encode(
            x=alt.X(
                "step:N",
                sort=steps["step"].unique(maintain_order=True).to_list(),
                title="window: from level → to level",
                axis=alt.Axis(labelAngle=0),
            ),
            y=alt.Y("sum(windows):Q", title="windows"),
            color=color,
            tooltip=["dataset", "step", "windows"],
        )
        .properties(width=300, height=240, title="Start and end level")
    )
    lengths = found.select("dataset", tokens=pl.col("token_end") - pl.col("token_start"))
    tokens = lengths["tokens"].to_numpy()
    edges = np.histogram_bin_edges(tokens, bins=min(20, max(1, len(np.unique(tokens)))))
    index = np.clip(np.searchsorted(edges, tokens, side="right") - 1, 0, len(edges) - 2)
    binned = (
        lengths.with_columns(start=pl.Series(edges[index]), end=pl.Series(edges[index + 1]))
        .group_by("dataset", "start", "end")
        .agg(windows=pl.len())
    )
    by_length = (
        alt.Chart(binned)
        .mark_bar()
        .encode(
            x=alt.X("start:Q", title="window length (tokens)", bin="binned"),
            x2="end:Q",
            y=alt.Y("sum(windows):Q", title="windows"),
            color=color,
            tooltip=["dataset", "start", "end", "windows"],
        )
        .properties(width=300, height=240, title="Length")
    )
    return alt.hconcat(by_step, by_length).properties(title="Where critical windows fall")


def pick_questions(windows: pl.DataFrame, n: int, unit: str = "question_id") -> pl.DataFrame:
    """Up to `n` questions, spread over datasets, those with a window first."""
    ranked = (
        windows.filter(pl.col("n_levels") > 0)
        .sort(
            pl.col("has_window").fill_null(False),
            pl.col(unit),
            descending=[True, False],
        )
        .with_columns(rank=pl.int_range(pl.len()).over("dataset"))
        .sort("rank", "dataset")
    )
    return ranked.head(n).drop("rank")


FORCED = "p_orig_forced"  # distributions.level_distributions, joined by with_forced_curve


def with_forced_curve(curves: pl.DataFrame, levels: pl.DataFrame | None) -> pl.DataFrame:
    """`curves` with the forced (logprob) curve P(original answer) of a LEVEL_DISTRIBUTIONS
    frame as column `p_orig_forced` (null where the run has no logprob readout)."""
    if levels is None or levels.is_empty():
        return curves.with_columns(pl.lit(None, pl.Float64).alias(FORCED))
    return curves.join(
        levels.select("dataset", "question_id", "level", FORCED),
        on=["dataset", "question_id", "level"],
        how="left",
    )


def question_curves(
    curves: pl.DataFrame,
    windows: pl.DataFrame,
    style: CurveStyle = CONSISTENCY,
    label: pl.Expr | None = None,
) -> alt.TopLevelMixin:
    """Small multiples of individual P(f) curves, the window's step shaded. Each panel is
    titled by `label` over `windows` (default: the question id and whether its original answer
    is right). With a `p_orig_forced` column (with_forced_curve), the forced logprob curve is
    drawn beside, dashed."""
    if label is None:
        label = pl.format(
            "{} ({})",
            "question_id",
            pl.when(pl.col("orig_is_right"))
            .then(pl.lit("right"))
            .when(~pl.col("orig_is_right"))
            .then(pl.lit("wrong"))
            .otherwise(pl.lit("no answer")),
        )
    unit = style.unit
    picked = pick_questions(windows, QUESTION_CURVES, unit).with_columns(
        label=label,
        win_lo=pl.when(pl.col("has_window")).then("level_lo"),
        win_hi=pl.when(pl.col("has_window")).then("level_hi"),
    )
    if picked.is_empty():
        return _empty(f"no {style.noun.removesuffix('s')} has a {style.curve_name}")
    data = curves.join(picked.select(unit, "label", "win_lo", "win_hi"), on=unit).filter(
        pl.col(style.value).is_not_null()
    )
    x = style.x(short=True)
    y = alt.Y(f"{style.value}:Q", title=style.value_title, scale=_SHARE)
    shade = (
        alt.Chart()
        .transform_filter(f"datum.level == {max(style.level_domain)} && isValid(datum.win_lo)")
        .mark_rect(color="#f4a261", opacity=0.35)
        .encode(x=style.x("win_lo", short=True), x2="win_hi:Q")
    )
    band = (
        alt.Chart()
        .mark_area(opacity=0.2)
        .encode(x=x, y=alt.Y("ci_low:Q", scale=_SHARE, title=style.value_title), y2="ci_high:Q")
    )
    line = (
        alt.Chart()
        .mark_line(point=True)
        .encode(x=x, y=y, tooltip=[unit, "level", style.value, style.n, style.n_missing])
    )
    layers = [shade, band, line]
    if FORCED in data.columns and data[FORCED].is_not_null().any():
        # the forced (logprob) readout's P(original answer) beside the sampled curve
        layers.append(
            alt.Chart()
            .transform_filter(f"isValid(datum.{FORCED})")
            .mark_line(point=alt.OverlayMarkDef(shape="diamond"), strokeDash=[4, 2])
            .encode(
                x=x,
                y=alt.Y(f"{FORCED}:Q", scale=_SHARE, title=style.value_title),
                color=alt.value("#e76f51"),
                tooltip=[unit, "level", FORCED],
            )
        )
    return (
        alt.layer(*layers, data=data)
        .properties(width=130, height=90)
        .facet(
            facet=alt.Facet(
                "label:N",
                title=None,
                sort=picked["label"].to_list(),
                header=alt.Header(labelFontSize=9),
            ),
            columns=6,
        )
        .properties(
            title=f"{style.curve_name.capitalize()}s of up to {QUESTION_CURVES} {style.noun} "
            "(windows shaded)"
        )
    )


FIGURES: dict[str, Callable[[pl.DataFrame, pl.DataFrame], alt.TopLevelMixin]] = {
    "accuracy": accuracy,
    "consistency": consistency,
    "window_share": window_share,
    "accuracy_by_window": accuracy_by_window,
    "stump_vs_consistency": stump_vs_consistency,
    "window_positions": window_positions,
    "question_curves": question_curves,
}


def render(
    name: str,
    curves: pl.DataFrame,
    windows: pl.DataFrame,
    html: str | os.PathLike[str],
    png: str | os.PathLike[str],
    scale: float = 2.0,
) -> None:
    """Draw figure `name` and write it as self-contained HTML and as PNG."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; known figures: {', '.join(FIGURES)}")
    save(FIGURES[name](curves, windows), html, png, scale)


def with_subtitle(chart: alt.TopLevelMixin, subtitle: list[str]) -> alt.TopLevelMixin:
    """`chart` with `subtitle` lines under its title (e.g. that a run only demonstrates the
    mechanism)."""
    title = chart.title
    text = title if isinstance(title, str) else getattr(title, "text", "")
    return chart.properties(title=alt.TitleParams(text=text, subtitle=subtitle, anchor="start"))


def save(
    chart: alt.TopLevelMixin,
    html: str | os.PathLike[str],
    png: str | os.PathLike[str],
    scale: float = 2.0,
) -> None:
    """Write `chart` as self-contained HTML and as PNG, each atomically."""
    write_atomic(html, chart.to_html(inline=True))
    buffer = io.BytesIO()
    chart.save(buffer, format="png", scale_factor=scale)
    write_atomic(png, buffer.getvalue())
