import { setTimeout as sleep } from "node:timers/promises";
import { QueryService } from "../gen/coral/colony/v1/query_pb.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { expectedSeedSpans, LiveDemo, seedDemo } from "./demo/demo.js";
import type { IncidentSpec } from "./demo/incidents.js";
import { IngestPipeline } from "./ingest/otlp/pipeline.js";
import { listenOtlp, type OtlpReceiver } from "./ingest/otlp/receiver.js";
import { Writer } from "./ingest/writer.js";
import type { ReadStore, UserSql, WriteStore } from "./store/engine.js";
import { queryServiceImpl } from "./query/service.js";
import { healthRoutes } from "./server/health.js";
import { reflectionRoutes } from "./server/reflection.js";
import { listenError, parseListen } from "./server/address.js";
import { assertExposureAllowed, formatAddress } from "./server/auth.js";
import { ColonyStartError } from "./server/errors.js";
import { listen, type ConnectionLimits, type ListeningSocket } from "./server/listen.js";
import { Queries } from "./store/queries.js";
import { SqlRejected, SqlRunner } from "./store/readonly-sql.js";
import { InMemoryDatabaseError, Store } from "./store/store.js";
import { TypedReads, type ReadCost } from "./store/typed-reads.js";
import { lockHolder } from "./supervisor/process.js";

export { ColonyStartError };

export interface ColonyOptions {
  /** DuckDB database file, created if missing (unless `store` names a ClickHouse store). */
  db: string;
  /** A ClickHouse store instead of the DuckDB file: `clickhouse://USER@HOST:PORT/DB` or `chdb:DIR` (connection.ts). */
  store?: string;
  /** With a ClickHouse `store`: create tables `ON CLUSTER` this cluster (Replicated*MergeTree behind Distributed). */
  cluster?: string;
  /** The ClickHouse user's password; it reaches the worker over IPC, never through argv. */
  clickhousePassword?: string;
  /** With a ClickHouse `store`: read an OpenTelemetry Collector traces table read-only instead of the colony's tables (store/clickhouse/otel). */
  otelSchema?: boolean;
  /** With `otelSchema`: the exporter's traces table (default otel_traces). */
  otelTable?: string;
  /** `host:port` for the query API; port 0 picks a free one. */
  listen: string;
  token?: string;
  /** Seed realistic demo telemetry into an empty database; "live" keeps it flowing afterwards. */
  demo?: "live" | "static";
  /** With `demo`: stage an incident of this kind on payments in the seed's last 30 minutes. */
  demoIncident?: IncidentSpec;
  /** `host:port` for the OTLP/HTTP receiver, or "off". Default off here (the CLI turns it on). */
  otlp?: string;
  /** Largest OTLP request body, after decompression. */
  otlpMaxBodyBytes?: number;
  /** Bytes of OTLP request bodies held at once, read, decoded or waiting for commit (429 beyond); default 256 MiB. */
  otlpMaxInflightBytes?: number;
  /** OTLP items (spans, points) accepted but not yet committed before requests get 429. */
  otlpMaxQueued?: number;
  /** Timeouts and the connection cap of the query port (tests shorten them); see DEFAULT_LIMITS. */
  limits?: Partial<ConnectionLimits>;
  /** The same for the OTLP port; see DEFAULT_OTLP_LIMITS. */
  otlpLimits?: Partial<ConnectionLimits>;
  /** Largest query request message, after decompression (default 4 MiB). */
  readMaxBytes?: number;
  /**
   * Longest one query may run (default 30 s): a raw SQL query, or one read of a typed RPC (explain,
   * group-by, traces, percentiles, …). Past it DuckDB is interrupted and the caller gets
   * deadline_exceeded, saying what to narrow.
   */
  queryTimeoutMs?: number;
  /** DuckDB's memory ceiling (buffer manager): heavy raw SQL fails or spills beyond it. Default 2 GiB. */
  queryMemoryBytes?: number;
  /** Raw spans older than this are deleted (rollups are kept). Default 24h; 0 keeps them forever. */
  retentionMs?: number;
  /** Progress for humans (seeding, keeping data); the caller decides where it goes. */
  log?: (line: string) => void;
  /**
   * Sockets already listening on `listen` and `otlp`, kept by the supervisor from the colony's
   * previous worker (see colony/supervisor): accepted from instead of binding the ports again, so
   * clients that connected meanwhile are served, not refused.
   */
  sockets?: { query?: ListeningSocket; otlp?: ListeningSocket };
  /** Called when a query is abandoned while DuckDB is still inside it (see Colony.oldestRunawaySince). */
  onRunaway?: () => void;
}

