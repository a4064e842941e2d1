// The answer set: questions about the static demo data, each answered twice through `coral mcp`
// without a model — by a recorded sequence of generated-tool calls, the answer read from their
// text as a model would read it, and by one `run_script` call whose script prints the answer in
// the same form — and both checked against the same question asked with `coral query … -o json`.
// It also measures what each way costs a model's context: characters of tool output per question
// (goal: median ≤ 4,000), reported as a table on the console and in .tmp/mcp-answers.md.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatDurationNs, formatRatio, parseDurationNs } from "../../surface/units.js";
import { DEMO_SERVICES, runCoral, spawnColony, type SpawnedColony } from "../helpers/colony.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
const bin = join(root, "bin/coral.cjs");
// Every window covers the whole seeded demo: a sliding hour could cross a minute between the calls.
const WINDOW = "24h";

let colony: SpawnedColony;
let client: Client;
beforeAll(async () => {
  colony = await spawnColony({ demo: true });
  client = new Client({ name: "coral-answers", version: "1" });
  const env = { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", NO_COLOR: "1" };
  await client.connect(new StdioClientTransport({ command: process.execPath, args: [bin, "mcp", "--colony", colony.addr], cwd: root, env, stderr: "ignore" }));
});
afterAll(async () => {
  await client?.close();
  await colony?.stop();
});

/** Runs at most `n` of the given jobs at once: each spawns a process (Deno, the CLI) on two shared cores. */
function pool(n: number) {
  let running = 0;
  const waiting: (() => void)[] = [];
  return async <T>(job: () => Promise<T>): Promise<T> => {
    if (running >= n) await new Promise<void>((go) => waiting.push(go));
    running++;
    try {
      return await job();
    } finally {
      running--;
      waiting.shift()?.();
    }
  };
}
const spawning = pool(4);

/** One tool call, its text as the model reads it, and the characters it cost. */
async function ask(log: number[], name: string, args: Record<string, unknown>): Promise<string> {
  const r = (await client.callTool({ name, arguments: args })) as { content: { text: string }[]; isError?: boolean };
  const text = r.content.map((c) => c.text).join("\n");
  if (r.isError) throw new Error(`${name} failed: ${text}`);
  log.push(text.length);
  return text;
}

// Several questions share a `coral query` (the service list, each service's p99): ask each once.
const cliAnswers = new Map<string, Promise<any>>();
function cliJson(...args: string[]): Promise<any> {
  const key = args.join("\0");
  if (!cliAnswers.has(key)) {
    cliAnswers.set(
      key,
      spawning(async () => {
        const r = await runCoral([...args, "--colony", colony.addr, "-o", "json"]);
        if (r.code !== 0) throw new Error(r.stderr);
        return JSON.parse(r.stdout);
      }),
    );
  }
  return cliAnswers.get(key)!;
}

/** The value on a `name: value` line of a record answer. */
const field = (text: string, name: string) => new RegExp(`^${name.replace(".", "\\.")}: (.*)$`, "m").exec(text)?.[1];
/** The cells of the table row whose first cell is `key`. */
const row = (text: string, key: string) => text.split("\n").find((l) => l.split(/\s{2,}/)[0] === key)?.split(/\s{2,}/);

/** A one-call `run_script` answer: the script prints the answer alone on stdout. */
interface Script {
  source: string;
  params?: Record<string, string>;
}

interface Question {
  question: string;
  /** The recorded tool calls; returns the answer as read from their text. */
  tools(log: number[]): Promise<string>;
  /** The same question as one script. */
  script: Script;
  /** The same answer from `coral query`. */
  expected(): Promise<string>;
}

async function runScript(log: number[], s: Script): Promise<string> {
  const text = await spawning(() => ask(log, "run_script", { source: s.source, params: s.params ?? {} }));
  const out = /^stdout \(\d+ bytes\):\n([\s\S]*)$/m.exec(text)?.[1];
  if (out === undefined) throw new Error(`run_script answered without stdout:\n${text}`);
  return out.trim();
}

// A script prints the answer in the form the tools show it, so it carries their formatters (the
// same functions, by source: a model would write its own).
const PRELUDE = `import * as coral from "@coral/sdk";
${formatDurationNs}
${formatRatio}
`;

/** A script about one service, which it reads from its params as a model's reusable script would. */
const aboutService = (service: string, body: string): Script => ({
  source: `${PRELUDE}const service = coral.params.string("service");
const window = coral.params.durationMs("window");
${body}`,
  params: { service, window: WINDOW },
});

const perService = (s: string): Question[] => [
  {
    question: `p99 latency of ${s}`,
    tools: async (log) => field(await ask(log, "get_percentile", { service: s, window: WINDOW }), "value")!,
    script: aboutService(s, "console.log(formatDurationNs(await coral.metrics.getP99(service, undefined, window)));"),
    expected: async () => formatDurationNs((await cliJson("query", "metrics", s, "--window", WINDOW)).value),
  },
  {
    question: `error rate of ${s}`,
    tools: async (log) => field(await ask(log, "get_error_rate", { service: s, window: WINDOW }), "rate")!,
    script: aboutService(s, "console.log(formatRatio(await coral.metrics.getErrorRate(service, window)));"),
    expected: async () => formatRatio((await cliJson("query", "metrics", s, "--error-rate", "--window", WINDOW)).rate),
  },
  {
    question: `slowest trace of ${s}`,
    tools: async (log) => (await ask(log, "find_slow_traces", { service: s, window: WINDOW, threshold: "0s", limit: 1 })).split("\n")[1]!.split(/\s+/)[0]!,
    script: aboutService(s, "console.log((await coral.traces.findSlow(service, 0, window, 1))[0].trace_id);"),
    expected: async () => (await cliJson("query", "traces", s, "--window", WINDOW, "--threshold", "0s", "--limit", "1")).traces[0].trace_id,
  },
  {
    question: `instances of ${s}`,
    tools: async (log) => row(await ask(log, "list_services", {}), s)![3]!,
    script: aboutService(s, "console.log((await coral.services.list()).find((s) => s.name === service).instance_count);"),
    expected: async () => String((await cliJson("query", "services")).services.find((x: { name: string }) => x.name === s).instance_count),
  },
  {
    question: `hosts reporting for ${s}`,
    tools: async (log) => field(await ask(log, "get_system_metrics", { service: s, window: WINDOW }), "host_count")!,
    script: aboutService(s, "console.log((await coral.system.getMetrics(service, window)).host_count);"),
    expected: async () => String((await cliJson("query", "system", s, "--window", WINDOW)).host_count),
  },
];

const global: Question[] = [
  {
    question: "how many services does the colony know",
    tools: async (log) => String((await ask(log, "list_services", {})).trim().split("\n").length - 1),
    script: { source: `${PRELUDE}console.log((await coral.services.list()).length);` },
    expected: async () => String((await cliJson("query", "services")).services.length),
  },
  {
    question: "which service has the highest p99",
    tools: async (log) => {
      const names = (await ask(log, "list_services", {})).trim().split("\n").slice(1).map((l) => l.split(/\s+/)[0]!);
      const p99s = await Promise.all(names.map(async (name) => [name, parseDurationNs(field(await ask(log, "get_percentile", { service: name, window: WINDOW }), "value")!)] as const));
      return p99s.reduce((a, b) => (b[1] > a[1] ? b : a))[0];
    },
    script: {
      source: `${PRELUDE}const window = coral.params.durationMs("window");
let best = { name: "", p99: -1 };
for (const s of await coral.services.list()) {
  const p99 = (await s.metrics.getP99(undefined, window)) ?? -1;
  if (p99 > best.p99) best = { name: s.name, p99 };
}
console.log(best.name);`,
      params: { window: WINDOW },
    },
    expected: async () => {
      const p99s = await Promise.all(DEMO_SERVICES.map(async (s) => [s, (await cliJson("query", "metrics", s, "--window", WINDOW)).value ?? -1] as const));
      return p99s.reduce((a, b) => (b[1] > a[1] ? b : a))[0];
    },
  },
];

const questions = [...DEMO_SERVICES.flatMap(perService), ...global];

interface Cost {
  toolCalls: number;
  toolChars: number;
  scriptChars: number;
}

function median(values: number[]): number {
  const v = [...values].sort((a, b) => a - b);
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid]! : Math.round((v[mid - 1]! + v[mid]!) / 2);
}

