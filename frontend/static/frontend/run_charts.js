// Metric charts of one run or several overlaid (Chart.js): grouped by what they measure, integer step axes,
// readable tick labels, a smoothing slider (TensorBoard's debiased moving average), a log scale where every value is
// positive, and series that never change listed as text instead of drawn as flat lines.
"use strict";

const RunCharts = (() => {
  // First match wins: a key's group is read from its name.
  const GROUPS = [
    ["Loss", /loss/],
    ["Reward and accuracy", /reward|accuracy|gold|win_rate|score/],
    ["KL, clipping and ratios", /kl|clip|ratio|advantage|grad_norm/],
    ["Throughput and time", /seconds|per_second|throughput|optimizer_steps|images_per|samples_per/],
    ["System and schedule", /memory|gpu|cpu|attempt|learning_rate|^lr$|prompts_|threads|epoch$/],
  ];
  const OTHER = "Other";
  const COLOURS = ["#0b5fff", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#0550ae", "#bc4c00", "#57606a"];

  function groupOf(key) {
    for (const [name, pattern] of GROUPS) if (pattern.test(key)) return name;
    return OTHER;
  }

  // A value in a tooltip or a list: 3 significant digits, exponents only for very large or very small magnitudes.
  function formatNumber(value) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    const size = Math.abs(value);
    if (size === 0) return "0";
    if (size >= 1e5 || size < 1e-3) return value.toExponential(2);
    return String(Number(value.toPrecision(3)));
  }

  // An axis tick: as many decimals as the spacing between ticks needs (0.300, 0.301… not 0.3, 0.3…), a tick that
  // is zero up to rounding shown as 0, exponents (short) only when the whole axis is very large or very small.
  function tickLabel(value, index, ticks) {
    const step = ticks.length > 1 ? Math.abs(ticks[1].value - ticks[0].value) : 0;
    if (!step) return formatNumber(value);
    if (Math.abs(value) < step * 1e-6) return "0";
    const size = Math.max(...ticks.map((t) => Math.abs(t.value)));
    if (size >= 1e5 || size < 1e-3) {
      return value.toExponential(Math.min(4, Math.max(0, Math.ceil(Math.log10(size / step)))));
    }
    return value.toFixed(Math.min(8, Math.max(0, Math.ceil(-Math.log10(step) - 1e-9))));
  }

  // Exponential moving average with the start-up bias removed (as TensorBoard's slider); nulls stay gaps.
  function smooth(points, weight) {
    if (!weight) return points;
    let average = 0, count = 0;
    return points.map((point) => {
      if (point.y === null) return point;
      average = average * weight + (1 - weight) * point.y;
      count += 1;
      return {x: point.x, y: average / (1 - Math.pow(weight, count))};
    });
  }

  // One value so far, or the same value at every step (an attempt counter): text, not a flat line. A live run's
  // series moves from the text to a chart when its values start to differ.
  function isConstant(series) {
    const values = series.flatMap((s) => s.points.map((p) => p.y)).filter((y) => y !== null);
    return values.length > 0 && values.every((y) => y === values[0]);
  }

  class Board {
    // runs: [{id, label}], container: an element; the board fills it with its controls and grouped charts.
    constructor(container, {csvUrl = null} = {}) {
      this.container = container;
      this.charts = new Map();
      this.data = new Map();  // key -> [{label, colour, points}]
      this.smoothing = 0;
      container.replaceChildren();
      const controls = document.createElement("div");
      controls.className = "chart-controls";
      controls.innerHTML = `<label class="check">Smoothing <input type="range" min="0" max="0.99" step="0.01" value="0"
        aria-label="smoothing"> <output>0</output></label>`;
      if (csvUrl) {
        const link = document.createElement("a");
        link.className = "button"; link.href = csvUrl; link.textContent = "Download metrics (CSV)";
        link.dataset.role = "metrics-csv";
        controls.append(link);
      }
      const slider = controls.querySelector("input"), shown = controls.querySelector("output");
      slider.addEventListener("input", () => {
        this.smoothing = Number(slider.value);
        shown.textContent = slider.value;
        for (const key of this.charts.keys()) this.draw(key);
      });
      this.constants = document.createElement("p");
      this.constants.className = "muted small constant-metrics";
      this.groups = document.createElement("div");
      this.empty = document.createElement("p");
      this.empty.className = "muted"; this.empty.id = "no-metrics"; this.empty.textContent = "No metrics yet.";
      container.append(controls, this.empty, this.groups, this.constants);
    }

    // runs: [{label, metrics: {key: [[step, value], ...]}}]
    update(runs) {
      const keys = [...new Set(runs.flatMap((run) => Object.keys(run.metrics || {})))].sort();
      this.empty.hidden = keys.length > 0;
      const constants = [];
      for (const key of keys) {
        const series = runs.map((run, index) => ({
          label: run.label,
          colour: COLOURS[index % COLOURS.length],
          points: (run.metrics[key] || []).map(([x, y]) => ({x, y})),
        }));
        this.data.set(key, series);
        if (isConstant(series)) {
          const first = series.flatMap((s) => s.points).find((p) => p.y !== null);
          constants.push(`${key} = ${formatNumber(first.y)}`);
          this.remove(key);
          continue;
        }
        this.draw(key);
      }
      this.constants.textContent = constants.length ? `Constant: ${constants.join(" · ")}` : "";
    }

    remove(key) {
      const existing = this.charts.get(key);
      if (!existing) return;
      const box = existing.chart.canvas.closest(".chart-box"), section = box.closest(".metric-group");
      existing.chart.destroy();
      box.remove();
      if (!section.querySelector(".chart-box")) section.remove();
      this.charts.delete(key);
    }

    section(group) {
      let section = this.groups.querySelector(`section[data-group="${group}"]`);
      if (section) return section.querySelector(".charts");
      section = document.createElement("section");
      section.className = "metric-group"; section.dataset.group = group;
      section.innerHTML = `<h3></h3><div class="charts"></div>`;
      section.querySelector("h3").textContent = group;
      const order = [...GROUPS.map(([name]) => name), OTHER];
      const after = [...this.groups.children].find((s) => order.indexOf(s.dataset.group) > order.indexOf(group));
      this.groups.insertBefore(section, after || null);
      return section.querySelector(".charts");
    }

    draw(key) {
      const series = this.data.get(key);
      const datasets = series.flatMap((s) => {
        const smoothed = {label: s.label, data: smooth(s.points, this.smoothing), borderColor: s.colour,
                          backgroundColor: s.colour, pointRadius: s.points.length > 60 ? 0 : 2, borderWidth: 2};
        if (!this.smoothing) return [smoothed];
        const raw = {label: `${s.label} (raw)`, data: s.points, borderColor: `${s.colour}40`, pointRadius: 0,
                     borderWidth: 1, raw: true};
        return [raw, smoothed];
      });
      const existing = this.charts.get(key);
      if (existing) {
        existing.chart.data.datasets = datasets;
        existing.chart.options.scales.y.type = existing.log.checked ? "logarithmic" : "linear";
        existing.chart.update("none");
        return;
      }
      const box = document.createElement("div");
      box.className = "chart-box"; box.dataset.metric = key;
      box.innerHTML = `<h4></h4><canvas role="img"></canvas>
        <label class="check small">log scale <input type="checkbox" data-role="log"></label>`;
      box.querySelector("h4").textContent = key;
      box.querySelector("canvas").setAttribute("aria-label", `Plot of ${key} by step`);
      const log = box.querySelector("input");
      const positive = series.every((s) => s.points.every((p) => p.y === null || p.y > 0));
      log.disabled = !positive;
      if (!positive) log.parentElement.title = "a log scale needs every value above 0";
      this.section(groupOf(key)).appendChild(box);
      const chart = new Chart(box.querySelector("canvas"), {
        type: "line",
        data: {datasets},
        options: {
          animation: false, parsing: false, spanGaps: false,
          plugins: {
            legend: {display: series.length > 1, labels: {filter: (item, data) => !data.datasets[item.datasetIndex].raw}},
            tooltip: {callbacks: {label: (c) => `${c.dataset.label}: ${formatNumber(c.parsed.y)}`,
                                  title: (items) => `step ${items[0].parsed.x}`}},
          },
          scales: {
            x: {type: "linear", title: {display: true, text: "step"}, ticks: {precision: 0}},
            y: {type: "linear", ticks: {callback: tickLabel}},
          },
        },
      });
      log.addEventListener("change", () => this.draw(key));
      this.charts.set(key, {chart, log});
    }
  }

  return {Board, formatNumber, tickLabel, groupOf, smooth};
})();
