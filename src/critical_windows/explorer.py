"""A static HTML page to read a run question by question.

Everything is inline (data as JSON, script, styles, curves drawn as SVG by the page), so the
file works offline, from disk, with no server. Text from the model is inserted with
`textContent`, never as HTML. The page reports its own state for headless tests: after
rendering it sets `data-status="ok"` on `#render-status`, and any script error or
`console.error` is appended to `#errors`.

Filters can be preset in the address: `explorer.html#dataset=math&window=with&answer=wrong`.
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


def records(
    questions: pl.DataFrame,
    base: pl.DataFrame,
    truncated: pl.DataFrame,
    curves: pl.DataFrame,
    windows: pl.DataFrame,
) -> list[dict[str, Any]]:
    """One JSON-ready record per question of `windows`."""
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
) -> str:
    """The explorer page of one run, showing up to `per_dataset` questions per dataset."""
    shown = pick(windows, per_dataset)
    meta = {
        "model": model,
        "total": windows.height,
        "datasets": sorted(windows["dataset"].unique().to_list()),
        "per_dataset": per_dataset,
    }
    data = json.dumps(
        {"meta": meta, "questions": records(questions, base, truncated, curves, shown)}
    )
    data = data.replace("<", "\\u003c")  # no "</script>" can end the block early
    return (
        _PAGE.replace("__ERROR_CAPTURE__", ERROR_CAPTURE)
        .replace("__TITLE__", html.escape(f"Critical windows: {model}"))
        .replace("__DATA__", data)
        .replace("__SCRIPT__", _SCRIPT)
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
:root {
  --win: #ffd8a8; --ink: #222; --muted: #666; --line: #ddd; --right: #2b8a3e; --wrong: #c92a2a;
}
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
.qid { font-weight: 600; font-family: ui-monospace, monospace; }
.badge { border-radius: 10px; padding: 0 8px; font-size: 12px; border: 1px solid var(--line); }
.badge.win { background: var(--win); border-color: #f59f00; }
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
.cut {
  font: 10px ui-monospace, monospace; color: #fff; background: #868e96;
  border-radius: 3px; padding: 0 3px; margin: 0 2px; vertical-align: super;
}
svg text { font: 10px system-ui, sans-serif; fill: var(--muted); }
#errors .error {
  background: #ffe3e3; color: #c92a2a; padding: 4px 20px; font-family: ui-monospace, monospace;
}
</style>
</head>
<body>
<header>
  <h1 id="title">__TITLE__</h1>
  <div class="filters">
    <label>dataset <select id="f-dataset"><option value="">all</option></select></label>
    <label>window <select id="f-window">
      <option value="">any</option><option value="with">with window</option>
      <option value="significant">with significant window</option>
      <option value="without">without window</option><option value="undefined">no curve</option>
    </select></label>
    <label>original answer <select id="f-answer">
      <option value="">any</option><option value="right">right</option>
      <option value="wrong">wrong</option><option value="missing">missing</option>
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
  function answer(value, right) {
    var cls = "ans";
    if (value === null) { cls = "ans none"; }
    else if (right === true) { cls = "ans ok"; }
    else if (right === false) { cls = "ans bad"; }
    return el("span", { class: cls }, value === null ? "missing" : value);
  }

  // curve points: [level, P, ci low, ci high, graded, missing, stump answer, stump right]
  function curve(q) {
    var W = 300, H = 150, L = 34, R = 8, T = 8, B = 26;
    var x = function (f) { return L + f * (W - L - R); };
    var y = function (p) { return T + (1 - p) * (H - T - B); };
    var root = document.createElementNS(SVG, "svg");
    [["width", W], ["height", H], ["viewBox", "0 0 " + W + " " + H], ["role", "img"]]
      .forEach(function (a) { root.setAttribute(a[0], a[1]); });
    svg(root, "title", {}, "P(f) of " + q.id);
    if (q.window) {
      svg(root, "rect", {
        x: x(q.lo), y: T, width: x(q.hi) - x(q.lo), height: H - T - B, fill: "#ffd8a8"
      });
    }
    [0, 0.5, 1].forEach(function (p) {
      svg(root, "line", { x1: L, x2: W - R, y1: y(p), y2: y(p), stroke: "#eee" });
      svg(root, "text", { x: L - 4, y: y(p) + 3, "text-anchor": "end" }, p);
    });
    [0, 0.25, 0.5, 0.75, 1].forEach(function (f) {
      svg(root, "text", { x: x(f), y: H - B + 12, "text-anchor": "middle" }, f);
    });
    svg(root, "text", { x: (L + W - R) / 2, y: H - 2, "text-anchor": "middle" },
      "fraction f of the response kept");
    var pts = q.curve.filter(function (c) { return c[1] !== null; });
    pts.forEach(function (c) {
      if (c[2] === null || c[3] === null) { return; }
      svg(root, "line", {
        x1: x(c[0]), x2: x(c[0]), y1: y(c[2]), y2: y(c[3]), stroke: "#9bb7d4", "stroke-width": 2
      });
    });
    if (pts.length > 1) {
      svg(root, "polyline", {
        points: pts.map(function (c) { return x(c[0]) + "," + y(c[1]); }).join(" "),
        fill: "none", stroke: "#1c7ed6", "stroke-width": 1.5
      });
    }
    pts.forEach(function (c) {
      var dot = svg(root, "circle", { cx: x(c[0]), cy: y(c[1]), r: 3, fill: "#1c7ed6" });
      svg(dot, "title", {}, "f = " + c[0] + ": P = " + fmt(c[1], 2) +
        " [" + fmt(c[2], 2) + ", " + fmt(c[3], 2) + "], " + c[4] + " graded, " +
        c[5] + " missing");
    });
    return root;
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
    var response = node.appendChild(el("div", { class: "response" }));
    q.segments.forEach(function (s) {
      if (s[1] !== null) {
        response.appendChild(el("span", { class: "cut", title: "cut at f = " + s[1] }, s[1]));
      }
      if (s[0]) {
        response.appendChild(s[2] ? el("mark", {}, s[0]) : document.createTextNode(s[0]));
      }
    });
    node.__q = q;
    return node;
  }

  var list = document.getElementById("list");
  var cards = DATA.questions.map(function (q) { return list.appendChild(card(q)); });
  var inputs = {
    dataset: document.getElementById("f-dataset"),
    window: document.getElementById("f-window"),
    answer: document.getElementById("f-answer"),
    text: document.getElementById("f-text")
  };
  DATA.meta.datasets.forEach(function (d) {
    inputs.dataset.appendChild(el("option", { value: d }, d));
  });

  var WINDOW = {
    "with": function (q) { return q.window === true; },
    "significant": function (q) { return q.window === true && q.significant === true; },
    "without": function (q) { return q.window === false; },
    "undefined": function (q) { return q.window === null; }
  };
  var ANSWER = { right: true, wrong: false, missing: null };
  function matches(q, f) {
    if (f.dataset && q.dataset !== f.dataset) { return false; }
    if (f.window && !WINDOW[f.window](q)) { return false; }
    if (f.answer && q.orig_right !== ANSWER[f.answer]) { return false; }
    if (f.text) {
      var text = q.segments.map(function (s) { return s[0]; }).join("");
      var hay = (q.id + " " + q.problem + " " + text).toLowerCase();
      if (hay.indexOf(f.text.toLowerCase()) < 0) { return false; }
    }
    return true;
  }
  function apply() {
    var f = {}, shown = 0;
    Object.keys(inputs).forEach(function (k) { f[k] = inputs[k].value; });
    cards.forEach(function (c) {
      var ok = matches(c.__q, f);
      c.hidden = !ok;
      shown += ok ? 1 : 0;
    });
    document.getElementById("counts").textContent = "showing " + shown + " of " +
      cards.length + " questions (" + DATA.meta.total + " in the run, at most " +
      DATA.meta.per_dataset + " per dataset)";
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
