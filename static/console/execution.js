// One execution: its calls as a waterfall on a time axis (each bar at its start, as long as
// it ran, nested under its caller), the chosen call's input, output, error and traceback,
// and what every call printed. A running execution is followed live: bars grow, lines appear.

import { api, follow, seg, steps as allSteps } from "./api.js";
import { badge, fill, h, link, ms, pre, when } from "./dom.js";

export async function render(main, [id], { signal }) {
  const head = h("div");
  const axis = h("div", { class: "wf-axis", "aria-hidden": "true" });
  const bars = h("div", { class: "waterfall", id: "waterfall", role: "list", "aria-label": "Calls on a time axis" });
  const detail = h("section", { class: "card", id: "step-detail", "aria-live": "polite" });
  const logs = h("pre", { class: "code logs", id: "logs" });
  fill(main, head, h("section", { class: "card" }, h("h2", {}, "Calls"), axis, bars), detail,
    h("section", { class: "card" }, h("h2", {}, "Logs"), logs));

  let [exec, steps] = await Promise.all([api(`/executions/${seg(id)}`),
    allSteps(id)]);
  let chosen = steps[0]?.id;
  const choose = (s) => { chosen = s.id; draw(); };

  let workflowRun = false;
  const draw = () => {
    drawHead(head, exec, workflowRun);
    drawWaterfall(axis, bars, steps, chosen, choose);
    drawDetail(detail, steps.find((s) => s.id === chosen) || exec);
  };
  draw();
  // A workflow's run is an execution named after the workflow: then the head leads to its graph.
  api(`/workflows/${seg(exec.function_name)}/runs/${seg(id)}`).then(() => {
    workflowRun = true;
    if (!signal.aborted) drawHead(head, exec, true);
  }, () => {});
  const stored = steps.flatMap(stepLines);
  fill(logs, stored);
  if (finished(exec.status)) return replayInOrder(id, logs, stored.length, signal);

  // Live: running bars grow with the clock (the rows stay, so a click or focus on them is
  // not lost); step events reload the steps; log lines are added as they are printed.
  const tick = setInterval(() => grow(axis, bars, steps), 250);
  signal.addEventListener("abort", () => clearInterval(tick));
  // Reloads may overlap: only the newest one's answer is drawn.
  let asked = 0;
  const reloadNow = async () => {
    const mine = ++asked;
    try {
      const [e, st] = await Promise.all([
        api(`/executions/${seg(id)}`), allSteps(id)]);
      if (mine !== asked || signal.aborted) return;
      [exec, steps] = [e, st];
      chosen ??= steps[0]?.id;
      draw();
    } catch { /* the next event or reconnect tries again */ }
  };
  let pending = null;
  const reload = () => {
    pending ??= setTimeout(() => { pending = null; if (!signal.aborted) reloadNow(); }, 150);
  };
  const names = new Map(steps.map((s) => [s.id, s.function_name]));
  // Followed after the first paint: the page counts as loaded while the run goes on.
  void (async () => {
    try {
      // The stream replays the run from its start: a dropped one is opened again, with the
      // lines shown so far cleared first.
      while (!signal.aborted && !finished(exec.status)) {
        fill(logs);
        await follow(`/executions/${seg(id)}/logs?follow=true`, (type, data) => {
          if (type === "log") {
            const who = data.function || names.get(data.step_id) || "";
            logs.append(line(who, data.stream, data.line));
            logs.scrollTop = logs.scrollHeight;
          } else if (type === "dropped") {
            logs.append(h("div", { class: "muted" }, `(${data.count} events dropped: this page read too slowly)`));
          } else if (type.startsWith("step.") || type.startsWith("execution.")) {
            if (data.step_id && data.function) names.set(data.step_id, data.function);
            reload();
          }
        }, signal).catch(() => {});
        await reloadNow();
        if (!finished(exec.status)) await new Promise((r) => setTimeout(r, 1000));
      }
    } finally {
      clearInterval(tick);
    }
  })();
}

function finished(status) {
  return !["queued", "running"].includes(status);
}

function drawHead(head, e, workflowRun) {
  fill(head, h("div", { class: "title" },
    h("h1", {}, "Execution ", h("code", {}, e.id)), badge(e.status)),
  h("p", { class: "muted" },
    workflowRun
      ? link(`/ui/workflows/${seg(e.function_name)}/runs/${seg(e.id)}`, `workflow ${e.function_name} (its graph)`)
      : link(`/ui/functions/${seg(e.function_name)}`, e.function_name),
    ` · ${e.trigger} trigger · started ${when(e.started_at)} · ${ms(e.duration_ms)}`,
    e.fuel_used != null ? ` · fuel ${fuel(e.fuel_used)}` : ""));
}

