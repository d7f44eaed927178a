#!/bin/sh
# make demo: the seed's square mesh on loopback (A-B, A-C, B-D, C-D; no A-D
# link), agent123 hosted on D, used from A. Stops everything it started.
set -eu
BIN=${1:-build}/meshzero
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d)
PIDS=""
cleanup() {
    for p in $PIDS; do kill -TERM "$p" 2>/dev/null || true; done
    for p in $PIDS; do wait "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
# On a signal: clean up, then stop here (the EXIT trap then finds nothing left).
trap 'cleanup; trap - EXIT; exit 130' INT TERM

start() {   # start NAME [--peer URL]...
    name=$1; shift
    "$BIN" node --listen ws://127.0.0.1:0 --api ws://127.0.0.1:0 --data "$TMP/$name" "$@" \
        > "$TMP/$name.out" 2> "$TMP/$name.err" &
    PIDS="$PIDS $!"
    i=0
    while [ ! -s "$TMP/$name.out" ]; do
        i=$((i + 1)); [ $i -gt 200 ] && { echo "node $name did not start" >&2; cat "$TMP/$name.err" >&2; exit 1; }
        sleep 0.05
    done
    eval "${name}_ID=\$(awk '{print \$2}' \"\$TMP/$name.out\")"
    eval "${name}_URL=\$(awk '{print \$4}' \"\$TMP/$name.out\")"
    eval "${name}_API=\$(awk '{print \$6}' \"\$TMP/$name.out\")"
}
step() { printf '\n== %s\n' "$*"; }

step "starting the square: A-B, A-C, B-D, C-D (no A-D link)"
start A
start B --peer "$A_URL"
start C --peer "$A_URL"
start D --peer "$B_URL" --peer "$C_URL"
for n in A B C D; do eval "echo \"  $n \$${n}_ID  \$${n}_URL\""; done

step "A subscribes to resource.added"
"$BIN" subscribe resource.added --count 1 --node "$A_API" > "$TMP/events" 2> "$TMP/sub.err" &
SUB=$!
PIDS="$PIDS $SUB"
i=0; while ! grep -q subscribed "$TMP/sub.err" 2>/dev/null; do i=$((i+1)); [ $i -gt 200 ] && exit 1; sleep 0.05; done
echo "  subscribed"

step "D registers agent123 (agent; image_processing, text_analysis; owner user456) with a process_image handler"
"$BIN" serve agent123 --type agent --cap image_processing --cap text_analysis --owner user456 \
    --meta version=1.0 --method process_image --node "$D_API" -- "$ROOT/examples/process_image.sh" \
    > "$TMP/serve.out" 2> "$TMP/serve.err" &
PIDS="$PIDS $!"
i=0; while ! grep -q serving "$TMP/serve.out" 2>/dev/null; do i=$((i+1)); [ $i -gt 200 ] && { cat "$TMP/serve.err"; exit 1; }; sleep 0.05; done
echo "  $(cat "$TMP/serve.out")"

step "A receives the resource.added event"
wait $SUB || true
sed 's/^/  /' "$TMP/events"

step "A queries: type agent, capability image_processing"
i=0
until "$BIN" query --type agent --cap image_processing --node "$A_API" | grep -q agent123; do
    i=$((i+1)); [ $i -gt 100 ] && { echo "agent123 never reached A" >&2; exit 1; }; sleep 0.05
done
"$BIN" query --type agent --cap image_processing --node "$A_API" | sed 's/^/  /'

step "A executes agent123.process_image (2 hops: A -> B or C -> D)"
"$BIN" exec agent123 process_image '{"image_url":"https://example.com/image.jpg"}' \
    --node "$A_API" | sed 's/^/  /'

step "done; stopping every process"
