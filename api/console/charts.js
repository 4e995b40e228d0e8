// Telemetry (监测): a device's or a grid cell's readings against the thresholds the stream worker alarms on.
// Rain: rolling 1/3/6/12 h totals against the CMA rainstorm signals (a cell: the mean of its gauges, as the
// signals are defined); crowd: density = count / the counter's zone area against the warning and urgent levels;
// manhole: water level (from the well bottom) against the well depth and the alarm margin below the cover.

import { element, refreshing } from "./dom.js";
import { lineChart } from "./svgchart.js";

// The levels the stream worker alarms on (GET /api/v1/thresholds), each drawn as a dashed line.
function rainLevels(levels) {
  return {
    h1: [{ key: "short", value: levels.rain.short_heavy_1h_mm, color: "var(--short-rain, #8250df)" }],
    h3: [{ key: "orange", value: levels.rain.orange_3h_mm, color: "var(--orange)" },
      { key: "red", value: levels.rain.red_3h_mm, color: "var(--red)" }],
    h6: [{ key: "yellow", value: levels.rain.yellow_6h_mm, color: "var(--yellow)" }],
    h12: [{ key: "blue", value: levels.rain.blue_12h_mm, color: "var(--blue)" }],
  };
}
const HOUR = 3_600_000;
// Range → window length: a few hundred windows at most, and each rolling sum a whole number of windows.
const RANGES = { "1h": { span: HOUR, every: "1m", ms: 60_000 },
  "6h": { span: 6 * HOUR, every: "5m", ms: 5 * 60_000 },
  "24h": { span: 24 * HOUR, every: "10m", ms: 10 * 60_000 },
  "7d": { span: 7 * 24 * HOUR, every: "30m", ms: 30 * 60_000 } };
const REFRESH_MS = 60_000;
const KINDS = ["rain", "crowd", "manhole"];

const LABELS = {
  zh: {
    rain: "雨量计", crowd: "客流计", manhole: "井盖传感器", kind: "设备类型", device: "设备", cell: "网格",
    pick_cell: "选择网格…", pick_device: "选择设备…", range: "时间范围", or: "或", loading: "加载中…",
    h1: "1 小时累计雨量", h3: "3 小时累计雨量", h6: "6 小时累计雨量", h12: "12 小时累计雨量",
    rolling: "{n} 小时累计", short: "短时强降水", blue: "暴雨蓝色", yellow: "暴雨黄色", orange: "暴雨橙色", red: "暴雨红色",
    rain_axis: "雨量 (mm)", density: "人群密度", density_mean: "平均密度", density_max: "峰值密度",
    density_axis: "密度 (人/m²)", warning: "预警", urgent: "紧急", water: "水位", water_mean: "平均水位",
    water_max: "最高水位", water_axis: "水位 (cm,自井底)", depth: "井盖(井深)", alarm: "报警线(井盖下 {m} cm)",
    no_data: "该时段没有数据", cell_rain: "网格雨量(各雨量计平均)", devices_in_cell: "本网格设备",
    open_cell: "查看所在网格", zone: "统计区域 {a} m²", well: "井深 {d} cm", no_area: "未登记统计区域面积,无法计算密度",
    no_depth: "未登记井深", updated: "更新于 {t}", hint: "图表可用 Tab 聚焦,←/→ 逐点查看,Home/End 到首尾",
    since: "{t} 起有数据",
  },
  en: {
    rain: "rain gauge", crowd: "crowd counter", manhole: "manhole sensor", kind: "Device kind", device: "Device",
    cell: "Grid cell", pick_cell: "Choose a cell…", pick_device: "Choose a device…", range: "Time range", or: "or",
    loading: "Loading…", h1: "Rain, rolling 1 h", h3: "Rain, rolling 3 h", h6: "Rain, rolling 6 h",
    h12: "Rain, rolling 12 h", rolling: "{n} h total", short: "Short-duration heavy rain", blue: "Blue signal",
    yellow: "Yellow signal", orange: "Orange signal", red: "Red signal", rain_axis: "rain (mm)", density: "Crowd density",
    density_mean: "mean density", density_max: "peak density", density_axis: "density (persons/m²)",
    warning: "warning", urgent: "urgent", water: "Water level", water_mean: "mean level", water_max: "highest level",
    water_axis: "water level (cm above the bottom)", depth: "cover (well depth)", alarm: "alarm ({m} cm below the cover)",
    no_data: "No readings in this range", cell_rain: "Cell rain (mean of its gauges)", devices_in_cell: "Devices in this cell",
    open_cell: "Show its cell", zone: "zone {a} m²", well: "well depth {d} cm",
    no_area: "No zone area registered: density cannot be computed", no_depth: "No well depth registered",
    updated: "updated {t}", hint: "Tab to a chart, ←/→ to step through it, Home/End for the ends",
    since: "readings since {t}",
  },
};

