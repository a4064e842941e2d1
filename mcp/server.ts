// `coral mcp`: the colony's query API as a Model Context Protocol server — the generated tools, the
// run_script tool, the reference and examples as resources, the RFD's analyses as prompts — over
// stdio (what desktop and IDE clients launch) or Streamable HTTP on a loopback port.
//
// Built on the SDK's low-level Server rather than McpServer: McpServer takes zod schemas, and ours
// are JSON Schemas generated from the proto (gen/…/query_mcp.ts).
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from "node:http";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import {
  CallToolRequestSchema,
  ErrorCode,
  GetPromptRequestSchema,
  ListPromptsRequestSchema,
  ListResourcesRequestSchema,
  ListToolsRequestSchema,
  McpError,
  ReadResourceRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { Slots } from "../colony/admission.js";
import { getPrompt, promptList, PromptError } from "./prompts.js";
import { library, sqlTables } from "./resources.js";
import { runScriptTool, SCRIPT_TOOL, scriptListing, type ScriptSettings } from "./script.js";
import { sdkDeclarations } from "./sdk-types.js";
import { callTool, listing, queryTools, toolError, type Colony } from "./tools.js";

export interface McpSettings {
  /** Package root of the coral checkout: docs/, examples/ and dist/sdk/ live there. */
  root: string;
  colony: Colony;
  script: ScriptSettings & { sdkModule: string };
  version: string;
}

const INSTRUCTIONS =
  "Coral answers questions about services' latency, errors, traces and hosts from a colony's telemetry. " +
  "Start with list_services. Tool arguments are written as on the coral command line: durations as text (\"5m\", \"500ms\"), percentiles as percentages (99). " +
  "For a question spanning several services or needing arithmetic, write one run_script call instead of many tool calls.";

/**
 * Limits of `coral mcp` against a hostile or broken client (docs/agents.md). Each script is a Deno
 * process with up to --memory MB, so the scripts running at once bound the memory of the whole:
 * MAX_SCRIPTS × --memory beyond the server's own.
 */
export const MCP_LIMITS = {
  /** run_script calls running at once, over all clients; more are refused as a tool error. */
  maxScripts: 4,
  /** Largest HTTP request body (a script is at most 1 MiB, its params 64 KiB, escaped as JSON). */
  maxBodyBytes: 4 * 2 ** 20,
  /** HTTP requests handled at once; more get 503 with Retry-After. */
  maxRequests: 64,
  /** Open HTTP connections; the kernel's backlog holds more until one closes. */
  maxConnections: 256,
  /** Time a client gets to send its request headers, then its whole request (slow clients). */
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
};

/**
 * A maker of MCP server instances (stdio connects one; HTTP one per request). What they list is read
 * once, here: the SDK's declarations, the docs and examples.
 */
export function serverFactory(s: McpSettings, limits = MCP_LIMITS): () => Server {
  const declarations = sdkDeclarations(s.script.sdkModule);
  const tables = sqlTables();
  const lib = library(s.root, declarations);
  const tools = [...queryTools.map((t) => listing(t, tables)), scriptListing(s.script, declarations, tables)];
  const byName = new Map(queryTools.map((t) => [t.name, t]));
  const scripts = new Slots(limits.maxScripts);
  return () => mcpServer(s, { lib, tools, byName, scripts });
}

function mcpServer(
  s: McpSettings,
  { lib, tools, byName, scripts }: { lib: ReturnType<typeof library>; tools: ReturnType<typeof listing>[]; byName: Map<string, (typeof queryTools)[number]>; scripts: Slots },
): Server {
  const server = new Server(
    { name: "coral", title: "Coral", version: s.version },
    { capabilities: { tools: {}, resources: {}, prompts: {} }, instructions: INSTRUCTIONS },
  );
  server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools }));
  server.setRequestHandler(CallToolRequestSchema, async (req, extra) => {
    const { name, arguments: args } = req.params;
    try {
      if (name === SCRIPT_TOOL) {
        // Refused rather than queued: a model retries a refusal it can read, and a queue would hold
        // requests (and their clients' connections) for minutes.
        if (scripts.active >= scripts.size) {
          return toolError(`${scripts.active} scripts are running already, the most coral mcp runs at once; retry when one has ended (or use the query tools meanwhile)`);
        }
        const release = await scripts.acquire();
        try {
          return await runScriptTool(args, s.script, extra.signal);
        } finally {
          release();
        }
      }
      const tool = byName.get(name);
      if (!tool) throw new McpError(ErrorCode.InvalidParams, `unknown tool "${name}"; the tools are ${tools.map((t) => t.name).join(", ")}`);
      return await callTool(tool, args, s.colony, extra.signal);
    } catch (e) {
      if (e instanceof McpError) throw e;
      // A failure of ours still reaches the model as one line, not a stack (CORAL_DEBUG=1 logs it).
      if (process.env.CORAL_DEBUG) process.stderr.write(`${(e as Error)?.stack ?? e}\n`);
      return toolError(`internal error in coral mcp: ${(e as Error)?.message ?? String(e)}`);
    }
  });
  server.setRequestHandler(ListResourcesRequestSchema, async () => ({ resources: lib.resources }));
  server.setRequestHandler(ReadResourceRequestSchema, async (req) => {
    const content = lib.read(req.params.uri);
    if (!content) throw new McpError(ErrorCode.InvalidParams, `unknown resource "${req.params.uri}"; list them with resources/list`);
    return { contents: [content] };
  });
  server.setRequestHandler(ListPromptsRequestSchema, async () => ({ prompts: promptList() }));
  server.setRequestHandler(GetPromptRequestSchema, async (req) => {
    try {
      return getPrompt(req.params.name, req.params.arguments, lib);
    } catch (e) {
      if (e instanceof PromptError) throw new McpError(ErrorCode.InvalidParams, e.message);
      throw e;
    }
  });
  return server;
}

