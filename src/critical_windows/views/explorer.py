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
from typing import Any

import polars as pl

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


ERROR_CAPTURE = """\
<script>
(function () {
  window.__pendingErrors = [];
  function note(message) {
    var box = document.getElementById("errors");
    if (!box) { window.__pendingErrors.push(String(message)); return; }
    var line = document.createElement("div");
    line.className = "error";
    line.textContent = String(message);
    box.appendChild(line);
  }
  window.__note = note;
  window.addEventListener("error", function (e) {
    note("error: " + e.message + " (" + e.filename + ":" + e.lineno + ")");
  });
  window.addEventListener("unhandledrejection", function (e) {
    note("unhandled rejection: " + e.reason);
  });
  var original = console.error;
  console.error = function () {
    note("console.error: " + Array.prototype.join.call(arguments, " "));
    original.apply(console, arguments);
  };
})();
</script>"""
"""The head script of a self-testing page: script errors and `console.error` are written into
`#errors` (with messages from before the page body exists kept until it does)."""

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
__ERROR_CAPTURE__
<style>
__STYLE__</style>
</head>
<body>
<header>
  <h1 id="title">__TITLE__</h1>
__HEADER__  <div class="filters">
    <label>dataset <select id="f-dataset"><option value="">all</option></select></label>
__FILTERS__    <label>search <input id="f-text" type="search" placeholder="id or text"></label>
    <span id="counts"></span>
  </div>
</header>
<div id="errors"></div>
<main id="list"></main>
<div id="render-status" data-status="pending" hidden></div>
<script type="application/json" id="data">__DATA__</script>
<script>
"use strict";
(function () {
__SCRIPT__})();
</script>
</body>
</html>
"""

WINDOW_FILTER = """\
    <label>window <select id="f-window">
      <option value="">any</option><option value="with">with window</option>
      <option value="significant">with significant window</option>
      <option value="without">without window</option><option value="undefined">no curve</option>
    </select></label>
