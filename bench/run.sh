#!/bin/sh
# make bench: prints the benchmark table and merges the figures into
# bench/results/latest.json.
# Usage: bench/run.sh BUILD_DIR [SECTIONS]
#   SECTIONS  comma list of section names, or `all` (default; also $ONLY),
#             or `list` to print the sections and what each measures.
#   NODES     node processes of the scale section (default 30); IDLE_S its
#             idle measurement in seconds (default 20).
# Each section writes its figures to a fragment; at the end the fragments are
# merged into the previous latest.json, so running one section updates its
# keys and keeps the others. `execute` is shared by two sections (exec and
# python): its rows are merged one by one, a row a section could not measure
# this time is removed.
set -eu
BUILD=${1:-build}
ONLY=${2:-${ONLY:-all}}
NODES=${NODES:-30}
IDLE_S=${IDLE_S:-20}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/bench/results"
TMP=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$TMP"' EXIT INT TERM

# name|what it measures; the order is the order of `all`.
SECTIONS='directory|directory register and query, 100,000 records
sqlite|directory against indexed in-memory SQLite, 100k and 1M records
idle|resident set of one idle node
converge|time until a registration is visible at every node of a 50-node mesh
memory|RSS with 1,000 API client links and with 100,000 remote records
exec|execute round trip 1 and 2 hops, sealing off, plain lws echo, NATS req/reply
python|the 1-hop execute from the Python client
mcp|MCP tools/call round trip, direct and through the mesh
msg|CPU time of each step of one sealed message
frame|CPU time of relaying and sealing a wire v2 frame against the JSON envelope
scale|NODES node processes: idle CPU and messages per node, convergence, RSS'
NAMES=$(printf '%s\n' "$SECTIONS" | cut -d'|' -f1 | tr '\n' ' ')

if [ "$ONLY" = list ]; then
    printf '%s\n' "$SECTIONS" | awk -F'|' '{printf "  %-10s %s\n", $1, $2}'
    echo "make bench ONLY=name[,name...] [NODES=N] [IDLE_S=S]   (default: all)"
    exit 0
fi
[ "$ONLY" = all ] && ONLY=$(echo $NAMES | tr ' ' ',')
for s in $(echo "$ONLY" | tr ',' ' '); do
    case " $NAMES " in
        *" $s "*) ;;
        *) echo "bench: unknown section '$s' in ONLY; sections: $NAMES" >&2; exit 2 ;;
    esac
done
selected() { case ",$ONLY," in *",$1,"*) return 0 ;; esac; return 1; }

