/* l3c timeline: zoom, pan and details for the SVG drawn by l3c/viz/timeline_html.py.
   The data model is the JSON in #timeline-data; bars are [lane, start, dur, kernel, task, loc,
   group, rank, group size, iteration, extra]; arrows are [src lane, src t, dst lane, dst t, kind,
   from task, to task, name]. Times are microseconds. No network access, no external code. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("timeline-data").textContent);
  var svg = document.getElementById("timeline");
  var NS = svg.namespaceURI;
  var L = data.layout;
  var chart = document.getElementById("chart");
  var tooltip = document.getElementById("tooltip");
  var rects = Array.prototype.slice.call(svg.querySelectorAll("rect.task"));
  var flows = Array.prototype.slice.call(svg.querySelectorAll("path.flow"));
  var groupPaths = Array.prototype.slice.call(svg.querySelectorAll("path.group"));
  var critPaths = Array.prototype.slice.call(svg.querySelectorAll("path.crit"));
  var labelLayer = document.getElementById("labels");
  var axisLayer = document.getElementById("axis");
  var view = { t0: data.t0, t1: data.t1 };
  var width = L.width;
  var pinned = null;
  var MIN_SPAN = 0.05;
  var LABEL_LIMIT = 600;

  function plotWidth() { return width - L.left - L.right; }
  function x(t) { return L.left + (t - view.t0) / (view.t1 - view.t0) * plotWidth(); }
  function tAt(px) { return view.t0 + (px - L.left) / plotWidth() * (view.t1 - view.t0); }
  function mid(lane) { return data.lanes[lane].y + L.lane / 2; }

  function fmt(us) {
    if (us < 1) return (us * 1e3).toFixed(0) + " ns";
    if (us < 100) return us.toPrecision(3) + " \u00b5s";
    if (us < 1e3) return us.toFixed(0) + " \u00b5s";
    if (us < 1e6) return (us / 1e3).toPrecision(3) + " ms";
    return (us / 1e6).toPrecision(3) + " s";
  }

  function el(name, attrs, text) {
    var node = document.createElementNS(NS, name);
    for (var k in attrs) node.setAttribute(k, attrs[k]);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function textColour(fill) {
    var r = parseInt(fill.substr(1, 2), 16), g = parseInt(fill.substr(3, 2), 16),
        b = parseInt(fill.substr(5, 2), 16);
    return 0.299 * r + 0.587 * g + 0.114 * b > 150 ? "#000" : "#fff";
  }

  function flowPath(x1, y1, x2, y2) {
    var towards = y2 > y1 ? 1 : -1;
    y1 += towards * L.bar / 2;
    y2 -= towards * L.bar / 2;
    var bend = (y2 - y1) / 2;
    return "M" + x1.toFixed(1) + "," + y1.toFixed(1) + " C" + x1.toFixed(1) + "," +
      (y1 + bend).toFixed(1) + " " + x2.toFixed(1) + "," + (y2 - bend).toFixed(1) + " " +
      x2.toFixed(1) + "," + y2.toFixed(1);
  }

  function ticks() {
    var span = view.t1 - view.t0, raw = span / Math.max(2, Math.round(plotWidth() / 130));
    var power = Math.pow(10, Math.floor(Math.log10(raw))), step = power;
    [1, 2, 5, 10].some(function (m) { step = m * power; return step >= raw; });
    var out = [];
    for (var t = Math.ceil(view.t0 / step) * step; t <= view.t1 + 1e-9; t += step) out.push(t);
    return out;
  }

  function render() {
    svg.setAttribute("width", width);
    document.getElementById("plot-clip-rect").setAttribute("width", plotWidth());
    Array.prototype.forEach.call(svg.querySelectorAll("rect.lane"), function (r) {
      r.setAttribute("width", width);
    });
    var labels = 0;
    labelLayer.textContent = "";
    rects.forEach(function (rect, i) {
      var b = data.bars[i], x0 = x(b[1]), x1 = x(b[1] + b[2]);
      rect.setAttribute("x", x0.toFixed(2));
      rect.setAttribute("width", Math.max(x1 - x0, 1).toFixed(2));
      var name = data.kernels[b[3]].short + (b[4] === null ? "" : " #" + b[4]) +
        (b[9] === null || b[9] === undefined ? "" : " i" + b[9]);
      var visible = x1 > L.left && x0 < width - L.right;
      if (visible && labels < LABEL_LIMIT && x1 - x0 >= 7 * name.length + 6) {
        labels++;
        labelLayer.appendChild(el("text", { x: (Math.max(x0, L.left) + 3).toFixed(1),
          y: (mid(b[0]) + 4).toFixed(1), fill: textColour(data.kernels[b[3]].colour) }, name));
      }
    });
    flows.forEach(function (path, j) {
      var a = data.arrows[j];
      path.setAttribute("d", flowPath(x(a[1]), mid(a[0]), x(a[3]), mid(a[2])));
    });
    groupPaths.forEach(function (path, g) {
      var members = data.groups[g], d = [];
      for (var k = 0; k + 1 < members.length; k++) {
        var a = data.bars[members[k]], b = data.bars[members[k + 1]];
        d.push("M" + x(a[1] + a[2] / 2).toFixed(1) + "," + (mid(a[0]) + L.bar / 2).toFixed(1) +
               " L" + x(b[1] + b[2] / 2).toFixed(1) + "," + (mid(b[0]) - L.bar / 2).toFixed(1));
      }
      path.setAttribute("d", d.join(" "));
    });
    critPaths.forEach(function (path, k) {
      var u = data.bars[data.critical[k]], v = data.bars[data.critical[k + 1]];
      path.setAttribute("d", "M" + x(u[1] + u[2]).toFixed(1) + "," + mid(u[0]).toFixed(1) +
        " L" + x(v[1]).toFixed(1) + "," + mid(v[0]).toFixed(1));
    });
    axisLayer.textContent = "";
    var height = data.height;
    ticks().forEach(function (t) {
      var px = x(t);
      axisLayer.appendChild(el("line", { "class": "tick", x1: px.toFixed(1), x2: px.toFixed(1),
        y1: L.axis - 6, y2: height }));
      axisLayer.appendChild(el("text", { "class": "tick-label", x: (px + 3).toFixed(1),
        y: L.axis - 10 }, Math.abs(t) < 1e-9 ? "0" : fmt(t)));
    });
    document.getElementById("window").textContent =
      "showing " + fmt(Math.max(view.t0, 0)) + " \u2013 " + fmt(view.t1);
  }

  function setView(t0, t1) {
    var full = data.t1 - data.t0, span = Math.max(t1 - t0, MIN_SPAN);
    if (span >= full) { t0 = data.t0; span = full; }
    t0 = Math.min(Math.max(t0, data.t0), data.t1 - span);
    view.t0 = t0; view.t1 = t0 + span;
    render();
  }

  function zoom(factor, centre) {
    if (centre === undefined) centre = (view.t0 + view.t1) / 2;
    setView(centre - (centre - view.t0) * factor, centre + (view.t1 - centre) * factor);
  }

  function describe(i) {
    var b = data.bars[i], k = data.kernels[b[3]], lane = data.lanes[b[0]], rows = [];
    rows.push(["task", b[4] === null ? "-" : "#" + b[4]]);
    rows.push(["kernel", k.name]);
    if (data.locs[b[5]]) rows.push(["called at", data.locs[b[5]]]);
    rows.push(["worker", (data.headers.length ? lane.process + " " : "") + lane.name]);
    rows.push(["start", fmt(b[1])]);
    rows.push(["duration", fmt(b[2])]);
    if (b[6] !== null && b[6] !== undefined)
      rows.push(["group", b[6] + (b[8] ? ", member " + b[7] + " of " + b[8] : "")]);
    if (b[9] !== null && b[9] !== undefined) rows.push(["iteration", String(b[9])]);
    if (b[10]) for (var key in b[10]) rows.push([key, JSON.stringify(b[10][key])]);
    return rows;
  }

  function showTooltip(i, clientX, clientY) {
    tooltip.textContent = "";
    describe(i).forEach(function (row) {
      var line = document.createElement("div"), key = document.createElement("b");
      key.textContent = row[0] + " ";
      line.appendChild(key);
      line.appendChild(document.createTextNode(row[1]));
      tooltip.appendChild(line);
    });
    tooltip.hidden = false;
    var w = tooltip.offsetWidth, h = tooltip.offsetHeight;
    var left = clientX + 14, top = clientY + 14;
    if (left + w > window.innerWidth - 4) left = Math.max(4, clientX - w - 14);
    if (top + h > window.innerHeight - 4) top = Math.max(4, clientY - h - 14);
    tooltip.style.left = left + "px";
    tooltip.style.top = top + "px";
  }

  function highlight(i) {
    svg.classList.toggle("focus", i !== null);
    rects.forEach(function (r) { r.classList.remove("hot"); });
    flows.forEach(function (p) { p.classList.remove("hot"); });
    if (i === null) return;
    var b = data.bars[i], members = [i];
    data.groups.forEach(function (g) { if (g.indexOf(i) >= 0) members = g; });
    members.forEach(function (m) { rects[m].classList.add("hot"); });
    data.arrows.forEach(function (a, j) {
      if (b[4] !== null && (a[5] === b[4] || a[6] === b[4])) flows[j].classList.add("hot");
    });
  }

  function barIndex(target) {
    return target && target.classList && target.classList.contains("task") ?
      Number(target.getAttribute("data-i")) : null;
  }

  var drag = null;
  svg.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    var rect = svg.getBoundingClientRect();
    var factor = Math.exp((ev.deltaY || ev.deltaX) * 0.002);
    zoom(factor, tAt(ev.clientX - rect.left));
  }, { passive: false });
  svg.addEventListener("mousedown", function (ev) {
    drag = { x: ev.clientX, t0: view.t0, t1: view.t1, moved: false };
  });
  window.addEventListener("mousemove", function (ev) {
    if (drag) {
      var dx = ev.clientX - drag.x;
      if (Math.abs(dx) > 3) drag.moved = true;
      if (drag.moved) {
        var dt = dx / plotWidth() * (drag.t1 - drag.t0);
        setView(drag.t0 - dt, drag.t1 - dt);
        return;
      }
    }
    if (pinned !== null) return;
    var i = barIndex(ev.target);
    if (i === null) { tooltip.hidden = true; highlight(null); return; }
    showTooltip(i, ev.clientX, ev.clientY);
    highlight(i);
  });
  window.addEventListener("mouseup", function (ev) {
    var moved = drag && drag.moved;
    drag = null;
    if (moved || !svg.contains(ev.target)) return;
    var i = barIndex(ev.target);
    pinned = i;
    if (i === null) { tooltip.hidden = true; highlight(null); return; }
    showTooltip(i, ev.clientX, ev.clientY);
    highlight(i);
  });
  window.addEventListener("keydown", function (ev) {
    var span = view.t1 - view.t0;
    if (ev.key === "+" || ev.key === "=") zoom(0.5);
    else if (ev.key === "-") zoom(2);
    else if (ev.key === "0") setView(data.t0, data.t1);
    else if (ev.key === "ArrowLeft") setView(view.t0 - span / 5, view.t1 - span / 5);
    else if (ev.key === "ArrowRight") setView(view.t0 + span / 5, view.t1 + span / 5);
    else if (ev.key === "Escape") { pinned = null; tooltip.hidden = true; highlight(null); }
  });
  document.getElementById("zoom-in").onclick = function () { zoom(0.5); };
  document.getElementById("zoom-out").onclick = function () { zoom(2); };
  document.getElementById("zoom-reset").onclick = function () { setView(data.t0, data.t1); };
  [["show-arrows", "hide-arrows"], ["show-groups", "hide-groups"],
   ["show-critical", "hide-critical"]].forEach(function (pair) {
    document.getElementById(pair[0]).onchange = function (ev) {
      svg.classList.toggle(pair[1], !ev.target.checked);
    };
  });

  function fit() {
    var w = Math.max(600, Math.floor(chart.clientWidth || L.width));
    if (w !== width) { width = w; render(); }
  }
  window.addEventListener("resize", fit);

  /* FILE.html#t=START,END opens on that window (microseconds); #task=ID (also after &) opens
     with that task's details pinned, as a click would. */
  var params = {};
  window.location.hash.replace(/^#/, "").split("&").forEach(function (part) {
    var eq = part.indexOf("=");
    if (eq > 0) params[part.slice(0, eq)] = part.slice(eq + 1);
  });
  width = Math.max(600, Math.floor(chart.clientWidth || L.width));
  var asked = /^([0-9.eE+-]+),([0-9.eE+-]+)$/.exec(params.t || "");
  if (asked) setView(Number(asked[1]), Number(asked[2]));
  else render();
  if (params.task !== undefined) {
    var wanted = data.bars.findIndex(function (b) { return String(b[4]) === params.task; });
    if (wanted >= 0) {
      var bar = data.bars[wanted], span = view.t1 - view.t0;
      if (bar[1] + bar[2] < view.t0 || bar[1] > view.t1)   /* bring it into view */
        setView(bar[1] + bar[2] / 2 - span / 2, bar[1] + bar[2] / 2 + span / 2);
      var box = rects[wanted].getBoundingClientRect();
      pinned = wanted;
      showTooltip(wanted, box.left + box.width / 2, box.top + box.height / 2);
      highlight(wanted);
    }
  }
  document.documentElement.setAttribute("data-rendered", String(rects.length));
})();