"""
"""The window filter of `page`, for the test `windowIs` of COMMON_SCRIPT."""

COMMON_STYLE = """\
:root { --win: #ffd8a8; --ink: #222; --muted: #666; --line: #ddd; }
body {
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
  color: var(--ink); margin: 0; background: #fafafa;
}
header {
  position: sticky; top: 0; z-index: 1;
  background: #fff; border-bottom: 1px solid var(--line); padding: 10px 20px;
}
h1 { font-size: 18px; margin: 0 0 6px; }
.filters { display: flex; gap: 14px; flex-wrap: wrap; align-items: center; }
.filters label { color: var(--muted); }
select, input { font: inherit; padding: 2px 4px; }
#counts { color: var(--muted); margin-left: auto; }
main { padding: 12px 20px; display: grid; gap: 12px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px; }
.card[hidden] { display: none; }
.head { display: flex; gap: 8px; align-items: baseline; flex-wrap: wrap; }
.badge { border-radius: 10px; padding: 0 8px; font-size: 12px; border: 1px solid var(--line); }
.badge.win { background: var(--win); border-color: #f59f00; }
.cut {
  font: 10px ui-monospace, monospace; color: #fff; background: #868e96;
  border-radius: 3px; padding: 0 3px; margin: 0 2px; vertical-align: super;
}
svg text { font: 10px system-ui, sans-serif; fill: var(--muted); }
#errors .error {
  background: #ffe3e3; color: #c92a2a; padding: 4px 20px; font-family: ui-monospace, monospace;
}
"""
"""The styles of `page`: header, filters, cards, badges, cut marks and charts."""

COMMON_SCRIPT = r"""
  window.__pendingErrors.forEach(window.__note);
  var DATA = JSON.parse(document.getElementById("data").textContent);
  var SVG = "http://www.w3.org/2000/svg";

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
  function options(select, values) {
    values.forEach(function (v) { select.appendChild(el("option", { value: v }, v)); });
  }

  // segments: [text, cut that starts here or null, inside the window]
  function marked(box, segments, cutTitle) {
    segments.forEach(function (s) {
      if (s[1] !== null) {
        box.appendChild(el("span", { class: "cut", title: cutTitle + s[1] }, s[1]));
      }
      if (s[0]) {
        box.appendChild(s[2] ? el("mark", {}, s[0]) : document.createTextNode(s[0]));
      }
    });
    return box;
  }

  // points of r.curve: [level, P, ci low, ci high, ...]; o: title, at (level to [0, 1]),
  // ticks, label, colours band and line, point (a point's tooltip)
  function chart(r, o) {
    var W = 300, H = 150, L = 34, R = 8, T = 8, B = 26;
    var x = function (level) { return L + o.at(level) * (W - L - R); };
    var y = function (p) { return T + (1 - p) * (H - T - B); };
    var root = document.createElementNS(SVG, "svg");
    [["width", W], ["height", H], ["viewBox", "0 0 " + W + " " + H], ["role", "img"]]
      .forEach(function (a) { root.setAttribute(a[0], a[1]); });
    svg(root, "title", {}, o.title);
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
    o.ticks.forEach(function (t) {
      if (x(t) - last < 14) { return; }  // no overlapping tick labels (20 and 21)
      last = x(t);
      svg(root, "text", { x: last, y: H - B + 12, "text-anchor": "middle" }, t);
    });
    svg(root, "text", { x: (L + W - R) / 2, y: H - 2, "text-anchor": "middle" }, o.label);
    var pts = r.curve.filter(function (c) { return c[1] !== null; });
    pts.forEach(function (c) {
      if (c[2] === null || c[3] === null) { return; }
      svg(root, "line", {
        x1: x(c[0]), x2: x(c[0]), y1: y(c[2]), y2: y(c[3]), stroke: o.band, "stroke-width": 2
      });
    });
    if (pts.length > 1) {
      svg(root, "polyline", {
        points: pts.map(function (c) { return x(c[0]) + "," + y(c[1]); }).join(" "),
        fill: "none", stroke: o.line, "stroke-width": 1.5
      });
    }
    pts.forEach(function (c) {
      var dot = svg(root, "circle", { cx: x(c[0]), cy: y(c[1]), r: 3, fill: o.line });
      svg(dot, "title", {}, o.point(c));
    });
    if (r.forced && r.forced.length > 0) {  // the forced (logprob) curve, dashed
      svg(root, "polyline", {
        points: r.forced.map(function (c) { return x(c[0]) + "," + y(c[1]); }).join(" "),
        fill: "none", stroke: "#e76f51", "stroke-width": 1.5, "stroke-dasharray": "4 2"
      });
      r.forced.forEach(function (c) {
        var dot = svg(root, "rect", {
          x: x(c[0]) - 2.5, y: y(c[1]) - 2.5, width: 5, height: 5, fill: "#e76f51"
        });
        svg(dot, "title", {}, "f = " + c[0] + ": forced P(original answer) = " + fmt(c[1], 2));
      });
    }
    return root;
  }

  var WINDOW = {
    "with": function (r) { return r.window === true; },
    "significant": function (r) { return r.window === true && r.significant === true; },
    "without": function (r) { return r.window === false; },
    "undefined": function (r) { return r.window === null; }
  };
  function datasetIs(r, value) { return r.dataset === value; }
  function windowIs(r, value) { return WINDOW[value](r); }
  function textHas(text) {
    return function (r, value) {
      return text(r).toLowerCase().indexOf(value.toLowerCase()) >= 0;
    };
  }

  // one card per record in #list, shown when it passes tests[name](record, value) for every
  // filter "f-" + name with a value; the values are kept in the address in the order of
  // `tests`, and #render-status reports the cards rendered and shown
  function listCards(records, card, tests, describeCount) {
    var inputs = {};
    Object.keys(tests).forEach(function (k) { inputs[k] = document.getElementById("f-" + k); });
    var list = document.getElementById("list");
    var cards = records.map(function (r) { return list.appendChild(card(r)); });
    function apply() {
      var f = {}, shown = 0;
      Object.keys(inputs).forEach(function (k) { f[k] = inputs[k].value; });
      cards.forEach(function (c, i) {
        var ok = Object.keys(f).every(function (k) { return !f[k] || tests[k](records[i], f[k]); });
        c.hidden = !ok;
        shown += ok ? 1 : 0;
      });
      document.getElementById("counts").textContent = describeCount(shown, cards.length);
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
  }
"""
"""The script of `page`: element, chart and format helpers, the tests of the common filters,
and `listCards`, which renders the cards, filters them and reports the render status."""

_STYLE = """\
:root { --right: #2b8a3e; --wrong: #c92a2a; }
.qid { font-weight: 600; font-family: ui-monospace, monospace; }
.badge.right { color: var(--right); border-color: var(--right); }
.badge.wrong { color: var(--wrong); border-color: var(--wrong); }
.row { display: grid; grid-template-columns: minmax(260px, 1fr) 300px; gap: 14px; margin-top: 8px; }
table.answers { border-collapse: collapse; font-size: 13px; }
table.answers td, table.answers th {
  padding: 1px 8px 1px 0; text-align: left; vertical-align: top;
}
table.answers th { color: var(--muted); font-weight: normal; white-space: nowrap; width: 8em; }
.ans { font-family: ui-monospace, monospace; }
.ok { color: var(--right); }
.bad { color: var(--wrong); }
.none { color: var(--muted); font-style: italic; }
details { margin-top: 6px; }
.response {
  white-space: pre-wrap; font-family: ui-serif, Georgia, serif; background: #fcfcfc;
  border: 1px solid #eee; padding: 8px; margin-top: 6px; max-height: 320px; overflow: auto;
}
.response mark { background: var(--win); }
.units .unit { border-radius: 2px; }
.units .unit.inside { outline: 2px solid #f59f00; }
.legend { color: var(--muted); font-size: 12px; margin-top: 6px; }
"""

_FILTERS = (
    WINDOW_FILTER
    + """\
    <label>original answer <select id="f-answer">
      <option value="">any</option><option value="right">right</option>
      <option value="wrong">wrong</option><option value="missing">missing</option>
    </select></label>
"""
)

_SCRIPT = r"""
  function answer(value, right) {
    var cls = "ans";
    if (value === null) { cls = "ans none"; }
    else if (right === true) { cls = "ans ok"; }
    else if (right === false) { cls = "ans bad"; }
    return el("span", { class: cls }, value === null ? "missing" : value);
  }

  // curve points: [level, P, ci low, ci high, graded, missing, stump answer, stump right]
  function curve(q) {
    return chart(q, {
      title: "P(f) of " + q.id,
      at: function (f) { return f; },
      ticks: [0, 0.25, 0.5, 0.75, 1],
      label: "fraction f of the response kept",
      band: "#9bb7d4",
      line: "#1c7ed6",
      point: function (c) {
        return "f = " + c[0] + ": P = " + fmt(c[1], 2) + " [" + fmt(c[2], 2) + ", " +
          fmt(c[3], 2) + "], " + c[4] + " graded, " + c[5] + " missing";
      }
    });
  }

  function badges(q, head) {
    head.appendChild(el("span", { class: "qid" }, q.id));
    head.appendChild(el("span", { class: "badge" }, q.dataset));
    if (q.window) {
      head.appendChild(el("span", { class: "badge win" },
        "window " + q.lo + " → " + q.hi + ", jump " + fmt(q.jump, 2) + ", q = " +
        fmt(q.q, 3) + (q.significant ? " (significant)" : " (not significant)")));
    } else if (q.window === false) {
      head.appendChild(el("span", { class: "badge" },
        "no window (largest jump " + fmt(q.jump, 2) + ")"));
    } else {
      head.appendChild(el("span", { class: "badge" }, "no curve: original answer missing"));
    }
    if (q.orig_right !== null) {
      var verdict = q.orig_right ? "right" : "wrong";
      head.appendChild(el("span", { class: "badge " + verdict }, verdict));
    }
  }

  function card(q) {
    var node = el("section", { class: "card", id: "q-" + q.id, "data-question": q.id });
    badges(q, node.appendChild(el("div", { class: "head" })));
    var row = node.appendChild(el("div", { class: "row" }));
    var table = row.appendChild(el("table", { class: "answers" }));
    function line(name, content) {
      var tr = table.appendChild(el("tr"));
      tr.appendChild(el("th", {}, name));
      tr.appendChild(el("td")).appendChild(content);
    }
    line("gold", el("span", { class: "ans" }, q.gold));
    line("original", answer(q.orig, q.orig_right));
    line("direct", answer(q.direct, q.direct_right));
    q.curve.forEach(function (c) {
      if (c[0] >= 1) { return; }
      var cell = el("span");
      cell.appendChild(answer(c[6], c[7]));
      var counts = c[4] + " graded" + (c[5] ? ", " + c[5] + " missing" : "");
      cell.appendChild(document.createTextNode("  P = " + fmt(c[1], 2) + " (" + counts + ")"));
      line("stump f = " + c[0], cell);
    });
    row.appendChild(curve(q));
    var problem = node.appendChild(el("details"));
    problem.appendChild(el("summary", {}, "question"));
    problem.appendChild(el("div", { class: "response" }, q.problem));
    marked(node.appendChild(el("div", { class: "response" })), q.segments, "cut at f = ");
    if (q.units) { node.appendChild(importanceView(q)); }
    return node;
  }

  // the response split at its cuts, each piece shaded by the change in P it brings (green:
  // a rise, red: a fall) and outlined inside the window; units: [text, unit, dP, dP low,
  // dP high, KL, inside]
  function importanceView(q) {
    var box = el("details", { class: "importance", open: "" });
    box.appendChild(el("summary", {}, "importance of each unit (change in P to the next cut)"));
    var text = box.appendChild(el("div", { class: "response units" }));
    q.units.forEach(function (u) {
      var attrs = { class: "unit" + (u[6] ? " inside" : ""), "data-unit": u[1] };
      if (u[2] !== null) {
        var a = Math.min(1, Math.abs(u[2])) * 0.7;
        attrs.style = "background: rgba(" + (u[2] >= 0 ? "43,138,62," : "201,42,42,") + a + ")";
        attrs.title = "unit " + u[1] + ": ΔP = " + fmt(u[2], 2) + " [" + fmt(u[3], 2) + ", " +
          fmt(u[4], 2) + "], KL = " + fmt(u[5], 3);
      }
      text.appendChild(el("span", attrs, u[0]));
    });
    box.appendChild(el("div", { class: "legend" },
      "green: P rises over the unit, red: it falls (darker: larger); outlined: the window"));
    return box;
  }

  options(document.getElementById("f-dataset"), DATA.meta.datasets);
  var ANSWER = { right: true, wrong: false, missing: null };
  var tests = {
    dataset: datasetIs,
    window: windowIs,
    answer: function (q, value) { return q.orig_right === ANSWER[value]; },
    text: textHas(function (q) {
      return q.id + " " + q.problem + " " + q.segments.map(function (s) { return s[0]; }).join("");
    })
  };
  listCards(DATA.questions, card, tests, function (shown, total) {
    return "showing " + shown + " of " + total + " questions (" + DATA.meta.total +
      " in the run, at most " + DATA.meta.per_dataset + " per dataset)";
  });
"""