/** How often `--demo` writes the traffic of the seconds since the previous tick. */
const LIVE_DEMO_TICK_MS = 5_000;

const DEFAULT_OTLP_MAX_BODY_BYTES = 16 * 2 ** 20;
export const DEFAULT_RETENTION_MS = 24 * 3_600_000;
export const DEFAULT_QUERY_MEMORY_BYTES = 2 * 2 ** 30;

export interface Colony {
  /** `host:port` actually listened on. */
  address: string;
  /** `host:port` of the OTLP/HTTP receiver, when it is on. */
  otlpAddress?: string;
  close(): Promise<void>;
  /**
   * After close: true when a query DuckDB cannot interrupt is still running. The process cannot
   * then exit normally (exit waits for libuv's threads, one of which is inside DuckDB); every
   * commit is durable by then, so ending it with SIGKILL loses nothing.
   */
  readonly stuck: boolean;
  /**
   * Answers every query running now (user SQL and typed reads) with `why` and interrupts it;
   * resolves with how many DuckDB is still inside shortly after (queries in an operator it cannot
   * interrupt).
   */
  stopUserSql(why: SqlRejected): Promise<number>;
  /** Since when (ms since the epoch) the oldest query DuckDB could not interrupt has been abandoned, if one runs. */
  readonly oldestRunawaySince: number | undefined;
  /** The listening sockets of the two ports (see ColonyOptions.sockets). */
  sockets: { query: ListeningSocket; otlp?: ListeningSocket };
}

