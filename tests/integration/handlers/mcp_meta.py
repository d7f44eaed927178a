#!/usr/bin/python3
"""A minimal MCP server on stdio: one tool, "meta", which answers with the
request's params._meta as text (where a bridge carries the trace context)."""
import json
import sys

TOOLS = [{"name": "meta", "description": "echoes _meta", "inputSchema": {"type": "object"}}]

for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    method, mid = m.get("method"), m.get("id")
    if method == "initialize":
        res = {"protocolVersion": m["params"]["protocolVersion"], "capabilities": {"tools": {}},
               "serverInfo": {"name": "mcp_meta", "version": "1"}}
    elif method == "tools/list":
        res = {"tools": TOOLS}
    elif method == "tools/call":
        res = {"content": [{"type": "text", "text": json.dumps(m["params"].get("_meta"))}]}
    elif mid is not None and method:
        print(json.dumps({"jsonrpc": "2.0", "id": mid,
                          "error": {"code": -32601, "message": "no " + method}}), flush=True)
        continue
    else:
        continue
    print(json.dumps({"jsonrpc": "2.0", "id": mid, "result": res}), flush=True)
