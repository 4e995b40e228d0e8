// Figures (绩效): the KPIs of GET /api/v1/kpis per department, street, community or source for one period, or
// their trend over periods; the same numbers in a table, and the CSV the API writes, downloaded with the token.

import { element, refreshing } from "./dom.js";
import { barChart, lineChart } from "./svgchart.js";

const RATES = ["closure_rate", "on_time_closure_rate", "rework_rate", "extension_rate", "timely_handling_rate",
  "grassroots_rate", "first_time_right_rate", "satisfaction_rate"];
const TIMES = ["mean_time_to_file_s", "mean_time_to_dispatch_s", "mean_time_to_close_s"];
const FIELDS = ["due", "closed", ...RATES, ...TIMES];
// Rework and extension are better low: drawn in a warning colour so no one reads a tall bar as good.
const LOWER_IS_BETTER = new Set(["rework_rate", "extension_rate"]);
const TIME_COLORS = ["#8250df", "var(--orange)", "var(--accent)"];
const BY = ["department", "street", "community", "source", "trend"];
const PERIODS = ["day", "week", "month"];
const MAX_PERIODS = 31;
const REFRESH_MS = 60_000;

const LABELS = {
  zh: {
    by: "维度", department: "按部门", street: "按街道", community: "按社区", source: "按来源", trend: "趋势(按期间)",
    period: "周期", day: "日", week: "周", month: "月", periods: "期数", shown: "期间", csv: "导出 CSV",
    group: "分组", total: "合计", due: "应结案数", closed: "已结案数", closure_rate: "结案率",
    on_time_closure_rate: "按期结案率", rework_rate: "返工率", extension_rate: "延期率", timely_handling_rate: "处置及时率",
    grassroots_rate: "基层处置率", first_time_right_rate: "责任到位率", satisfaction_rate: "结果满意率",
    mean_time_to_file_s: "平均立案时长", mean_time_to_dispatch_s: "平均派遣时长", mean_time_to_close_s: "平均结案时长",
    mean_times: "平均时长", unit_min: "分钟", unit_h: "小时", unit_d: "天", s: "{n} 秒", loading: "加载中…", none: "该期间没有案件", undispatched: "未派遣",
    scope: "范围 {s} · 时区 {tz} · 空值(—)表示分母为零", downloaded: "已下载 {f}", updated: "更新于 {t}",
    min: "{n} 分钟", h: "{n} 小时", d: "{n} 天", table: "绩效数据表",
  },
  en: {
    by: "By", department: "Department", street: "Street", community: "Community", source: "Source",
    trend: "Trend (by period)", period: "Period", day: "day", week: "week", month: "month", periods: "Periods",
    shown: "Showing", csv: "Download CSV", group: "Group", total: "Total", due: "Due", closed: "Closed",
    closure_rate: "Closure rate", on_time_closure_rate: "On-time closure", rework_rate: "Rework",
    extension_rate: "Extension", timely_handling_rate: "Timely handling", grassroots_rate: "Grassroots handling",
    first_time_right_rate: "Right first time", satisfaction_rate: "Satisfaction", mean_time_to_file_s: "Mean time to file",
    mean_time_to_dispatch_s: "Mean time to dispatch", mean_time_to_close_s: "Mean time to close",
    mean_times: "Mean times", unit_min: "min", unit_h: "h", unit_d: "d", s: "{n} s", loading: "Loading…", none: "No cases in this period",
    undispatched: "not dispatched", scope: "scope {s} · time zone {tz} · — means nothing to divide by",
    downloaded: "Downloaded {f}", updated: "updated {t}", min: "{n} min", h: "{n} h", d: "{n} d", table: "Figures table",
  },
};

function select(id, options, value) {
  const node = element("select", { id }, ...options.map(([v, label]) => element("option", { value: v, textContent: label })));
  node.value = value;
  return node;
}

