#!/bin/sh
# The demo's handler for agent123.process_image: reads the call as JSON on
# stdin and answers with a small, deterministic analysis of the image URL.
set -eu
call=$(cat)
url=$(printf '%s' "$call" | sed -n 's/.*"image_url":"\([^"]*\)".*/\1/p')
if [ -z "$url" ]; then
    echo "params.image_url is required" >&2
    exit 1
fi
digest=$(printf '%s' "$url" | sha256sum | cut -c1-16)
case "$url" in
    *.jpg|*.jpeg) format=jpeg ;;
    *.png) format=png ;;
    *) format=unknown ;;
esac
printf '{"image_url":"%s","format":"%s","fingerprint":"%s","labels":["example","image"],"processed_by":"agent123"}\n' \
    "$url" "$format" "$digest"
