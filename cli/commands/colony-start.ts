import { Command, Option } from "clipanion";
import { parseDurationMs, parseNumber } from "../../surface/units.js";
import { CoralCommand } from "../runtime/command.js";
import { CliError, UsageError } from "../runtime/errors.js";
import { ExitCode } from "../runtime/exit.js";
import { resolveToken } from "../runtime/token.js";
import { WORKER_FLAG } from "../../colony/supervisor/process.js";
import { INCIDENT_KINDS, parseIncident, type IncidentSpec } from "../../colony/demo/incidents.js";

export class ColonyStartCommand extends CoralCommand {
  static override paths = [["colony", "start"]];

  static override usage = Command.Usage({
    category: "Colony",
    description: "run a colony: store telemetry in DuckDB (or ClickHouse) and serve the query API",
    details: `
      Opens (or creates) the DuckDB database file and serves QueryService on one port, speaking
      Connect, gRPC and gRPC-web over HTTP/1.1 and HTTP/2 alike.

      It also receives telemetry over OTLP/HTTP (protobuf or JSON, optionally gzip) on its own port,
      \`--otlp\` (default 127.0.0.1:4318, the OpenTelemetry default; \`--otlp off\` disables it):
      point an OpenTelemetry SDK or Collector at \`http://HOST:PORT\` (see docs/ingestion.md). Raw spans
      and trace summaries older than \`--retention\` are deleted; per-minute rollups are kept.

      When ready it prints \`otlp listening on HOST:PORT\` (if on), then \`colony listening on HOST:PORT
      (db FILE)\` (or \`(store URL)\`) to stdout; everything else goes to stderr. Ctrl-C (SIGINT) or SIGTERM stops it cleanly and checkpoints the database.

      The colony runs as a worker process under this one, which keeps the ports open and restarts
      the worker when user SQL cannot be stopped otherwise: when its memory passes \`--memory-limit\`
      (user SQL is stopped first; the worker is restarted if that does not bring it back), or when a
      query DuckDB cannot interrupt runs on past its \`--query-timeout\`. A restart takes about a
      second; acknowledged data is never lost, clients connecting meanwhile wait, and each restart is
      logged on stderr with its reason.

      \`--demo\` fills an empty database with three hours of realistic, deterministic telemetry
      (payments, orders, inventory, ...) and keeps the demo traffic flowing while the colony runs,
      so every \`coral query\` command has something to show, for recent windows too. A database that
      already holds data is kept as it is and gets no demo traffic. \`--demo-static\` seeds without the
      live traffic, for numbers that do not move.

      \`--store URL\` keeps the data in ClickHouse instead of a DuckDB file, with the same tables, API and
      answers: \`clickhouse://USER@HOST:8123/DB\` (HTTP), \`clickhouses://USER@HOST:8443/DB\` (HTTPS), or
      \`chdb:DIR\` (ClickHouse embedded in the colony, for trials and tests; needs the chdb package).
      The password comes from \`CORAL_CLICKHOUSE_PASSWORD\` or \`--clickhouse-password-file FILE\`, never
      from the URL. Missing tables are created on start (\`--cluster NAME\`: \`ON CLUSTER\`, replicated,
      behind Distributed tables). Several colonies may share one ClickHouse, e.g. behind a load
      balancer; see docs/scale-out.md. \`--otel-schema\` instead reads the traces table the OpenTelemetry
      Collector's ClickHouse exporter writes (\`--otel-table\`, default otel_traces), read-only: no
      OTLP, no demo, no retention.

      Listening beyond loopback (e.g. \`0.0.0.0\`) requires a token: clients must then send
      \`authorization: Bearer TOKEN\`, on every protocol. Give it with \`--token-file FILE\` (one token,
      surrounding whitespace ignored; keep the file \`chmod 600\`) or \`CORAL_TOKEN\`. \`--token TOKEN\`
      works too, but every local user can read it in \`ps\`.
    `,
    examples: [
      ["Try Coral on demo data", "$0 colony start --demo"],
      ["Receive OTLP on another port and keep raw spans for 3 days", "$0 colony start --otlp 127.0.0.1:14318 --retention 3d"],
      ["Keep the data somewhere specific, on another port", "$0 colony start --db /var/lib/coral/coral.duckdb --listen 127.0.0.1:9191"],
      ["Keep the data in ClickHouse", "CORAL_CLICKHOUSE_PASSWORD=... $0 colony start --store clickhouse://coral@ch.internal:8123/coral"],
      ["Query the OpenTelemetry Collector's ClickHouse traces, read-only", "$0 colony start --store clickhouse://reader@ch.internal:8123/otel --otel-schema"],
      ["Serve the network, with a token", "(umask 077; openssl rand -hex 16 > coral.token) && $0 colony start --listen 0.0.0.0:9090 --token-file coral.token"],
    ],
  });

