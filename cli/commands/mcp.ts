import { openSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";
import { Command, Option, UsageError } from "clipanion";
import pkg from "../../package.json" with { type: "json" };
import { DEFAULT_BUDGET, formatBudget, parseBudget } from "../run/broker-budget.js";
import { SCRIPT_MEMORY_MB } from "../run/memory-limit.js";
import { packageRoot } from "../run/paths.js";
import { parseListen } from "../../colony/server/address.js";
import { serveHttp, serveStdio, type McpSettings } from "../../mcp/server.js";
import { ColonyClient } from "../runtime/client.js";
import { resolveColony } from "../runtime/colony-address.js";
import { CliError } from "../runtime/cli-error.js";
import { CoralCommand } from "../runtime/command.js";
import { numberFlag } from "../runtime/number-flag.js";
import { resolveToken } from "../runtime/token.js";
import { colonyTransport } from "../runtime/transport.js";

const DEFAULT_TIMEOUT_SEC = 30;
const MAX_TIMEOUT_SEC = 300;

export class McpCommand extends CoralCommand {
  static paths = [["mcp"]];

  static usage = Command.Usage({
    category: "Agents",
    description: "serve the colony to AI agents over the Model Context Protocol",
    details: `
      Serves the colony's query API as an MCP server: one tool per query (list_services, get_percentile, find_slow_traces, execute_query, …, generated from the API like the \`coral query\` commands, with the same arguments and answers), a \`run_script\` tool that runs a TypeScript script in the sandbox of \`coral run\`, the API and SDK reference and the example scripts as resources, and prompts for a latency report, a correlation analysis and a high-latency check.

      By default it speaks MCP on stdin/stdout, which is how Claude Code, Claude Desktop, Cursor and other clients start a server: configure the command \`coral mcp\` (with \`--colony\` and \`--token-file\` as needed). With \`--listen HOST:PORT\` it serves Streamable HTTP at http://HOST:PORT/mcp instead, on a loopback address only: whoever reaches it runs scripts with the colony's token. It prints \`mcp listening on URL\` when ready.

      Tool answers are sized for a model's context: at most 25 rows (then a line saying how many more and how to narrow the query), human units, or raw JSON with \`output: "json"\`. Scripts run exactly as under \`coral run -\`: no network, files or environment, only @coral/sdk; \`--timeout\` sets the default time a script gets (a call may ask for up to ${MAX_TIMEOUT_SEC} s), \`--memory\` its memory, \`--budget\` the limits of each run's SDK calls and \`--audit FILE\` appends every script's calls to FILE, as for \`coral run\`.

      The colony's bearer token comes from \`--token-file FILE\` or \`$CORAL_TOKEN\`; scripts never see it. See docs/agents.md for client configuration.
    `,
    examples: [
      ["Serve the local colony on stdio (what an MCP client runs)", "coral mcp"],
      ["Add it to Claude Code", "claude mcp add coral -- coral mcp --colony 127.0.0.1:9090"],
      ["Serve Streamable HTTP on a loopback port", "coral mcp --listen 127.0.0.1:8765"],
      ["A remote colony with a token, scripts bounded and audited", "coral mcp --colony colony.internal:9090 --token-file ~/.coral-token --budget rpcs=200 --audit mcp-calls.jsonl"],
    ],
  });

  listen = Option.String("--listen", { description: "Serve Streamable HTTP on this loopback HOST:PORT instead of stdio" });
  colony = Option.String("--colony", { description: "Colony address HOST:PORT (default $CORAL_COLONY_ADDR, else 127.0.0.1:9090)" });
  token = Option.String("--token", {
    description: "Bearer token for the colony (scripts never see it); visible to other users in `ps`, prefer --token-file or $CORAL_TOKEN",
  });
  tokenFile = Option.String("--token-file", { description: "File holding the bearer token for the colony (default $CORAL_TOKEN)" });
  timeout = Option.String("--timeout", { description: `Seconds a run_script script gets unless the call asks for other (default ${DEFAULT_TIMEOUT_SEC}, at most ${MAX_TIMEOUT_SEC})` });
  memory = Option.String("--memory", { description: `Memory limit of a run_script script in MB (default ${SCRIPT_MEMORY_MB.default})` });
  budget = Option.Array("--budget", [], {
    description: `Limits on each script's SDK calls: rpcs=N,rows=N,bytes=SIZE,time=DURATION (repeatable; default ${formatBudget(DEFAULT_BUDGET)})`,
  });
  audit = Option.String("--audit", { description: "Append one JSON line per SDK call of every script to FILE" });

  async run(): Promise<number> {
    const settings = this.settings();
    if (this.listen === undefined) {
      this.context.stderr.write(`coral mcp: serving MCP on stdio for the colony at ${settings.colony.display}\n`);
      await serveStdio(settings);
      return 0;
    }
    const { host, port } = loopbackListen(this.listen);
    let url: string;
    let close: () => void;
    try {
      const http = await serveHttp(settings, host, port);
      url = http.url;
      close = () => http.server.close();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new CliError(`--listen: cannot listen on ${this.listen}: ${code === "EADDRINUSE" ? "the port is already in use — pick another" : (e as Error).message}`);
    }
    this.context.stdout.write(`mcp listening on ${url} (colony ${settings.colony.display})\n`);
    await new Promise<void>((resolve) => {
      const stop = () => {
        close();
        resolve();
      };
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
    return 0;
  }

  /** Validates the command line; every problem names its flag. */
  private settings(): McpSettings {
    const timeoutSec = this.timeout === undefined ? DEFAULT_TIMEOUT_SEC : numberFlag("--timeout", this.timeout, { min: 1, max: MAX_TIMEOUT_SEC, integer: true });
    const memoryMb = this.memory === undefined ? SCRIPT_MEMORY_MB.default : numberFlag("--memory", this.memory, { min: SCRIPT_MEMORY_MB.min, max: SCRIPT_MEMORY_MB.max, integer: true });
    let budget;
    try {
      budget = parseBudget(this.budget);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    const colony = resolveColony(this.colony);
    const url = new URL(colony.baseUrl);
    if (url.protocol !== "http:") throw new UsageError("--colony: scripts reach the colony over plain HTTP; write it as HOST:PORT");
    const token = resolveToken({ token: this.token, tokenFile: this.tokenFile }, this.context.stderr);
    const root = packageRoot();
    return {
      root,
      version: pkg.version,
      colony: { transport: colonyTransport(new ColonyClient(colony, token)), display: colony.display },
      script: {
        colony: `${url.hostname}:${url.port || "80"}`,
        token,
        budget,
        auditFd: this.audit === undefined ? undefined : openAudit(this.audit),
        memoryMb,
        timeoutSec,
        maxTimeoutSec: Math.max(MAX_TIMEOUT_SEC, timeoutSec),
        sdkModule: join(root, "dist", "sdk", "coral-sdk.js"),
      },
    };
  }
}

/** HOST:PORT on a loopback address: an HTTP MCP server runs scripts with the colony's token. */
function loopbackListen(value: string): { host: string; port: number } {
  let parsed;
  try {
    parsed = parseListen(value);
  } catch {
    throw new UsageError(`--listen: "${value}" is not HOST:PORT; write it like 127.0.0.1:8765`);
  }
  const { host } = parsed;
  const loopback = host === "localhost" || host === "::1" || (isIP(host) === 4 && host.startsWith("127."));
  if (!loopback) {
    throw new UsageError(
      `--listen: ${host} is not a loopback address; coral mcp serves only 127.0.0.1, ::1 or localhost, because its clients run scripts with the colony's token`,
    );
  }
  return parsed;
}

function openAudit(path: string): number {
  try {
    return openSync(path, "a", 0o600);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UsageError(`--audit: cannot write ${path} (${code === "ENOENT" ? "its directory does not exist" : code === "EISDIR" ? "it is a directory" : (code ?? (e as Error).message)})`);
  }
}
