// The review queue (审核): camera detections below the auto-filing confidence, one at a time and large, decided
// from the keyboard. The list mirrors GET /api/v1/detections (oldest first); live `detection` events keep it
// current, and a decision moves on to the next item by itself.

import { element } from "./dom.js";

const PAGE = 50;
const MAX_LIMIT = 500;
const SUPPRESS_S = [0, 1800, 7200, 28800];  // "s" cycles: off, 30 min, 2 h, 8 h
const TEACH_S = 28800;  // "not a stall" / "not dust" teaches the camera's detector for 8 h
const TEACHING_REASON = { stall: "not_stall", dust: "not_dust" };
const DECIDED_KEEP_MS = 10 * 60_000;
const REASONS = [
  { code: "not_stall", zh: "不是摊贩", en: "not a stall" },
  { code: "not_dust", zh: "不是扬尘", en: "not dust" },
  { code: "licensed", zh: "已许可", en: "licensed" },
  { code: "duplicate", zh: "重复", en: "duplicate" },
  { code: "other", zh: "其他(请填写)", en: "other (type it)" },
];

const LABELS = {
  zh: {
    left: "剩余 {n} 条", position: "第 {i} / {n} 条", empty: "没有待审核的检测。新的检测会自动出现。",
    camera: "摄像头", zone: "区域", kind: "类型", category: "类别", confidence: "置信度", reported_at: "发现时间",
    cell: "网格", stall: "摊贩", dust: "扬尘", no_vending: "禁止摆摊", shopfront: "店外经营", construction: "工地",
    prev: "上一条", next: "下一条", suppress: "屏蔽区域", suppress_off: "驳回时不屏蔽",
    suppress_on: "驳回时屏蔽该区域 {d}", overlay: "区域/框线", help: "快捷键", cancel: "取消",
    reason_title: "驳回原因", reason_hint: "按原因的数字键(或在原因上按 Enter)驳回,Esc 取消", other_text: "原因",
    read_only: "只读:您的角色不能审核(需要 review 权限)。", loading: "正在加载快照…",
    no_snapshot: "没有快照", snapshot_failed: "快照无法加载",
    confirmed: "已确认 {id}(立案并派遣)", dismissed: "已驳回 {id}:{reason}", suppressed: ",屏蔽 {d}",
    taught: ",检测器 {d} 内不再报告此处", not_taught: "已驳回 {id},但检测器未能学习:{error}",
    undone: "已撤销对 {id} 的{verb},重新待审核", nothing_to_undo: "没有可撤销的决定",
    too_late: "无法撤销:{detail}", gone: "{id} 已不再待审核(可能已被他人处理),已移出队列",
    changed: "{id} 已被修改,已重新加载,请再看一遍", decided_by: "{id} 已被 {actor} {action}",
    sending: "正在提交…", decision: "决定",
    keys: [["j / →", "下一条"], ["k / ←", "上一条"], ["c", "确认(立案)"], ["d", "驳回(选择原因)"],
      ["s", "驳回时屏蔽该区域:30 分钟 / 2 小时 / 8 小时 / 不屏蔽"], ["u", "撤销我最近的决定(2 分钟内)"],
      ["o", "显示/隐藏区域和框线"], ["r", "刷新队列"], ["?", "快捷键说明"]],
  },
  en: {
    left: "{n} left", position: "item {i} of {n}", empty: "Nothing to review. New detections appear here by themselves.",
    camera: "Camera", zone: "Zone", kind: "Kind", category: "Category", confidence: "Confidence",
    reported_at: "Reported", cell: "Cell", stall: "stall", dust: "dust", no_vending: "no vending",
    shopfront: "shopfront", construction: "construction site",
    prev: "Previous", next: "Next", suppress: "Suppress", suppress_off: "Dismissing does not suppress the zone",
    suppress_on: "Dismissing suppresses this zone for {d}", overlay: "Zone / box", help: "Keys", cancel: "Cancel",
    reason_title: "Why dismiss?", reason_hint: "Press a reason's number (or Enter on it) to dismiss; Esc cancels", other_text: "Reason",
    read_only: "Read only: your role cannot review (needs the review right).", loading: "Loading the snapshot…",
    no_snapshot: "No snapshot", snapshot_failed: "The snapshot could not be loaded",
    confirmed: "Confirmed {id} (filed and dispatched)", dismissed: "Dismissed {id}: {reason}",
    suppressed: ", zone suppressed for {d}",
    taught: ", the detector leaves it out for {d}", not_taught: "Dismissed {id}, but the detector was not taught: {error}", undone: "Undid the {verb} of {id}: it is pending again",
    nothing_to_undo: "No decision of yours to undo", too_late: "Cannot undo: {detail}",
    gone: "{id} is no longer pending (someone else decided it); dropped from the queue",
    changed: "{id} changed meanwhile; reloaded it, please look again", decided_by: "{actor}: {action} {id}",
    sending: "Sending…", decision: "decision",
    keys: [["j / →", "next"], ["k / ←", "previous"], ["c", "confirm (file the case)"], ["d", "dismiss (pick a reason)"],
      ["s", "suppress the zone on dismissal: 30 min / 2 h / 8 h / off"], ["u", "undo my latest decision (within 2 min)"],
      ["o", "show or hide the zone and box"], ["r", "reload the queue"], ["?", "this help"]],
  },
};

