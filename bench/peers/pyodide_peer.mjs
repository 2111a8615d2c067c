// The Pyodide peer of `maestro bench --peers`: CPython compiled to WebAssembly, warm in one
// Node process, behind a plain HTTP server. It isolates nothing from itself and records
// nothing: it is the speed of Python-in-wasm without Maestro's sandbox, store and tenancy.
//
//   POST /functions {name, code}          define (every function shares one namespace, so
//                                          they call each other by bare name)
//   POST /functions/{name}/invoke <json>  -> {"status": "succeeded", "output": ...}
//
// Prints "peer listening on http://127.0.0.1:PORT" once ready.
import http from "node:http";
import { loadPyodide } from "pyodide";

const py = await loadPyodide();
py.runPython(`
import json
def _call(name, text):
    return json.dumps(globals()[name](json.loads(text)))
`);
const call = py.globals.get("_call");

function reply(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString();
    try {
      if (req.method === "POST" && req.url === "/functions") {
        py.runPython(JSON.parse(body).code);
        return reply(res, 201, {});
      }
      const m = req.method === "POST" && req.url.match(/^\/functions\/([A-Za-z_][A-Za-z0-9_]*)\/invoke$/);
      if (m) {
        const out = call(m[1], body || "null");
        res.writeHead(200, { "content-type": "application/json" });
        return res.end(`{"status":"succeeded","output":${out}}`);
      }
      reply(res, 404, { error: "no such route" });
    } catch (e) {
      reply(res, 500, { status: "failed", error: String(e) });
    }
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, "127.0.0.1", () => {
  console.log(`peer listening on http://127.0.0.1:${server.address().port}`);
});
