// The schedules view: one chart per hyperparameter, its value against step along the chosen
// lineage (a black step line) over a sample of the population's values (grey dots); a log
// param on a log axis, a choice param on a categorical one.
"use strict";

(function () {
  const C = window.pbtCharts;

  function valueText(p, v) { return p.choices ? String(p.choices[v]) : C.fmtNum(v); }

  function yRange(p) {
    if (p.choices) return [-0.5, Math.max(0.5, p.choices.length - 0.5)];
    const vals = p.population.map((q) => q[2]).concat(p.lineage.map((q) => q[2]))
      .filter((v) => v !== null && (!p.log || v > 0));
    if (!vals.length) return p.log ? [0.1, 10] : [0, 1];
    let lo = Math.min.apply(null, vals), hi = Math.max.apply(null, vals);
    if (p.log) return [lo / 1.4, hi * 1.4];
    const pad = hi > lo ? (hi - lo) * 0.06 : Math.max(Math.abs(hi) * 0.1, 1);
    return [lo - pad, hi + pad];
  }

  function drawMarks(u, ctx, p) {
    const k = window.devicePixelRatio || 1;
    ctx.fillStyle = "rgba(120, 120, 120, 0.45)";
    p.population.forEach((q) => {
      const [x, y] = C.px(u, (q[0] + q[1]) / 2, q[2]);
      ctx.beginPath(); ctx.arc(x, y, 2.4 * k, 0, 2 * Math.PI); ctx.fill();
    });
    ctx.strokeStyle = C.BEST; ctx.lineWidth = 2.4 * k; ctx.lineJoin = "round";
    ctx.beginPath();
    let started = false;
    p.lineage.forEach((q) => {
      if (q[2] === null) { started = false; return; }
      const [x0, y] = C.px(u, q[0], q[2]), [x1] = C.px(u, q[1], q[2]);
      if (started) ctx.lineTo(x0, y); else ctx.moveTo(x0, y);
      ctx.lineTo(x1, y);
      started = true;
    });
    ctx.stroke();
  }

  function items(p) {
    const out = p.lineage.filter((q) => q[2] !== null).map((q) => ({ x: (q[0] + q[1]) / 2, y: q[2],
      head: "lineage", q: q }));
    return out.concat(p.population.map((q) => ({ x: (q[0] + q[1]) / 2, y: q[2], head: "population", q: q })));
  }

  function legend(trial) {
    const div = document.createElement("div");
    div.className = "legend small";
    [["swatch line best", "lineage of trial " + trial], ["swatch dot population", "population (sample)"]]
      .forEach((e) => {
        const item = document.createElement("span");
        item.className = "legend-item";
        const sw = document.createElement("span");
        sw.className = e[0];
        const text = document.createElement("span");
        text.textContent = e[1];
        item.append(sw, text);
        div.appendChild(item);
      });
    return div;
  }

  function drawOne(container, p, trial, index) {
    const box = document.createElement("div");
    box.className = "schedule";
    const title = document.createElement("h4");
    title.textContent = p.name;
    const note = document.createElement("span");
    note.className = "muted";
    note.textContent = p.choices ? "  (choice)" : p.log ? "  (log scale)" : "";
    title.appendChild(note);
    const plot = document.createElement("div");
    plot.className = "schedule-plot";
    box.append(title, legend(trial), plot);
    container.appendChild(box);
    const its = items(p);
    const u = C.chart(plot, { height: 230, xLabel: "step", yLabel: "", log: p.log && !p.choices,
      categories: p.choices ? p.choices.map(String) : null,
      xRange: () => {
        const steps = p.population.map((q) => q[1]).concat(p.lineage.map((q) => q[1]));
        return [0, Math.max(1, Math.max.apply(null, steps.concat([1])))];
      },
      yRange: () => yRange(p),
      draw: (u, ctx) => drawMarks(u, ctx, p),
      onCursor: (u) => {
        const it = C.nearest(u, its);
        if (!it) { tip.hide(); return; }
        tip.show(it.x, it.y, [p.name + " = " + valueText(p, it.y),
          it.head + ", steps " + it.q[0] + "-" + it.q[1]]);
      } });
    const tip = C.tooltip(u);
    u.root.setAttribute("data-param", String(index));
    return u;
  }

  // Replaces the container's charts with one per param of ``data`` (the schedules endpoint).
  function drawSchedules(container, data) {
    (container.pbtCharts || []).forEach((u) => u.destroy());
    container.replaceChildren();
    container.pbtCharts = data.params.map((p, i) => drawOne(container, p, data.trial, i));
  }

  window.pbtSchedules = { drawSchedules: drawSchedules };
})();
