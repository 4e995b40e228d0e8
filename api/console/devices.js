// Devices (设备): the health table of the sensors in scope — last seen, online, battery against its floor, open
// maintenance cases (设备离线 9902, 设备低电量 9903) — filtered by kind and street, and enabled or disabled by
// device admins.

import { element } from "./dom.js";

const REFRESH_MS = 30_000;
const MAINTENANCE = new Set(["9902", "9903"]);
const KINDS = ["rain", "crowd", "manhole"];

const LABELS = {
  zh: {
    rain: "雨量计", crowd: "客流计", manhole: "井盖传感器", all_kinds: "全部类型", all_streets: "全部街道",
    kind: "类型", street: "街道", id: "设备", cell: "网格 / 街道", last_seen: "最后上报", online: "在线",
    battery: "电池 / 下限", maintenance: "运维案件", enabled: "启用", never: "从未上报", is_online: "在线",
    is_offline: "离线", unknown: "未知", yes: "是", no: "否", enable: "启用", disable: "停用",
    summary: "{n} 台设备 · {off} 离线 · {low} 电量低 · {dis} 已停用", sort_hint: "按最后上报排序",
    done_enabled: "{id} 已启用。{broker}", done_disabled: "{id} 已停用。{broker}", unchanged: "{id} 无变化",
    none: "没有符合条件的设备",
  },
  en: {
    rain: "rain gauge", crowd: "crowd counter", manhole: "manhole sensor", all_kinds: "All kinds",
    all_streets: "All streets", kind: "Kind", street: "Street", id: "Device", cell: "Cell / street",
    last_seen: "Last seen", online: "Online", battery: "Battery / floor", maintenance: "Maintenance cases",
    enabled: "Enabled", never: "never", is_online: "online", is_offline: "offline", unknown: "unknown", yes: "yes",
    no: "no", enable: "Enable", disable: "Disable",
    summary: "{n} devices · {off} offline · {low} low battery · {dis} disabled", sort_hint: "Sort by last seen",
    done_enabled: "{id} enabled. {broker}", done_disabled: "{id} disabled. {broker}", unchanged: "{id}: no change",
    none: "No device matches",
  },
};

