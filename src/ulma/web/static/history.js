// `ulma history ... --html FILE`: the answer drawn. ULMA_HISTORY = {what, title, parts:
// [{name, key, color}], answer} (ulma.web.history_page). trend: the four-way split per step,
// stacked; top and compare: a bar per function (top: its time split four ways; compare: the
// change per call of each part); types: objects live per type. Every answer is also a table.
"use strict";
(function () {
  const H = ULMA_HISTORY;
  const W = Math.max(640, Math.min(1200, window.innerWidth - 40));
  const fmtNs = (v) => {
    const a = Math.abs(v);
    if (a < 1e3) return `${Math.round(v)} ns`;
    if (a < 1e6) return `${(v / 1e3).toFixed(1)} µs`;
    if (a < 1e9) return `${(v / 1e6).toFixed(1)} ms`;
    return `${(v / 1e9).toFixed(2)} s`;
  };
  document.getElementById("title").textContent = `ulma history: ${H.title}`;
  const legend = d3.select("#legend");
  for (const p of H.parts) {
    legend.append("span").attr("class", "key").style("background", p.color);
    legend.append("span").text(` ${p.name} `);
  }
  const svg = d3.select("#chart-svg").attr("width", W);
  const margin = {top: 10, right: 20, bottom: 30, left: 220};

  function stacked(points, xOf, label, step) {
    // points: [{...parts' keys}], stacked areas over x
    const h = 320;
    svg.attr("height", h + margin.top + margin.bottom);
    const g = svg.append("g").attr("transform", `translate(${margin.left - 160},${margin.top})`);
    const width = W - margin.left + 160 - margin.right;
    const keys = H.parts.map((p) => p.key);
    const series = d3.stack().keys(keys).value((d, k) => Math.max(d[k], 0))(points);
    const x = d3.scaleLinear().domain(d3.extent(points, xOf)).range([0, width]);
    if (points.length === 1) x.domain([xOf(points[0]) - 1, xOf(points[0]) + 1]);
    const top = d3.max(series, (s) => d3.max(s, (d) => d[1])) || 1;
    const y = d3.scaleLinear().domain([0, top]).nice().range([h, 0]);
    const area = d3.area().x((d) => x(xOf(d.data))).y0((d) => y(d[0])).y1((d) => y(d[1]))
      .curve(d3.curveStepAfter);
    g.selectAll("path.part").data(series).join("path").attr("class", "part")
      .attr("data-part", (s) => s.key).attr("fill", (s, i) => H.parts[i].color).attr("d", area)
      .append("title").text((s, i) => H.parts[i].name);
    g.append("g").attr("transform", `translate(0,${h})`)
      .call(d3.axisBottom(x).tickValues(x.ticks(8).filter((t) => t % step === 0)).tickFormat((t) => label(t)));
    g.append("g").call(d3.axisLeft(y).ticks(6).tickFormat(fmtNs));
  }

  function bars(rows, nameOf, valuesOf, signed) {
    const rowH = 18;
    const h = rows.length * rowH;
    svg.attr("height", h + margin.top + margin.bottom);
    const g = svg.append("g").attr("transform", `translate(${margin.left},${margin.top})`);
    const width = W - margin.left - margin.right;
    const lo = signed ? d3.min(rows, (r) => d3.sum(valuesOf(r).filter((v) => v < 0))) || 0 : 0;
    const hi = d3.max(rows, (r) => d3.sum(valuesOf(r).filter((v) => v > 0))) || 1;
    const x = d3.scaleLinear().domain([Math.min(lo, 0), hi]).nice().range([0, width]);
    rows.forEach((r, i) => {
      const row = g.append("g").attr("class", "bar").attr("data-name", nameOf(r))
        .attr("transform", `translate(0,${i * rowH})`);
      row.append("text").attr("x", -6).attr("y", rowH / 2).attr("dy", "0.35em")
        .attr("text-anchor", "end").text(nameOf(r));
      let up = 0, down = 0;
      valuesOf(r).forEach((v, k) => {
        const from = v >= 0 ? up : down + v;
        if (v >= 0) up += v; else down += v;
        row.append("rect").attr("class", "part").attr("data-part", H.parts[k].key)
          .attr("x", x(from)).attr("y", 1).attr("height", rowH - 2)
          .attr("width", Math.max(x(from + Math.abs(v)) - x(from), 0)).attr("fill", H.parts[k].color)
          .append("title").text(`${H.parts[k].name}: ${H.unit === "count" ? v : fmtNs(v)}`);
      });
    });
    g.append("g").attr("transform", `translate(0,${h})`)
      .call(d3.axisBottom(x).ticks(6).tickFormat(H.unit === "count" ? d3.format(",") : fmtNs));
  }

  const A = H.answer;
  const chartTitle = document.getElementById("chart-title");
  if (H.what === "trend") {
    chartTitle.textContent = `${A.name}: time per ${A.step} s, split four ways`;
    const when = (t) => new Date(t * 1000).toLocaleTimeString();
    // each step as wide as it lasted: the last one ends a step after it began
    const last = A.points[A.points.length - 1];
    const points = last ? [...A.points, {...last, ts: last.ts + A.step}] : [];
    stacked(points, (p) => p.ts, when, A.step);
  } else if (H.what === "top") {
    chartTitle.textContent = "the functions with the most time, split four ways";
    bars(A.functions, (f) => f.name, (f) => H.parts.map((p) => f[p.key]), false);
  } else if (H.what === "compare") {
    chartTitle.textContent = `${A.run} against ${A.baseline}: change of the time per call, per part`;
    bars(A.functions, (f) => f.name, (f) => H.parts.map((p) => f.delta_per_call_ns[p.key]), true);
  } else if (H.what === "types") {
    chartTitle.textContent = "objects live per type";
    bars(A.types, (t) => t.name, (t) => [t.live], false);
  } else {
    d3.select("#chart").attr("hidden", true);
  }

  // the table: every answer's rows as they are in the JSON
  const rows = A.functions || A.points || A.types || A.hosts || A.runs || A.callers || A.dropped || [];
  const columns = rows.length ? Object.keys(rows[0]).filter((k) => typeof rows[0][k] !== "object") : [];
  d3.select("#table thead").append("tr").selectAll("th").data(columns).join("th").text((c) => c);
  d3.select("#table tbody").selectAll("tr").data(rows).join("tr").selectAll("td")
    .data((r) => columns.map((c) => r[c])).join("td")
    .text((v) => (typeof v === "number" ? v.toLocaleString("en") : String(v)));
})();
