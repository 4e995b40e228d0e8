// The case detail panel (案件详情): summary, evidence, timeline, and buttons for exactly the actions the API says
// the caller may take now. The board and the map's cell panel both show it. Every action names the version the
// panel shows, so a case someone else moved on answers 412 and the panel says so instead of acting blind.

import { element } from "./dom.js";
import { sparkline } from "./svgchart.js";

export const OPEN_STATES = ["reported", "filed", "dispatched", "handled", "suspended"];
export const STATES = [...OPEN_STATES, "closed", "voided"];
export const TIERS = ["community", "street", "district"];
export const SOURCES = ["sensor", "camera", "citizen", "patrol"];
// Highest last: a cell shows the most serious of its open cases; warnings and rain colours share one ladder.
export const SEVERITIES = ["normal", "short_heavy_rain", "blue", "warning", "yellow", "orange", "urgent", "red"];

const NEEDS_NOTE = new Set(["return", "escalate", "verify_fail", "void", "suspend", "extend", "dismiss"]);
const DETECTION_ACTIONS = new Set(["confirm", "dismiss"]);
const EXTEND_BY = ["2h", "4h", "1d", "2d", "5d"];
// Grid telemetry fields worth a sparkline, in the order a grid operator reads them.
const QUANTITIES = ["rain_mm", "water_level_cm_max", "count_mean", "tilt_deg_max"];
const HIDDEN_DATA = new Set(["ref", "bbox", "grid_code", "category", "source", "source_id"]);

const LABELS = {
  zh: {
    sev_none: "无未结案件", sev_normal: "一般", sev_warning: "预警", sev_urgent: "紧急", sev_short_heavy_rain: "短时强降水",
    sev_blue: "蓝色", sev_yellow: "黄色", sev_orange: "橙色", sev_red: "红色",
    state: "状态", category: "类别", severity: "严重程度", department: "部门", tier: "层级", source: "来源",
    deadline: "处置时限", overdue: "已超期", reported_at: "上报时间", cell: "网格", version: "版本",
    urgent_clock: "按自然时间计时", evidence: "证据", timeline: "流程记录", actions: "操作",
    no_actions: "当前没有你可执行的操作", note: "备注", reason: "原因(必填)", extend_by: "延期时长", clock: "计时",
    clock_case: "按案件原计时", working: "工作时间", natural: "自然时间", photo: "处置照片(可选)", submit: "提交",
    cancel: "取消", close: "关闭详情", loading: "加载中…", changed_live: "该案件刚被更新,已刷新。",
    changed_pending: "该案件刚被他人更新:提交会被拒绝,请先刷新。", done: "{action} 已执行 → {state}",
    not_found: "找不到该案件(可能不在你的辖区)", telemetry: "所在网格近一小时", rain_mm: "雨量 mm",
    water_level_cm_max: "水位 cm", count_mean: "人数", tilt_deg_max: "倾角 °", no_image: "图片无法加载",
    counters: "返工 {rework} · 延期 {ext} · 督办 {esc} · 改派 {re} · 回退 {back}", suppress: "同一摄像区域静默 1 小时",
  },
  en: {
    sev_none: "no open case", sev_normal: "normal", sev_warning: "warning", sev_urgent: "urgent",
    sev_short_heavy_rain: "short heavy rain", sev_blue: "blue", sev_yellow: "yellow", sev_orange: "orange", sev_red: "red",
    state: "State", category: "Category", severity: "Severity", department: "Department", tier: "Tier", source: "Source",
    deadline: "Deadline", overdue: "Overdue", reported_at: "Reported", cell: "Cell", version: "Version",
    urgent_clock: "runs on natural time", evidence: "Evidence", timeline: "Timeline", actions: "Actions",
    no_actions: "No action is open to you now", note: "Note", reason: "Reason (required)", extend_by: "Extend by",
    clock: "Clock", clock_case: "the case's own", working: "working time", natural: "natural time",
    photo: "Handling photo (optional)", submit: "Submit", cancel: "Cancel", close: "Close detail", loading: "Loading…",
    changed_live: "This case was just updated; showing the new version.",
    changed_pending: "Someone just changed this case: submitting will be refused; reload first.",
    done: "{action} done → {state}", not_found: "No such case (it may be outside your scope)",
    telemetry: "Its cell, last hour", rain_mm: "rain mm", water_level_cm_max: "water level cm", count_mean: "people",
    tilt_deg_max: "tilt °", no_image: "the image could not be loaded",
    counters: "rework {rework} · extended {ext} · escalated {esc} · reassigned {re} · returned {back}",
    suppress: "Silence this camera zone for 1 hour",
  },
};