/** Rolling totals over `hours` at each window's end, from windows on a regular grid ([start ms, mm | null]). */
export function rollingRain(windows, everyMs, hours) {
  const size = Math.round(hours * HOUR / everyMs);
  const known = windows.filter(([, mm]) => mm !== null);
  if (!known.length) return [];
  // Between a gauge's first and last reading a window without one counts as dry; outside, there is no data.
  const first = known[0][0];
  const last = known.at(-1)[0];
  const byStart = new Map(known);
  const points = [];
  let sum = 0;
  const queue = [];
  for (let start = first; start <= last; start += everyMs) {
    const mm = byStart.get(start) ?? 0;
    queue.push(mm);
    sum += mm;
    if (queue.length > size) sum -= queue.shift();
    points.push([start + everyMs, Math.max(0, Number(sum.toFixed(3)))]);
  }
  return points;
}

/** [start ms, value] points with a null where readings stopped for more than one window (a gap, not a line). */
function withGaps(windows, everyMs, value) {
  const points = [];
  let previous = null;
  for (const w of windows) {
    const v = value(w);
    if (v === null || v === undefined) continue;
    const start = Date.parse(w.start);
    if (previous !== null && start - previous > everyMs * 1.5) points.push(null);
    points.push([Math.min(start + everyMs / 2, Date.now()), v]);
    previous = start;
  }
  return points;
}

