/*
 * edge-mcepl live lab dashboard (browser side).
 *
 * Plain JS, no build step. Data comes from:
 *   GET api/stream  Server-Sent Events: "snapshot" (full state, REPLACES the
 *                   client state) then "patch" events (partial state, MERGED).
 *   GET api/state   the full state; only used as a fallback when no snapshot
 *                   has arrived over the stream shortly after load.
 *
 * Merge rules (see the data contract):
 *   lab       shallow merge          topology  replace
 *   devices   per agent, shallow     points    append; same (agent, round) replaces
 *   traffic   replace                events    append
 *
 * All text from the server is inserted with textContent / setAttribute only.
 */
(function () {
  "use strict";

  var STATES = ["online", "offline", "done", "unknown"];
  var MAX_EVENTS_SHOWN = 200;
  var MAX_EVENTS_KEPT = 1000;
  var CHART_MIN_INTERVAL_MS = 250; // charts redraw at most ~4 times a second
  var CHART_HEIGHT = 230;
  var STATE_FALLBACK_MS = 2000;
  var SVG_NS = "http://www.w3.org/2000/svg";
  var DASH = "—";

  // ------------------------------------------------------------------ helpers

  function $(sel) { return document.querySelector(sel); }

  function isObj(v) { return v !== null && typeof v === "object" && !Array.isArray(v); }

  function num(v) {
    // a finite number, or null (accepts numeric strings, rejects booleans)
    if (typeof v === "number") return isFinite(v) ? v : null;
    if (typeof v === "string" && v.trim() !== "") {
      var n = Number(v);
      return isFinite(n) ? n : null;
    }
    return null;
  }

  function fixed(v, digits) {
    var n = num(v);
    return n === null ? DASH : n.toFixed(digits);
  }

  function text(v) {
    if (v === null || v === undefined || v === "") return DASH;
    return String(v);
  }

  function humanBytes(v) {
    var n = num(v);
    if (n === null) return DASH;
    var sign = n < 0 ? "-" : "";
    n = Math.abs(n);
    if (n < 1000) return sign + Math.round(n) + " B";
    var units = ["kB", "MB", "GB", "TB"];
    var i = -1;
    do { n /= 1000; i++; } while (n >= 1000 && i < units.length - 1);
    var digits = n < 10 ? 2 : 1;
    return sign + n.toFixed(digits) + " " + units[i];
  }

  function agentSort(a, b) {
    var na = Number(a), nb = Number(b);
    var fa = isFinite(na), fb = isFinite(nb);
    if (fa && fb) return na - nb;
    if (fa) return -1;
    if (fb) return 1;
    return String(a) < String(b) ? -1 : String(a) > String(b) ? 1 : 0;
  }

  function stateOf(dev) {
    var s = dev && dev.state;
    return STATES.indexOf(s) >= 0 ? s : "unknown";
  }

  function pad2(n) { return n < 10 ? "0" + n : String(n); }

  function clockTime(unixSeconds) {
    var t = num(unixSeconds);
    if (t === null) return DASH;
    var d = new Date(t * 1000);
    return pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + ":" + pad2(d.getSeconds());
  }

  function agoText(seconds) {
    if (seconds === null) return DASH;
    var s = Math.max(0, Math.round(seconds));
    if (s < 120) return "seen " + s + "s ago";
    if (s < 7200) return "seen " + Math.floor(s / 60) + "m ago";
    if (s < 172800) return "seen " + Math.floor(s / 3600) + "h ago";
    return "seen " + Math.floor(s / 86400) + "d ago";
  }

  function agentColor(id, alpha) {
    var n = Number(id);
    if (!isFinite(n)) {
      n = 0;
      var s = String(id);
      for (var i = 0; i < s.length; i++) n = (n * 31 + s.charCodeAt(i)) % 9973;
    }
    var hue = (n * 137.508 + 210) % 360;
    return "hsla(" + hue.toFixed(1) + ", 62%, 46%, " + (alpha === undefined ? 1 : alpha) + ")";
  }

  function el(tag, className, content) {
    var e = document.createElement(tag);
    if (className) e.className = className;
    if (content !== undefined && content !== null) e.textContent = String(content);
    return e;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function median(values) {
    if (!values.length) return null;
    var s = values.slice().sort(function (a, b) { return a - b; });
    var m = s.length >> 1;
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
  }

  // ------------------------------------------------------------------ state

  function emptyState() {
    return {
      lab: {},
      topology: { edges: [] },
      devices: {},          // id (string) -> device object
      points: new Map(),    // agent id (string) -> Map(round -> point)
      traffic: {},
      events: [],
      eventsTotal: 0,                       // events appended since the last snapshot
      eventsVersion: (state ? state.eventsVersion + 1 : 0)  // bumped by each snapshot
    };
  }

  var state = null;
  state = emptyState();
  var clockOffset = 0;      // browser seconds minus server seconds
  var snapshotSeen = false;

  var dirty = {
    header: true, rows: new Set(), allRows: true, table: true,
    charts: true, topology: true, events: true
  };

  function markAllDirty() {
    dirty.header = dirty.allRows = dirty.table = dirty.charts = dirty.topology = dirty.events = true;
  }

  function serverNow() { return Date.now() / 1000 - clockOffset; }

  function applySnapshot(data) {
    state = emptyState();
    markAllDirty();
    mergePatch(data);
  }

  function mergePatch(p) {
    if (!isObj(p)) return;

    if (isObj(p.lab)) {
      Object.assign(state.lab, p.lab);
      var st = num(p.lab.server_time);
      if (st !== null) clockOffset = Date.now() / 1000 - st;
      dirty.header = true;
    }

    if ("topology" in p) {
      state.topology = isObj(p.topology) ? p.topology : { edges: [] };
      dirty.topology = true;
    }

    if (isObj(p.devices)) {
      Object.keys(p.devices).forEach(function (id) {
        var d = p.devices[id];
        if (d === null) {
          if (id in state.devices) { delete state.devices[id]; dirty.table = true; }
        } else if (isObj(d)) {
          if (!(id in state.devices)) { state.devices[id] = {}; dirty.table = true; }
          Object.assign(state.devices[id], d);
          dirty.rows.add(id);
        }
      });
      dirty.table = dirty.header = dirty.topology = true;
    }

    if (Array.isArray(p.points)) {
      p.points.forEach(function (pt) {
        if (!isObj(pt)) return;
        var r = num(pt.round);
        if (r === null || pt.agent === null || pt.agent === undefined) return;
        var a = String(pt.agent);
        var m = state.points.get(a);
        if (!m) { m = new Map(); state.points.set(a, m); }
        m.set(r, pt);
      });
      dirty.charts = true;
    }

    if ("traffic" in p) {
      state.traffic = isObj(p.traffic) ? p.traffic : {};
      dirty.header = true;
    }

    if (Array.isArray(p.events)) {
      p.events.forEach(function (ev) { if (isObj(ev)) { state.events.push(ev); state.eventsTotal++; } });
      if (state.events.length > MAX_EVENTS_KEPT) {
        state.events.splice(0, state.events.length - MAX_EVENTS_KEPT);
      }
      dirty.events = true;
    }

    scheduleRender();
  }

  // ------------------------------------------------------------------ scheduling

  var renderPending = false;
  var renderFallback = null;
  var chartTimer = null;
  var lastChartDraw = 0;

  function scheduleRender() {
    if (renderPending) return;
    renderPending = true;
    requestAnimationFrame(render);
    // rAF does not fire in hidden tabs; keep the DOM current anyway.
    renderFallback = setTimeout(render, 150);
  }

  function guarded(name, fn) {
    try { fn(); } catch (err) { console.error("dashboard: rendering " + name + " failed", err); }
  }

  function render() {
    if (!renderPending) return;
    renderPending = false;
    clearTimeout(renderFallback);

    if (dirty.header) { dirty.header = false; guarded("header", renderHeader); }
    if (dirty.table || dirty.allRows || dirty.rows.size) guarded("table", renderTable);
    if (dirty.topology) { dirty.topology = false; guarded("topology", renderTopology); }
    if (dirty.events) { dirty.events = false; guarded("events", renderEvents); }
    if (dirty.charts) scheduleCharts();
  }

  function scheduleCharts() {
    if (chartTimer !== null) return;
    var wait = Math.max(0, CHART_MIN_INTERVAL_MS - (Date.now() - lastChartDraw));
    chartTimer = setTimeout(function () {
      chartTimer = null;
      requestAnimationFrame(function () {
        if (!dirty.charts) return;
        dirty.charts = false;
        lastChartDraw = Date.now();
        guarded("charts", renderCharts);
      });
      // a hidden tab never runs rAF: draw anyway, at most once a second
      setTimeout(function () {
        if (dirty.charts && document.hidden) {
          dirty.charts = false;
          lastChartDraw = Date.now();
          guarded("charts", renderCharts);
        }
      }, 1000);
    }, wait);
  }

  // ------------------------------------------------------------------ header

  function meanAccuracy() {
    // the largest eval_round E held by any device; mean accuracy over the
    // devices whose eval_round == E
    var E = null;
    Object.keys(state.devices).forEach(function (id) {
      var d = state.devices[id];
      var e = num(d.eval_round), a = num(d.accuracy);
      if (e !== null && a !== null && (E === null || e > E)) E = e;
    });
    if (E === null) {
      // accuracies without an eval_round: plain mean of what there is
      var plain = [];
      Object.keys(state.devices).forEach(function (id) {
        var a = num(state.devices[id].accuracy);
        if (a !== null && num(state.devices[id].eval_round) === null) plain.push(a);
      });
      if (!plain.length) return null;
      return { mean: plain.reduce(function (s, v) { return s + v; }, 0) / plain.length, round: null, n: plain.length };
    }
    var sum = 0, n = 0;
    Object.keys(state.devices).forEach(function (id) {
      var d = state.devices[id];
      var a = num(d.accuracy);
      if (num(d.eval_round) === E && a !== null) { sum += a; n++; }
    });
    return { mean: sum / n, round: E, n: n };
  }

  function setText(sel, value) {
    var node = $(sel);
    if (node) node.textContent = value;
  }

  function renderHeader() {
    var lab = state.lab;
    setText("#lab-name", text(lab.name));
    document.title = (lab.name ? String(lab.name) + " · " : "") + "edge-mcepl lab";

    var mode = $("#lab-mode");
    mode.className = "pill";
    if (lab.mode === "live") { mode.textContent = "live"; mode.classList.add("mode-live"); }
    else if (lab.mode === "run") { mode.textContent = "finished run"; mode.classList.add("mode-run"); }
    else mode.textContent = text(lab.mode);
    mode.hidden = lab.mode === undefined || lab.mode === null || lab.mode === "";

    setText("#run-id", text(lab.run_id));
    setText("#lab-model", text(lab.model));
    setText("#lab-dataset", text(lab.dataset));
    setText("#lab-algorithm", text(lab.algorithm));
    setText("#lab-where", text(lab.where));

    // round counter: highest device round / configured rounds
    var maxRound = null;
    var counts = { online: 0, offline: 0, done: 0, unknown: 0 };
    var ids = Object.keys(state.devices);
    ids.forEach(function (id) {
      var d = state.devices[id];
      var r = num(d.round);
      if (r !== null && (maxRound === null || r > maxRound)) maxRound = r;
      counts[stateOf(d)]++;
    });
    var rounds = num(lab.rounds);
    // no round yet shows 0 so the first token is always an integer
    setText("#round-counter", (maxRound === null ? "0" : String(Math.round(maxRound))) +
      " / " + (rounds === null ? DASH : String(Math.round(rounds))));

    // mean accuracy: "0.8125" first, then " at round E (n agents)"
    var acc = $("#mean-accuracy");
    clear(acc);
    var m = meanAccuracy();
    if (!m) acc.textContent = DASH;
    else {
      acc.appendChild(document.createTextNode(m.mean.toFixed(4)));
      var suffix = m.round === null ? "" : " at round " + Math.round(m.round);
      suffix += " (" + m.n + (m.n === 1 ? " agent)" : " agents)");
      acc.appendChild(el("small", null, suffix));
    }

    // agents: online / offline / done of configured
    var agentsCfg = num(lab.agents);
    var summary = $("#agent-summary");
    clear(summary);
    if (!ids.length && agentsCfg === null) summary.textContent = DASH;
    else {
      summary.appendChild(document.createTextNode(counts.online + " online"));
      var parts = [];
      if (counts.offline) parts.push(counts.offline + " offline");
      if (counts.done) parts.push(counts.done + " done");
      if (counts.unknown) parts.push(counts.unknown + " unknown");
      var tail = (parts.length ? " · " + parts.join(" · ") : "") +
        " / " + (agentsCfg === null ? ids.length : Math.round(agentsCfg));
      summary.appendChild(el("small", null, tail));
    }

    // broker connection: live mode only
    var brokerKpi = $("#broker-kpi");
    var broker = $("#broker");
    if (lab.mode === "live") {
      brokerKpi.hidden = false;
      broker.className = "kpi-value";
      if (lab.broker_connected === true) { broker.textContent = "connected"; broker.classList.add("broker-up"); }
      else if (lab.broker_connected === false) { broker.textContent = "disconnected"; broker.classList.add("broker-down"); }
      else broker.textContent = DASH;
    } else {
      brokerKpi.hidden = true;
    }

    // broker traffic totals
    var tr = state.traffic || {};
    var trafficEl = $("#traffic");
    clear(trafficEl);
    var hasTraffic = num(tr.bytes_received) !== null || num(tr.bytes_sent) !== null || num(tr.clients) !== null;
    if (!hasTraffic) trafficEl.textContent = DASH;
    else {
      trafficEl.appendChild(document.createTextNode(
        "in " + humanBytes(tr.bytes_received) + " · out " + humanBytes(tr.bytes_sent)));
      var c = num(tr.clients);
      if (c !== null) trafficEl.appendChild(el("small", null, " · " + Math.round(c) + (c === 1 ? " client" : " clients")));
    }
    trafficEl.title = "broker totals: bytes received by the broker / bytes sent by the broker";
  }

  // ------------------------------------------------------------------ device table

  var COLS = ["agent", "profile", "retention", "state", "round", "round-seconds",
    "gather-seconds", "sent", "received", "rejected", "accuracy"];
  var NUM_COLS = { agent: 1, retention: 1, round: 1, "round-seconds": 1, "gather-seconds": 1, sent: 1, received: 1, accuracy: 1 };
  var rowEls = new Map();   // id -> <tr>

  function buildRow(id) {
    var tr = document.createElement("tr");
    tr.setAttribute("data-agent", id);
    COLS.forEach(function (c) {
      var td = el("td", c + (NUM_COLS[c] ? " num" : ""));
      tr.appendChild(td);
    });
    return tr;
  }

  function rejectedText(rej) {
    if (!isObj(rej)) {
      var n = num(rej);
      return { text: n === null ? "0" : String(n), any: !!n };
    }
    var parts = [];
    Object.keys(rej).forEach(function (reason) {
      var n = num(rej[reason]);
      if (n) parts.push(reason + " " + n);
    });
    return { text: parts.length ? parts.join(" · ") : "0", any: parts.length > 0 };
  }

  function seenText(dev) {
    var ls = num(dev.last_seen);
    return ls === null ? DASH : agoText(serverNow() - ls);
  }

  function fillRow(tr, id, d) {
    var st = stateOf(d);
    tr.setAttribute("data-agent", id);
    tr.setAttribute("data-state", st);
    var c = tr.children;

    c[0].textContent = text(d.agent !== undefined && d.agent !== null ? d.agent : id);
    c[1].textContent = text(d.profile);
    // conv retention; an ordered width below 1 (a capability-sized subnetwork) follows it
    var width = num(d.width);
    c[2].textContent = fixed(d.retention, 2) + (width !== null && width < 1 ? " · width " + fixed(width, 2) : "");

    clear(c[3]);
    c[3].appendChild(el("span", "badge state-" + st, st));
    c[3].appendChild(document.createTextNode(" "));
    c[3].appendChild(el("small", "seen", seenText(d)));

    var r = num(d.round);
    c[4].textContent = r === null ? DASH : String(Math.round(r));
    c[5].textContent = fixed(d.round_seconds, 2);
    c[6].textContent = fixed(d.gather_seconds, 2);
    c[7].textContent = humanBytes(d.bytes_sent);
    c[8].textContent = humanBytes(d.bytes_received);

    var rej = rejectedText(d.rejected);
    c[9].textContent = rej.text;
    c[9].classList.toggle("has-rejects", rej.any);

    clear(c[10]);
    var acc = num(d.accuracy);
    if (acc === null) c[10].textContent = DASH;
    else {
      c[10].appendChild(document.createTextNode(acc.toFixed(4)));
      var er = num(d.eval_round);
      if (er !== null) {
        c[10].appendChild(document.createTextNode(" "));
        var sm = el("small", "eval-round", "r" + Math.round(er));
        sm.title = "evaluated at round " + Math.round(er);
        c[10].appendChild(sm);
      }
    }
    var ls = num(d.last_seen);
    c[3].title = ls === null ? "never seen" : "last seen " + new Date((ls + clockOffset) * 1000).toLocaleString();
  }

  function renderTable() {
    var tbody = $("#devices tbody");
    var ids = Object.keys(state.devices).sort(agentSort);
    var all = dirty.allRows;
    var changed = dirty.rows;
    dirty.rows = new Set();
    dirty.allRows = dirty.table = false;

    if (!ids.length) {
      rowEls.clear();
      clear(tbody);
      var tr = el("tr", "placeholder");
      var td = el("td", null, "waiting for the lab config / first status");
      td.colSpan = COLS.length;
      tr.appendChild(td);
      tbody.appendChild(tr);
      return;
    }

    var ph = tbody.querySelector("tr.placeholder");
    if (ph) ph.remove();
    rowEls.forEach(function (row, id) {
      if (!(id in state.devices)) { row.remove(); rowEls.delete(id); }
    });

    var now = Date.now();
    ids.forEach(function (id, i) {
      var row = rowEls.get(id);
      var fresh = false;
      if (!row) { row = buildRow(id); rowEls.set(id, row); fresh = true; }
      if (fresh || all || changed.has(id)) {
        fillRow(row, id, state.devices[id]);
        row.setAttribute("data-rendered-at", String(now));
      }
      if (tbody.children[i] !== row) tbody.insertBefore(row, tbody.children[i] || null);
    });

    markStraggler(ids);
  }

  function markStraggler(ids) {
    var vals = [], maxId = null, maxVal = -Infinity;
    ids.forEach(function (id) {
      var v = num(state.devices[id].round_seconds);
      if (v === null) return;
      vals.push(v);
      if (v > maxVal) { maxVal = v; maxId = id; }
    });
    var med = median(vals);
    var straggler = (vals.length >= 2 && med !== null && maxVal > 1.5 * med) ? maxId : null;
    rowEls.forEach(function (row, id) {
      var on = id === straggler;
      row.classList.toggle("straggler", on);
      if (on) row.title = "straggler: last round " + maxVal.toFixed(2) + " s, median " + med.toFixed(2) + " s";
      else row.removeAttribute("title");
    });
  }

  function tickSeen() {
    rowEls.forEach(function (row, id) {
      var d = state.devices[id];
      if (!d) return;
      var s = row.querySelector("small.seen");
      if (s) s.textContent = seenText(d);
    });
  }

  // ------------------------------------------------------------------ charts

  var charts = {};   // key -> {u, sig, el}

  function chartWidth(container) {
    return Math.max(200, Math.floor(container.clientWidth || container.getBoundingClientRect().width || 400));
  }

  function baseOpts(container, yLabel, yValues) {
    var yAxis = { label: yLabel, size: 62, labelSize: 16, grid: { stroke: "#eef1f5" }, ticks: { stroke: "#e2e6ec" } };
    if (yValues) yAxis.values = yValues;
    return {
      width: chartWidth(container),
      height: CHART_HEIGHT,
      scales: { x: { time: false } },
      cursor: { drag: { x: false, y: false } },
      legend: { show: true, live: true },
      axes: [
        { label: "round", size: 40, labelSize: 16, grid: { stroke: "#eef1f5" }, ticks: { stroke: "#e2e6ec" } },
        yAxis
      ],
      series: [{ label: "round", value: function (u, v) { return v === null || v === undefined ? DASH : String(v); } }]
    };
  }

  function agentSeries(agent, label, legendValue, width, alpha, show) {
    return {
      label: label,
      stroke: agentColor(agent, alpha),
      width: width,
      spanGaps: true,
      show: show,
      points: { show: false },
      value: legendValue
    };
  }

  function setChart(key, container, sig, makeOpts, data, count) {
    container.setAttribute("data-points", String(count));
    var c = charts[key];
    var empty = !data[0].length;
    var placeholder = container.querySelector(".chart-empty");
    if (empty) {
      if (c) { c.u.destroy(); delete charts[key]; }
      if (placeholder) placeholder.hidden = false;
      return;
    }
    if (placeholder) placeholder.hidden = true;
    if (c && c.sig !== sig) { c.u.destroy(); delete charts[key]; c = null; }
    if (!c) {
      var u = new uPlot(makeOpts(), data, container);
      charts[key] = { u: u, sig: sig, el: container };
    } else {
      c.u.setData(data);
    }
  }

  function fmt4(u, v) { return v === null || v === undefined ? DASH : v.toFixed(4); }
  function fmt2s(u, v) { return v === null || v === undefined ? DASH : v.toFixed(2) + " s"; }
  function fmtBytes(u, v) { return v === null || v === undefined ? DASH : humanBytes(v); }

  function renderCharts() {
    var agents = Array.from(state.points.keys()).sort(agentSort);
    var roundSet = new Set();
    state.points.forEach(function (m) { m.forEach(function (_p, r) { roundSet.add(r); }); });
    var xs = Array.from(roundSet).sort(function (a, b) { return a - b; });
    var index = new Map();
    xs.forEach(function (r, i) { index.set(r, i); });

    var nPoints = 0, nAcc = 0;
    var acc = [], rt = [], sent = [], recv = [];
    agents.forEach(function (a) {
      var A = new Array(xs.length).fill(null);
      var T = new Array(xs.length).fill(null);
      var S = new Array(xs.length).fill(null);
      var R = new Array(xs.length).fill(null);
      state.points.get(a).forEach(function (p, r) {
        var i = index.get(r);
        nPoints++;
        var v = num(p.accuracy);
        if (v !== null) { A[i] = v; nAcc++; }
        T[i] = num(p.round_seconds);
        S[i] = num(p.bytes_sent);
        R[i] = num(p.bytes_received);
      });
      acc.push(A); rt.push(T); sent.push(S); recv.push(R);
    });

    // mean accuracy per round over the agents that have one
    var mean = xs.map(function (_r, i) {
      var s = 0, n = 0;
      for (var k = 0; k < acc.length; k++) if (acc[k][i] !== null) { s += acc[k][i]; n++; }
      return n ? s / n : null;
    });

    // cumulative totals: per round, sum over agents of the latest value at or before it
    function carrySum(rows) {
      var total = new Array(xs.length).fill(0);
      var any = false;
      rows.forEach(function (row) {
        var last = null;
        for (var i = 0; i < xs.length; i++) {
          if (row[i] !== null) last = row[i];
          if (last !== null) { total[i] += last; any = true; }
        }
      });
      return any ? total : total.map(function () { return null; });
    }
    var totalSent = carrySum(sent);
    var totalRecv = carrySum(recv);

    var sig = agents.join(",");

    // accuracy
    var accEl = $("#accuracy-chart");
    var accAny = nAcc > 0;
    setChart("accuracy", accEl, sig, function () {
      var o = baseOpts(accEl, "accuracy", function (u, vals) { return vals.map(function (v) { return v.toFixed(2); }); });
      o.scales.y = { range: [0, 1] };
      agents.forEach(function (a) { o.series.push(agentSeries(a, "agent " + a, fmt4, 1, 0.7, true)); });
      o.series.push({ label: "mean", stroke: "#1d2430", width: 3, spanGaps: true, points: { show: false }, value: fmt4 });
      return o;
    }, accAny ? [xs].concat(acc, [mean]) : [[]], nAcc);

    // cumulative bytes: totals over agents (sent thick, received dashed)
    var bytesEl = $("#bytes-chart");
    setChart("bytes", bytesEl, "totals", function () {
      var o = baseOpts(bytesEl, "bytes", function (u, vals) { return vals.map(humanBytes); });
      o.axes[1].size = 70;
      o.series.push({ label: "total sent", stroke: "#2f6fdb", width: 3, spanGaps: true, points: { show: false }, value: fmtBytes,
        fill: "rgba(47, 111, 219, 0.08)" });
      o.series.push({ label: "total received", stroke: "#1f9d55", width: 2, dash: [6, 4], spanGaps: true, points: { show: false }, value: fmtBytes });
      return o;
    }, [xs, totalSent, totalRecv], nPoints);

    // round time per agent
    var rtEl = $("#round-time-chart");
    setChart("roundTime", rtEl, sig, function () {
      var o = baseOpts(rtEl, "seconds", null);
      o.scales.y = { range: function (u, min, max) { return [0, max === null || !isFinite(max) || max <= 0 ? 1 : max * 1.08]; } };
      agents.forEach(function (a) { o.series.push(agentSeries(a, "agent " + a, fmt2s, 1.5, 0.9, true)); });
      return o;
    }, [xs].concat(rt), nPoints);
  }

  function resizeCharts() {
    Object.keys(charts).forEach(function (k) {
      var c = charts[k];
      var w = chartWidth(c.el);
      if (Math.abs(w - c.u.width) > 1) c.u.setSize({ width: w, height: CHART_HEIGHT });
    });
  }

  // ------------------------------------------------------------------ topology

  function svg(tag, attrs) {
    var e = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, String(attrs[k])); });
    return e;
  }

  var topoKey = null;        // layout signature (ids + edges) of what is drawn
  var topoNodes = new Map(); // id -> {circle, title}

  function renderTopology() {
    var root = $("#topology");
    var edges = Array.isArray(state.topology && state.topology.edges) ? state.topology.edges : [];
    var idSet = new Set(Object.keys(state.devices));
    var goodEdges = [];
    edges.forEach(function (e) {
      if (!Array.isArray(e) || e.length < 2) return;
      if (e[0] === null || e[0] === undefined || e[1] === null || e[1] === undefined) return;
      var a = String(e[0]), b = String(e[1]);
      idSet.add(a); idSet.add(b);
      goodEdges.push([a, b]);
    });
    var ids = Array.from(idSet).sort(agentSort);
    var key = JSON.stringify([ids, goodEdges]);

    if (key !== topoKey) {
      // layout changed: redraw everything
      topoKey = key;
      topoNodes = new Map();
      clear(root);
      if (!ids.length) {
        var t = svg("text", { x: 150, y: 150, "class": "empty" });
        t.textContent = "no agents yet";
        root.appendChild(t);
        return;
      }
      var n = ids.length;
      var nodeR = n <= 12 ? 14 : n <= 24 ? 11 : 8;
      var ringR = n === 1 ? 0 : 150 - nodeR - 8;
      var pos = new Map();
      ids.forEach(function (id, i) {
        var ang = -Math.PI / 2 + (2 * Math.PI * i) / n;
        pos.set(id, [150 + ringR * Math.cos(ang), 150 + ringR * Math.sin(ang)]);
      });
      var gEdges = svg("g", { "class": "edges" });
      goodEdges.forEach(function (e) {
        var p = pos.get(e[0]), q = pos.get(e[1]);
        if (!p || !q || e[0] === e[1]) return;
        gEdges.appendChild(svg("line", {
          "class": "edge", "data-a": e[0], "data-b": e[1],
          x1: p[0].toFixed(1), y1: p[1].toFixed(1), x2: q[0].toFixed(1), y2: q[1].toFixed(1)
        }));
      });
      root.appendChild(gEdges);
      var gNodes = svg("g", { "class": "nodes" });
      ids.forEach(function (id) {
        var p = pos.get(id);
        var g = svg("g", { "class": "node" });
        var c = svg("circle", { "data-agent": id, "class": "state-unknown", cx: p[0].toFixed(1), cy: p[1].toFixed(1), r: nodeR });
        var title = svg("title", {});
        c.appendChild(title);
        var label = svg("text", { "class": "label", x: p[0].toFixed(1), y: p[1].toFixed(1) });
        if (nodeR < 10) label.setAttribute("font-size", "8");
        label.textContent = id;
        g.appendChild(c);
        g.appendChild(label);
        gNodes.appendChild(g);
        topoNodes.set(id, { circle: c, title: title });
      });
      root.appendChild(gNodes);
    }

    // states: update in place (elements stay the same)
    topoNodes.forEach(function (node, id) {
      var d = state.devices[id];
      var st = stateOf(d);
      var cls = "state-" + st;
      if (node.circle.getAttribute("class") !== cls) node.circle.setAttribute("class", cls);
      var tt = "agent " + id + " — " + st + (d && d.profile ? " (" + d.profile + ")" : "");
      if (node.title.textContent !== tt) node.title.textContent = tt;
    });
  }

  // ------------------------------------------------------------------ events

  var eventsShownVersion = -1; // state.eventsVersion the list was built from
  var eventsShownTotal = 0;    // state.eventsTotal already in the list

  function eventItem(ev) {
    var kind = ev.kind === null || ev.kind === undefined ? "unknown" : String(ev.kind);
    var li = el("li");
    li.setAttribute("data-kind", kind);
    var t = num(ev.time);
    var time = el("time", null, clockTime(t));
    if (t !== null) time.setAttribute("datetime", new Date(t * 1000).toISOString());
    li.appendChild(time);
    li.appendChild(el("span", "kind", kind));
    li.appendChild(el("span", "text", text(ev.text)));
    return li;
  }

  function renderEvents() {
    var ol = $("#events");
    var evs = state.events;
    var fresh = state.eventsTotal - eventsShownTotal;  // events appended since the last render
    if (eventsShownVersion !== state.eventsVersion || fresh < 0) {
      clear(ol);
      eventsShownVersion = state.eventsVersion;
      fresh = evs.length;
    }
    eventsShownTotal = state.eventsTotal;
    var empty = ol.querySelector("li.empty");
    if (!evs.length) {
      if (!empty) { clear(ol); ol.appendChild(el("li", "empty", "no events yet")); }
      return;
    }
    if (empty) empty.remove();
    fresh = Math.min(fresh, evs.length, MAX_EVENTS_SHOWN);
    // newest first: the newest new event goes on top
    var frag = document.createDocumentFragment();
    for (var i = evs.length - 1; i >= evs.length - fresh; i--) frag.appendChild(eventItem(evs[i]));
    ol.insertBefore(frag, ol.firstChild);
    while (ol.children.length > MAX_EVENTS_SHOWN) ol.removeChild(ol.lastChild);
  }

  // ------------------------------------------------------------------ connection

  var es = null;
  var retryDelay = 1000;
  var retryTimer = null;

  function showConnection(msg) {
    var c = $("#connection");
    if (msg) { c.textContent = msg; c.hidden = false; }
    else c.hidden = true;
  }

  function parse(ev) {
    try { return JSON.parse(ev.data); }
    catch (err) { console.warn("dashboard: ignoring a malformed " + ev.type + " event"); return null; }
  }

  function connect() {
    retryTimer = null;
    if (typeof EventSource === "undefined") {
      showConnection("this browser has no EventSource — polling");
      poll();
      return;
    }
    es = new EventSource("api/stream");
    es.onopen = function () { retryDelay = 1000; showConnection(null); };
    es.addEventListener("snapshot", function (ev) {
      var data = parse(ev);
      if (data === null) return;
      snapshotSeen = true;
      showConnection(null);
      applySnapshot(data);
    });
    es.addEventListener("patch", function (ev) {
      var data = parse(ev);
      if (data === null) return;
      mergePatch(data);
    });
    es.onerror = function () {
      showConnection("connection lost — reconnecting…");
      if (es.readyState === EventSource.CLOSED) {
        // the browser gave up (e.g. a non-SSE reply): retry by hand, with backoff
        es.close();
        if (retryTimer === null) retryTimer = setTimeout(connect, retryDelay);
        retryDelay = Math.min(retryDelay * 2, 15000);
      }
    };
  }

  function poll() {
    fetch("api/state", { cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (d) { if (d !== null) applySnapshot(d); })
      .catch(function () {})
      .then(function () { setTimeout(poll, 2000); });
  }

  function fallbackFetch() {
    if (snapshotSeen) return;
    fetch("api/state", { cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (d) { if (d !== null && !snapshotSeen) applySnapshot(d); })
      .catch(function () {});
  }

  // ------------------------------------------------------------------ boot

  function boot() {
    scheduleRender();   // empty state: placeholders
    connect();
    setTimeout(fallbackFetch, STATE_FALLBACK_MS);
    setInterval(tickSeen, 1000);
    var resizeTimer = null;
    window.addEventListener("resize", function () {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(resizeCharts, 60);
    });
    if (typeof ResizeObserver !== "undefined") {
      var ro = new ResizeObserver(function () { requestAnimationFrame(resizeCharts); });
      ["#accuracy-chart", "#bytes-chart", "#round-time-chart"].forEach(function (s) { ro.observe($(s)); });
    }
  }

  // exposed for debugging from the console only
  window.edgeDashboard = {
    get state() { return state; },
    get clockOffset() { return clockOffset; }
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();
