// Loopline UI: draws the charts declared in the page and enables the compare button.
// Chart data sits in <script type="application/json"> blocks; uPlot (vendored) draws it.
"use strict";

(function () {
  const COLORS = ["#2d5bd7", "#e0772d", "#1e7d45", "#b3261e", "#7b4fd6", "#0e8a8a",
    "#c2185b", "#6d7a00", "#5d4037", "#455a64", "#ff8f00", "#3949ab"];

  // Merge series with their own x values onto one sorted x axis (null where absent).
  // Points of different series at the same x share a slot; a series' own repeats of an x
  // (a metric logged several times at one step, or without steps within a millisecond)
  // each get a slot of their own. One slot per distinct x kept only the last of them: a
  // spike logged between two equal x values was sent to the browser and never drawn.
  function align(series) {
    const points = [];
    series.forEach((s, k) => s.x.forEach((x, i) => points.push([x, k, i])));
    points.sort((a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2]);
    const xs = [];
    const ys = series.map(() => []);
    let taken = null;  // the series that already have a point in the current slot
    points.forEach(([x, k, i]) => {
      if (taken === null || x !== xs[xs.length - 1] || taken.has(k)) {
        xs.push(x);
        ys.forEach((col) => col.push(null));
        taken = new Set();
      }
      ys[k][xs.length - 1] = series[k].y[i];
      taken.add(k);
    });
    return [xs, ...ys];
  }

  const NUMBER = new Intl.NumberFormat();  // as uPlot writes ticks

  // An axis tick: in full up to a million, past it in short scientific notation (2e+18).
  function tick(v) {
    return Math.abs(v) < 1e6 ? NUMBER.format(v) : Number(v.toPrecision(3)).toExponential();
  }

  // uPlot places a point at (v - min) / (max - min) and ticks in steps of at most 5e31: a
  // metric of 1e40 got no y ticks, and finite values near the largest double (1.8e308),
  // whose span overflows to Infinity, no line either. Such a chart is drawn in units of a
  // power of ten (its "unit") and labelled with the data's own numbers.
  const HUGE = 1e30;

  function unitOf(columns) {
    let top = 0;
    columns.forEach((col) => col.forEach((v) => { if (v != null) top = Math.max(top, Math.abs(v)); }));
    return top >= HUGE ? Math.pow(10, Math.floor(Math.log10(top))) : 1;
  }

  function scaled(v, unit) {  // a value drawn in units of `unit`, written as the data's
    const x = v * unit;
    if (isFinite(x)) return tick(x);
    return Number(v.toPrecision(3)) + "e+" + Math.round(Math.log10(unit));  // past 1.8e308
  }

  function options(spec, width, height, unit) {
    const kind = spec.kind;
    const opts = {
      width: width, height: height,
      legend: { show: true, live: kind !== "bars" },
      cursor: { drag: { x: kind !== "bars", y: false } },
      scales: { x: { time: false } },
      axes: [{ label: spec.x_label || "" }, { label: spec.y_label || "" }],
      series: [{ label: spec.x_label || "x" }],
    };
    if (!spec.x_time && kind !== "bars") {
      // Steps run to 2**63: in full, their ticks ran into each other and could not be read.
      opts.axes[0].values = (u, splits) => splits.map((v) => (v == null ? "" : tick(v)));
    }
    if (unit !== 1) {
      opts.axes[1].values = (u, splits) => splits.map((v) => (v == null ? "" : scaled(v, unit)));
      opts.axes[1].size = 70;
    }
    if (spec.x_time) {  // x in epoch seconds, shown in UTC like the rest of the UI
      opts.scales.x = { time: true };
      opts.tzDate = (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC");
    }
    if (kind === "bars") {
      const labels = spec.labels || [];
      opts.scales.x = { time: false, range: [-0.5, Math.max(labels.length - 0.5, 0.5)] };
      opts.axes[0].splits = () => labels.map((_, i) => i);
      opts.axes[0].values = (u, splits) => splits.map((i) => {
        const text = labels[i] == null ? "" : String(labels[i]);
        return text.length > 14 ? text.slice(0, 13) + "…" : text;
      });
      opts.axes[0].rotate = labels.length > 8 ? -40 : 0;
      opts.axes[0].size = labels.length > 8 ? 70 : 40;
      opts.series[0].value = (u, v) => (v == null ? "" : labels[v]);
    }
    spec.series.forEach((s, i) => {
      const color = COLORS[i % COLORS.length];
      const serie = { label: s.label, stroke: color, width: 1.5, spanGaps: true,
        points: { show: s.x.length < 60 } };
      if (unit !== 1) serie.value = (u, v) => (v == null ? "" : scaled(v, unit));
      if (kind === "steps") {
        serie.paths = uPlot.paths.stepped({ align: 1 });
        serie.fill = color + "22";
      }
      if (kind === "bars") {
        const n = spec.series.length;
        serie.paths = uPlot.paths.bars({ size: [0.8 / n, 60], align: i === 0 ? -1 : 1 });
        serie.fill = color + (i === 0 ? "99" : "cc");
        serie.width = 0;
        serie.points = { show: false };
        serie.value = (u, v) => (v == null ? "" : v.toFixed(2));
      }
      opts.series.push(serie);
    });
    return opts;
  }

  function draw(figure) {
    const block = document.getElementById(figure.dataset.chart);
    if (!block || typeof uPlot === "undefined") return;
    const spec = JSON.parse(block.textContent);
    const height = Number(figure.dataset.height || 220);
    const width = Math.max(260, figure.clientWidth - 16);
    const data = spec.kind === "bars"
      ? [spec.series[0].x, ...spec.series.map((s) => s.y)]
      : align(spec.series);
    const unit = unitOf(data.slice(1));
    for (let i = 1; unit !== 1 && i < data.length; i++) {
      data[i] = data[i].map((v) => (v == null ? v : v / unit));
    }
    const opts = options(spec, width, height, unit);
    if (spec.kind !== "bars" && data[0].length === 1) {  // one point: centre it
      const x = data[0][0];
      const half = spec.x_time ? 1800 : 1;
      opts.scales.x = Object.assign({}, opts.scales.x, { range: [x - half, x + half] });
    }
    const plot = new uPlot(opts, data, figure);
    figure.uplot = plot;  // for the browser tests: scales and axis ticks as drawn
    figure.unit = unit;
    figure.classList.add("drawn");
    new ResizeObserver(() => {
      const w = Math.max(260, figure.clientWidth - 16);
      if (Math.abs(w - plot.width) > 4) plot.setSize({ width: w, height: height });
    }).observe(figure);
  }

  function compareButton() {
    const button = document.getElementById("compare-button");
    if (!button) return;
    const label = document.getElementById("compare-count");
    const boxes = Array.from(document.querySelectorAll('input[type=checkbox][form="compare-form"]'));
    const update = () => {
      const n = boxes.filter((b) => b.checked).length;
      button.disabled = n < 2;
      label.textContent = n < 2 ? "tick two or more runs" : n + " runs selected";
    };
    boxes.forEach((b) => b.addEventListener("change", update));
    update();
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("figure.chart[data-chart]").forEach(draw);
    compareButton();
  });
})();
