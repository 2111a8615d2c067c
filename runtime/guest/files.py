
# ---- Files of a session or a run: a private working directory held in memory. ------------
# Appended to the prelude. The sandbox's own file system is read-only; a session (and a run
# sent with files) gets a writable working directory instead, kept in this interpreter's
# memory (so it counts against the memory cap and vanishes with the instance). `open()`,
# `io.open`, `os.stat` (and so `os.path.exists`/`isfile`/`getsize`), `os.listdir`,
# `os.mkdir`/`makedirs`/`rmdir`, `os.remove`/`unlink`, `os.rename`, `os.scandir` (so `glob`
# and `os.walk`), `os.lstat` and `os.getcwd` see it; relative
# paths and paths under WORKDIR name its files. Everything else reaches the real, read-only
# file system as before. The total size is capped (SESSION_FILES_MAX_BYTES): a write past it
# fails with ENOSPC when the file is flushed or closed.

import errno as _errno
import io as _io
import os as _os

_MX_WORKDIR = "/home/user"
# path (relative to the working directory) -> bytes; directories made explicitly.
_mx_files = {}
_mx_dirs = set()
_mx_files_cap = [0]  # 0: no working directory (stored functions): nothing is changed
_mx_real = {}


def _mx_rel(path):
    """The working-directory path `path` names ("" for the directory itself), or None when
    it is not in the working directory."""
    if isinstance(path, int) or not _mx_files_cap[0]:
        return None
    try:
        path = _os.fspath(path)
    except TypeError:
        return None
    if isinstance(path, bytes):
        path = path.decode("utf-8", "surrogateescape")
    if path == _MX_WORKDIR:
        return ""
    if path.startswith(_MX_WORKDIR + "/"):
        path = path[len(_MX_WORKDIR) + 1 :]
    elif path.startswith("/"):
        return None
    parts = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


def _mx_isdir(rel):
    if rel == "" or rel in _mx_dirs:
        return True
    prefix = rel + "/"
    return any(p.startswith(prefix) for p in _mx_files)


def _mx_files_used(skip=None):
    return sum(len(v) for k, v in _mx_files.items() if k != skip)


def _mx_store(rel, data):
    cap = _mx_files_cap[0]
    used = _mx_files_used(skip=rel) + len(data)
    if used > cap:
        msg = f"the working directory would hold {used} bytes; its cap is {cap} (SESSION_FILES_MAX_BYTES)"
        raise OSError(_errno.ENOSPC, msg)
    _mx_files[rel] = bytes(data)
    parent = rel.rpartition("/")[0]
    while parent:
        _mx_dirs.add(parent)
        parent = parent.rpartition("/")[0]


class _MxFile(_io.BytesIO):
    """An open file of the working directory: written back when flushed or closed."""

    def __init__(self, rel, data, writable):
        super().__init__(data)
        self._mx_rel = rel
        self._mx_writable = writable
        self.name = rel
        self.mode = "wb" if writable else "rb"

    def writable(self):
        return self._mx_writable and not self.closed

    def write(self, b):
        if not self._mx_writable:
            raise _io.UnsupportedOperation("not writable")
        return super().write(b)

    def flush(self):
        super().flush()
        if self._mx_writable and not self.closed:
            _mx_store(self._mx_rel, self.getvalue())

    def close(self):
        if not self.closed:
            try:
                self.flush()
            finally:
                super().close()


def _mx_missing(path):
    return FileNotFoundError(_errno.ENOENT, "No such file or directory", str(path))


