#!/bin/sh
# Echoes the call it was given: the result is {"input": <stdin JSON>}.
input=$(cat)
printf '{"input":%s}\n' "$input"
