// Executions: a filtered list, newest first, kept up to date from the tenant's live feed.

import { api, follow } from "./api.js";
import { badge, fill, h, link, ms, problem, when } from "./dom.js";

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
  // A time range: local times in the inputs, RFC 3339 (UTC) in the URL and the API call.
  const time = (name, label) => h("input", { type: "datetime-local", step: 1, name, "aria-label": label, value: local(query.get(name)) });
  const since = time("since", "Started from");
  const until = time("until", "Started before");
  const status = select("status", STATUSES);
  const trigger = select("trigger", TRIGGERS);
  const form = h("form", { class: "filters", onsubmit: (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const [k, el] of [["function", fn], ["status", status], ["trigger", trigger]]) {
      if (el.value) q.set(k, el.value);
    }
    for (const [k, el] of [["since", since], ["until", until]]) {
      if (el.value) q.set(k, new Date(el.value).toISOString());
    }
    go(`/ui/executions${q.toString() ? "?" + q : ""}`);
  } }, field("Function", fn), field("Status", status), field("Trigger", trigger),
  field("From", since), field("Before", until),
  h("button", { type: "submit" }, "Filter"));
  const live = h("span", { class: "muted", "aria-live": "polite" });
  const table = h("tbody");
  fill(main, h("div", { class: "title" }, h("h1", {}, "Executions"), live), form,
    h("div", { class: "scroll" }, h("table", { class: "list", id: "executions" },
      h("thead", {}, h("tr", {}, ["Execution", "Function", "Status", "Trigger", "Started", "Duration"]
        .map((c) => h("th", { scope: "col" }, c)))), table)));

  // Pages by cursor: each costs the same however deep, and runs started meanwhile do not
  // shift rows between pages. The browser's Back returns to a newer page.
  const PAGE = 50;
  const cursor = query.get("cursor");
  const q = new URLSearchParams({ limit: String(PAGE) });
  if (cursor) q.set("cursor", cursor);
  for (const k of ["function", "status", "trigger", "since", "until"]) if (query.get(k)) q.set(k, query.get(k));
  // A workflow's run is an execution named after the workflow: its row leads to the graph.
  const workflows = api("/workflows").then((v) => new Set(v.workflows.map((w) => w.name)), () => new Set());
  const pager = h("div", { class: "actions pager" });
  main.append(pager);
  const at = (c) => {
    const p = new URLSearchParams(query);
    if (c) p.set("cursor", c); else p.delete("cursor");
    return `/ui/executions${p.toString() ? "?" + p : ""}`;
  };
  let waiting = false;
  const load = async () => {
    const [v, names] = await Promise.all([api(`/executions?${q}`), workflows]);
    fill(table, v.executions.length ? v.executions.map((e) => row(e, names))
      : h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No executions match.")));
    waiting = v.executions.some((e) => e.status === "queued");
    fill(pager, h("span", { class: "muted" }, v.executions.length ? `${v.executions.length} shown` : ""),
      cursor ? link(at(null), "Newest") : null,
      v.next_cursor ? link(at(v.next_cursor), "Older") : null);
  };
  try {
    await load();
  } catch (e) {
    // A bad filter (say, a time that is not one) is shown under the form, which stays.
    fill(table, h("tr", {}, h("td", { colspan: 6 }, problem(e))));
    return;
  }
  if (signal.aborted) return;
  // Queued runs announce nothing until they start: while one is shown, look again every 3 s.
  const poll = setInterval(() => { if (waiting && !signal.aborted) load().catch(() => {}); }, 3000);
  signal.addEventListener("abort", () => clearInterval(poll));

  // Live: an execution starting or ending anywhere in the tenant reloads the page of rows
  // (at most every 300 ms). A dropped feed is reopened (and the rows reloaded, for what
  // happened meanwhile); the marker shows only while it is open.
  let pending = null;
  const reload = () => {
    pending ??= setTimeout(() => { pending = null; if (!signal.aborted) load().catch(() => {}); }, 300);
  };
  void (async () => {
    while (!signal.aborted) {
      await follow("/events", (type) => {
        if (type === "execution.started" || type === "execution.finished") reload();
      }, signal, () => fill(live, "● live")).catch(() => {});
      if (signal.aborted) return;
      fill(live, "reconnecting…");
      await new Promise((r) => setTimeout(r, 2000));
      reload();
    }
  })();
}

/** An RFC 3339 time as a datetime-local input's value (local time, to the second). */
function local(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return "";
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

function row(e, workflows) {
  return h("tr", { "data-id": e.id },
    // An id's start is its timestamp (UUIDv7): its end tells runs apart.
    h("td", {}, link(`/ui/executions/${encodeURIComponent(e.id)}`, h("code", { title: e.id }, `…${e.id.slice(-12)}`))),
    h("td", {}, workflows.has(e.function_name)
      ? link(`/ui/workflows/${encodeURIComponent(e.function_name)}/runs/${encodeURIComponent(e.id)}`, "workflow ", e.function_name)
      : link(`/ui/functions/${encodeURIComponent(e.function_name)}`, e.function_name)),
    h("td", {}, badge(e.status)),
    h("td", {}, e.trigger),
    h("td", {}, when(e.started_at)),
    h("td", { class: "num" }, ms(e.duration_ms)));
}
