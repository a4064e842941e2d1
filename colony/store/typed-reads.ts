// The typed RPCs' reads (Queries) under the same limits as users' SQL (deadline.ts): each read on a
// DuckDB connection of its own, interrupted at the colony's deadline or when its caller goes away.
// Before, every typed read shared the Store's one connection, serialised: one `explain` over a wide
// window held up every ListServices and GetPercentile behind it for as long as it ran.
import type { DuckDBConnection } from "@duckdb/node-api";
import { Kysely } from "kysely";
import { withDefaults } from "../admission.js";
import { limitError, QueryGuard, SqlRejected, type GuardedQuery, type GuardWords } from "./deadline.js";
import { DuckDBDialect, type CallThrough } from "./dialect.js";
import type { ReadStore } from "./engine.js";
import { Queries } from "./queries.js";
import { SQL_DEFAULTS } from "./readonly-sql.js";
import type { Database } from "./schema.js";
import type { Store } from "./store.js";

/**
 * How a read is admitted. "scan" reads raw spans (traces, group-by, explain): its cost grows with
 * the window and the colony's traffic, so few run at once. "lookup" reads rollups and the services
 * table: cheap whatever the window, many at once, and never queued behind scans.
 */
export type ReadCost = "lookup" | "scan";

export interface TypedReadLimits {
  /** Longest one read may run; the colony's --query-timeout. */
  timeoutMs?: number;
  abandonAfterMs?: number;
}

// The colony's libuv pool has 16 threads (bin/coral.cjs), each DuckDB call holding one: 4 for user
// SQL, 2 scans and 6 lookups leave 4 for ingestion even when every slot is busy.
export const ADMISSION: Record<ReadCost, { maxConcurrent: number; maxQueued: number }> = {
  scan: { maxConcurrent: 2, maxQueued: 32 },
  lookup: { maxConcurrent: 6, maxQueued: 256 },
};

export const WORDS: Record<ReadCost, GuardWords> = {
  scan: { queries: "span scans (traces, group-by, explain)", slots: "span-scan slots", timeout: "query timeout (--query-timeout)" },
  lookup: { queries: "rollup reads", slots: "rollup-read slots", timeout: "query timeout (--query-timeout)" },
};

type Bound = { queries: Queries; through: CallThrough };

/**
 * A ReadStore whose every method (those `prototype`, an engine's ReadStore class, defines) runs as
 * one guarded `read`; a refusal reaches the caller as `rejected` makes it. Both engines' guards
 * hand these out.
 */
export function readStoreThrough(
  prototype: object,
  read: <T>(f: (q: ReadStore) => Promise<T>) => Promise<T>,
  rejected: (e: SqlRejected) => Error,
): ReadStore {
  const method = (name: keyof ReadStore) => (...args: unknown[]) =>
    read((q) => (q[name] as (...a: unknown[]) => Promise<unknown>)(...args)).catch((e: unknown) => {
      throw e instanceof SqlRejected ? rejected(e) : e;
    });
  const names = Object.getOwnPropertyNames(prototype).filter((n) => n !== "constructor") as (keyof ReadStore)[];
  return Object.fromEntries(names.map((n) => [n, method(n)])) as unknown as ReadStore;
}

export class TypedReads {
  private readonly guards: Record<ReadCost, QueryGuard>;
  /** Each connection's Queries, built once; `through` is the guard of the read using it now. */
  private readonly bound = new WeakMap<DuckDBConnection, Bound>();

  constructor(store: Store, limits: TypedReadLimits = {}) {
    const { timeoutMs, abandonAfterMs } = withDefaults({ timeoutMs: SQL_DEFAULTS.timeoutMs, abandonAfterMs: SQL_DEFAULTS.abandonAfterMs }, limits);
    const guard = (cost: ReadCost) =>
      new QueryGuard(() => store.connect(), { ...ADMISSION[cost], timeoutMs, abandonAfterMs, reuseConnections: true }, WORDS[cost]);
    this.guards = { scan: guard("scan"), lookup: guard("lookup") };
  }

  /**
   * The store as one caller reads it: every method runs as its own guarded read. `rejected` turns a
   * refusal (deadline, cancel, admission, memory) into the error the caller should see.
   */
  store(cost: ReadCost, signal: AbortSignal, rejected: (e: SqlRejected) => Error = (e) => e): ReadStore {
    return readStoreThrough(Queries.prototype, (f) => this.read(cost, signal, f), rejected);
  }

  /** Runs `f` on a connection of its own, under the deadline; rejects with SqlRejected when a limit ends it. */
  async read<T>(cost: ReadCost, signal: AbortSignal, f: (q: ReadStore) => Promise<T>): Promise<T> {
    const query = await this.guards[cost].begin(signal);
    try {
      const result = await f(this.bind(query));
      // A result that arrives after the interrupt may have been cut short by it.
      const cut = query.failure();
      if (cut) throw cut;
      return result;
    } catch (err) {
      throw query.failure() ?? limitError(err) ?? err;
    } finally {
      await query.end();
    }
  }

  private bind(query: GuardedQuery): Queries {
    let b = this.bound.get(query.conn);
    if (!b) {
      const entry = { through: query.call } as Bound;
      entry.queries = new Queries({ db: new Kysely<Database>({ dialect: new DuckDBDialect(query.conn, (p) => entry.through(p)) }) });
      this.bound.set(query.conn, (b = entry));
    }
    b.through = query.call;
    return b.queries;
  }

  get runaways(): number {
    return this.guards.scan.runaways + this.guards.lookup.runaways;
  }

  get oldestRunawaySince(): number | undefined {
    const s = [this.guards.scan.oldestRunawaySince, this.guards.lookup.oldestRunawaySince].filter((t) => t !== undefined);
    return s.length ? Math.min(...s) : undefined;
  }

  get onRunaway(): (() => void) | undefined {
    return this.guards.scan.onRunaway;
  }
  set onRunaway(f: (() => void) | undefined) {
    this.guards.scan.onRunaway = f;
    this.guards.lookup.onRunaway = f;
  }

  /** See QueryGuard.stopAll. */
  async stopAll(why: SqlRejected, graceMs?: number): Promise<number> {
    const [a, b] = await Promise.all([this.guards.scan.stopAll(why, graceMs), this.guards.lookup.stopAll(why, graceMs)]);
    return a + b;
  }

  /** See QueryGuard.close. */
  async close(graceMs?: number): Promise<boolean> {
    const [a, b] = await Promise.all([this.guards.scan.close(graceMs), this.guards.lookup.close(graceMs)]);
    return a && b;
  }
}
