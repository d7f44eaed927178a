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

/usr/bin/python3 - "$TMP/dir.json" "$RSS_KB" "$OUT/latest.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
res = {"directory_100k": d, "idle_rss_kib": int(sys.argv[2])}
json.dump(res, open(sys.argv[3], "w"), indent=2)
print(f"\nwritten {sys.argv[3]}")
PY
