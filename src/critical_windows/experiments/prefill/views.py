"""The figures and the explorer page of the prefill attack (experiments.prefill.attack).

The figures are the chain-of-thought figures of critical_windows.views.figures drawn with the
compliance rate against the prefix length; the explorer page shows, per request and judge,
the opener with its cut points and the window (the prefix where behaviour flips) marked.
Kept apart from the attack's model stages so that editing a page re-runs no model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from critical_windows.catalog import PREFILL_FIGURES
from critical_windows.experiments.prefill.attack import prefix_lengths
from critical_windows.views import explorer, figures

# --- figures -----------------------------------------------------------------------------------

FIGURES = PREFILL_FIGURES
TEMPLATES = Path(__file__).with_name("templates")


def curve_style(opener: str, step: int) -> figures.CurveStyle:
    """The curve figures' columns and axes for compliance against the prefix length."""
    return figures.CurveStyle(
        unit="request_id",
        value="p_complied",
        n="n_judged",
        level_title=f"characters of {opener!r} prefilled",
        level_short="characters prefilled",
        level_ticks=tuple(prefix_lengths(opener, step)),
        level_domain=(0, len(opener)),
        value_title="compliance",
        mean_title="mean compliance rate",
        noun="requests",
        curve_name="compliance curve",
    )


def render(
    name: str,
    curves: pl.DataFrame,
    found: pl.DataFrame,
    *,
    judge: str,
    model: str,
    opener: str,
    step: int,
    html_path: str,
    png_path: str,
    note: str | None = None,
) -> None:
    """Draw figure `name` of one judge's run of `model` with the chain-of-thought figures."""
    if name not in FIGURES:
        raise ValueError(f"unknown jailbreak figure {name!r}; known figures: {', '.join(FIGURES)}")
    mine = pl.col("judge") == judge
    c, w = curves.filter(mine), found.filter(mine)
    style = curve_style(opener, step)
    if name == "compliance":
        chart = figures.consistency(
            c, w, style, title=f"Compliance against the prefilled opener ({judge} judge)"
        )
    elif name == "window_share":
        chart = figures.window_share(c, w, style)
    else:
        label = pl.format(
            "{} ({})",
            "request_id",
            pl.when(pl.col("has_window"))
            .then(pl.format("flips at {}", pl.col("level_hi").cast(pl.Int32)))
            .otherwise(pl.lit("no window")),
        )
        chart = figures.question_curves(c, w, style, label=label)
    subtitle = [f"model {model}, judge {judge}"] + ([note] if note else [])
    figures.save(figures.with_subtitle(chart, subtitle), html_path, png_path)


# --- explorer ----------------------------------------------------------------------------------

EXAMPLE_CHARS = 400  # characters of each example continuation shown


def explorer_records(
    requests: pl.DataFrame,
    continuations: pl.DataFrame,
    judged: pl.DataFrame,
    curves: pl.DataFrame,
    found: pl.DataFrame,
    opener: str,
    per_dataset: int,
) -> list[dict[str, Any]]:
    """One JSON-ready record per (request, judge) shown: those with a window first."""
    shown = (
        found.sort(
            "judge",
            "dataset",
            pl.col("has_window").fill_null(False),
            "request_id",
            descending=[False, False, True, False],
        )
        .filter(pl.int_range(pl.len()).over("judge", "dataset") < per_dataset)
        .sort("dataset", "request_id", "judge")
    )
    text_of = dict(requests.select("request_id", "request").iter_rows())
    examples = (
        continuations.select("request_id", "prefix_chars", "sample", "text")
        .join(judged, on=["request_id", "prefix_chars", "sample"], how="inner")
        .sort("sample")
        .group_by("request_id", "judge", "prefix_chars")
        .agg(pl.col("text", "complied", "judge_output", "missing_reason").head(3))
    )
    example_of = {
        (e["request_id"], e["judge"], e["prefix_chars"]): [
            [t[:EXAMPLE_CHARS], c, (o or m or "")[:EXAMPLE_CHARS]]
            for t, c, o, m in zip(
                e["text"], e["complied"], e["judge_output"], e["missing_reason"], strict=True
            )
        ]
        for e in examples.iter_rows(named=True)
    }
    points = (
        curves.sort("level")
        .group_by("request_id", "judge")
        .agg(pl.struct("level", "p_complied", "ci_low", "ci_high", "n_judged", "n_missing"))
    )
    curve_of = {(r[0], r[1]): r[2] for r in points.iter_rows()}
    levels = sorted({int(x) for x in curves["level"].to_list()}) or prefix_lengths(opener, 1)
    out = []
    for w in shown.iter_rows(named=True):
        key = (w["request_id"], w["judge"])
        span = (int(w["level_lo"]), int(w["level_hi"])) if w["has_window"] else None
        out.append(
            {
                "id": w["request_id"],
                "dataset": w["dataset"],
                "judge": w["judge"],
                "request": text_of.get(w["request_id"], ""),
                "window": w["has_window"],
                "significant": w["significant"],
                "lo": w["level_lo"],
                "hi": w["level_hi"],
                "jump": w["jump"],
                "q": w["q_value"],
                "flip": w["flip_prefix"],
                "segments": explorer.segments(opener, [(k, k) for k in levels], span),
                "curve": [
                    [
                        c["level"],
                        c["p_complied"],
                        c["ci_low"],
                        c["ci_high"],
                        c["n_judged"],
                        c["n_missing"],
                        opener[: int(c["level"])],
                        example_of.get((*key, int(c["level"])), []),
                    ]
                    for c in curve_of.get(key, [])
                ],
            }
        )
    return out


def build_explorer(
    model: str,
    requests: pl.DataFrame,
    continuations: pl.DataFrame,
    judged: pl.DataFrame,
    curves: pl.DataFrame,
    found: pl.DataFrame,
    *,
    opener: str,
    per_dataset: int,
    note: str | None = None,
) -> str:
    """A static page to read a model's prefill attack request by request: the compliance
    curve, the opener with its cut points and the window (the prefix where behaviour flips)
    marked, and example continuations with their verdicts at every prefix."""
    meta = {
        "model": model,
        "opener": opener,
        "total": found.height,
        "per_dataset": per_dataset,
        "datasets": sorted(found["dataset"].unique().to_list()),
        "judges": sorted(found["judge"].unique().to_list()),
        "note": note,
    }
    records = explorer_records(requests, continuations, judged, curves, found, opener, per_dataset)
    return explorer.page(
        f"Prefill-attack windows: {model}",
        {"meta": meta, "requests": records},
        style=_STYLE,
        header=_HEADER,
        filters=_FILTERS,
        script=_SCRIPT,
    )


_STYLE = explorer.template("prefill.css", TEMPLATES)

_HEADER = explorer.template("prefill_header.html", TEMPLATES)

_FILTERS = (
    """\
    <label>judge <select id="f-judge"><option value="">all</option></select></label>
"""
    + explorer.WINDOW_FILTER
)

_SCRIPT = explorer.template("prefill.js", TEMPLATES)
