// ulma's page: one script for the live view (data over a websocket) and the HTML report (data
// embedded in #ulma-data).  Names come from the profiled program: they are only ever set as
// text (d3's .text(), textContent), never as markup.
(function () {
  "use strict";
  const embedded = JSON.parse(document.getElementById("ulma-data").textContent || "null");
  const state = { model: null, raw: null, view: null, sort: "total", desc: true, filter: "", paused: false, zoom: [], ws: null };

  const COLUMNS = [
    { key: "name", label: "function", desc: false, value: (r) => r.name.toLowerCase() },
    { key: "where", label: "file:line", desc: false, value: (r) => r.file + ":" + r.line },
    { key: "calls", label: "calls", desc: true, value: (r) => r.calls + r.resumes },
    { key: "rate", label: "calls/s", desc: true, value: (r) => r.rate || 0, live: true },
    { key: "self", label: "self", desc: true, value: (r) => r.self },
    { key: "total", label: "total", desc: true, value: (r) => r.total },
    { key: "per_call", label: "per call", desc: true, value: (r) => r.per_call || 0 },
    { key: "share", label: "%", desc: true, value: (r) => r.share },
    { key: "split", label: "time split", desc: true, value: (r) => r.total },
  ];

  function fmtNs(ns) {
    if (ns === null || ns === undefined) return "-";
    const a = Math.abs(ns);
    if (a < 1e3) return ns.toFixed(0) + " ns";
    if (a < 1e6) return (ns / 1e3).toFixed(1) + " µs";
    if (a < 1e9) return (ns / 1e6).toFixed(1) + " ms";
    return (ns / 1e9).toFixed(2) + " s";
  }
  function fmtCount(x) {
    if (x === null || x === undefined) return "-";
    for (const [limit, suffix] of [[1e9, "G"], [1e6, "M"], [1e3, "k"]]) {
      if (x >= limit) return (x / limit).toFixed(1) + suffix;
    }
    return x.toFixed(0);
  }
  function shortFile(file) {
    const parts = file.split("/");
    return parts.length > 2 ? parts.slice(-2).join("/") : file;
  }
  function keyOf(n) { return n.name + "\u0000" + n.file + "\u0000" + n.line; }

  // -- header, legend, health ----------------------------------------------------------------

  function drawHeader(m) {
    document.getElementById("title").textContent = "ulma: " + m.title;
    document.title = "ulma: " + m.title;
    const status = document.getElementById("status");
    let text = m.live ? "running" : "report";
    if (m.ended) text = m.returncode === null || m.returncode === undefined ? "ended" : "exited with code " + m.returncode;
    if (m.live && state.closed) text += " (connection closed)";
    if (state.paused) text += ", paused";
    text += " · " + fmtNs(m.wall_ns) + (m.cleared ? " since the last clear" : "");
    status.textContent = text;
    status.classList.toggle("ended", !!m.ended || !!state.closed);
    const legend = document.getElementById("legend");
    legend.textContent = "";
    for (const p of m.parts) {
      const key = document.createElement("span");
      key.className = "key";
      key.style.background = p.color;
      legend.append(key, document.createTextNode(p.name));
    }
  }

  function drawHealth(h) {
    const el = document.getElementById("health");
    if (!h) { el.hidden = true; return; }
    el.hidden = false;
    el.textContent = "";
    const items = [
      ["events/s", fmtCount(h.events_per_s), false],
      ["events", fmtCount(h.events), false],
      ["ring fill", (100 * h.fill).toFixed(0) + " %", h.fill > 0.5],
      ["dropped", String(h.dropped), h.dropped > 0],
      ["lag", h.lag_ns === null ? "-" : fmtNs(h.lag_ns), h.lag_ns !== null && h.lag_ns > 1e8],
      ["monitor CPU", h.cpu_percent === null ? "-" : h.cpu_percent.toFixed(0) + " %", false],
    ];
    for (const [label, value, bad] of items) {
      const span = document.createElement("span");
      const b = document.createElement("b");
      b.textContent = value;
      if (bad) b.className = "bad";
      span.append(label + " ", b);
      el.append(span);
    }
  }

  // -- table ---------------------------------------------------------------------------------

  function drawTable(m) {
    const cols = COLUMNS.filter((c) => m.live || !c.live);
    const head = d3.select("#table thead tr");
    const switches = m.live && !m.fleet; // a collector cannot switch another host's functions off
    const ths = head.selectAll("th").data(switches ? [...cols, { key: "switch", label: "trace" }] : cols);
    ths.join("th")
      .text((c) => c.label)
      .attr("class", (c) => (c.key === state.sort ? "sorted" + (state.desc ? "" : " up") : ""))
      .on("click", (_ev, c) => {
        if (c.key === "switch") return;
        if (state.sort === c.key) state.desc = !state.desc;
        else { state.sort = c.key; state.desc = c.desc; }
        drawTable(state.model);
      });
    const needle = state.filter.toLowerCase();
    const col = COLUMNS.find((c) => c.key === state.sort) || COLUMNS[5];
    const shown = m.functions
      .filter((r) => !needle || r.name.toLowerCase().includes(needle) || (r.file + ":" + r.line).toLowerCase().includes(needle))
      .sort((a, b) => {
        const x = col.value(a), y = col.value(b);
        const order = x < y ? -1 : x > y ? 1 : keyOf(a) < keyOf(b) ? -1 : 1;
        return state.desc ? -order : order;
      })
      .slice(0, 500);
    document.getElementById("table-note").textContent =
      shown.length + " of " + m.functions.length + " functions" + (shown.length === 500 ? " (the first 500)" : "");
    const wall = Math.max(m.wall_ns, 1);
    const tr = d3.select("#table tbody").selectAll("tr").data(shown, keyOf).join("tr")
      .attr("data-name", (r) => r.name);
    tr.selectAll("td").data((r) => (switches ? [...cols, { key: "switch" }] : cols).map((c) => [c.key, r])).join("td")
      .attr("class", ([k]) => ({ name: "name", where: "where", split: "bar" })[k] || null)
      .each(function ([k, r]) { fillCell(this, k, r, m, wall); });
  }

  function fillCell(td, key, r, m, wall) {
    td.textContent = "";
    if (key === "name") {
      td.append(r.name);
      if (r.mark) {
        const mark = document.createElement("span");
        mark.className = "mark";
        mark.textContent = r.mark;
        td.append(mark);
      }
    } else if (key === "where") td.textContent = r.native ? "(C)" : shortFile(r.file) + ":" + r.line;
    else if (key === "calls") td.textContent = r.calls.toLocaleString("en") + (r.resumes ? "+" + r.resumes.toLocaleString("en") + "r" : "");
    else if (key === "rate") td.textContent = r.rate === null ? "-" : fmtCount(r.rate);
    else if (key === "self" || key === "total") td.textContent = fmtNs(r[key]);
    else if (key === "per_call") td.textContent = fmtNs(r.per_call);
    else if (key === "share") td.textContent = r.share.toFixed(1);
    else if (key === "split") td.append(splitBox(r.split, m.parts, (100 * r.total) / wall));
    else if (key === "switch" && !r.native && r.fid) {
      const b = document.createElement("button");
      const off = r.mark === "off" || r.mark === "off…";
      b.textContent = off ? "on" : "off";
      b.title = off ? "trace this function again" : "stop tracing this function (its time goes to its callers)";
      b.disabled = !!m.ended;
      b.addEventListener("click", () => send({ action: "switch", fid: r.fid, off: !off }));
      td.append(b);
    }
  }

  function splitBox(split, parts, percent) {
    const box = document.createElement("div");
    box.className = "box";
    box.style.width = (2 * Math.min(100, Math.max(0, percent))).toFixed(1) + "px"; // td.bar: 200px
    const total = split.reduce((a, b) => a + b, 0) || 1;
    split.forEach((v, i) => {
      const s = document.createElement("span");
      s.style.width = ((100 * v) / total).toFixed(2) + "%";
      s.style.background = parts[i].color;
      s.title = parts[i].name + " " + fmtNs(v);
      box.append(s);
    });
    return box;
  }

  // -- icicle --------------------------------------------------------------------------------

  const ROW = 18;

  function drawFlame(m) {
    document.getElementById("flame-note").textContent = m.flame_note || "";
    const svg = d3.select("#flame-svg");
    const width = svg.node().getBoundingClientRect().width || 1000;
    const root = d3.hierarchy(m.flame)
      .sum((d) => Math.max(0, d.value - (d.children || []).reduce((a, c) => a + c.value, 0)));
    // the zoomed frame is found again by its path of functions, in every new snapshot
    let focus = root;
    for (const key of state.zoom) {
      const next = (focus.children || []).find((c) => keyOf(c.data) === key);
      if (!next) break;
      focus = next;
    }
    d3.partition().size([1, 1])(root);
    const x = d3.scaleLinear().domain([focus.x0, focus.x1]).range([0, width]);
    const ancestors = focus.ancestors().reverse();
    const shown = root.descendants().filter((n) => {
      if (n.depth < focus.depth) return ancestors.includes(n);
      return n.x1 > focus.x0 && n.x0 < focus.x1 && x(n.x1) - x(n.x0) >= 0.5;
    });
    const depth = d3.max(shown, (n) => n.depth) || 0;
    svg.attr("height", (depth + 1) * ROW + 2);
    const g = svg.selectAll("g.frame").data(shown, (n) => n.ancestors().map((a) => keyOf(a.data)).join("\u0001"))
      .join((enter) => {
        const f = enter.append("g").attr("class", "frame");
        f.append("title");
        f.append("g").attr("class", "parts");
        f.append("rect").attr("class", "edge");
        f.append("text").attr("x", 4).attr("y", ROW - 5);
        return f;
      });
    g.attr("data-name", (n) => n.data.name)
      .attr("data-depth", (n) => n.depth)
      .attr("transform", (n) => {
        const left = n.depth < focus.depth ? 0 : x(n.x0);
        return "translate(" + left + "," + n.depth * ROW + ")";
      })
      .on("click", (_ev, n) => {
        state.zoom = n.ancestors().reverse().slice(1).map((a) => keyOf(a.data));
        drawFlame(state.model);
        drawCrumbs(n);
      });
    g.each(function (n) {
      const w = n.depth < focus.depth ? width : Math.max(0, x(Math.min(n.x1, focus.x1)) - x(Math.max(n.x0, focus.x0)));
      const sel = d3.select(this);
      const split = n.data.split;
      const total = split.reduce((a, b) => a + b, 0);
      // the frame drawn as its split: each part as wide as its share of the frame's time
      const sum = total || 1;
      let at = 0;
      sel.select("g.parts").selectAll("rect").data(total ? split : [1]).join("rect")
        .attr("y", 0).attr("height", ROW - 1)
        .attr("x", (v) => { const left = at; at += (w * v) / sum; return left; })
        .attr("width", (v) => (w * v) / sum)
        .attr("fill", (_v, i) => (total ? m.parts[i].color : "#ccc"));
      sel.select("rect.edge").attr("width", w).attr("height", ROW - 1);
      const label = n.depth === 0 ? "all (" + fmtNs(n.data.value) + ")" : n.data.name;
      sel.select("text").text(w > 40 ? fit(label, w) : "");
      const pct = root.data.value ? ((100 * n.data.value) / root.data.value).toFixed(1) : "0";
      sel.select("title").text(n.data.name + (n.data.file ? "  " + n.data.file + ":" + n.data.line : "") +
        "\n" + fmtNs(n.data.value) + " (" + pct + " %)\n" +
        split.map((v, i) => m.parts[i].name + " " + fmtNs(v)).join(", ") + "\nclick to zoom");
    });
    drawCrumbs(focus);
  }

  function fit(text, width) {
    const chars = Math.floor((width - 8) / 6.5);
    return text.length <= chars ? text : chars > 2 ? text.slice(0, chars - 1) + "…" : "";
  }

  function drawCrumbs(focus) {
    const el = document.getElementById("crumbs");
    el.textContent = "";
    if (!focus || focus.depth === 0) { el.textContent = "click a frame to zoom into it"; return; }
    const a = document.createElement("a");
    a.textContent = "reset zoom";
    a.id = "unzoom";
    a.addEventListener("click", () => { state.zoom = []; drawFlame(state.model); });
    el.append(a, " · zoomed into " + focus.ancestors().reverse().slice(1).map((n) => n.data.name).join(" → "));
  }

  // -- timeline ------------------------------------------------------------------------------

  const LANE = 14;

  function drawTimeline(m) {
    const t = m.timeline;
    const svg = d3.select("#timeline-svg");
    svg.selectAll("*").remove();
    document.getElementById("timeline-note").textContent = t ? t.note : "";
    if (!t || !t.threads.length) { svg.attr("height", 4); return; }
    const width = svg.node().getBoundingClientRect().width || 1000;
    const labelW = 150;
    const x = d3.scaleLinear().domain([t.start, t.end]).range([labelW, width - 4]);
    let y = 0;
    const colours = new Map(m.parts.map((p) => [p.name, p.color]));
    for (const th of t.threads) {
      const rows = t.kind === "spans" ? Math.max(1, th.depth) : 2;
      const lane = svg.append("g").attr("class", "lane").attr("data-thread", th.name)
        .attr("transform", "translate(0," + y + ")");
      lane.append("text").attr("x", 2).attr("y", 11).text(fit(th.name, labelW));
      if (t.kind !== "spans") {
        const peak = d3.max(th.samples, (s) => s[1]) || 0;
        lane.append("text").attr("x", 2).attr("y", 11 + LANE).text("peak " + fmtCount(peak) + " events/s");
      }
      lane.append("rect").attr("x", labelW).attr("width", width - labelW - 4).attr("height", rows * LANE)
        .attr("fill", "#f0f0f0");
      if (t.kind === "spans") {
        lane.selectAll("rect.span").data(th.spans).join("rect").attr("class", "span")
          .attr("x", (s) => x(s[0])).attr("width", (s) => Math.max(1, x(s[1]) - x(s[0])))
          .attr("y", (s) => s[3] * LANE).attr("height", LANE - 1)
          .attr("fill", (s) => colours.get(t.functions[s[2]].part) || "#999")
          .append("title").text((s) => t.functions[s[2]].name + "  " + fmtNs(s[1] - s[0]));
        lane.selectAll("text.span").data(th.spans.filter((s) => x(s[1]) - x(s[0]) > 50)).join("text")
          .attr("class", "span").attr("x", (s) => x(s[0]) + 3).attr("y", (s) => s[3] * LANE + 11)
          .text((s) => fit(t.functions[s[2]].name, x(s[1]) - x(s[0])));
      } else {
        const peak = d3.max(th.samples, (s) => s[1]) || 1;
        const h = d3.scaleLinear().domain([0, peak]).range([0, rows * LANE]);
        const step = (t.end - t.start) / Math.max(t.slots, 1);
        lane.selectAll("rect.rate").data(th.samples).join("rect").attr("class", "rate")
          .attr("x", (s) => x(s[0] - step)).attr("width", (s) => Math.max(1, x(s[0]) - x(s[0] - step) - 1))
          .attr("y", (s) => rows * LANE - h(s[1])).attr("height", (s) => h(s[1]))
          .attr("fill", "#3b7dd8")
          .append("title").text((s) => fmtCount(s[1]) + " events/s");
      }
      y += rows * LANE + 4;
    }
    svg.attr("height", y);
  }

  // -- live ----------------------------------------------------------------------------------

  function send(message) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(message));
  }

  function notice(text) {
    const el = document.getElementById("notice");
    el.textContent = text;
    setTimeout(() => { if (el.textContent === text) el.textContent = ""; }, 4000);
  }

  function connect() {
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws" + location.search;
    const ws = new WebSocket(url);
    state.ws = ws;
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.type === "notice") { notice(msg.text); return; }
      if (state.paused && state.model) return;
      show(msg);
    };
    ws.onclose = () => {
      state.closed = true;
      document.body.dataset.closed = "1";
      if (state.model) drawHeader(state.model);
    };
    document.getElementById("controls").hidden = false;
    document.getElementById("pause").addEventListener("click", (ev) => {
      state.paused = !state.paused;
      ev.target.textContent = state.paused ? "resume" : "pause";
      if (state.model) drawHeader(state.model);
    });
    document.getElementById("clear").addEventListener("click", () => send({ action: "clear" }));
  }

  // the collector's page: one view per host and process and one of them all; the selector chooses
  function drawViews(m) {
    const select = document.getElementById("view");
    if (!m.views) { select.hidden = true; return m; }
    select.hidden = false;
    document.getElementById("clear").hidden = true;
    if (!m.views.some((v) => v.key === state.view)) state.view = m.views[0].key;
    const options = d3.select(select).selectAll("option").data(m.views, (v) => v.key).join("option")
      .attr("value", (v) => v.key).text((v) => v.label);
    options.order();
    select.value = state.view;
    return Object.assign({}, m, m.views.find((v) => v.key === state.view));
  }

  document.getElementById("view").addEventListener("change", (ev) => {
    state.view = ev.target.value;
    state.zoom = [];
    if (state.raw) show(state.raw);
  });

  function show(raw) {
    state.raw = raw;
    const m = drawViews(raw);
    state.model = m;
    document.body.dataset.updates = String((+document.body.dataset.updates || 0) + 1);
    drawHeader(m);
    drawHealth(m.health);
    drawFlame(m);
    drawTimeline(m);
    drawTable(m);
  }

  document.getElementById("filter").addEventListener("input", (ev) => {
    state.filter = ev.target.value;
    if (state.model) drawTable(state.model);
  });
  window.addEventListener("resize", () => { if (state.model) { drawFlame(state.model); drawTimeline(state.model); } });

  if (embedded) show(embedded);
  else connect();
})();
