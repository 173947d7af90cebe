// The reports' charts, drawn by uPlot (the npm package, served at /vendor/uplot.esm.js:
// canvas, no inline styles or eval, so the strict CSP allows it): calls and abandons
// per hour, service level and waits per day. Colours come from the page's CSS
// variables; a chart follows its container's width.

import { h, render } from "./ui.js";

const HEIGHT = 260;
const charts = new Map(); // container -> its uPlot
let loading = null;

function uPlotModule() {
  loading ??= import("/vendor/uplot.esm.js").then((module) => module.default);
  return loading;
}

const resizer = new ResizeObserver((entries) => {
  for (const entry of entries) {
    const chart = charts.get(entry.target);
    const width = Math.floor(entry.contentRect.width);
    if (chart && width > 0 && width !== chart.width) chart.setSize({ width, height: HEIGHT });
  }
});

const color = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

/** ``hex`` (#rrggbb) at ``alpha`` (0–1), for bar fills. */
function tint(hex, alpha) {
  return /^#[0-9a-f]{6}$/i.test(hex) ? hex + Math.round(alpha * 255).toString(16).padStart(2, "0") : hex;
}

function axis(extra = {}) {
  const line = { stroke: color("--border"), width: 1 };
  return { stroke: color("--muted"), grid: line, ticks: line, ...extra };
}

/** Draw (or redraw) a chart in ``container``; a hint there if uPlot cannot be loaded. */
async function draw(container, build) {
  let uPlot;
  try {
    uPlot = await uPlotModule();
  } catch {
    render(container, h("p.hint", {}, "Charts need the uPlot package: run `npm install`, then reload."));
    return;
  }
  charts.get(container)?.destroy();
  render(container);
  const [options, data] = build(uPlot);
  const width = Math.max(280, Math.floor(container.clientWidth));
  const chart = new uPlot({ width, height: HEIGHT, ...options }, data, container);
  charts.set(container, chart);
  resizer.observe(container);
}

function centerTime(uPlot, zone) {
  try {
    uPlot.tzDate(new Date(), zone);
    return (ts) => uPlot.tzDate(new Date(ts * 1e3), zone);
  } catch {
    return undefined; // a zone this browser does not know: its own
  }
}

const count = (u, value) => (value === null || value === undefined ? "—" : String(value));
const wholeTicks = (u, ticks) => ticks.map((t) => (Number.isInteger(t) ? String(t) : ""));

/** Offered calls (bars) and the abandoned among them (narrower bars) per hour bucket. */
export function hourlyChart(container, rows, zone) {
  return draw(container, (uPlot) => {
    const accent = color("--accent");
    const red = color("--red");
    return [{
      tzDate: centerTime(uPlot, zone),
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(4, max + 1)] } },
      series: [
        { label: "Hour", value: "{YYYY}-{MM}-{DD} {HH}:00" },
        { label: "Offered", value: count, stroke: accent, fill: tint(accent, 0.45), paths: uPlot.paths.bars({ size: [0.9, 40] }), points: { show: false } },
        { label: "Abandoned", value: count, stroke: red, fill: tint(red, 0.8), paths: uPlot.paths.bars({ size: [0.45, 20] }), points: { show: false } },
      ],
      axes: [axis(), axis({ values: wholeTicks })],
    }, [
      rows.map((row) => Date.parse(row.bucket) / 1000),
      rows.map((row) => row.offered),
      rows.map((row) => row.abandoned),
    ]];
  });
}

/** Service level (%, left axis) and mean and 90th-percentile waits (s, right) per day. */
export function dailyChart(container, rows) {
  return draw(container, () => {
    const day = (i) => rows[i]?.bucket ?? "";
    const percent = (u, v) => (v === null || v === undefined ? "—" : `${Math.round(v)}%`);
    const seconds = (u, v) => (v === null || v === undefined ? "—" : `${Math.round(v)} s`);
    const toSeconds = (ms) => (ms === null || ms === undefined ? null : ms / 1000);
    return [{
      scales: {
        x: { time: false, range: () => [-0.5, Math.max(0.5, rows.length - 0.5)] },
        pct: { range: [0, 100] },
        s: { range: (u, min, max) => [0, Math.max(10, Math.ceil((max || 0) * 1.1))] },
      },
      series: [
        { label: "Day", value: (u, i) => day(i) },
        { label: "Service level", scale: "pct", value: percent, stroke: color("--green"), width: 2, points: { show: true, size: 6 } },
        { label: "Mean wait", scale: "s", value: seconds, stroke: color("--blue"), width: 2, points: { show: true, size: 6 } },
        { label: "90th percentile wait", scale: "s", value: seconds, stroke: color("--amber"), width: 2, dash: [6, 4], points: { show: true, size: 6 } },
      ],
      axes: [
        axis({ incrs: [1, 2, 5, 7, 14, 30, 60], values: (u, ticks) => ticks.map((i) => day(i).slice(5)) }),
        axis({ scale: "pct", values: (u, ticks) => ticks.map((t) => `${t}%`) }),
        axis({ scale: "s", side: 1, grid: { show: false }, values: (u, ticks) => ticks.map((t) => `${t} s`) }),
      ],
    }, [
      rows.map((row, i) => i),
      rows.map((row) => (row.service_level === null ? null : row.service_level * 100)),
      rows.map((row) => toSeconds(row.wait_mean_ms)),
      rows.map((row) => toSeconds(row.wait_p90_ms)),
    ]];
  });
}
