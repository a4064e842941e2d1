// The answer set: questions about the static demo data, each answered by a recorded sequence of
// `coral mcp` tool calls (no model), the answer read from the tools' text as a model would read it,
// and checked against the same question asked with `coral query … -o json`. It also measures what
// the answers cost a model's context: characters of tool output per question (goal: median ≤ 4,000).
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatDurationNs, formatRatio } from "../../surface/units.js";
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

/** One tool call, its text as the model reads it, and the characters it cost. */
async function ask(log: number[], name: string, args: Record<string, unknown>): Promise<string> {
  const r = (await client.callTool({ name, arguments: args })) as { content: { text: string }[]; isError?: boolean };
  const text = r.content.map((c) => c.text).join("\n");
  if (r.isError) throw new Error(`${name} failed: ${text}`);
  log.push(text.length);
  return text;
}

async function cliJson(...args: string[]): Promise<any> {
  const r = await runCoral([...args, "--colony", colony.addr, "-o", "json"]);
  if (r.code !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout);
}

/** The value on a `name: value` line of a record answer. */
const field = (text: string, name: string) => new RegExp(`^${name.replace(".", "\\.")}: (.*)$`, "m").exec(text)?.[1];
/** The cells of the table row whose first cell is `key`. */
const row = (text: string, key: string) => text.split("\n").find((l) => l.split(/\s{2,}/)[0] === key)?.split(/\s{2,}/);

interface Question {
  question: string;
  /** The recorded tool calls; returns the answer as read from their text. */
  tools(log: number[]): Promise<string>;
  /** The same answer from `coral query`. */
  expected(): Promise<string>;
}

const perService = (s: string): Question[] => [
  {
    question: `p99 latency of ${s}`,
    tools: async (log) => field(await ask(log, "get_percentile", { service: s, window: WINDOW }), "value")!,
    expected: async () => formatDurationNs((await cliJson("query", "metrics", s, "--window", WINDOW)).value),
  },
  {
    question: `error rate of ${s}`,
    tools: async (log) => field(await ask(log, "get_error_rate", { service: s, window: WINDOW }), "rate")!,
    expected: async () => formatRatio((await cliJson("query", "metrics", s, "--error-rate", "--window", WINDOW)).rate),
  },
  {
    question: `slowest trace of ${s}`,
    tools: async (log) => (await ask(log, "find_slow_traces", { service: s, window: WINDOW, threshold: "0s", limit: 1 })).split("\n")[1]!.split(/\s+/)[0]!,
    expected: async () => (await cliJson("query", "traces", s, "--window", WINDOW, "--threshold", "0s", "--limit", "1")).traces[0].trace_id,
  },
  {
    question: `instances of ${s}`,
    tools: async (log) => row(await ask(log, "list_services", {}), s)![3]!,
    expected: async () => String((await cliJson("query", "services")).services.find((x: { name: string }) => x.name === s).instance_count),
  },
  {
    question: `hosts reporting for ${s}`,
    tools: async (log) => field(await ask(log, "get_system_metrics", { service: s, window: WINDOW }), "host_count")!,
    expected: async () => String((await cliJson("query", "system", s, "--window", WINDOW)).host_count),
  },
];

const global: Question[] = [
  {
    question: "how many services does the colony know",
    tools: async (log) => String((await ask(log, "list_services", {})).trim().split("\n").length - 1),
    expected: async () => String((await cliJson("query", "services")).services.length),
  },
  {
    question: "which service has the highest p99 (one run_script)",
    tools: async (log) => {
      const source = `import * as coral from "@coral/sdk";
let best = { name: "", p99: -1 };
for (const s of await coral.services.list()) {
  const p99 = (await s.metrics.getP99(undefined, ${24 * 3_600_000})) ?? -1;
  if (p99 > best.p99) best = { name: s.name, p99 };
}
console.log(best.name);`;
      const text = await ask(log, "run_script", { source });
      return /stdout \(\d+ bytes\):\n(.*)\n/.exec(text)![1]!;
    },
    expected: async () => {
      const p99s = await Promise.all(DEMO_SERVICES.map(async (s) => [s, (await cliJson("query", "metrics", s, "--window", WINDOW)).value ?? -1] as const));
      return p99s.reduce((a, b) => (b[1] > a[1] ? b : a))[0];
    },
  },
];

const questions = [...DEMO_SERVICES.flatMap(perService), ...global];

describe("the answer set", () => {
  const chars: { question: string; chars: number }[] = [];
  afterAll(() => {
    const sorted = chars.map((c) => c.chars).sort((a, b) => a - b);
    const median = sorted.length ? sorted[Math.floor(sorted.length / 2)] : 0;
    console.log(`coral mcp answer set: ${chars.length} questions; characters of tool output per question: median ${median}, max ${sorted.at(-1)}`);
    for (const c of chars) console.log(`  ${String(c.chars).padStart(6)}  ${c.question}`);
  });

  it("has at least 30 questions", () => {
    expect(questions.length).toBeGreaterThanOrEqual(30);
  });

  for (const q of questions) {
    it(q.question, async () => {
      const log: number[] = [];
      const [got, want] = await Promise.all([q.tools(log), q.expected()]);
      expect(got).toBe(want);
      chars.push({ question: q.question, chars: log.reduce((a, b) => a + b, 0) });
    });
  }

  it("keeps the median answer within about a thousand tokens", () => {
    const sorted = chars.map((c) => c.chars).sort((a, b) => a - b);
    expect(sorted.length).toBe(questions.length);
    expect(sorted[Math.floor(sorted.length / 2)]).toBeLessThanOrEqual(4000);
  });
});
