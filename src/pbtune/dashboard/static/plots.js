// SVG plots drawn with createElementNS and setAttribute only: text from a study is
// always set with textContent, never parsed as markup.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const MARGIN = { left: 60, right: 15, top: 10, bottom: 30 };

function svgEl(tag, attrs, parent) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  if (parent) parent.appendChild(el);
  return el;
}

function svgText(parent, x, y, text, attrs) {
  const el = svgEl("text", Object.assign({ x: x, y: y }, attrs || {}), parent);
  el.textContent = text;
  return el;
}

function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }

function memberColor(member) {
  return "hsl(" + ((member * 137.508) % 360).toFixed(1) + ", 65%, 45%)";
}

function fmtNum(v) {
  if (v === null || v === undefined) return "-";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return String(v);
  return Number(v.toPrecision(4)).toString();
}

// A linear (or log) scale from [lo, hi] to [a, b].
function scale(lo, hi, a, b, log) {
  if (log && lo > 0 && hi > 0) {
    const l0 = Math.log(lo), l1 = Math.log(hi) === l0 ? l0 + 1 : Math.log(hi);
    return (v) => a + (Math.log(v) - l0) / (l1 - l0) * (b - a);
  }
  if (hi === lo) { hi = lo + 1; lo = lo - 1; }
  return (v) => a + (v - lo) / (hi - lo) * (b - a);
}

function axes(svg, xlo, xhi, ylo, yhi, opts) {
  const w = Number(svg.getAttribute("width")), h = Number(svg.getAttribute("height"));
  const x = scale(xlo, xhi, MARGIN.left, w - MARGIN.right, false);
  const y = scale(ylo, yhi, h - MARGIN.bottom, MARGIN.top, opts && opts.log);
  svgEl("line", { class: "axis", x1: MARGIN.left, y1: h - MARGIN.bottom, x2: w - MARGIN.right,
    y2: h - MARGIN.bottom }, svg);
  svgEl("line", { class: "axis", x1: MARGIN.left, y1: MARGIN.top, x2: MARGIN.left,
    y2: h - MARGIN.bottom }, svg);
  for (let i = 0; i <= 4; i++) {
    const xv = xlo + (xhi - xlo) * i / 4;
    svgText(svg, x(xv), h - MARGIN.bottom + 14, fmtNum(Math.round(xv)), { "text-anchor": "middle" });
  }
  const labels = opts && opts.ticks;
  if (labels) {
    labels.forEach((label, i) => svgText(svg, MARGIN.left - 4, y(i) + 4, String(label),
      { "text-anchor": "end" }));
  } else {
    for (let i = 0; i <= 4; i++) {
      let yv = ylo + (yhi - ylo) * i / 4;
      if (opts && opts.log && ylo > 0) yv = Math.exp(Math.log(ylo) + (Math.log(yhi) - Math.log(ylo)) * i / 4);
      svgEl("line", { class: "grid", x1: MARGIN.left + 1, x2: w - MARGIN.right, y1: y(yv), y2: y(yv) }, svg);
      svgText(svg, MARGIN.left - 4, y(yv) + 4, fmtNum(yv), { "text-anchor": "end" });
    }
  }
  svgText(svg, w - MARGIN.right, h - 2, "step", { "text-anchor": "end" });
  return { x: x, y: y };
}

// The classic PBT plot: a line per member, broken where it copied another member, with the
// exploit drawn as a dashed jump from the parent's point to the child's.
function drawPbtPlot(svg, data, selected, onClick) {
  clear(svg);
  const pts = [];
  data.members.forEach((m) => m.points.forEach((p) => pts.push(p)));
  if (!pts.length) { svgText(svg, 80, 40, "no finished trial yet"); return; }
  let ylo = Infinity, yhi = -Infinity;
  pts.forEach((p) => { ylo = Math.min(ylo, p[1]); yhi = Math.max(yhi, p[1]); });
  const s = axes(svg, 0, Math.max(1, data.max_step), ylo, yhi);
  const lines = svgEl("g", {}, svg), jumps = svgEl("g", {}, svg), dots = svgEl("g", {}, svg);
  data.members.forEach((m) => {
    const color = memberColor(m.member);
    let d = "";
    m.points.forEach((p, i) => {
      d += (i === 0 || p[3] ? "M" : "L") + s.x(p[0]).toFixed(1) + "," + s.y(p[1]).toFixed(1);
    });
    svgEl("path", { d: d, fill: "none", stroke: color, "stroke-width": 1.5, "data-member": m.member }, lines);
    m.points.forEach((p) => {
      const c = svgEl("circle", { cx: s.x(p[0]).toFixed(1), cy: s.y(p[1]).toFixed(1), r: 3.5,
        fill: color, "data-trial": p[2], class: p[2] === selected ? "selected" : "" }, dots);
      const title = svgEl("title", {}, c);
      title.textContent = "trial " + p[2] + " (member " + m.member + "), step " + p[0] +
        ", fitness " + fmtNum(p[1]);
      c.addEventListener("click", () => onClick(p[2]));
    });
  });
  data.jumps.forEach((j) => {
    svgEl("path", { class: "jump", d: "M" + s.x(j[0]).toFixed(1) + "," + s.y(j[1]).toFixed(1) +
      "L" + s.x(j[2]).toFixed(1) + "," + s.y(j[3]).toFixed(1), stroke: "#555",
      "stroke-dasharray": "3,3", fill: "none" }, jumps);
  });
}

