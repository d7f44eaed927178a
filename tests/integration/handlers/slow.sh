#!/bin/sh
# A slow handler. Reads the call, records its pid in $MZ_PIDDIR (so a test
# knows the call is in flight and can clean up), then either sleeps
# SECONDS (first argument) or, with "wait", polls until $MZ_PIDDIR/release
# exists. Answers {"done": true}.
cat >/dev/null
if [ -n "$MZ_PIDDIR" ]; then
    echo $$ > "$MZ_PIDDIR/pid.$$.tmp" && mv "$MZ_PIDDIR/pid.$$.tmp" "$MZ_PIDDIR/pid.$$"
fi
if [ "$1" = wait ]; then
    n=0
    while [ ! -e "$MZ_PIDDIR/release" ] && [ $n -lt 1200 ]; do
        sleep 0.05
        n=$((n + 1))
    done
else
    sleep "${1:-30}"
fi
echo '{"done":true}'
