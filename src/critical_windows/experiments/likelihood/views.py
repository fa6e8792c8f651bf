"""The figures of likelihood-ratio detection: ROC curves per attack family and the
distributions of detector scores."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import altair as alt
import polars as pl

from critical_windows.catalog import LIKELIHOOD_FIGURES
from critical_windows.experiments.likelihood.sources import BENIGN, JAILBREAK, ROLES, describe_role
from critical_windows.views import figures


def subtitle(roles: Mapping[str, Mapping[str, Any]], note: str | None) -> list[str]:
    """The lines under a figure's title: the two models, and the demonstration note."""
    lines = [f"{r}: {describe_role(roles[r])}" for r in ROLES]
    return lines + ([note] if note else [])


FIGURES = LIKELIHOOD_FIGURES


def roc_chart(roc: pl.DataFrame, fprs: Sequence[float]) -> alt.TopLevelMixin:
    """ROC curves per detector (panels), one line per attack family, the FPRs of the table
    marked."""
    x = alt.X("fpr:Q", title="false-positive rate", scale=alt.Scale(domain=[0, 1]))
    y = alt.Y("tpr:Q", title="true-positive rate", scale=alt.Scale(domain=[0, 1]))
    families = roc["family"].unique(maintain_order=True).to_list()
    diagonal = (
        alt.Chart(pl.DataFrame({"fpr": [0.0, 1.0], "tpr": [0.0, 1.0]}))
        .mark_line(color="#bbb", strokeDash=[3, 3])
        .encode(x=x, y=y)
    )
    marks = (
        alt.Chart(pl.DataFrame({"fpr": list(fprs)}))
        .mark_rule(color="#999", strokeDash=[2, 2])
        .encode(x=x)
    )
    panels = []
    for detector in roc["detector"].unique(maintain_order=True).to_list():
        data = roc.filter(pl.col("detector") == detector).with_columns(
            pl.col("threshold").replace([math.inf], None),
            step=pl.int_range(pl.len()).over("family"),  # from the strictest threshold down
        )
        lines = (
            alt.Chart(data)
            .mark_line(point=True)
            .encode(
                x=x,
                y=y,
                order="step:Q",
                color=alt.Color("family:N", title="attack family", sort=families),
                tooltip=["family", "threshold", "fpr", "tpr"],
            )
        )
        panels.append((diagonal + marks + lines).properties(width=220, height=200, title=detector))
    return alt.concat(*panels, columns=3).properties(
        title="ROC of the log-ratio detectors per attack family"
    )


def scores_chart(scores: pl.DataFrame) -> alt.TopLevelMixin:
    """Each prompt's score per detector, jailbreak families beside the benign prompts."""
    data = scores.filter(pl.col("score").is_not_null())
    families = data.sort("label", descending=True)["family"].unique(maintain_order=True).to_list()
    return (
        alt.Chart(data)
        .mark_tick(thickness=2, size=14)
        .encode(
            x=alt.X("score:Q", title="log p_unaligned - log p_aligned"),
            y=alt.Y("family:N", title=None, sort=families),
            color=alt.Color("label:N", scale=alt.Scale(domain=[JAILBREAK, BENIGN])),
            tooltip=["prompt_id", "family", "label", alt.Tooltip("score:Q", format=".3f")],
        )
        .properties(width=260, height=alt.Step(18))
        .facet(facet=alt.Facet("detector:N", title=None), columns=2)
        .resolve_scale(x="independent")
        .properties(title="Detector scores of jailbreak and benign prompts")
    )


def render(
    name: str,
    scores: pl.DataFrame,
    roc: pl.DataFrame,
    *,
    fprs: Sequence[float],
    subtitle: Sequence[str],
    html_path: str,
    png_path: str,
) -> None:
    """Draw figure `name` ("roc" or "score_distributions") as HTML and PNG."""
    if name == "roc":
        chart = roc_chart(roc, fprs)
    elif name == "score_distributions":
        chart = scores_chart(scores)
    else:
        raise ValueError(f"unknown likelihood figure {name!r}; known figures: {', '.join(FIGURES)}")
    figures.save(figures.with_subtitle(chart, list(subtitle)), html_path, png_path)
