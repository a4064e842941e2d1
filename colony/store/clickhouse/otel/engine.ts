// A colony over an OpenTelemetry Collector traces table (`coral colony start --store … --otel-schema`):
// the typed reads and users' SQL of a ClickHouse colony, nothing that writes. No DDL, no migrations,
// no OTLP ingest, no demo seed, no retention (the exporter's TTL is the table's own). The colony's
// start-up checks the table once (source.ts) and refuses with one line if it is not the exporter's.
import type { ClickHouseClient } from "@clickhouse/client";
import { ColonyStartError } from "../../../server/errors.js";
import type { PreparedBatch, ReadStore, WriteStore } from "../../engine.js";
import type { SqlRejected } from "../../readonly-sql.js";
import { readStoreThrough, type ReadCost } from "../../typed-reads.js";
import { connectError, openClickHouse, parseStoreUrl, StoreUrlError } from "../connection.js";
import { ClickHouseReads } from "../reads.js";
import { ClickHouseTypedReads, type ClickHouseReadLimits, type ClickHouseReadOptions } from "../guard.js";
import { ClickHouseUserSql } from "../user-sql.js";
import { OtelReads } from "./reads.js";
import { checkTableName, DEFAULT_OTEL_TABLE, inspectOtelTable, OtelTableError, type OtelSource } from "./source.js";

/** Why nothing is stored: every write path says it. */
export const READ_ONLY = "this colony reads an OpenTelemetry Collector table (--otel-schema) and stores nothing";

/** The write side of a colony that never writes: nothing pending, nothing to recover, every write refused. */
export class NoWrites implements WriteStore {
  private refuse(): never {
    throw new Error(READ_ONLY);
  }
  prepareSpans(): PreparedBatch {
    return this.refuse();
  }
  async writePrepared(): Promise<void> {
    this.refuse();
  }
  async writeSpans(): Promise<void> {
    this.refuse();
  }
  async writeMetrics(): Promise<void> {
    this.refuse();
  }
  async writeLatency(): Promise<void> {
    this.refuse();
  }
  async writeHostSamples(): Promise<void> {
    this.refuse();
  }
  async writeResources(): Promise<void> {
    this.refuse();
  }
  /** Retention is the exporter's TTL: nothing is deleted here. */
  async deleteTracesBefore(): Promise<number> {
    return 0;
  }
  async settle(): Promise<void> {}
  async pendingMinutes(): Promise<number> {
    return 0;
  }
  async recover(): Promise<number> {
    return 0;
  }
  async close(): Promise<void> {}
}

/** ClickHouseTypedReads (admission, deadline, cancel, chdb sessions) with OtelReads behind it. */
export class OtelTypedReads extends ClickHouseTypedReads {
  constructor(
    o: ClickHouseReadOptions,
    private readonly source: OtelSource,
    limits: ClickHouseReadLimits = {},
  ) {
    super(o, limits);
  }

  // ClickHouseReads.prototype names every ReadStore method; OtelReads overrides some and inherits the rest.
  override store(cost: ReadCost, signal: AbortSignal, rejected: (e: SqlRejected) => Error = (e) => e): ReadStore {
    return readStoreThrough(ClickHouseReads.prototype, (f) => this.read(cost, signal, f), rejected);
  }

  override read<T>(cost: ReadCost, signal: AbortSignal, f: (q: ReadStore) => Promise<T>): Promise<T> {
    return this.run(cost, signal, (client) => f(new OtelReads(client, this.source)));
  }
}

/** What of colony.ts's ColonyOptions the engine reads (not imported: colony.ts loads this module). */
export interface OtelColonyOptions {
  store?: string;
  otlp?: string;
  demo?: unknown;
  clickhousePassword?: string;
  otelTable?: string;
  queryTimeoutMs?: number;
}

/**
 * The engine a colony with `otelSchema` runs on (colony.ts), its refusals worded for the user:
 * OTLP ingest and the demo would write, so they are refused before anything opens.
 */
export async function otelColonyEngine(o: OtelColonyOptions, queryMemoryBytes: number) {
  if (o.otlp && o.otlp !== "off") {
    throw new ColonyStartError(`--otel-schema: ${READ_ONLY}, so it takes no OTLP — leave out --otlp (or give --otlp off) and send telemetry to the Collector`);
  }
  if (o.demo) throw new ColonyStartError(`--otel-schema: ${READ_ONLY}, so it cannot seed demo data — leave out --demo`);
  try {
    return await openOtelEngine({ store: o.store!, clickhousePassword: o.clickhousePassword, otelTable: o.otelTable, queryTimeoutMs: o.queryTimeoutMs, queryMemoryBytes });
  } catch (err) {
    throw err instanceof StoreUrlError || err instanceof OtelTableError ? new ColonyStartError(err.message) : err;
  }
}

export interface OtelEngineOptions {
  store: string;
  clickhousePassword?: string;
  otelTable?: string;
  queryTimeoutMs?: number;
  queryMemoryBytes: number;
}

/**
 * Opens the store and checks the table. Errors are StoreUrlError or OtelTableError, one line each,
 * for the caller to report as a failed start.
 */
export async function openOtelEngine(o: OtelEngineOptions) {
  const target = parseStoreUrl(o.store);
  const table = checkTableName(o.otelTable ?? DEFAULT_OTEL_TABLE);
  const open = async () => (await openClickHouse(target, { password: o.clickhousePassword })).client;
  const client = await open();
  let sqlClient: ClickHouseClient | undefined;
  try {
    const source = await inspectOtelTable(client, target.database, table).catch((err: unknown) => {
      throw err instanceof OtelTableError ? err : connectError(target, err);
    });
    // Users' SQL on a client (on chdb a session) of its own, as on the colony's own ClickHouse store.
    sqlClient = await open();
    const limits = { timeoutMs: o.queryTimeoutMs, maxMemoryBytes: o.queryMemoryBytes };
    const reads = new OtelTypedReads({ connect: open, database: target.database, embedded: target.kind === "chdb" }, source, limits);
    const sql = new ClickHouseUserSql(sqlClient, target.database, limits, { embedded: target.kind === "chdb" });
    const both = [client, sqlClient];
    const closeAll = async () => {
      await Promise.all(both.map((c) => c.close()));
    };
    const where = target.kind === "chdb" ? `chdb:${target.path}` : `${target.url}/${target.database}`;
    return {
      name: `${where} (${source.table}, read-only)`,
      writer: new NoWrites(),
      queries: new OtelReads(client, source),
      reads,
      sql,
      close: closeAll,
      abort: async () => {
        await reads.close(0);
        await closeAll();
      },
    };
  } catch (err) {
    await Promise.all([client.close(), sqlClient?.close()].map((p) => p?.catch(() => {})));
    throw err instanceof StoreUrlError || err instanceof OtelTableError ? err : connectError(target, err);
  }
}
