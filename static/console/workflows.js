// Workflows: the list; a page per workflow with its DAG drawn, a run button and its runs;
// and a run's page: the DAG with each node coloured by its state in that run, a chosen
// node's attempts, output or error, followed live while the run goes on.

import { api, follow, seg, steps as allSteps } from "./api.js";
import { badge, fill, h, link, ms, pre, problem, when } from "./dom.js";
import { draw } from "./graph.js";

const nodeName = (n) => (typeof n === "string" ? n : n.function);
const finished = (s) => ["succeeded", "failed", "cancelled"].includes(s);

export const list = {
  async render(main) {
    const v = await api("/workflows");
    const rows = v.workflows.map((w) => h("tr", {},
      h("td", {}, link(`/ui/workflows/${seg(w.name)}`, w.name)),
      h("td", { class: "num" }, w.version),
      h("td", { class: "num" }, w.nodes.length),
      h("td", {}, w.schedule ? h("code", {}, w.schedule.cron_expression) : h("span", { class: "muted" }, "–")),
      h("td", {}, w.description || "")));
    fill(main, h("div", { class: "title" }, h("h1", {}, "Workflows")),
      h("div", { class: "scroll" }, h("table", { class: "list", id: "workflows" },
        h("thead", {}, h("tr", {}, ["Name", "Version", "Nodes", "Schedule", "Description"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 5, class: "muted" },
          "No workflows yet (", h("code", {}, "maestro deploy"), " or POST /api/v1/workflows)."))))));
  },
};