def _mx_open(file, mode="r", buffering=-1, encoding=None, errors=None, newline=None, closefd=True, opener=None):
    rel = _mx_rel(file)
    if rel is None:
        return _mx_real["open"](file, mode, buffering, encoding, errors, newline, closefd, opener)
    if _mx_isdir(rel):
        raise IsADirectoryError(_errno.EISDIR, "Is a directory", str(file))
    m = set(mode)
    if "x" in m and rel in _mx_files:
        raise FileExistsError(_errno.EEXIST, "File exists", str(file))
    if "r" in m:
        if rel not in _mx_files:
            raise _mx_missing(file)
        f = _MxFile(rel, _mx_files[rel], "+" in m)
    elif "a" in m:
        f = _MxFile(rel, _mx_files.get(rel, b""), True)
        f.seek(0, 2)
        _mx_store(rel, _mx_files.get(rel, b""))
    else:  # w, x
        f = _MxFile(rel, b"", True)
        _mx_store(rel, b"")
    if "b" in m:
        return f
    text = _io.TextIOWrapper(f, encoding=encoding or "utf-8", errors=errors, newline=newline, write_through=True)
    text.mode = mode
    return text


def _mx_stat(path, *args, **kwargs):
    rel = _mx_rel(path)
    if rel is None:
        return _mx_real["stat"](path, *args, **kwargs)
    import stat as _stat

    if rel in _mx_files:
        mode, size = _stat.S_IFREG | 0o644, len(_mx_files[rel])
    elif _mx_isdir(rel):
        mode, size = _stat.S_IFDIR | 0o755, 0
    else:
        raise _mx_missing(path)
    return _os.stat_result((mode, 0, 0, 1, 0, 0, size, 0, 0, 0))


def _mx_lstat(path, *args, **kwargs):
    if _mx_rel(path) is None:
        return _mx_real["lstat"](path, *args, **kwargs)
    return _mx_stat(path)


def _mx_listdir(path="."):
    rel = _mx_rel(path)
    if rel is None:
        return _mx_real["listdir"](path)
    if not _mx_isdir(rel):
        raise (NotADirectoryError(_errno.ENOTDIR, "Not a directory", str(path)) if rel in _mx_files else _mx_missing(path))
    prefix = rel + "/" if rel else ""
    names = set()
    for p in list(_mx_files) + list(_mx_dirs):
        if p.startswith(prefix) and p != rel:
            names.add(p[len(prefix) :].split("/")[0])
    return sorted(names)


def _mx_mkdir(path, mode=0o777, *args, **kwargs):
    rel = _mx_rel(path)
    if rel is None:
        return _mx_real["mkdir"](path, mode, *args, **kwargs)
    if rel in _mx_files or _mx_isdir(rel):
        raise FileExistsError(_errno.EEXIST, "File exists", str(path))
    parent = rel.rpartition("/")[0]
    if parent and not _mx_isdir(parent):
        raise _mx_missing(path)
    _mx_dirs.add(rel)


def _mx_remove(path, *args, **kwargs):
    rel = _mx_rel(path)
    if rel is None:
        return _mx_real["remove"](path, *args, **kwargs)
    if rel not in _mx_files:
        raise IsADirectoryError(_errno.EISDIR, "Is a directory", str(path)) if _mx_isdir(rel) else _mx_missing(path)
    del _mx_files[rel]


def _mx_rename(src, dst, *args, **kwargs):
    a, b = _mx_rel(src), _mx_rel(dst)
    if a is None and b is None:
        return _mx_real["rename"](src, dst, *args, **kwargs)
    if a is None or b is None:
        raise OSError(_errno.EXDEV, "Invalid cross-device link", str(src))
    if a not in _mx_files:
        raise _mx_missing(src)
    data = _mx_files.pop(a)
    _mx_store(b, data)


class _MxEntry:
    """What `os.scandir` yields for a working-directory entry (so glob and os.walk see it)."""

    def __init__(self, base, name, rel):
        self.name = name
        self.path = _os.path.join(base, name) if base else name
        self._mx_rel = rel

    def is_dir(self, *, follow_symlinks=True):
        return self._mx_rel not in _mx_files and _mx_isdir(self._mx_rel)

    def is_file(self, *, follow_symlinks=True):
        return self._mx_rel in _mx_files

    def is_symlink(self):
        return False

    def inode(self):
        return 0

    def stat(self, *, follow_symlinks=True):
        return _mx_stat(_MX_WORKDIR + "/" + self._mx_rel)

    def __fspath__(self):
        return self.path


