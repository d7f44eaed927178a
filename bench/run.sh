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

# Bench-only peers (issue 7): NATS server and C client. Installed here, not
# by `make deps`; bench_nats is built once libnats is found. Without them the
# NATS rows are skipped, the rest still runs.
if [ ! -x "$BUILD/bench_nats" ]; then
    if "$ROOT/scripts/deps.sh" nats-server libnats-dev; then
        cmake -S "$ROOT" -B "$BUILD" >/dev/null &&
            cmake --build "$BUILD" --target bench_nats >/dev/null ||
            echo "bench: bench_nats did not build; NATS skipped" >&2
    else
        echo "bench: nats-server/libnats-dev not installed; NATS skipped" >&2
    fi
fi

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
# The peers, same workload and payload, same run: a plain libwebsockets echo
# (the floor for a WebSocket design) and NATS request/reply (SendAsap on).
"$BUILD/bench_echo" server > "$TMP/echo.out" 2> "$TMP/echo.err" &
ECHO=$!
i=0
while [ ! -s "$TMP/echo.out" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
for run in 1 2 3; do
    "$BUILD/bench_echo" client "$(cat "$TMP/echo.out")" --json >> "$TMP/echo.json" ||
        echo "  (lws echo run $run failed: $(tail -1 "$TMP/echo.err"))"
done
kill -TERM $ECHO; wait $ECHO 2>/dev/null || true
touch "$TMP/nats.json"
if [ -x "$BUILD/bench_nats" ] && command -v nats-server >/dev/null 2>&1; then
    NPORT=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    NURL="nats://127.0.0.1:$NPORT"
    nats-server -a 127.0.0.1 -p "$NPORT" > "$TMP/nats-server.log" 2>&1 &
    NSRV=$!
    "$BUILD/bench_nats" respond "$NURL" > "$TMP/nresp.out" 2> "$TMP/nresp.err" &
    NRESP=$!
    i=0
    while [ ! -s "$TMP/nresp.out" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
    for run in 1 2 3; do
        "$BUILD/bench_nats" request "$NURL" --json >> "$TMP/nats.json" ||
            echo "  (NATS run $run failed: $(tail -1 "$TMP/nresp.err"))"
    done
    kill -TERM $NRESP $NSRV; wait $NRESP $NSRV 2>/dev/null || true
else
    echo "  (NATS skipped: bench_nats or nats-server missing)"
fi
/usr/bin/python3 - "$TMP/hop1.json" "$TMP/hop2.json" "$TMP/exec.json" "$TMP/hop1ns.json" \
    "$TMP/echo.json" "$TMP/nats.json" <<'PY'
import json, statistics, sys
out = {}
for name, path in (("1 hop", sys.argv[1]), ("2 hops", sys.argv[2]),
                   ("1 hop, sealing off", sys.argv[4]),
                   ("plain lws echo", sys.argv[5]), ("NATS req/reply", sys.argv[6])):
    runs = [json.loads(l) for l in open(path) if l.strip()]
    if not runs:
        print(f"  {name:18} (no result)")
        continue
    row = {}
    for k in ("p50_us", "p99_us", "calls_per_s"):
        v = [r[k] for r in runs]
        row[k] = {"median": statistics.median(v), "min": min(v), "max": max(v)}
    out[name] = row
    print(f"  {name:18} p50 {row['p50_us']['median']:8.1f} us ({row['p50_us']['min']:.0f}-{row['p50_us']['max']:.0f})"
          f"   p99 {row['p99_us']['median']:8.1f} us"
          f"   64 in flight {row['calls_per_s']['median']:9.0f} calls/s ({row['calls_per_s']['min']:.0f}-{row['calls_per_s']['max']:.0f})")
# Ratios of medians from this run (issue 7 targets: p50 <= 1.3x the floor;
# throughput >= 1.7x NATS and >= 0.7x the floor).
ratios = {}
mz = out.get("1 hop")
print("  ratios, 1 hop (security on), this run:")
for peer, key in (("NATS req/reply", "nats"), ("plain lws echo", "floor")):
    if mz is None or peer not in out:
        print(f"    meshzero/{key:5}  (not measured)")
        continue
    p = out[peer]
    r = {"p50": mz["p50_us"]["median"] / p["p50_us"]["median"],
         "calls_per_s": mz["calls_per_s"]["median"] / p["calls_per_s"]["median"]}
    ratios[f"meshzero/{key}"] = r
    print(f"    meshzero/{key:5}  p50 {r['p50']:5.2f}x   64 in flight {r['calls_per_s']:5.2f}x")
out["ratios"] = ratios
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