/** Opens the store, seeds demo data when asked, and serves QueryService on one port. */
export async function startColony(o: ColonyOptions): Promise<Colony> {
  const log = o.log ?? (() => {});
  const { host, port } = parseListen(o.listen);
  const otlp = o.otlp && o.otlp !== "off" ? parseListen(o.otlp) : undefined;
  // Before opening (and perhaps seeding) the database, so a refused start costs nothing.
  assertExposureAllowed(host, port, o.token);
  if (otlp) assertExposureAllowed(otlp.host, otlp.port, o.token);
  const engine = o.store ? await (o.otelSchema ? openOtelEngine(o) : openClickHouseEngine(o)) : await openDuckDbEngine(o, log);
  const { writer, queries, sql, reads } = engine;
  const cleanups: (() => Promise<void>)[] = [];
  try {
    // Said before the work, not only after: a long backlog makes a silent start look hung.
    const pending = await writer.pendingMinutes();
    if (pending > 0) log(`rebuilding the rollups of ${pending} minute(s) the last run stored but had not merged (it did not stop cleanly)…`);
    const rebuilt = await writer.recover();
    if (rebuilt > 0) log(`rebuilt the rollups of ${rebuilt} minute(s)`);
    // Decided before the ports open (OTLP data arriving then must not make it look non-empty);
    // seeded after, so a port conflict is reported before minutes of seeding, not after.
    let seedNow = false;
    if (o.demo) {
      const existing = await queries.listServices({});
      seedNow = existing.length === 0;
      if (!seedNow) log(`${engine.name} already holds ${existing.length} services; keeping its data instead of seeding demo data`);
    }
    sql.onRunaway = o.onRunaway;
    reads.onRunaway = o.onRunaway;
    const server = await listen({
      host,
      port,
      socket: o.sockets?.query,
      token: o.token || undefined,
      routes: (router) => {
        router.service(QueryService, queryServiceImpl({ reads: (cost, signal, rejected) => reads.store(cost, signal, rejected), sql }));
        healthRoutes([QueryService])(router);
        reflectionRoutes([QueryService, Health])(router);
      },
      // Every request first brings the rollups up to date with every span already acknowledged
      // (Writer.settle), so an answer never lags data the colony has said it stored.
      interceptors: [(next) => async (req) => (await writer.settle(), next(req))],
      limits: o.limits,
      readMaxBytes: o.readMaxBytes,
    });
    cleanups.push(() => server.close());
    let receiver: OtlpReceiver | undefined;
    let pipeline: IngestPipeline | undefined;
    if (otlp) {
      pipeline = new IngestPipeline(writer, { maxQueued: o.otlpMaxQueued });
      try {
        receiver = await listenOtlp({
          host: otlp.host,
          port: otlp.port,
          token: o.token || undefined,
          pipeline,
          maxBodyBytes: o.otlpMaxBodyBytes ?? DEFAULT_OTLP_MAX_BODY_BYTES,
          maxInflightBytes: o.otlpMaxInflightBytes,
          limits: o.otlpLimits,
          socket: o.sockets?.otlp,
        });
      } catch (err) {
        throw listenError(err as NodeJS.ErrnoException, otlp.host, otlp.port, "--otlp");
      }
      cleanups.push(() => receiver!.close());
      cleanups.push(() => pipeline!.close());
    }
    let live: LiveDemo | undefined;
    if (seedNow) {
      const nowMs = Date.now();
      // No promise of how long: ~10 s on a quiet 2-core machine, up to a minute on a loaded one.
      log(`seeding three hours of demo telemetry: about ${(Math.round(expectedSeedSpans(nowMs) / 10_000) * 10_000).toLocaleString("en-US")} spans and their attributes, through the ingest path…`);
      const seedStart = performance.now();
      const seeded = await seedDemo(writer, { nowMs, incident: o.demoIncident });
      const seedS = ((performance.now() - seedStart) / 1000).toFixed(1);
      log(`seeded demo data: ${seeded.spans} spans from ${seeded.services.length} services (${seeded.services.join(", ")}) in ${seedS} s`);
      const i = seeded.incident;
      if (i) log(`staged incident: ${i.key}=${i.value} made ${Math.round(i.share * 100)}% of its ${i.service} requests ${i.effect === "slow" ? "slow" : "fail"} in the last 30 minutes — try: coral query explain ${i.service} ${i.effect === "slow" ? "--slow 1s" : "--errors"} --window 30m`);
      // Only a database seeded now gets live traffic: --demo must never add made-up spans to
      // data that was already there.
      if (o.demo === "live") {
        live = new LiveDemo(writer, nowMs);
        live.start(LIVE_DEMO_TICK_MS, (err) => log(`live demo traffic failed: ${err.message.split("\n")[0]}`));
        cleanups.push(() => live!.stop());
        log("live demo traffic continues while the colony runs");
      }
    }
    const retentionMs = o.retentionMs ?? DEFAULT_RETENTION_MS;
    let retention: NodeJS.Timeout | undefined;
    if (retentionMs > 0) {
      const sweep = () => {
        writer.deleteTracesBefore(Date.now() - retentionMs).catch((err: Error) => log(`retention sweep failed: ${err.message.split("\n")[0]}`));
      };
      sweep();
      retention = setInterval(sweep, Math.min(60_000, retentionMs)).unref();
      cleanups.push(async () => clearInterval(retention));
    }
    let closing: Promise<void> | undefined;
    let stuck = false;
    return {
      get stuck() {
        return stuck;
      },
      stopUserSql: async (why) => (await Promise.all([sql.stopAll(why), reads.stopAll(why)])).reduce((a, b) => a + b),
      sockets: { query: server.socket, otlp: receiver?.socket },
      get oldestRunawaySince() {
        const since = [sql.oldestRunawaySince, reads.oldestRunawaySince].filter((t) => t !== undefined);
        return since.length ? Math.min(...since) : undefined;
      },
      address: formatAddress(server.address.host, server.address.port),
      otlpAddress: receiver && formatAddress(receiver.address.host, receiver.address.port),
      close() {
        closing ??= (async () => {
          if (retention) clearInterval(retention);
          await live?.stop();
          // Both ports stop at once: no new data, no new queries. Queries in flight are cancelled
          // and their handlers awaited (briefly) before anything they read from is closed: a
          // StreamQuery left running would hold a DuckDB connection across the checkpoint and keep
          // the process alive after it. OTLP requests in flight get their data committed.
          await Promise.all([receiver?.close(), server.close()]);
          await pipeline?.close();
          // A query DuckDB cannot interrupt would make the checkpoint (and closing the database)
          // wait for it, possibly for hours: then the colony leaves without either. Every commit is
          // in the WAL already; the next start replays it.
          const sqlStopped = (await Promise.all([sql.close(), reads.close()])).every(Boolean);
          await writer.close();
          if (sqlStopped) await engine.close();
          else {
            stuck = true;
            log("a query DuckDB cannot interrupt is still running: stopping without a checkpoint (the next start replays the WAL)");
          }
        })();
        return closing;
      },
    };
  } catch (err) {
    for (const c of cleanups) await c().catch(() => {});
    await writer.close().catch(() => {});
    await engine.abort().catch(() => {});
    throw err;
  }
}

