# Maestro guest prelude: run once in every sandbox instance, before the first call.
#
# It gives user code two things and nothing else:
#   * bare-name calls between functions: each user function runs with its own `__builtins__`,
#     a dict whose `__missing__` asks the host whether an unknown name is a function of the
#     same tenant and, if so, binds a stub that sends the call through `_host.call`;
#   * the `maestro` module (`maestro.call`, `maestro.CallError`).
# The host checks every frame it receives: nothing here is trusted, user code can reach
# `_host` too. Frames are small JSON objects; see src/sandbox/frames.rs for the host side.
import builtins as _builtins
import json as _json
import sys as _sys
import types as _types

import _host


def _mx_frame(obj):
    return _json.loads(_host.call(_json.dumps(obj, separators=(",", ":")).encode()))


class CallError(Exception):
    """A called function failed. `.function` names it; `.error` is its error record
    (`kind`, `type`, `message`, ...), the same as the callee's step shows."""

    def __init__(self, function, error):
        self.function = function
        self.error = error
        kind = error.get("kind", "error")
        detail = error.get("type") or kind
        super().__init__(f"{function} failed ({detail}): {error.get('message', '')}")


def _mx_call(name, input=None):
    reply = _mx_frame({"op": "call", "function": name, "input": input})
    if reply.get("ok"):
        return reply.get("output")
    raise CallError(name, reply.get("error") or {})


def _mx_gather(calls, return_exceptions=False):
    """Run several functions at once: `maestro.gather([("a", {...}), ("b", {...})])` returns
    their outputs in that order. Each call is its own step, sharing this call's deadline and
    an equal part of its remaining fuel. A failure raises its CallError (the first, in
    order) unless return_exceptions=True, which puts CallErrors in the list instead."""
    calls = [(str(name), inp) for name, inp in calls]
    reply = _mx_frame({"op": "gather", "input": calls})
    if not reply.get("ok"):
        raise CallError("gather", reply.get("error") or {})
    out = []
    for (name, _), r in zip(calls, reply.get("results", [])):
        if r.get("ok"):
            out.append(r.get("output"))
        elif return_exceptions:
            out.append(CallError(name, r.get("error") or {}))
        else:
            raise CallError(name, r.get("error") or {})
    return out


class _MxRemote:
    """Stands for another function of the same tenant; calling it runs that function."""

    __slots__ = ("__name__",)

    def __init__(self, name):
        self.__name__ = name

    def __call__(self, input=None):
        return _mx_call(self.__name__, input)

    def __repr__(self):
        return f"<maestro function {self.__name__}>"


class _MxBuiltins(dict):
    def __missing__(self, name):
        if name.startswith("__") or not _mx_frame({"op": "resolve", "function": name}).get("found"):
            raise KeyError(name)
        stub = self[name] = _MxRemote(name)
        return stub


class _MxSink:
    """A text stream that keeps at most `cap` bytes (UTF-8) and counts the rest. A `live`
    sink also hands what it keeps to the host, a line at a time (as a terminal shows it:
    `print` writes a value and its newline separately), at most 4 KiB waiting, and whatever
    waits when flushed or when the call ends; with `frames` set, only that many times."""

    live = None
    # Frames a live sink may still send (None: no limit).
    frames = None

    def __init__(self, cap):
        self.cap, self.parts, self.size, self.dropped = cap, [], 0, 0
        self.waiting, self.waiting_size = [], 0

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        size = len(s) if s.isascii() else len(s.encode("utf-8", "surrogatepass"))
        room = self.cap - self.size
        part = None
        if size <= room:
            part = s
            self.size += size
        elif room > 0:
            part = s.encode("utf-8", "surrogatepass")[:room].decode("utf-8", "ignore")
            # Full from here on, even if a cut character left a byte or two of room: a later
            # short write must not appear after the gap.
            self.size = self.cap
            self.dropped += size - len(part.encode("utf-8", "surrogatepass"))
        else:
            self.dropped += size
        if part:
            self.parts.append(part)
            if self.live:
                self.waiting.append(part)
                self.waiting_size += len(part)
                if "\n" in part or self.waiting_size >= 4096:
                    self.flush()
        return len(s)

    def flush(self):
        if self.waiting:
            text = "".join(self.waiting)
            self.waiting, self.waiting_size = [], 0
            # 16384 characters are at most 64 KiB of UTF-8, the most one frame may carry.
            for i in range(0, len(text), 16384):
                frame = {"op": "out", "stream": self.live, "text": text[i : i + 16384]}
                _host.call(_json.dumps(frame, ensure_ascii=False).encode("utf-8", "replace"))
            if self.frames is not None:
                self.frames -= 1
                if self.frames <= 0:
                    self.live = None

    def isatty(self):
        return False

    def text(self):
        out = "".join(self.parts)
        if self.dropped:
            out += f"\n[maestro: {self.dropped} more bytes dropped]\n"
        return out


