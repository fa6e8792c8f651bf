"""A static HTML page to read a run question by question.

Everything is inline (data as JSON, script, styles, curves drawn as SVG by the page), so the
file works offline, from disk, with no server. Text from the model is inserted with
`textContent`, never as HTML. The page reports its own state for headless tests: after
rendering it sets `data-status="ok"` on `#render-status`, and any script error or
`console.error` is appended to `#errors`.

Filters can be preset in the address: `explorer.html#dataset=math&window=with&answer=wrong`.
The page's frame, styles and script helpers (`page`, COMMON_STYLE, COMMON_SCRIPT) also make the
prefill attack's page (critical_windows.experiments.prefill.views).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import polars as pl

TEMPLATES = Path(__file__).with_name("templates")
"""The pages' HTML, CSS and JavaScript, as files (views/templates/)."""


def template(name: str, folder: Path = TEMPLATES) -> str:
    """The text of the template file `name` in `folder`."""
    return (folder / name).read_text(encoding="utf-8")


QUESTIONS_PER_DATASET = 100


def pick(windows: pl.DataFrame, per_dataset: int) -> pl.DataFrame:
    """Up to `per_dataset` questions per dataset: those with a window first, then by id."""
    return (
        windows.sort(
            pl.col("dataset"),
            pl.col("has_window").fill_null(False),
            pl.col("question_id"),
            descending=[False, True, False],
        )
        .filter(pl.int_range(pl.len()).over("dataset") < per_dataset)
        .sort("dataset", "question_id")
    )


def segments(text: str, cuts: list[tuple[float, int]], window: tuple[int, int] | None) -> list:
    """Split `text` at the cut points, marking the part inside the window.

    Returns [text, level that starts here or None, inside window] triples; slicing is done
    here, in Python characters, because the page's JavaScript counts UTF-16 units.
    """
    bounds = {0, len(text)}
    starts: dict[int, float] = {}
    for level, offset in cuts:
        offset = min(max(offset, 0), len(text))
        bounds.add(offset)
        starts.setdefault(offset, level)
    if window:
        bounds.update(window)
    edges = sorted(bounds)
    out = []
    for a, b in zip(edges, edges[1:], strict=False):
        inside = window is not None and window[0] <= a and b <= window[1]
        out.append([text[a:b], starts.get(a), inside])
    for offset, level in starts.items():
        if offset == len(text):
            out.append(["", level, False])
    return out


def units(
    text: str, scores: list[dict[str, Any]], window: tuple[int, int] | None
) -> list[list[Any]]:
    """The text between consecutive cuts, each piece with its importance (an IMPORTANCE
    row): [text, unit index, delta_p, its interval, kl, inside the window]. The text before
    the first cut has no score."""
    out: list[list[Any]] = []
    pieces = sorted(scores, key=lambda r: r["char_start"])
    if pieces and pieces[0]["char_start"] > 0:
        out.append([text[: pieces[0]["char_start"]], 0, None, None, None, None, False])
    for r in pieces:
        a, b = r["char_start"], r["char_end"]
        inside = window is not None and window[0] <= a and b <= window[1]
        out.append(
            [
                text[a:b],
                r["unit_index"],
                r["delta_p"],
                r["delta_p_low"],
                r["delta_p_high"],
                r["kl"],
                inside,
            ]
        )
    return out


