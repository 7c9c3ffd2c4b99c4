// Shared pieces of the dashboard's charts, built on the vendored uPlot (static/vendor/):
// member colours and marks, number formats, axes (1-2-5 ticks, log and categorical axes sized
// to their labels), a tooltip and the nearest-point search behind hover and click.
// Text from a study only ever reaches the page through textContent.
"use strict";

(function () {
  // matplotlib's tab10, so that a member has the same colour here and in `pbtune plot`.
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  const SHAPES = ["circle", "square", "triangle", "diamond"];
  const DASHES = [[], [6, 3], [2, 2], [8, 3, 2, 3]];
  const BEST = "#111";
  const FONT = "12px system-ui, sans-serif";
  const LABEL_FONT = "bold 12px system-ui, sans-serif";
  const HOVER_PX = 24; // how near the cursor a point must be to be described

  // A member's colour, and (past the palette's ten colours) its marker shape and line dash.
  function memberStyle(member) {
    const cycle = Math.floor(member / PALETTE.length);
    return { color: PALETTE[member % PALETTE.length], shape: SHAPES[cycle % SHAPES.length],
      dash: DASHES[cycle % DASHES.length] };
  }

  function fmtNum(v) {
    if (v === null || v === undefined) return "-";
    if (typeof v !== "number") return String(v);
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(3).replace(/\.?0+e/, "e");
    return Number(v.toPrecision(4)).toString();
  }

  // 1, 2 and 5 times a power of ten: the only steps a linear axis uses.
  function niceSteps(integer) {
    const out = [];
    for (let e = integer ? 0 : -15; e <= 15; e++) {
      [1, 2, 5].forEach((m) => out.push(Number((m * Math.pow(10, e)).toPrecision(12))));
    }
    return out;
  }

  function decimalsOf(step) {
    if (!step || step >= 1) return 0;
    return Math.min(15, Math.max(0, Math.ceil(-Math.log10(step) - 1e-9)));
  }

  // Tick labels of a linear axis: as many decimals as the tick step needs, no more.
  function linearValues(u, splits, axisIdx, space, step) {
    const d = decimalsOf(step);
    return splits.map((v) => (d > 6 ? fmtNum(v) : v.toFixed(d)));
  }

  // A log axis: a tick at every power of ten, and at 2 and 5 times it when the range spans
  // few decades, labelled 0.001 or 1e-4 (never cut to ").0002853").
  function logSplits(u, axisIdx, min, max) {
    const lo = Math.floor(Math.log10(min)), hi = Math.ceil(Math.log10(max));
    const every = Math.max(1, Math.ceil((hi - lo) / 8));
    const mults = hi - lo <= 3 ? [1, 2, 5] : [1];
    const out = [];
    for (let e = lo; e <= hi; e += every) {
      mults.forEach((m) => {
        const v = Number((m * Math.pow(10, e)).toPrecision(12));
        if (v >= min * (1 - 1e-9) && v <= max * (1 + 1e-9)) out.push(v);
      });
    }
    return out;
  }

  function logValue(v) {
    const e = Math.round(Math.log10(v));
    if (Math.abs(v - Math.pow(10, e)) < 1e-12 * Math.pow(10, e) && (e < -3 || e > 4)) return "1e" + e;
    return fmtNum(v);
  }

  // The width (or height) an axis needs for its longest label, so that none is clipped.
  function axisSize(u, values, axisIdx, cycleNum) {
    const axis = u.axes[axisIdx];
    if (cycleNum > 1) return axis._size;
    let size = axis.ticks.size + axis.gap + 6;
    const longest = (values || []).reduce((a, v) => (String(v).length > a.length ? String(v) : a), "");
    if (longest) {
      u.ctx.font = FONT;
      size += u.ctx.measureText(longest).width;
    }
    return Math.ceil(size);
  }

  // A y axis: linear, log (opts.log) or categorical (opts.categories: the labels of 0..n-1).
  function yAxis(label, opts) {
    const axis = { label: label, labelFont: LABEL_FONT, font: FONT, size: axisSize, gap: 4,
      grid: { stroke: "#eee" }, ticks: { stroke: "#ccc" } };
    if (opts.categories) {
      const names = opts.categories;
      const every = Math.max(1, Math.ceil(names.length * 16 / Math.max(opts.height || 200, 1)));
      axis.splits = () => names.map((n, i) => i).filter((i) => i % every === 0);
      axis.values = (u, splits) => splits.map((i) => names[i]);
    } else if (opts.log) {
      axis.splits = logSplits;
      axis.filter = (u, splits) => splits; // logSplits already thins them; uPlot would blank some
      axis.values = (u, splits) => splits.map((v) => (v === null ? "" : logValue(v)));
    } else {
      axis.incrs = niceSteps(false);
      axis.values = linearValues;
    }
    return axis;
  }

  function xAxis(label, integer) {
    return { label: label, labelFont: LABEL_FONT, font: FONT, gap: 4, incrs: niceSteps(integer),
      values: linearValues, grid: { stroke: "#eee" }, ticks: { stroke: "#ccc" } };
  }

  // A uPlot chart whose marks pbtune draws itself (draw(u, ctx) in canvas pixels): the one
  // series is empty, and the scales come from xRange() / yRange() (double-click restores them);
  // onCursor(u) follows the mouse, yDir -1 puts the first category at the top.
  function chart(el, o) {
    el.replaceChildren();
    const width = Math.max(300, el.clientWidth || o.width || 900);
    const u = new uPlot({
      width: width, height: o.height,
      scales: {
        x: { time: false, range: () => o.xRange() },
        y: Object.assign({ range: () => o.yRange(), dir: o.yDir || 1 },
          o.log ? { distr: 3, log: 10 } : {}),
      },
      axes: [xAxis(o.xLabel, o.integerX), yAxis(o.yLabel, { log: o.log, categories: o.categories,
        height: o.height })],
      series: [{}, { label: "marks", paths: () => null, points: { show: false } }],
      legend: { show: false },
      cursor: { drag: { x: true, y: true, uni: 30 }, points: { show: false }, focus: { prox: -1 } },
      hooks: {
        draw: [(u) => {
          const ctx = u.ctx;
          ctx.save();
          ctx.beginPath();
          ctx.rect(u.bbox.left, u.bbox.top, u.bbox.width, u.bbox.height);
          ctx.clip();
          o.draw(u, ctx);
          ctx.restore();
        }],
        setCursor: [(u) => { if (o.onCursor) o.onCursor(u); }],
      },
    }, [[0, 1], [null, null]], el);
    return u;
  }

  // Canvas pixel helpers (uPlot's valToPos(..., true) is in canvas pixels).
  function px(u, x, y) { return [u.valToPos(x, "x", true), u.valToPos(y, "y", true)]; }

  function mark(ctx, shape, x, y, r) {
    ctx.beginPath();
    if (shape === "square") ctx.rect(x - r, y - r, 2 * r, 2 * r);
    else if (shape === "triangle") { ctx.moveTo(x, y - r * 1.2); ctx.lineTo(x + r * 1.1, y + r * 0.8); ctx.lineTo(x - r * 1.1, y + r * 0.8); ctx.closePath(); }
    else if (shape === "diamond") { ctx.moveTo(x, y - r * 1.3); ctx.lineTo(x + r, y); ctx.lineTo(x, y + r * 1.3); ctx.lineTo(x - r, y); ctx.closePath(); }
    else ctx.arc(x, y, r, 0, 2 * Math.PI);
  }

  // An arrowhead at the plot's top or bottom edge: a point beyond the y-range.
  function edgeMark(ctx, x, y, up, r) {
    ctx.beginPath();
    ctx.moveTo(x, up ? y : y);
    ctx.lineTo(x - r, up ? y + 1.6 * r : y - 1.6 * r);
    ctx.lineTo(x + r, up ? y + 1.6 * r : y - 1.6 * r);
    ctx.closePath();
  }

  // The item of ``items`` (with .x, .y in data units) nearest the cursor, within HOVER_PX.
  function nearest(u, items, visible) {
    const cx = u.cursor.left, cy = u.cursor.top;
    if (cx === undefined || cx < 0) return null;
    const [ylo, yhi] = [u.scales.y.min, u.scales.y.max];
    let best = null, bestD = HOVER_PX * HOVER_PX;
    items.forEach((it) => {
      if (visible && !visible(it)) return;
      const y = Math.min(Math.max(it.y, ylo), yhi); // an outlier is hovered at its edge mark
      const dx = u.valToPos(it.x, "x") - cx, dy = u.valToPos(y, "y") - cy;
      const d = dx * dx + dy * dy;
      if (d <= bestD) { bestD = d; best = it; } // on a tie, the one drawn on top
    });
    return best;
  }

  // A tooltip and a hover ring inside the chart's overlay; show(item, lines) or hide().
  function tooltip(u) {
    const tip = document.createElement("div");
    tip.className = "tooltip";
    tip.hidden = true;
    const ring = document.createElement("div");
    ring.className = "hover-ring";
    ring.hidden = true;
    u.over.appendChild(ring);
    u.over.appendChild(tip);
    return {
      show(x, y, lines) {
        tip.replaceChildren();
        lines.forEach((line, i) => {
          const div = document.createElement("div");
          div.textContent = line;
          if (i === 0) div.className = "tip-head";
          tip.appendChild(div);
        });
        const cx = u.valToPos(x, "x");
        const cy = u.valToPos(Math.min(Math.max(y, u.scales.y.min), u.scales.y.max), "y");
        ring.style.left = (cx - 7) + "px";
        ring.style.top = (cy - 7) + "px";
        ring.hidden = false;
        tip.hidden = false;
        const w = u.over.clientWidth, h = u.over.clientHeight;
        const left = cx + 14 + tip.offsetWidth > w ? cx - 14 - tip.offsetWidth : cx + 14;
        const top = Math.min(Math.max(0, cy - tip.offsetHeight / 2), Math.max(0, h - tip.offsetHeight));
        tip.style.left = Math.max(0, left) + "px";
        tip.style.top = top + "px";
      },
      hide() { tip.hidden = true; ring.hidden = true; },
    };
  }

  // Calls onClick(item) for a click (not the end of a zoom drag) near an item.
  function onPointClick(u, pick, onClick) {
    let down = null;
    u.over.addEventListener("mousedown", (e) => { down = [e.clientX, e.clientY]; });
    u.over.addEventListener("click", (e) => {
      if (down && Math.hypot(e.clientX - down[0], e.clientY - down[1]) > 4) return;
      const item = pick();
      if (item) onClick(item);
    });
  }

  function paramsLines(names, values) {
    return names.map((n, i) => n + " = " + fmtNum(values[i]));
  }

  window.pbtCharts = { PALETTE: PALETTE, BEST: BEST, memberStyle: memberStyle, fmtNum: fmtNum,
    chart: chart, px: px, mark: mark, edgeMark: edgeMark, nearest: nearest, tooltip: tooltip,
    onPointClick: onPointClick, paramsLines: paramsLines, niceSteps: niceSteps,
    decimalsOf: decimalsOf };
})();
