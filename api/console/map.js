// The map (地图): the grid cells drawn from their GeoJSON as SVG (no tile server: a grid center's network is often
// closed), each filled by the most serious of its open cases, with the devices' health and the cameras on top.
// A street or community can be zoomed to; a cell opens a panel with its cases, devices and latest readings.

import { CaseDetail, OPEN_STATES, SEVERITIES, translator } from "./casedetail.js";
import { element, svg } from "./dom.js";
import { sparkline } from "./svgchart.js";

const METRES_PER_DEGREE = 111_320;
const DEVICE_REFRESH_MS = 60_000;
const CASE_PAGES = 4;  // per open state: 2,000 open cases is more than a district's shift ever holds
const READINGS = [["rain_mm", "sum", 1], ["water_level_cm_max", "last", 1], ["count_mean", "last", 0],
  ["tilt_deg_max", "last", 1], ["battery_v_min", "last", 2]];

const LABELS = {
  zh: {
    all_streets: "全部街道", all_communities: "全部社区", area: "缩放到", open_cases: "未结案件", devices: "设备",
    cameras: "摄像头", readings: "近一小时监测", none_open: "没有未结案件", no_devices: "没有设备", no_readings: "近一小时没有读数",
    back: "← 返回网格", close: "关闭", cell_label: "{name},{n} 件未结案件,{sev}", online: "在线", offline: "离线",
    unknown: "未知", maintenance: "有运维案件", disabled: "已停用", camera: "摄像头", last_seen: "最后上报",
    rain_mm: "雨量(1 小时)mm", water_level_cm_max: "水位 cm", count_mean: "人数", tilt_deg_max: "倾角 °",
    battery_v_min: "电池 V", rain: "雨量计", crowd: "客流计", manhole: "井盖传感器", map: "网格地图",
    hint: "Tab 键逐格移动,回车打开网格", legend: "图例", loading: "加载中…", cover_open: "井盖打开",
  },
  en: {
    all_streets: "All streets", all_communities: "All communities", area: "Zoom to", open_cases: "Open cases",
    devices: "Devices", cameras: "Cameras", readings: "Last hour", none_open: "No open case", no_devices: "No device",
    no_readings: "No reading in the last hour", back: "← Back to the cell", close: "Close",
    cell_label: "{name}, {n} open cases, {sev}", online: "online", offline: "offline", unknown: "unknown",
    maintenance: "maintenance case open", disabled: "disabled", camera: "camera", last_seen: "last seen",
    rain_mm: "rain (1 h) mm", water_level_cm_max: "water level cm", count_mean: "people", tilt_deg_max: "tilt °",
    battery_v_min: "battery V", rain: "rain gauge", crowd: "crowd counter", manhole: "manhole sensor", map: "Grid map",
    hint: "Tab moves cell by cell, Enter opens one", legend: "Legend", loading: "Loading…", cover_open: "cover open",
  },
};

