// `coral mcp` as an agent meets it: a real server process (stdio, and Streamable HTTP with
// --listen) driven by the official MCP client, against a real colony on static demo data. Every
// generated tool is called and compared with `coral query … -o json`; bad arguments, colony
// errors and sandbox refusals come back as tool errors that say what to do.
import { spawn, type ChildProcess } from "node:child_process";
import { request } from "node:http";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tools as generated } from "../../gen/coral/colony/v1/query_mcp.js";
import { runCoral, spawnColony, type SpawnedColony } from "../helpers/colony.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
const bin = join(root, "bin/coral.cjs");
const env = { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", NO_COLOR: "1" };

let colony: SpawnedColony;
let client: Client;
beforeAll(async () => {
  colony = await spawnColony({ demo: true });
  client = new Client({ name: "coral-e2e", version: "1" });
  await client.connect(new StdioClientTransport({ command: process.execPath, args: [bin, "mcp", "--colony", colony.addr], cwd: root, env, stderr: "ignore" }));
});
afterAll(async () => {
  await client?.close();
  await colony?.stop();
});

/** What every coral tool answers: text blocks only. */
type Result = Omit<CallToolResult, "content"> & { content: { type: "text"; text: string }[] };
const call = async (name: string, args: Record<string, unknown> = {}, c = client) => (await c.callTool({ name, arguments: args })) as unknown as Result;
const textOf = (r: Result) => r.content.map((c) => c.text).join("\n");

describe("listing", () => {
  it("lists one tool per generated RPC tool plus run_script, each with a JSON Schema of its arguments", async () => {
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name)).toEqual([...generated.map((t) => t.name), "run_script"]);
    const percentile = tools.find((t) => t.name === "get_percentile")!;
    expect(percentile.inputSchema.required).toEqual(["service"]);
    expect(percentile.inputSchema.properties!.percentile).toMatchObject({ type: "number", exclusiveMinimum: 0, maximum: 100, default: 99 });
    expect(percentile.inputSchema.properties!.window).toMatchObject({ type: "string", default: "1h" });
    expect(percentile.description).toContain("at most 0.54% relative error");
    // The SQL tools and run_script name the tables, which a model cannot guess.
    expect(tools.find((t) => t.name === "execute_query")!.description).toContain("service_summary(");
    const script = tools.find((t) => t.name === "run_script")!;
    expect(script.description).toContain("export declare const metrics");
    expect(script.description).toContain("getP99(service: string");
    expect(script.description).not.toContain("createParams"); // internal helpers stay out
  });

  it("lists the reference and the examples as resources, and reads them", async () => {
    const { resources } = await client.listResources();
    const uris = resources.map((r) => r.uri);
    expect(uris).toContain("coral://docs/reference/README.md");
    expect(uris).toContain("coral://docs/scripting.md");
    expect(uris).toContain("coral://examples/correlation-analysis.ts");
    expect(uris).toContain("coral://sdk/coral-sdk.d.ts");
    const read = await client.readResource({ uri: "coral://examples/latency-report.ts" });
    expect((read.contents[0] as { text: string }).text).toBe(readFileSync(join(root, "examples/latency-report.ts"), "utf8"));
    await expect(client.readResource({ uri: "coral://../../etc/passwd" })).rejects.toThrow(/unknown resource/);
  });

  it("offers the RFD's analyses as prompts with arguments", async () => {
    const { prompts } = await client.listPrompts();
    expect(prompts.map((p) => p.name)).toEqual(["latency_report", "correlation", "high_latency_check"]);
    const check = await client.getPrompt({ name: "high_latency_check", arguments: { service: "payments", threshold: "300ms" } });
    expect(check.messages[0]!.content).toMatchObject({ type: "text", text: expect.stringContaining('find_slow_traces (service "payments", threshold "300ms"') });
    const report = await client.getPrompt({ name: "latency_report", arguments: { window: "15m" } });
    expect(report.messages[1]!.content).toMatchObject({ type: "resource", resource: { uri: "coral://examples/latency-report.ts" } });
    await expect(client.getPrompt({ name: "high_latency_check", arguments: { threshold: "1s" } })).rejects.toThrow(/service: required/);
  });
});