export async function mount(root, { api, i18n, params }) {
  const lang = i18n.language();
  const locale = lang === "zh" ? "zh-CN" : "en-GB";
  const tr = (key, vars = {}) => String(LABELS[lang][key] ?? i18n.t(key)).replace(/\{(\w+)\}/g, (_, k) => vars[k] ?? "");
  const state = {
    by: BY.includes(params.by) ? params.by : "department",
    period: PERIODS.includes(params.period) ? params.period : "week",
    periods: Math.min(MAX_PERIODS, Math.max(1, Number(params.periods) || 8)),
    shown: params.shown ?? "",  // the period label whose groups are drawn; "" is the latest
  };
  let data = null;
  let sequence = 0;
  let gone = false;

  const bySelect = select("figures-by", BY.map((b) => [b, tr(b)]), state.by);
  const periodSelect = select("figures-period", PERIODS.map((p) => [p, tr(p)]), state.period);
  const countInput = element("input", { id: "figures-periods", type: "number", min: 1, max: MAX_PERIODS, value: state.periods });
  const shownSelect = element("select", { id: "figures-shown" });
  const csvButton = element("button", { type: "button", className: "figures-csv", textContent: tr("csv") });
  csvButton.dataset.testid = "kpi-csv";
  const status = element("p", { className: "figures-status", role: "status" });
  const note = element("p", { className: "figures-note" });
  const rates = element("div", { className: "figures-rates" });
  const times = element("div", { className: "figures-times" });
  const table = element("table", { className: "figures-table" });
  root.replaceChildren(element("div", { className: "figures" },
    element("div", { className: "figures-bar" },
      element("label", { htmlFor: "figures-by", textContent: tr("by") }), bySelect,
      element("label", { htmlFor: "figures-period", textContent: tr("period") }), periodSelect,
      element("label", { htmlFor: "figures-periods", textContent: tr("periods") }), countInput,
      element("label", { htmlFor: "figures-shown", textContent: tr("shown") }), shownSelect,
      csvButton, status),
    note, rates, times,
    element("div", { className: "figures-scroll", tabIndex: 0, ariaLabel: tr("table") }, table)));

  bySelect.addEventListener("change", () => { state.by = bySelect.value; update(true); });
  periodSelect.addEventListener("change", () => { state.period = periodSelect.value; state.shown = ""; update(true); });
  countInput.addEventListener("change", () => {
    state.periods = Math.min(MAX_PERIODS, Math.max(1, Math.round(Number(countInput.value)) || 1));
    countInput.value = state.periods;
    update(true);
  });
  shownSelect.addEventListener("change", () => { state.shown = shownSelect.value; update(false); });
  csvButton.addEventListener("click", download);

  function query(format) {
    return { by: state.by === "trend" ? undefined : state.by, period: state.period, periods: state.periods, format };
  }

  // The choice lives in the address without a reload, so a shared link opens the same figures.
  function update(fetch) {
    const address = new URLSearchParams(Object.entries(state).filter(([, v]) => v !== ""));
    history.replaceState(null, "", `#/figures?${address}`);
    if (fetch) load();
    else draw();
  }

  async function load({ quiet = false } = {}) {
    const mine = ++sequence;
    if (!quiet) status.textContent = tr("loading");
    try {
      const answer = await api.get("/api/v1/kpis", query());
      if (mine !== sequence || gone) return;
      data = answer;
      status.classList.remove("error");
      status.textContent = tr("updated", { t: new Date().toLocaleTimeString(locale, { hour12: false }) });
      draw();
    } catch (error) {
      if (mine !== sequence || gone) return;
      status.classList.add("error");
      status.textContent = error.message;
    }
  }

  // A link cannot carry the bearer token: fetch the CSV and hand the browser a blob under the API's file name.
  async function download() {
    csvButton.disabled = true;
    try {
      const response = await api.request(`/api/v1/kpis?${new URLSearchParams(Object.entries(query("csv"))
        .filter(([, v]) => v !== undefined))}`, { raw: true });
      const name = /filename="?([^";]+)"?/.exec(response.headers.get("Content-Disposition") ?? "")?.[1] ?? "gridhub-kpis.csv";
      const url = URL.createObjectURL(await response.blob());
      const link = element("a", { href: url, download: name });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
      status.classList.remove("error");
      status.textContent = tr("downloaded", { f: name });
    } catch (error) {
      status.classList.add("error");
      status.textContent = error.message;
    } finally {
      csvButton.disabled = false;
      csvButton.focus();  // a disabled button lets go of the focus
    }
  }

  const percent = (v) => (v === null || v === undefined ? "—" : `${(v * 100).toFixed(1).replace(/\.0$/, "")}%`);
  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    if (seconds < 60) return tr("s", { n: Math.round(seconds) });
    if (seconds < 3600) return tr("min", { n: Math.round(seconds / 60) });
    if (seconds < 86400) return tr("h", { n: (seconds / 3600).toFixed(1) });
    return tr("d", { n: (seconds / 86400).toFixed(1) });
  }
  const cell = (field, v) => (field === "due" || field === "closed" ? String(v)
    : TIMES.includes(field) ? duration(v) : percent(v));

  function groupName(group) {
    if (state.by === "department") return group.key ? i18n.department(group.key) : tr("undispatched");
    if (state.by === "source") return i18n.t(group.key);
    return group.name;
  }

  function width(columns) {
    const space = rates.clientWidth || root.clientWidth || 1300;
    return Math.floor((space - 10 * (columns - 1)) / columns) - 20;
  }

  function draw() {
    if (!data) return;
    const labels = data.periods.map((p) => p.label);
    shownSelect.replaceChildren(...labels.map((label) => element("option", { value: label, textContent: label })).reverse());
    const shown = data.periods.find((p) => p.label === state.shown) ?? data.periods.at(-1);
    shownSelect.value = shown.label;
    shownSelect.disabled = false;
    note.textContent = tr("scope", { s: data.scope ?? "—", tz: data.timezone });
    const trend = state.by === "trend";
    // Rows: the groups of the shown period, or (trend) the periods' totals.
    const rows = trend ? data.periods.map((p) => ({ label: p.label, figures: p.total, total: p === shown }))
      : shown.groups.map((g) => ({ label: groupName(g), figures: g.figures }));

    const small = width(4);
    rates.replaceChildren(...RATES.map((field) => {
      const color = LOWER_IS_BETTER.has(field) ? "var(--warn)" : "var(--accent)";
      const y = { max: 100, format: (v) => `${Math.round(v)}%`, unit: "" };
      if (trend) {
        return lineChart({ kind: "kpi", title: tr(field), width: small, height: 130, locale, y,
          from: -0.5, to: labels.length - 0.5, xTicks: thinTicks(labels, small - 60), legend: false, series: [{ label: tr(field), color,
            points: data.periods.map((p, i) => [i, p.total[field] === null ? null : p.total[field] * 100]) }] });
      }
      return barChart({ kind: "kpi", title: `${tr(field)} · ${shown.label}`, width: small, height: 130, y,
        categories: rows.map((r) => r.label),
        series: [{ label: tr(field), color, values: rows.map((r) => (r.figures[field] === null ? null : r.figures[field] * 100)) }] });
    }));

    const timeSeries = TIMES.map((field, k) => ({ label: tr(field), color: TIME_COLORS[k] }));
    // One unit for the whole chart, the one that keeps its longest bar between 1 and a few hundred.
    const longest = Math.max(0, ...rows.flatMap((r) => TIMES.map((f) => r.figures[f] ?? 0)));
    const [unit, size] = longest < 3600 ? ["unit_min", 60] : longest < 4 * 86400 ? ["unit_h", 3600] : ["unit_d", 86400];
    const hours = (v) => (v === null || v === undefined ? null : Number((v / size).toFixed(2)));
    const timeY = { label: `${tr("mean_times")} (${tr(unit)})`, unit: tr(unit), format: (v) => `${Number(v.toFixed(2))}` };
    times.replaceChildren(trend
      ? lineChart({ kind: "kpi-times", title: timeY.label, width: width(1), height: 150, locale, y: timeY,
        from: -0.5, to: labels.length - 0.5, xTicks: thinTicks(labels, width(1) - 60), series: timeSeries.map((s, k) => ({ ...s,
          points: data.periods.map((p, i) => [i, hours(p.total[TIMES[k]])]) })) })
      : barChart({ kind: "kpi-times", title: `${timeY.label} · ${shown.label}`, width: width(1), height: 150, y: timeY,
        categories: rows.map((r) => r.label),
        series: timeSeries.map((s, k) => ({ ...s, values: rows.map((r) => hours(r.figures[TIMES[k]])) })) }));

    drawTable(rows, trend ? null : shown);
  }

  // Period labels on a trend axis, short (11-23, W49) and thinned to what fits, counted back from the latest.
  function thinTicks(labels, room) {
    const short = labels.map((label) => label.replace(/^\d{4}-(?=\d\d-\d\d$|W)/, ""));
    const every = Math.ceil(labels.length / Math.max(2, Math.floor(room / 56)));
    return short.map((label, x) => ({ x, label })).filter((_, i) => (labels.length - 1 - i) % every === 0);
  }

  function valueCell(field, figures, total) {
    const td = element("td", { textContent: cell(field, figures[field]) });
    if (total) {
      td.dataset.testid = `kpi-total-${field}`;
      td.dataset.value = figures[field] === null ? "" : String(figures[field]);
    }
    return td;
  }

  function drawTable(rows, shown) {
    const head = element("tr", {}, element("th", { scope: "col", textContent: state.by === "trend" ? tr("period") : tr("group") }),
      ...FIELDS.map((field) => element("th", { scope: "col", textContent: tr(field) })));
    const body = rows.map((row) => element("tr", { className: row.total ? "figures-current" : "" },
      element("th", { scope: "row", textContent: row.label }),
      ...FIELDS.map((field) => valueCell(field, row.figures, row.total))));
    if (shown && !rows.length) body.push(element("tr", {}, element("td", { colSpan: FIELDS.length + 1, className: "figures-none", textContent: tr("none") })));
    const foot = shown ? [element("tfoot", {}, element("tr", {}, element("th", { scope: "row", textContent: `${tr("total")} · ${shown.label}` }),
      ...FIELDS.map((field) => valueCell(field, shown.total, true))))] : [];
    table.replaceChildren(element("thead", {}, head), element("tbody", {}, ...body), ...foot);
  }

  await load();
  // Cases close all day; a refresh is skipped while the keyboard is inside the figures, not to move it.
  const unmount = refreshing({ everyMs: REFRESH_MS,
    busy: () => root.contains(document.activeElement) && document.activeElement !== root,
    reload: () => load({ quiet: true }), redraw: draw, onUnmount: () => { gone = true; } });
  return { unmount };
}