/** Labels of the case views: their own first, then the console's (states, actions, tiers, sources). */
export function translator(i18n, extra = {}) {
  return (key, vars = {}) => {
    const text = extra[i18n.language()]?.[key] ?? LABELS[i18n.language()][key] ?? i18n.t(key);
    return String(text).replace(/\{(\w+)\}/g, (_, name) => vars[name] ?? "");
  };
}

export function isOverdue(summary, now = Date.now()) {
  return summary.state === "dispatched" && !!summary.deadline_at && Date.parse(summary.deadline_at) < now;
}

/** The departments of the routing table, for the filters and the dispatch form. */
export function departments(i18n) {
  return [...new Set(i18n.categories().map((c) => c.department).filter(Boolean))].sort();
}

export class CaseDetail {
  /** ctx is the view's context; onLoaded(doc) runs with every version loaded, so a list can show it too. */
  constructor(ctx, { onClose, onLoaded } = {}) {
    this.ctx = ctx;
    this.tr = translator(ctx.i18n);
    this.onClose = onClose;
    this.onLoaded = onLoaded;
    this.doc = null;
    this.form = null;
    this.element = element("section", { className: "case-detail", tabIndex: -1 });
    this.element.dataset.testid = "case-detail";
  }

  get caseId() { return this.doc?.id ?? this.element.dataset.caseId ?? null; }

  async open(id, { focus = false } = {}) {
    this.element.dataset.caseId = id;
    delete this.element.dataset.version;
    this.element.replaceChildren(element("p", { className: "case-muted", textContent: this.tr("loading") }));
    await this.reload();
    if (focus) this.element.focus();
  }