export async function mount(root, { api, i18n, params }) {
  const lang = i18n.language();
  const locale = lang === "zh" ? "zh-CN" : "en-GB";
  const tr = (key, vars = {}) => String(LABELS[lang][key] ?? i18n.t(key)).replace(/\{(\w+)\}/g, (_, k) => vars[k] ?? "");
  const state = { device: params.device ?? "", cell: params.cell ?? "", range: RANGES[params.range] ? params.range : "24h" };
  let devices = [];
  const cellNames = new Map();
  let data = null;  // the latest answer, kept to redraw on resize
  let sequence = 0;
  let gone = false;

  const kindSelect = element("select", { id: "charts-kind" }, ...KINDS.map((k) => element("option", { value: k, textContent: tr(k) })));
  const deviceSelect = element("select", { id: "charts-device" });
  const cellSelect = element("select", { id: "charts-cell" });
  const rangeButtons = Object.keys(RANGES).map((key) => {
    const button = element("button", { type: "button", className: "charts-range", textContent: key });
    button.dataset.range = key;
    button.addEventListener("click", () => { state.range = key; update(); });
    return button;
  });
  const status = element("p", { className: "charts-status", role: "status" });
  const heading = element("div", { className: "charts-heading" });
  const body = element("div", { className: "charts-body" });
  root.replaceChildren(element("div", { className: "charts" },
    element("div", { className: "charts-bar" },
      element("label", { htmlFor: "charts-kind", textContent: tr("kind") }), kindSelect,
      element("label", { htmlFor: "charts-device", textContent: tr("device") }), deviceSelect,
      element("span", { className: "charts-or", textContent: tr("or") }),
      element("label", { htmlFor: "charts-cell", textContent: tr("cell") }), cellSelect,
      element("div", { className: "charts-ranges", role: "group", ariaLabel: tr("range") }, ...rangeButtons),
      status),
    heading, body));

  kindSelect.addEventListener("change", () => { fillDevices(); });
  deviceSelect.addEventListener("change", () => {
    if (!deviceSelect.value) return;
    Object.assign(state, { device: deviceSelect.value, cell: "" });
    update();
  });
  cellSelect.addEventListener("change", () => {
    if (!cellSelect.value) return;
    Object.assign(state, { device: "", cell: cellSelect.value });
    update();
  });

  function fillDevices() {
    const chosen = devices.filter((d) => d.kind === kindSelect.value);
    deviceSelect.replaceChildren(element("option", { value: "", textContent: tr("pick_device") }),
      ...chosen.map((d) => element("option", { value: d.id, textContent: `${d.id} · ${d.grid_code.slice(-6)}` })));
    deviceSelect.value = chosen.some((d) => d.id === state.device) ? state.device : "";
  }

  // The choice lives in the address without a reload (hashchange would remount and drop the keyboard focus).
  function update() {
    const query = new URLSearchParams(Object.entries(state).filter(([k, v]) => v && !(k === "range" && v === "24h")));
    history.replaceState(null, "", `#/charts${query.size ? `?${query}` : ""}`);
    load();
  }

  function syncControls() {
    const device = devices.find((d) => d.id === state.device);
    if (device) kindSelect.value = device.kind;
    fillDevices();
    cellSelect.value = state.cell;
    for (const button of rangeButtons) button.setAttribute("aria-pressed", String(button.dataset.range === state.range));
  }

  async function load({ quiet = false } = {}) {
    syncControls();
    const mine = ++sequence;
    const range = RANGES[state.range];
    const to = Date.now();
    const from = to - range.span;
    // Rain needs 12 h before the range for its rolling totals; starts on whole windows so they line up.
    const fetchFrom = Math.floor((from - 12 * HOUR) / range.ms) * range.ms;
    const span = { from: new Date(fetchFrom).toISOString(), to: new Date(to).toISOString(), every: range.every };
    if (!quiet) status.textContent = tr("loading");
    try {
      let answer;
      if (state.device) {
        const device = devices.find((d) => d.id === state.device)
          ?? await api.get(`/api/v1/devices/${encodeURIComponent(state.device)}`);
        const series = await api.get(`/api/v1/devices/${encodeURIComponent(device.id)}/telemetry`, span);
        answer = { from, to, range, device, series: [{ device, windows: series.windows }] };
      } else if (state.cell) {
        const inCell = devices.filter((d) => d.grid_code === state.cell);
        const cell = inCell.some((d) => d.kind === "rain")
          ? (await api.get(`/api/v1/grids/${encodeURIComponent(state.cell)}/telemetry`, span)).windows : [];
        // Density and water level only mean something per device (each has its own zone area or well depth).
        const series = await Promise.all(inCell.filter((d) => d.kind !== "rain").map(async (device) =>
          ({ device, windows: (await api.get(`/api/v1/devices/${encodeURIComponent(device.id)}/telemetry`, span)).windows })));
        answer = { from, to, range, cell: state.cell, cellWindows: cell, inCell, series };
      } else {
        return;
      }
      // Readings that began inside the range (a hub started minutes ago, a new gauge): the axis starts at the
      // first of them, not hours of empty chart before it.
      const first = Math.min(...[...answer.series.flatMap((one) => one.windows), ...(answer.cellWindows ?? [])]
        .filter((w) => w.readings > 0).map((w) => Date.parse(w.start)));
      if (Number.isFinite(first) && first - range.ms > from) answer.from = first - range.ms;
      if (mine !== sequence || gone) return;
      data = answer;
      const clock = (t) => new Date(t).toLocaleTimeString(locale, { hour12: false });
      status.textContent = tr("updated", { t: clock(to) }) + (answer.from > from ? ` · ${tr("since", { t: clock(answer.from) })}` : "");
      status.classList.remove("error");
      draw();
    } catch (error) {
      if (mine !== sequence || gone) return;
      status.textContent = error.message;
      status.classList.add("error");
    }
  }

  function chartWidth(columns) {
    const width = body.clientWidth || root.clientWidth || 1300;
    return Math.floor((width - 12 * (columns - 1)) / columns) - 20;  // the figure's padding and border
  }

  // Two rows of charts fill a 1366×768 screen under the pickers; never smaller than readable.
  function rowHeight() {
    return Math.max(200, Math.floor(((root.clientHeight || 700) - 110) / 2) - 60);
  }

  function rainCharts(windows) {
    const every = data.range.ms;
    const grid = windows.map((w) => [Date.parse(w.start), w.rain_mm]);
    const width = chartWidth(2);
    return ["h1", "h3", "h6", "h12"].map((key) => {
      const hours = Number(key.slice(1));
      const points = rollingRain(grid, every, hours).filter(([t]) => t >= data.from)
        .map(([t, mm]) => [Math.min(t, data.to), mm]);  // the newest window is still open
      return lineChart({
        kind: "rain", title: tr(key), width, height: rowHeight(), locale, from: data.from, to: data.to, empty: tr("no_data"),
        series: [{ label: tr("rolling", { n: hours }), color: "var(--accent)", points }],
        thresholds: rain[key].map((t) => ({ value: t.value, label: tr(t.key), color: t.color })),
        y: { label: tr("rain_axis"), unit: "mm", format: (v) => (Math.round(v * 10) / 10).toString() },
      });
    });
  }

  function crowdChart({ device, windows }, width, height) {
    const area = device.zone_area_m2;
    if (!area) return element("p", { className: "charts-note", textContent: `${device.id}: ${tr("no_area")}` });
    const every = data.range.ms;
    const visible = windows.filter((w) => Date.parse(w.start) + every > data.from);
    return lineChart({
      kind: "crowd", title: `${tr("density")} · ${device.id} · ${tr("zone", { a: area })}`, width, height, locale,
      from: data.from, to: data.to, empty: tr("no_data"),
      series: [
        { label: tr("density_mean"), color: "var(--accent)", points: withGaps(visible, every, (w) => w.count_mean === null ? null : w.count_mean / area) },
        { label: tr("density_max"), color: "#6e7781", points: withGaps(visible, every, (w) => w.count_max === null ? null : w.count_max / area) },
      ],
      thresholds: [{ value: levels.crowd_warning_per_m2, label: tr("warning"), color: "var(--orange)" },
        { value: levels.crowd_urgent_per_m2, label: tr("urgent"), color: "var(--red)" }],
      y: { label: tr("density_axis"), unit: "/m²", format: (v) => String(Number(v.toFixed(2))) },
    });
  }

  function manholeChart({ device, windows }, width, height) {
    const depth = device.well_depth_cm;
    const every = data.range.ms;
    const visible = windows.filter((w) => Date.parse(w.start) + every > data.from);
    return lineChart({
      kind: "manhole", title: `${tr("water")} · ${device.id}${depth ? ` · ${tr("well", { d: depth })}` : ` · ${tr("no_depth")}`}`,
      width, height, locale, from: data.from, to: data.to, empty: tr("no_data"),
      series: [
        { label: tr("water_mean"), color: "var(--accent)", points: withGaps(visible, every, (w) => w.water_level_cm_mean) },
        { label: tr("water_max"), color: "#6e7781", points: withGaps(visible, every, (w) => w.water_level_cm_max) },
      ],
      thresholds: depth ? [{ value: depth, label: tr("depth"), color: "var(--ink)" },
        { value: depth - levels.manhole_water_margin_cm, label: tr("alarm", { m: levels.manhole_water_margin_cm }),
          color: "var(--red)" }] : [],
      y: { label: tr("water_axis"), unit: "cm", format: (v) => (Math.round(v * 10) / 10).toString() },
    });
  }

  function deviceButton(device) {
    const button = element("button", { type: "button", className: "charts-link", textContent: `${device.id} (${tr(device.kind)})` });
    button.addEventListener("click", () => { Object.assign(state, { device: device.id, cell: "" }); update(); });
    return button;
  }

  function draw() {
    if (!data) return;
    const hint = element("p", { className: "charts-hint", textContent: tr("hint") });
    if (data.device) {
      const { device } = data;
      const cellButton = element("button", { type: "button", className: "charts-link", textContent: tr("open_cell") });
      cellButton.addEventListener("click", () => { Object.assign(state, { device: "", cell: device.grid_code }); update(); });
      heading.replaceChildren(element("h2", { textContent: `${device.id} · ${tr(device.kind)}` }),
        element("span", { textContent: `${device.grid_code} ${cellNames.get(device.grid_code) ?? ""}` }), cellButton);
      const one = data.series[0];
      if (device.kind === "rain") body.replaceChildren(element("div", { className: "charts-grid" }, ...rainCharts(one.windows)), hint);
      else {
        const height = Math.max(260, (root.clientHeight || 700) - 170);
        const chart = device.kind === "crowd" ? crowdChart(one, chartWidth(1), height) : manholeChart(one, chartWidth(1), height);
        body.replaceChildren(chart, hint);
      }
      return;
    }
    heading.replaceChildren(element("h2", { textContent: `${data.cell} ${cellNames.get(data.cell) ?? ""}` }),
      element("span", { textContent: `${tr("devices_in_cell")}:` }), ...data.inCell.map(deviceButton));
    const sections = [];
    if (data.inCell.some((d) => d.kind === "rain")) {
      sections.push(element("h3", { textContent: tr("cell_rain") }), element("div", { className: "charts-grid" }, ...rainCharts(data.cellWindows)));
    }
    const others = data.series.map((one) => (one.device.kind === "crowd" ? crowdChart : manholeChart)(one, chartWidth(2), rowHeight()));
    if (others.length) sections.push(element("div", { className: "charts-grid" }, ...others));
    body.replaceChildren(...sections, hint);
  }

  const [registry, hierarchy, levels] = await Promise.all([api.get("/api/v1/devices"),
    api.get("/api/v1/grids/hierarchy"), api.get("/api/v1/thresholds")]);
  const rain = rainLevels(levels);
  devices = registry.items;
  const withDevices = new Set(devices.map((d) => d.grid_code));
  cellSelect.append(element("option", { value: "", textContent: tr("pick_cell") }));
  for (const district of hierarchy.districts) {
    for (const street of district.streets) {
      const group = element("optgroup", { label: street.name });
      for (const community of street.communities) {
        for (const cell of community.cells) {
          cellNames.set(cell.code, cell.name);
          if (withDevices.has(cell.code)) group.append(element("option", { value: cell.code, textContent: `${cell.code.slice(-6)} ${cell.name}` }));
        }
      }
      if (group.children.length) cellSelect.append(group);
    }
  }
  if (!state.device && !state.cell) state.device = devices.find((d) => d.kind === "rain")?.id ?? "";
  await load();

  // New readings arrive all the time; a refresh is skipped while the keyboard is on a chart, not to move it.
  const unmount = refreshing({ everyMs: REFRESH_MS, busy: () => body.contains(document.activeElement),
    reload: () => load({ quiet: true }), redraw: draw, onUnmount: () => { gone = true; } });
  return { unmount };
}