/** Queries under the colony's limits, as it manages them: stopped under memory pressure, runaways watched. */
interface Managed {
  onRunaway: (() => void) | undefined;
  readonly oldestRunawaySince: number | undefined;
  stopAll(why: SqlRejected): Promise<number>;
  /** False while a query the engine cannot interrupt is still running. */
  close(): Promise<boolean>;
}

/** User SQL as the colony manages it, beyond what the query handlers call (UserSql). */
interface ManagedSql extends UserSql, Managed {}

/** The typed RPCs' reads, each under the deadline and the caller's signal (QueryServiceDeps.reads). */
interface ManagedReads extends Managed {
  store(cost: ReadCost, signal: AbortSignal, rejected: (e: SqlRejected) => Error): ReadStore;
}

/** The store a colony runs on, DuckDB or ClickHouse: the query handlers and ingestion see only these. */
interface Engine {
  /** How log lines name the store. */
  name: string;
  writer: WriteStore;
  /** For the colony's own reads before it serves (the demo's check); the handlers read through `reads`. */
  queries: ReadStore;
  reads: ManagedReads;
  sql: ManagedSql;
  /** After a clean stop (DuckDB: checkpoint). */
  close(): Promise<void>;
  /** After a failed start. */
  abort(): Promise<void>;
}

async function openDuckDbEngine(o: ColonyOptions, log: (line: string) => void): Promise<Engine> {
  const store = await openStore(o.db, o.queryMemoryBytes ?? DEFAULT_QUERY_MEMORY_BYTES, log);
  return {
    name: o.db,
    writer: new Writer(store),
    queries: new Queries(store),
    sql: new SqlRunner(store, { timeoutMs: o.queryTimeoutMs }),
    // Connections of their own under the same deadline, not the Store's shared one: a slow read
    // must neither outlive its deadline nor hold up the reads behind it.
    reads: new TypedReads(store, { timeoutMs: o.queryTimeoutMs }),
    close: () => checkpointAndClose(store),
    abort: () => store.close(),
  };
}

/**
 * A colony on ClickHouse: connection.ts opens the client (its errors are already one line for the
 * user), schema.ts creates what is missing. DuckDB's code stays unloaded apart from what the
 * shared modules import.
 */
async function openClickHouseEngine(o: ColonyOptions): Promise<Engine> {
  const [{ parseStoreUrl, openClickHouse, StoreUrlError }, { createTables }, { ClickHouseWriter }, { ClickHouseReads }, { ClickHouseUserSql }, { ClickHouseTypedReads }] = await Promise.all([
    import("./store/clickhouse/connection.js"),
    import("./store/clickhouse/schema.js"),
    import("./store/clickhouse/writer.js"),
    import("./store/clickhouse/reads.js"),
    import("./store/clickhouse/user-sql.js"),
    import("./store/clickhouse/guard.js"),
  ]);
  const asStartError = (err: unknown) => (err instanceof StoreUrlError ? new ColonyStartError(err.message) : err);
  const target = (() => {
    try {
      return parseStoreUrl(o.store!);
    } catch (err) {
      throw asStartError(err);
    }
  })();
  const { client, database } = await openClickHouse(target, { password: o.clickhousePassword }).catch((err: unknown) => {
    throw asStartError(err);
  });
  try {
    await createTables(client, { database, cluster: o.cluster });
  } catch (err) {
    await client.close().catch(() => {});
    const { connectError } = await import("./store/clickhouse/connection.js");
    throw new ColonyStartError(`cannot create the colony's tables: ${connectError(target, err).message}`);
  }
  // User SQL gets a client of its own: on chdb a session of its own, so a failed user query's
  // partial output (which chdb leaves in the session) never reaches the colony's reads and writes.
  const sqlClient = await openClickHouse(target, { password: o.clickhousePassword }).then(
    (c) => c.client,
    async (err: unknown) => {
      await client.close().catch(() => {});
      throw asStartError(err);
    },
  );
  const closeBoth = async () => {
    await Promise.all([client.close(), sqlClient.close()]);
  };
  const maxMemoryBytes = o.queryMemoryBytes ?? DEFAULT_QUERY_MEMORY_BYTES;
  // The typed RPCs' reads under the deadline and their caller's signal, on chdb each on a session
  // of its own (guard.ts): a failed read's leftovers must reach neither the writer nor another read.
  const reads = new ClickHouseTypedReads(
    { connect: async () => (await openClickHouse(target, { password: o.clickhousePassword })).client, database, embedded: target.kind === "chdb" },
    { timeoutMs: o.queryTimeoutMs, maxMemoryBytes },
  );
  return {
    name: target.kind === "chdb" ? `chdb:${target.path}` : `${target.url}/${database}`,
    writer: new ClickHouseWriter(client, { database, cluster: o.cluster }),
    queries: new ClickHouseReads(client, database),
    reads,
    sql: new ClickHouseUserSql(sqlClient, database, { timeoutMs: o.queryTimeoutMs, maxMemoryBytes }, { embedded: target.kind === "chdb" }),
    close: closeBoth,
    abort: async () => {
      await reads.close(0);
      await closeBoth();
    },
  };
}

