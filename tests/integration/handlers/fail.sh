#!/bin/sh
# Fails: writes its first argument (default "boom") on stderr, exits 1.
cat >/dev/null
echo "${1:-boom}" >&2
exit 1