export async function mount(root, { api, i18n, me, navigate, params }) {
  const lang = i18n.language();
  const tr = (key, vars = {}) => String(LABELS[lang][key] ?? i18n.t(key)).replace(/\{(\w+)\}/g, (_, k) => vars[k] ?? "");
  const relative = new Intl.RelativeTimeFormat(lang === "zh" ? "zh-CN" : "en", { numeric: "auto" });
  const canAdmin = me.rights.includes("registry");
  const filter = { kind: params.kind ?? "", street: params.street ?? "", sort: params.sort ?? "" };
  let devices = [];
  const places = new Map();  // street and community codes → names

  const kind = element("select", {}, element("option", { value: "", textContent: tr("all_kinds") }),
    ...KINDS.map((k) => element("option", { value: k, textContent: tr(k) })));
  const street = element("select", {}, element("option", { value: "", textContent: tr("all_streets") }));
  kind.setAttribute("aria-label", tr("kind"));
  street.setAttribute("aria-label", tr("street"));
  const summary = element("p", { className: "devices-summary" });
  const message = element("p", { className: "devices-message", role: "status" });
  message.setAttribute("aria-live", "polite");
  const sortButton = element("button", { type: "button", className: "devices-sort", title: tr("sort_hint") });
  sortButton.addEventListener("click", () => {
    filter.sort = { "": "last_seen", last_seen: "-last_seen", "-last_seen": "" }[filter.sort];
    update();
  });
  const lastSeenHeader = element("th", { scope: "col" }, sortButton);
  const header = element("tr", {}, ...["id", "kind", "cell"].map((key) => element("th", { scope: "col", textContent: tr(key) })),
    lastSeenHeader, ...["online", "battery", "maintenance", "enabled"].map((key) => element("th", { scope: "col", textContent: tr(key) })));
  const body = element("tbody");
  root.replaceChildren(element("div", { className: "devices" },
    element("div", { className: "devices-bar" }, kind, street, summary, message),
    element("div", { className: "devices-scroll" }, element("table", { className: "devices-table" }, element("thead", {}, header), body))));

  for (const node of [kind, street]) node.addEventListener("change", () => { filter[node === kind ? "kind" : "street"] = node.value; update(); });

  function ago(iso) {
    if (!iso) return tr("never");
    const seconds = Math.round((Date.now() - Date.parse(iso)) / 1000);
    if (seconds < 60) return relative.format(-seconds, "second");
    if (seconds < 3600) return relative.format(-Math.round(seconds / 60), "minute");
    if (seconds < 86400) return relative.format(-Math.round(seconds / 3600), "hour");
    return relative.format(-Math.round(seconds / 86400), "day");
  }

  function lowBattery(device) {
    return device.battery_v !== null && device.battery_floor_v !== null && device.battery_v <= device.battery_floor_v;
  }

  function row(device) {
    const streetName = places.get(device.grid_code.slice(0, 9)) ?? "";
    const communityName = places.get(device.grid_code.slice(0, 12)) ?? "";
    const online = device.online === null ? ["unknown", "unknown"] : device.online ? ["on", "is_online"] : ["off", "is_offline"];
    const battery = device.battery_v === null ? "–"
      : `${device.battery_v.toFixed(2)} V${device.battery_floor_v === null ? "" : ` / ${device.battery_floor_v.toFixed(2)} V`}`;
    const cases = device.open_maintenance_cases.map((id) => {
      const link = element("a", { href: `#/board?case=${encodeURIComponent(id)}`, textContent: id });
      link.addEventListener("click", (event) => { event.preventDefault(); navigate("board", { case: id }); });
      return link;
    });
    const enabled = element("td", { className: device.enabled ? "" : "devices-disabled" }, tr(device.enabled ? "yes" : "no"));
    if (canAdmin) {
      const toggle = element("button", { type: "button", textContent: tr(device.enabled ? "disable" : "enable") });
      toggle.addEventListener("click", () => setEnabled(device, !device.enabled, toggle));
      enabled.append(" ", toggle);
    }
    const tr_ = element("tr", { className: device.enabled ? "" : "devices-off" },
      element("td", {}, element("code", { textContent: device.id })),
      element("td", { textContent: tr(device.kind) }),
      element("td", {}, device.grid_code, " ", element("small", { textContent: `${streetName} ${communityName}` })),
      element("td", { textContent: ago(device.last_seen), title: device.last_seen ? i18n.time(device.last_seen) : "" }),
      element("td", { className: `devices-online ${online[0]}`, textContent: tr(online[1]) }),
      element("td", { className: lowBattery(device) ? "devices-low" : "", textContent: battery }),
      element("td", { className: "devices-cases" }, ...cases),
      enabled);
    tr_.dataset.testid = "device-row";
    tr_.dataset.deviceId = device.id;
    return tr_;
  }

  // Filters and sort live in the address (without a reload), so a shared link opens the same table.
  function update() {
    const query = new URLSearchParams(Object.entries(filter).filter(([, v]) => v)).toString();
    history.replaceState(null, "", `#/devices${query ? `?${query}` : ""}`);
    render();
  }

  function render() {
    kind.value = filter.kind;
    street.value = filter.street;
    const shown = devices.filter((d) => (!filter.kind || d.kind === filter.kind)
      && (!filter.street || d.grid_code.startsWith(filter.street)));
    if (filter.sort) {
      const sign = filter.sort.startsWith("-") ? -1 : 1;
      const seen = (d) => (d.last_seen ? Date.parse(d.last_seen) : 0);  // never heard sorts as the oldest
      shown.sort((a, b) => sign * (seen(a) - seen(b)) || a.id.localeCompare(b.id));
    }
    const arrow = { last_seen: " ▲", "-last_seen": " ▼" }[filter.sort] ?? "";
    sortButton.textContent = `${tr("last_seen")}${arrow}`;
    lastSeenHeader.setAttribute("aria-sort", { last_seen: "ascending", "-last_seen": "descending" }[filter.sort] ?? "none");
    summary.textContent = tr("summary", {
      n: shown.length, off: shown.filter((d) => d.online === false).length,
      low: shown.filter(lowBattery).length, dis: shown.filter((d) => !d.enabled).length,
    });
    // The table is rebuilt every refresh: put the keyboard back on the same button or link of the same device.
    const focused = document.activeElement;
    const focusedRow = body.contains(focused) ? focused.closest("tr") : null;
    const focusAt = focusedRow ? [...focusedRow.querySelectorAll("a, button")].indexOf(focused) : -1;
    body.replaceChildren(...(shown.length ? shown.map(row)
      : [element("tr", {}, element("td", { colSpan: 8, className: "devices-none", textContent: tr("none") }))]));
    if (focusedRow) {
      const again = body.querySelector(`[data-device-id="${CSS.escape(focusedRow.dataset.deviceId)}"]`);
      again?.querySelectorAll("a, button")[focusAt]?.focus();
    }
  }

  async function load() {
    devices = (await api.get("/api/v1/devices")).items;
    render();
  }

  async function setEnabled(device, enable, toggle) {
    toggle.disabled = true;
    try {
      const out = await api.post(`/api/v1/devices/${encodeURIComponent(device.id)}/${enable ? "enable" : "disable"}`);
      device.enabled = out.enabled;
      message.classList.remove("error");
      message.textContent = out.changed ? tr(out.enabled ? "done_enabled" : "done_disabled", { id: out.id, broker: out.broker })
        : tr("unchanged", { id: out.id });
      render();
      // The button was disabled while waiting, so the browser let go of the focus: give it back.
      body.querySelector(`[data-device-id="${CSS.escape(device.id)}"] button`)?.focus();
    } catch (error) {
      message.classList.add("error");
      message.textContent = error.message;
      toggle.disabled = false;
    }
  }

  const hierarchy = await api.get("/api/v1/grids/hierarchy");
  for (const district of hierarchy.districts) {
    for (const s of district.streets) {
      places.set(s.code, s.name);
      street.append(element("option", { value: s.code, textContent: s.name }));
      for (const community of s.communities) places.set(community.code, community.name);
    }
  }
  await load();

  const timer = setInterval(() => load().catch(() => {}), REFRESH_MS);  // last seen and online change by themselves
  let soon = null;
  return {
    onEvent(event) {
      const category = event.data?.case?.category;
      if (event.type === "reset" || (event.type === "case" && MAINTENANCE.has(category))) {
        clearTimeout(soon);
        soon = setTimeout(() => load().catch(() => {}), 500);
      }
    },
    unmount() {
      clearInterval(timer);
      clearTimeout(soon);
    },
  };
}