  db = Option.String("--db", {
    description: "DuckDB database file (created if missing; default ./coral.duckdb)",
  });
  store = Option.String("--store", {
    description: "keep the data in ClickHouse instead: clickhouse://USER@HOST:8123/DB, clickhouses://USER@HOST:8443/DB (HTTPS) or chdb:DIR (embedded)",
  });
  cluster = Option.String("--cluster", {
    description: "with --store clickhouse://…: create the tables ON CLUSTER NAME (Replicated*MergeTree behind Distributed tables)",
  });
  clickhousePasswordFile = Option.String("--clickhouse-password-file", {
    description: "with --store clickhouse://…: file holding the ClickHouse user's password (default: $CORAL_CLICKHOUSE_PASSWORD)",
  });
  otelSchema = Option.Boolean("--otel-schema", false, {
    description: "with --store: read the OpenTelemetry Collector ClickHouse exporter's traces table, read-only (no OTLP, no retention; see docs/scale-out.md)",
  });
  otelTable = Option.String("--otel-table", {
    description: "with --otel-schema: the exporter's traces table in the store's database (default otel_traces)",
  });
  listen = Option.String("--listen", "127.0.0.1:9090", {
    description: "HOST:PORT for the query API (default 127.0.0.1:9090; port 0 picks a free port)",
  });
  token = Option.String("--token", {
    description: "bearer token clients must send; visible to other users in `ps`, prefer --token-file or $CORAL_TOKEN",
  });
  tokenFile = Option.String("--token-file", {
    description: "file holding the bearer token clients must send (default: $CORAL_TOKEN; a token is required beyond loopback)",
  });
  otlp = Option.String("--otlp", OTLP_DEFAULT, {
    description: "HOST:PORT for the OTLP/HTTP receiver (default 127.0.0.1:4318; port 0 picks a free port), or off",
  });
  otlpMaxBody = Option.String("--otlp-max-body", {
    description: "largest OTLP request body in bytes, after decompression (413 beyond; default 16 MiB)",
  });
  otlpMaxInflight = Option.String("--otlp-max-inflight", {
    description: "bytes of OTLP request bodies held at once, over all clients, while read, decoded or committed (429 with Retry-After beyond; default 256 MiB)",
  });
  queryTimeout = Option.String("--query-timeout", "30s", {
    description: "longest one query may run: raw SQL (ExecuteQuery, StreamQuery, db.query) or a read of a typed query (explain, group-by, traces, …); past it, deadline_exceeded (default 30s)",
  });
  queryMemory = Option.String("--query-memory", "2GiB", {
    description: "memory ceiling for DuckDB (hash tables, sorts, cache): raw SQL that needs more fails with resource_exhausted (default 2GiB; e.g. 512MiB, 8GiB)",
  });
  retention = Option.String("--retention", RETENTION_DEFAULT, {
    description: "how long raw spans are kept, e.g. 24h (the default) or 7d (0 keeps them forever; rollups are always kept)",
  });
  demo = Option.Boolean("--demo", false, {
    description: "seed realistic demo telemetry into an empty database and keep it flowing",
  });
  demoStatic = Option.Boolean("--demo-static", false, {
    description: "with --demo: seed only, no live traffic afterwards (numbers that do not move, e.g. for tests)",
  });
  demoIncident = Option.String("--demo-incident", {
    description: `with --demo: stage an incident in the seed's last 30 minutes, one cause making payments slow or failing: ${INCIDENT_KINDS.join(", ")}, optionally :slow or :errors (e.g. pod:slow)`,
  });
  memoryLimit = Option.String("--memory-limit", {
    description: `resident memory of the colony's worker process beyond which user SQL is stopped, and the worker restarted if that does not free it (default --query-memory + ${OWN_MEMORY_TEXT})`,
  });
  // The colony proper, started by the supervisor (this command without the flag); see colony/supervisor.
  supervisedWorker = Option.Boolean(WORKER_FLAG, false, { hidden: true });

