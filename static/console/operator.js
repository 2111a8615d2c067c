// Operator views (admins): the tenant's quotas against what it uses now, the scheduler and
// queue, the sandbox pool (from /metrics), the servers sharing the database, and the
// subtenants with their quotas and usage; an admin can act in one from here.

import { actIn, api, seg, subtenant } from "./api.js";
import { badge, fill, h, link, problem, when } from "./dom.js";

/** A section that loads on its own: one failing (a 403, a metrics token) spoils no other. */
function section(title, id, load) {
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  load().then((content) => fill(body, content), (e) => fill(body, problem(e)));
  return h("section", { class: "card", id }, h("h2", {}, title), body);
}

/** `key: value` pairs as a definition list. */
function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(Boolean).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "–")]));
}

const total = (path) => api(path).then((v) => v.total);

/** What the tenant in force uses now and in the last day; `headers` pick a subtenant. */
async function usage() {
  const day = new Date(Date.now() - 86400e3).toISOString();
  const [functions, running, queued, lastDay, failedDay] = await Promise.all([
    total("/functions?limit=1"), total("/executions?status=running&limit=1&total=true"),
    total("/executions?status=queued&limit=1&total=true"), total(`/executions?since=${seg(day)}&limit=1&total=true`),
    total(`/executions?status=failed&since=${seg(day)}&limit=1&total=true`)]);
  return { functions, running, queued, lastDay, failedDay };
}

