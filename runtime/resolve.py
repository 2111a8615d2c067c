"""Resolve a requirement into pure-Python wheels for the sandbox's interpreter.

Run by the server (embedded in the binary) with the host's python3, which has pip:

    python3 -I -c "$(cat resolve.py)" < request.json

pip does the talking to the package index (with whatever index the host's pip is configured
for); this script does the dependency walk itself, because the packages built into the
runtime (numpy, pandas, ...) and the tenant's installed packages must satisfy dependencies
without being downloaded again, which pip cannot be told. The walk is breadth-first, first
match wins, no backtracking: a conflict is reported, never papered over.

Nothing is ever built: every pip call passes --only-binary=:all:, so no package's own setup
code runs on the server. Wheels are asked for the sandbox's tags (py3, abi none, platform
any, Python 3.15); the server checks each downloaded wheel again before using it.

Prints one JSON object: {"ok": true, "wheels": [...], "already": bool} or
{"ok": false, "code": ..., "message": ..., "package": ...}.
"""

import email.parser
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections import deque

from pip._vendor.packaging.requirements import InvalidRequirement, Requirement
from pip._vendor.packaging.utils import canonicalize_name, parse_wheel_filename


class Refused(Exception):
    def __init__(self, code, message, package=None):
        super().__init__(message)
        self.code, self.message, self.package = code, message, package


def pip(args, timeout):
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Refused("pip_timeout", f"pip took longer than {timeout} s")
    return p.returncode, p.stdout, p.stderr


def last_error(stderr):
    lines = [l.strip() for l in stderr.splitlines() if l.strip().startswith("ERROR:")]
    return lines[-1][len("ERROR:"):].strip() if lines else stderr.strip()[-300:]