class Headers(dict):
    """HTTP request headers: names are stored lower-cased and looked up in any case, so
    `input["headers"]["X-User-ID"]` and `.get("x-user-id")` find the same header."""

    __slots__ = ()

    def __init__(self, items=(), **kw):
        super().__init__()
        self.update(items, **kw)

    @staticmethod
    def _key(k):
        return k.lower() if isinstance(k, str) else k

    def __getitem__(self, k):
        return super().__getitem__(self._key(k))

    def __setitem__(self, k, v):
        super().__setitem__(self._key(k), v)

    def __delitem__(self, k):
        super().__delitem__(self._key(k))

    def __contains__(self, k):
        return super().__contains__(self._key(k))

    def get(self, k, default=None):
        return super().get(self._key(k), default)

    def pop(self, k, *default):
        return super().pop(self._key(k), *default)

    def setdefault(self, k, default=None):
        return super().setdefault(self._key(k), default)

    def update(self, items=(), **kw):
        for k, v in dict(items, **kw).items():
            self[k] = v

    def copy(self):
        return Headers(self)


HTTP_RESPONSE = "__http_response__"


def http_response(body=None, status_code=200, headers=None):
    """Shape a webhook's HTTP answer: `return maestro.http_response({"ok": True}, 201)`.
    It is the plain dict `{"__http_response__": {"status_code", "headers", "body"}}`."""
    return {HTTP_RESPONSE: {"status_code": status_code, "headers": dict(headers or {}), "body": body}}


class HTTPRequestError(OSError):
    """An outbound request was refused or failed; `.kind` says how (`egress_denied`,
    `timeout`, `response_too_large`, `request_limit`, `request_failed`, `invalid_request`)."""

    def __init__(self, message, kind="request_failed"):
        super().__init__(message)
        self.kind = kind


class EgressDenied(HTTPRequestError, PermissionError):
    """The tenant's egress policy does not allow this URL or address."""


class HTTPStatusError(HTTPRequestError):
    """raise_for_status() on a 4xx/5xx answer; `.response` is the answer."""

    def __init__(self, message, response):
        super().__init__(message, "http_status")
        self.response = response


class Response:
    """An answer to maestro.http.request(): status_code, headers (any-case lookup), content
    (bytes), text, json(), url (after redirects), ok, raise_for_status()."""

    def __init__(self, reply):
        import binascii

        self.status_code = reply["status"]
        self.url = reply.get("url", "")
        self.headers = Headers()
        for k, v in reply.get("headers", []):
            self.headers[k] = f"{self.headers[k]}, {v}" if k in self.headers else v
        self.content = binascii.a2b_base64(reply.get("body_b64", ""))

    status = property(lambda self: self.status_code)
    ok = property(lambda self: self.status_code < 400)

    @property
    def text(self):
        ctype = self.headers.get("content-type", "")
        charset = ctype.split("charset=", 1)[1].split(";")[0].strip() if "charset=" in ctype else "utf-8"
        try:
            return self.content.decode(charset, "replace")
        except LookupError:
            return self.content.decode("utf-8", "replace")

    def json(self):
        return _json.loads(self.content)

    def raise_for_status(self):
        if not self.ok:
            raise HTTPStatusError(f"HTTP {self.status_code} from {self.url}", self)
        return self

    def __repr__(self):
        return f"<Response [{self.status_code}]>"


