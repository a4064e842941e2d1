import { Command, Option } from "clipanion";
import { INCIDENT_KINDS, parseIncident, type IncidentSpec } from "../../colony/demo/incidents.js";
import { runLoad, type LoadStats } from "../../colony/demo/load.js";
import { parseDurationMs, UnitParseError } from "../../surface/units.js";
import { CoralCommand } from "../runtime/command.js";
import { CliError, UsageError } from "../runtime/errors.js";
import { ExitCode } from "../runtime/exit.js";
import { numberFlag } from "../runtime/number-flag.js";
import { resolveToken } from "../runtime/token.js";

export class DemoLoadCommand extends CoralCommand {
  static override paths = [["demo", "load"]];

  static override usage = Command.Usage({
    category: "Colony",
    description: "send live demo traffic to a colony over OTLP/HTTP",
    details: `
      Generates the demo shop's traces (frontend, orders, payments, inventory, auth, legacy-api:
      the same services, latencies and errors as \`coral colony start --demo\`) as they happen, and
      sends them as OTLP/HTTP protobuf to \`--otlp URL\` (the colony's receiver, or anything else that
      speaks OTLP/HTTP) at \`--rate\` spans per second, in batches of \`--batch\`.

      Spans count as sent once acknowledged. 429/503 answers are retried after their Retry-After;
      anything else refused counts as rejected. It runs for \`--duration\` seconds, or until Ctrl-C,
      then prints \`sent N spans in S s (R spans/s), X rejected\`. \`--rate max\` sends as fast as the
      receiver acknowledges (a throughput test). The traffic is the same for the same \`--seed\`.

      \`--incident KIND\` stages one cause of slow or failing payments requests for the whole run: a
      pod (\`k8s.pod.name\`), a region (\`cloud.region\`), a route (\`http.route\`), a release
      (\`service.version\`) or a customer tier (\`app.customer.tier\`), among other values of those
      span attributes that behave normally. \`:slow\` or \`:errors\` after the kind picks the effect
      (\`--incident pod:slow\`). It prints the culprit, for checking \`coral query explain\`.

      A colony with a token wants it on every request: give it with \`--token-file FILE\` or
      \`CORAL_TOKEN\` (\`--token TOKEN\` works too, but every local user can read it in \`ps\`).
    `,
    examples: [
      ["Fill a local colony at 1,000 spans/s", "$0 demo load --otlp 127.0.0.1:4318 --rate 1000"],
      ["Throughput test for 10 seconds", "$0 demo load --otlp 127.0.0.1:4318 --rate max --duration 10s"],
      ["Stage a bad pod, then explain it", "$0 demo load --otlp 127.0.0.1:4318 --incident pod --duration 2m"],
    ],
  });

  static placeholders = { "--otlp": "host:port", "--duration": "duration" };

  otlp = Option.String("--otlp", "127.0.0.1:4318", {
    description: "the OTLP/HTTP receiver, HOST:PORT as given to `colony start --otlp` or an http:// URL (spans are posted to /v1/traces)",
  });
  rate = Option.String("--rate", "1000", { description: "spans per second, or max" });
  duration = Option.String("--duration", { description: "how long to run, e.g. 10s or 5m; a bare number is seconds (default: until Ctrl-C)" });
  batch = Option.String("--batch", "512", { description: "spans per request" });
  concurrency = Option.String("--concurrency", "4", { description: "requests in flight at once" });
  seed = Option.String("--seed", "42", { description: "seed of the traffic generator" });
  incident = Option.String("--incident", {
    description: `stage an incident while the load runs, one cause making payments slow or failing: ${INCIDENT_KINDS.join(", ")}, optionally :slow or :errors (e.g. pod:slow); the seed picks the culprit`,
  });
  token = Option.String("--token", {
    description: "bearer token; visible to other users in `ps`, prefer --token-file or $CORAL_TOKEN",
  });
  tokenFile = Option.String("--token-file", { description: "file holding the bearer token (default: $CORAL_TOKEN)" });

  async run(): Promise<number> {
    const rate = this.rate.trim() === "max" ? Infinity : numberFlag("--rate", this.rate, { min: 1 });
    const durationS = this.duration === undefined ? Infinity : seconds("--duration", this.duration);
    // Beyond these a run only exhausts the sender's memory or sockets.
    const batch = numberFlag("--batch", this.batch, { min: 1, max: 100_000, integer: true });
    const concurrency = numberFlag("--concurrency", this.concurrency, { min: 1, max: 1024, integer: true });
    const seed = numberFlag("--seed", this.seed, { min: 0, integer: true });
    let incident: IncidentSpec | undefined;
    if (this.incident !== undefined) {
      try {
        incident = parseIncident(this.incident);
      } catch (err) {
        throw new UsageError(`--incident: ${(err as Error).message}`);
      }
    }
    const url = otlpUrl(this.otlp);
    const { stdout, stderr } = this.context;
    const token = resolveToken({ token: this.token, tokenFile: this.tokenFile }, stderr);
    const abort = new AbortController();
    const onSignal = () => abort.abort();
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    const line = (s: LoadStats) =>
      `sent ${s.sent} spans in ${s.seconds.toFixed(1)} s (${Math.round(s.sent / Math.max(s.seconds, 1e-9))} spans/s), ${s.rejected} rejected${s.retried ? `, ${s.retried} requests retried after back-pressure` : ""}`;
    try {
      const stats = await runLoad({
        url,
        rate,
        durationS,
        batch,
        seed,
        incident,
        onIncident: (i) =>
          stderr.write(
            `staged incident: ${i.key}=${i.value} makes ${Math.round(i.share * 100)}% of its ${i.service} requests ${i.effect === "slow" ? "slow" : "fail"} — try: coral query explain ${i.service} ${i.effect === "slow" ? "--slow 1s" : "--errors"} --window 5m\n`,
          ),
        concurrency,
        token,
        signal: abort.signal,
        progress: (stderr as { isTTY?: boolean }).isTTY ? (s) => stderr.write(`\r${line(s)}\x1b[K`) : undefined,
      });
      if ((stderr as { isTTY?: boolean }).isTTY) stderr.write("\r\x1b[K");
      stdout.write(`${line(stats)}\n`);
      return stats.rejected > 0 ? ExitCode.error : ExitCode.ok;
    } catch (err) {
      const stats = (err as { stats?: LoadStats }).stats;
      if (stats) stdout.write(`${line(stats)}\n`);
      throw new CliError((err as Error).message);
    } finally {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    }
  }
}

/** `--otlp` as `colony start` takes it (HOST:PORT) or as a URL; either way an http:// base URL. */
function otlpUrl(text: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`;
  let u: URL;
  try {
    u = new URL(withScheme);
  } catch {
    throw new UsageError(`--otlp: "${text}" is neither HOST:PORT nor an http:// URL`);
  }
  if (u.protocol !== "http:") throw new UsageError(`--otlp: "${text}": only http:// is supported (the receiver speaks plain HTTP)`);
  return u.href.replace(/\/$/, "");
}

/** A duration flag in seconds: "10s", "5m", or a bare number of seconds as before. */
function seconds(flag: string, text: string): number {
  try {
    const v = /^\s*\d+(\.\d+)?\s*$/.test(text) ? Number(text) : parseDurationMs(text) / 1000;
    if (v < 0) throw new UnitParseError(`"${text}" is negative`);
    return v;
  } catch (err) {
    throw new UsageError(`${flag}: ${(err as Error).message}`);
  }
}