class Resolver:
    def __init__(self, req):
        self.py = req["python_version"]
        self.env = req["environment"]
        self.builtin = req["builtin"]
        self.installed = req["installed"]
        self.dest = req["dest"]
        self.max_packages = req.get("max_packages", 50)
        self.timeout = req.get("timeout", 300)
        self.max_bytes = req.get("max_bytes", 20 << 20)
        self.chosen = {}  # canonical name -> {"name", "version", "file", "requires", "extras"}
        self.target = [
            "--only-binary=:all:", "--platform", "any", "--implementation", "py",
            "--python-version", self.py, "--abi", "none",
        ]

    def deps(self, path, extras):
        with zipfile.ZipFile(path) as z:
            meta = next((i for i in z.infolist() if i.filename.count("/") == 1 and i.filename.endswith(".dist-info/METADATA")), None)
            if meta is None:
                raise Refused("invalid_wheel", f"{os.path.basename(path)} has no .dist-info/METADATA")
            if meta.file_size > 1 << 20:
                raise Refused("invalid_wheel", f"{os.path.basename(path)} has a METADATA file over 1 MiB")
            with z.open(meta) as f:
                text = f.read(1 << 20).decode("utf-8", "replace")
        out = []
        for line in email.parser.Parser().parsestr(text).get_all("Requires-Dist") or []:
            try:
                r = Requirement(line)
            except InvalidRequirement:
                continue
            if r.marker is None or any(r.marker.evaluate({**self.env, "extra": e}) for e in ("", *extras)):
                out.append(r)
        return out

    def satisfied(self, r, have, where, parent):
        if r.specifier and not r.specifier.contains(have, prereleases=True):
            who = f"{parent} requires" if parent else "asked for"
            raise Refused(
                "conflict",
                f"{who} {r.name}{r.specifier} but {where} has {r.name} {have}",
                canonicalize_name(r.name),
            )

    def download(self, r):
        work = tempfile.mkdtemp(dir=self.dest)
        spec = f"{r.name}{r.specifier}"
        code, _, err = pip(["download", "--no-deps", "--dest", work, *self.target, spec], self.timeout)
        if code != 0:
            self.diagnose(r, err)
        files = [f for f in os.listdir(work) if f.endswith(".whl")]
        if len(files) != 1:
            raise Refused("pip_failed", f"pip did not produce one wheel for {spec}", canonicalize_name(r.name))
        path = os.path.join(work, files[0])
        size = os.path.getsize(path)
        if size > self.max_bytes:
            raise Refused(
                "package_too_large",
                f"{files[0]} is {size} bytes; the limit is {self.max_bytes} bytes",
                canonicalize_name(r.name),
            )
        return path

    def diagnose(self, r, err):
        """pip found no pure wheel for Python 3.15: say why, without building anything."""
        name, spec = canonicalize_name(r.name), f"{r.name}{r.specifier}"
        if "Could not find a version" not in err and "No matching distribution" not in err:
            raise Refused("pip_failed", f"pip could not download {spec}: {last_error(err)}", name)
        report = os.path.join(tempfile.mkdtemp(dir=self.dest), "report.json")
        code, _, _ = pip(
            ["install", "--dry-run", "--no-deps", "--ignore-installed", "--only-binary=:all:",
             "--quiet", "--report", report, spec],
            self.timeout,
        )
        if code == 0:
            with open(report) as f:
                items = json.load(f).get("install", [])
            url = items[0]["download_info"]["url"] if items else ""
            filename = url.rsplit("/", 1)[-1]
            try:
                tags = parse_wheel_filename(filename)[3]
            except Exception:
                tags = set()
            if tags and all(t.abi == "none" and t.platform == "any" for t in tags):
                raise Refused(
                    "python_incompatible",
                    f"no release of {spec} supports Python {self.py} (its Requires-Python excludes it)",
                    name,
                )
            raise Refused(
                "not_pure",
                f"{spec} has only compiled wheels (such as {filename}): they hold native code built "
                f"for one operating system and CPU, and the sandbox runs CPython {self.py} on "
                f"WebAssembly, which can load pure-Python code only",
                name,
            )
        code, out, _ = pip(["index", "versions", r.name], self.timeout)
        m = re.search(r"Available versions:\s*(.*)", out)
        if code != 0 or not m:
            raise Refused("package_not_found", f"there is no package named {r.name!r} on the package index", name)
        versions = [v.strip() for v in m.group(1).split(",") if v.strip()]
        if r.specifier and not any(r.specifier.contains(v, prereleases=True) for v in versions):
            shown = ", ".join(versions[:10]) + (", ..." if len(versions) > 10 else "")
            raise Refused("version_not_found", f"no version of {r.name} matches {r.specifier}; available: {shown}", name)
        raise Refused(
            "not_pure",
            f"{spec} is published only as source (an sdist) or as wheels for other platforms: "
            f"Maestro does not build packages (a build runs the package's own setup code on the "
            f"server, and compiled parts could not run in the WebAssembly sandbox)",
            name,
        )

    def resolve(self, root):
        queue = deque([(root, None)])
        while queue:
            r, parent = queue.popleft()
            name = canonicalize_name(r.name)
            if name in self.builtin:
                if parent is None:
                    raise Refused("builtin", f"{r.name} is built into the runtime ({self.builtin[name]})", name)
                self.satisfied(r, self.builtin[name], "the runtime (built in)", parent)
                continue
            if name in self.installed:
                self.satisfied(r, self.installed[name], "this tenant (installed)", parent)
                if parent is None:
                    return True
                continue
            if name in self.chosen:
                got = self.chosen[name]
                self.satisfied(r, got["version"], "the resolution", parent)
                new = set(r.extras) - got["extras"]
                if new:
                    got["extras"] |= new
                    queue.extend((d, got["name"]) for d in self.deps(got["path"], new))
                continue
            if len(self.chosen) >= self.max_packages:
                raise Refused("too_many", f"resolving {root} needs more than {self.max_packages} packages", name)
            path = self.download(r)
            wname, version, _, _ = parse_wheel_filename(os.path.basename(path))
            self.chosen[name] = {
                "name": name, "version": str(version), "path": path, "extras": set(r.extras),
                "requested_by": parent, "requires": [],
            }
            for d in self.deps(path, r.extras):
                self.chosen[name]["requires"].append(canonicalize_name(d.name))
                queue.append((d, name))
        return False


def main():
    req = json.load(sys.stdin)
    try:
        try:
            root = Requirement(req["requirement"])
        except InvalidRequirement as e:
            raise Refused("invalid_requirement", str(e))
        res = Resolver(req)
        already = res.resolve(root)
        wheels = [
            {k: v for k, v in c.items() if k != "extras"} for c in res.chosen.values()
        ]
        for w in wheels:
            w["requires"] = sorted(set(w["requires"]))
        print(json.dumps({"ok": True, "already": already, "wheels": wheels}))
    except Refused as e:
        print(json.dumps({"ok": False, "code": e.code, "message": e.message, "package": e.package}))


if __name__ == "__main__":
    main()
