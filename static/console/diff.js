// A line diff of two texts (a longest common subsequence after trimming the common head and
// tail, which is where versions of a function mostly agree), shown as a review shows one:
// removed and added lines with three lines of context, long unchanged runs folded.

import { h } from "./dom.js";

/** Cells the table may use; past it the changed middle is shown as replaced whole. */
const MAX_CELLS = 4_000_000;

/** `[{op: " " | "-" | "+", line}]` turning `a` into `b`. */
export function diffLines(a, b) {
  const x = a.split("\n");
  const y = b.split("\n");
  let head = 0;
  while (head < x.length && head < y.length && x[head] === y[head]) head++;
  let tail = 0;
  while (tail < x.length - head && tail < y.length - head && x[x.length - 1 - tail] === y[y.length - 1 - tail]) tail++;
  const xs = x.slice(head, x.length - tail);
  const ys = y.slice(head, y.length - tail);
  const out = x.slice(0, head).map((line) => ({ op: " ", line }));
  if ((xs.length + 1) * (ys.length + 1) > MAX_CELLS) {
    out.push(...xs.map((line) => ({ op: "-", line })), ...ys.map((line) => ({ op: "+", line })));
  } else {
    // lcs[i][j]: the common subsequence's length of xs[i..] and ys[j..].
    const w = ys.length + 1;
    const lcs = new Uint32Array((xs.length + 1) * w);
    for (let i = xs.length - 1; i >= 0; i--) {
      for (let j = ys.length - 1; j >= 0; j--) {
        lcs[i * w + j] = xs[i] === ys[j] ? lcs[(i + 1) * w + j + 1] + 1 : Math.max(lcs[(i + 1) * w + j], lcs[i * w + j + 1]);
      }
    }
    let i = 0;
    let j = 0;
    while (i < xs.length || j < ys.length) {
      if (i < xs.length && j < ys.length && xs[i] === ys[j]) { out.push({ op: " ", line: xs[i] }); i++; j++; }
      // Removals before additions, as reviews show a changed line.
      else if (i < xs.length && (j === ys.length || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1])) { out.push({ op: "-", line: xs[i] }); i++; }
      else { out.push({ op: "+", line: ys[j] }); j++; }
    }
  }
  out.push(...x.slice(x.length - tail).map((line) => ({ op: " ", line })));
  return out;
}

/** The diff as a `<pre>`: changes with 3 lines of context; the rest folded into a count. */
export function showDiff(a, b, id) {
  const ops = diffLines(a, b);
  const near = ops.map(() => false);
  ops.forEach((o, i) => {
    if (o.op === " ") return;
    for (let k = Math.max(0, i - 3); k <= Math.min(ops.length - 1, i + 3); k++) near[k] = true;
  });
  const lines = [];
  let folded = 0;
  const fold = () => {
    if (folded) lines.push(h("span", { class: "same" }, `  ⋯ ${folded} unchanged line${folded === 1 ? "" : "s"}`));
    folded = 0;
  };
  ops.forEach((o, i) => {
    if (!near[i]) { folded++; return; }
    fold();
    const cls = o.op === "+" ? "add" : o.op === "-" ? "del" : "same";
    lines.push(h("span", { class: cls }, `${o.op} ${o.line}`));
  });
  fold();
  const changed = ops.some((o) => o.op !== " ");
  return h("pre", { class: "code diff", id }, changed ? lines : h("span", { class: "same" }, "No change."));
}
