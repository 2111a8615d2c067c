// Building the page without ever parsing text as HTML: `h` makes elements, and every string
// child becomes a text node. Names, outputs and logs come from users' code; they are shown
// as text, never markup (the page's CSP forbids inline script besides).

/** `h("a", {href: "/x", class: "y", onclick: f}, "text", child, [more])`. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else if (k === "value") el.value = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replace `el`'s children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A link inside the console (the router takes the click). */
export function link(href, ...children) {
  return h("a", { href, "data-nav": "" }, ...children);
}

/** `0.4 ms`, `12 ms`, `1.5 s`. */
export function ms(v) {
  if (v === null || v === undefined) return "–";
  if (v < 10) return `${v.toFixed(1)} ms`;
  if (v < 1000) return `${Math.round(v)} ms`;
  return `${(v / 1000).toFixed(1)} s`;
}

/** A timestamp as local time, to the second. */
export function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString();
}

/** A status as a coloured badge (its text stays the status). */
export function badge(status) {
  return h("span", { class: `badge s-${String(status).replace(/[^a-z_]/g, "")}` }, status ?? "–");
}

/** Any JSON value, pretty-printed, as text. */
export function pre(value, cls = "") {
  const text = typeof value === "string" ? value : JSON.stringify(value, null, 2);
  return h("pre", { class: `code ${cls}` }, text ?? "null");
}

/** An error shown in place: `{error: {code, message, details}}` or an exception. */
export function problem(e) {
  const list = Array.isArray(e.details) ? e.details : [];
  const details = list.map((d) => h("li", {}, `${d.path || d.field || "(root)"}: ${d.message}`));
  return h("div", { class: "problem", role: "alert" },
    h("strong", {}, e.code || "error"), " ", e.message || String(e),
    details.length ? h("ul", {}, details) : null);
}