/** Values for the required arguments a tool may take; a new one fails loudly below. */
async function requiredValue(name: string): Promise<string> {
  switch (name) {
    case "service":
      return "payments";
    case "sql":
      return "SELECT service_name, count(*) AS n FROM trace_summary GROUP BY 1 ORDER BY 1";
    case "trace_id": {
      const r = JSON.parse((await call("find_slow_traces", { service: "payments", limit: 1, output: "json" })).content[0]!.text);
      return r.traces[0].trace_id;
    }
  }
  throw new Error(`no sample value for the required argument "${name}": add one to requiredValue`);
}

/** Optional arguments to exercise the conversions: a duration, a count, a percentage. */
// The window covers all the demo's data: a sliding one could cross a minute between the two calls.
const optionalValues: Record<string, string | number> = { window: "24h", threshold: "200ms", limit: 5, percentile: 95, max_rows: 20 };

describe("every generated tool gives the answer of the same `coral query`", () => {
  for (const tool of generated) {
    it(tool.name, async () => {
      const command = /Same answer as `coral ([^`]+)`/.exec(tool.description)?.[1];
      expect(command, "the description names its CLI command").toBeDefined();
      const [path, variant] = command!.split(" --");
      const args: Record<string, unknown> = { output: "json" };
      const cli = path!.split(" ");
      for (const a of tool.args.filter((x) => x.required)) cli.push(String((args[a.name] = await requiredValue(a.name))));
      if (variant) cli.push(`--${variant}`);
      for (const a of tool.args.filter((x) => !x.required && x.name in optionalValues)) {
        args[a.name] = optionalValues[a.name];
        cli.push(`--${a.name.replace(/_/g, "-")}`, String(optionalValues[a.name]));
      }
      const [mcp, coral] = await Promise.all([call(tool.name, args), runCoral([...cli, "--colony", colony.addr, "-o", "json"])]);
      if (coral.code !== 0) {
        // A query the colony refuses is refused alike, in the colony's words.
        expect(mcp.isError).toBe(true);
        const colonyWords = /^coral: (.*\(\w+\))$/m.exec(coral.stderr)?.[1];
        if (colonyWords) expect(textOf(mcp)).toContain(colonyWords);
        return;
      }
      expect(mcp.isError, textOf(mcp)).toBeFalsy();
      const answer = JSON.parse(mcp.content[0]!.text);
      if (tool.method.methodKind === "server_streaming") {
        // The CLI streams one JSON row per line; the tool answers with the rows in one object.
        expect(answer[tool.output.rows!]).toEqual(coral.stdout.trim().split("\n").map((l) => JSON.parse(l)));
      } else {
        expect(answer).toEqual(JSON.parse(coral.stdout));
      }
    });
  }

  it("answers in a compact table with human units by default, capped with a hint to narrow the query", async () => {
    const r = await call("find_slow_traces", { service: "frontend", threshold: "1ms" });
    const text = textOf(r);
    expect(text.split("\n")[0]).toMatch(/^TRACE_ID\s+DURATION\s+TIMESTAMP/);
    expect(text).toMatch(/\d+(\.\d+)?(ms|s)\s/);
    expect(text.split("\n").filter((l) => /^[0-9a-f]{32}\s/.test(l))).toHaveLength(25);
    expect(text).toMatch(/\((\d+) more rows not shown — narrow the query \(threshold, window, limit\)\)/);
    const one = textOf(await call("get_percentile", { service: "payments", percentile: 50 }));
    expect(one).toMatch(/^value: \d+(\.\d+)?(ms|s|µs)\nsample_count: \d+\n$/);
  });

  it("reads a big streamed result only as far as it shows", async () => {
    const text = textOf(await call("stream_query", { sql: "SELECT * FROM spans" }));
    expect(text).toMatch(/\(at least \d+ more rows not shown — add a WHERE or LIMIT, or aggregate \(GROUP BY\)\)/);
    expect(text.length).toBeLessThan(8000);
  });
});

describe("errors are tool errors naming the argument", () => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ["get_percentile", { service: "payments", percentile: 150 }, /^percentile: "150" is not a percentage in \(0, 100\]/],
    ["get_percentile", { service: "payments", percentile: 0 }, /^percentile: "0" is not a percentage in \(0, 100\]/],
    ["get_percentile", { service: "payments", percentile: "high" }, /^percentile: expected a number, got "high"/],
    ["get_error_rate", { service: "payments", window: 300000 }, /^window: a duration is text like "500ms", "5m" or "1h", got 300000/],
    ["get_error_rate", { service: "payments", window: "5 minutes" }, /^window: "5 minutes" is not a duration/],
    ["find_slow_traces", { service: "payments", limit: 5000 }, /^limit: must be in 1\.\.1000; got 5000/],
    ["find_slow_traces", { service: "payments", limit: 2.5 }, /^limit: expected an integer, got 2\.5/],
    ["find_error_traces", {}, /^service: required/],
    ["find_error_traces", { service: "  " }, /^service: required/],
    ["get_service", { service: "payments", windw: "1h" }, /^windw: not an argument of get_service \(did you mean window\?\); it takes service, window, output/],
    ["list_services", { output: "yaml" }, /^output: expected "table" or "json", got "yaml"/],
    ["run_script", { source: "console.log(1)", timeout_sec: 0 }, /^timeout_sec: must be a whole number in 1\.\.300; got 0/],
    ["run_script", {}, /^source: required/],
  ];
  for (const [tool, args, message] of cases) {
    it(`${tool} ${JSON.stringify(args)}`, async () => {
      const r = await call(tool, args);
      expect(r.isError).toBe(true);
      expect(textOf(r)).toMatch(message);
    });
  }

  it("translates colony errors as the CLI does", async () => {
    const r = await call("get_percentile", { service: "nope" });
    expect(r.isError).toBe(true);
    expect(textOf(r)).toMatch(/service "nope" not found.*\(not_found\)/);
    const sql = await call("execute_query", { sql: "DELETE FROM spans" });
    expect(sql.isError).toBe(true);
    expect(textOf(sql)).toMatch(/\(invalid_argument\)/);
  });

  it("says when the colony cannot be reached", async () => {
    const c = new Client({ name: "coral-e2e", version: "1" });
    await c.connect(new StdioClientTransport({ command: process.execPath, args: [bin, "mcp", "--colony", "127.0.0.1:1"], cwd: root, env, stderr: "ignore" }));
    try {
      const r = await call("list_services", {}, c);
      expect(r.isError).toBe(true);
      expect(textOf(r)).toMatch(/^cannot reach colony at 127\.0\.0\.1:1 \(connection refused\)/);
    } finally {
      await c.close();
    }
  });

  it("refuses an unknown tool as a protocol error", async () => {
    await expect(call("drop_tables")).rejects.toThrow(/unknown tool "drop_tables"/);
  });
});

describe("run_script", () => {
  it("runs the correlation example with params, returning its output, exit code and budget used", async () => {
    const source = readFileSync(join(root, "examples/correlation-analysis.ts"), "utf8");
    const r = await call("run_script", { source, params: { window: "30m", services: "payments,legacy-api" } });
    const text = textOf(r);
    // Exit 3 is the script's own verdict ("cascade suspected"), not a failed call.
    expect(text).toMatch(/^exit code (0|3) after \d+\.\d s; used \d+ SDK calls, \d+ rows/);
    expect(r.isError).toBe(false);
    expect(text).toContain("Cross-service correlation, last 30 min");
    expect(text).toMatch(/legacy-api\s+\d+\.\d+%/);
  });

  const escapes: [string, string, RegExp][] = [
    ["network", "const r = await fetch('http://example.com/'); console.log(r.status);", /Requires net access/],
    ["the token in the environment", "console.log(Deno.env.get('CORAL_TOKEN'));", /Requires env access/],
    ["files", "console.log(Deno.readTextFileSync('/etc/passwd'));", /Requires read access/],
    ["npm imports", "import pad from 'npm:left-pad'; console.log(pad);", /refused import "npm:left-pad"/],
    ["subprocesses", "new Deno.Command('/bin/sh', { args: ['-c', 'id'] }).outputSync();", /Requires run access/],
  ];
  for (const [what, source, evidence] of escapes) {
    it(`refuses ${what} as a tool error that says what is allowed`, async () => {
      const r = await call("run_script", { source });
      expect(r.isError).toBe(true);
      const text = textOf(r);
      expect(text).toMatch(evidence);
      expect(text).toContain("refused by the sandbox: Scripts may import only @coral/sdk and node: built-ins");
    });
  }

  it("stops a runaway script at its timeout, and the server serves the next calls", async () => {
    const r = await call("run_script", { source: "while (true) {}", timeout_sec: 2 });
    expect(r.isError).toBe(true);
    expect(textOf(r)).toMatch(/^exit code 124 after [23]\.\d s/);
    expect(textOf(r)).toContain("the script hit its timeout (2 s)");
    const next = await call("run_script", { source: 'import * as coral from "@coral/sdk"; console.log((await coral.services.list()).length);' });
    expect(next.isError).toBe(false);
    expect(textOf(next)).toMatch(/stdout \(2 bytes\):\n6\n/);
    expect((await call("list_services")).isError).toBeFalsy();
  });

  it("bounds what a chatty script returns", async () => {
    const r = await call("run_script", { source: "for (let i = 0; i < 100000; i++) console.log('line', i); console.error('x'.repeat(10000));" });
    const text = textOf(r);
    expect(text).toMatch(/more characters of stdout cut — print less/);
    expect(text).toMatch(/characters cut …/);
    expect(text.length).toBeLessThan(13_000);
  });
});

describe("Streamable HTTP (--listen)", () => {
  let server: ChildProcess;
  let url: string;
  beforeAll(async () => {
    server = spawn(process.execPath, [bin, "mcp", "--listen", "127.0.0.1:0", "--colony", colony.addr], { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] });
    url = await new Promise<string>((resolve, reject) => {
      let out = "";
      server.stdout!.setEncoding("utf8").on("data", (d: string) => {
        out += d;
        const m = /^mcp listening on (\S+)/m.exec(out);
        if (m) resolve(m[1]!);
      });
      server.once("exit", (code) => reject(new Error(`coral mcp --listen exited with ${code}`)));
    });
  });
  afterAll(() => {
    server?.kill("SIGTERM");
  });

  it("serves the same tools and answers as stdio", async () => {
    const http = new Client({ name: "coral-e2e-http", version: "1" });
    await http.connect(new StreamableHTTPClientTransport(new URL(url)));
    try {
      expect((await http.listTools()).tools.map((t) => t.name)).toEqual((await client.listTools()).tools.map((t) => t.name));
      const args = { service: "orders", window: "2h", output: "json" };
      expect(textOf(await call("get_error_rate", args, http))).toBe(textOf(await call("get_error_rate", args)));
      const script = await call("run_script", { source: "console.log(6 * 7)" }, http);
      expect(textOf(script)).toMatch(/stdout \(3 bytes\):\n42\n/);
    } finally {
      await http.close();
    }
  });

  it("refuses requests naming another host (DNS rebinding)", async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const u = new URL(url);
      const req = request({ host: u.hostname, port: u.port, path: "/mcp", method: "POST", headers: { host: "evil.example:80", "content-type": "application/json", accept: "application/json, text/event-stream" } }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on("error", reject);
      req.end(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }));
    });
    expect(status).toBe(403);
  });

  it("listens on loopback only, and says why", async () => {
    const r = await runCoral(["mcp", "--listen", "0.0.0.0:0", "--colony", colony.addr]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--listen: 0\.0\.0\.0 is not a loopback address; coral mcp serves only 127\.0\.0\.1, ::1 or localhost/);
  });
});