function quotaRows(q, u) {
  // Only a rate of 0 and an absent fuel cap mean "no limit"; a count of 0 allows none.
  const limit = (v) => (v === null || v === undefined ? "unlimited" : v);
  const rate = (v) => (!v ? "unlimited" : v);
  return h("div", { class: "scroll" }, h("table", { class: "list", id: "quotas" },
    h("thead", {}, h("tr", {}, ["Quota", "Limit", "In use"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {},
      h("tr", {}, h("td", {}, "Functions"), h("td", { class: "num" }, limit(q.max_functions)), h("td", { class: "num" }, u.functions)),
      h("tr", {}, h("td", {}, "Concurrent executions"), h("td", { class: "num" }, limit(q.max_concurrent_executions)),
        h("td", { class: "num" }, u.running)),
      h("tr", {}, h("td", {}, "Invocations per second (burst)"),
        h("td", { class: "num" }, `${rate(q.invocations_per_second)} (${q.burst ?? "–"})`), h("td", { class: "num" }, "–")),
      h("tr", {}, h("td", {}, "Fuel per execution"), h("td", { class: "num" }, limit(q.max_fuel_per_execution)), h("td", { class: "num" }, "–")),
      h("tr", {}, h("td", {}, "Code sent to run"), h("td", {}, q.code_execution ? "allowed" : "not allowed"), h("td", {}, "")))),
  h("p", { class: "muted" }, `Queued now: ${u.queued} · executions in the last 24 h: ${u.lastDay} (${u.failedDay} failed)`));
}

/** Prometheus text as `name → [{labels, value}]` (the lines this console shows). */
export function parseMetrics(text) {
  const out = new Map();
  for (const line of text.split("\n")) {
    const m = line.match(/^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = Object.fromEntries([...(m[3] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (!out.has(m[1])) out.set(m[1], []);
    out.get(m[1]).push({ labels, value: Number(m[4]) });
  }
  return out;
}

function metricRows(metrics, prefix) {
  const rows = [];
  for (const [name, samples] of metrics) {
    if (!name.startsWith(prefix) || name.endsWith("_bucket")) continue;
    for (const s of samples) {
      const labels = Object.entries(s.labels).map(([k, v]) => `${k}=${v}`).join(", ");
      rows.push(h("tr", {}, h("td", {}, h("code", {}, name)), h("td", {}, labels), h("td", { class: "num" }, String(s.value))));
    }
  }
  return h("div", { class: "scroll" }, h("table", { class: "list", id: `metrics-${prefix.replace(/\W+$/, "").replace(/\W/g, "-")}` },
    h("thead", {}, h("tr", {}, ["Metric", "Labels", "Value"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 3, class: "muted" }, "None reported.")))));
}

export async function render(main) {
  // Everything is asked for at once; only the admin-only sections wait for who is asking.
  const used = usage();
  const status = api("/scheduler/status", { root: true });
  const metrics = api("/metrics", { root: true, text: true, quiet: true }).then(parseMetrics, (e) => {
    if (e.status === 401) throw { code: "metrics_token", message: "/metrics needs the server's METRICS_TOKEN, not a user token" };
    throw e;
  });
  for (const p of [used, status, metrics]) p.catch(() => {}); // each section shows its own failure
  const me = await api("/me");
  const sub = subtenant();
  fill(main, h("div", { class: "title" }, h("h1", {}, "Operator"),
    h("span", { class: "muted" }, sub ? `acting in subtenant ${sub}` : `tenant ${me.tenant}`)),
  section("Quotas and usage", "usage", async () => quotaRows(me.quotas || {}, await used)),
  section("Scheduler and queue", "scheduler", async () => {
    const s = await status;
    const q = s.queue || {};
    return [facts([["Scheduler", s.running ? badge("running") : badge("off")], ["Node", h("code", {}, s.node_id)],
      ["Poll interval", `${s.poll_interval_ms} ms`], ["Active schedules", s.active_schedules],
      ...Object.entries(q).map(([k, v]) => [`Queue ${k.replace(/_/g, " ")}`, typeof v === "object" ? JSON.stringify(v) : String(v)])]),
    h("h3", {}, "Next due"),
    h("ul", {}, (s.next_due || []).map((n) => h("li", {}, link(`/ui/schedules/${seg(n.id)}`, n.name), ` · ${when(n.next_run_at)}`)))];
  }),
  section("Sandbox pool", "pool", async () => metricRows(await metrics, "maestro_sandbox_")),
  section("Queue metrics", "queue-metrics", async () => metricRows(await metrics, "maestro_queue_")),
  me.admin ? section("Servers", "cluster", async () => {
    const c = await api("/cluster", { root: true });
    return h("ul", {}, c.nodes.map((n) => h("li", {}, h("code", {}, n.id), n.id === c.node_id ? " (this one)" : "",
      ` · up since ${when(n.started_at)} · heartbeat ${when(n.last_heartbeat_at)} · ${n.jobs_held} job(s)`)));
  }) : null,
  me.admin ? section("Subtenants", "subtenants", () => subtenants()) : null);
}

async function subtenants() {
  const v = await api("/subtenants?limit=100");
  const rows = v.subtenants.map((t) => {
    const used = h("td", { class: "num" }, "…");
    const running = h("td", { class: "num" }, "…");
    // Each subtenant's usage, read as the admin acting in it.
    Promise.all([countIn(t.subtenant_id, "/functions?limit=1"), countIn(t.subtenant_id, "/executions?status=running&limit=1&total=true")])
      .then(([f, r]) => { fill(used, f); fill(running, r); }, () => { fill(used, "?"); fill(running, "?"); });
    return h("tr", { "data-subtenant": t.subtenant_id },
      h("td", {}, h("code", {}, t.subtenant_id)),
      h("td", {}, t.description || ""),
      h("td", {}, Object.keys(t.quotas || {}).length ? h("code", {}, JSON.stringify(t.quotas)) : h("span", { class: "muted" }, "defaults")),
      used, running,
      h("td", {}, h("button", { class: "small", onclick: () => { actIn(t.subtenant_id); location.assign("/ui/executions"); } }, "Act in")));
  });
  return h("div", { class: "scroll" }, h("table", { class: "list", id: "subtenant-list" },
    h("thead", {}, h("tr", {}, ["Subtenant", "Description", "Quotas", "Functions", "Running", ""].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No subtenants.")))));
}

/** A list's total in subtenant `id` (the admin's token, the `x-subtenant` header). */
function countIn(id, path) {
  return api(path, { within: id }).then((v) => v.total);
}
