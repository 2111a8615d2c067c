// Schedules: when each fires next (its next three times, in its zone), how its last run
// went, and pause, resume and run now; a schedule's page lists its runs.

import { api, seg } from "./api.js";
import { badge, fill, h, link, problem, when } from "./dom.js";

export const list = {
  async render(main, _params, ctx) {
    const status = h("div", { "aria-live": "polite" });
    const body = h("tbody");
    fill(main, h("div", { class: "title" }, h("h1", {}, "Schedules")), status,
      h("div", { class: "scroll" }, h("table", { class: "list", id: "schedules" },
        h("thead", {}, h("tr", {}, ["Name", "Runs", "When", "Next", "Last run", ""].map((c) => h("th", { scope: "col" }, c)))),
        body)));
    const load = async () => {
      const v = await api("/schedules?limit=500");
      fill(body, v.schedules.length ? v.schedules.map((s) => row(s, act))
        : h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No schedules yet.")));
    };
    const act = async (s, what) => {
      try {
        const answer = await api(`/schedules/${seg(s.id)}/${what}`, { method: "POST" });
        if (what === "run" && answer.execution_id) {
          fill(status, h("p", { class: "ok" }, `${s.name} started: `,
            link(`/ui/executions/${seg(answer.execution_id)}`, "open the execution")));
        } else if (what === "run") {
          fill(status, h("p", { class: "muted" }, answer.message || "queued"));
        } else {
          fill(status);
        }
        await load();
      } catch (e) { fill(status, problem(e)); }
    };
    await load();
    void ctx;
  },
};

function target(s) {
  return s.function_name
    ? link(`/ui/functions/${seg(s.function_name)}`, s.function_name)
    : link(`/ui/workflows/${seg(s.workflow_name)}`, "workflow ", s.workflow_name);
}

function row(s, act) {
  const next = s.enabled
    ? h("div", {}, (s.upcoming || [s.next_run_at]).filter(Boolean).map((t) => h("div", {}, when(t))))
    : h("span", { class: "muted" }, "paused");
  const last = s.last_run_at
    ? h("div", {}, badge(s.last_status), " ", when(s.last_run_at), " ",
      s.last_execution_id ? link(`/ui/executions/${seg(s.last_execution_id)}`, "execution") : null)
    : h("span", { class: "muted" }, "never");
  const button = (label, what) => h("button", { class: "small", "data-action": what, onclick: () => act(s, what) }, label);
  return h("tr", { "data-schedule": s.name },
    h("td", {}, link(`/ui/schedules/${seg(s.id)}`, s.name)),
    h("td", {}, target(s)),
    h("td", {}, h("code", {}, s.cron_expression), ` (${s.timezone})`),
    h("td", { class: "next" }, next),
    h("td", {}, last),
    h("td", { class: "actions-cell" }, s.enabled ? button("Pause", "pause") : button("Resume", "resume"), " ",
      button("Run now", "run")));
}

export const page = {
  async render(main, [id]) {
    const [s, runs] = await Promise.all([api(`/schedules/${seg(id)}`), api(`/schedules/${seg(id)}/runs?limit=50`)]);
    const rows = (runs.runs || []).map((r) => h("tr", {},
      h("td", {}, when(r.fire_at)),
      h("td", { class: "num" }, r.attempt ?? ""),
      h("td", {}, badge(r.status)),
      h("td", {}, r.reason || ""),
      h("td", {}, r.execution_id ? link(`/ui/executions/${seg(r.execution_id)}`, h("code", {}, `…${r.execution_id.slice(-12)}`)) : "")));
    fill(main, h("div", { class: "title" }, h("h1", {}, s.name), s.enabled ? badge("enabled") : badge("paused")),
      h("p", { class: "muted" }, h("code", {}, s.cron_expression), ` in ${s.timezone} · overlap ${s.overlap_policy}`,
        ` · retries ${s.max_retries}`),
      h("section", { class: "card" }, h("h2", {}, "Next fire times"),
        h("ul", {}, (s.upcoming || []).map((t) => h("li", {}, when(t))))),
      h("section", { class: "card" }, h("h2", {}, "Runs"), h("div", { class: "scroll" }, h("table", { class: "list" },
        h("thead", {}, h("tr", {}, ["Fire time", "Attempt", "Status", "Reason", "Execution"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No runs yet.")))))));
  },
};