  /** --store and its companions, checked before anything starts (usage errors, exit 2). */
  private async storeOptions(): Promise<{ store?: string; cluster?: string; clickhousePassword?: string; otelSchema?: boolean; otelTable?: string }> {
    if (this.store === undefined) {
      for (const [flag, v] of [["--cluster", this.cluster], ["--clickhouse-password-file", this.clickhousePasswordFile], ["--otel-schema", this.otelSchema || undefined]] as const) {
        if (v !== undefined) throw new UsageError(`${flag} applies to a ClickHouse store: add --store clickhouse://USER@HOST:8123/DB`);
      }
    }
    if (this.otelTable !== undefined && !this.otelSchema) throw new UsageError("--otel-table names the OpenTelemetry Collector's table: add --otel-schema");
    if (this.store === undefined) return {};
    const otel = this.otelSchema ? await this.otelOptions() : {};
    if (this.db !== undefined) throw new UsageError("--db and --store: give only one of them (--db is a DuckDB file, --store a ClickHouse store)");
    const { parseStoreUrl, readPassword, StoreUrlError } = await import("../../colony/store/clickhouse/connection.js");
    try {
      const target = parseStoreUrl(this.store);
      if (target.kind === "chdb") {
        if (this.cluster !== undefined) throw new UsageError("--cluster needs a ClickHouse server (clickhouse://…); embedded chdb is a single node");
        if (this.clickhousePasswordFile !== undefined) throw new UsageError("--clickhouse-password-file: embedded chdb has no users or passwords");
        return { store: this.store, ...otel };
      }
      if (this.cluster !== undefined && !CLUSTER_NAME.test(this.cluster)) {
        throw new UsageError(`--cluster: ${JSON.stringify(this.cluster.slice(0, 80))} is not a cluster name (letters, digits, _ . -)`);
      }
      return { store: this.store, cluster: this.cluster, clickhousePassword: readPassword(this.clickhousePasswordFile), ...otel };
    } catch (err) {
      throw err instanceof StoreUrlError ? new UsageError(err.message) : err;
    }
  }

  /**
   * --otel-schema reads a table the Collector writes and its TTL ages: the flags that would write or
   * delete are refused. Their defaults (OTLP on 127.0.0.1:4318, 24h retention) are turned off instead.
   */
  private async otelOptions(): Promise<{ otelSchema: true; otelTable?: string }> {
    const refuse = (flag: string, why: string) => new UsageError(`${flag} does not go with --otel-schema: ${why}`);
    if (this.cluster !== undefined) throw refuse("--cluster", "the colony creates no tables on the Collector's database");
    if (this.demo) throw refuse("--demo", "the colony stores nothing in the Collector's database");
    if (this.otlp !== OTLP_DEFAULT && this.otlp !== "off") throw refuse("--otlp", "the colony stores nothing; send telemetry to the Collector");
    if (this.retention !== RETENTION_DEFAULT) throw refuse("--retention", "the colony deletes nothing; the exporter's ttl setting ages the table");
    if (this.otelTable !== undefined) {
      const { checkTableName, OtelTableError } = await import("../../colony/store/clickhouse/otel/source.js");
      try {
        checkTableName(this.otelTable);
      } catch (err) {
        throw err instanceof OtelTableError ? new UsageError(err.message) : err;
      }
    }
    return { otelSchema: true, otelTable: this.otelTable };
  }

