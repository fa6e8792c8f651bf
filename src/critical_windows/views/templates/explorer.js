
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