def records(
    questions: pl.DataFrame,
    base: pl.DataFrame,
    truncated: pl.DataFrame,
    curves: pl.DataFrame,
    windows: pl.DataFrame,
    importance: pl.DataFrame | None = None,
    levels: pl.DataFrame | None = None,
) -> list[dict[str, Any]]:
    """One JSON-ready record per question of `windows`; with an IMPORTANCE frame, also the
    response split at its cuts with each piece's importance (`units`); with a
    LEVEL_DISTRIBUTIONS frame, the forced (logprob) curve P(original answer) (`forced`:
    [level, p] points, drawn dashed beside P(f))."""
    ids = windows.select("question_id")

    def mine(df: pl.DataFrame) -> pl.DataFrame:
        return df.join(ids, on="question_id", how="semi")

    problems = dict(mine(questions).select("question_id", "problem").iter_rows())
    texts = dict(mine(base).select("question_id", "response_text").iter_rows())
    cuts = (
        mine(truncated)
        .sort("level")
        .group_by("question_id")
        .agg(pl.col("level"), pl.col("char_offset"))
    )
    cut_of = {
        r["question_id"]: list(zip(r["level"], r["char_offset"], strict=True))
        for r in cuts.iter_rows(named=True)
    }
    points = (
        mine(curves)
        .sort("level")
        .group_by("question_id")
        .agg(
            pl.struct(
                "level",
                "p_consistent",
                "ci_low",
                "ci_high",
                "n_graded",
                "n_missing",
                "stump_answer",
                "stump_is_right",
            ).alias("curve")
        )
    )
    curve_of = dict(points.iter_rows())
    forced_of: dict[str, list[list[float]]] = {}
    if levels is not None:
        defined = mine(levels).filter(pl.col("p_orig_forced").is_not_null()).sort("level")
        for qid, level, p in defined.select("question_id", "level", "p_orig_forced").iter_rows():
            forced_of.setdefault(qid, []).append([level, p])
    scores_of: dict[str, list[dict[str, Any]]] = {}
    if importance is not None:
        for r in mine(importance).iter_rows(named=True):
            scores_of.setdefault(r["question_id"], []).append(r)
    out = []
    for w in windows.iter_rows(named=True):
        qid = w["question_id"]
        text = texts.get(qid, "")
        span = (w["char_start"], w["char_end"]) if w["has_window"] else None
        out.append(
            {
                "id": qid,
                "dataset": w["dataset"],
                "problem": problems.get(qid, ""),
                "gold": w["gold"],
                "orig": w["orig_answer"],
                "direct": w["direct_answer"],
                "orig_right": w["orig_is_right"],
                "direct_right": w["direct_is_right"],
                "window": w["has_window"],
                "significant": w["significant"],
                "lo": w["level_lo"],
                "hi": w["level_hi"],
                "jump": w["jump"],
                "q": w["q_value"],
                "segments": segments(text, cut_of.get(qid, []), span),
                "units": units(text, scores_of[qid], span) if qid in scores_of else None,
                "curve": [
                    [
                        c["level"],
                        c["p_consistent"],
                        c["ci_low"],
                        c["ci_high"],
                        c["n_graded"],
                        c["n_missing"],
                        c["stump_answer"],
                        c["stump_is_right"],
                    ]
                    for c in curve_of.get(qid, [])
                ],
                "forced": forced_of.get(qid),
            }
        )
    return out


def build(
    model: str,
    questions: pl.DataFrame,
    base: pl.DataFrame,
    truncated: pl.DataFrame,
    curves: pl.DataFrame,
    windows: pl.DataFrame,
    per_dataset: int = QUESTIONS_PER_DATASET,
    importance: pl.DataFrame | None = None,
    levels: pl.DataFrame | None = None,
) -> str:
    """The explorer page of one run, showing up to `per_dataset` questions per dataset."""
    shown = pick(windows, per_dataset)
    meta = {
        "model": model,
        "total": windows.height,
        "datasets": sorted(windows["dataset"].unique().to_list()),
        "per_dataset": per_dataset,
    }
    data = {
        "meta": meta,
        "questions": records(questions, base, truncated, curves, shown, importance, levels),
    }
    return page(f"Critical windows: {model}", data, style=_STYLE, filters=_FILTERS, script=_SCRIPT)


def page(title: str, data: Any, *, style: str, filters: str, script: str, header: str = "") -> str:
    """A page of the explorers: `header` under the title, the dataset filter, `filters`, the
    search box, one card per record, `data` as JSON. `style` follows COMMON_STYLE, and `script`
    runs after COMMON_SCRIPT in the same closure."""
    block = json.dumps(data).replace("<", "\\u003c")  # no "</script>" can end the block early
    return (
        _PAGE.replace("__ERROR_CAPTURE__", ERROR_CAPTURE)
        .replace("__STYLE__", COMMON_STYLE + style)
        .replace("__HEADER__", header)
        .replace("__FILTERS__", filters)
        .replace("__SCRIPT__", COMMON_SCRIPT + script)
        .replace("__TITLE__", html.escape(title))
        .replace("__DATA__", block)
    )


ERROR_CAPTURE = template("error_capture.html")
"""The head script of a self-testing page: script errors and `console.error` are written into
`#errors` (with messages from before the page body exists kept until it does)."""

_PAGE = template("page.html")

WINDOW_FILTER = template("window_filter.html")
"""The window filter of `page`, for the test `windowIs` of COMMON_SCRIPT."""

COMMON_STYLE = template("common.css")
"""The styles of `page`: header, filters, cards, badges, cut marks and charts."""

COMMON_SCRIPT = template("common.js")
"""The script of `page`: element, chart and format helpers, the tests of the common filters,
and `listCards`, which renders the cards, filters them and reports the render status."""

_STYLE = template("explorer.css")

_FILTERS = (
    WINDOW_FILTER
    + """\
    <label>original answer <select id="f-answer">
      <option value="">any</option><option value="right">right</option>
      <option value="wrong">wrong</option><option value="missing">missing</option>
    </select></label>
"""
)

_SCRIPT = template("explorer.js")