class _MxScandir:
    def __init__(self, entries):
        self._it = iter(entries)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._it)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._it = iter(())


def _mx_scandir(path="."):
    rel = _mx_rel(path)
    if rel is None:
        return _mx_real["scandir"](path)
    base = "" if path in (".", "") else _os.fspath(path)
    prefix = rel + "/" if rel else ""
    return _MxScandir([_MxEntry(base, n, prefix + n) for n in _mx_listdir(path)])


def _mx_rmdir(path, *args, **kwargs):
    rel = _mx_rel(path)
    if rel is None:
        return _mx_real["rmdir"](path, *args, **kwargs)
    if rel in _mx_files:
        raise NotADirectoryError(_errno.ENOTDIR, "Not a directory", str(path))
    if not rel or not _mx_isdir(rel):
        raise _mx_missing(path)
    if _mx_listdir(path):
        raise OSError(_errno.ENOTEMPTY, "Directory not empty", str(path))
    _mx_dirs.discard(rel)


def _mx_getcwd():
    return _MX_WORKDIR if _mx_files_cap[0] else _mx_real["getcwd"]()


def _mx_files_enable(cap):
    """Give this interpreter a working directory of at most `cap` bytes (once)."""
    if _mx_files_cap[0]:
        _mx_files_cap[0] = cap
        return
    _mx_files_cap[0] = cap
    _mx_real.update(
        open=_builtins.open,
        stat=_os.stat,
        lstat=_os.lstat,
        scandir=_os.scandir,
        rmdir=_os.rmdir,
        listdir=_os.listdir,
        mkdir=_os.mkdir,
        remove=_os.remove,
        rename=_os.rename,
        getcwd=_os.getcwd,
    )
    _builtins.open = _io.open = _mx_open
    _os.stat, _os.listdir, _os.mkdir = _mx_stat, _mx_listdir, _mx_mkdir
    _os.lstat, _os.scandir, _os.rmdir = _mx_lstat, _mx_scandir, _mx_rmdir
    _os.remove = _os.unlink = _mx_remove
    _os.rename = _os.replace = _mx_rename
    _os.getcwd = _mx_getcwd


def _mx_files_list(under=""):
    prefix = under.rstrip("/") + "/" if under else ""
    return {p: v for p, v in sorted(_mx_files.items()) if p.startswith(prefix)}


def _mx_files_op():
    """The host moves files in and out of a session's working directory (not user code)."""
    import base64

    req = _mx_frame({"op": "begin"})
    op, path = req.get("files"), req.get("path", "")
    try:
        rel = _mx_rel(path) if path else ""
        if rel is None:
            raise PermissionError(_errno.EACCES, "outside the working directory", path)
        if op == "list":
            out = [{"path": p, "size": len(v)} for p, v in _mx_files_list().items()]
        elif op == "get":
            if rel not in _mx_files:
                raise _mx_missing(path)
            out = {"data": base64.b64encode(_mx_files[rel]).decode("ascii")}
        elif op == "put":
            if _mx_isdir(rel):
                raise IsADirectoryError(_errno.EISDIR, "Is a directory", path)
            _mx_store(rel, base64.b64decode(req.get("data", "")))
            out = {"size": len(_mx_files[rel])}
        elif op == "delete":
            _mx_remove(rel)
            out = None
        else:
            raise ValueError(f"unknown files op {op!r}")
        reply = {"op": "end", "ok": True, "output": out}
    except (OSError, MemoryError, ValueError) as e:  # ValueError: bad base64 or an unknown op
        if isinstance(e, MemoryError):
            message = "the interpreter's memory cap leaves no room for this file"
        else:
            message = str(e)
        reply = {
            "op": "end",
            "ok": False,
            "error": {
                "kind": "python_exception",
                "type": type(e).__name__,
                "message": message,
                "errno": getattr(e, "errno", None),
            },
        }
    _mx_end(reply)
