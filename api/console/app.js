// The console's shell: sign-in, tabs, language switch, the connectivity banner and the live event stream.
// Each view is a module exporting `mount(root, ctx)`, which may return { onEvent(event), unmount() }.

import * as api from "./api.js";
import * as i18n from "./i18n.js";
import { Live } from "./live.js";

const VIEWS = ["map", "board", "review", "devices", "charts", "figures"];
const modules = {};
let current = null;
let ctx = null;

async function load(name) {
  modules[name] ??= await import(`./${name}.js`);
  return modules[name];
}

function route() {
  const [name, query = ""] = location.hash.replace(/^#\/?/, "").split("?");
  return { name: VIEWS.includes(name) ? name : "board", params: Object.fromEntries(new URLSearchParams(query)) };
}

export function navigate(name, params = {}) {
  const query = new URLSearchParams(params).toString();
  location.hash = `#/${name}${query ? `?${query}` : ""}`;
}

let showing = 0;  // the latest navigation: a view that finishes loading after a newer one is dropped

async function show() {
  const mine = ++showing;
  const { name, params } = route();
  current?.unmount?.();
  current = null;
  for (const tab of document.querySelectorAll("#tabs a")) {
    tab.setAttribute("aria-current", tab.dataset.view === name ? "page" : "false");
  }
  const root = document.getElementById("view");
  root.replaceChildren();
  root.dataset.view = name;
  const module = await load(name);
  if (mine !== showing) return;
  const mounted = (await module.mount(root, { ...ctx, params })) ?? null;
  if (mine !== showing) { mounted?.unmount?.(); return; }
  current = mounted;
}

function tabs() {
  const nav = document.getElementById("tabs");
  nav.replaceChildren(...VIEWS.map((name, index) => {
    const link = document.createElement("a");
    link.href = `#/${name}`;
    link.dataset.view = name;
    link.textContent = i18n.t(name);
    link.title = `${i18n.t(name)} (Alt+${index + 1})`;
    return link;
  }));
  document.querySelectorAll("[data-t]").forEach((node) => { node.textContent = i18n.t(node.dataset.t); });
  document.getElementById("lang").textContent = i18n.language() === "zh" ? "EN" : "中文";
  document.documentElement.lang = i18n.language() === "zh" ? "zh-CN" : "en";
}

function banner() {
  const node = document.getElementById("banner");
  let hide;
  api.onConnectivity((up) => {
    clearTimeout(hide);
    node.hidden = false;
    node.className = up ? "banner ok" : "banner down";
    node.textContent = i18n.t(up ? "back_online" : "offline");
    if (up) hide = setTimeout(() => { node.hidden = true; }, 3000);
  });
}

async function signIn() {
  const dialog = document.getElementById("login");
  for (;;) {
    if (api.token()) {
      try { return await api.get("/api/v1/whoami"); } catch (error) {
        api.clearToken();
        document.getElementById("login-error").textContent = error.message;
      }
    }
    dialog.showModal();
    await new Promise((resolve) => dialog.addEventListener("close", resolve, { once: true }));
    api.setToken(document.getElementById("token").value.trim());
  }
}

async function start() {
  api.takeTokenFromUrl();
  banner();
  tabs();
  const me = await signIn();
  i18n.setTaxonomy(await api.get("/api/v1/taxonomy"));
  document.getElementById("who").textContent = `${me.name} · ${i18n.t(me.level)} ${me.scope} · ${me.role}`;
  const live = new Live();
  live.subscribe((event) => current?.onEvent?.(event));
  live.start();
  ctx = { api, i18n, me, live, navigate };
  document.getElementById("lang").addEventListener("click", () => {
    i18n.setLanguage(i18n.language() === "zh" ? "en" : "zh");
    tabs();
    show();
  });
  document.addEventListener("keydown", (event) => {
    if (event.altKey && /^[1-6]$/.test(event.key)) navigate(VIEWS[Number(event.key) - 1]);
  });
  window.addEventListener("hashchange", show);
  await show();
}

start();
