// entity-ledger web page: its only script (no library, no network).
//
// 1. The position slider on a lineage page redraws the graph as of that log position: moving it
//    fills the number box, releasing it submits the GET form (the server lays the graph out).
// 2. The lineage graph pans and zooms by changing the SVG's viewBox: wheel zooms about the pointer,
//    a drag pans, keys +/-/arrows/0 zoom, pan and fit, the buttons fit / zoom / go back to the
//    latest versions. It opens fitted when the whole graph is readable (labels >= 10 px), else at
//    1:1 on the latest version.
// 3. A click on a version or an execution selects it and shows its details (from the same layout,
//    in #graph-details) in the side panel; a click on a collapsed run follows its link, which
//    draws the page again with the run expanded.
// Without JavaScript the slider's box and button work and every node is a plain link.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("input[data-slider]").forEach(function (slider) {
    var box = slider.form.querySelector("input[name=position]");
    slider.addEventListener("input", function () { box.value = slider.value; });
    slider.addEventListener("change", function () { box.value = slider.value; slider.form.submit(); });
  });
  document.querySelectorAll("section.graph").forEach(setupGraph);
});

var READABLE = 0.8; // the smallest first zoom: 13 px labels stay >= 10 px

function setupGraph(section) {
  var view = section.querySelector(".graph-view");
  var svg = view && view.querySelector("svg.lineage");
  if (!svg) { return; }
  var full = { w: parseFloat(svg.getAttribute("width")), h: parseFloat(svg.getAttribute("height")) };
  svg.removeAttribute("width");
  svg.removeAttribute("height");
  svg.setAttribute("preserveAspectRatio", "xMinYMin meet");
  var vb = { x: 0, y: 0, w: full.w, h: full.h };
  var scale = 1;
  var details = {};
  var data = section.querySelector("#graph-details");
  if (data) { try { details = JSON.parse(data.textContent || "{}"); } catch (e) { details = {}; } }
  var panel = section.querySelector("aside.panel");

  function size() { return { w: view.clientWidth || 800, h: view.clientHeight || 500 }; }
  function apply() {
    var s = size();
    vb.w = s.w / scale;
    vb.h = s.h / scale;
    svg.setAttribute("viewBox", vb.x + " " + vb.y + " " + vb.w + " " + vb.h);
    svg.setAttribute("data-scale", scale.toFixed(4));
  }
  function clampScale(s) { return Math.min(4, Math.max(0.05, s)); }
  function zoomAt(factor, px, py) {
    var gx = vb.x + px / scale, gy = vb.y + py / scale;
    scale = clampScale(scale * factor);
    vb.x = gx - px / scale;
    vb.y = gy - py / scale;
    apply();
  }
  function fitScale() { var s = size(); return Math.min(s.w / full.w, s.h / full.h, 1.5); }
  function fit() {
    var s = size();
    scale = clampScale(fitScale());
    vb.x = -(s.w / scale - full.w) / 2;
    vb.y = -(s.h / scale - full.h) / 2;
    apply();
  }
  function latest() {
    var id = svg.getAttribute("data-latest");
    var node = id ? svg.querySelector('a.node[data-id="' + cssEscape(id) + '"]') : null;
    var s = size();
    scale = 1;
    if (!node) { vb.x = 0; vb.y = 0; apply(); return; }
    var box = node.getBBox();
    vb.x = Math.max(-20, Math.min(full.w - s.w + 20, box.x + box.width + 60 - s.w));
    vb.y = Math.max(-20, box.y + box.height / 2 - s.h / 2);
    if (full.h <= s.h) { vb.y = -(s.h - full.h) / 2; }
    apply();
  }
  function first() { if (fitScale() >= READABLE) { fit(); } else { latest(); } }

  view.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    var r = view.getBoundingClientRect();
    zoomAt(Math.exp(-ev.deltaY * 0.0015), ev.clientX - r.left, ev.clientY - r.top);
  }, { passive: false });

  var drag = null, moved = false;
  view.addEventListener("pointerdown", function (ev) {
    if (ev.button !== 0) { return; }
    drag = { x: ev.clientX, y: ev.clientY, vx: vb.x, vy: vb.y };
    moved = false;
  });
  window.addEventListener("pointermove", function (ev) {
    if (!drag) { return; }
    var dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (!moved && Math.abs(dx) + Math.abs(dy) < 5) { return; }
    moved = true;
    view.classList.add("dragging");
    vb.x = drag.vx - dx / scale;
    vb.y = drag.vy - dy / scale;
    apply();
  });
  window.addEventListener("pointerup", function () { drag = null; view.classList.remove("dragging"); });

  view.addEventListener("keydown", function (ev) {
    var s = size(), step = 80 / scale;
    var keys = {
      "+": function () { zoomAt(1.25, s.w / 2, s.h / 2); }, "=": function () { zoomAt(1.25, s.w / 2, s.h / 2); },
      "-": function () { zoomAt(0.8, s.w / 2, s.h / 2); }, "_": function () { zoomAt(0.8, s.w / 2, s.h / 2); },
      "0": fit,
      "ArrowLeft": function () { vb.x -= step; apply(); }, "ArrowRight": function () { vb.x += step; apply(); },
      "ArrowUp": function () { vb.y -= step; apply(); }, "ArrowDown": function () { vb.y += step; apply(); }
    };
    if (keys[ev.key]) { ev.preventDefault(); keys[ev.key](); }
  });
  section.querySelectorAll("[data-zoom]").forEach(function (button) {
    button.addEventListener("click", function () {
      var s = size(), what = button.getAttribute("data-zoom");
      if (what === "fit") { fit(); }
      else if (what === "in") { zoomAt(1.25, s.w / 2, s.h / 2); }
      else if (what === "out") { zoomAt(0.8, s.w / 2, s.h / 2); }
      else { latest(); }
    });
  });

  svg.querySelectorAll("a.node").forEach(function (node) {
    node.addEventListener("click", function (ev) {
      if (moved) { ev.preventDefault(); moved = false; return; }
      if (node.getAttribute("data-kind") === "run") { return; } // its link draws the run expanded
      ev.preventDefault();
      select(node);
    });
  });

  function select(node) {
    svg.querySelectorAll("a.node.selected").forEach(function (n) { n.classList.remove("selected"); });
    node.classList.add("selected");
    var id = node.getAttribute("data-id");
    var info = details[id] || { kind: node.getAttribute("data-kind"), label: id, details: {} };
    show(id, info);
  }

  function show(id, info) {
    if (!panel) { return; }
    panel.textContent = "";
    var h = document.createElement("h3");
    h.textContent = info.label + (info.sublabel && info.kind !== "entity" ? " · " + info.sublabel : "");
    panel.appendChild(h);
    var kind = document.createElement("p");
    kind.className = "kind";
    kind.textContent = { entity: "version", execution: "execution", run: "collapsed run", erasure: "erasure" }[info.kind] || info.kind;
    panel.appendChild(kind);
    var table = document.createElement("table");
    table.className = "panel-details";
    var rows = info.details || {};
    Object.keys(rows).forEach(function (key) {
      var value = rows[key];
      if (value === null || value === undefined) { return; }
      if (typeof value === "object") {
        var keys = Object.keys(value);
        if (!keys.length) { addRow(table, key, "none"); return; }
        keys.forEach(function (k, i) { addRow(table, i === 0 ? key : "", k + ": " + (typeof value[k] === "object" ? JSON.stringify(value[k]) : value[k])); });
      } else {
        addRow(table, key, String(value));
      }
    });
    panel.appendChild(table);
    if (info.href) {
      var p = document.createElement("p");
      var a = document.createElement("a");
      a.href = info.href;
      a.className = "open";
      a.textContent = info.kind === "execution" ? "open the execution's page →" : info.kind === "run" ? "expand this run →" : "open this page →";
      p.appendChild(a);
      panel.appendChild(p);
    }
  }

  first();
  window.addEventListener("resize", apply);
}

function addRow(table, key, value) {
  var tr = document.createElement("tr");
  var th = document.createElement("th");
  var td = document.createElement("td");
  th.textContent = key;
  td.textContent = value;
  tr.appendChild(th);
  tr.appendChild(td);
  table.appendChild(tr);
}

function cssEscape(text) {
  return window.CSS && CSS.escape ? CSS.escape(text) : text.replace(/["\\]/g, "\\$&");
}
