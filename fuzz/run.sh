#!/bin/sh
# Builds and runs the libFuzzer harnesses of fuzz/ (see fuzz/README.md).
#
#   run.sh build                 configure and build build-fuzz/ with clang (-DMZ_FUZZ=ON)
#   run.sh fuzz [SECONDS [NAME...]]
#                                each harness (or the NAMEs) for SECONDS (default
#                                $FUZZ_SECONDS, else 60) over its corpus plus new inputs
#   run.sh smoke [TOTAL]         every harness over its seeds, TOTAL seconds (default 20)
#                                in all: `make test`
#   run.sh regress               replays fuzz/regress/<name>/*: each must pass
#   run.sh open NAME FILE        a known open bug: succeeds while FILE still fails under
#                                MZ_FUZZ_STRICT=1, fails (asking to move it) once fixed
#
# New inputs go to build-fuzz/corpus/<name>/ (the seed corpus in fuzz/corpus/
# is read only), crashes to build-fuzz/artifacts/. Exit status 1 on a crash.
# Known open bugs (fuzz/regress/open/, defused by the harnesses unless
# MZ_FUZZ_STRICT=1) do not stop fuzz, smoke or regress; `open` replays them
# strictly.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${MZ_FUZZ_BUILD:-$ROOT/build-fuzz}
F=$ROOT/fuzz
NAMES="envelope canonical time directory agreement peer api cli mcp config mcp_import frame stream"
JOBS=$(nproc 2>/dev/null || echo 2)

# Largest input per harness: enough for a few records or a short script.
max_len() {
    case $1 in
        time) echo 64 ;;
        cli) echo 4096 ;;
        mcp_import) echo 65536 ;;   # a captured session is 20-25 KB
        *) echo 16384 ;;
    esac
}

build() {
    command -v clang >/dev/null 2>&1 || { echo "run.sh: clang not found (scripts/deps.sh installs it)" >&2; exit 1; }
    mkdir -p "$B"
    [ -f "$B/.gitignore" ] || echo '*' >"$B/.gitignore"
    # Configured once with clang; re-run every time (cheap) so that a harness
    # added since is a target.
    if [ -f "$B/CMakeCache.txt" ]; then
        set --
    else
        set -- -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE= -DMZ_FUZZ=ON
    fi
    if ! cmake -S "$ROOT" -B "$B" "$@" >"$B/configure.log" 2>&1; then
        cat "$B/configure.log" >&2
        exit 1
    fi
    targets=""
    for n in $NAMES; do targets="$targets fuzz_$n"; done
    # shellcheck disable=SC2086
    if ! cmake --build "$B" -j "$JOBS" --target $targets >"$B/build.log" 2>&1; then
        grep -E "error|Error" "$B/build.log" >&2 || cat "$B/build.log" >&2
        exit 1
    fi
}

# run NAME SECONDS WORKDIR: one harness over the seeds and WORKDIR, where
# new inputs go.
run() {
    n=$1
    secs=$2
    work=$3
    mkdir -p "$work" "$B/artifacts" "$F/corpus/$n"
    dict=""
    [ -f "$F/dict/$n.dict" ] && dict="-dict=$F/dict/$n.dict"
    # shellcheck disable=SC2086
    "$B/fuzz_$n" -max_total_time="$secs" -max_len="$(max_len "$n")" -timeout=10 \
        -rss_limit_mb=2560 -print_final_stats=1 -artifact_prefix="$B/artifacts/$n-" \
        $dict "$work" "$F/corpus/$n" >"$B/$n.log" 2>&1 || {
        echo "run.sh: fuzz_$n FAILED; log $B/$n.log:" >&2
        grep -E -A40 "INVARIANT|ERROR|==[0-9]+==|runtime error|fuzz_[a-z]+: " "$B/$n.log" | head -80 >&2
        return 1
    }
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$B/$n.log")
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$B/$n.log")
    cov=$(grep -E "^#[0-9]+.*cov:" "$B/$n.log" | tail -1 | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
    echo "fuzz_$n: ${runs:-?} runs in ${secs} s (${speed:-?}/s), coverage ${cov:-?}"
}

# replay NAME FILE...: runs the inputs once each; status of the harness.
replay() {
    n=$1
    shift
    "$B/fuzz_$n" -runs=1 "$@" >"$B/replay-$n.log" 2>&1
}

# Tolerant of the known open bugs (the harnesses defuse them), or strict.
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
tolerant() {
    unset MZ_FUZZ_STRICT
}
strict() {
    export MZ_FUZZ_STRICT=1
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
build)
    build
    ;;
fuzz)
    secs=${1:-${FUZZ_SECONDS:-60}}
    [ $# -gt 0 ] && shift
    names=${*:-$NAMES}
    build
    tolerant
    fail=0
    for n in $names; do run "$n" "$secs" "$B/corpus/$n" || fail=1; done
    exit $fail
    ;;
smoke)
    # The seeds plus what this run finds (not the accumulated build-fuzz/corpus:
    # replaying that first would not fit the time).
    total=${1:-20}
    count=$(echo $NAMES | wc -w)
    # TOTAL split exactly: the first TOTAL % count harnesses get a second more.
    each=$(( total / count ))
    extra=$(( total % count ))
    [ "$each" -ge 1 ] || { each=1; extra=0; }
    tolerant
    fail=0
    i=0
    for n in $NAMES; do
        secs=$each
        [ "$i" -lt "$extra" ] && secs=$(( each + 1 ))
        i=$(( i + 1 ))
        rm -rf "$B/smoke/$n"
        run "$n" "$secs" "$B/smoke/$n" || fail=1
    done
    exit $fail
    ;;
regress)
    tolerant
    fail=0
    for n in $NAMES; do
        [ -d "$F/regress/$n" ] || continue
        files=$(find "$F/regress/$n" -maxdepth 1 -type f ! -name '*.md' | sort)
        [ -n "$files" ] || continue
        # shellcheck disable=SC2086
        if replay "$n" $files; then
            echo "fuzz_$n: $(echo "$files" | wc -l) regression input(s) pass"
        else
            echo "run.sh: fuzz_$n fails on a regression input; log $B/replay-$n.log:" >&2
            tail -40 "$B/replay-$n.log" >&2
            fail=1
        fi
    done
    exit $fail
    ;;
open)
    n=$1
    file=$2
    strict
    if replay "$n" "$file"; then
        echo "run.sh: $file no longer fails: the bug is fixed." >&2
        echo "  git mv $file $F/regress/$n/ (and update fuzz/README.md)" >&2
        exit 1
    fi
    echo "fuzz_$n: $(basename "$file") still fails, as expected (open bug; see fuzz/README.md)"
    grep -E "INVARIANT|ERROR: |runtime error|fuzz_[a-z]+: " "$B/replay-$n.log" | grep -v "Running" | head -3 || true
    ;;
*)
    sed -n '2,/^set -eu/p' "$0" | sed '$d' >&2
    exit 2
    ;;
esac