export async function mount(root, ctx) {
  const { api, i18n, params } = ctx;
  const tr = translator(i18n, LABELS);
  const open = new Map();  // open case id → summary
  const cells = new Map();  // code → { feature, path, label, centroid, box }
  let devices = [];
  let cameras = [];
  let area = params.area ?? "";
  let shown = null;  // the cell whose panel is open
  let stopped = false;

  const streetSelect = element("select", {}, element("option", { value: "", textContent: tr("all_streets") }));
  const communitySelect = element("select", {}, element("option", { value: "", textContent: tr("all_communities") }));
  streetSelect.setAttribute("aria-label", tr("street"));
  communitySelect.setAttribute("aria-label", tr("community"));
  const crumbs = element("nav", { className: "map-crumbs" });
  crumbs.setAttribute("aria-label", tr("area"));
  const legend = element("ul", { className: "map-legend" },
    ...["none", ...SEVERITIES].map((s) => element("li", {}, element("span", { className: `map-swatch fill-${s}` }), tr(`sev_${s}`))),
    element("li", {}, element("span", { className: "map-dot dev-on" }), tr("online")),
    element("li", {}, element("span", { className: "map-dot dev-unknown" }), tr("unknown")),
    element("li", {}, element("span", { className: "map-dot dev-bad" }), `${tr("offline")} / ${tr("maintenance")}`),
    element("li", {}, element("span", { className: "map-cam-key" }), tr("camera")));
  legend.setAttribute("aria-label", tr("legend"));
  const cellLayer = svg("g", { class: "map-cells" });
  const labelLayer = svg("g", { class: "map-labels", "aria-hidden": "true" });
  const markerLayer = svg("g", { class: "map-markers" });
  // Outlines of the selected and the focused cell drawn over all cells: a cell's own stroke hides under its neighbours.
  const selectedRing = svg("path", { class: "map-ring map-ring-selected", d: "" });
  const focusRing = svg("path", { class: "map-ring map-ring-focus", d: "" });
  const map = svg("svg", { class: "map-svg", role: "group", "aria-label": `${tr("map")} — ${tr("hint")}`,
    preserveAspectRatio: "xMidYMid meet" }, cellLayer, selectedRing, labelLayer, markerLayer, focusRing);
  const panel = element("aside", { className: "map-panel", hidden: true, tabIndex: -1 });
  panel.dataset.testid = "cell-panel";
  const detail = new CaseDetail(ctx, { onClose: () => showCell(shown, true), onLoaded: (doc) => noteCase(doc) });
  const body = element("div", { className: "map-body" }, element("div", { className: "map-stage" }, map), panel);
  root.replaceChildren(element("div", { className: "map" },
    element("div", { className: "map-bar" }, crumbs, streetSelect, communitySelect, legend), body));

  const [geojson, hierarchy] = await Promise.all([api.get("/api/v1/grids/geojson"), api.get("/api/v1/grids/hierarchy")]);
  const streets = hierarchy.districts.flatMap((d) => d.streets);
  const names = new Map(streets.flatMap((s) => [[s.code, s.name], ...s.communities.map((c) => [c.code, c.name])]));
  const district = hierarchy.districts[0];
  names.set(district?.code ?? "", district?.name ?? hierarchy.city);
  streetSelect.append(...streets.map((s) => element("option", { value: s.code, textContent: s.name })));

  // Equirectangular in metres, with longitude shrunk by cos(latitude): true shapes at a district's size.
  const rings = geojson.features.flatMap((f) => (f.geometry.type === "Polygon" ? [f.geometry.coordinates]
    : f.geometry.coordinates)).flat();
  const lats = rings.flat().map(([, lat]) => lat);
  const lons = rings.flat().map(([lon]) => lon);
  const west = Math.min(...lons);
  const north = Math.max(...lats);
  const shrink = Math.cos(((Math.min(...lats) + north) / 2) * Math.PI / 180);
  const project = ([lon, lat]) => [(lon - west) * shrink * METRES_PER_DEGREE, (north - lat) * METRES_PER_DEGREE];

  for (const feature of geojson.features) {
    const polygons = feature.geometry.type === "Polygon" ? [feature.geometry.coordinates] : feature.geometry.coordinates;
    const points = polygons.flatMap((polygon) => polygon[0]).map(project);
    const d = polygons.flatMap((polygon) => polygon.map((ring) =>
      `M${ring.map(project).map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join("L")}Z`)).join("");
    const code = feature.properties.code;
    const path = svg("path", { d, class: "map-cell", tabindex: "0", role: "button" });
    path.dataset.testid = "cell";
    path.dataset.code = code;
    const xs = points.map(([x]) => x);
    const ys = points.map(([, y]) => y);
    const box = [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
    const centroid = [xs.reduce((a, b) => a + b, 0) / xs.length, ys.reduce((a, b) => a + b, 0) / ys.length];
    const label = svg("text", { x: centroid[0], y: centroid[1], class: "map-count" });
    cellLayer.append(path);
    labelLayer.append(label);
    cells.set(code, { feature, path, label, centroid, box });
  }

  function worst(list) {
    return list.reduce((top, c) => (SEVERITIES.indexOf(c.severity) > SEVERITIES.indexOf(top) ? c.severity : top), "none");
  }
  function casesOf(code) {
    return [...open.values()].filter((c) => c.grid_code === code)
      .sort((a, b) => SEVERITIES.indexOf(b.severity) - SEVERITIES.indexOf(a.severity) || b.reported_at.localeCompare(a.reported_at));
  }

  function paint(code) {
    const cell = cells.get(code);
    if (!cell) return;
    const list = casesOf(code);
    const severity = list.length ? worst(list) : "none";
    cell.path.dataset.open = list.length;
    cell.path.dataset.severity = severity;
    cell.path.setAttribute("class", `map-cell fill-${severity}${inArea(code) ? "" : " map-out"}`);
    cell.path.setAttribute("aria-label", tr("cell_label", { name: cell.feature.properties.name, n: list.length, sev: tr(`sev_${severity}`) }));
    cell.label.textContent = list.length || "";
    cell.label.setAttribute("class", `map-count on-${severity}${inArea(code) ? "" : " map-out"}`);
  }

  function inArea(code) { return code.startsWith(area); }

  // The view box fits the chosen area; marker and text sizes follow, so they stay the same on screen.
  function zoom() {
    const inside = [...cells.values()].filter((c) => inArea(c.feature.properties.code));
    const boxes = (inside.length ? inside : [...cells.values()]).map((c) => c.box);
    const [x0, y0] = [Math.min(...boxes.map((b) => b[0])), Math.min(...boxes.map((b) => b[1]))];
    const [x1, y1] = [Math.max(...boxes.map((b) => b[2])), Math.max(...boxes.map((b) => b[3]))];
    const pad = Math.max(x1 - x0, y1 - y0) * 0.04;
    map.setAttribute("viewBox", `${x0 - pad} ${y0 - pad} ${x1 - x0 + 2 * pad} ${y1 - y0 + 2 * pad}`);
    const rect = map.getBoundingClientRect();
    const unit = Math.max((x1 - x0 + 2 * pad) / (rect.width || 1), (y1 - y0 + 2 * pad) / (rect.height || 1));
    map.style.setProperty("--unit", unit);
    labelLayer.setAttribute("font-size", 12 * unit);
    for (const [code, cell] of cells) {
      cell.path.setAttribute("tabindex", inArea(code) ? "0" : "-1");
      paint(code);
    }
    markers(unit);
    groupLabels(unit);
    crumbsFor();
    streetSelect.value = area.slice(0, 9);
    fillCommunities();
    communitySelect.value = area.length >= 12 ? area.slice(0, 12) : "";
    history.replaceState(null, "", `#/map${area ? `?area=${area}` : ""}`);
  }

  function fillCommunities() {
    const street = streets.find((s) => s.code === area.slice(0, 9));
    communitySelect.replaceChildren(element("option", { value: "", textContent: tr("all_communities") }),
      ...(street?.communities ?? []).map((c) => element("option", { value: c.code, textContent: c.name })));
    communitySelect.disabled = !street;
  }

  function crumbsFor() {
    const levels = [district?.code ?? "", area.slice(0, 9), area.slice(0, 12)].filter((_, i) => area.length >= [0, 9, 12][i]);
    crumbs.replaceChildren(...levels.map((code, i) => {
      const name = names.get(code) ?? code;
      if (i === levels.length - 1) return element("span", { className: "map-crumb-here", textContent: name });
      const button = element("button", { type: "button", className: "map-crumb", textContent: name });
      button.addEventListener("click", () => { area = i === 0 ? "" : code; zoom(); streetSelect.focus(); });
      return element("span", {}, button, " › ");
    }));
  }

  // The names of the level below the one shown: streets over the district, communities over a street.
  function groupLabels(unit) {
    labelLayer.querySelectorAll(".map-area-name").forEach((n) => n.remove());
    const size = area.length >= 12 ? 0 : area.length >= 9 ? 12 : 9;
    if (!size) return;
    const groups = new Map();
    for (const [code, cell] of cells) {
      if (!inArea(code)) continue;
      const key = code.slice(0, size);
      const group = groups.get(key) ?? [Infinity, Infinity, -Infinity, -Infinity];
      groups.set(key, [Math.min(group[0], cell.box[0]), Math.min(group[1], cell.box[1]), Math.max(group[2], cell.box[2]), Math.max(group[3], cell.box[3])]);
    }
    for (const [key, [x0, y0, x1]] of groups) {
      labelLayer.append(svg("text", { x: (x0 + x1) / 2, y: y0 + 16 * unit, class: "map-area-name" }, names.get(key) ?? key));
    }
  }

  function deviceClass(device) {
    if (!device.enabled) return "dev-disabled";
    if (device.online === false || device.open_maintenance_cases.length) return "dev-bad";
    return device.online ? "dev-on" : "dev-unknown";
  }

  function markers(unit = Number(map.style.getPropertyValue("--unit")) || 1) {
    const dots = devices.filter((d) => inArea(d.grid_code)).map((d) => {
      const [x, y] = project([d.lon, d.lat]);
      const dot = svg("circle", { cx: x, cy: y, r: 4 * unit, class: `map-device ${deviceClass(d)}` },
        svg("title", {}, `${d.id} · ${tr(d.kind)} · ${d.online === null ? tr("unknown") : tr(d.online ? "online" : "offline")}`));
      dot.dataset.cell = d.grid_code;
      return dot;
    });
    const cams = cameras.filter((c) => cells.has(c.grid_code) && inArea(c.grid_code)).map((camera) => {
      const [x, y] = cells.get(camera.grid_code).centroid;
      const s = 7 * unit;  // above the case count so neither hides the other
      const mark = svg("path", { d: `M${x - s},${y - 2.6 * s}h${1.4 * s}l${0.6 * s},-${0.4 * s}v${1.6 * s}l-${0.6 * s},-${0.4 * s}h-${1.4 * s}Z`,
        class: "map-camera" }, svg("title", {}, `${tr("camera")} ${camera.id}`));
      mark.dataset.cell = camera.grid_code;
      return mark;
    });
    markerLayer.replaceChildren(...dots, ...cams);
  }

  async function loadCases() {
    const found = new Map();
    await Promise.all(OPEN_STATES.map(async (status) => {
      let cursor = null;
      for (let page = 0; page < CASE_PAGES; page += 1) {
        const result = await api.get("/api/v1/cases", { status, limit: 500, cursor });
        result.items.forEach((c) => found.set(c.id, c));
        cursor = result.next_cursor;
        if (!cursor) break;
      }
    }));
    open.clear();
    found.forEach((c, id) => open.set(id, c));
    cells.forEach((_, code) => paint(code));
    if (shown && !detail.element.isConnected) showCell(shown);
  }

  async function loadDevices() {
    [devices, cameras] = await Promise.all([api.get("/api/v1/devices").then((r) => r.items),
      api.get("/api/v1/cameras").then((r) => r.items)]);
    markers();
  }

  // A case seen live or loaded in the detail: it joins or leaves its cell's open cases.
  function noteCase(c) {
    const before = open.get(c.id);
    if (before && before.version > c.version) return;
    if (OPEN_STATES.includes(c.state)) open.set(c.id, c); else open.delete(c.id);
    paint(c.grid_code);
    if (c.grid_code === shown && !detail.element.isConnected) showCell(shown);
  }

  function showCell(code, focus = false) {
    const cell = cells.get(code);
    if (!cell) return;
    const previous = shown;
    shown = code;
    if (previous && previous !== code) paint(previous);
    paint(code);
    selectedRing.setAttribute("d", cell.path.getAttribute("d"));
    body.classList.add("with-panel");
    panel.hidden = false;
    const p = cell.feature.properties;
    const close = element("button", { type: "button", className: "case-close", textContent: "×", title: tr("close") });
    close.setAttribute("aria-label", tr("close"));
    close.addEventListener("click", closePanel);
    const list = casesOf(code);
    const caseList = list.length ? element("ul", { className: "map-cases" }, ...list.map((c) => {
      const button = element("button", { type: "button", className: "map-case" },
        element("span", { className: `case-sev sev-${c.severity}`, textContent: tr(`sev_${c.severity}`) }),
        element("span", { className: `case-state state-${c.state}`, textContent: tr(c.state) }),
        element("span", { className: "map-case-cat", textContent: i18n.category(c.category) }),
        element("span", { className: "map-case-title", textContent: c.title }));
      button.addEventListener("click", () => openCase(c.id));
      return element("li", {}, button);
    })) : element("p", { className: "case-muted", textContent: tr("none_open") });
    const here = devices.filter((d) => d.grid_code === code);
    const deviceList = here.length ? element("ul", { className: "map-devices" }, ...here.map((d) => element("li", {},
      element("span", { className: `map-dot ${deviceClass(d)}` }),
      element("code", { textContent: d.id }), ` ${tr(d.kind)} · `,
      d.enabled ? (d.online === null ? tr("unknown") : tr(d.online ? "online" : "offline")) : tr("disabled"),
      d.battery_v !== null ? ` · ${d.battery_v.toFixed(2)} V` : "",
      d.open_maintenance_cases.length ? element("span", { className: "case-overdue", textContent: ` · ${tr("maintenance")}` }) : "",
      element("small", { textContent: d.last_seen ? ` · ${tr("last_seen")} ${i18n.time(d.last_seen)}` : "" }))))
      : element("p", { className: "case-muted", textContent: tr("no_devices") });
    const camsHere = cameras.filter((c) => c.grid_code === code);
    const readings = element("div", { className: "map-readings" }, element("p", { className: "case-muted", textContent: tr("loading") }));
    panel.replaceChildren(
      element("header", { className: "case-head" }, element("h2", { textContent: p.name }), close),
      element("p", { className: "case-id", textContent: `${p.code} · ${p.street} · ${p.community} · ${Math.round(p.area_m2)} m²` }),
      element("h3", { textContent: `${tr("open_cases")} (${list.length})` }), caseList,
      element("h3", { textContent: tr("readings") }), readings,
      element("h3", { textContent: `${tr("devices")} (${here.length})` }), deviceList,
      ...(camsHere.length ? [element("h3", { textContent: tr("cameras") }), ...camsHere.map(cameraFigure)] : []));
    latestReadings(code, readings);
    if (focus) (panel.querySelector(".map-case") ?? panel).focus();
  }

  function cameraFigure(camera) {
    const image = element("img", { alt: `${tr("camera")} ${camera.id}`, className: "map-snapshot" });
    if (camera.latest_snapshot_url) api.imageUrl(camera.latest_snapshot_url).then((url) => { image.src = url; }, () => image.remove());
    return element("figure", { className: "map-camera-figure" }, image, element("figcaption", { textContent: camera.id }));
  }

  async function latestReadings(code, slot) {
    let series;
    try { series = await api.get(`/api/v1/grids/${code}/telemetry`, { every: "5m" }); } catch { slot.replaceChildren(); return; }
    const rows = READINGS.map(([key, how, digits]) => {
      const values = series.windows.map((w) => w[key] ?? null);
      const known = values.filter((v) => v !== null);
      if (!known.length) return null;
      const value = how === "sum" ? known.reduce((a, b) => a + b, 0) : known.at(-1);
      return element("div", { className: "spark-row" }, element("span", { textContent: tr(key) }),
        sparkline(values, { width: 110, height: 20, label: `${tr(key)}: ${known.map((v) => +v.toFixed(digits)).join(", ")}` }),
        element("b", { textContent: value.toFixed(digits) }));
    }).filter(Boolean);
    if (series.windows.some((w) => w.cover_open)) rows.push(element("div", { className: "case-overdue", textContent: tr("cover_open") }));
    if (shown === code) slot.replaceChildren(...(rows.length ? rows : [element("p", { className: "case-muted", textContent: tr("no_readings") })]));
  }

  async function openCase(id) {
    const back = element("button", { type: "button", className: "map-back", textContent: tr("back") });
    back.addEventListener("click", () => showCell(shown, true));
    panel.replaceChildren(back, detail.element);
    back.focus();  // the keyboard starts at the top of the panel, not scrolled past the way back
    await detail.open(id);
  }

  function closePanel() {
    const code = shown;
    shown = null;
    selectedRing.setAttribute("d", "");
    panel.hidden = true;
    body.classList.remove("with-panel");
    if (code) { paint(code); cells.get(code).path.focus(); }
  }

  map.addEventListener("click", (event) => {
    const target = event.target.closest("[data-code], [data-cell]");
    if (target) showCell(target.dataset.code ?? target.dataset.cell);
  });
  map.addEventListener("keydown", (event) => {
    const code = event.target.dataset?.code;
    if (code && (event.key === "Enter" || event.key === " ")) { event.preventDefault(); showCell(code, true); }
    const step = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] }[event.key];
    if (code && step) { event.preventDefault(); neighbour(code, step)?.path.focus(); }
  });

  // The arrow keys move to the nearest cell in that direction: cells are not in a regular grid.
  function neighbour(code, [dx, dy]) {
    const [x, y] = cells.get(code).centroid;
    let best = null;
    let bestScore = Infinity;
    for (const [other, cell] of cells) {
      if (other === code || !inArea(other)) continue;
      const [ox, oy] = [cell.centroid[0] - x, cell.centroid[1] - y];
      const along = ox * dx + oy * dy;
      if (along <= 0) continue;
      const score = along + 2 * Math.abs(ox * dy - oy * dx);  // straight ahead beats diagonal
      if (score < bestScore) { best = cell; bestScore = score; }
    }
    return best;
  }
  map.addEventListener("focusin", (event) => { focusRing.setAttribute("d", event.target.dataset?.code ? event.target.getAttribute("d") : ""); });
  map.addEventListener("focusout", () => { focusRing.setAttribute("d", ""); });
  panel.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || event.target.closest("form")) return;
    if (detail.element.isConnected) showCell(shown, true); else closePanel();
  });
  streetSelect.addEventListener("change", () => { area = streetSelect.value; zoom(); });
  communitySelect.addEventListener("change", () => { area = communitySelect.value || streetSelect.value; zoom(); });
  const resize = new ResizeObserver(() => zoom());
  resize.observe(map);

  zoom();
  await Promise.all([loadCases(), loadDevices()]);
  if (!map.isConnected) { resize.disconnect(); return null; }  // the view was left while it loaded
  if (params.cell && cells.has(params.cell)) showCell(params.cell);
  // One refresh at a time: while the API is unreachable a request waits (and retries) instead of piling up.
  // The open cell's readings are refreshed with the devices (its cases follow the event stream).
  let refreshing = null;
  const timer = setInterval(() => {
    if (stopped || refreshing) return;
    const slot = panel.querySelector(".map-readings");
    refreshing = Promise.all([loadDevices(), shown && slot ? latestReadings(shown, slot) : null])
      .catch(() => {}).finally(() => { refreshing = null; });
  }, DEVICE_REFRESH_MS);

  return {
    onEvent(event) {
      if (event.type === "reset") { loadCases(); return; }
      if ((event.type !== "case" && event.type !== "detection") || !event.data?.case) return;
      noteCase(event.data.case);
      detail.onCase(event.data.case);
    },
    unmount() { stopped = true; clearInterval(timer); resize.disconnect(); },
  };
}
