// A small MCP server on the official SDK (stdio) whose tool "weather" has
// the description given as its first argument: started again with another
// one, it is the same tool with a changed definition (a "rug-pull"), which
// is what tool pinning must catch. "clock" never changes.
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { CallToolRequestSchema, ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const description = process.argv[2] || "reports the weather";
const schema = { type: "object", properties: { city: { type: "string" } } };
const server = new Server({ name: "rugpull", version: "1.0.0" }, { capabilities: { tools: {} } });

server.setRequestHandler(ListToolsRequestSchema, async () => ({
  tools: [
    { name: "weather", description, inputSchema: schema },
    { name: "clock", description: "tells the time", inputSchema: schema },
  ],
}));
server.setRequestHandler(CallToolRequestSchema, async (req) => ({
  content: [{ type: "text", text: req.params.name + ": " + description }],
}));
await server.connect(new StdioServerTransport());
