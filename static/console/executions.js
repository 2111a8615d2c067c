// Executions: a filtered list, newest first, kept up to date from the tenant's live feed.

import { api, follow } from "./api.js";
import { badge, fill, h, link, ms, when } from "./dom.js";

const STATUSES = ["", "queued", "running", "succeeded", "failed", "cancelled"];
const TRIGGERS = ["", "manual", "webhook", "schedule", "workflow", "run", "session"];

export async function render(main, _params, { signal, go, query }) {
  const field = (name, control) => h("label", {}, name, control);
  const fn = h("input", { name: "function", value: query.get("function") || "", placeholder: "any", size: 16 });
  const select = (name, options) => {
    const s = h("select", { name }, options.map((o) => h("option", { value: o }, o || "any")));
    s.value = query.get(name) || "";
    return s;
  };
  const status = select("status", STATUSES);
  const trigger = select("trigger", TRIGGERS);
  const form = h("form", { class: "filters", onsubmit: (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const [k, el] of [["function", fn], ["status", status], ["trigger", trigger]]) {
      if (el.value) q.set(k, el.value);
    }
    go(`/ui/executions${q.toString() ? "?" + q : ""}`);
  } }, field("Function", fn), field("Status", status), field("Trigger", trigger),
  h("button", { type: "submit" }, "Filter"));
  const live = h("span", { class: "muted", "aria-live": "polite" });
  const table = h("tbody");
  fill(main, h("div", { class: "title" }, h("h1", {}, "Executions"), live), form,
    h("div", { class: "scroll" }, h("table", { class: "list", id: "executions" },
      h("thead", {}, h("tr", {}, ["Execution", "Function", "Status", "Trigger", "Started", "Duration"]
        .map((c) => h("th", { scope: "col" }, c)))), table)));

  const q = new URLSearchParams({ limit: "50" });
  for (const k of ["function", "status", "trigger"]) if (query.get(k)) q.set(k, query.get(k));
  const load = async () => {
    const v = await api(`/executions?${q}`);
    fill(table, v.executions.length ? v.executions.map(row)
      : h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No executions yet.")));
  };
  await load();

  // Live: an execution starting or ending anywhere in the tenant reloads the page of rows
  // (at most every 300 ms).
  let pending = null;
  follow("/events", (type) => {
    if (type !== "execution.started" && type !== "execution.finished") return;
    pending ??= setTimeout(() => { pending = null; if (!signal.aborted) load().catch(() => {}); }, 300);
  }, signal).then(() => {}, () => {});
  fill(live, "● live");
}

function row(e) {
  return h("tr", { "data-id": e.id },
    // An id's start is its timestamp (UUIDv7): its end tells runs apart.
    h("td", {}, link(`/ui/executions/${encodeURIComponent(e.id)}`, h("code", { title: e.id }, `…${e.id.slice(-12)}`))),
    h("td", {}, link(`/ui/functions/${encodeURIComponent(e.function_name)}`, e.function_name)),
    h("td", {}, badge(e.status)),
    h("td", {}, e.trigger),
    h("td", {}, when(e.started_at)),
    h("td", { class: "num" }, ms(e.duration_ms)));
}
