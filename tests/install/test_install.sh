#!/bin/sh
# Installs the build in $2 (source tree $1) into a fresh prefix, then builds
# examples/embed.c against it with pkg-config alone, shared and static, and
# runs both. Fails (non-zero) at the first step that does not work.
set -eu
SRC=$1
BUILD=$2
PREFIX=$(mktemp -d)
OUT=$(mktemp -d)
trap 'rm -rf "$PREFIX" "$OUT"' EXIT

cmake --install "$BUILD" --prefix "$PREFIX" >"$OUT/install.log"
LIBDIR=$(ls -d "$PREFIX"/lib*/pkgconfig | head -n1 | xargs dirname)
for f in bin/meshzero include/meshzero.h include/meshzero/node.h include/meshzero/version.h \
         "${LIBDIR#$PREFIX/}/libmeshzero.a" "${LIBDIR#$PREFIX/}/pkgconfig/meshzero.pc"; do
    [ -e "$PREFIX/$f" ] || { echo "not installed: $f"; exit 1; }
done
ls "$LIBDIR"/libmeshzero.so.* >/dev/null || { echo "no shared libmeshzero.so.N"; exit 1; }
"$PREFIX/bin/meshzero" --version | grep -q "protocol meshzero/1" || { echo "bad --version"; exit 1; }

export PKG_CONFIG_PATH="$LIBDIR/pkgconfig"
pkg-config --exists meshzero || { echo "pkg-config does not find meshzero"; exit 1; }
pkg-config --print-requires-private meshzero | grep -q libwebsockets \
    || { echo "meshzero.pc lacks Requires.private"; exit 1; }
# A sanitizer build's library needs the sanitizer runtime in the program too.
EXTRA=""
if grep -q "^MZ_SANITIZE:BOOL=ON" "$BUILD/CMakeCache.txt" 2>/dev/null; then
    EXTRA="-fsanitize=address,undefined"
fi
cd "$OUT"
# shellcheck disable=SC2046,SC2086
cc $EXTRA "$SRC/examples/embed.c" $(pkg-config --cflags --libs meshzero) -o embed
LD_LIBRARY_PATH="$LIBDIR" ./embed >embed.out 2>embed.err || { cat embed.err; exit 1; }
grep -q "registered agent123" embed.out || { cat embed.out embed.err; exit 1; }
grep -q "^meshzero $(pkg-config --modversion meshzero) " embed.out \
    || { echo "mz_version() differs from meshzero.pc"; cat embed.out; exit 1; }
# The static library alone (no LD_LIBRARY_PATH): its private dependencies too.
# shellcheck disable=SC2046,SC2086
cc $EXTRA "$SRC/examples/embed.c" $(pkg-config --cflags meshzero) "$LIBDIR/libmeshzero.a" \
    $(pkg-config --libs --static meshzero | sed 's/-lmeshzero//') -o embed_static
./embed_static >static.out 2>static.err || { cat static.err; exit 1; }
grep -q "registered agent123" static.out || { cat static.out static.err; exit 1; }
echo "install test: ok ($(pkg-config --modversion meshzero), prefix $PREFIX)"
