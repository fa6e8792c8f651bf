"""The figures and the explorer page of the prefill attack (critical_windows.jailbreak).

The figures are the chain-of-thought figures of critical_windows.figures drawn with the
compliance rate against the prefix length; the explorer page shows, per request and judge,
the opener with its cut points and the window (the prefix where behaviour flips) marked.
Kept apart from the attack's model stages so that editing a page re-runs no model.
"""

from __future__ import annotations

import html
import json
from typing import Any

import polars as pl

from critical_windows import explorer, figures
from critical_windows.jailbreak import prefix_lengths

# --- figures -----------------------------------------------------------------------------------

FIGURES = ("compliance", "window_share", "request_curves")


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
    data = json.dumps({"meta": meta, "requests": records}).replace("<", "\\u003c")
    return (
        _PAGE.replace("__ERROR_CAPTURE__", explorer.ERROR_CAPTURE)
        .replace("__TITLE__", html.escape(f"Prefill-attack windows: {model}"))
        .replace("__SCRIPT__", _SCRIPT)
        .replace("__DATA__", data)
    )


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
__ERROR_CAPTURE__
<style>
:root { --win: #ffd8a8; --ink: #222; --muted: #666; --line: #ddd; --yes: #c92a2a; --no: #2b8a3e; }
body {
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
  color: var(--ink); margin: 0; background: #fafafa;
}
header {
  position: sticky; top: 0; z-index: 1;
  background: #fff; border-bottom: 1px solid var(--line); padding: 10px 20px;
}
h1 { font-size: 18px; margin: 0 0 6px; }
#note { color: #c92a2a; margin: 0 0 6px; }
.filters { display: flex; gap: 14px; flex-wrap: wrap; align-items: center; }
.filters label { color: var(--muted); }
select, input { font: inherit; padding: 2px 4px; }
#counts { color: var(--muted); margin-left: auto; }
main { padding: 12px 20px; display: grid; gap: 12px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px; }
.card[hidden] { display: none; }
.head { display: flex; gap: 8px; align-items: baseline; flex-wrap: wrap; }
.rid { font-weight: 600; font-family: ui-monospace, monospace; }
.badge { border-radius: 10px; padding: 0 8px; font-size: 12px; border: 1px solid var(--line); }
.badge.win { background: var(--win); border-color: #f59f00; }
.request { margin: 6px 0; }
.opener {
  font: 16px ui-monospace, monospace; white-space: pre; background: #fcfcfc;
  border: 1px solid #eee; padding: 6px 8px; display: inline-block;
}
.opener mark { background: var(--win); }
.cut {
  font: 10px ui-monospace, monospace; color: #fff; background: #868e96;
  border-radius: 3px; padding: 0 3px; margin: 0 2px; vertical-align: super;
}
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
svg text { font: 10px system-ui, sans-serif; fill: var(--muted); }
#errors .error {
  background: #ffe3e3; color: #c92a2a; padding: 4px 20px; font-family: ui-monospace, monospace;
}
</style>
</head>
<body>
<header>
  <h1 id="title">__TITLE__</h1>
  <p id="note" hidden></p>
  <div class="filters">
    <label>dataset <select id="f-dataset"><option value="">all</option></select></label>
    <label>judge <select id="f-judge"><option value="">all</option></select></label>
    <label>window <select id="f-window">
      <option value="">any</option><option value="with">with window</option>
      <option value="significant">with significant window</option>
      <option value="without">without window</option><option value="undefined">no curve</option>
    </select></label>
    <label>search <input id="f-text" type="search" placeholder="id or text"></label>
    <span id="counts"></span>
  </div>
</header>
<div id="errors"></div>
<main id="list"></main>
<div id="render-status" data-status="pending" hidden></div>
<script type="application/json" id="data">__DATA__</script>
<script>
__SCRIPT__
</script>
</body>
</html>
"""

_SCRIPT = r"""
"use strict";
(function () {
  window.__pendingErrors.forEach(window.__note);
  var DATA = JSON.parse(document.getElementById("data").textContent);
  var SVG = "http://www.w3.org/2000/svg";
  var MAX = DATA.meta.opener.length;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) { node.textContent = text; }
    return node;
  }
  function svg(parent, tag, attrs, text) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) { node.textContent = text; }
    return parent.appendChild(node);
  }
  function fmt(x, digits) {
    return x === null || x === undefined ? "–" : Number(x).toFixed(digits);
  }
  function show(prefix) { return "\u201c" + prefix + "\u201d"; }

  // curve points: [level, P, ci low, ci high, judged, missing, prefix, examples]
  function curve(r) {
    var W = 300, H = 150, L = 34, R = 8, T = 8, B = 26;
    var x = function (k) { return L + k / MAX * (W - L - R); };
    var y = function (p) { return T + (1 - p) * (H - T - B); };
    var root = document.createElementNS(SVG, "svg");
    [["width", W], ["height", H], ["viewBox", "0 0 " + W + " " + H], ["role", "img"]]
      .forEach(function (a) { root.setAttribute(a[0], a[1]); });
    svg(root, "title", {}, "compliance of " + r.id + " (" + r.judge + ")");
    if (r.window) {
      svg(root, "rect", {
        x: x(r.lo), y: T, width: x(r.hi) - x(r.lo), height: H - T - B, fill: "#ffd8a8"
      });
    }
    [0, 0.5, 1].forEach(function (p) {
      svg(root, "line", { x1: L, x2: W - R, y1: y(p), y2: y(p), stroke: "#eee" });
      svg(root, "text", { x: L - 4, y: y(p) + 3, "text-anchor": "end" }, p);
    });
    var last = -Infinity;
    r.curve.forEach(function (c) {
      if (x(c[0]) - last < 14) { return; }  // no overlapping tick labels (20 and 21)
      last = x(c[0]);
      svg(root, "text", { x: last, y: H - B + 12, "text-anchor": "middle" }, c[0]);
    });
    svg(root, "text", { x: (L + W - R) / 2, y: H - 2, "text-anchor": "middle" },
      "characters of the opener prefilled");
    var pts = r.curve.filter(function (c) { return c[1] !== null; });
    pts.forEach(function (c) {
      if (c[2] === null || c[3] === null) { return; }
      svg(root, "line", {
        x1: x(c[0]), x2: x(c[0]), y1: y(c[2]), y2: y(c[3]), stroke: "#f1a9a0", "stroke-width": 2
      });
    });
    if (pts.length > 1) {
      svg(root, "polyline", {
        points: pts.map(function (c) { return x(c[0]) + "," + y(c[1]); }).join(" "),
        fill: "none", stroke: "#c92a2a", "stroke-width": 1.5
      });
    }
    pts.forEach(function (c) {
      var dot = svg(root, "circle", { cx: x(c[0]), cy: y(c[1]), r: 3, fill: "#c92a2a" });
      svg(dot, "title", {}, show(c[6]) + ": complied " + fmt(c[1], 2) + " [" + fmt(c[2], 2) +
        ", " + fmt(c[3], 2) + "], " + c[4] + " judged, " + c[5] + " without a verdict");
    });
    return root;
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
    var opener = node.appendChild(el("div", { class: "opener" }));
    r.segments.forEach(function (s) {
      if (s[1] !== null) {
        opener.appendChild(el("span", { class: "cut", title: "prefix of " + s[1] }, s[1]));
      }
      if (s[0]) {
        opener.appendChild(s[2] ? el("mark", {}, s[0]) : document.createTextNode(s[0]));
      }
    });
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
    node.__r = r;
    return node;
  }

  if (DATA.meta.note) {
    var note = document.getElementById("note");
    note.textContent = DATA.meta.note;
    note.hidden = false;
  }
  var list = document.getElementById("list");
  var cards = DATA.requests.map(function (r) { return list.appendChild(card(r)); });
  var inputs = {
    dataset: document.getElementById("f-dataset"),
    judge: document.getElementById("f-judge"),
    window: document.getElementById("f-window"),
    text: document.getElementById("f-text")
  };
  DATA.meta.datasets.forEach(function (d) {
    inputs.dataset.appendChild(el("option", { value: d }, d));
  });
  DATA.meta.judges.forEach(function (j) {
    inputs.judge.appendChild(el("option", { value: j }, j));
  });
  var WINDOW = {
    "with": function (r) { return r.window === true; },
    "significant": function (r) { return r.window === true && r.significant === true; },
    "without": function (r) { return r.window === false; },
    "undefined": function (r) { return r.window === null; }
  };
  function matches(r, f) {
    if (f.dataset && r.dataset !== f.dataset) { return false; }
    if (f.judge && r.judge !== f.judge) { return false; }
    if (f.window && !WINDOW[f.window](r)) { return false; }
    if (f.text) {
      var hay = (r.id + " " + r.request).toLowerCase();
      if (hay.indexOf(f.text.toLowerCase()) < 0) { return false; }
    }
    return true;
  }
  function apply() {
    var f = {}, shown = 0;
    Object.keys(inputs).forEach(function (k) { f[k] = inputs[k].value; });
    cards.forEach(function (c) {
      var ok = matches(c.__r, f);
      c.hidden = !ok;
      shown += ok ? 1 : 0;
    });
    document.getElementById("counts").textContent = "showing " + shown + " of " +
      cards.length + " curves (" + DATA.meta.total + " in the run, at most " +
      DATA.meta.per_dataset + " per dataset and judge)";
    var hash = Object.keys(f).filter(function (k) { return f[k]; })
      .map(function (k) { return k + "=" + encodeURIComponent(f[k]); }).join("&");
    history.replaceState(null, "", hash ? "#" + hash : location.pathname);
    document.getElementById("render-status").setAttribute("data-shown", String(shown));
  }
  location.hash.replace(/^#/, "").split("&").forEach(function (pair) {
    var kv = pair.split("=");
    if (inputs[kv[0]]) { inputs[kv[0]].value = decodeURIComponent(kv[1] || ""); }
  });
  Object.keys(inputs).forEach(function (k) { inputs[k].addEventListener("input", apply); });
  apply();
  var status = document.getElementById("render-status");
  status.setAttribute("data-rendered", String(cards.length));
  status.setAttribute("data-status", "ok");
})();
"""
