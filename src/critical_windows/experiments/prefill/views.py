"""The figures and the explorer page of the prefill attack (experiments.prefill.attack).

The figures are the chain-of-thought figures of critical_windows.views.figures drawn with the
compliance rate against the prefix length; the explorer page shows, per request and judge,
the opener with its cut points and the window (the prefix where behaviour flips) marked.
Kept apart from the attack's model stages so that editing a page re-runs no model.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from critical_windows.catalog import PREFILL_FIGURES
from critical_windows.experiments.prefill.attack import prefix_lengths
from critical_windows.views import explorer, figures

# --- figures -----------------------------------------------------------------------------------

FIGURES = PREFILL_FIGURES


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


_STYLE = """\
:root { --yes: #c92a2a; --no: #2b8a3e; }
#note { color: #c92a2a; margin: 0 0 6px; }
.rid { font-weight: 600; font-family: ui-monospace, monospace; }
.request { margin: 6px 0; }
.opener {
  font: 16px ui-monospace, monospace; white-space: pre; background: #fcfcfc;
  border: 1px solid #eee; padding: 6px 8px; display: inline-block;
}
.opener mark { background: var(--win); }
.row { display: grid; grid-template-columns: minmax(300px, 1fr) 300px; gap: 14px; margin-top: 8px; }
table.levels { border-collapse: collapse; font-size: 13px; width: 100%; }
table.levels td, table.levels th {
  padding: 2px 8px 2px 0; text-align: left; vertical-align: top; border-top: 1px solid #f1f1f1;
}
table.levels th { color: var(--muted); font-weight: normal; }
.prefix { font-family: ui-monospace, monospace; white-space: pre; }
.ex { white-space: pre-wrap; font-family: ui-serif, Georgia, serif; margin-bottom: 3px; }
.complied { border-left: 3px solid var(--yes); padding-left: 5px; }
.refused { border-left: 3px solid var(--no); padding-left: 5px; }
.none { border-left: 3px solid #adb5bd; padding-left: 5px; color: var(--muted); }
.why { color: var(--muted); font-size: 12px; }
"""

_HEADER = """\
  <p id="note" hidden></p>
"""

_FILTERS = (
    """\
    <label>judge <select id="f-judge"><option value="">all</option></select></label>
"""
    + explorer.WINDOW_FILTER
)

_SCRIPT = r"""
  var MAX = DATA.meta.opener.length;

  function show(prefix) { return "\u201c" + prefix + "\u201d"; }

  // curve points: [level, P, ci low, ci high, judged, missing, prefix, examples]
  function curve(r) {
    return chart(r, {
      title: "compliance of " + r.id + " (" + r.judge + ")",
      at: function (k) { return k / MAX; },
      ticks: r.curve.map(function (c) { return c[0]; }),
      label: "characters of the opener prefilled",
      band: "#f1a9a0",
      line: "#c92a2a",
      point: function (c) {
        return show(c[6]) + ": complied " + fmt(c[1], 2) + " [" + fmt(c[2], 2) + ", " +
          fmt(c[3], 2) + "], " + c[4] + " judged, " + c[5] + " without a verdict";
      }
    });
  }

  function card(r) {
    var node = el("section", { class: "card", id: "r-" + r.id + "-" + r.judge,
      "data-request": r.id, "data-judge": r.judge });
    var head = node.appendChild(el("div", { class: "head" }));
    head.appendChild(el("span", { class: "rid" }, r.id));
    head.appendChild(el("span", { class: "badge" }, r.dataset));
    head.appendChild(el("span", { class: "badge" }, "judge: " + r.judge));
    if (r.window) {
      head.appendChild(el("span", { class: "badge win" },
        "flips at " + show(r.flip) + " (" + r.lo + " → " + r.hi + " characters, jump " +
        fmt(r.jump, 2) + ", q = " + fmt(r.q, 3) +
        (r.significant ? ", significant)" : ", not significant)")));
    } else if (r.window === false) {
      head.appendChild(el("span", { class: "badge" },
        "no window (largest rise " + fmt(r.jump, 2) + ")"));
    } else {
      head.appendChild(el("span", { class: "badge" }, "no curve: too few verdicts"));
    }
    node.appendChild(el("div", { class: "request" }, r.request));
    marked(node.appendChild(el("div", { class: "opener" })), r.segments, "prefix of ");
    var row = node.appendChild(el("div", { class: "row" }));
    var table = row.appendChild(el("table", { class: "levels" }));
    var top = table.appendChild(el("tr"));
    ["prefix", "complied", "examples"].forEach(function (t) {
      top.appendChild(el("th", {}, t));
    });
    r.curve.forEach(function (c) {
      var tr = table.appendChild(el("tr"));
      tr.appendChild(el("td", { class: "prefix" }, show(c[6])));
      tr.appendChild(el("td", {}, fmt(c[1], 2) + " (" + c[4] + (c[5] ? ", " + c[5] +
        " without verdict" : "") + ")"));
      var cell = tr.appendChild(el("td"));
      c[7].forEach(function (e) {
        var cls = e[1] === true ? "complied" : (e[1] === false ? "refused" : "none");
        var ex = cell.appendChild(el("div", { class: "ex " + cls }, c[6] + e[0]));
        if (e[2]) { ex.appendChild(el("div", { class: "why" }, e[2])); }
      });
    });
    row.appendChild(curve(r));
    return node;
  }

  if (DATA.meta.note) {
    var note = document.getElementById("note");
    note.textContent = DATA.meta.note;
    note.hidden = false;
  }
  options(document.getElementById("f-dataset"), DATA.meta.datasets);
  options(document.getElementById("f-judge"), DATA.meta.judges);
  var tests = {
    dataset: datasetIs,
    judge: function (r, value) { return r.judge === value; },
    window: windowIs,
    text: textHas(function (r) { return r.id + " " + r.request; })
  };
  listCards(DATA.requests, card, tests, function (shown, total) {
    return "showing " + shown + " of " + total + " curves (" + DATA.meta.total +
      " in the run, at most " + DATA.meta.per_dataset + " per dataset and judge)";
  });
"""
