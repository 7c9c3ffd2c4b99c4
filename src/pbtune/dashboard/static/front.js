// The front view of a study of several objectives (the /api/front endpoint). Two objectives:
// a scatter on a uPlot chart (charts.js), every COMPLETE trial faint, the members' latest
// trials in their colours, the Pareto front ringed and joined by its step line, infeasible
// trials crossed. Three or more: parallel coordinates on a plain canvas, an axis per
// objective turned so that better is up, the front's lines thick. Hover describes a trial,
// a click shows its lineage; a table lists the front. Text reaches the page as textContent.
"use strict";

(function () {
  const C = window.pbtCharts;
  const FRONT = "#111";
  const FAINT = "rgba(150, 150, 150, 0.55)";
  const INFEASIBLE = "#c0392b";
  const HOVER_PX = 8; // how near a parallel-coordinates line the cursor must be

  function ratio() { return window.devicePixelRatio || 1; }

  function label(o) { return o.name + " (" + o.mode + ")"; }

  function describe(t, d) {
    const lines = ["trial " + t.number, "member " + t.member + ", steps " + t.start_step + "-" + t.end_step];
    d.objectives.forEach((o, i) => lines.push(label(o) + " " + C.fmtNum(t.values[i])));
    lines.push(t.front ? "on the Pareto front" : t.latest ? "the member's latest trial" : "an earlier trial");
    if (t.infeasible) lines.push("infeasible: " + t.infeasible);
    return lines.concat(C.paramsLines(d.params, t.params));
  }

  function span(values) {
    let lo = Math.min.apply(null, values), hi = Math.max.apply(null, values);
    const pad = hi > lo ? (hi - lo) * 0.06 : Math.max(Math.abs(hi) * 0.05, 1e-9);
    return [lo - pad, hi + pad];
  }

  function cross(ctx, x, y, r) {
    ctx.beginPath(); ctx.moveTo(x - r, y - r); ctx.lineTo(x + r, y + r);
    ctx.moveTo(x + r, y - r); ctx.lineTo(x - r, y + r); ctx.stroke();
  }

  function drawScatterMarks(u, ctx, s) {
    const k = ratio(), d = s.data;
    d.trials.forEach((t) => {
      if (t.latest) return;
      const [x, y] = C.px(u, t.values[0], t.values[1]);
      ctx.beginPath(); ctx.arc(x, y, 2.4 * k, 0, 2 * Math.PI); ctx.fillStyle = FAINT; ctx.fill();
    });
    if (d.steps && d.steps.length > 1) {
      ctx.strokeStyle = FRONT; ctx.lineWidth = 1.6 * k; ctx.beginPath();
      d.steps.forEach((p, i) => { const [x, y] = C.px(u, p[0], p[1]); if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y); });
      ctx.stroke();
    }
    d.trials.forEach((t) => {
      if (!t.latest) return;
      const st = C.memberStyle(t.member), [x, y] = C.px(u, t.values[0], t.values[1]);
      C.mark(ctx, st.shape, x, y, 4 * k); ctx.fillStyle = st.color; ctx.fill();
    });
    d.trials.forEach((t) => {
      const [x, y] = C.px(u, t.values[0], t.values[1]);
      if (t.front) {
        ctx.beginPath(); ctx.arc(x, y, 7.5 * k, 0, 2 * Math.PI);
        ctx.strokeStyle = FRONT; ctx.lineWidth = 1.8 * k; ctx.stroke();
      }
      if (t.infeasible) { ctx.strokeStyle = INFEASIBLE; ctx.lineWidth = 1.6 * k; cross(ctx, x, y, 4 * k); }
      if (t.number === s.selected) {
        ctx.beginPath(); ctx.arc(x, y, 10 * k, 0, 2 * Math.PI);
        ctx.strokeStyle = "#000"; ctx.lineWidth = 2.4 * k; ctx.stroke();
      }
    });
  }

  function drawScatter(el, s) {
    const d = s.data, o = d.objectives;
    s.items = d.trials.map((t) => ({ x: t.values[0], y: t.values[1], trial: t }));
    s.xr = span(s.items.map((it) => it.x));
    s.yr = span(s.items.map((it) => it.y));
    el.pbtState = s;
    const u = C.chart(el, { height: 380, xLabel: label(o[0]), yLabel: label(o[1]),
      xRange: () => el.pbtState.xr, yRange: () => el.pbtState.yr,
      draw: (u, ctx) => drawScatterMarks(u, ctx, el.pbtState),
      onCursor: (u) => {
        const it = C.nearest(u, el.pbtState.items);
        if (it) tip.show(it.x, it.y, describe(it.trial, el.pbtState.data)); else tip.hide();
        el.pbtState.hover = it;
      } });
    const tip = C.tooltip(u);
    C.onPointClick(u, () => el.pbtState.hover, (it) => el.pbtState.onClick(it.trial.number));
    return u;
  }

  // Parallel coordinates: x of axis i, and a value's height on its axis (better up).
  function layout(el, d) {
    const width = Math.max(300, el.clientWidth || 900), height = 360;
    const left = 120, right = 120, top = 40, bottom = 40; // room for the axes' names
    const n = d.objectives.length;
    const scales = d.objectives.map((o, i) => {
      const vals = d.trials.map((t) => t.values[i]);
      const lo = Math.min.apply(null, vals), hi = Math.max.apply(null, vals);
      return { lo: lo, hi: hi, best: o.mode === "max" ? hi : lo, worst: o.mode === "max" ? lo : hi };
    });
    return { width: width, height: height, top: top, bottom: height - bottom, scales: scales,
      x: (i) => left + i * (width - left - right) / Math.max(1, n - 1),
      y: (i, v) => {
        const sc = scales[i], share = sc.hi > sc.lo ? (v - sc.lo) / (sc.hi - sc.lo) : 0.5;
        const up = d.objectives[i].mode === "max" ? share : 1 - share;
        return height - bottom - up * (height - bottom - top);
      } };
  }

  function polyline(L, t) { return t.values.map((v, i) => [L.x(i), L.y(i, v)]); }

  function drawParallelMarks(ctx, s) {
    const d = s.data, L = s.layout, k = ratio();
    ctx.save(); ctx.scale(k, k);
    ctx.clearRect(0, 0, L.width, L.height);
    const ordered = d.trials.slice().sort((a, b) => (a.front - b.front) || (a.latest - b.latest));
    ordered.forEach((t) => {
      const pts = polyline(L, t);
      ctx.setLineDash(t.infeasible ? [4, 3] : []);
      if (t.front) { // a highlighter under the member's line, as the best lineage elsewhere
        ctx.strokeStyle = "rgba(255, 190, 0, 0.5)"; ctx.lineWidth = 8; ctx.lineJoin = "round";
        ctx.beginPath(); pts.forEach((p, i) => (i ? ctx.lineTo(p[0], p[1]) : ctx.moveTo(p[0], p[1]))); ctx.stroke();
      }
      ctx.strokeStyle = t.latest || t.front ? C.memberStyle(t.member).color : FAINT;
      ctx.lineWidth = t.front ? 2.4 : t.latest ? 1.2 : 0.8;
      if (t.number === s.selected) { ctx.strokeStyle = "#000"; ctx.lineWidth = 3; }
      ctx.beginPath(); pts.forEach((p, i) => (i ? ctx.lineTo(p[0], p[1]) : ctx.moveTo(p[0], p[1]))); ctx.stroke();
    });
    ctx.setLineDash([]);
    ctx.font = "12px system-ui, sans-serif"; ctx.fillStyle = "#222"; ctx.textAlign = "center";
    d.objectives.forEach((o, i) => {
      const x = L.x(i);
      ctx.strokeStyle = "#555"; ctx.lineWidth = 1;
      ctx.beginPath(); ctx.moveTo(x, L.top); ctx.lineTo(x, L.bottom); ctx.stroke();
      ctx.font = "bold 12px system-ui, sans-serif";
      ctx.fillText(label(o) + " \u2191 better", x, L.top - 22);
      ctx.font = "11px system-ui, sans-serif";
      ctx.fillText(C.fmtNum(L.scales[i].best), x, L.top - 6);
      ctx.fillText(C.fmtNum(L.scales[i].worst), x, L.bottom + 16);
    });
    ctx.restore();
  }

  function segmentDistance(px, py, a, b) {
    const dx = b[0] - a[0], dy = b[1] - a[1], len = dx * dx + dy * dy;
    const t = len ? Math.max(0, Math.min(1, ((px - a[0]) * dx + (py - a[1]) * dy) / len)) : 0;
    return Math.hypot(px - a[0] - t * dx, py - a[1] - t * dy);
  }

  // The trial whose line passes nearest (x, y), front and latest ones first on a tie.
  function nearestLine(s, x, y) {
    let best = null, bestD = HOVER_PX;
    s.data.trials.forEach((t) => {
      const pts = polyline(s.layout, t);
      for (let i = 1; i < pts.length; i++) {
        const dist = segmentDistance(x, y, pts[i - 1], pts[i]) - (t.front ? 0.5 : t.latest ? 0.25 : 0);
        if (dist <= bestD) { bestD = dist; best = t; }
      }
    });
    return best;
  }

  function drawParallel(el, s) {
    el.replaceChildren();
    const L = layout(el, s.data), k = ratio();
    s.layout = L;
    el.pbtState = s;
    const canvas = document.createElement("canvas");
    canvas.className = "parallel";
    canvas.width = L.width * k; canvas.height = L.height * k;
    canvas.style.width = L.width + "px"; canvas.style.height = L.height + "px";
    const tip = document.createElement("div");
    tip.className = "tooltip"; tip.hidden = true;
    el.append(canvas, tip);
    drawParallelMarks(canvas.getContext("2d"), s);
    canvas.addEventListener("mousemove", (e) => {
      const box = canvas.getBoundingClientRect(), x = e.clientX - box.left, y = e.clientY - box.top;
      const t = nearestLine(el.pbtState, x, y);
      el.pbtState.hover = t;
      if (!t) { tip.hidden = true; return; }
      tip.replaceChildren();
      describe(t, el.pbtState.data).forEach((line, i) => {
        const div = document.createElement("div");
        div.textContent = line;
        if (i === 0) div.className = "tip-head";
        tip.appendChild(div);
      });
      tip.hidden = false;
      tip.style.left = Math.max(0, x + 14 + tip.offsetWidth > L.width ? x - 14 - tip.offsetWidth : x + 14) + "px";
      tip.style.top = Math.max(0, Math.min(y - tip.offsetHeight / 2, L.height - tip.offsetHeight)) + "px";
    });
    canvas.addEventListener("mouseleave", () => { tip.hidden = true; el.pbtState.hover = null; });
    canvas.addEventListener("click", () => { if (el.pbtState.hover) el.pbtState.onClick(el.pbtState.hover.number); });
  }

  function legendItem(text, draw) {
    const item = document.createElement("span");
    item.className = "legend-item";
    const k = ratio(), canvas = document.createElement("canvas");
    canvas.width = 22 * k; canvas.height = 12 * k; canvas.className = "swatch";
    draw(canvas.getContext("2d"), k);
    const span = document.createElement("span");
    span.textContent = text;
    item.append(canvas, span);
    return item;
  }

  function drawLegend(box, d) {
    box.replaceChildren();
    const two = d.objectives.length === 2, n = d.front.length;
    box.appendChild(legendItem("Pareto front: " + n + " trial" + (n === 1 ? "" : "s"), (ctx, k) => {
      if (two) { ctx.beginPath(); ctx.arc(11 * k, 6 * k, 4.5 * k, 0, 2 * Math.PI); ctx.strokeStyle = FRONT; ctx.lineWidth = 1.6 * k; ctx.stroke(); }
      else { ctx.strokeStyle = "rgba(255, 190, 0, 0.6)"; ctx.lineWidth = 7 * k; ctx.beginPath(); ctx.moveTo(0, 6 * k); ctx.lineTo(22 * k, 6 * k); ctx.stroke(); }
    }));
    box.appendChild(legendItem("the members' latest trials (member colours)", (ctx, k) => {
      ctx.fillStyle = C.PALETTE[0]; ctx.beginPath(); ctx.arc(6 * k, 6 * k, 3.5 * k, 0, 2 * Math.PI); ctx.fill();
      ctx.fillStyle = C.PALETTE[1]; ctx.beginPath(); ctx.arc(16 * k, 6 * k, 3.5 * k, 0, 2 * Math.PI); ctx.fill();
    }));
    box.appendChild(legendItem("earlier trials", (ctx, k) => {
      ctx.fillStyle = FAINT; ctx.beginPath(); ctx.arc(11 * k, 6 * k, 2.6 * k, 0, 2 * Math.PI); ctx.fill();
    }));
    if (d.constraints.length) {
      box.appendChild(legendItem("infeasible: breaks " + d.constraints.join(", "), (ctx, k) => {
        if (two) { ctx.strokeStyle = INFEASIBLE; ctx.lineWidth = 1.6 * k; cross(ctx, 11 * k, 6 * k, 4 * k); }
        else { ctx.strokeStyle = "#777"; ctx.setLineDash([4 * k, 3 * k]); ctx.lineWidth = 1.2 * k; ctx.beginPath(); ctx.moveTo(0, 6 * k); ctx.lineTo(22 * k, 6 * k); ctx.stroke(); }
      }));
    }
  }

  function fillTable(table, d, onClick) {
    const head = table.tHead.rows[0], body = table.tBodies[0];
    head.replaceChildren(); body.replaceChildren();
    const names = ["trial", "member", "steps"].concat(d.objectives.map(label))
      .concat(d.constraints.length ? ["feasible"] : []).concat(["params"]);
    names.forEach((n) => { const th = document.createElement("th"); th.textContent = n; head.appendChild(th); });
    d.trials.filter((t) => t.front).forEach((t) => {
      const tr = document.createElement("tr");
      tr.setAttribute("data-trial", t.number);
      const cells = [String(t.number), String(t.member), t.start_step + "-" + t.end_step]
        .concat(t.values.map(C.fmtNum))
        .concat(d.constraints.length ? [t.infeasible ? "no: " + t.infeasible : "yes"] : [])
        .concat([d.params.map((p, i) => p + "=" + C.fmtNum(t.params[i])).join(", ")]);
      cells.forEach((text) => { const td = document.createElement("td"); td.textContent = text; tr.appendChild(td); });
      if (t.infeasible) tr.className = "infeasible";
      tr.addEventListener("click", () => onClick(t.number));
      body.appendChild(tr);
    });
  }

  // Draws the front view into ``el`` and its legend and table: ``s`` = {data (the front
  // endpoint), selected (a trial number), onClick(number), legend, table}.
  function drawFront(el, s) {
    if (el.pbtFront) { el.pbtFront.destroy(); el.pbtFront = null; }
    const d = s.data;
    drawLegend(s.legend, d);
    fillTable(s.table, d, s.onClick);
    if (!d.trials.length) {
      const p = document.createElement("p");
      p.className = "muted empty";
      p.textContent = "no finished trial yet";
      el.replaceChildren(p);
      return;
    }
    if (d.objectives.length === 2) el.pbtFront = drawScatter(el, s);
    else drawParallel(el, s);
  }

  window.pbtFront = { drawFront: drawFront };
})();