def _mx_request(method, url, headers=None, body=None, json=None, timeout=None):
    import binascii

    headers = {str(k): str(v) for k, v in (headers or {}).items()}
    if json is not None:
        body = _json.dumps(json).encode()
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
    if isinstance(body, str):
        body = body.encode()
    frame = {"op": "http", "method": str(method), "url": str(url), "headers": headers}
    if timeout is not None:
        frame["timeout"] = float(timeout)
    if body is not None:
        frame["body_b64"] = binascii.b2a_base64(bytes(body), newline=False).decode()
    reply = _mx_frame(frame)
    if not reply.get("ok"):
        err = reply.get("error") or {}
        kind = err.get("kind", "request_failed")
        cls = EgressDenied if kind == "egress_denied" else HTTPRequestError
        raise cls(err.get("message", "the request failed"), kind)
    return Response(reply)


_mx_http = _types.ModuleType("maestro.http", "Outbound HTTP, made by the host under the tenant's egress policy.")
_mx_http.request = _mx_request
_mx_http.get = lambda url, **kw: _mx_request("GET", url, **kw)
_mx_http.post = lambda url, **kw: _mx_request("POST", url, **kw)
_mx_http.put = lambda url, **kw: _mx_request("PUT", url, **kw)
_mx_http.delete = lambda url, **kw: _mx_request("DELETE", url, **kw)
_mx_http.Response = Response
_mx_http.HTTPRequestError = HTTPRequestError
_mx_http.EgressDenied = EgressDenied
_mx_http.HTTPStatusError = HTTPStatusError
_MX_MISSING = object()


class _MxSecrets:
    """maestro.secrets.get("NAME"): the tenant's secret (KeyError if it has none)."""

    def get(self, name, default=_MX_MISSING):
        reply = _mx_frame({"op": "secret", "name": str(name)})
        if reply.get("ok"):
            return reply["value"]
        err = reply.get("error") or {}
        if err.get("kind") == "secret_not_found" and default is not _MX_MISSING:
            return default
        if err.get("kind") == "secret_not_found":
            raise KeyError(name)
        raise ValueError(err.get("message", "secret unavailable"))

    __getitem__ = get


def _mx_log(message, level="info", **fields):
    """A structured log line in the execution's event stream and on the step."""
    fields = _json.loads(_json.dumps(fields, default=str))
    _mx_frame({"op": "log", "level": level, "message": str(message), "fields": fields})


class _MxContext:
    """maestro.context: execution_id, step_id, function, version, trigger, tenant, attempt,
    depth (attributes or keys), for the call running now."""

    def _get(self):
        ctx = _mx_state.get("context")
        if ctx is None:
            ctx = _mx_state["context"] = _mx_frame({"op": "context"}).get("context", {})
        return ctx

    def __getattr__(self, name):
        try:
            return self._get()[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name):
        return self._get()[name]

    def get(self, name, default=None):
        return self._get().get(name, default)

    def __repr__(self):
        return f"<maestro.context {self._get()}>"


def _mx_patch_urllib(ur):
    """Route urllib.request.urlopen() through maestro.http (the sandbox has no sockets)."""
    import io
    import email.message
    import urllib.error
    import urllib.response

    class MaestroHandler(ur.BaseHandler):
        handler_order = 100

        def _open(self, req):
            timeout = req.timeout if isinstance(req.timeout, (int, float)) else None
            data = req.data
            if data is not None and not isinstance(data, (bytes, bytearray)):
                data = b"".join(data)
            try:
                r = _mx_request(req.get_method(), req.full_url, dict(req.header_items()), data, timeout=timeout)
            except HTTPRequestError as e:
                raise urllib.error.URLError(e) from None
            msg = email.message.Message()
            for k, v in r.headers.items():
                msg[k] = v
            resp = urllib.response.addinfourl(io.BytesIO(r.content), msg, r.url, r.status_code)
            resp.msg = ""
            return resp

        http_open = https_open = _open

    ur.install_opener(ur.build_opener(MaestroHandler))