export const page = {
  async render(main, [name], { go }) {
    const [w, runs] = await Promise.all([api(`/workflows/${seg(name)}`), api(`/workflows/${seg(name)}/runs?limit=50`)]);
    const config = h("textarea", { id: "wf-config", rows: 4, "aria-label": "Config (JSON)", spellcheck: "false" },
      JSON.stringify(w.config ?? {}, null, 2));
    const status = h("div", { "aria-live": "polite" });
    const button = h("button", { id: "wf-run", onclick: () => start() }, "Run");
    const start = async () => {
      let value;
      try { value = JSON.parse(config.value || "{}"); } catch (e) {
        return fill(status, problem({ code: "invalid_json", message: `the config is not JSON: ${e.message}` }));
      }
      button.disabled = true; // one click, one run
      try {
        const v = await api(`/workflows/${seg(name)}/run`, { method: "POST", body: { config: value } });
        go(`/ui/workflows/${seg(name)}/runs/${seg(v.execution_id)}`);
      } catch (e) { fill(status, problem(e)); } finally { button.disabled = false; }
    };
    const rows = runs.runs.map((r) => h("tr", { "data-run": r.id },
      h("td", {}, link(`/ui/workflows/${seg(name)}/runs/${seg(r.id)}`, h("code", { title: r.id }, `…${r.id.slice(-12)}`))),
      h("td", {}, badge(r.status)),
      h("td", {}, r.trigger),
      h("td", {}, when(r.started_at)),
      h("td", { class: "num" }, ms(r.duration_ms))));
    fill(main, h("div", { class: "title" }, h("h1", {}, w.name), h("span", { class: "muted" }, `version ${w.version}`)),
      w.description ? h("p", {}, w.description) : null,
      h("section", { class: "card" }, h("h2", {}, "Graph"),
        h("div", { class: "scroll" }, draw(w.nodes.map(nodeName), w.edges))),
      h("section", { class: "card" }, h("h2", {}, "Run"),
        h("label", { for: "wf-config" }, "Config (JSON), merged over the workflow's own"), config,
        h("div", { class: "actions" }, button), status),
      h("section", { class: "card" }, h("h2", {}, `Runs (${runs.runs.length}${runs.next_cursor ? "+" : ""})`), h("div", { class: "scroll" },
        h("table", { class: "list", id: "wf-runs" },
          h("thead", {}, h("tr", {}, ["Run", "Status", "Trigger", "Started", "Duration"].map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No runs yet.")))))));
  },
};

export const run = {
  async render(main, [name, id], { signal }) {
    const head = h("div");
    const graph = h("div", { class: "scroll", id: "wf-graph" });
    const detail = h("section", { class: "card", id: "node-detail", "aria-live": "polite" });
    fill(main, head, h("section", { class: "card" }, h("h2", {}, "Nodes"), legend(), graph), detail);
    // A queued run has no execution steps yet.
    const stepsOf = async (v) => (v.status === "queued" ? []
      : await allSteps(id).catch(() => []));
    // The steps are asked for with the run (a queued run has none: its 404 is an empty list).
    let [view, steps] = await Promise.all([api(`/workflows/${seg(name)}/runs/${seg(id)}`),
      allSteps(id).catch(() => [])]);
    let chosen = null;
    let shown = ""; // what the detail shows, so a reload that changed nothing leaves it be
    const paint = () => {
      fill(head, h("div", { class: "title" }, h("h1", {}, `${name} `, h("span", { class: "muted" }, "run")), badge(view.status)),
        h("p", { class: "muted" }, `version ${view.version} · ${view.trigger} · started ${when(view.started_at)}`,
          view.resumes ? ` · resumed ${view.resumes}×` : "", " · ",
          link(`/ui/executions/${seg(id)}`, "open the execution"), " · ",
          link(`/ui/workflows/${seg(name)}`, "the workflow")));
      const names = Object.keys(view.nodes);
      const label = (n) => {
        const node = view.nodes[n];
        const tries = node.attempts > 1 ? ` · ${node.attempts} attempts` : "";
        const ran = node.duration_ms != null && node.status !== "skipped";
        return `${node.status}${ran ? " · " + ms(node.duration_ms) : ""}${tries}`;
      };
      // The graph is drawn anew: the node that had focus gets it back.
      const focused = graph.contains(document.activeElement) ? document.activeElement.dataset.node : null;
      fill(graph, draw(names, view.edges, { status: (n) => view.nodes[n].status, label, onPick: (n) => { chosen = n; paint(); } }));
      const node = (n) => graph.querySelector(`[data-node="${CSS.escape(n)}"]`);
      if (focused) node(focused)?.focus();
      if (!chosen) {
        if (shown !== "none") fill(detail, h("p", { class: "muted" }, "Choose a node to see its attempts, output or error."));
        shown = "none";
        return;
      }
      node(chosen)?.classList.add("chosen");
      const mine = view.nodes[chosen].steps.map((sid) => steps.find((st) => st.id === sid)).filter(Boolean);
      const key = JSON.stringify([chosen, view.nodes[chosen], mine]);
      if (key !== shown) nodeDetail(detail, chosen, view.nodes[chosen], mine, id);
      shown = key;
    };
    paint();
    if (finished(view.status)) return;

    // Live, after the first paint (the page counts as loaded): each step event reloads the
    // run, at most every 200 ms, the newest answer winning, until it ends.
    let pending = null;
    let asked = 0;
    const reload = () => {
      pending ??= setTimeout(async () => {
        pending = null;
        const mine = ++asked;
        try {
          const v = await api(`/workflows/${seg(name)}/runs/${seg(id)}`);
          const st = await stepsOf(v);
          if (mine !== asked || signal.aborted) return;
          [view, steps] = [v, st];
          paint();
        } catch { /* the next event tries again */ }
      }, 200);
    };
    (async () => {
      // A queued run has no stream yet: this polls until it starts, then follows it.
      while (!signal.aborted && !finished(view.status)) {
        try {
          await follow(`/executions/${seg(id)}/logs?follow=true`, (type) => {
            if (type !== "log") reload();
          }, signal);
        } catch { /* reopened below */ }
        reload();
        await new Promise((r) => setTimeout(r, 1000));
      }
    })();
  },
};

function legend() {
  return h("p", { class: "legend muted" }, ["pending", "running", "succeeded", "failed", "skipped", "cancelled"]
    .map((s) => [badge(s), " "]));
}

function nodeDetail(el, name, node, mine, execId) {
  const attempts = mine.map((s, i) => h("tr", {},
    h("td", { class: "num" }, i + 1),
    h("td", {}, badge(s.status)),
    h("td", {}, when(s.started_at)),
    h("td", { class: "num" }, ms(s.duration_ms)),
    h("td", { class: "num" }, s.fuel_used ?? "–"),
    h("td", {}, s.error ? `${s.error.type || s.error.kind || "error"}: ${s.error.message || ""}` : "")));
  fill(el, h("div", { class: "title" }, h("h2", {}, name), badge(node.status)),
    h("p", { class: "muted" }, `${node.attempts} attempt(s)`, node.interrupted ? `, ${node.interrupted} interrupted` : "",
      ` · ${ms(node.duration_ms)} · `, link(`/ui/functions/${seg(name)}`, "the function"), " · ",
      link(`/ui/executions/${seg(execId)}`, "the execution's waterfall")),
    attempts.length ? h("div", { class: "scroll" }, h("table", { class: "list", id: "attempts" },
      h("thead", {}, h("tr", {}, ["Attempt", "Status", "Started", "Duration", "Fuel", "Error"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, attempts))) : null,
    node.error ? [h("h3", {}, "Error"), h("p", { class: "error" }, `${node.error.type || node.error.kind || "error"}: ${node.error.message || ""}`),
      node.error.traceback ? pre(node.error.traceback, "traceback") : null] : null,
    node.output !== null && node.output !== undefined ? [h("h3", {}, "Output"), pre(node.output, "output")] : null,
    node.status === "pending" ? h("p", { class: "muted" }, "Not started in this run.") : null);
}
