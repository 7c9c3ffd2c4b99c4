// The dashboard page: fetches the JSON endpoints, draws the views, polls while a study runs.
// Every string from the server goes into the page through textContent.
"use strict";

const POLL_MS = 3000;
const PAGE = 50;
const P = window.pbtPlots;
const state = { study: null, trial: null, best: null, offset: 0, sort: "id", desc: false,
  filter: "", key: null, timer: null };

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

function progressText(s) {
  const pct = s.steps_total ? (100 * s.steps_done / s.steps_total).toFixed(0) : "100";
  return s.steps_done + " / " + s.steps_total + " steps (" + pct + "%)";
}

function countsText(counts) {
  return Object.entries(counts).filter((e) => e[1]).map((e) => e[0].toLowerCase() + " " + e[1]).join(", ");
}

function loadStudies() {
  return api("/api/studies").then((list) => {
    const body = $("studies").tBodies[0];
    P.clear(body);
    list.forEach((s) => {
      const tr = document.createElement("tr");
      const td = cell(tr, "");
      const a = document.createElement("a");
      a.href = "#" + encodeURIComponent(s.name);
      a.textContent = s.name;
      td.appendChild(a);
      cell(tr, s.state, "state-" + s.state);
      cell(tr, progressText(s));
      cell(tr, P.fmtNum(s.best_fitness));
      cell(tr, String(s.workers_active));
      cell(tr, countsText(s.counts));
      body.appendChild(tr);
    });
    if (!list.length) { const tr = document.createElement("tr"); cell(tr, "no study yet"); body.appendChild(tr); }
    return list;
  });
}

function selectTrial(id) {
  state.trial = id;
  loadLineage();
}

function loadLineage() {
  const params = state.trial === null ? {} : { trial: state.trial };
  return Promise.all([api(studyPath("lineage", params)), api(studyPath("schedules", params))])
    .then((res) => {
      const lin = res[0], sch = res[1];
      $("lineage-trial").textContent = lin.trial === null ? "-" : String(lin.trial);
      P.drawLineage($("lineage-plot"), lin.nodes, selectTrial);
      const last = lin.nodes.length ? lin.nodes[lin.nodes.length - 1].member : 0;
      P.drawSchedules($("schedules"), sch, last);
      const q = lin.trial === null ? {} : { trial: lin.trial };
      $("export-json").href = studyPath("schedule.json", q);
      $("export-csv").href = studyPath("schedule.csv", q);
      document.querySelectorAll("#pbt-plot circle").forEach((c) => {
        c.setAttribute("class", Number(c.getAttribute("data-trial")) === lin.trial ? "selected" : "");
      });
    });
}

function loadPlot() {
  return api(studyPath("plot")).then((d) => P.drawPbtPlot($("pbt-plot"), d, state.trial, selectTrial));
}

function paramsText(params) {
  return Object.entries(params || {}).map((e) => e[0] + "=" + P.fmtNum(e[1])).join(", ");
}

function loadTable() {
  const q = { offset: state.offset, limit: PAGE, sort: state.sort, desc: state.desc ? 1 : 0 };
  if (state.filter) q.state = state.filter;
  return api(studyPath("trials", q)).then((page) => {
    const body = $("trials").tBodies[0];
    P.clear(body);
    page.rows.forEach((t) => {
      const tr = document.createElement("tr");
      tr.setAttribute("data-trial", t.id);
      cell(tr, String(t.id));
      cell(tr, String(t.member));
      cell(tr, String(t.generation));
      cell(tr, t.parent_id === null ? "-" : String(t.parent_id));
      cell(tr, t.start_step + "-" + t.end_step);
      cell(tr, t.state, "state-" + t.state);
      cell(tr, P.fmtNum(t.fitness));
      cell(tr, paramsText(t.params), "params");
      cell(tr, t.error || "", "error");
      tr.addEventListener("click", () => selectTrial(t.id));
      body.appendChild(tr);
    });
    const end = Math.min(page.total, state.offset + page.rows.length);
    $("page-info").textContent = (page.total ? state.offset + 1 : 0) + "-" + end + " of " + page.total;
    $("prev").disabled = state.offset === 0;
    $("next").disabled = end >= page.total;
  });
}

function loadStudy() {
  return api(studyPath("summary")).then((s) => {
    $("study-title").textContent = s.name;
    $("study-summary").textContent = s.state + " | " + progressText(s) + " | best fitness " +
      P.fmtNum(s.best_fitness) + (s.metric ? " (" + s.metric + ", " + s.mode + ")" : "") +
      " | workers active " + s.workers_active + " | " + countsText(s.counts) +
      (s.error ? " | error: " + s.error : "");
    const key = JSON.stringify([s.counts, s.best_trial]);
    if (key === state.key) return s;
    state.key = key;
    return Promise.all([loadPlot(), loadLineage(), loadTable()]).then(() => s);
  });
}

function showStudy(name) {
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
    state.desc = state.sort === key ? !state.desc : false;
    state.sort = key; state.offset = 0; loadTable();
  }));
  window.addEventListener("hashchange", () => route().catch((e) => setStatus("error: " + e.message)));
  api("/api/config").then((c) => {
    if (c.study && !location.hash) location.hash = encodeURIComponent(c.study);
    return route();
  }).then(() => setStatus("loaded")).catch((e) => setStatus("error: " + e.message)).then(schedule);
}

document.addEventListener("DOMContentLoaded", init);
