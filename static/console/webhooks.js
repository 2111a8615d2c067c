// Webhooks: each one's full URL, what it runs, a ready curl (with the signature a
// `requires_auth` webhook checks), and its recent answers.

import { api, seg } from "./api.js";
import { badge, fill, h, link, ms, when } from "./dom.js";

export const list = {
  async render(main) {
    const v = await api("/webhooks?limit=500");
    const cards = await Promise.all(v.webhooks.map(card));
    fill(main, h("div", { class: "title" }, h("h1", {}, "Webhooks")),
      h("div", { id: "webhooks" }, cards.length ? cards : h("p", { class: "muted" }, "No webhooks yet.")));
  },
};

/** A shell word: single-quoted, with single quotes closed and escaped. */
function sq(s) {
  return `'${String(s).replace(/'/g, "'\\''")}'`;
}

function curl(w, full) {
  const method = w.http_method === "ANY" ? "POST" : w.http_method;
  const body = `{"hello": "world"}`;
  const lines = [`curl -X ${method} ${sq(full)} \\`, "  -H 'Content-Type: application/json' \\"];
  if (w.requires_auth && w.require_timestamp) {
    return [`SECRET=...   # the webhook's secret, shown once when it was set`, `BODY=${sq(body)}`, "TS=$(date +%s)",
      "SIG=$(printf '%s.%s' \"$TS\" \"$BODY\" | openssl dgst -sha256 -hmac \"$SECRET\" | cut -d' ' -f2)",
      ...lines, "  -H \"X-Maestro-Timestamp: $TS\" -H \"X-Maestro-Signature: sha256=$SIG\" \\", "  -d \"$BODY\""].join("\n");
  }
  if (w.requires_auth) {
    return [`SECRET=...   # the webhook's secret, shown once when it was set`, `BODY=${sq(body)}`,
      "SIG=$(printf '%s' \"$BODY\" | openssl dgst -sha256 -hmac \"$SECRET\" | cut -d' ' -f2)",
      ...lines, "  -H \"X-Maestro-Signature: sha256=$SIG\" \\", "  -d \"$BODY\""].join("\n");
  }
  return [...lines, `  -d ${sq(body)}`].join("\n");
}

async function card(w) {
  const full = new URL(w.url, location.origin).href;
  const recent = await api(`/executions?trigger=webhook&trigger_id=${seg(w.id)}&limit=5`).catch(() => ({ executions: [] }));
  const runs = recent.executions.map((e) => h("li", {}, badge(e.status), " ", when(e.started_at), ` · ${ms(e.duration_ms)} · `,
    link(`/ui/executions/${seg(e.id)}`, "execution")));
  return h("section", { class: "card", "data-webhook": w.path },
    h("div", { class: "title" }, h("h2", {}, h("code", {}, `${w.http_method} ${w.path}`)),
      w.enabled ? badge("enabled") : badge("disabled")),
    h("p", {}, "URL: ", h("code", { class: "url" }, full)),
    h("p", { class: "muted" }, "Runs ", w.function_name ? link(`/ui/functions/${seg(w.function_name)}`, w.function_name)
      : link(`/ui/workflows/${seg(w.workflow_name)}`, "workflow ", w.workflow_name),
    ` · ${w.async ? "async (answers 202)" : "sync"} · input: ${w.input_mode}`,
    w.requires_auth ? ` · signed${w.require_timestamp ? " with a timestamp" : ""}` : " · open"),
    h("pre", { class: "code curl" }, curl(w, full)),
    h("h3", {}, "Recent answers"),
    runs.length ? h("ul", { class: "recent" }, runs) : h("p", { class: "muted" }, "None yet."));
}
