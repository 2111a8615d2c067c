// Functions: the list; a page per function with its code in an editor (Python highlighting),
// its schemas and settings, a run panel (input checked against the schema before sending)
// and its versions with rollback; and a page to create one.

import { api, seg } from "./api.js";
import { badge, fill, h, link, ms, pre, problem, when } from "./dom.js";
import { check } from "./schema.js";
import { showDiff } from "./diff.js";

/** A code editor on `textarea`: CodeMirror when it loaded, else the plain textarea. Ctrl-S
 * (Cmd-S) calls `save` when there is one. */
function editor(textarea, mode, save = null) {
  if (!window.CodeMirror) return { get: () => textarea.value, set: (v) => { textarea.value = v; } };
  const cm = window.CodeMirror.fromTextArea(textarea, {
    mode, lineNumbers: true, indentUnit: 4, tabSize: 4, indentWithTabs: false, viewportMargin: Infinity,
    extraKeys: { Tab: (c) => c.replaceSelection("    "), "Ctrl-S": () => { if (save) save(); }, "Cmd-S": () => { if (save) save(); },
      Esc: (c) => c.getInputField().blur() },
  });
  return { get: () => cm.getValue(), set: (v) => cm.setValue(v) };
}

export const list = {
  async render(main) {
    const v = await api("/functions?limit=500");
    const rows = v.functions.map((f) => h("tr", {},
      h("td", {}, link(`/ui/functions/${seg(f.name)}`, f.name)),
      h("td", { class: "num" }, f.version),
      h("td", {}, when(f.updated_at)),
      h("td", {}, f.description || "")));
    fill(main, h("div", { class: "title" }, h("h1", {}, "Functions"),
      link("/ui/new-function", h("span", { class: "button", id: "new-function" }, "New function"))),
    h("div", { class: "scroll" }, h("table", { class: "list", id: "functions" },
      h("thead", {}, h("tr", {}, ["Name", "Version", "Updated", "Description"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No functions yet."))))),
    v.total > rows.length ? h("p", { class: "muted" }, `The first ${rows.length} of ${v.total}, by name.`) : null);
  },
};

const STARTER = "def my_function(input):\n    return {\"hello\": input.get(\"name\", \"world\")}\n";

export const create = {
  async render(main, _params, { go }) {
    const name = h("input", { id: "fn-name", required: true, pattern: "[A-Za-z_][A-Za-z0-9_]*", placeholder: "my_function" });
    const area = h("textarea", { id: "fn-code", "aria-label": "Code" }, STARTER);
    const status = h("div", { "aria-live": "polite" });
    const form = h("form", { class: "card", onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        await api("/functions", { method: "POST", body: { name: name.value, code: code.get() } });
        go(`/ui/functions/${seg(name.value)}`);
      } catch (e) { fill(status, problem(e)); }
    } }, h("h1", {}, "New function"),
    h("label", { for: "fn-name" }, "Name (the Python function the code defines)"), name,
    h("label", { for: "fn-code" }, "Code"), area,
    h("div", { class: "actions" }, h("button", { type: "submit", id: "create" }, "Create")), status);
    fill(main, form);
    const code = editor(area, "python");
    name.addEventListener("input", () => {
      if (/^[A-Za-z_]\w*$/.test(name.value)) code.set(code.get().replace(/^def \w+\(/m, `def ${name.value}(`));
    });
    name.focus();
  },
};

export const page = {
  async render(main, [name]) {
    const [f, versions] = await Promise.all([api(`/functions/${seg(name)}`),
      api(`/functions/${seg(name)}/versions`).then((v) => v.versions)]);
    const area = h("textarea", { id: "fn-code", "aria-label": "Code" }, f.code);
    const saved = h("div", { "aria-live": "polite" });
    const inSchema = h("textarea", { id: "fn-input-schema", "aria-label": "Input schema" }, json(f.input_schema));
    const outSchema = h("textarea", { id: "fn-output-schema", "aria-label": "Output schema" }, json(f.output_schema));
    const settings = Object.entries(f.settings || {}).map(([k, v]) => h("li", {}, h("code", {}, k), ` ${JSON.stringify(v)}`));
    const head = h("div", { class: "title" }, h("h1", {}, f.name), h("span", { class: "muted" }, `version ${f.version}`));
    const versionsBox = h("div", {}, versionTable(name, versions, f.version));
    const save = async () => {
      try {
        const body = { code: code.get(), input_schema: parseOr(inputs.get()), output_schema: parseOr(outputs.get()) };
        const v = await api(`/functions/${seg(name)}`, { method: "PUT", body });
        f.input_schema = body.input_schema;
        fill(saved, h("p", { class: "ok" }, `Saved as version ${v.version}.`));
        fill(head.lastChild, `version ${v.version}`);
        const fresh = (await api(`/functions/${seg(name)}/versions`)).versions;
        fill(versionsBox, versionTable(name, fresh, v.version));
      } catch (e) { fill(saved, problem(e)); }
    };
    fill(main, head, f.description ? h("p", {}, f.description) : null,
      h("section", { class: "card" }, h("h2", {}, "Code"), area,
        h("div", { class: "actions" }, h("button", { id: "save", onclick: save }, "Save")), saved),
      h("section", { class: "card grid2" },
        h("div", {}, h("h2", {}, "Input schema"), inSchema),
        h("div", {}, h("h2", {}, "Output schema"), outSchema)),
      settings.length ? h("section", { class: "card" }, h("h2", {}, "Settings"), h("ul", {}, settings)) : null,
      runPanel(name, () => f.input_schema),
      h("section", { class: "card" }, h("h2", {}, "Versions"), versionsBox));
    const code = editor(area, "python", save);
    const inputs = editor(inSchema, { name: "javascript", json: true }, save);
    const outputs = editor(outSchema, { name: "javascript", json: true }, save);
  },
};

function json(v) {
  return v === null || v === undefined ? "" : JSON.stringify(v, null, 2);
}

/** A schema editor's text: empty is no schema; bad JSON is refused here. */
function parseOr(text) {
  if (!text.trim()) return null;
  try { return JSON.parse(text); } catch (e) {
    throw { code: "invalid_json", message: `a schema is not JSON: ${e.message}` };
  }
}

function runPanel(name, schema) {
  const input = h("textarea", { id: "run-input", rows: 5, "aria-label": "Input (JSON)", spellcheck: "false" }, "{}");
  const answer = h("div", { id: "run-answer", "aria-live": "polite" });
  const button = h("button", { id: "run", onclick: () => run() }, "Run");
  const run = async () => {
    let value;
    try { value = JSON.parse(input.value || "{}"); } catch (e) {
      return fill(answer, problem({ code: "invalid_json", message: `the input is not JSON: ${e.message}` }));
    }
    let s;
    try { s = schema(); } catch (e) { return fill(answer, problem(e)); }
    const problems = s ? check(s, value) : [];
    if (problems.length) {
      return fill(answer, problem({ code: "validation_failed", message: "the input does not match the input schema (not sent)", details: problems }));
    }
    fill(answer, h("p", { class: "muted" }, "Running…"));
    button.disabled = true;
    try {
      const v = await api(`/functions/${seg(name)}/invoke`, { method: "POST", body: value });
      fill(answer, h("p", {}, badge(v.status), ` in ${ms(v.duration_ms)} · `,
        link(`/ui/executions/${seg(v.execution_id)}`, "open the execution")),
      v.error ? [h("p", { class: "error" }, `${v.error.kind}: ${v.error.message}`),
        v.error.traceback ? pre(v.error.traceback, "traceback") : null]
        : pre(v.output, "output"));
    } catch (e) { fill(answer, problem(e)); } finally { button.disabled = false; }
  };
  return h("section", { class: "card" }, h("h2", {}, "Run"),
    h("label", { for: "run-input" }, "Input (JSON) — checked against the saved input schema before it is sent"), input,
    h("div", { class: "actions" }, button), answer);
}

function versionTable(name, versions, current) {
  const status = h("div", { "aria-live": "polite" });
  const rows = versions.map((v) => h("tr", {},
    h("td", { class: "num" }, v.version),
    h("td", {}, when(v.created_at)),
    h("td", {}, v.created_by || ""),
    h("td", {}, h("code", {}, (v.code_sha256 || "").slice(0, 12))),
    h("td", {}, v.version === current ? h("span", { class: "muted" }, "current")
      : h("button", { class: "small", onclick: async () => {
        try {
          await api(`/functions/${seg(name)}/rollback/${v.version}`, { method: "POST" });
          location.reload();
        } catch (e) { fill(status, problem(e)); }
      } }, `Roll back to ${v.version}`))));
  return [h("div", { class: "scroll" }, h("table", { class: "list" },
    h("thead", {}, h("tr", {}, ["Version", "Created", "By", "Code", ""].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows))), status, compare(versions, current)];
}

/** What changed between any two versions: code, schemas, settings and description. */
function compare(versions, current) {
  if (versions.length < 2) return null;
  const numbers = versions.map((v) => v.version).sort((a, b) => a - b);
  const pick = (id, label, value) => {
    const s = h("select", { id, "aria-label": label }, numbers.map((n) => h("option", { value: n }, `version ${n}`)));
    s.value = String(value);
    return s;
  };
  const to = pick("diff-to", "New version", current);
  const older = numbers.filter((n) => n < current);
  const from = pick("diff-from", "Old version", older.length ? older[older.length - 1] : numbers[0]);
  const out = h("div", { id: "diff", "aria-live": "polite" });
  const text = (v) => ({
    code: v.code,
    "input schema": json(v.input_schema),
    "output schema": json(v.output_schema),
    settings: json(v.settings),
    description: v.description || "",
  });
  const show = () => {
    const a = versions.find((v) => v.version === Number(from.value));
    const b = versions.find((v) => v.version === Number(to.value));
    const [ta, tb] = [text(a), text(b)];
    const parts = Object.keys(ta).filter((k) => k === "code" || ta[k] !== tb[k]);
    fill(out, parts.map((k) => [h("h3", {}, k), showDiff(ta[k], tb[k], k === "code" ? "diff-code" : undefined)]));
  };
  from.addEventListener("change", show);
  to.addEventListener("change", show);
  show();
  return h("div", { class: "compare" }, h("h3", {}, "Compare"),
    h("div", { class: "filters" }, h("label", {}, "From", from), h("label", {}, "To", to)), out);
}
