// An MCP client built on the official TypeScript SDK, driven by the tests.
// Usage: node client.mjs SPEC_JSON
//   SPEC: {"transport": "stdio", "command": "...", "args": [...]}
//      or {"transport": "http", "url": "http://127.0.0.1:PORT/mcp"}
//   plus "ops": a list run in order, each printing one JSON line on stdout:
//     {"op": "list"}                              -> {"op","tools":[...]}
//     {"op": "call", "name": N, "arguments": {}}  -> {"op","result"} or {"op","error":{code,message,data}}
//     {"op": "wait_list_changed", "timeout_ms": T} -> prints {"op":"waiting"} first, then
//                                                     {"op","seen":true|false}
//     {"op": "repeat_call", "name", "arguments", "count"} -> {"op","us":[per-call µs]}
//     {"op": "count_list_changed", "present": N?, "absent": N?, "timeout_ms", "quiet_ms"}
//        -> prints {"op":"waiting"} first; once tools/list has tool N (present) or lacks
//           it (absent), listens quiet_ms more, then {"op","count","done":true|false}: the
//           list_changed notifications that arrived since the op started
//   "protocolVersion" in SPEC: the version the client asks for in initialize (the
//   SDK itself always asks for its latest).
// The first line is {"op":"connected","protocolVersion","serverInfo"}.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ToolListChangedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";

const spec = JSON.parse(process.argv[2]);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");

let changed = 0;
let waiter = null;
const client = new Client({ name: "meshzero-test", version: "1.0.0" });
client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
  changed++;
  if (waiter) waiter();
});

// HTTP: notifications arrive on the GET event stream the transport opens
// after initialization; count_list_changed says "waiting" only once it is open.
let sseOpened;
const sseOpen = new Promise((resolve) => { sseOpened = resolve; });
const realFetch = globalThis.fetch;
globalThis.fetch = async (url, init) => {
  const r = await realFetch(url, init);
  if ((init?.method ?? "GET") === "GET" && r.ok &&
      (r.headers.get("content-type") || "").startsWith("text/event-stream")) sseOpened();
  return r;
};

const transport0 = spec.transport === "http"
  ? new StreamableHTTPClientTransport(new URL(spec.url))
  : new StdioClientTransport({ command: spec.command, args: spec.args || [], stderr: "inherit" });
const transport = transport0;
if (spec.protocolVersion) {
  const send = transport.send.bind(transport);
  transport.send = (msg, opts) => {
    if (msg.method === "initialize") msg = { ...msg, params: { ...msg.params, protocolVersion: spec.protocolVersion } };
    return send(msg, opts);
  };
}

// The SDK tells the transport the negotiated version; keep a copy.
let negotiated = null;
const setVersion = transport.setProtocolVersion?.bind(transport);
transport.setProtocolVersion = (v) => { negotiated = v; setVersion?.(v); };

try {
  await client.connect(transport);
  out({ op: "connected", protocolVersion: negotiated,
        serverInfo: client.getServerVersion() });
  for (const op of spec.ops || []) {
    if (op.op === "list") {
      const r = await client.listTools();
      out({ op: "list", tools: r.tools });
    } else if (op.op === "call") {
      try {
        const r = await client.callTool({ name: op.name, arguments: op.arguments || {} }, undefined,
                                        { timeout: op.timeout_ms || 60000 });
        out({ op: "call", result: r });
      } catch (e) {
        out({ op: "call", error: { code: e.code ?? null, message: String(e.message), data: e.data ?? null } });
      }
    } else if (op.op === "wait_list_changed") {
      const before = changed;
      out({ op: "waiting" });
      const seen = await new Promise((resolve) => {
        if (changed > before) return resolve(true);
        const t = setTimeout(() => { waiter = null; resolve(false); }, op.timeout_ms || 10000);
        waiter = () => { clearTimeout(t); waiter = null; resolve(true); };
      });
      out({ op: "wait_list_changed", seen });
    } else if (op.op === "count_list_changed") {
      if (spec.transport === "http") await sseOpen;
      const before = changed;
      out({ op: "waiting" });
      const deadline = Date.now() + (op.timeout_ms || 20000);
      const wanted = async () => {
        const names = (await client.listTools()).tools.map((t) => t.name);
        return op.present ? names.includes(op.present) : !names.includes(op.absent);
      };
      let done = false;
      while (!done && Date.now() < deadline) {
        if (changed > before) done = await wanted();
        if (!done) {
          const seen = changed;
          await new Promise((resolve) => {
            const t = setTimeout(() => { waiter = null; resolve(); }, Math.max(deadline - Date.now(), 0));
            waiter = () => { clearTimeout(t); waiter = null; resolve(); };
            if (changed > seen) waiter();
          });
        }
      }
      // A burst over the mesh could still be on its way: listen a while longer.
      await new Promise((resolve) => setTimeout(resolve, op.quiet_ms || 1500));
      out({ op: "count_list_changed", count: changed - before, done });
    } else if (op.op === "repeat_call") {
      const us = [];
      for (let i = 0; i < op.count; i++) {
        const t0 = process.hrtime.bigint();
        await client.callTool({ name: op.name, arguments: op.arguments || {} });
        us.push(Number(process.hrtime.bigint() - t0) / 1000);
      }
      out({ op: "repeat_call", us });
    }
  }
  await client.close();
  process.exit(0);
} catch (e) {
  out({ op: "fatal", message: String(e && e.stack || e) });
  process.exit(1);
}
