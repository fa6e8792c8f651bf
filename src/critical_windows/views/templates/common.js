
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
