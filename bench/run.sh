#!/bin/sh
# make bench: prints the benchmark table and writes bench/results/latest.json.
# Usage: bench/run.sh BUILD_DIR
set -eu
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/bench/results"
mkdir -p "$OUT"
TMP=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$TMP"' EXIT INT TERM

echo "meshzero bench ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, processes not pinned)"
echo
echo "== directory: type + 2 capabilities, 100,000 records =="
"$BUILD/bench_directory" 100000 --json > "$TMP/dir.json"
/usr/bin/python3 - "$TMP/dir.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"  register        {d['register_per_s']:>12,.0f} records/s")
print(f"  query p50       {d['query_us_p50']:>12.2f} us")
print(f"  query p99       {d['query_us_p99']:>12.2f} us")
print(f"  memory          {d['bytes_per_record']:>12.0f} bytes/record")
PY

echo
echo "== idle node memory =="
"$BUILD/meshzero" node --listen ws://127.0.0.1:0 --api ws://127.0.0.1:0 --data "$TMP/node" \
    > "$TMP/node.out" 2> "$TMP/node.err" &
NODE=$!
i=0
while [ ! -s "$TMP/node.out" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
[ -s "$TMP/node.out" ] || { echo "node did not start:"; cat "$TMP/node.err"; exit 1; }
# Let it settle (timers, first alive) before reading the resident set.
sleep 2
RSS_KB=$(awk '/^VmRSS:/ {print $2}' "/proc/$NODE/status")
kill -TERM $NODE; wait $NODE || true
echo "  idle RSS        $(awk "BEGIN{printf \"%12.2f\", $RSS_KB/1024}") MiB"

echo
echo "== execute round trip (200-byte params, echo handler in C, processes not pinned) =="
"$BUILD/bench_exec" host > "$TMP/host.out" 2> "$TMP/host.err" &
HOST=$!
i=0
while [ ! -s "$TMP/host.out" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
HOST_URL=$(cat "$TMP/host.out")
"$BUILD/meshzero" node --listen ws://127.0.0.1:0 --api none --data "$TMP/relay" \
    --peer "$HOST_URL" > "$TMP/relay.out" 2> "$TMP/relay.err" &
RELAY=$!
i=0
while [ ! -s "$TMP/relay.out" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
RELAY_URL=$(awk '{print $4}' "$TMP/relay.out")
for run in 1 2 3; do
    "$BUILD/bench_exec" drive "$HOST_URL" --json >> "$TMP/hop1.json"
    "$BUILD/bench_exec" drive "$RELAY_URL" --json >> "$TMP/hop2.json"
done
kill -TERM $HOST $RELAY; wait $HOST $RELAY 2>/dev/null || true
# The same 1-hop workload with sealing off (unicasts signed instead): its cost.
"$BUILD/bench_exec" host --no-seal > "$TMP/host2.out" 2> "$TMP/host2.err" &
HOST=$!
i=0
while [ ! -s "$TMP/host2.out" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
for run in 1 2 3; do
    "$BUILD/bench_exec" drive "$(cat "$TMP/host2.out")" --json --no-seal >> "$TMP/hop1ns.json"
done
kill -TERM $HOST; wait $HOST 2>/dev/null || true
/usr/bin/python3 - "$TMP/hop1.json" "$TMP/hop2.json" "$TMP/exec.json" "$TMP/hop1ns.json" <<'PY'
import json, statistics, sys
out = {}
for name, path in (("1 hop", sys.argv[1]), ("2 hops", sys.argv[2]),
                   ("1 hop, sealing off", sys.argv[4])):
    runs = [json.loads(l) for l in open(path) if l.strip()]
    row = {}
    for k in ("p50_us", "p99_us", "calls_per_s"):
        v = [r[k] for r in runs]
        row[k] = {"median": statistics.median(v), "min": min(v), "max": max(v)}
    out[name] = row
    print(f"  {name:18} p50 {row['p50_us']['median']:8.1f} us ({row['p50_us']['min']:.0f}-{row['p50_us']['max']:.0f})"
          f"   p99 {row['p99_us']['median']:8.1f} us"
          f"   64 in flight {row['calls_per_s']['median']:9.0f} calls/s ({row['calls_per_s']['min']:.0f}-{row['calls_per_s']['max']:.0f})")
json.dump(out, open(sys.argv[3], "w"))
PY

sh "$ROOT/bench/bench_mcp.sh" "$BUILD" || echo "  (MCP round trip failed)"

/usr/bin/python3 - "$TMP/dir.json" "$RSS_KB" "$OUT/latest.json" "$TMP/exec.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
res = {"directory_100k": d, "idle_rss_kib": int(sys.argv[2]),
       "execute": json.load(open(sys.argv[4]))}
json.dump(res, open(sys.argv[3], "w"), indent=2)
print(f"\nwritten {sys.argv[3]}")
PY
