// The RFD's analyses as MCP prompts: a user picks one (a slash command in Claude Code), fills in its
// arguments, and the model gets a task that names the tools to use — for the multi-service ones,
// the example script itself, ready for one run_script call instead of a call per service.
import type { GetPromptResult, Prompt } from "@modelcontextprotocol/sdk/types.js";
import type { Library } from "./resources.js";

interface PromptDef extends Prompt {
  /** Argument defaults, as the example scripts take them. */
  defaults: Record<string, string>;
  /** The example script the task builds on, embedded in the prompt. */
  example?: string;
  task(a: Record<string, string>): string;
}

const PROMPTS: PromptDef[] = [
  {
    name: "latency_report",
    title: "Latency report",
    description: "P50, P99 and error rate of every service over a window, flagging services whose P99 is above a threshold",
    arguments: [
      { name: "window", description: "Look-back window, e.g. 15m or 1h (default 1h)" },
      { name: "threshold", description: "Flag services whose P99 is above this, e.g. 300ms (default 500ms)" },
    ],
    defaults: { window: "1h", threshold: "500ms" },
    example: "latency-report.ts",
    task: (a) =>
      `Write a latency report of every service over the last ${a.window}: P50, P99 and error rate, slowest P99 first, ` +
      `flagging services whose P99 is above ${a.threshold}. Run the example script below with one run_script call ` +
      `(params {"window": "${a.window}", "threshold": "${a.threshold}"}), then summarise: which services are slow, and by how much.`,
  },
  {
    name: "correlation",
    title: "Cross-service correlation",
    description: "Which services are failing now, several at once (a cascade?), and does each one's error rate move with its hosts' CPU",
    arguments: [
      { name: "window", description: "Look-back window, e.g. 5m or 30m (default 30m)" },
      { name: "max_error_rate", description: "A service above this error rate is unhealthy, e.g. 1% (default 1%)" },
      { name: "services", description: "Comma-separated service names (default: every service)" },
    ],
    defaults: { window: "30m", max_error_rate: "1%" },
    example: "correlation-analysis.ts",
    task: (a) => {
      const params = { window: a.window, "max-error-rate": a.max_error_rate, ...(a.services ? { services: a.services } : {}) };
      return (
        `Find out which services are failing over the last ${a.window} (error rate above ${a.max_error_rate}), whether several fail at once ` +
        "(a possible cascade), and whether each one's errors per minute move with its hosts' CPU. Run the example script below with one " +
        `run_script call (params ${JSON.stringify(params)}; exit code 3 means it found a possible cascade), then explain the result ` +
        "and suggest where to look next (find_error_traces for the worst service)."
      );
    },
  },
  {
    name: "high_latency_check",
    title: "High-latency check of one service",
    description: "Is a service's P99 above a threshold, and if so, which of its requests are slow",
    arguments: [
      { name: "service", description: "Service name", required: true },
      { name: "threshold", description: "P99 limit, e.g. 500ms", required: true },
      { name: "window", description: "Look-back window, e.g. 5m or 1h (default 1h)" },
    ],
    defaults: { window: "1h" },
    task: (a) =>
      `Check whether ${a.service}'s P99 latency over the last ${a.window} is above ${a.threshold}. Call get_percentile ` +
      `(service "${a.service}", window "${a.window}"), and get_error_rate for context. If the P99 is above ${a.threshold}, call ` +
      `find_slow_traces (service "${a.service}", threshold "${a.threshold}", window "${a.window}", limit 10) and say which operations ` +
      "(root names) are slow, how slow, and whether the slow traces also failed. Answer in a few lines: above or below, by how much, and the evidence.",
  },
];

export function promptList(): Prompt[] {
  return PROMPTS.map(({ defaults: _d, example: _e, task: _t, ...p }) => p);
}

/** Thrown for an unknown prompt or a missing required argument: an MCP invalid-params error. */
export class PromptError extends Error {}

export function getPrompt(name: string, args: Record<string, string> | undefined, lib: Library): GetPromptResult {
  const p = PROMPTS.find((x) => x.name === name);
  if (!p) throw new PromptError(`unknown prompt "${name}"; the prompts are ${PROMPTS.map((x) => x.name).join(", ")}`);
  const given = args ?? {};
  for (const a of p.arguments ?? []) {
    if (a.required && !given[a.name]?.trim()) throw new PromptError(`${a.name}: required (${a.description})`);
  }
  for (const k of Object.keys(given)) {
    if (!(p.arguments ?? []).some((a) => a.name === k)) throw new PromptError(`${k}: not an argument of ${name}; it takes ${(p.arguments ?? []).map((a) => a.name).join(", ")}`);
  }
  const values = { ...p.defaults, ...Object.fromEntries(Object.entries(given).filter(([, v]) => v.trim() !== "")) };
  const messages: GetPromptResult["messages"] = [{ role: "user", content: { type: "text", text: p.task(values) } }];
  const example = p.example && lib.read(`coral://examples/${p.example}`);
  if (example) messages.push({ role: "user", content: { type: "resource", resource: example } });
  return { description: p.description, messages };
}
