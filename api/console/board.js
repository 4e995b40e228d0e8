// The case board (案件): the cases in scope, newest first, filtered like GET /api/v1/cases, kept current by the
// live events without reloading, and the case detail beside the list. Filters and the open case live in the
// address, so a link (from the devices view, or a colleague) opens the same board.

import { CaseDetail, SOURCES, STATES, TIERS, departments, isOverdue, translator } from "./casedetail.js";
import { element } from "./dom.js";

const PAGE = 50;
const FILTERS = ["status", "category", "grid", "department", "tier", "source", "overdue"];

const LABELS = {
  zh: {
    all_states: "全部状态", all_categories: "全部类别", all_areas: "全部街道 / 社区", all_departments: "全部部门",
    all_tiers: "全部层级", all_sources: "全部来源", area: "街道 / 社区", overdue_only: "只看超期",
    when: "上报", title: "描述", more: "加载更多", shown: "显示 {n} 件{more}", has_more: ",还有更多",
    none: "没有符合条件的案件", stale: "已不符合当前筛选(刷新后移除)", filters: "筛选", clear: "清除筛选",
    list: "案件列表,上下键移动,回车打开",
  },
  en: {
    all_states: "All states", all_categories: "All categories", all_areas: "All streets / communities",
    all_departments: "All departments", all_tiers: "All tiers", all_sources: "All sources", area: "Street / community",
    overdue_only: "Overdue only", when: "Reported", title: "Title", more: "Load more", shown: "{n} cases shown{more}",
    has_more: ", more available", none: "No case matches", stale: "No longer matches the filters (gone on reload)",
    filters: "Filters", clear: "Clear filters", list: "Cases: arrow keys move, Enter opens",
  },
};

