// The console's shell: sign-in, navigation and routing on the path under /ui/.

import { actIn, api, signIn, signOut, subtenant, token } from "./api.js";
import { fill, h, link, problem } from "./dom.js";
import * as executions from "./executions.js";
import * as execution from "./execution.js";
import * as functions from "./functions.js";
import * as schedules from "./schedules.js";
import * as webhooks from "./webhooks.js";
import * as workflows from "./workflows.js";
import * as operator from "./operator.js";
import * as oidc from "./oidc.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");

/** path pattern → page module; the first match wins. */
const ROUTES = [
  [/^\/ui\/?$/, executions],
  [/^\/ui\/executions\/?$/, executions],
  [/^\/ui\/executions\/([^/]+)$/, execution],
  [/^\/ui\/functions\/?$/, functions.list],
  [/^\/ui\/new-function$/, functions.create],
  [/^\/ui\/functions\/([^/]+)$/, functions.page],
  [/^\/ui\/schedules\/?$/, schedules.list],
  [/^\/ui\/schedules\/([^/]+)$/, schedules.page],
  [/^\/ui\/webhooks\/?$/, webhooks.list],
  [/^\/ui\/workflows\/?$/, workflows.list],
  [/^\/ui\/workflows\/([^/]+)$/, workflows.page],
  [/^\/ui\/workflows\/([^/]+)\/runs\/([^/]+)$/, workflows.run],
  [/^\/ui\/operator\/?$/, operator],
];

const SECTIONS = [["Executions", "/ui/executions"], ["Functions", "/ui/functions"],
  ["Workflows", "/ui/workflows"], ["Schedules", "/ui/schedules"], ["Webhooks", "/ui/webhooks"],
  ["Operator", "/ui/operator"]];

/** What the page being left must stop (its live streams). */
let leave = null;

export function go(href) {
  history.pushState(null, "", href);
  route();
}

async function route() {
  if (leave) { leave(); leave = null; }
  if (location.pathname === "/ui/oidc") return backFromProvider();
  if (!token()) return signInPage();
  const path = location.pathname;
  markHere();
  for (const [re, page] of ROUTES) {
    const m = path.match(re);
    if (!m) continue;
    const controller = new AbortController();
    leave = () => controller.abort();
    // Each visit renders into its own element: a page still loading when the user moves on
    // writes into an element no longer shown, never over the next page.
    const view = h("div");
    fill(main, view);
    try {
      const params = m.slice(1).map(decodeURIComponent);
      await page.render(view, params, { signal: controller.signal, go, query: new URLSearchParams(location.search) });
    } catch (e) {
      if (e.status === 401) return; // the shell has sent the user to sign in
      if (!controller.signal.aborted) fill(view, problem(e));
    }
    main.focus({ preventScroll: true });
    return;
  }
  fill(main, h("h1", {}, "Not found"), h("p", {}, "No console page at ", path, "."));
}

function markHere() {
  for (const a of nav.querySelectorAll("a")) {
    a.classList.toggle("here", location.pathname.startsWith(a.getAttribute("href")));
  }
}

function signInPage(why = "") {
  fill(nav);
  fill(who);
  const input = h("textarea", { id: "token", rows: 4, required: true, autocomplete: "off", spellcheck: "false",
    "aria-label": "API token" });
  const remember = h("input", { type: "checkbox", id: "remember" });
  const status = h("div", { "aria-live": "polite" }, why ? h("p", { class: "problem" }, why) : null);
  const form = h("form", { class: "card signin", onsubmit: async (ev) => {
    ev.preventDefault();
    signIn(input.value.trim(), remember.checked);
    try {
      await api("/me");
      await start();
    } catch (e) {
      signOut();
      fill(status, problem(e));
    }
  } },
  h("h1", {}, "Sign in"),
  h("p", {}, "Paste an API token (", h("code", {}, "maestro token --tenant … --email …"),
    " mints one). The console acts with its rights and no more."),
  h("label", { for: "token" }, "Token"), input,
  h("label", { class: "inline" }, remember, " Remember on this browser"),
  h("button", { type: "submit", id: "signin" }, "Sign in"),
  status);
  fill(main, form);
  input.focus();
  // With an identity provider set up, signing in through it comes first.
  oidc.config().then((cfg) => {
    if (!cfg || !form.isConnected) return;
    const back = location.pathname.startsWith("/ui/oidc") ? "/ui/" : location.pathname + location.search;
    const button = h("button", { type: "button", id: "oidc-signin", onclick: () => {
      button.disabled = true; // one flow at a time: a second would replace the first's state
      oidc.begin(cfg, back).catch((e) => { button.disabled = false; fill(status, problem(e)); });
    } }, "Sign in with your identity provider");
    form.insertBefore(h("div", { class: "actions oidc" }, button, h("span", { class: "muted" }, "or paste a token:")), form.children[2]);
  }, () => {});
}

/** The provider sent the browser back with a code: exchange it, then go where the user was. */
async function backFromProvider() {
  // Signed in already (a Back press into the provider, a link made elsewhere): stay so.
  const before = token();
  fill(main, h("p", { class: "muted" }, "Signing in…"));
  let mine = false;
  try {
    const { token: t, back } = await oidc.finish(await oidc.config());
    signIn(t, false);
    mine = true;
    await api("/me");
    history.replaceState(null, "", back && back.startsWith("/ui/") ? back : "/ui/");
    await start();
  } catch (e) {
    if (mine) signOut(); // only a token this sign-in set
    history.replaceState(null, "", "/ui/");
    if (before && !mine) return start();
    signInPage();
    main.querySelector("[aria-live]")?.replaceChildren(problem(e));
  }
}

/** Whether a signed-in page is shown: a refused token then sends the user to sign in. */
let signedIn = false;

window.addEventListener("maestro:unauthorized", () => {
  if (!signedIn) return;
  signedIn = false;
  if (leave) { leave(); leave = null; }
  signOut();
  signInPage("The server refused the token (expired?): sign in again.");
});

async function start() {
  if (location.pathname === "/ui/oidc") return backFromProvider();
  if (!token()) return signInPage();
  signedIn = true;
  const sections = (admin) => SECTIONS.filter(([name]) => admin || name !== "Operator").map(([name, href]) => link(href, name));
  const signout = h("button", { class: "link", id: "signout", onclick: () => { signedIn = false; signOut(); route(); } }, "Sign out");
  // A subtenant acted in can be left even when it is gone (every call, /me too, is a 404).
  const leaveSub = () => (subtenant()
    ? h("button", { class: "link", id: "leave-subtenant", onclick: () => { actIn(null); start(); } }, `leave subtenant ${subtenant()}`)
    : null);
  fill(nav, sections(false));
  fill(who, leaveSub(), signout);
  // Who the user is fills the header when it answers; the page does not wait for it.
  api("/me").then((me) => {
    if (!signedIn) return; // signed out meanwhile
    fill(nav, sections(me.admin));
    markHere();
    fill(who, `${me.email} · ${me.tenant}`, leaveSub(), signout);
  }, () => {});
  await route();
}

document.addEventListener("click", (ev) => {
  // The skip link moves focus; as a fragment link it would re-route the page.
  if (ev.target.closest && ev.target.closest("a.skip")) {
    ev.preventDefault();
    main.focus();
    return;
  }
  const a = ev.target.closest && ev.target.closest("a[data-nav]");
  if (!a || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
  ev.preventDefault();
  go(a.getAttribute("href"));
});
window.addEventListener("popstate", route);

start();
