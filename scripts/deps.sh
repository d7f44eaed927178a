#!/bin/sh
# Installs the Debian packages meshzero needs, only those that are missing.
set -eu
PKGS="build-essential cmake pkg-config libwebsockets-dev libwebsockets-evlib-uv libuv1-dev
libsodium-dev libjansson-dev libsqlite3-dev libcmocka-dev python3 python3-websockets python3-pytest
python3-pytest-asyncio python3-venv python3-pip python3-setuptools python3-wheel
python3-nacl python3-prometheus-client libssl-dev openssl clang libclang-rt-14-dev chromium $*"
missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
# chromium: the dashboard's tests load /ui/ in it, headless (tests/integration/uilib.py).
# The MCP bridge's tests and bench run real npm packages: Node.js and npm
# (any install that provides npm will do, e.g. NodeSource's nodejs).
command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
[ -z "$missing" ] && exit 0
echo "deps: installing$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >&2 || echo "deps: apt-get update failed, trying with the cached lists" >&2
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing >&2