/** Serves one client on stdin/stdout until it closes them; stdout carries only protocol messages. */
export async function serveStdio(s: McpSettings): Promise<void> {
  const server = serverFactory(s)();
  const closed = new Promise<void>((resolve) => (server.onclose = resolve));
  await server.connect(new StdioServerTransport());
  // The transport does not notice stdin's end by itself: a client that exits must end us too.
  process.stdin.once("end", () => void server.close());
  await closed;
}

/**
 * Serves Streamable HTTP at http://HOST:PORT/mcp, statelessly: each POST gets a fresh server and
 * transport, so no session state can pile up or leak between clients. Answers are plain JSON.
 * Host and Origin headers are checked against the loopback address (DNS rebinding: a web page
 * must not reach a local server through a name it controls).
 */
export function serveHttp(s: McpSettings, host: string, port: number, limits = MCP_LIMITS): Promise<{ server: HttpServer; url: string }> {
  const make = serverFactory(s, limits);
  const hostPart = host.includes(":") ? `[${host}]` : host;
  const names = [...new Set([...loopbackNames, hostPart])];
  let inflight = 0;
  const http = createHttpServer(
    // Node's own limits bound what a slow or silent client holds: its headers, then its whole body,
    // must arrive in time, or it gets 408 and its connection is closed.
    { headersTimeout: limits.headersTimeoutMs, requestTimeout: limits.requestTimeoutMs, connectionsCheckingInterval: 1_000 },
    (req, res) => {
      if (inflight >= limits.maxRequests) {
        refuse(res, 503, "busy", `coral mcp is handling ${inflight} requests already; retry shortly`, { "retry-after": "1" });
        return;
      }
      inflight++;
      res.once("close", () => inflight--);
      void handle(make, names, limits, req, res);
    },
  );
  http.maxConnections = limits.maxConnections;
  return new Promise((resolve, reject) => {
    http.once("error", reject);
    http.listen(port, host, () => {
      http.off("error", reject);
      const addr = http.address() as { port: number };
      resolve({ server: http, url: `http://${hostPart}:${addr.port}/mcp` });
    });
  });
}

async function handle(make: () => Server, names: string[], limits: typeof MCP_LIMITS, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? "/").split("?")[0];
  if (path !== "/mcp") {
    res.writeHead(404, { "content-type": "text/plain" }).end("coral mcp serves MCP at /mcp\n");
    return;
  }
  if (req.method !== "POST") {
    // Stateless: no server-initiated stream to GET, no session to DELETE.
    res.writeHead(405, { allow: "POST", "content-type": "text/plain" }).end("coral mcp: POST MCP requests to /mcp\n");
    return;
  }
  // Refused before a byte of the body is read; a body without a length is cut by the transport at
  // the same size. Either way the connection is closed, so the rest of the body is never read.
  if (Number(req.headers["content-length"]) > limits.maxBodyBytes) {
    refuse(res, 413, "too large", `a request body may have at most ${limits.maxBodyBytes} bytes`);
    return;
  }
  res.once("finish", () => {
    if (res.statusCode === 413) req.socket.destroySoon();
  });
  const localPort = req.socket.localPort;
  const server = make();
  const transport = new StreamableHTTPServerTransport({
    sessionIdGenerator: undefined,
    enableJsonResponse: true,
    maxRequestBodySize: limits.maxBodyBytes,
    enableDnsRebindingProtection: true,
    allowedHosts: names.map((h) => `${h}:${localPort}`),
    allowedOrigins: names.flatMap((h) => [`http://${h}:${localPort}`, `https://${h}:${localPort}`]),
  });
  res.on("close", () => {
    void transport.close();
    void server.close();
  });
  try {
    await server.connect(transport);
    await transport.handleRequest(req, res);
  } catch (e) {
    if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" }).end(`coral mcp: ${(e as Error).message}\n`);
  }
}

/** A refusal of the HTTP layer, as a JSON-RPC error a client can show; the connection is closed after it. */
function refuse(res: ServerResponse, status: number, what: string, message: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "content-type": "application/json", connection: "close", ...headers });
  res.end(JSON.stringify({ jsonrpc: "2.0", id: null, error: { code: -32000, message: `${what}: ${message}` } }));
}

/** The names a loopback listener answers to, in Host and Origin headers. */
export const loopbackNames = ["127.0.0.1", "localhost", "[::1]"];
