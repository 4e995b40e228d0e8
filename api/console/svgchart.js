// Small SVG charts for the console: a line (or step) chart on a time or category axis with labelled threshold
// lines, a grouped bar chart, and a sparkline. No library: the console is served as plain files.
// Every chart is a <figure> whose <svg> takes the keyboard focus: the arrow keys (and the mouse) move a cursor
// whose values are read out in a tooltip that is also a polite live region.

import { element, svg } from "./dom.js";

const MARGIN = { top: 12, right: 14, bottom: 26, left: 48 };
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const TIME_STEPS = [MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR,
  12 * HOUR, DAY, 2 * DAY, 7 * DAY];

/** Round tick values from `min` to `max`, about `count` of them (1, 2 or 5 times a power of ten apart). */
export function niceTicks(min, max, count = 5) {
  const span = max - min || 1;
  const raw = span / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  const ticks = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

/** Tick times between `from` and `to` (ms), on local round hours or midnights. */
function timeTicks(from, to, count) {
  const step = TIME_STEPS.find((s) => (to - from) / s <= count) ?? TIME_STEPS.at(-1);
  const offset = new Date(from).getTimezoneOffset() * MINUTE;  // ticks on local, not UTC, round times
  const ticks = [];
  for (let t = Math.ceil((from - offset) / Math.min(step, DAY)) * Math.min(step, DAY) + offset; t <= to; t += Math.min(step, DAY)) {
    if (step <= DAY || Math.round((t - offset) / DAY) % (step / DAY) === 0) ticks.push(t);
  }
  return { ticks, step };
}

function timeFormat(locale, step, span) {
  const options = step >= DAY ? { month: "2-digit", day: "2-digit" }
    : span > DAY ? { month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false }
      : { hour: "2-digit", minute: "2-digit", hour12: false };
  const format = new Intl.DateTimeFormat(locale, options);
  return (t) => format.format(new Date(t));
}

/** An SVG path through `points` ([x, y] in pixels, null y breaks the line); `step` holds each value until the next. */
function linePath(points, step) {
  let d = "";
  let previous = null;
  for (const point of points) {
    if (point === null) { previous = null; continue; }
    const [x, y] = point.map((v) => v.toFixed(1));
    if (previous === null) d += `M${x},${y}`;
    else d += step ? `H${x}V${y}` : `L${x},${y}`;
    previous = point;
  }
  return d;
}

/** The figure around a chart: caption, legend, the svg and its tooltip. */
function frame({ title, legend, chart, tip }) {
  const figure = element("figure", { className: "chart" });
  if (title) figure.append(element("figcaption", { className: "chart-title", textContent: title }));
  figure.append(chart, tip);
  if (legend.length) {
    figure.append(element("ul", { className: "chart-legend" }, ...legend.map(({ label, color, dashed }) =>
      element("li", {}, element("span", { className: `chart-swatch${dashed ? " dashed" : ""}` }), label))));
    [...figure.querySelectorAll(".chart-swatch")].forEach((swatch, i) => swatch.style.setProperty("--swatch", legend[i].color));
  }
  return figure;
}

/**
 * A cursor over positions `xs` (pixels): mouse and arrow keys move it, `describe(i)` gives the tooltip's lines.
 * The tooltip is a polite live region, so a screen reader reads what the keyboard points at.
 */
function interact(chart, tip, xs, plot, describe, marks) {
  const cursor = svg("line", { class: "chart-cursor", y1: plot.top, y2: plot.bottom, visibility: "hidden" });
  chart.append(cursor, marks.group);
  let index = -1;
  function show(i) {
    if (!xs.length) return;
    index = Math.max(0, Math.min(xs.length - 1, i));
    const x = xs[index];
    cursor.setAttribute("x1", x);
    cursor.setAttribute("x2", x);
    cursor.setAttribute("visibility", "visible");
    marks.show(index);
    const [head, ...lines] = describe(index);
    tip.replaceChildren(element("strong", { textContent: head }), ...lines.map((line) => element("div", { textContent: line })));
    tip.hidden = false;
    const width = chart.clientWidth || Number(chart.getAttribute("width"));
    const left = x / Number(chart.getAttribute("width")) * width;
    tip.style.left = `${Math.round(left)}px`;
    tip.classList.toggle("flip", left > width / 2);  // keep the tooltip inside the chart
  }
  function hide() {
    cursor.setAttribute("visibility", "hidden");
    marks.hide();
    tip.hidden = true;
  }
  chart.addEventListener("mousemove", (event) => {
    const box = chart.getBoundingClientRect();
    const x = (event.clientX - box.left) * Number(chart.getAttribute("width")) / box.width;
    let best = 0;
    xs.forEach((candidate, i) => { if (Math.abs(candidate - x) < Math.abs(xs[best] - x)) best = i; });
    show(best);
  });
  chart.addEventListener("mouseleave", () => { if (document.activeElement !== chart) hide(); });
  chart.addEventListener("focus", () => show(index < 0 ? xs.length - 1 : index));
  chart.addEventListener("blur", hide);
  chart.addEventListener("keydown", (event) => {
    const moves = { ArrowLeft: -1, ArrowRight: 1, PageUp: -10, PageDown: 10 };
    if (event.key in moves) show(index + moves[event.key]);
    else if (event.key === "Home") show(0);
    else if (event.key === "End") show(xs.length - 1);
    else if (event.key === "Escape") hide();
    else return;
    event.preventDefault();
  });
}

function axisY(chart, plot, y, scaleY) {
  for (const value of y.ticks) {
    const py = scaleY(value);
    chart.append(svg("line", { class: "chart-grid", x1: plot.left, x2: plot.right, y1: py, y2: py }),
      svg("text", { class: "chart-tick", x: plot.left - 6, y: py, "text-anchor": "end", "dominant-baseline": "middle" },
        y.format(value)));
  }
  if (y.label) {
    chart.append(svg("text", { class: "chart-axis-label", x: 4, y: plot.top - 2, "dominant-baseline": "hanging",
      transform: `rotate(-90 4 ${plot.top - 2})`, "text-anchor": "end" }, y.label));
  }
}

function thresholdLines(chart, plot, thresholds, scaleY, format) {
  for (const { value, label, color } of thresholds) {
    const py = scaleY(value);
    if (py < plot.top - 0.5 || py > plot.bottom + 0.5) continue;
    const group = svg("g", { class: "chart-threshold", "data-testid": "threshold", "data-value": value },
      svg("line", { x1: plot.left, x2: plot.right, y1: py, y2: py, stroke: color }),
      svg("text", { x: plot.right - 4, y: py - 4, "text-anchor": "end", fill: color }, `${label} ${format(value)}`));
    chart.append(group);
  }
}

/**
 * A line chart. `series`: [{label, color, points: [[x, y | null]], step}] with x in ms (time axis) or a number
 * with `xTicks` [{x, label}] (category axis); `thresholds`: [{value, label, color}] drawn as dashed lines
 * (the y range always includes them); `y`: {label, unit, format, min, max}.
 */
export function lineChart({ kind, title, width = 600, height = 220, series, thresholds = [], from, to, xTicks,
  y = {}, locale = "zh-CN", xFormat, empty = "", legend = true }) {
  const plot = { left: MARGIN.left, right: width - MARGIN.right, top: MARGIN.top, bottom: height - MARGIN.bottom };
  const values = series.flatMap((s) => s.points.filter((p) => p && p[1] !== null).map((p) => p[1]));
  const xsAll = series.flatMap((s) => s.points.filter((p) => p && p[1] !== null).map((p) => p[0]));
  const xMin = from ?? (xsAll.length ? Math.min(...xsAll) : 0);
  const xMax = to ?? (xsAll.length ? Math.max(...xsAll) : 1);
  const yMin = y.min ?? 0;
  // A given maximum is kept exactly (a rate's 100%); otherwise some headroom above the data and thresholds.
  const highest = Math.max(0, ...values, ...thresholds.map((t) => t.value));
  const yTop = y.max !== undefined && highest <= y.max ? y.max : highest * 1.08 || 1;
  const yTicks = niceTicks(yMin, yTop, Math.max(3, Math.floor((plot.bottom - plot.top) / 36)));
  const yMax = Math.max(yTop, yTicks.at(-1));
  const scaleX = (x) => plot.left + ((x - xMin) / ((xMax - xMin) || 1)) * (plot.right - plot.left);
  const scaleY = (v) => plot.bottom - ((v - yMin) / ((yMax - yMin) || 1)) * (plot.bottom - plot.top);
  const format = y.format ?? ((v) => `${v}`);
  const unit = y.unit ? ` ${y.unit}` : "";

  const chart = svg("svg", { class: "chart-svg", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    tabindex: 0, "data-testid": "chart", "data-kind": kind, "aria-label": title });
  axisY(chart, plot, { ticks: yTicks, format, label: y.label }, scaleY);

  // The x axis: time ticks on local round times, or the given category labels.
  let ticks;
  let formatX = xFormat;
  if (xTicks) ticks = xTicks;
  else {
    const time = timeTicks(xMin, xMax, Math.max(2, Math.floor((plot.right - plot.left) / 90)));
    formatX ??= timeFormat(locale, time.step, xMax - xMin);
    ticks = time.ticks.map((x) => ({ x, label: formatX(x) }));
  }
  formatX ??= (x) => xTicks?.find((tick) => tick.x === x)?.label ?? `${x}`;
  const full = new Intl.DateTimeFormat(locale, { month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
    hour12: false });
  const formatTip = xTicks || xFormat ? formatX : (x) => full.format(new Date(x));
  chart.append(svg("line", { class: "chart-axis", x1: plot.left, x2: plot.right, y1: plot.bottom, y2: plot.bottom }));
  for (const tick of ticks) {
    const px = scaleX(tick.x);
    chart.append(svg("line", { class: "chart-axis", x1: px, x2: px, y1: plot.bottom, y2: plot.bottom + 4 }),
      svg("text", { class: "chart-tick", x: px, y: plot.bottom + 16, "text-anchor": "middle" }, tick.label));
  }

  thresholdLines(chart, plot, thresholds, scaleY, (v) => `${format(v)}${unit}`);
  for (const s of series) {
    const points = s.points.map((p) => (p && p[1] !== null ? [scaleX(p[0]), scaleY(p[1])] : null));
    chart.append(svg("path", { class: "chart-line", d: linePath(points, s.step), stroke: s.color }));
    // A lone point between gaps has no line segment: show it as a dot.
    points.forEach((p, i) => {
      if (p && !points[i - 1] && !points[i + 1]) chart.append(svg("circle", { cx: p[0], cy: p[1], r: 2, fill: s.color }));
    });
  }
  if (!values.length && empty) {
    chart.append(svg("text", { class: "chart-empty", x: (plot.left + plot.right) / 2, y: (plot.top + plot.bottom) / 2,
      "text-anchor": "middle" }, empty));
  }

  // The cursor steps over every x that has a value in some series.
  const xs = [...new Set(xsAll)].sort((a, b) => a - b);
  const lookup = series.map((s) => new Map(s.points.filter((p) => p && p[1] !== null).map((p) => [p[0], p[1]])));
  const dots = series.map((s) => svg("circle", { r: 3.5, fill: s.color, class: "chart-dot", visibility: "hidden" }));
  const marks = {
    group: svg("g", {}, ...dots),
    show(i) {
      lookup.forEach((map, k) => {
        const v = map.get(xs[i]);
        dots[k].setAttribute("visibility", v === undefined ? "hidden" : "visible");
        if (v !== undefined) { dots[k].setAttribute("cx", scaleX(xs[i])); dots[k].setAttribute("cy", scaleY(v)); }
      });
    },
    hide() { dots.forEach((dot) => dot.setAttribute("visibility", "hidden")); },
  };
  const tip = element("div", { className: "chart-tip", hidden: true });
  tip.setAttribute("aria-live", "polite");
  interact(chart, tip, xs.map(scaleX), plot, (i) => [formatTip(xs[i]), ...series.map((s, k) => {
    const v = lookup[k].get(xs[i]);
    return `${s.label}: ${v === undefined ? "—" : `${format(v)}${unit}`}`;
  })], marks);

  const entries = legend ? [...series.map((s) => ({ label: s.label, color: s.color })),
    ...thresholds.map((t) => ({ label: `${t.label} ${format(t.value)}${unit}`, color: t.color, dashed: true }))] : [];
  return frame({ title, legend: entries, chart, tip });
}

/**
 * A grouped bar chart: one group of bars per category, one bar per series ([{label, color, values}]); a null
 * value draws no bar and reads "—". `y`: {label, unit, format, max}.
 */
export function barChart({ kind, title, width = 600, height = 220, categories, series, y = {}, thresholds = [] }) {
  const plot = { left: MARGIN.left, right: width - MARGIN.right, top: MARGIN.top, bottom: height - MARGIN.bottom };
  const values = series.flatMap((s) => s.values.filter((v) => v !== null));
  const yTop = y.max ?? (Math.max(0, ...values, ...thresholds.map((t) => t.value)) * 1.08 || 1);
  const yTicks = niceTicks(0, yTop, Math.max(3, Math.floor((plot.bottom - plot.top) / 32)));
  const yMax = Math.max(yTop, yTicks.at(-1));
  const scaleY = (v) => plot.bottom - (v / yMax) * (plot.bottom - plot.top);
  const format = y.format ?? ((v) => `${v}`);
  const band = (plot.right - plot.left) / Math.max(1, categories.length);
  const barWidth = Math.min(28, (band * 0.8) / series.length);

  const chart = svg("svg", { class: "chart-svg", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    tabindex: 0, "data-testid": "chart", "data-kind": kind, "aria-label": title });
  axisY(chart, plot, { ticks: yTicks, format, label: y.label }, scaleY);
  chart.append(svg("line", { class: "chart-axis", x1: plot.left, x2: plot.right, y1: plot.bottom, y2: plot.bottom }));
  const maxChars = Math.max(3, Math.floor(band / 7));
  categories.forEach((label, i) => {
    const center = plot.left + band * (i + 0.5);
    const short = label.length > maxChars ? `${label.slice(0, maxChars - 1)}…` : label;
    chart.append(svg("text", { class: "chart-tick", x: center, y: plot.bottom + 16, "text-anchor": "middle" }, short));
    series.forEach((s, k) => {
      const v = s.values[i];
      const x = center - (barWidth * series.length) / 2 + k * barWidth;
      if (v === null || v === undefined) {
        chart.append(svg("text", { class: "chart-none", x: x + barWidth / 2, y: plot.bottom - 4, "text-anchor": "middle" }, "—"));
      } else {
        const height = Math.max(2, plot.bottom - scaleY(v));  // a zero is data: a sliver, unlike a null's dash
        chart.append(svg("rect", { class: "chart-bar", x: x + 1, width: Math.max(1, barWidth - 2), y: plot.bottom - height,
          height, fill: s.color }));
      }
    });
  });
  thresholdLines(chart, plot, thresholds, scaleY, format);

  const xs = categories.map((_, i) => plot.left + band * (i + 0.5));
  const highlight = svg("rect", { class: "chart-band", y: plot.top, height: plot.bottom - plot.top, width: band,
    visibility: "hidden" });
  chart.insertBefore(highlight, chart.firstChild);
  const marks = {
    group: svg("g"),
    show(i) { highlight.setAttribute("x", plot.left + band * i); highlight.setAttribute("visibility", "visible"); },
    hide() { highlight.setAttribute("visibility", "hidden"); },
  };
  const tip = element("div", { className: "chart-tip", hidden: true });
  tip.setAttribute("aria-live", "polite");
  const unit = y.unit ? ` ${y.unit}` : "";
  interact(chart, tip, xs, plot, (i) => [categories[i], ...series.map((s) =>
    `${series.length > 1 ? `${s.label}: ` : ""}${s.values[i] === null || s.values[i] === undefined ? "—" : `${format(s.values[i])}${unit}`}`)],
  marks);
  const legend = series.length > 1 ? series.map((s) => ({ label: s.label, color: s.color })) : [];
  return frame({ title, legend, chart, tip });
}

/** A tiny line of `values` (nulls are gaps) for a table cell or a case detail; no axes, no interaction. */
export function sparkline(values, { width = 80, height = 20, color = "currentColor", label = "" } = {}) {
  const known = values.filter((v) => v !== null && v !== undefined);
  const low = Math.min(...known);
  const high = Math.max(...known);
  const points = values.map((v, i) => (v === null || v === undefined ? null
    : [1 + (i / Math.max(1, values.length - 1)) * (width - 2), height - 1 - ((v - low) / ((high - low) || 1)) * (height - 2)]));
  return svg("svg", { class: "sparkline", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": label || known.join(", ") },
  svg("path", { d: linePath(points, false), stroke: color, fill: "none", "stroke-width": 1.5 }));
}
