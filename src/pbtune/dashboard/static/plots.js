// The dashboard's three views, drawn on uPlot charts (charts.js): the PBT plot, the lineage
// and the schedules. Each view keeps its chart between refreshes, so a zoom survives a poll.
"use strict";

(function () {
  const C = window.pbtCharts;
  const RESTART = "rgba(192, 57, 43, 0.8)"; // a restart's jump and lineage edge; an exploit's is grey

  function ratio() { return window.devicePixelRatio || 1; }

  function memberPath(ctx, u, points, k) {
    ctx.beginPath();
    points.forEach((p, i) => {
      const [x, y] = C.px(u, p.x, p.y);
      if (i === 0 || p.jumped) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }

  // A view's chart, made once and then fed new data; a zoom (drag) survives refreshes until
  // a double-click restores the full view.
  function keep(el, key, make) {
    let view = el.pbtView;
    if (!view || view.key !== key || view.width !== el.clientWidth) {
      if (view) view.u.destroy();
      view = { key: key, width: el.clientWidth, zoomed: false };
      view.u = make(view);
      view.u.over.addEventListener("mouseup", () => {
        if (view.u.select.width > 0 || view.u.select.height > 0) view.zoomed = true;
      });
      view.u.over.addEventListener("dblclick", () => { view.zoomed = false; });
      el.pbtView = view;
      return view;
    }
    if (view.zoomed) view.u.redraw(); else view.u.setData([[0, 1], [null, null]], true);
    return view;
  }

  function pointItems(d) {
    const items = [], infeasible = new Set(d.infeasible || []);
    d.members.forEach((m) => m.points.forEach((p) => items.push({ x: p[0], y: p[1], number: p[2],
      jumped: p[3] === 1, decision: p[4], params: p[5], infeasible: infeasible.has(p[2]),
      member: m.member })));
    return items;
  }

  function yFull(items) {
    let lo = Infinity, hi = -Infinity;
    items.forEach((it) => { lo = Math.min(lo, it.y); hi = Math.max(hi, it.y); });
    const pad = hi > lo ? (hi - lo) * 0.06 : Math.max(Math.abs(hi) * 0.05, 1e-9);
    return [lo - pad, hi + pad];
  }

  // How many points lie below and above the y-range (drawn as marks at the edge).
  function outside(d, range) {
    const out = { below: 0, above: 0 };
    pointItems(d).forEach((it) => {
      if (it.y < range[0]) out.below++; else if (it.y > range[1]) out.above++;
    });
    return out;
  }

  function drawPbtMarks(u, ctx, s) {
    const k = ratio(), d = s.data, shown = (m) => !s.hidden.has(m);
    const [ylo, yhi] = [u.scales.y.min, u.scales.y.max];
    const many = s.items.length > 1500;
    if (d.best && d.best.path.length) { // the best lineage: a highlighter under everything
      ctx.strokeStyle = "rgba(255, 190, 0, 0.55)";
      ctx.lineWidth = 9 * k; ctx.lineJoin = "round"; ctx.lineCap = "round";
      memberPath(ctx, u, d.best.path.map((p) => ({ x: p[0], y: p[1] })), k);
    }
    ctx.lineCap = "butt";
    ctx.strokeStyle = "rgba(60, 60, 60, 0.55)"; ctx.lineWidth = k; ctx.setLineDash([2 * k, 3 * k]);
    d.jumps.forEach((j) => {
      if (!shown(s.memberOf.get(j[5]))) return;
      const [x0, y0] = C.px(u, j[0], j[1]), [x1, y1] = C.px(u, j[2], j[3]);
      ctx.strokeStyle = s.restarts.has(j[5]) ? RESTART : "rgba(60, 60, 60, 0.55)";
      ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); ctx.stroke();
    });
    d.members.forEach((m) => {
      if (!shown(m.member)) return;
      const st = C.memberStyle(m.member);
      ctx.strokeStyle = st.color; ctx.lineWidth = 1.6 * k;
      ctx.setLineDash(st.dash.map((v) => v * k));
      memberPath(ctx, u, s.byMember.get(m.member), k);
    });
    ctx.setLineDash([]);
    s.items.forEach((it) => {
      if (!shown(it.member)) return;
      const st = C.memberStyle(it.member);
      const [x, y] = C.px(u, it.x, it.y);
      if (it.y < ylo || it.y > yhi) { // beyond the range: a hollow arrowhead at the edge
        const edge = u.valToPos(it.y < ylo ? ylo : yhi, "y", true);
        C.edgeMark(ctx, x, it.y < ylo ? edge : edge, it.y > yhi, 4.5 * k);
        ctx.strokeStyle = st.color; ctx.lineWidth = 1.5 * k; ctx.stroke();
        return;
      }
      C.mark(ctx, st.shape, x, y, (many ? 2.2 : 3.2) * k);
      if (it.infeasible) { ctx.strokeStyle = st.color; ctx.lineWidth = 1.4 * k; ctx.stroke(); return; }
      ctx.fillStyle = st.color; ctx.fill();
    });
    if (s.lineage && s.lineage.length && (!d.best || s.selected !== d.best.trial)) {
      ctx.strokeStyle = "#000"; ctx.lineWidth = 1.5 * k; ctx.setLineDash([5 * k, 3 * k]);
      memberPath(ctx, u, s.lineage.filter((n) => plotted(d, n) !== null)
        .map((n) => ({ x: n.end_step, y: plotted(d, n) })), k);
      ctx.setLineDash([]);
    }
    const chosen = s.items.find((it) => it.number === s.selected);
    if (chosen && chosen.y >= ylo && chosen.y <= yhi) {
      const [x, y] = C.px(u, chosen.x, chosen.y);
      ctx.beginPath(); ctx.arc(x, y, 6.5 * k, 0, 2 * Math.PI);
      ctx.strokeStyle = "#000"; ctx.lineWidth = 2 * k; ctx.stroke();
    }
  }

  // The value a lineage node has on the plot's y-axis: its fitness, or the objective shown.
  function plotted(d, n) {
    if (!d.objective) return n.fitness;
    const i = (d.objectives || []).indexOf(d.objective);
    return n.values && i >= 0 ? n.values[i] : null;
  }

  function describePoint(it, s) {
    const d = s.data, jump = s.parentOf.get(it.number);
    let decision = it.decision || "-";
    if (jump !== undefined) decision += " (copied trial " + jump.number + " of member " + jump.member + ")";
    const value = d.objective ? d.objective + " " + C.fmtNum(it.y) + " (" + d.mode + ")"
      : "fitness " + C.fmtNum(it.y) + (d.metric ? " (" + d.metric + ", " + d.mode + ")" : "");
    const lines = ["trial " + it.number, "member " + it.member + ", step " + it.x, value,
      "decision: " + decision];
    if (it.infeasible) lines.splice(3, 0, "infeasible (breaks a constraint)");
    if (d.best && it.number === d.best.trial) lines.splice(1, 0, d.objective ? "best on " + d.objective : "best trial");
    return lines.concat(C.paramsLines(d.params, it.params));
  }

  // The classic PBT plot: fitness against step, a line per member broken where it copied
  // another member, each exploit a dotted jump from the parent's point to the child's, the
  // best lineage highlighted. ``s``: {data, hidden (Set of members), full (bool), selected,
  // lineage (nodes of the selected trial), onClick(number)}.
  function drawPbtPlot(el, s) {
    const d = s.data;
    s.items = pointItems(d);
    s.byMember = new Map();
    s.memberOf = new Map();
    s.items.forEach((it) => {
      if (!s.byMember.has(it.member)) s.byMember.set(it.member, []);
      s.byMember.get(it.member).push(it);
      s.memberOf.set(it.number, it.member);
    });
    s.restarts = new Set(d.restarts || []);
    s.parentOf = new Map();
    d.jumps.forEach((j) => s.parentOf.set(j[5], { number: j[4] }));
    d.jumps.forEach((j) => { s.parentOf.get(j[5]).member = s.memberOf.has(j[4]) ? s.memberOf.get(j[4]) : "?"; });
    if (!s.items.length) {
      if (el.pbtView) { el.pbtView.u.destroy(); el.pbtView = null; }
      const p = document.createElement("p");
      p.className = "muted empty";
      p.textContent = "no finished trial yet";
      el.replaceChildren(p);
      return { below: 0, above: 0 };
    }
    const range = s.full || !d.y_range ? yFull(s.items) : d.y_range;
    s.range = range;
    el.pbtState = s;
    const label = d.label || "fitness" + (d.metric ? " (" + d.metric + ", " + d.mode + ")" : "");
    keep(el, "pbt:" + label, () => {
      const u = C.chart(el, { height: 380, xLabel: "step", yLabel: label,
        xRange: () => [0, Math.max(1, el.pbtState.data.max_step) * 1.02],
        yRange: () => el.pbtState.range,
        draw: (u, ctx) => drawPbtMarks(u, ctx, el.pbtState),
        onCursor: (u) => {
          const st = el.pbtState, it = C.nearest(u, st.items, (i) => !st.hidden.has(i.member));
          if (it) tip.show(it.x, it.y, describePoint(it, st)); else tip.hide();
          st.hover = it;
        } });
      const tip = C.tooltip(u);
      C.onPointClick(u, () => el.pbtState.hover, (it) => el.pbtState.onClick(it.number));
      return u;
    });
    return outside(d, range);
  }

  function laneOf(members) {
    const lanes = Array.from(new Set(members)).sort((a, b) => a - b);
    return { lanes: lanes, index: new Map(lanes.map((m, i) => [m, i])) };
  }

  function drawLineageMarks(u, ctx, s) {
    const k = ratio(), nodes = s.nodes, lane = (n) => s.lanes.index.get(n.member);
    for (let i = 1; i < nodes.length; i++) {
      const a = nodes[i - 1], b = nodes[i], copied = a.member !== b.member;
      const [x0, y0] = C.px(u, a.generation, lane(a)), [x1, y1] = C.px(u, b.generation, lane(b));
      ctx.strokeStyle = b.decision === "restart" ? RESTART : copied ? "#333" : "#999";
      ctx.lineWidth = (copied ? 1.3 : 2) * k;
      ctx.setLineDash(copied ? [4 * k, 3 * k] : []);
      ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); ctx.stroke();
    }
    ctx.setLineDash([]);
    const spacing = Math.abs(u.valToPos(1, "x", true) - u.valToPos(0, "x", true));
    const every = Math.max(1, Math.ceil(44 * k / Math.max(spacing, 1)));
    ctx.font = (11 * k) + "px system-ui, sans-serif"; ctx.textAlign = "center";
    nodes.forEach((n, i) => {
      const st = C.memberStyle(n.member), [x, y] = C.px(u, n.generation, lane(n));
      C.mark(ctx, st.shape, x, y, 5 * k);
      ctx.fillStyle = st.color; ctx.fill();
      if (n.number === s.selected) { ctx.strokeStyle = "#000"; ctx.lineWidth = 2 * k; ctx.stroke(); }
      if (i % every === 0 || i === nodes.length - 1) {
        ctx.fillStyle = "#444"; ctx.fillText("#" + n.number, x, y - 9 * k);
      }
    });
  }

  // ``objectives``: [[name, mode], ...] of a study of several (their values replace the fitness).
  function describeNode(n, names, objectives) {
    const copied = n.decision === "exploit" || n.decision === "restart" ? " (copied trial " + n.parent + ")" : "";
    const scores = objectives && objectives.length > 1 && n.values
      ? objectives.map((o, i) => o[0] + " " + C.fmtNum(n.values[i]) + " (" + o[1] + ")")
      : ["fitness " + C.fmtNum(n.fitness)];
    if (n.infeasible) scores.push("infeasible: " + n.infeasible);
    return ["trial " + n.number, "member " + n.member + ", generation " + n.generation,
      "steps " + n.start_step + "-" + n.end_step].concat(scores)
      .concat(["decision: " + (n.decision || "-") + copied])
      .concat(names.map((p) => p + " = " + C.fmtNum(n.params[p])));
  }

  // The lineage: one node per trial, generation (whole numbers) on x, one lane per member.
  function drawLineage(el, nodes, names, selected, onClick, objectives) {
    if (!nodes.length) {
      if (el.pbtView) { el.pbtView.u.destroy(); el.pbtView = null; }
      const p = document.createElement("p");
      p.className = "muted empty";
      p.textContent = "no lineage yet";
      el.replaceChildren(p);
      return;
    }
    const lanes = laneOf(nodes.map((n) => n.member));
    const s = { nodes: nodes, lanes: lanes, selected: selected, names: names, onClick: onClick,
      objectives: objectives,
      items: nodes.map((n) => ({ x: n.generation, y: lanes.index.get(n.member), node: n })) };
    el.pbtState = s;
    const height = Math.min(480, Math.max(170, 70 + 30 * lanes.lanes.length));
    keep(el, "lineage:" + lanes.lanes.join(","), () => {
      const u = C.chart(el, { height: height, xLabel: "generation", yLabel: "", integerX: true,
        categories: lanes.lanes.map((m) => "member " + m),
        xRange: () => {
          const g = el.pbtState.nodes.map((n) => n.generation);
          return [Math.min.apply(null, g) - 0.5, Math.max.apply(null, g) + 0.5];
        },
        yRange: () => [-0.85, el.pbtState.lanes.lanes.length - 0.5], yDir: -1,
        draw: (u, ctx) => drawLineageMarks(u, ctx, el.pbtState),
        onCursor: (u) => {
          const it = C.nearest(u, el.pbtState.items);
          if (it) tip.show(it.x, it.y, describeNode(it.node, el.pbtState.names, el.pbtState.objectives));
          else tip.hide();
          el.pbtState.hover = it;
        } });
      const tip = C.tooltip(u);
      C.onPointClick(u, () => el.pbtState.hover, (it) => el.pbtState.onClick(it.node.number));
      return u;
    });
  }

  window.pbtPlots = { drawPbtPlot: drawPbtPlot, drawLineage: drawLineage, outside: outside,
    RESTART: RESTART };
})();