const SVG = "http://www.w3.org/2000/svg";

function button(label, key, testid, onClick) {
  const node = element("button", { type: "button", title: `${label} (${key})` }, label, " ",
    element("kbd", { textContent: key === "Escape" ? "Esc" : key }));
  node.setAttribute("aria-keyshortcuts", key);
  if (testid) node.dataset.testid = testid;
  node.addEventListener("click", onClick);
  return node;
}

export async function mount(root, { api, i18n, me }) {
  const lang = i18n.language();
  const tr = (key, vars = {}) => String(LABELS[lang][key] ?? i18n.t(key)).replace(/\{(\w+)\}/g, (_, k) => vars[k] ?? "");
  const duration = (s) => (s >= 3600 ? `${s / 3600} ${lang === "zh" ? "小时" : "h"}` : `${s / 60} ${lang === "zh" ? "分钟" : "min"}`);
  const canReview = me.rights.includes("review");

  const state = {
    items: [],           // pending detections as listed, oldest first
    index: 0,            // the one on screen
    cursor: null,        // next_cursor of the last page loaded
    remaining: 0,        // pending in scope, pages not loaded included
    shown: null,         // index of the snapshot shown large; null: the latest
    overlay: true,
    suppress: 0,         // index into SUPPRESS_S, for the next dismissal
    busy: false,         // an undo in flight
    sending: new Set(),  // case ids whose decision is in flight: the next item can be decided meanwhile
    decided: new Map(),  // case id → version after my decision: a list read meanwhile may still show it pending
    verbs: new Map(),    // case id → what I decided, to say what an undo took back
  };
  const current = () => state.items[state.index];

  // The page is built once; showing another item changes text and attributes, so an hour of use adds no nodes.
  const image = element("img", { alt: "" });
  const polygon = document.createElementNS(SVG, "polygon");
  const box = document.createElementNS(SVG, "rect");
  const overlay = document.createElementNS(SVG, "svg");
  overlay.classList.add("review-overlay");
  overlay.setAttribute("preserveAspectRatio", "none");
  overlay.setAttribute("aria-hidden", "true");
  polygon.classList.add("review-zone");
  box.classList.add("review-box");
  overlay.append(polygon, box);
  const frameNote = element("p", { className: "review-frame-note" });
  const frame = element("div", { className: "review-frame" }, image, overlay, frameNote);
  const thumbs = element("div", { className: "review-thumbs" });
  const facts = element("dl", { className: "review-facts" });
  const heading = element("h2", { className: "review-title" });
  const remaining = element("p", { className: "review-remaining" });
  remaining.dataset.testid = "review-remaining";
  const position = element("p", { className: "review-position" });
  const suppressNote = element("p", { className: "review-suppress" });
  const message = element("p", { className: "review-message", role: "status" });
  message.setAttribute("aria-live", "polite");
  const help = element("div", { className: "review-help", hidden: true },
    element("h3", { textContent: tr("help") }),
    element("dl", {}, ...LABELS[lang].keys.flatMap(([key, what]) => [element("dt", {}, element("kbd", { textContent: key })),
      element("dd", { textContent: what })])));

  const buttons = {
    prev: button(tr("prev"), "k", null, () => move(-1)),
    next: button(tr("next"), "j", null, () => move(1)),
    confirm: button(tr("confirm"), "c", "review-confirm", () => confirm()),
    dismiss: button(tr("dismiss"), "d", "review-dismiss", () => openReasons()),
    suppress: button(tr("suppress"), "s", null, () => cycleSuppress()),
    undo: button(tr("undo"), "u", "review-undo", () => undo()),
    overlay: button(tr("overlay"), "o", null, () => toggleOverlay()),
    help: button(tr("help"), "?", null, () => { help.hidden = !help.hidden; }),
  };
  buttons.confirm.classList.add("review-primary");
  buttons.overlay.setAttribute("aria-pressed", "true");
  const decisions = canReview
    ? [buttons.confirm, buttons.dismiss, buttons.suppress, buttons.undo]
    : [element("p", { className: "review-readonly", textContent: tr("read_only") })];
  const actions = element("div", { className: "review-actions" },
    element("div", { className: "review-nav" }, buttons.prev, buttons.next), ...decisions,
    element("div", { className: "review-nav" }, buttons.overlay, buttons.help));

  const side = element("aside", { className: "review-side" }, remaining, position, heading, facts, actions,
      ...(canReview ? [suppressNote] : []), message,
      help);
  const item = element("section", { className: "review-item", tabIndex: -1 },
    element("div", { className: "review-stage" }, frame, thumbs), side);
  item.dataset.testid = "review-item";
  const empty = element("div", { className: "review-empty", hidden: true }, element("p", { textContent: tr("empty") }));
  empty.dataset.testid = "review-empty";

  // Dismissal reasons: a modal dialog, so the number keys and Enter cannot reach the queue behind it.
  const otherText = element("input", { type: "text", maxLength: 500, hidden: true, placeholder: tr("other_text") });
  otherText.setAttribute("aria-label", tr("other_text"));
  const reasonSuppress = element("p", { className: "review-suppress" });
  const reasonButtons = REASONS.map((reason, n) => {
    const node = button(reason[lang], String(n + 1), "review-reason", () => pickReason(reason));
    node.dataset.reason = reason.code;
    return node;
  });
  const reasons = element("dialog", { className: "review-reasons" },
    element("h3", { textContent: tr("reason_title") }), element("p", { className: "review-hint", textContent: tr("reason_hint") }),
    element("div", { className: "review-reason-list" }, ...reasonButtons), otherText, reasonSuppress,
    button(tr("cancel"), "Escape", null, () => reasons.close()));
  // Closed, the dialog hands the keyboard back to the item: focus left on one of its buttons would be on
  // nothing the keys are meant for.
  reasons.addEventListener("close", () => item.focus({ preventScroll: true }));
  reasons.addEventListener("keydown", (event) => {
    if (event.target === otherText) {
      if (event.key === "Enter" && otherText.value.trim()) { event.preventDefault(); dismiss(otherText.value.trim(), "other"); }
      return;
    }
    const reason = REASONS[Number(event.key) - 1];
    if (reason) { event.preventDefault(); pickReason(reason); }
  });

  root.replaceChildren(element("div", { className: "review" }, item, empty, reasons));

  function render() {
    const detection = current();
    remaining.textContent = tr("left", { n: state.remaining });
    if (remaining.parentNode !== (detection ? side : empty)) (detection ? side : empty).prepend(remaining);  // one counter, always in sight
    suppressNote.textContent = SUPPRESS_S[state.suppress]
      ? tr("suppress_on", { d: duration(SUPPRESS_S[state.suppress]) }) : tr("suppress_off");
    suppressNote.classList.toggle("on", state.suppress > 0);
    buttons.suppress.setAttribute("aria-pressed", String(state.suppress > 0));
    item.hidden = !detection;
    empty.hidden = Boolean(detection);
    for (const node of [buttons.confirm, buttons.dismiss]) node.disabled = !decidable(detection);
    buttons.prev.disabled = state.index === 0;
    buttons.next.disabled = state.index >= state.items.length - 1;
    if (!detection) { item.removeAttribute("data-case-id"); return; }
    if (item.dataset.caseId !== detection.case_id) state.shown = null;
    item.dataset.caseId = detection.case_id;
    position.textContent = tr("position", { i: state.index + 1, n: state.items.length });
    heading.textContent = i18n.category(detection.category);
    facts.replaceChildren(...[
      ["camera", detection.camera_id],
      ["zone", `${detection.zone_id}${detection.zone_kind ? ` · ${tr(detection.zone_kind)}` : ""}`],
      ["kind", tr(detection.kind)],
      ["confidence", `${Math.round(detection.confidence * 100)}%`],
      ["reported_at", `${i18n.time(detection.reported_at)} (${ago(detection.reported_at)})`],
      ["cell", detection.grid_code],
    ].flatMap(([key, value]) => [element("dt", { textContent: tr(key) }), element("dd", { textContent: value })]));
    drawOverlay(detection);
    showSnapshot(detection);
    const next = state.items[state.index + 1];
    if (next?.snapshots.length) api.imageUrl(next.snapshots.at(-1).url).catch(() => {});  // ready before "j"
  }

  function ago(iso) {
    const minutes = Math.round((Date.now() - Date.parse(iso)) / 60_000);
    const format = new Intl.RelativeTimeFormat(lang === "zh" ? "zh-CN" : "en", { numeric: "auto" });
    return minutes < 60 ? format.format(-minutes, "minute") : format.format(-Math.round(minutes / 60), "hour");
  }

  function drawOverlay(detection) {
    const [width, height] = detection.frame_size.length === 2 ? detection.frame_size : [16, 9];
    frame.style.setProperty("--aspect", `${width} / ${height}`);
    frame.style.setProperty("--ratio", String(width / height));
    overlay.setAttribute("viewBox", `0 0 ${width} ${height}`);
    overlay.style.display = state.overlay ? "" : "none";
    polygon.setAttribute("points", detection.zone_polygon.map(([x, y]) => `${x},${y}`).join(" "));
    box.style.display = detection.bbox ? "" : "none";
    if (detection.bbox) {
      const [x, y, w, h] = detection.bbox;
      Object.entries({ x, y, width: w, height: h }).forEach(([name, value]) => box.setAttribute(name, value));
    }
  }

  let imageTicket = 0;  // a late image of an item the operator already left must not replace the current one
  async function showSnapshot(detection) {
    const shots = detection.snapshots;
    const chosen = state.shown ?? shots.length - 1;
    thumbs.replaceChildren(...(shots.length > 1 ? shots.map((shot, n) => {
      const thumb = element("button", { type: "button", className: "review-thumb", title: `${shot.phase} ${i18n.time(shot.at)}` },
        element("img", { alt: `${shot.phase} ${i18n.time(shot.at)}` }));
      thumb.setAttribute("aria-pressed", String(n === chosen));
      thumb.addEventListener("click", () => { state.shown = n; render(); });
      api.imageUrl(shot.url).then((url) => { thumb.firstChild.src = url; }, () => {});
      return thumb;
    }) : []));
    const ticket = ++imageTicket;
    if (!shots.length) { image.removeAttribute("src"); frameNote.textContent = tr("no_snapshot"); return; }
    const shot = shots[chosen];
    image.alt = `${detection.camera_id} ${shot.phase} ${i18n.time(shot.at)}`;
    if (image.dataset.url !== shot.url) { image.removeAttribute("src"); frameNote.textContent = tr("loading"); }
    try {
      const url = await api.imageUrl(shot.url);
      if (ticket !== imageTicket) return;
      image.src = url;
      image.dataset.url = shot.url;
      frameNote.textContent = "";
    } catch {
      if (ticket === imageTicket) frameNote.textContent = tr("snapshot_failed");
    }
  }

  function say(text, error = false) {
    message.textContent = text;
    message.classList.toggle("error", error);
  }

  function isStale(detection) {
    const version = state.decided.get(detection.case_id);
    return version !== undefined && detection.version < version;
  }

  // Reload the list as far as it was read, keeping the same item on screen if it is still pending: `focus`, or
  // the one shown when the answer arrives (the operator may have moved on while it was on its way).
  async function refresh(focusOn = null) {
    const cutoff = Date.now() - DECIDED_KEEP_MS;
    for (const [id, { at }] of state.verbs) if (at < cutoff) { state.verbs.delete(id); state.decided.delete(id); }
    const page = await api.get("/api/v1/detections", { limit: Math.min(MAX_LIMIT, Math.max(PAGE, state.items.length + 10)) });
    const focus = focusOn ?? current()?.case_id;
    const fresh = page.items.filter((d) => !isStale(d));
    const at = fresh.findIndex((d) => d.case_id === focus);
    state.items = fresh;
    state.cursor = page.next_cursor;
    state.remaining = Math.max(0, page.remaining - (page.items.length - fresh.length));
    state.index = at >= 0 ? at : Math.min(state.index, Math.max(0, fresh.length - 1));
    render();
    return at >= 0;
  }

  let refreshTimer = null;
  function refreshSoon() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => refresh().catch((error) => say(error.message, true)), 300);
  }

  async function readMore() {
    if (!state.cursor || state.index < state.items.length - 5) return;
    const cursor = state.cursor;
    state.cursor = null;  // one page at a time
    const page = await api.get("/api/v1/detections", { limit: PAGE, cursor });
    const known = new Set(state.items.map((d) => d.case_id));
    state.items.push(...page.items.filter((d) => !known.has(d.case_id) && !isStale(d)));
    state.cursor = page.next_cursor;
    render();
  }

  function move(step) {
    const index = Math.max(0, Math.min(state.items.length - 1, state.index + step));
    if (index === state.index) return;
    state.index = index;
    render();
    readMore().catch((error) => say(error.message, true));
  }

  function drop(caseId) {
    const at = state.items.findIndex((d) => d.case_id === caseId);
    if (at < 0) return;
    state.items.splice(at, 1);
    state.remaining = Math.max(0, state.remaining - 1);
    if (at < state.index || state.index >= state.items.length) state.index = Math.max(0, state.index - 1);
  }

  // The live event of a decision often arrives before the API's answer and moves the queue on: the operator may
  // decide the next item at once. Only the same item twice, or anything during an undo, waits.
  function decidable(detection) {
    return Boolean(detection) && canReview && !state.busy && !state.sending.has(detection.case_id);
  }

  async function decide(verb, note, suppressS, reason) {
    const detection = current();
    if (!decidable(detection)) return;
    state.sending.add(detection.case_id);
    say(tr("sending"));
    render();
    try {
      const teach = reason && reason === TEACHING_REASON[detection.kind];
      const body = { expected_version: detection.version, note, ...(reason ? { reason } : {}),
        ...(suppressS ? { suppress_for_s: suppressS } : {}), ...(teach ? { teach_for_s: TEACH_S } : {}) };
      const out = await api.post(`/api/v1/detections/${encodeURIComponent(detection.case_id)}/${verb}`, body);
      state.decided.set(detection.case_id, out.version);
      state.verbs.set(detection.case_id, { verb, at: Date.now() });
      drop(detection.case_id);
      if (verb === "dismiss") state.suppress = 0;
      if (out.teaching_error) say(tr("not_taught", { id: detection.case_id, error: out.teaching_error }), true);
      else say(verb === "confirm" ? tr("confirmed", { id: detection.case_id })
        : tr("dismissed", { id: detection.case_id, reason: note })
          + (suppressS ? tr("suppressed", { d: duration(suppressS) }) : "")
          + (out.taught_until ? tr("taught", { d: duration(TEACH_S) }) : ""));
    } catch (error) {
      if (error.status === 409) {
        drop(detection.case_id);
        say(tr("gone", { id: detection.case_id }), true);
      } else if (error.status === 412) {
        await refresh(detection.case_id);
        say(tr("changed", { id: detection.case_id }), true);
      } else {
        say(error.message, true);
      }
    } finally {
      state.sending.delete(detection.case_id);
      render();
      if (!current() && state.remaining > 0) refreshSoon();  // the loaded pages ran out before the queue did
      else readMore().catch((error) => say(error.message, true));
    }
  }

  const confirm = () => decide("confirm", "");

  function openReasons() {
    if (!decidable(current())) return;
    otherText.hidden = true;
    otherText.value = "";
    reasonSuppress.textContent = suppressNote.textContent;
    reasons.showModal();
    reasonButtons[0].focus();
  }

  function pickReason(reason) {
    if (reason.code !== "other") { dismiss(`${reason.zh} / ${reason.en}`, reason.code); return; }
    otherText.hidden = false;
    otherText.focus();
  }

  function dismiss(note, reason) {
    reasons.close();
    decide("dismiss", note, SUPPRESS_S[state.suppress], reason);
  }

  function cycleSuppress() {
    state.suppress = (state.suppress + 1) % SUPPRESS_S.length;
    render();
  }

  function toggleOverlay() {
    state.overlay = !state.overlay;
    buttons.overlay.setAttribute("aria-pressed", String(state.overlay));
    render();
  }

  async function undo() {
    if (!canReview || state.busy || state.sending.size) return;
    state.busy = true;
    try {
      const out = await api.post("/api/v1/detections/undo");
      const verb = state.verbs.get(out.case_id)?.verb;
      state.decided.delete(out.case_id);
      state.verbs.delete(out.case_id);
      say(tr("undone", { id: out.case_id, verb: verb ? tr(verb) : tr("decision") }));
      // Back in the list at its place by report time; bring it on screen.
      for (let tries = 0; tries < 5 && !(await refresh(out.case_id)); tries += 1) {
        await new Promise((resolve) => setTimeout(resolve, 300));
      }
    } catch (error) {
      if (error.status === 404) say(tr("nothing_to_undo"), true);
      else if (error.status === 409) say(tr("too_late", { detail: error.message }), true);
      else say(error.message, true);
    } finally {
      state.busy = false;
      render();
    }
  }

  const keys = {
    j: () => move(1), ArrowRight: () => move(1), k: () => move(-1), ArrowLeft: () => move(-1),
    c: confirm, d: openReasons, s: cycleSuppress, u: undo, o: toggleOverlay,
    r: () => refresh().catch((error) => say(error.message, true)),
    "?": () => { help.hidden = !help.hidden; }, Escape: () => { help.hidden = true; },
  };
  const decisionKeys = new Set(["c", "d", "s", "u"]);
  function onKey(event) {
    if (!item.isConnected) { document.removeEventListener("keydown", onKey); return; }  // replaced without unmount
    if (event.altKey || event.ctrlKey || event.metaKey || reasons.open) return;
    if (event.target.closest?.("input, textarea, select, dialog[open]")) return;
    const action = keys[event.key];
    if (!action || (decisionKeys.has(event.key) && !canReview)) return;
    event.preventDefault();
    action();
  }
  document.addEventListener("keydown", onKey);

  await refresh().catch((error) => { say(error.message, true); render(); });

  return {
    onEvent(event) {
      if (event.type === "reset") { refreshSoon(); return; }
      if (event.type !== "detection" || !event.data?.case) return;
      const { event: step, case: changed } = event.data;
      if (changed.state !== "reported" && state.items.some((d) => d.case_id === changed.id)) {
        // Someone else's decision (mine already left the list): say so if it was the one on screen.
        if (current()?.case_id === changed.id) {
          say(tr("decided_by", { id: changed.id, actor: step.actor, action: i18n.t(step.action) }), true);
        }
        drop(changed.id);
        render();
      }
      refreshSoon();  // a new report, an undo, or a decision on a page not read yet: the count comes from the API
    },
    unmount() {
      document.removeEventListener("keydown", onKey);
      clearTimeout(refreshTimer);
      reasons.close();
    },
  };
}