export async function mount(root, ctx) {
  const { api, i18n, params } = ctx;
  const tr = translator(i18n, LABELS);
  const filter = Object.fromEntries(FILTERS.map((key) => [key, params[key] ?? ""]));
  const rows = new Map();  // case id → its summary, in the order shown
  const names = new Map();  // street, community and cell codes → names
  let cursor = null;
  let generation = 0;  // a newer load makes the answers of older ones moot
  // One compact local time for both languages: a column of them must line up and fit 90 pixels.
  const two = (n) => String(n).padStart(2, "0");
  const short = { format: (d) => `${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}` };
  const categoryNames = new Map(i18n.categories().map((c) => [c.code, i18n.language() === "zh" ? c.name_zh : c.name_en]));

  const select = (key, all, options) => {
    const node = element("select", { name: key }, element("option", { value: "", textContent: tr(all) }), ...options);
    node.setAttribute("aria-label", tr(key === "grid" ? "area" : key === "status" ? "state" : key));
    return node;
  };
  const option = (value, text) => element("option", { value, textContent: text });
  const controls = {
    status: select("status", "all_states", STATES.map((s) => option(s, tr(s)))),
    category: select("category", "all_categories", i18n.categories().map((c) => option(c.code, i18n.category(c.code)))),
    grid: select("grid", "all_areas", []),
    department: select("department", "all_departments", departments(i18n).map((d) => option(d, i18n.department(d)))),
    tier: select("tier", "all_tiers", TIERS.map((x) => option(x, tr(x)))),
    source: select("source", "all_sources", SOURCES.map((x) => option(x, tr(x)))),
    overdue: element("input", { type: "checkbox", name: "overdue" }),
  };
  const clear = element("button", { type: "button", className: "board-clear", textContent: tr("clear") });
  const summary = element("p", { className: "board-summary", role: "status" });
  const body = element("tbody");
  const more = element("button", { type: "button", className: "board-more", textContent: tr("more"), hidden: true });
  const table = element("table", { className: "board-table" },
    element("thead", {}, element("tr", {}, ...["when", "category", "title", "cell", "state", "severity", "department",
      "deadline"].map((key) => element("th", { scope: "col", textContent: tr(key) })))), body);
  table.setAttribute("aria-label", tr("list"));
  const aside = element("div", { className: "board-detail", hidden: true });
  const detail = new CaseDetail(ctx, { onClose: closeDetail, onLoaded: (doc) => upsert(doc, false) });
  aside.append(detail.element);
  const layout = element("div", { className: "board-body" },
    element("div", { className: "board-list" }, table, more), aside);
  const bar = element("form", { className: "board-bar", role: "search" },
    ...Object.entries(controls).filter(([key]) => key !== "overdue").map(([, node]) => node),
    element("label", { className: "board-check" }, controls.overdue, tr("overdue_only")), clear, summary);
  bar.setAttribute("aria-label", tr("filters"));
  root.replaceChildren(element("div", { className: "board" }, bar, layout));

  for (const [key, node] of Object.entries(controls)) {
    node.addEventListener("change", () => { filter[key] = key === "overdue" ? (node.checked ? "true" : "") : node.value; remember(); load(); });
  }
  clear.addEventListener("click", () => { FILTERS.forEach((key) => { filter[key] = ""; }); showFilters(); remember(); load(); });
  bar.addEventListener("submit", (event) => event.preventDefault());
  more.addEventListener("click", () => page(false));
  detail.element.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !event.target.closest("form")) closeDetail();
  });

  function showFilters() {
    for (const [key, node] of Object.entries(controls)) {
      if (key === "overdue") node.checked = filter.overdue === "true"; else node.value = filter[key];
    }
  }

  // Filters and the open case go in the address without a reload, so a link opens the same board.
  function remember() {
    const query = new URLSearchParams(Object.entries({ ...filter, case: detail.caseId && !aside.hidden ? detail.caseId : "" })
      .filter(([, v]) => v)).toString();
    history.replaceState(null, "", `#/board${query ? `?${query}` : ""}`);
  }

  function matches(c) {
    return (!filter.status || c.state === filter.status) && (!filter.category || c.category === filter.category)
      && (!filter.grid || c.grid_code.startsWith(filter.grid)) && (!filter.department || c.department === filter.department)
      && (!filter.tier || c.tier === filter.tier) && (!filter.source || c.source === filter.source)
      && (filter.overdue !== "true" || isOverdue(c));
  }

  function place(code) {
    const community = names.get(code.slice(0, 12));
    return community ? `${community} ${code.slice(12)}` : code;
  }

  function row(c) {
    const overdue = isOverdue(c);
    const tr_ = element("tr", { tabIndex: -1, className: matches(c) ? "" : "board-stale" },
      element("td", { className: "board-when", textContent: short.format(new Date(c.reported_at)) }),
      element("td", { className: "board-cat", textContent: categoryNames.get(c.category) ?? c.category, title: i18n.category(c.category) }),
      element("td", { className: "board-title", textContent: c.title, title: c.title }),
      element("td", { className: "board-cell", textContent: place(c.grid_code), title: `${names.get(c.grid_code) ?? ""} ${c.grid_code}` }),
      element("td", {}, element("span", { className: `case-state state-${c.state}`, textContent: tr(c.state) })),
      element("td", { title: tr(`sev_${c.severity}`) }, element("span", { className: `case-sev sev-${c.severity}`, textContent: tr(`sev_${c.severity}`) })),
      element("td", { textContent: c.department ? `${i18n.department(c.department)} · ${tr(c.tier)}` : "–" }),
      element("td", { className: overdue ? "case-overdue" : "", textContent: c.deadline_at
        ? `${short.format(new Date(c.deadline_at))}${overdue ? ` · ${tr("overdue")}` : ""}` : "–" }));
    if (!matches(c)) tr_.title = tr("stale");
    Object.assign(tr_.dataset, { testid: "case-row", caseId: c.id, state: c.state });
    if (c.id === detail.caseId && !aside.hidden) tr_.setAttribute("aria-selected", "true");
    return tr_;
  }

  async function load() {
    rows.clear();
    cursor = null;
    body.replaceChildren();
    await page(true);
  }

  async function page(first) {
    const mine = first ? ++generation : generation;
    more.disabled = true;
    let result;
    try {
      result = await api.get("/api/v1/cases", { ...filter, limit: PAGE, sort: "-reported", cursor: first ? null : cursor });
    } catch (error) {
      summary.textContent = error.message;
      summary.classList.add("error");
      return;
    } finally { more.disabled = false; }
    if (mine !== generation) return;
    summary.classList.remove("error");
    for (const c of result.items) {
      if (rows.has(c.id)) continue;  // a live event put it there already
      rows.set(c.id, c);
      body.append(row(c));
    }
    cursor = result.next_cursor;
    rovingStart();
    count();
  }

  function count() {
    more.hidden = !cursor;
    summary.textContent = rows.size ? tr("shown", { n: rows.size, more: cursor ? tr("has_more") : "" }) : tr("none");
  }

  // A live or freshly loaded case: replace its row where it stands, or insert a new one by report time.
  function upsert(c, flash = true) {
    const summaryOnly = Object.fromEntries(Object.entries(c).filter(([key]) => !["timeline", "evidence"].includes(key)));
    const old = body.querySelector(`tr[data-case-id="${CSS.escape(c.id)}"]`);
    if (old) {
      if (rows.get(c.id)?.version > c.version) return;
      rows.set(c.id, summaryOnly);
      const fresh = row(summaryOnly);
      fresh.tabIndex = old.tabIndex;
      const focused = document.activeElement === old;
      old.replaceWith(fresh);
      if (focused) fresh.focus();
      if (flash) highlight(fresh);
      return;
    }
    if (!matches(c)) return;
    const at = Date.parse(c.reported_at);
    const after = [...body.rows].find((r) => Date.parse(rows.get(r.dataset.caseId).reported_at) < at);
    if (!after && cursor) return;  // older than every loaded row: it comes with a later page
    rows.set(c.id, summaryOnly);
    const fresh = row(summaryOnly);
    body.insertBefore(fresh, after ?? null);
    if (flash) highlight(fresh);
    rovingStart();
    count();
  }

  function highlight(node) {
    node.classList.add("board-flash");
    setTimeout(() => node.classList.remove("board-flash"), 2500);
  }

  // One tab stop for the whole table: the arrow keys move between rows, Enter or Space opens one.
  function rovingStart() {
    if (![...body.rows].some((r) => r.tabIndex === 0) && body.rows[0]) body.rows[0].tabIndex = 0;
  }
  function focusRow(next) {
    if (!next) return;
    [...body.rows].forEach((r) => { r.tabIndex = -1; });
    next.tabIndex = 0;
    next.focus();
  }
  body.addEventListener("keydown", (event) => {
    const current = event.target.closest("tr");
    if (!current) return;
    const all = [...body.rows];
    const moves = { ArrowDown: current.nextElementSibling, ArrowUp: current.previousElementSibling,
      Home: all[0], End: all.at(-1), PageDown: all[Math.min(all.length - 1, all.indexOf(current) + 10)],
      PageUp: all[Math.max(0, all.indexOf(current) - 10)] };
    if (event.key in moves) { event.preventDefault(); focusRow(moves[event.key]); }
    else if (event.key === "Enter" || event.key === " ") { event.preventDefault(); openCase(current.dataset.caseId); }
  });
  body.addEventListener("click", (event) => {
    const current = event.target.closest("tr");
    if (!current) return;
    focusRow(current);
    openCase(current.dataset.caseId);
  });

  async function openCase(id, focus = false) {
    aside.hidden = false;
    layout.classList.add("with-detail");
    body.querySelectorAll("tr[aria-selected]").forEach((r) => r.removeAttribute("aria-selected"));
    body.querySelector(`tr[data-case-id="${CSS.escape(id)}"]`)?.setAttribute("aria-selected", "true");
    await detail.open(id, { focus });
    remember();
  }

  function closeDetail() {
    const id = detail.caseId;
    aside.hidden = true;
    layout.classList.remove("with-detail");
    body.querySelectorAll("tr[aria-selected]").forEach((r) => r.removeAttribute("aria-selected"));
    remember();
    focusRow(body.querySelector(`tr[data-case-id="${CSS.escape(id ?? "")}"]`) ?? body.rows[0]);
  }

  // The area filter names streets and communities; the hierarchy also gives the table's community names.
  api.get("/api/v1/grids/hierarchy").then((hierarchy) => {
    for (const street of hierarchy.districts.flatMap((d) => d.streets)) {
      names.set(street.code, street.name);
      const group = element("optgroup", { label: street.name }, option(street.code, street.name));
      for (const community of street.communities) {
        names.set(community.code, community.name);
        community.cells.forEach((cell) => names.set(cell.code, cell.name));
        group.append(option(community.code, `\u00a0\u00a0${community.name}`));
      }
      controls.grid.append(group);
    }
    controls.grid.value = filter.grid;
    for (const r of body.rows) r.querySelector(".board-cell").textContent = place(rows.get(r.dataset.caseId).grid_code);
  }).catch(() => { /* the area filter stays "all"; the table still works */ });

  showFilters();
  await load();
  if (params.case) openCase(params.case, true);

  return {
    onEvent(event) {
      if (event.type === "reset") { load(); if (!aside.hidden) detail.reload(); return; }
      if ((event.type !== "case" && event.type !== "detection") || !event.data?.case) return;
      upsert(event.data.case);
      detail.onCase(event.data.case);
    },
    unmount() { generation += 1; },
  };
}
