
# ---- Code run on demand (`POST /api/v1/run`): the code is a notebook cell. ----------------
# Appended to the prelude. The value of the cell's last expression and everything it
# displayed come back as `results`, each a bundle of the representations the object has
# (`text`, `json`, `html`, `markdown`, `svg`, `png` as base64, `latex`), as notebook kernels
# send them. Matplotlib draws with the Agg backend; a figure shown or left open is a result.

_MX_REPRS = (
    ("html", "_repr_html_"),
    ("markdown", "_repr_markdown_"),
    ("svg", "_repr_svg_"),
    ("png", "_repr_png_"),
    ("jpeg", "_repr_jpeg_"),
    ("latex", "_repr_latex_"),
)
# The longest `text` of one result: a repr of a huge object should not fill the answer.
_MX_TEXT_CAP = 64 << 10
# All results of a run together (the host refuses outputs over 16 MiB whole): past it,
# results are dropped with a note, so the ones before still arrive.
_MX_RESULTS_CAP = 8 << 20


def _mx_is_figure(obj):
    return type(obj).__module__.startswith("matplotlib.") and hasattr(obj, "savefig")


def _mx_png(fig):
    import base64
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _mx_bundle(obj):
    """The representations of `obj` a client may show, the richest it has first."""
    b = {}
    if _mx_is_figure(obj):
        b["png"] = _mx_png(obj)
    for key, name in _MX_REPRS:
        if key in b or isinstance(obj, type) or getattr(type(obj), name, None) is None:
            continue
        try:
            r = getattr(obj, name)()
        except Exception:
            continue
        if isinstance(r, tuple) and r:
            r = r[0]  # (data, metadata)
        if isinstance(r, (bytes, bytearray)):
            if key in ("png", "jpeg"):
                import base64

                r = base64.b64encode(bytes(r)).decode("ascii")
            else:
                r = bytes(r).decode("utf-8", "replace")
        if isinstance(r, str):
            b[key] = r
    if obj is None or isinstance(obj, (dict, list, tuple, str, int, float, bool)):
        try:
            b["json"] = _json.loads(_json.dumps(obj, allow_nan=False))
        except (TypeError, ValueError, RecursionError):
            pass
    try:
        text = repr(obj)
    except Exception as e:
        text = f"<{_mx_type_name(type(obj))} (repr failed: {e})>"
    b["text"] = text if len(text) <= _MX_TEXT_CAP else text[:_MX_TEXT_CAP] + "…"
    return b


def _mx_display(*objs):
    """maestro.display(obj, ...): add each object to the run's results, as a notebook would
    show it (outside a run, it prints the text)."""
    results = _mx_state.get("results")
    for obj in objs:
        if results is None:
            print(repr(obj))
            continue
        bundle = _mx_bundle(obj)
        if _mx_is_figure(obj):
            _mx_close(obj)
        size = sum(len(v) if isinstance(v, str) else 64 for v in bundle.values())
        used = _mx_state.get("results_bytes", 0) + size
        _mx_state["results_bytes"] = used
        if used > _MX_RESULTS_CAP:
            if not _mx_state.get("results_cut"):
                _mx_state["results_cut"] = True
                results.append({"text": f"[maestro: results past {_MX_RESULTS_CAP >> 20} MiB dropped]"})
            continue
        results.append(bundle)


def _mx_close(fig):
    plt = _sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.close(fig)


def _mx_flush_figures():
    """Figures left open at the end of a cell are shown, then closed."""
    plt = _sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    for num in plt.get_fignums():
        _mx_display(plt.figure(num))


def _mx_show(*args, **kwargs):
    """plt.show(): in a run, the open figures become results; elsewhere (a stored
    function) it does nothing, as the Agg backend's own show."""
    if "results" in _mx_state:
        _mx_flush_figures()


def _mx_patch_pyplot(plt):
    plt.show = _mx_show


class _MxText:
    """maestro.HTML / maestro.Markdown / maestro.SVG: text shown as that kind of result."""

    def __init__(self, data):
        self.data = str(data)

    def __repr__(self):
        return f"<{type(self).__name__} of {len(self.data)} characters>"


class HTML(_MxText):
    def _repr_html_(self):
        return self.data


class Markdown(_MxText):
    def _repr_markdown_(self):
        return self.data


class SVG(_MxText):
    def _repr_svg_(self):
        return self.data


def _mx_cell(code, g, filename):
    """Run `code` in globals `g` as a notebook cell: statements, then the value of a last
    expression; answers the results (displays, that value, figures left open)."""
    import ast
    import linecache

    _mx_state.update(code=code, filename=filename)
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    results = _mx_state["results"] = []
    _mx_state.pop("results_bytes", None)
    _mx_state.pop("results_cut", None)
    try:
        # compile() rather than ast.parse(): a syntax error's traceback has no ast.py frame.
        tree = compile(code, filename, "exec", ast.PyCF_ONLY_AST)
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        exec(compile(tree, filename, "exec"), g)
        if last is not None:
            value = eval(compile(last, filename, "eval"), g)
            if value is not None:
                _mx_display(value)
        _mx_flush_figures()
    finally:
        _mx_state.pop("results", None)
    return {"results": results}


def _mx_script_fn(code, req):
    """The one-shot run of `code` as the call's function: its input is the global `input`.
    Files sent with it (`files`: path -> base64) are in its working directory first; with
    `return_files`, the files it left under `out/` come back (path -> base64)."""
    files, give_back = req.get("files"), req.get("return_files")
    if files or give_back:
        # Imported only here: a first `import base64` costs a fresh interpreter ~4.6 M fuel
        # (about 2 ms), more than the rest of a small run.
        import base64

        _mx_files_enable(req.get("files_cap") or (8 << 20))
        for path, data in (files or {}).items():
            rel = _mx_rel(path)
            if rel:
                _mx_store(rel, base64.b64decode(data))

    def run(arg):
        g = {"__name__": "__main__", "__builtins__": _MxBuiltins(_builtins.__dict__), "input": arg}
        out = _mx_cell(code, g, "main.py")
        if give_back:
            import base64

            out["files"] = {p: base64.b64encode(v).decode("ascii") for p, v in _mx_files_list("out").items()}
        return out

    return run


def _mx_session_fn(code, session):
    """A session's cell: its globals last as long as the session."""
    g = _mx_state.get("session_globals")
    if g is None:
        _mx_files_enable(session.get("files_cap") or (8 << 20))
        g = _mx_state["session_globals"] = {"__name__": "__main__", "__builtins__": _MxBuiltins(_builtins.__dict__)}
    count = _mx_state["session_count"] = _mx_state.get("session_count", 0) + 1

    def run(arg):
        return _mx_cell(code, g, f"<cell {count}>")

    return run


_MX_PATCHES["matplotlib.pyplot"] = _mx_patch_pyplot
_mx_os_environ = __import__("os").environ
_mx_os_environ.setdefault("MPLBACKEND", "Agg")
del _mx_os_environ
_mx_module = _sys.modules["maestro"]
_mx_module.display = _mx_display
_mx_module.HTML, _mx_module.Markdown, _mx_module.SVG = HTML, Markdown, SVG
del HTML, Markdown, SVG, _mx_module