def _mx_patch_seed(mod):
    """Note a seed the code sets itself (`random.seed(42)`, not `seed()`): that generator is
    meant to give the same numbers in every instance, so instances started from the module's
    snapshot do not reseed it (the other generator still is)."""
    seed = mod.seed

    def seeded(*args, **kwargs):
        value = args[0] if args else kwargs.get("a", kwargs.get("seed"))
        if value is not None:
            _mx_state.setdefault("seeded", set()).add(mod.__name__)
        return seed(*args, **kwargs)

    seeded._mx_seed = seed
    mod.seed = seeded


_mx_state = {}
# Modules patched the moment they are imported (they are not imported at boot), by name.
_MX_PATCHES = {"urllib.request": _mx_patch_urllib}


class _MxImportHook:
    """Applies a module's patch from `_MX_PATCHES` once it has been imported."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        patch = _MX_PATCHES.pop(name, None)  # popped first: the lookup below comes back here
        if patch is None:
            return None
        import importlib.util

        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _MxPatchingLoader(spec.loader, patch)
        return spec


class _MxPatchingLoader:
    def __init__(self, loader, patch):
        self.loader, self.patch = loader, patch

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        self.patch(module)

    def __getattr__(self, name):  # get_source, is_package, ...: the real loader's
        return getattr(self.loader, name)


if "urllib.request" in _sys.modules:
    _MX_PATCHES.pop("urllib.request")(_sys.modules["urllib.request"])
for _mx_name in ("random", "numpy.random"):
    if _mx_name in _sys.modules:
        _mx_patch_seed(_sys.modules[_mx_name])
    else:
        _MX_PATCHES[_mx_name] = _mx_patch_seed
del _mx_name
_sys.meta_path.insert(0, _MxImportHook)

maestro = _types.ModuleType("maestro", "Maestro's guest API.")
maestro.call = _mx_call
maestro.gather = _mx_gather
maestro.CallError = CallError
maestro.Headers = Headers
maestro.HTTP_RESPONSE = HTTP_RESPONSE
maestro.http_response = http_response
maestro.http = _mx_http
maestro.secrets = _MxSecrets()
maestro.log = _mx_log
maestro.context = _MxContext()
_sys.modules["maestro.http"] = _mx_http
_sys.modules["maestro"] = maestro
del maestro



def _mx_load(name, code):
    filename = f"{name}.py"
    g = {"__name__": name, "__file__": filename, "__builtins__": _MxBuiltins(_builtins.__dict__)}
    exec(compile(code, filename, "exec"), g)
    fn = g.get(name)
    if not callable(fn):
        raise TypeError(f"the code does not define a function named {name!r}")
    _mx_state.update(name=name, code=code, filename=filename, fn=fn)


def _mx_type_name(t):
    return t.__qualname__ if t.__module__ in ("builtins", "__main__", "maestro") else f"{t.__module__}.{t.__qualname__}"


def _mx_format(e):
    """A traceback like Python's, user frames only (no prelude frames), cheap to produce:
    importing `traceback` costs ~90 M fuel, which every failing fresh call would pay."""
    import linecache

    mine = _mx_run.__code__.co_filename
    parts = []
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        lines = ["Traceback (most recent call last):\n"]
        tb, last, repeats = e.__traceback__, None, 0
        while tb is not None:
            co = tb.tb_frame.f_code
            if co.co_filename != mine:
                key = (co.co_filename, tb.tb_lineno, co.co_name)
                if key == last:
                    repeats += 1
                else:
                    if repeats > 3:
                        lines.append(f"  [Previous line repeated {repeats - 3} more times]\n")
                    repeats, last = 1, key
                if repeats <= 3:
                    lines.append(f'  File "{co.co_filename}", line {tb.tb_lineno}, in {co.co_name}\n')
                    src = linecache.getline(co.co_filename, tb.tb_lineno, tb.tb_frame.f_globals).strip()
                    if src:
                        lines.append(f"    {src}\n")
            tb = tb.tb_next
        if repeats > 3:
            lines.append(f"  [Previous line repeated {repeats - 3} more times]\n")
        msg = str(e)
        lines.append(f"{_mx_type_name(type(e))}: {msg}\n" if msg else f"{_mx_type_name(type(e))}\n")
        parts.append("".join(lines))
        if e.__cause__ is not None:
            parts.append("\nThe above exception was the direct cause of the following exception:\n\n")
            e = e.__cause__
        elif e.__context__ is not None and not e.__suppress_context__:
            parts.append("\nDuring handling of the above exception, another exception occurred:\n\n")
            e = e.__context__
        else:
            e = None
    return "".join(reversed(parts))


def _mx_error(e):
    """An exception as the host's error record."""
    import linecache

    st = _mx_state
    if "filename" in st:  # so tracebacks show the user's source lines
        code = st["code"]
        linecache.cache[st["filename"]] = (len(code), None, code.splitlines(True), st["filename"])
    # The host keeps at most 16 KiB of a message and 64 KiB of a traceback: cut them here,
    # so an exception with a huge message still reports within what the host reads.
    record = {
        "kind": "python_exception",
        "type": _mx_type_name(type(e)),
        "message": str(e)[: 16 << 10],
        "traceback": _mx_format(e)[-(64 << 10) :],
    }
    if isinstance(e, CallError):
        record["cause"] = e.error
    return record


