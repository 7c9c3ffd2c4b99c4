// The dashboard page: fetches the JSON endpoints, draws the views, polls while a study runs.
// Every string from the server goes into the page through textContent.
"use strict";

const POLL_MS = 3000;
const PAGE = 50;
const P = window.pbtPlots;
const C = window.pbtCharts;
const state = { study: null, trial: null, offset: 0, sort: "number", desc: false,
  filter: "", key: null, timer: null, plot: null, shown: null, nodes: [], params: [], hidden: new Set(),
  objectives: [], objective: null, front: null };

function $(id) { return document.getElementById(id); }

function api(path) {
  return fetch(path, { headers: { Accept: "application/json" } }).then((r) => {
    if (!r.ok) return r.json().then((b) => { throw new Error(b.error || r.statusText); });
    return r.json();
  });
}

function studyPath(view, params) {
  const q = new URLSearchParams(Object.assign({ study: state.study }, params || {}));
  return "/api/" + view + "?" + q.toString();
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function setStatus(text) { $("status").textContent = text; }

function clear(el) { el.replaceChildren(); }

function progressText(s) {
  const pct = s.steps_total ? (100 * s.steps_done / s.steps_total).toFixed(0) : "100";
  return s.steps_done + " / " + s.steps_total + " steps (" + pct + "%)";
}

// With several objectives there is no best fitness: the front's size stands for it.
function bestText(s) {
  if (s.front) return "front: " + s.front.length + " trial" + (s.front.length === 1 ? "" : "s");
  return C.fmtNum(s.best_fitness);
}

function several() { return state.objectives.length > 1; }

function countsText(counts) {
  return Object.entries(counts).filter((e) => e[1]).map((e) => e[0].toLowerCase() + " " + e[1]).join(", ");
}

function loadStudies() {
  return api("/api/studies").then((list) => {
    const body = $("studies").tBodies[0];
    clear(body);
    list.forEach((s) => {
      const tr = document.createElement("tr");
      const td = cell(tr, "");
      const a = document.createElement("a");
      a.href = "#" + encodeURIComponent(s.name);
      a.textContent = s.name;
      td.appendChild(a);
      cell(tr, s.state, "state-" + s.state);
      cell(tr, progressText(s));
      cell(tr, bestText(s));
      cell(tr, String(s.workers_active));
      cell(tr, countsText(s.counts));
      body.appendChild(tr);
    });
    if (!list.length) { const tr = document.createElement("tr"); cell(tr, "no study yet"); body.appendChild(tr); }
    return list;
  });
}

function selectTrial(number) {
  state.trial = number;
  return loadLineage();
}

function loadLineage() {
  const params = state.trial === null ? {} : { trial: state.trial };
  return Promise.all([api(studyPath("lineage", params)), api(studyPath("schedules", params))])
    .then((res) => {
      const lin = res[0], sch = res[1];
      state.nodes = lin.nodes;
      state.shown = lin.trial;
      const shown = lin.trial === null ? "-" : String(lin.trial);
      $("lineage-trial").textContent = shown;
      $("schedule-trial").textContent = shown;
      P.drawLineage($("lineage-plot"), lin.nodes, state.params, lin.trial, selectTrial, state.objectives);
      window.pbtSchedules.drawSchedules($("schedules"), sch);
      const q = lin.trial === null ? {} : { trial: lin.trial };
      $("export-json").href = studyPath("schedule.json", q);
      $("export-csv").href = studyPath("schedule.csv", q);
      drawPlot();
      drawFront();
    });
}

function drawFront() {
  if (!state.front || !several()) return;
  window.pbtFront.drawFront($("front-plot"), { data: state.front, selected: state.shown,
    onClick: selectTrial, legend: $("front-legend"), table: $("front-table") });
}

function loadFront() {
  $("front-panel").hidden = !several();
  if (!several()) { state.front = null; return Promise.resolve(); }
  return api(studyPath("front")).then((d) => { state.front = d; drawFront(); });
}

// A legend entry: a small drawn swatch and a text; ``draw(ctx, w, h)`` draws the swatch.
function legendItem(text, draw, onClick) {
  const item = document.createElement(onClick ? "button" : "span");
  item.className = "legend-item";
  if (onClick) { item.type = "button"; item.addEventListener("click", onClick); }
  const k = window.devicePixelRatio || 1;
  const canvas = document.createElement("canvas");
  canvas.width = 22 * k; canvas.height = 12 * k;
  canvas.className = "swatch";
  draw(canvas.getContext("2d"), k);
  const label = document.createElement("span");
  label.textContent = text;
  item.append(canvas, label);
  return item;
}

function drawLegend(d, outside) {
  const box = $("pbt-legend");
  clear(box);
  d.members.forEach((m) => {
    const st = C.memberStyle(m.member);
    const item = legendItem("member " + m.member, (ctx, k) => {
      ctx.strokeStyle = st.color; ctx.lineWidth = 1.6 * k; ctx.setLineDash(st.dash.map((v) => v * k));
      ctx.beginPath(); ctx.moveTo(0, 6 * k); ctx.lineTo(22 * k, 6 * k); ctx.stroke();
      C.mark(ctx, st.shape, 11 * k, 6 * k, 3.5 * k); ctx.fillStyle = st.color; ctx.fill();
    }, () => {
      if (state.hidden.has(m.member)) state.hidden.delete(m.member); else state.hidden.add(m.member);
      drawPlot();
    });
    item.setAttribute("data-member", String(m.member));
    item.setAttribute("aria-pressed", String(!state.hidden.has(m.member)));
    if (state.hidden.has(m.member)) item.classList.add("off");
    box.appendChild(item);
  });
  if (d.best) {
    const on = d.objective ? " on " + d.objective : "";
    const best = legendItem("best lineage" + on + ": trial " + d.best.trial + " (member " +
      d.best.member + ", " + (d.objective || "fitness") + " " + C.fmtNum(d.best.fitness) + ")", (ctx, k) => {
      ctx.strokeStyle = "rgba(255, 190, 0, 0.55)"; ctx.lineWidth = 8 * k;
      ctx.beginPath(); ctx.moveTo(0, 6 * k); ctx.lineTo(22 * k, 6 * k); ctx.stroke();
    });
    best.id = "legend-best";
    box.appendChild(best);
  }
  box.appendChild(legendItem("exploit: copied another member", (ctx, k) => {
    ctx.strokeStyle = "rgba(60, 60, 60, 0.8)"; ctx.lineWidth = k; ctx.setLineDash([2 * k, 3 * k]);
    ctx.beginPath(); ctx.moveTo(0, 9 * k); ctx.lineTo(22 * k, 3 * k); ctx.stroke();
  }));
  if (d.restarts && d.restarts.length) {
    const restart = legendItem("restart: a member stopped early copied a top one", (ctx, k) => {
      ctx.strokeStyle = P.RESTART; ctx.lineWidth = k; ctx.setLineDash([2 * k, 3 * k]);
      ctx.beginPath(); ctx.moveTo(0, 9 * k); ctx.lineTo(22 * k, 3 * k); ctx.stroke();
    });
    restart.id = "legend-restart";
    box.appendChild(restart);
  }
  const n = outside.below + outside.above;
  $("outliers").textContent = n ? "(" + n + " trial" + (n > 1 ? "s" : "") +
    " outside the y-axis, drawn as open arrowheads at its edge)" : "";
}

function drawPlot() {
  if (!state.plot) return;
  const out = P.drawPbtPlot($("pbt-plot"), { data: state.plot, hidden: state.hidden,
    full: $("full-range").checked, selected: state.shown,
    lineage: state.nodes, onClick: selectTrial });
  drawLegend(state.plot, out);
}

function loadPlot() {
  const q = several() && state.objective ? { objective: state.objective } : {};
  return api(studyPath("plot", q)).then((d) => {
    state.plot = d;
    $("pbt-what").textContent = d.objective ? d.objective + " (" + d.mode + ")" : "Fitness";
    drawPlot();
  });
}

// The objective the PBT plot shows, in a study of several: a choice of the study's.
function fillObjectives(objectives) {
  const select = $("objective");
  $("objective-pick").hidden = objectives.length < 2;
  const names = objectives.map((o) => o[0]);
  if (Array.from(select.options).map((o) => o.value).join("\n") !== names.join("\n")) {
    select.replaceChildren();
    names.forEach((n) => {
      const option = document.createElement("option");
      option.value = n; option.textContent = n;
      select.appendChild(option);
    });
  }
  if (names.indexOf(state.objective) < 0) state.objective = names.length > 1 ? names[0] : null;
  select.value = state.objective || "";
}

function scoreText(t) {
  let text = several() && t.values ? state.objectives.map((o, i) => o[0] + " " + C.fmtNum(t.values[i])).join(", ")
    : C.fmtNum(t.fitness);
  if (t.infeasible) text += " (infeasible: " + t.infeasible + ")";
  return text;
}

function paramsText(params) {
  return Object.entries(params || {}).map((e) => e[0] + "=" + C.fmtNum(e[1])).join(", ");
}

function loadTable() {
  const q = { offset: state.offset, limit: PAGE, sort: state.sort, desc: state.desc ? 1 : 0 };
  if (state.filter) q.state = state.filter;
  return api(studyPath("trials", q)).then((page) => {
    const body = $("trials").tBodies[0];
    clear(body);
    page.rows.forEach((t) => {
      const tr = document.createElement("tr");
      tr.setAttribute("data-trial", t.number);
      cell(tr, String(t.number));
      cell(tr, String(t.member));
      cell(tr, String(t.generation));
      cell(tr, t.parent === null ? "-" : String(t.parent));
      cell(tr, t.start_step + "-" + t.end_step);
      cell(tr, t.state, "state-" + t.state);
      cell(tr, t.decision || "-", "decision decision-" + (t.decision || "none"));
      cell(tr, scoreText(t), t.infeasible ? "infeasible" : "");
      cell(tr, paramsText(t.params), "params");
      cell(tr, t.error || "", "error");
      tr.addEventListener("click", () => selectTrial(t.number));
      body.appendChild(tr);
    });
    const end = Math.min(page.total, state.offset + page.rows.length);
    $("page-info").textContent = (page.total ? state.offset + 1 : 0) + "-" + end + " of " + page.total;
    $("prev").disabled = state.offset === 0;
    $("next").disabled = end >= page.total;
  });
}

// The state filter offers every state the study counts (a new state shows up by itself).
function fillStates(counts) {
  const select = $("state-filter");
  const have = Array.from(select.options).map((o) => o.value);
  Object.keys(counts).forEach((name) => {
    if (have.indexOf(name) >= 0) return;
    const option = document.createElement("option");
    option.value = name;
    option.textContent = name.toLowerCase();
    select.appendChild(option);
  });
}

function loadStudy() {
  return api(studyPath("summary")).then((s) => {
    state.params = s.params;
    state.objectives = s.objectives || [];
    fillStates(s.counts);
    fillObjectives(state.objectives);
    // Several objectives have no fitness to sort by: the column lists their values.
    const head = $("score-head");
    head.textContent = several() ? "objectives" : "fitness";
    if (several()) head.removeAttribute("data-sort"); else head.setAttribute("data-sort", "fitness");
    $("study-title").textContent = s.name;
    const best = several() ? bestText(s) + " (" + state.objectives.map((o) => o[0] + ", " + o[1]).join("; ") + ")"
      : "best fitness " + C.fmtNum(s.best_fitness) + (s.metric ? " (" + s.metric + ", " + s.mode + ")" : "");
    $("study-summary").textContent = s.state + " | " + progressText(s) + " | " + best +
      (s.constraints && s.constraints.length ? " | constraints: " + s.constraints.join(", ") : "") +
      " | workers active " + s.workers_active + " | " + countsText(s.counts) +
      (s.stop_reason ? " | stopped: " + s.stop_reason : "") +
      (s.error ? " | error: " + s.error : "");
    const key = JSON.stringify([s.counts, s.best_trial, s.front]);
    if (key === state.key) return s;
    state.key = key;
    return Promise.all([loadPlot(), loadFront(), loadLineage(), loadTable()]).then(() => s);
  });
}

function showStudy(name) {
  if (name !== state.study) { state.hidden = new Set(); state.plot = null; state.objective = null; state.front = null; }
  state.study = name; state.trial = null; state.offset = 0; state.key = null;
  $("studies-view").hidden = true;
  $("study-view").hidden = false;
  return loadStudy();
}

function route() {
  const name = decodeURIComponent(location.hash.slice(1));
  if (name) return showStudy(name);
  state.study = null;
  $("studies-view").hidden = false;
  $("study-view").hidden = true;
  return loadStudies();
}

function refresh() {
  const work = state.study === null ? loadStudies() : loadStudy();
  return work.then(() => setStatus("updated " + new Date().toLocaleTimeString()))
    .catch((e) => setStatus("error: " + e.message));
}

function schedule() {
  clearTimeout(state.timer);
  state.timer = setTimeout(() => {
    (($("live").checked) ? refresh() : Promise.resolve()).then(schedule);
  }, POLL_MS);
}

function init() {
  $("state-filter").addEventListener("change", (e) => {
    state.filter = e.target.value; state.offset = 0; loadTable();
  });
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); loadTable(); });
  $("next").addEventListener("click", () => { state.offset += PAGE; loadTable(); });
  document.querySelectorAll("#trials th[data-sort]").forEach((th) => th.addEventListener("click", () => {
    const key = th.getAttribute("data-sort");
    if (!key) return;
    state.desc = state.sort === key ? !state.desc : false;
    state.sort = key; state.offset = 0; loadTable();
  }));
  $("objective").addEventListener("change", (e) => {
    state.objective = e.target.value;
    const view = $("pbt-plot").pbtView;
    if (view) view.zoomed = false;
    // the lineage shown follows the highlighted one: the best final trial on this objective
    loadPlot().then(() => { if (state.plot.best) return selectTrial(state.plot.best.trial); })
      .catch((err) => setStatus("error: " + err.message));
  });
  $("full-range").addEventListener("change", () => {
    const view = $("pbt-plot").pbtView;
    if (view) view.zoomed = false;
    drawPlot();
  });
  let resizing = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => { if (state.study !== null) loadLineage(); }, 200);
  });
  window.addEventListener("hashchange", () => route().catch((e) => setStatus("error: " + e.message)));
  api("/api/config").then((c) => {
    if (c.study && !location.hash) location.hash = encodeURIComponent(c.study);
    return route();
  }).then(() => setStatus("loaded")).catch((e) => setStatus("error: " + e.message)).then(schedule);
}

document.addEventListener("DOMContentLoaded", init);
