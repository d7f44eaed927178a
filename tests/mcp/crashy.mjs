// A misbehaving MCP server over stdio, written by hand (no SDK) so it can
// break the protocol on purpose. Tools:
//   ok        answers {"content":[{"type":"text","text":"ok <n>"}]}
//   fail      a tool failure: a result with isError true
//   rpcerror  a JSON-RPC error instead of a result (arguments.code and .data, when
//             given, are its code and data)
//   crash     exits (status 3) in the middle of the call, no answer
//   slow      answers after arguments.ms milliseconds
//   garbage   writes non-JSON lines and a stray response before its answer
//   grow      adds the tool "grown" and sends notifications/tools/list_changed
//   huge      is never importable: its inputSchema is over 16 KiB
// It also prints garbage on stdout before anything else. Environment:
// CRASHY_STATE (a file counting the starts), CRASHY_NO_HUGE (leave out huge).
import { appendFileSync } from "node:fs";
import { createInterface } from "node:readline";

if (process.env.CRASHY_STATE) appendFileSync(process.env.CRASHY_STATE, "start\n");
const send = (m) => process.stdout.write(JSON.stringify(m) + "\n");
process.stdout.write("this is not JSON-RPC\n{\"also\": \"not a message\"}\n");

const schema = { type: "object", properties: { ms: { type: "number" } } };
const tools = [
  { name: "ok", description: "answers ok", inputSchema: schema,
    _meta: { "org.example/owner": "crashy", "meshzero/node": "forged by the server" } },
  { name: "fail", description: "fails as a tool", inputSchema: schema },
  { name: "rpcerror", description: "fails as a protocol", inputSchema: schema },
  { name: "crash", description: "exits mid-call", inputSchema: schema },
  { name: "slow", description: "answers after ms", inputSchema: schema },
  { name: "garbage", description: "writes garbage first", inputSchema: schema },
  { name: "grow", description: "adds a tool", inputSchema: schema },
];
if (!process.env.CRASHY_NO_HUGE) {
  const props = {};
  for (let i = 0; i < 400; i++) props["field_" + i] = { type: "string", description: "x".repeat(40) };
  tools.push({ name: "huge", description: "too big", inputSchema: { type: "object", properties: props } });
}
let calls = 0;

createInterface({ input: process.stdin }).on("line", (line) => {
  let m;
  try { m = JSON.parse(line); } catch { return; }
  if (m.method === "initialize") {
    send({ jsonrpc: "2.0", id: m.id, result: { protocolVersion: m.params.protocolVersion,
      capabilities: { tools: { listChanged: true } }, serverInfo: { name: "crashy", version: "9.9" } } });
  } else if (m.method === "tools/list") {
    send({ jsonrpc: "2.0", id: m.id, result: { tools } });
  } else if (m.method === "tools/call") {
    const name = m.params.name, args = m.params.arguments || {};
    calls++;
    if (name === "ok") send({ jsonrpc: "2.0", id: m.id, result: { content: [{ type: "text", text: "ok " + calls }] } });
    else if (name === "fail") send({ jsonrpc: "2.0", id: m.id, result: { content: [{ type: "text", text: "it broke" }], isError: true } });
    else if (name === "rpcerror") send({ jsonrpc: "2.0", id: m.id, error: { code: args.code ?? -32602, message: "bad arguments, says crashy", ...(args.data !== undefined ? { data: args.data } : {}) } });
    else if (name === "crash") process.exit(3);
    else if (name === "slow") setTimeout(() => send({ jsonrpc: "2.0", id: m.id, result: { content: [{ type: "text", text: "slow" }] } }), args.ms || 1000);
    else if (name === "garbage") {
      process.stdout.write("garbage line\n[1,2,3]\n");
      send({ jsonrpc: "2.0", id: 999999, result: {} });
      send({ jsonrpc: "2.0", id: m.id, result: { content: [{ type: "text", text: "after garbage" }] } });
    } else if (name === "grow") {
      if (!tools.find((t) => t.name === "grown")) tools.push({ name: "grown", description: "new", inputSchema: schema });
      send({ jsonrpc: "2.0", id: m.id, result: { content: [{ type: "text", text: "grew" }] } });
      send({ jsonrpc: "2.0", method: "notifications/tools/list_changed" });
    } else send({ jsonrpc: "2.0", id: m.id, error: { code: -32602, message: "unknown tool " + name } });
  } else if (m.method === "ping") {
    send({ jsonrpc: "2.0", id: m.id, result: {} });
  } else if (m.id !== undefined && m.method) {
    send({ jsonrpc: "2.0", id: m.id, error: { code: -32601, message: "no " + m.method } });
  }
});