function report(costs: Map<string, Cost>): string {
  const answered = questions.filter((q) => costs.has(q.question));
  const all = answered.map((q) => costs.get(q.question)!);
  const lines = [
    `${answered.length} questions about the static demo data (\`coral colony start --demo-static\`), each answered through \`coral mcp\` with the generated tools only and with one \`run_script\` call; characters of tool output per question:`,
    "",
    `- tools only: median ${median(all.map((c) => c.toolChars))} characters (max ${Math.max(...all.map((c) => c.toolChars))}), median ${median(all.map((c) => c.toolCalls))} call(s)`,
    `- one run_script: median ${median(all.map((c) => c.scriptChars))} characters (max ${Math.max(...all.map((c) => c.scriptChars))})`,
    "",
    "| question | tool calls | tools chars | run_script chars |",
    "|----------|-----------:|------------:|-----------------:|",
    ...answered.map((q) => {
      const c = costs.get(q.question)!;
      return `| ${q.question} | ${c.toolCalls} | ${c.toolChars} | ${c.scriptChars} |`;
    }),
  ];
  return lines.join("\n") + "\n";
}

describe("the answer set", () => {
  const costs = new Map<string, Cost>();
  afterAll(() => {
    const text = report(costs);
    console.log(text);
    mkdirSync(join(root, ".tmp"), { recursive: true });
    writeFileSync(join(root, ".tmp/mcp-answers.md"), `# coral mcp: what an answer costs\n\n${text}`);
  });

  it("has at least 30 questions", () => {
    expect(questions.length).toBeGreaterThanOrEqual(30);
  });

  // Tool calls may overlap freely; the scripts and `coral query` processes share the pool.
  for (const q of questions) {
    it.concurrent(q.question, async ({ expect }) => {
      const toolLog: number[] = [];
      const scriptLog: number[] = [];
      const [byTools, byScript, want] = await Promise.all([q.tools(toolLog), runScript(scriptLog, q.script), q.expected()]);
      expect(byTools, "tools only").toBe(want);
      expect(byScript, "one run_script").toBe(want);
      const sum = (log: number[]) => log.reduce((a, b) => a + b, 0);
      costs.set(q.question, { toolCalls: toolLog.length, toolChars: sum(toolLog), scriptChars: sum(scriptLog) });
    });
  }

  it("keeps the median answer within about a thousand tokens, either way", () => {
    expect(costs.size).toBe(questions.length);
    const all = [...costs.values()];
    expect(median(all.map((c) => c.toolChars))).toBeLessThanOrEqual(4000);
    expect(median(all.map((c) => c.scriptChars))).toBeLessThanOrEqual(4000);
  });
});
