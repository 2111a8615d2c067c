// A workflow's DAG drawn as SVG, laid out automatically: each node on the layer one past its
// deepest parent (so every edge points down), nodes in a layer ordered by their parents'
// mean position (fewer crossings), edges as curves. Names are set as text content only.

const SVG = "http://www.w3.org/2000/svg";
const W = 196; // node width
const H = 40; // node height
const GX = 28; // gap between nodes in a layer
const GY = 56; // gap between layers

function el(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Layers of `names` under `edges` ([parent, child] pairs): longest path from a root. */
export function layers(names, edges) {
  const parents = new Map(names.map((n) => [n, []]));
  for (const [p, c] of edges) if (parents.has(c) && parents.has(p)) parents.get(c).push(p);
  const depth = new Map();
  const visit = (n, seen) => {
    if (depth.has(n)) return depth.get(n);
    if (seen.has(n)) return 0; // a cycle (the server refuses them): draw, never loop
    seen.add(n);
    const d = Math.max(-1, ...parents.get(n).map((p) => visit(p, seen))) + 1;
    depth.set(n, d);
    return d;
  };
  for (const n of names) visit(n, new Set());
  let rows = [];
  for (const n of names) (rows[depth.get(n)] ??= []).push(n);
  rows = rows.filter(Boolean); // a cycle can leave a depth empty
  // Order each layer by its nodes' parents' mean position in the layers above.
  const pos = new Map();
  rows.forEach((row, i) => {
    if (i > 0) {
      const key = (n) => {
        const ps = parents.get(n).filter((p) => pos.has(p));
        return ps.length ? ps.reduce((s, p) => s + pos.get(p), 0) / ps.length : Infinity;
      };
      row.sort((a, b) => key(a) - key(b));
    }
    row.forEach((n, j) => pos.set(n, j - (row.length - 1) / 2));
  });
  return { rows, parents };
}

/**
 * The graph as an `<svg>`: `status(name)` gives a node's state class (`s-…`), `onPick(name)`
 * is called when a node is clicked or chosen with Enter/Space (nodes are focusable).
 */
export function draw(names, edges, { status = () => "", label = () => "", onPick = null } = {}) {
  const { rows } = layers(names, edges);
  const widest = Math.max(1, ...rows.map((r) => r.length));
  const width = widest * W + (widest - 1) * GX + 16;
  const height = rows.length * H + (rows.length - 1) * GY + 16;
  const at = new Map();
  rows.forEach((row, i) => {
    const rowWidth = row.length * W + (row.length - 1) * GX;
    row.forEach((n, j) => at.set(n, { x: (width - rowWidth) / 2 + j * (W + GX), y: 8 + i * (H + GY) }));
  });
  const svg = el("svg", { class: "dag", viewBox: `0 0 ${width} ${height}`, width, height, role: "group",
    "aria-label": "Workflow graph" });
  const defs = el("defs");
  const marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" });
  marker.append(el("path", { d: "M0,0 L10,5 L0,10 z", class: "dag-arrow" }));
  defs.append(marker);
  svg.append(defs);
  for (const [p, c] of edges) {
    const a = at.get(p);
    const b = at.get(c);
    if (!a || !b) continue;
    const x1 = a.x + W / 2, y1 = a.y + H, x2 = b.x + W / 2, y2 = b.y;
    const mid = (y1 + y2) / 2;
    svg.append(el("path", { class: "dag-edge", d: `M${x1},${y1} C${x1},${mid} ${x2},${mid} ${x2},${y2 - 2}`,
      "marker-end": "url(#arrow)", "data-edge": `${p}>${c}` }));
  }
  // Nodes go into the document layer by layer, so Tab moves through them top-down.
  for (const n of rows.flat()) {
    const { x, y } = at.get(n);
    const state = status(n);
    const g = el("g", { class: `dag-node ${state ? "s-" + state : ""}`, transform: `translate(${x},${y})`,
      "data-node": n, "data-status": state || "" });
    g.append(el("rect", { width: W, height: H, rx: 6 }));
    const name = n.length > 23 ? n.slice(0, 22) + "…" : n;
    g.append(el("text", { x: 10, y: 17, class: "dag-name" }, name));
    const line = label(n) || state || "";
    g.append(el("text", { x: 10, y: 32, class: "dag-state" }, line.length > 28 ? line.slice(0, 27) + "…" : line));
    g.append(el("title", {}, `${n}${state ? ": " + state : ""}`));
    if (onPick) {
      g.setAttribute("tabindex", "0");
      g.setAttribute("role", "button");
      g.setAttribute("aria-label", `${n}${state ? ", " + state : ""}`);
      g.addEventListener("click", () => onPick(n));
      g.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); onPick(n); }
      });
    }
    svg.append(g);
  }
  return svg;
}