wait_line() {   # FILE: waits up to 10 s for a process's first line
    i=0
    while [ ! -s "$1" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
    [ -s "$1" ] || { echo "bench: no first line in $(basename "$1"):" >&2; cat "${1%.out}.err" >&2; exit 1; }
}

# A 100k-record directory run; the sqlite section compares against it.
directory_100k() {
    [ -s "$TMP/dir.json" ] || "$BUILD/bench_directory" 100000 --json > "$TMP/dir.json"
}

sec_directory() {
    echo "== directory: type + 2 capabilities, 100,000 records =="
    directory_100k
    /usr/bin/python3 - "$TMP/dir.json" "$TMP/frag_directory.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"  register        {d['register_per_s']:>12,.0f} records/s")
print(f"  query p50       {d['query_us_p50']:>12.2f} us")
print(f"  query p99       {d['query_us_p99']:>12.2f} us")
print(f"  memory          {d['bytes_per_record']:>12.0f} bytes/record")
json.dump({"directory_100k": d}, open(sys.argv[2], "w"))
PY
}

sec_sqlite() {
    echo "== directory vs indexed SQLite (in memory): type + 2 capabilities =="
    directory_100k
    "$BUILD/bench_directory" 1000000 --json > "$TMP/dir1m.json"
    "$BUILD/bench_sqlite" 100000 --json > "$TMP/sql100k.json"
    "$BUILD/bench_sqlite" 1000000 --json > "$TMP/sql1m.json"
    /usr/bin/python3 - "$TMP/dir.json" "$TMP/dir1m.json" "$TMP/sql100k.json" "$TMP/sql1m.json" \
        "$TMP/frag_sqlite.json" <<'PY'
import json, sys
d100, d1m, s100, s1m = (json.load(open(p)) for p in sys.argv[1:5])
print(f"  {'':18}{'meshzero':>12}{'SQLite':>12}{'ratio':>8}   (meshzero/SQLite; SQLite bytes: sqlite3_memory_used)")
for label, d, s in (("100k", d100, s100), ("1M", d1m, s1m)):
    for k, name, fmt in (("register_per_s", "register/s", ",.0f"), ("query_us_p50", "query p50 us", ".2f"),
                         ("query_us_p99", "query p99 us", ".2f"), ("bytes_per_record", "bytes/record", ".0f")):
        print(f"  {label + ' ' + name:18}{d[k]:>12{fmt}}{s[k]:>12{fmt}}{d[k] / s[k]:>8.2f}")
json.dump({"directory_1m": d1m, "sqlite_100k": s100, "sqlite_1m": s1m,
           "directory_vs_sqlite_query_p50_ratio": {"100k": round(d100["query_us_p50"] / s100["query_us_p50"], 3),
                                                   "1m": round(d1m["query_us_p50"] / s1m["query_us_p50"], 3)}},
          open(sys.argv[5], "w"))
PY
}

sec_idle() {
    echo "== idle node memory =="
    "$BUILD/meshzero" node --listen ws://127.0.0.1:0 --api ws://127.0.0.1:0 --data "$TMP/node" \
        > "$TMP/node.out" 2> "$TMP/node.err" &
    NODE=$!
    wait_line "$TMP/node.out"
    # Let it settle (timers, first alive) before reading the resident set.
    sleep 2
    RSS_KB=$(awk '/^VmRSS:/ {print $2}' "/proc/$NODE/status")
    kill -TERM $NODE; wait $NODE || true
    echo "  idle RSS        $(awk "BEGIN{printf \"%12.2f\", $RSS_KB/1024}") MiB"
    echo "{\"idle_rss_kib\": $RSS_KB}" > "$TMP/frag_idle.json"
}

sec_converge() {
    echo "== convergence: 50 nodes, random 4-regular mesh, 20 registrations =="
    if ! /usr/bin/python3 "$ROOT/bench/bench_converge.py" "$BUILD/meshzero" --json "$TMP/conv.json" > /dev/null; then
        echo "  (convergence run failed)"
        return 0
    fi
    /usr/bin/python3 - "$TMP/conv.json" "$TMP/frag_converge.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
print(f"  visible everywhere  p50 {c['converge_ms_p50']:.1f} ms  p99 {c['converge_ms_p99']:.1f} ms  ({c['complete']}/{c['registrations']} complete)")
print(f"  target              {c['target_ms']:.1f} ms = 5 x diameter {c['diameter']} x 1-hop one-way {c['one_hop_one_way_ms']:.2f} ms + 10 ms"
      f"  -> {'met' if c['converge_ms_p99'] <= c['target_ms'] else 'NOT met'}")
print(f"  (1-hop one-way = first event at a neighbour of the origin after the API register call, median)")
print(f"  messages/registration {c['messages_per_registration']:.0f}  (raw {c['messages_per_registration_raw']:.0f} minus idle"
      f" {c['idle_messages_same_span_per_registration']:.0f} over the same span; {c['edges']} links)")
json.dump({"convergence": c}, open(sys.argv[2], "w"))
PY
}

sec_memory() {
    echo "== memory: client links and remote records =="
    # 100,000 records registered on B through its API (each persisted before its
    # acknowledgement: ~1,500/s, about 70 s) and learned by A; fewer with
    # MZ_BENCH_RECORDS=N, in which case the RSS at 100,000 is extrapolated (the
    # output says so).
    if ! /usr/bin/python3 "$ROOT/bench/bench_memory.py" "$BUILD/meshzero" --records ${MZ_BENCH_RECORDS:-100000} \
            --json "$TMP/mem.json" > /dev/null 2> "$TMP/mem.err"; then
        echo "  (memory run failed)"; cat "$TMP/mem.err"
        return 0
    fi
    /usr/bin/python3 - "$TMP/mem.json" "$TMP/frag_memory.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
print(f"  idle RSS            {m['idle_rss_kib'] / 1024:8.2f} MiB")
print(f"  {m['clients']} client links {m['rss_with_clients_kib'] / 1024:8.2f} MiB  ->  {m['kib_per_client_link']:.2f} KiB per idle link")
print(f"  {m['remote_at_a']:,} remote records  RSS {m['rss_with_records_kib'] / 1024:.2f} MiB: {m['bytes_per_remote_record']:.0f} bytes/record"
      f" (RSS slope over the second half; {m['bytes_per_remote_record_total']:.0f} incl. fixed costs);"
      f" registered at {m['register_per_s']}/s on the other node")
if "rss_at_100k_records_kib_extrapolated" in m:
    print(f"  100,000 remote records: ~{m['rss_at_100k_records_kib_extrapolated'] / 1024:.1f} MiB EXTRAPOLATED from {m['remote_at_a']:,} (slope)")
json.dump({"memory": m}, open(sys.argv[2], "w"))
PY
}

# Bench-only peers: NATS server and C client. Installed here, not by
# `make deps`; bench_nats is built once libnats is found. Without them the
# NATS row is skipped, the rest still runs.
nats_peer() {
    [ -x "$BUILD/bench_nats" ] && return 0
    if "$ROOT/scripts/deps.sh" nats-server libnats-dev; then
        cmake -S "$ROOT" -B "$BUILD" >/dev/null &&
            cmake --build "$BUILD" --target bench_nats >/dev/null ||
            echo "bench: bench_nats did not build; NATS skipped" >&2
    else
        echo "bench: nats-server/libnats-dev not installed; NATS skipped" >&2
    fi
}

exec_host() {   # NAME [bench_exec host options]: starts a host, sets HOST and HOST_URL
    name=$1; shift
    "$BUILD/bench_exec" host "$@" > "$TMP/$name.out" 2> "$TMP/$name.err" &
    HOST=$!
    wait_line "$TMP/$name.out"
    HOST_URL=$(cat "$TMP/$name.out")
}

exec_nats() {   # three request/reply runs into $TMP/nats.json
    if [ ! -x "$BUILD/bench_nats" ] || ! command -v nats-server >/dev/null 2>&1; then
        echo "  (NATS skipped: bench_nats or nats-server missing)"
        return 0
    fi
    NPORT=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    NURL="nats://127.0.0.1:$NPORT"
    nats-server -a 127.0.0.1 -p "$NPORT" > "$TMP/nats-server.log" 2>&1 &
    NSRV=$!
    "$BUILD/bench_nats" respond "$NURL" > "$TMP/nresp.out" 2> "$TMP/nresp.err" &
    NRESP=$!
    wait_line "$TMP/nresp.out"
    for run in 1 2 3; do
        "$BUILD/bench_nats" request "$NURL" --json >> "$TMP/nats.json" ||
            echo "  (NATS run $run failed: $(tail -1 "$TMP/nresp.err"))"
    done
    kill -TERM $NRESP $NSRV; wait $NRESP $NSRV 2>/dev/null || true
}

sec_exec() {
    echo "== execute round trip (200-byte params, echo handler in C, processes not pinned) =="
    nats_peer
    exec_host host
    "$BUILD/meshzero" node --listen ws://127.0.0.1:0 --api none --data "$TMP/relay" \
        --peer "$HOST_URL" > "$TMP/relay.out" 2> "$TMP/relay.err" &
    RELAY=$!
    wait_line "$TMP/relay.out"
    RELAY_URL=$(awk '{print $4}' "$TMP/relay.out")
    for run in 1 2 3; do
        "$BUILD/bench_exec" drive "$HOST_URL" --json >> "$TMP/hop1.json"
        "$BUILD/bench_exec" drive "$RELAY_URL" --json >> "$TMP/hop2.json"
    done
    kill -TERM $HOST $RELAY; wait $HOST $RELAY 2>/dev/null || true
    # The same 1-hop workload with sealing off (unicasts signed instead): its cost.
    exec_host host2 --no-seal
    for run in 1 2 3; do
        "$BUILD/bench_exec" drive "$HOST_URL" --json --no-seal >> "$TMP/hop1ns.json"
    done
    kill -TERM $HOST; wait $HOST 2>/dev/null || true
    # The peers, same workload and payload, same run: a plain libwebsockets echo
    # (the floor for a WebSocket design) and NATS request/reply (SendAsap on).
    "$BUILD/bench_echo" server > "$TMP/echo.out" 2> "$TMP/echo.err" &
    ECHO=$!
    wait_line "$TMP/echo.out"
    for run in 1 2 3; do
        "$BUILD/bench_echo" client "$(cat "$TMP/echo.out")" --json >> "$TMP/echo.json" ||
            echo "  (lws echo run $run failed: $(tail -1 "$TMP/echo.err"))"
    done
    kill -TERM $ECHO; wait $ECHO 2>/dev/null || true
    touch "$TMP/nats.json"
    exec_nats
    /usr/bin/python3 - "$TMP/hop1.json" "$TMP/hop2.json" "$TMP/hop1ns.json" \
        "$TMP/echo.json" "$TMP/nats.json" "$TMP/frag_exec.json" <<'PY'
import json, statistics, sys
out = {}
for name, path in (("1 hop", sys.argv[1]), ("2 hops", sys.argv[2]),
                   ("1 hop, sealing off", sys.argv[3]),
                   ("plain lws echo", sys.argv[4]), ("NATS req/reply", sys.argv[5])):
    runs = [json.loads(l) for l in open(path) if l.strip()]
    if not runs:
        print(f"  {name:18} (no result)")
        out[name] = None
        continue
    row = {}
    for k in ("p50_us", "p99_us", "calls_per_s"):
        v = [r[k] for r in runs]
        row[k] = {"median": statistics.median(v), "min": min(v), "max": max(v)}
    out[name] = row
    print(f"  {name:18} p50 {row['p50_us']['median']:8.1f} us ({row['p50_us']['min']:.0f}-{row['p50_us']['max']:.0f})"
          f"   p99 {row['p99_us']['median']:8.1f} us"
          f"   64 in flight {row['calls_per_s']['median']:9.0f} calls/s ({row['calls_per_s']['min']:.0f}-{row['calls_per_s']['max']:.0f})")
# Ratios of medians from this run (targets of docs/PERFORMANCE.md: p50 <= 1.3x
# the floor; throughput >= 1.7x NATS and >= 0.7x the floor).
ratios = {}
mz = out.get("1 hop")
print("  ratios, 1 hop (security on), this run:")
for peer, key in (("NATS req/reply", "nats"), ("plain lws echo", "floor")):
    if mz is None or out.get(peer) is None:
        print(f"    meshzero/{key:5}  (not measured)")
        continue
    p = out[peer]
    r = {"p50": mz["p50_us"]["median"] / p["p50_us"]["median"],
         "calls_per_s": mz["calls_per_s"]["median"] / p["calls_per_s"]["median"]}
    ratios[f"meshzero/{key}"] = r
    print(f"    meshzero/{key:5}  p50 {r['p50']:5.2f}x   64 in flight {r['calls_per_s']:5.2f}x")
out["ratios"] = ratios
json.dump({"execute": out}, open(sys.argv[6], "w"))
PY
}

sec_python() {
    echo "== execute round trip from the Python client (Python -> local API -> node -> host) =="
    exec_host pyhost
    for run in 1 2 3; do
        /usr/bin/python3 "$ROOT/bench/bench_python.py" "$BUILD/meshzero" "$HOST_URL" --json \
            >> "$TMP/python.json" 2>> "$TMP/python.err" ||
            echo "  (Python client run $run failed: $(tail -1 "$TMP/python.err"))"
    done
    kill -TERM $HOST; wait $HOST 2>/dev/null || true
    touch "$TMP/python.json" "$TMP/frag_exec.json"
    /usr/bin/python3 - "$TMP/python.json" "$TMP/frag_exec.json" "$TMP/frag_python.json" <<'PY'
import json, statistics, sys
# The same 1-hop call as bench_exec's, made through the local API of a node
# linked to the host; beside the C caller's figures when exec ran too.
py = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
if not py:
    print(f"  {'Python asyncio':18} (no result)")
    json.dump({"execute": {"python": None}}, open(sys.argv[3], "w"))
    sys.exit(0)
def med(k, sub="async"):
    return statistics.median(r[sub][k] for r in py)
row = {"p50_us": med("p50_us"), "p99_us": med("p99_us"), "calls_per_s": med("calls_per_s"),
       "blocking_p50_us": med("p50_us", "blocking"), "runs": len(py)}
print(f"  {'Python asyncio':18} p50 {row['p50_us']:8.1f} us ({min(r['async']['p50_us'] for r in py):.0f}-"
      f"{max(r['async']['p50_us'] for r in py):.0f})   p99 {row['p99_us']:8.1f} us"
      f"   64 in flight {row['calls_per_s']:9.0f} calls/s"
      f" ({min(r['async']['calls_per_s'] for r in py):.0f}-{max(r['async']['calls_per_s'] for r in py):.0f})")
print(f"  {'Python blocking':18} p50 {row['blocking_p50_us']:8.1f} us")
try:
    mz = json.load(open(sys.argv[2]))["execute"]["1 hop"]
except (ValueError, KeyError, TypeError):
    mz = None
if mz is not None:
    print(f"  Python/C, 1 hop, this run: p50 {row['p50_us'] / mz['p50_us']['median']:5.2f}x"
          f"   64 in flight {row['calls_per_s'] / mz['calls_per_s']['median']:5.2f}x"
          "   (Python -> local API -> node -> host; C calls from inside its node)")
json.dump({"execute": {"python": row}}, open(sys.argv[3], "w"))
PY
}

sec_mcp() {
    rm -f "$OUT/mcp.json"
    if sh "$ROOT/bench/bench_mcp.sh" "$BUILD" && [ -s "$OUT/mcp.json" ]; then
        /usr/bin/python3 -c 'import json, sys; json.dump({"mcp": json.load(open(sys.argv[1]))}, open(sys.argv[2], "w"))' \
            "$OUT/mcp.json" "$TMP/frag_mcp.json"
    else
        echo "  (MCP round trip failed)"
    fi
}

sec_msg() {
    echo "message steps, CPU us per sealed execute (bench_msg; docs/PERFORMANCE.md 'What dominates')"
    "$BUILD/bench_msg" --json > "$TMP/msg.json"
    /usr/bin/python3 - "$TMP/msg.json" "$TMP/frag_msg.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
c = m["cpu_us"]
print("  %d-byte envelope, %d-byte payload" % (m["envelope_bytes"], m["payload_bytes"]))
print("  send    %6.1f = build %.1f + seal %.1f + dump %.1f" % (c["send_total"], c["build"],
                                                           c["seal"], c["dump"]))
print("  receive %6.1f = parse %.1f + open %.1f" % (c["receive_total"], c["parse"], c["open"]))
print("  of which jansson alone: parse %.1f, serialise %.1f; AEAD alone %.1f; "
      "Ed25519 sign+verify (not on unicasts) %.1f" % (c["jansson_load"], c["jansson_dump"],
                                                      c["aead_only"], c["sign_verify"]))
json.dump({"message_cpu": m}, open(sys.argv[2], "w"))
PY
}

sec_frame() {
    echo "wire v2 frame, CPU us per sealed execute (bench_frame; docs/PERFORMANCE.md 'Wire v2')"
    "$BUILD/bench_frame" --json > "$TMP/frame.json"
    /usr/bin/python3 - "$TMP/frame.json" "$TMP/frag_frame.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
c = m["cpu_us"]
print("  relay: JSON envelope (%d B) %.2f, v2 frame (%d B) %.3f" % (
    m["envelope_bytes"], c["relay_json"], m["frame_bytes"], c["relay_frame"]))
print("  seal/open: JSON %.1f / %.1f, v2 frame %.2f / %.2f, 16 KiB chunk %.1f / %.1f" % (
    c["seal_json"], c["open_json"], c["seal_frame"], c["open_frame"], c["seal_16k"],
    c["open_16k"]))
json.dump({"frame_cpu": m}, open(sys.argv[2], "w"))
PY
}

sec_scale() {
    echo "== scale: $NODES node processes, each dialing 2 earlier ones, idle then 20 registrations =="
    if ! /usr/bin/python3 "$ROOT/bench/bench_scale.py" "$BUILD/meshzero" --nodes "$NODES" --idle-s "$IDLE_S" \
            --json "$TMP/scale.json"; then
        echo "  (scale run failed)"
        return 0
    fi
    /usr/bin/python3 -c 'import json, sys; json.dump({"scale": json.load(open(sys.argv[1]))}, open(sys.argv[2], "w"))' \
        "$TMP/scale.json" "$TMP/frag_scale.json"
}

mkdir -p "$OUT"
echo "meshzero bench ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, processes not pinned; sections: $ONLY)"
for s in $NAMES; do
    if selected "$s"; then
        echo
        "sec_$s"
    fi
done

/usr/bin/python3 - "$OUT/latest.json" "$TMP" <<'PY'
import glob, json, os, sys
path, tmp = sys.argv[1], sys.argv[2]
try:
    res = json.load(open(path))
except (OSError, ValueError):
    res = {}
for frag in sorted(glob.glob(os.path.join(tmp, "frag_*.json"))):
    if os.path.getsize(frag) == 0:
        continue
    for key, val in json.load(open(frag)).items():
        if key == "execute" and isinstance(res.get(key), dict):
            for row, v in val.items():          # rows of two sections
                if v is None:
                    res[key].pop(row, None)
                else:
                    res[key][row] = v
        else:
            res[key] = {r: v for r, v in val.items() if v is not None} if key == "execute" else val
json.dump(res, open(path + ".tmp", "w"), indent=2)
os.replace(path + ".tmp", path)
print(f"\nmerged into {path}")
PY