function fuel(n) {
  if (n == null) return "–";
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} k`;
  return String(n);
}

/**
 * Start and end of each step in ms since the first started; running ones end now. Start
 * times are stored to the millisecond and durations finer, so a call may seem to start
 * before or end after its caller by a fraction of a millisecond: it is drawn within it.
 */
function spans(steps) {
  const now = Date.now();
  const t0 = Math.min(...steps.map((s) => Date.parse(s.started_at)));
  const byId = new Map();
  return treeOrder(steps).map((s) => {
    let start = Date.parse(s.started_at) - t0;
    let end = s.duration_ms != null ? start + s.duration_ms
      : s.finished_at ? Date.parse(s.finished_at) - t0 : Math.max(start, now - t0);
    const parent = byId.get(s.parent_id);
    if (parent) {
      start = Math.min(Math.max(start, parent.start), parent.end);
      end = Math.max(start, Math.min(end, parent.end));
    }
    const span = { s, start, end };
    byId.set(s.id, span);
    return span;
  });
}

/**
 * Each call right under its caller (its children after it, in call order): `seq` counts
 * calls as they start across the whole execution, so parallel callers' calls interleave.
 */
function treeOrder(steps) {
  const ids = new Set(steps.map((s) => s.id));
  const children = new Map();
  for (const s of steps) {
    const p = ids.has(s.parent_id) ? s.parent_id : null;
    if (!children.has(p)) children.set(p, []);
    children.get(p).push(s);
  }
  const out = [];
  const walk = (p) => {
    for (const s of (children.get(p) || []).sort((a, b) => a.seq - b.seq)) {
      out.push(s);
      walk(s.id);
    }
  };
  walk(null);
  return out;
}

/** A bar's left and width in percent of the axis, at least visible, never past its end. */
function place(bar, start, end, total) {
  const width = Math.max(0.4, ((end - start) / total) * 100);
  bar.style.left = `${Math.min((start / total) * 100, 100 - width)}%`;
  bar.style.width = `${width}%`;
}

function drawWaterfall(axis, bars, steps, chosen, choose) {
  if (!steps.length) return fill(bars, h("p", { class: "muted" }, "No calls recorded yet."));
  const rows = spans(steps);
  const total = Math.max(1, ...rows.map((r) => r.end));
  fill(axis, [0, 0.25, 0.5, 0.75, 1].map((f) =>
    h("span", { style: { left: `${f * 100}%` } }, ms(total * f))));
  fill(bars, rows.map(({ s, start, end }) => {
    const bar = h("div", { class: `wf-bar s-${s.status}`, title: `${s.function_name}: ${s.status}, ${ms(end - start)}` });
    place(bar, start, end, total);
    const label = h("button", { class: "wf-label", type: "button", onclick: () => choose(s) },
      s.status === "failed" ? h("span", { class: "mark", "aria-label": "failed" }, "✕ ") : null,
      h("span", { class: "fn" }, s.function_name),
      h("span", { class: "muted took" }, ` ${ms(end - start)}`),
      h("span", { class: "muted" }, s.fuel_used != null ? ` · fuel ${fuel(s.fuel_used)}` : ""));
    label.style.paddingLeft = `${0.4 + s.depth * 1.1}rem`;
    return h("div", { class: `wf-row${s.id === chosen ? " chosen" : ""}`, role: "listitem",
      "data-step": s.id, "data-depth": s.depth, "data-status": s.status, "data-function": s.function_name },
    label, h("div", { class: "wf-track" }, bar));
  }));
}

/** Move and stretch the drawn bars to the clock (rebuilding only when the calls changed). */
function grow(axis, bars, steps) {
  const rows = bars.querySelectorAll(".wf-row");
  if (rows.length !== steps.length) return;
  const spansNow = spans(steps);
  const total = Math.max(1, ...spansNow.map((r) => r.end));
  axis.querySelectorAll("span").forEach((el, i) => { el.textContent = ms(total * i / 4); });
  spansNow.forEach(({ start, end }, i) => {
    const bar = rows[i].querySelector(".wf-bar");
    place(bar, start, end, total);
    const took = rows[i].querySelector(".took");
    if (took) took.textContent = ` ${ms(end - start)}`;
  });
}

function drawDetail(el, s) {
  const parts = [h("h2", {}, s.function_name, " ", badge(s.status)),
    h("p", { class: "muted" }, `started ${when(s.started_at)} · ${ms(s.duration_ms)}`,
      s.function_version != null ? ` · version ${s.function_version}` : "")];
  parts.push(h("h3", {}, "Input"), pre(parse(s.input)));
  if (s.error) {
    parts.push(h("h3", {}, "Error"),
      h("p", { class: "error" }, `${s.error.kind || "error"}: ${s.error.message || ""}`));
    if (s.error.traceback) parts.push(pre(s.error.traceback, "traceback"));
  } else if (finished(s.status)) {
    parts.push(h("h3", {}, "Output"), pre(parse(s.output), "output"));
  }
  if (s.stdout) parts.push(h("h3", {}, "Printed"), pre(s.stdout));
  if (s.stderr) parts.push(h("h3", {}, "Stderr"), pre(s.stderr, "stderr"));
  fill(el, parts);
}

/** Stored JSON comes as text in some records: show it parsed when it is. */
function parse(v) {
  if (typeof v !== "string") return v;
  try { return JSON.parse(v); } catch { return v; }
}

/**
 * A finished run's output is stored per call, so the lines above are grouped by call. The
 * server keeps the run's live history for a while after it ends: replayed, it has every line
 * in the order it was printed, and replaces the grouped lines when it has them all.
 */
function replayInOrder(id, logs, count, signal) {
  const ordered = [];
  const names = new Map(); // step → function, from the start events before its lines
  let rebuilt = false; // the history had expired: the server rebuilt it from the record
  follow(`/executions/${seg(id)}/logs?follow=true`, (type, data) => {
    if (data && data.source === "record") rebuilt = true;
    if (data && data.step_id && data.function) names.set(data.step_id, data.function);
    if (type === "log") ordered.push(line(data.function || names.get(data.step_id) || "", data.stream, data.line));
  }, signal).then(() => {
    // A rebuilt history is grouped by call too (and not better): only the live one is used.
    if (!signal.aborted && !rebuilt && ordered.length >= count && ordered.length) fill(logs, ordered);
  }, () => {});
}

function stepLines(s) {
  const out = [];
  for (const [stream, text] of [["stdout", s.stdout], ["stderr", s.stderr]]) {
    for (const l of (text || "").split("\n")) if (l) out.push(line(s.function_name, stream, l));
  }
  return out;
}

function line(who, stream, text) {
  return h("div", { class: `log-line ${stream === "stderr" ? "stderr" : ""}` },
    h("span", { class: "who" }, `[${who}] `), text);
}
