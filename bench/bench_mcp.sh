#!/bin/sh
# The MCP round trip: tools/call of server-everything's get-sum from the
# official SDK client (tests/mcp/client.mjs), directly on the server, and
# through the mesh: client -> `meshzero mcp` -> node A -> node D -> the
# server imported on D with --mcp, and back (and the same over A's /mcp
# Streamable HTTP endpoint). Sequential calls, one in flight.
# Usage: bench/bench_mcp.sh BUILD_DIR [CALLS]   (called by bench/run.sh)
set -eu
BUILD=${1:-build}
CALLS=${2:-300}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
M="$ROOT/$BUILD/meshzero"
[ -x "$M" ] || M="$BUILD/meshzero"
MCP="$ROOT/tests/mcp"
EV="$MCP/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
TMP=$(mktemp -d)
A="" D=""
cleanup() {
    [ -n "$A" ] && kill -TERM "$A" 2>/dev/null || true
    [ -n "$D" ] && kill -TERM "$D" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

echo
echo "== MCP tools/call round trip (get-sum of server-everything, SDK client, $CALLS calls, 1 in flight) =="
if ! command -v node >/dev/null 2>&1; then
    echo "  node is not installed: skipped (scripts/deps.sh installs nodejs npm)"
    exit 0
fi
if [ ! -f "$EV" ]; then
    (cd "$MCP" && npm ci --no-audit --no-fund >"$TMP/npm.log" 2>&1) || {
        echo "  npm ci failed:"; cat "$TMP/npm.log"; exit 1; }
fi

wait_line() {   # FILE: waits for its first line
    i=0
    while [ ! -s "$1" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
    [ -s "$1" ] || { echo "  a node did not start"; exit 1; }
}
"$M" node --listen ws://127.0.0.1:0 --api ws://127.0.0.1:0 --data "$TMP/a" \
    >"$TMP/a.out" 2>"$TMP/a.err" &
A=$!
wait_line "$TMP/a.out"
A_LISTEN=$(awk '{print $4}' "$TMP/a.out")
A_API=$(awk '{print $6}' "$TMP/a.out")
"$M" node --listen ws://127.0.0.1:0 --api ws://127.0.0.1:0 --data "$TMP/d" --peer "$A_LISTEN" \
    --mcp "everything=node $EV stdio" >"$TMP/d.out" 2>"$TMP/d.err" &
D=$!
wait_line "$TMP/d.out"
i=0
until "$M" query --type tool --cap get-sum --node "$A_API" 2>/dev/null | grep -q everything/get-sum; do
    i=$((i + 1)); [ $i -lt 200 ] || { echo "  get-sum never reached node A"; exit 1; }
    sleep 0.1
done

run_client() {  # NAME SPEC_JSON
    node "$MCP/client.mjs" "$2" >"$TMP/$1.jsonl" 2>"$TMP/$1.err" || {
        echo "  $1: client failed:"; cat "$TMP/$1.err" "$TMP/$1.jsonl"; exit 1; }
}
OPS="[{\"op\":\"repeat_call\",\"name\":\"TOOL\",\"arguments\":{\"a\":2,\"b\":3},\"count\":$CALLS}]"
run_client direct "{\"transport\":\"stdio\",\"command\":\"node\",\"args\":[\"$EV\",\"stdio\"],\"ops\":$(echo "$OPS" | sed s/TOOL/get-sum/)}"
run_client mesh "{\"transport\":\"stdio\",\"command\":\"$M\",\"args\":[\"mcp\",\"--node\",\"$A_API\"],\"ops\":$(echo "$OPS" | sed s/TOOL/everything_get-sum/)}"
run_client http "{\"transport\":\"http\",\"url\":\"http://${A_API#ws://}/mcp\",\"ops\":$(echo "$OPS" | sed s/TOOL/everything_get-sum/)}"

/usr/bin/python3 - "$TMP" "$ROOT/bench/results/mcp.json" <<'PY'
import json, statistics, sys
tmp, out = sys.argv[1], sys.argv[2]
res = {}
rows = (("direct", "client -> server (stdio)"),
        ("mesh", "client -> meshzero mcp -> A -> D -> server"),
        ("http", "client -> A /mcp (HTTP) -> D -> server"))
for key, label in rows:
    us = None
    for line in open("%s/%s.jsonl" % (tmp, key)):
        m = json.loads(line)
        if m.get("op") == "repeat_call":
            us = m["us"]
    us = sorted(us[len(us) // 10:])          # the first tenth warms up
    p50 = statistics.median(us)
    p99 = us[min(len(us) - 1, int(len(us) * 0.99))]
    res[key] = {"p50_us": p50, "p99_us": p99, "calls_per_s": 1e6 / statistics.mean(us)}
    print("  %-44s p50 %8.0f us   p99 %8.0f us   %6.0f calls/s" % (label, p50, p99,
                                                                 res[key]["calls_per_s"]))
print("  added by the mesh (p50): stdio %+.0f us, HTTP %+.0f us"
      % (res["mesh"]["p50_us"] - res["direct"]["p50_us"],
         res["http"]["p50_us"] - res["direct"]["p50_us"]))
json.dump(res, open(out, "w"), indent=2)
PY