def _mx_end(reply):
    """Send an `end` frame the prelude built (an error, a check's answer). Text in it (output,
    tracebacks) may hold lone surrogates, which JSON cannot carry to the host: they become '?'."""
    _host.call(_json.dumps(reply, ensure_ascii=False).encode("utf-8", "replace"))


def _mx_paths(req):
    for p in req.get("paths", ()):
        if p not in _sys.path:
            _sys.path.append(p)  # after the runtime's own: a package cannot shadow the stdlib


def _mx_prepare():
    """Run a function's module code and nothing else: the host snapshots the memory after
    this, and starts later calls of the function from it."""
    req = _mx_frame({"op": "begin"})
    _mx_paths(req)
    fds = _mx_open_fds()
    try:
        _mx_load(req["function"], req["code"])
    except BaseException as e:
        _mx_state.pop("fn", None)
        _mx_end({"op": "end", "ok": False, "error": _mx_error(e)})
        return
    # A file the module code left open would be a stale descriptor in an instance started
    # from the snapshot (the host's descriptor table is new there): no snapshot then.
    _mx_end({"op": "end", "ok": True, "output": {"snapshot": _mx_open_fds() == fds}})


def _mx_open_fds():
    import os

    n = 0
    for fd in range(64):
        try:
            os.fstat(fd)
            n += 1
        except OSError:
            pass
    return n



def _mx_reseed():
    """Every instance started from one snapshot holds the same random state: give the
    generators the module code may have seeded a state of this instance's own."""
    seeded = _mx_state.get("seeded", ())
    for name in ("random", "numpy.random"):
        mod = _sys.modules.get(name)
        if mod is not None and name not in seeded:
            try:
                getattr(mod.seed, "_mx_seed", mod.seed)()
            except Exception:
                pass