  async run(): Promise<number> {
    if (this.supervisedWorker) {
      // DuckDB and the server load only here: every other command, the supervisor included, starts without them.
      const { runWorker } = await import("../../colony/supervisor/worker.js");
      return runWorker();
    }
    const [{ parseListen }, { ColonyStartError }, { superviseColony }] = await Promise.all([
      import("../../colony/server/address.js"),
      import("../../colony/server/errors.js"),
      import("../../colony/supervisor/supervisor.js"),
    ]);
    try {
      parseListen(this.listen);
    } catch (err) {
      throw new UsageError(`--listen: ${(err as Error).message}`);
    }
    if (this.otlp !== "off") {
      try {
        parseListen(this.otlp);
      } catch (err) {
        throw new UsageError(`--otlp: ${(err as Error).message} (or off)`);
      }
    }
    let retentionMs: number;
    try {
      retentionMs = this.retention.trim() === "0" ? 0 : parseDurationMs(this.retention);
    } catch (err) {
      throw new UsageError(`--retention: ${(err as Error).message}`);
    }
    if (retentionMs > 100 * 365 * 86_400_000) {
      throw new UsageError(`--retention: "${this.retention}" is longer than 100 years; 0 keeps raw spans forever`);
    }
    let maxBody: number | undefined;
    try {
      maxBody = this.otlpMaxBody === undefined ? undefined : parseNumber(this.otlpMaxBody, true);
    } catch (err) {
      throw new UsageError(`--otlp-max-body: ${(err as Error).message}`);
    }
    if (maxBody !== undefined && maxBody <= 0) throw new UsageError(`--otlp-max-body: must be a positive number of bytes`);
    let maxInflight: number | undefined;
    try {
      maxInflight = this.otlpMaxInflight === undefined ? undefined : parseNumber(this.otlpMaxInflight, true);
    } catch (err) {
      throw new UsageError(`--otlp-max-inflight: ${(err as Error).message}`);
    }
    if (maxInflight !== undefined && maxInflight <= 0) throw new UsageError(`--otlp-max-inflight: must be a positive number of bytes`);
    let queryTimeoutMs: number;
    try {
      queryTimeoutMs = parseDurationMs(this.queryTimeout);
    } catch (err) {
      throw new UsageError(`--query-timeout: ${(err as Error).message}`);
    }
    if (queryTimeoutMs < 1 || queryTimeoutMs > 24 * 3_600_000) throw new UsageError(`--query-timeout: "${this.queryTimeout}" must be between 1ms and 24h`);
    const queryMemoryBytes = parseBytes(this.queryMemory);
    if (queryMemoryBytes === undefined) throw new UsageError(`--query-memory: "${this.queryMemory}" is not a size; write it like 512MiB or 4GiB`);
    if (queryMemoryBytes < 64 * 2 ** 20) throw new UsageError(`--query-memory: "${this.queryMemory}" is below 64MiB, too little for DuckDB to work in`);
    let memoryLimitBytes = queryMemoryBytes + OWN_MEMORY_BYTES;
    if (this.memoryLimit !== undefined) {
      const limit = parseBytes(this.memoryLimit);
      if (limit === undefined) throw new UsageError(`--memory-limit: "${this.memoryLimit}" is not a size; write it like 1GiB or 8GiB`);
      if (limit < queryMemoryBytes + MIN_OWN_MEMORY_BYTES) {
        throw new UsageError(
          `--memory-limit: "${this.memoryLimit}" leaves less than ${MIN_OWN_MEMORY_TEXT} beyond --query-memory (${this.queryMemory}) for the colony itself; raise it or lower --query-memory`,
        );
      }
      memoryLimitBytes = limit;
    }
    let demoIncident: IncidentSpec | undefined;
    if (this.demoIncident !== undefined) {
      if (!this.demo) throw new UsageError("--demo-incident stages an incident in the demo seed: add --demo (and --demo-static for numbers that do not move)");
      try {
        demoIncident = parseIncident(this.demoIncident);
      } catch (err) {
        throw new UsageError(`--demo-incident: ${(err as Error).message}`);
      }
    }
    const store = await this.storeOptions();
    const db = this.db ?? "./coral.duckdb";
    const token = resolveToken({ token: this.token, tokenFile: this.tokenFile }, this.context.stderr);
    const { stdout, stderr } = this.context;

    // Listen for signals before starting: a Ctrl-C during a long demo seed must still end cleanly.
    let onSignal: ((signal: NodeJS.Signals) => void) | undefined;
    let stopRequested = false;
    let colony: Awaited<ReturnType<typeof superviseColony>> | undefined;
    const stopped = new Promise<void>((resolve) => {
      onSignal = (signal) => {
        if (stopRequested) {
          // A second Ctrl-C means "now": the user has stopped waiting for a clean shutdown.
          stderr.write("coral: stopping without a clean shutdown\n");
          colony?.kill();
          process.exit(signal === "SIGINT" ? 130 : 143);
        }
        stopRequested = true;
        resolve();
      };
    });
    process.on("SIGINT", onSignal!);
    process.on("SIGTERM", onSignal!);

    const asCliError = (err: unknown) => (err instanceof ColonyStartError ? new CliError(err.message) : err);
    try {
      colony = await superviseColony({
        colony: {
          db,
          ...store,
          listen: this.listen,
          token,
          demo: this.demo ? (this.demoStatic ? "static" : "live") : undefined,
          demoIncident,
          otlp: store.otelSchema ? "off" : this.otlp,
          otlpMaxBodyBytes: maxBody,
          otlpMaxInflightBytes: maxInflight,
          retentionMs: store.otelSchema ? 0 : retentionMs,
          queryTimeoutMs,
          queryMemoryBytes,
        },
        memoryLimitBytes,
        log: (line) => stderr.write(`${line}\n`),
      }).catch((err: unknown) => {
        throw asCliError(err);
      });
      if (colony.otlpAddress) stdout.write(`otlp listening on ${colony.otlpAddress}\n`);
      stdout.write(`colony listening on ${colony.address} (${store.store ? `store ${store.store}` : `db ${db}`})\n`);
      // For a person at a terminal: what to do next. Scripts read the two lines above.
      if ((stderr as NodeJS.WriteStream).isTTY) stderr.write(nextSteps(colony.address, colony.otlpAddress));
      // Ended by a signal, or by a worker that could not be started again (its error, exit 1).
      await Promise.race([stopped, colony.ended.catch((err: unknown) => Promise.reject(asCliError(err)))]);
      stderr.write("stopping colony\n");
      await colony.stop();
      return ExitCode.ok;
    } finally {
      process.off("SIGINT", onSignal!);
      process.off("SIGTERM", onSignal!);
    }
  }
}

