#!/bin/sh
# Answers with the trace context serve gave it: {"env": $TRACEPARENT, "tracestate": ...}.
cat >/dev/null
printf '{"env":"%s","tracestate":"%s"}\n' "$TRACEPARENT" "$TRACESTATE"