def _mx_run():
    req = _mx_frame({"op": "begin"})
    _mx_state.pop("context", None)
    _mx_paths(req)
    if req.get("reseed"):
        _mx_reseed()
    if req.get("session"):
        _mx_state["fn"] = _mx_session_fn(req["code"], req["session"])
    elif req.get("script"):
        _mx_state["fn"] = _mx_script_fn(req["code"], req)
    elif "code" in req:
        try:
            _mx_load(req["function"], req["code"])
        except BaseException as e:  # module-level code failed: report it like a call error
            _mx_state.pop("fn", None)
            _mx_end({"op": "end", "ok": False, "error": _mx_error(e)})
            return
    cap = req.get("capture", 1 << 20)
    out, err = _MxSink(cap), _MxSink(cap)
    # Printed lines go to the host as they are printed, for live logs (`logs -f`); past the
    # first frames (the host publishes at most 1000 lines a stream) only a streamed run
    # (`?stream=true`) goes on sending, and the rest waits for the end as before.
    out.live, err.live = "stdout", "stderr"
    if not req.get("stream"):
        out.frames = err.frames = 1000
    _sys.stdout, _sys.stderr = out, err
    try:
        try:
            arg = req.get("input")
            if req.get("webhook") and isinstance(arg, dict) and isinstance(arg.get("headers"), dict):
                arg["headers"] = Headers(arg["headers"])
            result = _mx_state["fn"](arg)
        finally:
            _sys.stdout, _sys.stderr = _sys.__stdout__, _sys.__stderr__
            out.flush()
            err.flush()
        try:
            stdout, stderr = (t.encode("utf-8", "replace").decode("utf-8") for t in (out.text(), err.text()))
            # Strict for the value itself: a lone surrogate in it is an invalid output (a
            # UnicodeEncodeError, which is a ValueError), not something to alter silently.
            data = _json.dumps(
                {"op": "end", "ok": True, "output": result, "stdout": stdout, "stderr": stderr},
                allow_nan=False,
                ensure_ascii=False,
                separators=(",", ":"),
            ).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as e:
            reply = {
                "op": "end",
                "ok": False,
                "error": {
                    "kind": "invalid_output",
                    "message": f"the return value is not JSON-serialisable: {e}",
                    "type": type(e).__name__,
                },
            }
            data = None
    except MemoryError as e:
        reply = {"op": "end", "ok": False, "error": {"kind": "memory_limit", "message": f"MemoryError: {e}"}}
        data = None
    except BaseException as e:
        reply = {"op": "end", "ok": False, "error": _mx_error(e)}
        data = None
    if data is None:
        reply["stdout"], reply["stderr"] = out.text(), err.text()
        _mx_end(reply)
    else:
        _host.call(data)


def _mx_check():
    """Validate code for a function at create/update time: it compiles and defines
    `def <name>(input)` at the top level, callable with exactly one positional argument."""
    import ast

    req = _mx_frame({"op": "begin"})
    name, code = req["function"], req["code"]
    reply = {"op": "end", "ok": True, "output": None}
    try:
        compile(code, f"{name}.py", "exec", dont_inherit=True)
        tree = ast.parse(code)
    except SyntaxError as e:
        reply = {
            "op": "end",
            "ok": False,
            "error": {
                "kind": "syntax_error",
                "message": f"{e.msg} (line {e.lineno})",
                "line": e.lineno,
                "offset": e.offset,
                "text": (e.text or "").rstrip("\n"),
            },
        }
    else:
        problem = None
        defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name]
        if not defs:
            problem = f"the code does not define `def {name}(input)` at the top level"
        elif isinstance(defs[-1], ast.AsyncFunctionDef):
            problem = f"`{name}` must be a plain `def`, not `async def`"
        else:
            a = defs[-1].args
            pos = a.posonlyargs + a.args
            required = len(pos) - len(a.defaults)
            kw_required = [k.arg for k, d in zip(a.kwonlyargs, a.kw_defaults) if d is None]
            if not (pos or a.vararg) or required > 1 or kw_required:
                problem = f"`{name}` must take exactly one argument: def {name}(input)"
        if problem:
            line = defs[-1].lineno if defs else None
            reply = {"op": "end", "ok": False, "error": {"kind": "invalid_code", "message": problem, "line": line}}
    _mx_end(reply)
