// Labels in Chinese and English. Case categories come from the city's taxonomy (GET /api/v1/taxonomy).

const LABELS = {
  zh: {
    map: "地图", board: "案件", review: "审核", devices: "设备", charts: "监测", figures: "绩效",
    token_prompt: "访问令牌", sign_in: "登录", offline: "无法连接服务器,正在重试…", back_online: "已重新连接",
    reported: "待立案", filed: "已立案", dispatched: "已派遣", handled: "已处置", suspended: "缓办",
    closed: "已结案", voided: "已注销",
    community: "社区工作站", street: "街道中心", district: "区中心",
    sensor: "传感器", camera: "视频", citizen: "市民", patrol: "巡查",
    file: "立案", dispatch: "派遣", reassign: "改派", return: "回退", escalate: "督办", handle: "处置反馈",
    verify_pass: "核查通过(结案)", verify_fail: "核查不通过(返工)", void: "注销", suspend: "缓办",
    resume: "恢复", extend: "延期", confirm: "确认", dismiss: "驳回", undo: "撤销", report: "上报",
    attach: "证据", upgrade: "升级", rate: "评价", reopen: "撤销决定",
    conflict: "该案件已被他人修改,请刷新后重试", reload: "刷新",
  },
  en: {
    map: "Map", board: "Cases", review: "Review", devices: "Devices", charts: "Telemetry", figures: "Figures",
    token_prompt: "Bearer token", sign_in: "Sign in", offline: "Cannot reach the server; retrying…",
    back_online: "Connected again",
    reported: "Reported", filed: "Filed", dispatched: "Dispatched", handled: "Handled", suspended: "Suspended",
    closed: "Closed", voided: "Voided",
    community: "Community", street: "Street", district: "District",
    sensor: "Sensor", camera: "Camera", citizen: "Citizen", patrol: "Patrol",
    file: "File", dispatch: "Dispatch", reassign: "Reassign", return: "Return", escalate: "Escalate",
    handle: "Handled", verify_pass: "Verify: pass (close)", verify_fail: "Verify: fail (rework)", void: "Void",
    suspend: "Suspend", resume: "Resume", extend: "Extend", confirm: "Confirm", dismiss: "Dismiss", undo: "Undo",
    report: "Reported", attach: "Evidence", upgrade: "Upgrade", rate: "Rating", reopen: "Decision undone",
    conflict: "Someone changed this case; reload and try again", reload: "Reload",
  },
};

// Departments of the demo city's routing table; a city's own departments show as they are written.
const DEPARTMENTS_EN = {
  "城管执法": "Urban management", "水务": "Water authority", "住建": "Housing & construction",
  "环保": "Environment", "住建/环保": "Construction / environment", "公安": "Police", "运维": "Operations",
  "市场监管": "Market regulation",
};

let lang = localStorage.getItem("gridhub.lang") || "zh";
let taxonomy = new Map();

export function language() { return lang; }
export function setLanguage(next) { lang = next; localStorage.setItem("gridhub.lang", next); }
export function setTaxonomy(categories) { taxonomy = new Map(categories.map((c) => [c.code, c])); }

// A label by key; unknown keys show as they are (a city's own state or department names).
export function t(key) { return LABELS[lang][key] ?? LABELS.en[key] ?? key; }

export function category(code) {
  const entry = taxonomy.get(code);
  if (!entry) return code;
  return `${code} ${lang === "zh" ? entry.name_zh : entry.name_en}`;
}

export function department(name) {
  if (!name) return "";
  return lang === "en" ? (DEPARTMENTS_EN[name] ?? name) : name;
}

export function categories() { return [...taxonomy.values()]; }

export function time(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB", { hour12: false });
}