const OTLP_DEFAULT = "127.0.0.1:4318";
const RETENTION_DEFAULT = "24h";

/** Names of ClickHouse clusters, as they appear in its configuration (quoted in the DDL, but never needing it). */
const CLUSTER_NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,127}$/;

/**
 * What the colony needs beyond DuckDB's memory_limit, for the default --memory-limit: Node and its
 * heap, DuckDB outside its buffer manager, and OTLP bodies held and decoded (--otlp-max-inflight,
 * 256 MiB, peaks at ~860 MiB under 40 clients sending 15 MiB bodies at once; see docs/reliability.md).
 */
const OWN_MEMORY_BYTES = 2 ** 30;
const OWN_MEMORY_TEXT = "1GiB";
/** The least --memory-limit may leave beyond --query-memory: an idle colony with the demo data takes ~110 MiB. */
const MIN_OWN_MEMORY_BYTES = 256 * 2 ** 20;
const MIN_OWN_MEMORY_TEXT = "256MiB";

const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40 };

/** `512MiB`, `4GB`, `1073741824`: bytes, or undefined when it is not a size. */
function parseBytes(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = SIZE_UNITS[(m?.[2] || "b").toLowerCase()];
  if (!m || unit === undefined) return undefined;
  const n = Number(m[1]) * unit;
  return Number.isFinite(n) && n <= 2 ** 50 ? Math.floor(n) : undefined;
}

/** Where data goes in and how to look at it, as a new user needs it after the colony starts. */
export function nextSteps(address: string, otlpAddress: string | undefined): string {
  const colonyFlag = address === "127.0.0.1:9090" ? "" : ` --colony ${address}`;
  const lines = [""];
  if (otlpAddress) {
    lines.push(
      `Send telemetry: point an OpenTelemetry SDK or Collector at http://${otlpAddress}`,
      `  (OTEL_EXPORTER_OTLP_ENDPOINT=http://${otlpAddress}), or try: coral demo load --otlp ${otlpAddress}`,
    );
  }
  lines.push(`Look at it: coral query services${colonyFlag}   ·   Stop: Ctrl-C`, "");
  return lines.join("\n");
}