async function openOtelEngine(o: ColonyOptions): Promise<Engine> {
  const { otelColonyEngine } = await import("./store/clickhouse/otel/engine.js");
  return otelColonyEngine(o, o.queryMemoryBytes ?? DEFAULT_QUERY_MEMORY_BYTES);
}

/**
 * Store.open with DuckDB's errors turned into one line that names the file and the way out.
 * DuckDB refuses a file it cannot lock or does not recognise before writing to it, so a failed
 * open leaves the existing file as it was.
 */
async function openStore(path: string, memoryLimitBytes: number, log: (line: string) => void): Promise<Store> {
  const waitUntil = Date.now() + EXITING_HOLDER_WAIT_MS;
  for (let waited = false; ; waited = true) {
    try {
      return await Store.open(path, { memoryLimitBytes, log });
    } catch (err) {
      const pid = /\(PID (\d+)\)/.exec(err instanceof Error ? err.message : String(err))?.[1];
      const holder = pid === undefined ? undefined : lockHolder(Number(pid));
      if (!holder?.exiting || Date.now() > waitUntil) throw openError(path, err, holder?.pid);
      if (!waited) log(`waiting for PID ${holder.pid}, the worker of a colony that was stopped, to let go of ${path}…`);
      await sleep(100);
    }
  }
}

/**
 * How long a start waits for the worker of a killed colony to release the database: it notices
 * its supervisor is gone and ends itself at once, so this is ample, and a restart right after a
 * kill -9 of the colony just works.
 */
const EXITING_HOLDER_WAIT_MS = 10_000;

function openError(path: string, err: unknown, holderPid: number | undefined): ColonyStartError {
  if (err instanceof InMemoryDatabaseError) {
    return new ColonyStartError(
      path === ""
        ? "--db is empty — name a database file, e.g. --db ./coral.duckdb"
        : `${path} is not a database file (DuckDB would keep the data only in memory; ${path} is left untouched) — point --db at a .duckdb file`,
    );
  }
  const msg = err instanceof Error ? err.message : String(err);
  if (/Could not set lock|Conflicting lock/i.test(msg)) {
    return new ColonyStartError(
      `database ${path} is in use by another process${holderPid ? ` (PID ${holderPid})` : ""} — is another colony running? Stop it or use --db OTHER.duckdb`,
    );
  }
  if (/not a valid DuckDB database file/i.test(msg)) {
    return new ColonyStartError(`${path} is not a DuckDB database (left untouched) — point --db at another file`);
  }
  if (/No such file or directory/i.test(msg)) {
    return new ColonyStartError(`cannot create database ${path}: its directory does not exist`);
  }
  if (/Permission denied|Read-only file system/i.test(msg)) {
    return new ColonyStartError(`cannot open database ${path}: permission denied`);
  }
  if (/Is a directory/i.test(msg)) {
    return new ColonyStartError(`cannot open database ${path}: it is a directory, not a file`);
  }
  return new ColonyStartError(`cannot open database ${path}: ${msg.split("\n")[0]}`);
}

/** Folding the WAL into the file on the way out means the next start need not replay it. */
async function checkpointAndClose(store: Store): Promise<void> {
  try {
    const conn = await store.connect();
    try {
      await conn.run("CHECKPOINT");
    } finally {
      conn.closeSync();
    }
  } finally {
    await store.close();
  }
}
