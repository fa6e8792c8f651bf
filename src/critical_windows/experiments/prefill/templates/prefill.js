
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