// The lineage: one node per trial, generation on x, the member's lane on y.
function drawLineage(svg, nodes, onClick) {
  clear(svg);
  if (!nodes.length) { svgText(svg, 80, 40, "no lineage yet"); return; }
  const w = Number(svg.getAttribute("width")), h = Number(svg.getAttribute("height"));
  const members = Array.from(new Set(nodes.map((n) => n.member))).sort((a, b) => a - b);
  const g0 = nodes[0].generation, g1 = nodes[nodes.length - 1].generation;
  const x = scale(g0, Math.max(g1, g0 + 1), MARGIN.left + 30, w - MARGIN.right, false);
  const gap = members.length > 1 ? Math.min(40, (h - 70) / (members.length - 1)) : 0;
  const lane = (m) => MARGIN.top + 10 + members.indexOf(m) * gap;
  members.forEach((m) => svgText(svg, 4, lane(m) + 4, "member " + m, { fill: memberColor(m) }));
  svgText(svg, w - MARGIN.right, h - 2, "generation", { "text-anchor": "end" });
  for (let i = 1; i < nodes.length; i++) {
    const a = nodes[i - 1], b = nodes[i];
    svgEl("line", { x1: x(a.generation), y1: lane(a.member), x2: x(b.generation), y2: lane(b.member),
      stroke: a.member === b.member ? "#999" : "#333", "stroke-dasharray": a.member === b.member ? "" : "4,3" }, svg);
  }
  const every = Math.max(1, Math.ceil(nodes.length / 40));
  nodes.forEach((n, i) => {
    const c = svgEl("circle", { class: "node", cx: x(n.generation), cy: lane(n.member), r: 5,
      fill: memberColor(n.member), "data-trial": n.id }, svg);
    const title = svgEl("title", {}, c);
    title.textContent = "trial " + n.id + " gen " + n.generation + " steps " + n.start_step + "-" +
      n.end_step + " fitness " + fmtNum(n.fitness) + " (" + n.decision + ")";
    c.addEventListener("click", () => onClick(n.id));
    if (i % every === 0 || i === nodes.length - 1) {
      svgText(svg, x(n.generation), lane(n.member) + 18, "#" + n.id, { "text-anchor": "middle" });
      svgText(svg, x(n.generation), h - MARGIN.bottom + 14, String(n.generation), { "text-anchor": "middle" });
    }
  });
}

// One small plot per param: the population's values as grey dots, the lineage as steps.
function drawSchedules(container, data, member) {
  clear(container);
  data.params.forEach((p) => {
    const box = document.createElement("div");
    box.className = "schedule";
    const title = document.createElement("h4");
    title.textContent = p.name;
    box.appendChild(title);
    const svg = svgEl("svg", { class: "plot", width: 440, height: 200 }, box);
    container.appendChild(box);
    const vals = p.population.map((q) => q[2]).concat(p.lineage.map((q) => q[2]).filter((v) => v !== null));
    const steps = p.population.map((q) => q[1]).concat(p.lineage.map((q) => q[1]));
    if (!vals.length) { svgText(svg, 80, 40, "no values"); return; }
    let lo = Math.min.apply(null, vals), hi = Math.max.apply(null, vals);
    const ticks = p.choices ? p.choices.map(String) : null;
    if (ticks) { lo = 0; hi = Math.max(1, ticks.length - 1); }
    const s = axes(svg, 0, Math.max(1, Math.max.apply(null, steps)), lo, hi, { log: p.log, ticks: ticks });
    const grey = svgEl("g", {}, svg);
    p.population.forEach((q) => svgEl("circle", { class: "population", cx: s.x((q[0] + q[1]) / 2).toFixed(1),
      cy: s.y(q[2]).toFixed(1), r: 2, fill: "#bbb" }, grey));
    let d = "";
    p.lineage.forEach((q) => {
      if (q[2] === null) return;
      d += (d ? "L" : "M") + s.x(q[0]).toFixed(1) + "," + s.y(q[2]).toFixed(1) +
        "L" + s.x(q[1]).toFixed(1) + "," + s.y(q[2]).toFixed(1);
    });
    svgEl("path", { class: "lineage", d: d, fill: "none", stroke: memberColor(member), "stroke-width": 2.5 }, svg);
  });
}

window.pbtPlots = { drawPbtPlot: drawPbtPlot, drawLineage: drawLineage, drawSchedules: drawSchedules,
  memberColor: memberColor, fmtNum: fmtNum, clear: clear };
