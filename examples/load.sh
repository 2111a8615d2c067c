#!/usr/bin/env bash
# Load the example functions into a running server.
#   MAESTRO_URL=http://127.0.0.1:8000 MAESTRO_TOKEN=<token> examples/load.sh
set -euo pipefail
url="${MAESTRO_URL:-http://127.0.0.1:8000}"
: "${MAESTRO_TOKEN:?set MAESTRO_TOKEN (maestro serve prints one; or: maestro token --tenant T --email E)}"
python3 - "$url" "$MAESTRO_TOKEN" "$(dirname "$0")/functions.json" <<'PY'
import json, sys, urllib.request
url, token, path = sys.argv[1:]
for f in json.load(open(path)):
    req = urllib.request.Request(f"{url}/api/v1/functions", data=json.dumps(f).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            print("created", f["name"], "version", json.load(r)["version"])
    except urllib.error.HTTPError as e:
        print("skipped", f["name"], e.code, json.load(e)["error"]["message"])
PY