  // The stream worker answers an action before the case store has written it: ask again until the store shows
  // at least `version` (a second at most), so the panel never offers actions on the state it just left.
  async reload(message = "", version = 0) {
    const id = this.element.dataset.caseId;
    try {
      for (let attempt = 0; ; attempt += 1) {
        this.doc = await this.ctx.api.get(`/api/v1/cases/${encodeURIComponent(id)}`);
        if (this.doc.version >= version || attempt >= 10) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    } catch (error) {
      this.doc = null;
      this.element.replaceChildren(this.header(id), element("p", { className: "error", role: "alert",
        textContent: error.status === 404 ? this.tr("not_found") : error.message }));
      return;
    }
    if (this.element.dataset.caseId !== id) return;  // another case was opened meanwhile
    this.render(message);
    this.onLoaded?.(this.doc);
  }

  /** A live summary of some case: show the shown case's new version, unless an action form is half filled. */
  onCase(summary) {
    if (!this.doc || summary.id !== this.doc.id || summary.version <= this.doc.version) return;
    if (this.form) this.say(this.tr("changed_pending"), "warn");
    else this.reload(this.tr("changed_live"), summary.version);
  }

  header(id) {
    const close = element("button", { type: "button", className: "case-close", textContent: "×", title: this.tr("close") });
    close.setAttribute("aria-label", this.tr("close"));
    close.addEventListener("click", () => this.onClose?.());
    const title = this.doc ? this.ctx.i18n.category(this.doc.category) : id;
    return element("header", { className: "case-head" }, element("h2", { textContent: title }), close);
  }

  render(message) {
    const { doc, tr } = this;
    const { i18n } = this.ctx;
    this.form = null;
    this.element.dataset.version = doc.version;
    this.element.dataset.state = doc.state;
    this.message = element("p", { className: "case-message", role: "status" });
    this.actions = element("div", { className: "case-actions" });
    this.formSlot = element("div", { className: "case-form-slot" });
    const overdue = isOverdue(doc);
    const facts = [
      ["state", element("span", { className: `case-state state-${doc.state}`, textContent: tr(doc.state) })],
      ["severity", element("span", {}, element("span", { className: `case-sev sev-${doc.severity}`, textContent: tr(`sev_${doc.severity}`) }),
        doc.urgent ? ` ${tr("urgent_clock")}` : "")],
      ["source", tr(doc.source)],
      ["department", doc.department ? i18n.department(doc.department) : "–"],
      ["tier", doc.tier ? tr(doc.tier) : "–"],
      ["deadline", element("span", { className: overdue ? "case-overdue" : "" },
        doc.deadline_at ? i18n.time(doc.deadline_at) : "–", overdue ? ` · ${tr("overdue")}` : "")],
      ["reported_at", i18n.time(doc.reported_at)],
      ["cell", doc.grid_code],
      ["version", String(doc.version)],
    ];
    const counts = [doc.rework_count, doc.extension_count, doc.escalation_count, doc.reassign_count, doc.send_back_count];
    const telemetry = element("div", { className: "case-spark" });
    this.element.replaceChildren(...[
      this.header(doc.id),
      element("p", { className: "case-title", textContent: doc.title }),
      element("p", { className: "case-id", textContent: doc.id }),
      element("dl", { className: "case-facts" }, ...facts.map(([key, value]) =>
        element("div", {}, element("dt", { textContent: tr(key) }), element("dd", {}, value)))),
      counts.some(Boolean) ? element("p", { className: "case-muted", textContent: tr("counters", { rework: counts[0],
        ext: counts[1], esc: counts[2], re: counts[3], back: counts[4] }) }) : null,
      element("h3", { textContent: tr("actions") }), this.actions, this.formSlot, this.message,
      element("h3", { textContent: tr("evidence") }), this.evidence(), telemetry,
      element("h3", { textContent: tr("timeline") }), this.timeline()].filter(Boolean));
    this.buttons();
    if (message) this.say(message, "ok");
    this.sparklines(telemetry);
  }

  buttons() {
    const allowed = this.doc.allowed_actions;
    if (!allowed.length) {
      this.actions.replaceChildren(element("p", { className: "case-muted", textContent: this.tr("no_actions") }));
      return;
    }
    this.actions.replaceChildren(...allowed.map((name) => {
      const button = element("button", { type: "button", textContent: this.tr(name), className: `case-action act-${name}` });
      button.dataset.testid = `action-${name}`;
      button.setAttribute("aria-expanded", "false");
      button.addEventListener("click", () => this.openForm(name, button));
      return button;
    }));
  }

  // The inline form asks only for what the action needs; the department and tier start at the routing table's.
  openForm(name, button) {
    const { tr, doc } = this;
    const { i18n } = this.ctx;
    this.actions.querySelectorAll("button").forEach((b) => b.setAttribute("aria-expanded", String(b === button)));
    const route = i18n.categories().find((c) => c.code === doc.category);
    const fields = [];
    const form = element("form", { className: "case-form" });
    form.dataset.action = name;
    const field = (label, control) => {
      fields.push(element("label", {}, element("span", { textContent: label }), control));
      return control;
    };
    let department, tier, extendBy, clock, photo, suppress;
    if (name === "dispatch" || name === "reassign") {
      department = field(tr("department"), element("select", { required: name === "reassign" },
        ...departments(i18n).map((d) => element("option", { value: d, textContent: i18n.department(d) }))));
      department.dataset.testid = "action-department";
      department.value = route?.department ?? doc.department ?? department.value;
    }
    if (name === "dispatch") {
      tier = field(tr("tier"), element("select", {}, ...TIERS.map((x) => element("option", { value: x, textContent: tr(x) }))));
      tier.value = route?.tier ?? "street";
    }
    if (name === "extend") {
      extendBy = field(tr("extend_by"), element("select", {}, ...EXTEND_BY.map((x) => element("option", { value: x, textContent: x }))));
      clock = field(tr("clock"), element("select", {}, element("option", { value: "", textContent: tr("clock_case") }),
        ...["working", "natural"].map((x) => element("option", { value: x, textContent: tr(x) }))));
    }
    if (name === "handle") {
      photo = field(tr("photo"), element("input", { type: "file", accept: "image/jpeg,image/png" }));
      photo.dataset.testid = "action-photo";
    }
    if (name === "dismiss") {
      suppress = element("input", { type: "checkbox" });
      fields.push(element("label", { className: "case-check" }, suppress, tr("suppress")));
    }
    const needsNote = NEEDS_NOTE.has(name);
    const note = field(tr(needsNote ? "reason" : "note"), element("textarea", { rows: 2, required: needsNote, maxLength: 2000 }));
    note.dataset.testid = "action-note";
    const submit = element("button", { type: "submit", className: "case-submit", textContent: `${tr(name)} · ${tr("submit")}` });
    submit.dataset.testid = "action-submit";
    const cancel = element("button", { type: "button", textContent: tr("cancel") });
    cancel.addEventListener("click", () => this.closeForm(button));
    form.append(...fields, element("div", { className: "case-form-buttons" }, submit, cancel));
    form.addEventListener("keydown", (event) => { if (event.key === "Escape") this.closeForm(button); });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (needsNote && !note.value.trim()) { note.focus(); return; }
      submit.disabled = true;
      const body = { note: note.value.trim() };
      if (department) body.department = department.value;
      if (tier) body.tier = tier.value;
      if (extendBy) body.extend_by = extendBy.value;
      if (clock?.value) body.clock = clock.value;
      if (suppress?.checked) body.suppress_for_s = 3600;
      try {
        if (photo?.files.length) body.photo = (await this.ctx.api.post("/api/v1/photos", photo.files[0])).photo;
        await this.act(name, body);
      } finally { submit.disabled = false; }
    });
    this.form = form;
    this.formSlot.replaceChildren(form);
    this.say("");
    form.querySelector("select, textarea, input").focus();
  }

  closeForm(button) {
    this.form = null;
    this.formSlot.replaceChildren();
    this.actions.querySelectorAll("button").forEach((b) => b.setAttribute("aria-expanded", "false"));
    button?.focus();
  }

  async act(name, body) {
    const { api } = this.ctx;
    const id = encodeURIComponent(this.doc.id);
    const payload = { ...body, expected_version: this.doc.version };
    let result;
    try {
      result = DETECTION_ACTIONS.has(name)
        ? await api.post(`/api/v1/detections/${id}/${name}`, payload)
        : await api.post(`/api/v1/cases/${id}/actions`, { action: name, ...payload });
    } catch (error) {
      if (error.status === 412) this.conflict();
      else this.say(`${error.status ?? ""} ${error.message}`.trim(), "error");
      return;
    }
    await this.reload(this.tr("done", { action: this.tr(name), state: this.tr(result.state) }), result.version);
    this.actions.querySelector("button")?.focus();
  }

  conflict() {
    const reload = element("button", { type: "button", textContent: this.tr("reload") });
    reload.addEventListener("click", async () => { await this.reload(); this.element.focus(); });
    const box = element("div", { className: "case-conflict", role: "alert" },
      element("strong", { textContent: this.ctx.i18n.t("conflict") }), " ", reload);
    box.dataset.testid = "conflict";
    this.message.replaceChildren(box);
    this.message.className = "case-message";
    reload.focus();
  }

  say(text, kind = "") {
    this.message.replaceChildren(text);
    this.message.className = `case-message ${kind}`;
  }

  // Camera snapshots large (they are what a commander judges), photos smaller, readings as text rows.
  evidence() {
    const { doc, tr } = this;
    const list = element("ul", { className: "case-evidence" });
    doc.evidence.forEach((item, index) => {
      // Citizens' photos (citizen/<report>) and handling photos (photos/…) are photos; other images are snapshots.
      const camera = !item.source_id.startsWith("citizen/") && !item.ref.startsWith("photos/");
      const row = element("li", { className: item.ref ? (camera ? "ev-snapshot" : "ev-photo") : "ev-reading" },
        element("span", { className: "ev-meta", textContent: `${this.ctx.i18n.time(item.at)} · ${item.source_id}` }),
        element("span", { className: "ev-summary", textContent: item.summary }));
      if (item.ref) {
        const image = element("img", { alt: item.summary, className: "ev-image" });
        this.ctx.api.imageUrl(`/api/v1/cases/${encodeURIComponent(doc.id)}/evidence/${index}`)
          .then((url) => { image.src = url; }, () => { image.replaceWith(element("span", { className: "case-muted", textContent: tr("no_image") })); });
        row.prepend(image);
      }
      list.append(row);
    });
    return list;
  }

  timeline() {
    const { tr } = this;
    const { i18n } = this.ctx;
    return element("ol", { className: "case-timeline" }, ...[...this.doc.timeline].reverse().map((step) => {
      const data = Object.entries(step.data).filter(([key]) => !HIDDEN_DATA.has(key))
        .map(([key, value]) => `${key}: ${key.endsWith("_at") ? i18n.time(value) : key === "department" ? i18n.department(value) : value}`);
      const entry = element("li", {},
        element("div", { className: "tl-head" },
          element("strong", { textContent: tr(step.action) }),
          step.from_state && step.from_state !== step.to_state ? ` ${tr(step.from_state)} → ${tr(step.to_state)}` : "",
          element("span", { className: "tl-when", textContent: ` · ${i18n.time(step.at)} · ${step.actor}` })),
        step.note ? element("div", { className: "tl-note", textContent: step.note }) : null,
        data.length ? element("div", { className: "tl-data", textContent: data.join(" · ") }) : null);
      entry.dataset.testid = "timeline-entry";
      entry.dataset.action = step.action;
      return entry;
    }));
  }

  // The cell's last hour (up to the case's close) in 2-minute windows: one request, a line per known quantity.
  async sparklines(slot) {
    const { doc, tr } = this;
    const end = Date.parse(doc.closed_at ?? doc.voided_at ?? "") || Date.now();
    let series;
    try {
      series = await this.ctx.api.get(`/api/v1/grids/${doc.grid_code}/telemetry`, {
        from: new Date(end - 3600_000).toISOString(), to: new Date(end).toISOString(), every: "2m" });
    } catch { return; }
    const rows = QUANTITIES.map((key) => [key, series.windows.map((w) => w[key] ?? null)])
      .filter(([, values]) => values.some((v) => v !== null));
    if (!rows.length) return;
    slot.replaceChildren(element("span", { className: "case-muted", textContent: tr("telemetry") }),
      ...rows.map(([key, values]) => {
        const last = values.filter((v) => v !== null).at(-1);
        return element("span", { className: "spark-row" }, element("span", { textContent: tr(key) }),
          sparkline(values, { width: 120, height: 22, label: `${tr(key)}: ${values.filter((v) => v !== null).map((v) => +v.toFixed(1)).join(", ")}` }),
          element("b", { textContent: +last.toFixed(1) }));
      }));
  }
}
