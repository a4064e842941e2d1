// The typed RPCs' reads on ClickHouse under the limits they have on DuckDB (typed-reads.ts): the
// same admission by cost, the colony's deadline (--query-timeout), and a caller that goes away
// stopping the work. ClickHouseReads itself stays unaware: each read gets a client whose queries
// carry the read's abort signal, its remaining time as `max_execution_time` (the server stops the
// query itself), and a tag (`log_comment`) and query_ids by which a stopped read's queries are
// KILLed on the server.
//
// Embedded chdb needs more, because its sessions have state: a query that fails after producing
// output (a timeout mid-scan) leaves that output in the session, and the session's next query
// returns it ahead of its own rows. An abort does not stop chdb either (its C API has no
// interrupt): the call returns at once and the engine runs on — until the KILL, sent from a
// session of its own, or max_execution_time stops it. So on chdb every read has a session of its
// own — never the writer's nor users' SQL's — and a read that failed or was stopped hands its
// session back only after a query on it came back clean: that query runs after whatever the engine
// was still doing there, and takes up what it left. Until then the read keeps its slot, as a
// DuckDB query the engine cannot interrupt does.
import { randomUUID } from "node:crypto";
import type { ClickHouseClient, QueryParams } from "@clickhouse/client";
import { Slots, withDefaults } from "../../admission.js";
import { admitWithin, refusals, Runaways, SqlRejected } from "../deadline.js";
import type { ReadStore } from "../engine.js";
import { SQL_DEFAULTS } from "../readonly-sql.js";
import { ADMISSION, readStoreThrough, WORDS, type ReadCost } from "../typed-reads.js";
import { ClickHouseReads } from "./reads.js";
import { errorKind } from "./user-sql.js";
import { queryBounds, settingLiteral } from "./query-bounds.js";

export interface ClickHouseReadLimits {
  /** Longest one read may run; the colony's --query-timeout. */
  timeoutMs?: number;
  /** ClickHouse's max_memory_usage for each query of a read (--query-memory). */
  maxMemoryBytes?: number;
}

export interface ClickHouseReadOptions {
  /** A new client: on chdb a new session, on a server the same kind of HTTP client each time. */
  connect: () => Promise<ClickHouseClient>;
  database: string;
  /** chdb: sessions are per read and cleaned after a failure (see the top of this file). */
  embedded: boolean;
}

/**
 * The query that follows a failed one on a chdb session; its answer alone means the session is
 * clean. Its own settings: a late KILL of the failed read's tag must not hit it.
 */
const CLEAN_QUERY = "SELECT 'coral-clean' SETTINGS max_execution_time = 0, log_comment = ''";
const CLEAN_ANSWER = '["coral-clean"]\n';
/** Tries before a session that keeps answering with leftovers is closed instead. */
const CLEAN_TRIES = 3;

/**
 * chdb runs a read's planning and formatting on the colony's 2 cores: a read's small answer needs
 * no parallel formatter (its two threads only add hand-offs), and our tables have no projections
 * to look for in every part. Together 0.5–1 ms of a 7–9 ms bucket read, measured in process.
 */
const EMBEDDED_SETTINGS = { output_format_parallel_formatting: 0, optimize_use_projections: 0 };


/**
 * The statement with `settings` in its SETTINGS clause (appended to one that ends it already). On
 * chdb the client turns clickhouse_settings into a `SET …;` statement each, run before the query
 * and kept on the session (about 0.8 ms a read); in the clause they cost no statement of their
 * own and end with the query.
 */
export function withSettings(statement: string, settings: Record<string, string | number | boolean>): string {
  const list = Object.entries(settings)
    .map(([k, v]) => `${k} = ${settingLiteral(v)}`)
    .join(", ");
  // A clause of plain `name = value` pairs (numbers, words, quoted text without quotes) ending the statement.
  const pair = String.raw`[A-Za-z_][A-Za-z0-9_]*\s*=\s*(?:[0-9.]+|[A-Za-z_]+|'[^'\\]*')`;
  const trailing = new RegExp(String.raw`\bSETTINGS\s+${pair}(?:\s*,\s*${pair})*\s*$`, "i");
  return trailing.test(statement) ? `${statement.trimEnd()}, ${list}` : `${statement}\nSETTINGS ${list}`;
}

export class ClickHouseTypedReads {
  private readonly limits: Required<ClickHouseReadLimits>;
  private readonly slots: Record<ReadCost, Slots>;
  /** chdb sessions no read is using, clean. */
  private readonly idle: ClickHouseClient[] = [];
  /** Every client opened and not yet closed, to close on `close`. */
  private readonly clients = new Set<ClickHouseClient>();
  /** A server's one client (HTTP requests share its socket pool). */
  private shared: Promise<ClickHouseClient> | undefined;
  /** chdb: the session KILLs go through (a read's own is busy with the query to kill). */
  private control: Promise<ClickHouseClient> | undefined;
  /** Reads running now, with the way to stop each. */
  private readonly running = new Set<(why: SqlRejected) => void>();
  /** chdb sessions being cleaned after a failed or stopped read. */
  private readonly cleaning = new Set<Promise<void>>();
  /** Reads whose caller was answered while the engine may still be inside them. */
  private readonly ledger = new Runaways();
  private closed = false;

  /** Called when a read's caller was answered while the engine may still be inside it. */
  onRunaway: (() => void) | undefined;

  constructor(
    private readonly o: ClickHouseReadOptions,
    limits: ClickHouseReadLimits = {},
  ) {
    this.limits = withDefaults<Required<ClickHouseReadLimits>>({ timeoutMs: SQL_DEFAULTS.timeoutMs, maxMemoryBytes: 2 * 2 ** 30 }, limits);
    this.slots = { scan: new Slots(ADMISSION.scan.maxConcurrent), lookup: new Slots(ADMISSION.lookup.maxConcurrent) };
  }

  get runaways(): number {
    return this.ledger.count;
  }

  get oldestRunawaySince(): number | undefined {
    return this.ledger.oldestSince;
  }

  /** The store as one caller reads it (TypedReads.store): every method is one guarded read. */
  store(cost: ReadCost, signal: AbortSignal, rejected: (e: SqlRejected) => Error = (e) => e): ReadStore {
    return readStoreThrough(ClickHouseReads.prototype, (f) => this.read(cost, signal, f), rejected);
  }

  /** Runs `f` under the read's limits; rejects with SqlRejected when one ends it. */
  read<T>(cost: ReadCost, signal: AbortSignal, f: (q: ReadStore) => Promise<T>): Promise<T> {
    return this.run(cost, signal, (client) => f(new ClickHouseReads(client, this.o.database)));
  }

  /** As `read`, with the read's client itself (every query through it is guarded). */
  async run<T>(cost: ReadCost, signal: AbortSignal, f: (client: ClickHouseClient) => Promise<T>): Promise<T> {
    const { timeoutMs } = this.limits;
    const deadline = Date.now() + timeoutMs;
    const release = await this.admit(cost, deadline);
    let session: ClickHouseClient;
    try {
      session = await this.session();
    } catch (err) {
      release();
      throw err;
    }
    const abort = new AbortController();
    const tag = `coral-read-${randomUUID()}`;
    const ids: string[] = [];
    let why: SqlRejected | undefined;
    const stop = (reason: SqlRejected) => {
      if (why) return;
      why = reason;
      abort.abort(why);
      this.kill(session, tag, ids);
    };
    this.running.add(stop);
    const timer = setTimeout(() => stop(this.deadlineExceeded(cost)), Math.max(0, deadline - Date.now()));
    const onAbort = () => stop(refusals.cancelled());
    signal.addEventListener("abort", onAbort, { once: true });
    if (signal.aborted) onAbort();
    let failed = false;
    try {
      const work = f(this.guarded(session, abort.signal, deadline, tag, ids));
      work.catch(() => {});
      // Answered when stopped, whatever the client does with the abort.
      const result = await Promise.race([work, new Promise<never>((_, reject) => (abort.signal.aborted ? reject(why) : abort.signal.addEventListener("abort", () => reject(why), { once: true })))]);
      if (why) throw why;
      return result;
    } catch (err) {
      failed = true;
      throw why ?? this.limitError(err, cost) ?? err;
    } finally {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      this.running.delete(stop);
      // Queries of the read still queued (chdb runs parameterised queries one at a time) must not start now.
      if (failed) abort.abort(why ?? refusals.cancelled());
      this.finish(session, failed, why !== undefined, release);
    }
  }

  /** Stops every running read (its caller gets `why`); resolves with how many the engine is still inside after `graceMs`. */
  async stopAll(why: SqlRejected, graceMs = 500): Promise<number> {
    for (const stop of this.running) stop(why);
    await this.settle(graceMs);
    return this.runaways;
  }

  /** Stops every read and closes the clients; false when chdb is still inside a read after `graceMs`. */
  async close(graceMs = 1_000): Promise<boolean> {
    this.closed = true;
    const stuck = await this.stopAll(refusals.cancelled(), graceMs);
    this.idle.length = 0;
    // chdb waits for a session's running query before it lets go of the session.
    await Promise.all([...this.clients].map((c) => c.close().catch(() => {})));
    for (const client of [this.shared, this.control]) await client?.then((c) => c.close()).catch(() => {});
    return stuck === 0;
  }

  private async settle(graceMs: number): Promise<void> {
    const until = Date.now() + graceMs;
    while ((this.running.size > 0 || this.cleaning.size > 0) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  }

  private async admit(cost: ReadCost, deadline: number): Promise<() => void> {
    if (this.closed) throw refusals.cancelled();
    return admitWithin(this.slots[cost], { ...ADMISSION[cost], timeoutMs: this.limits.timeoutMs }, WORDS[cost], deadline);
  }

  private async session(): Promise<ClickHouseClient> {
    if (!this.o.embedded) {
      this.shared ??= this.o.connect();
      this.shared.catch(() => (this.shared = undefined));
      return this.shared;
    }
    const idle = this.idle.pop();
    if (idle) return idle;
    const client = await this.o.connect();
    this.clients.add(client);
    return client;
  }

  /**
   * The read's client: its queries carry the abort signal, the time left as max_execution_time,
   * the memory limit and a query_id of their own. Only `query` exists: ClickHouseReads' dialect
   * uses nothing else.
   */
  private guarded(session: ClickHouseClient, signal: AbortSignal, deadline: number, tag: string, ids: string[]): ClickHouseClient {
    const { maxMemoryBytes } = this.limits;
    const server = !this.o.embedded;
    const query = async (params: QueryParams) => {
      if (signal.aborted) throw signal.reason as Error;
      const id = randomUUID();
      ids.push(id);
      const settings: Record<string, string | number | boolean> = {
        ...(params.clickhouse_settings as Record<string, string | number | boolean> | undefined),
        ...queryBounds((deadline - Date.now()) / 1000, maxMemoryBytes),
        log_comment: tag,
      };
      const rs = await session.query(
        server
          ? // Over HTTP settings are URL parameters; an HTTP server stops a SELECT whose client closed the connection (the abort).
            ({ ...params, query_id: id, abort_signal: signal, clickhouse_settings: { ...settings, cancel_http_readonly_queries_on_client_close: 1 } } as QueryParams)
          : ({ ...params, query: withSettings(params.query, { ...settings, ...EMBEDDED_SETTINGS }), clickhouse_settings: undefined, query_id: id, abort_signal: signal } as QueryParams),
      );
      // The client heeds the signal until the response starts, not while its body streams in: a
      // server that stalls mid-answer is cut off here (the controller lives as long as the read).
      signal.addEventListener("abort", () => rs.close(), { once: true });
      return rs;
    };
    return { query } as unknown as ClickHouseClient;
  }

  /**
   * Stops a read's queries on the server, best effort and without waiting. Over HTTP the closed
   * connection tells the server too (cancel_http_readonly_queries_on_client_close); chdb has only
   * this. By tag on chdb, whose client makes up query_ids the engine never sees; the tag is ours
   * (a UUID), inlined because chdb runs parameterised queries one at a time, behind the one to kill.
   */
  private kill(session: ClickHouseClient, tag: string, ids: string[]): void {
    const sent = (p: Promise<unknown>) => void p.catch(() => {});
    if (!this.o.embedded) {
      if (ids.length > 0) sent(session.command({ query: "KILL QUERY WHERE query_id IN {ids:Array(String)} ASYNC", query_params: { ids }, abort_signal: AbortSignal.timeout(5_000) }));
      return;
    }
    if (!/^coral-read-[0-9a-f-]{36}$/.test(tag)) return;
    this.control ??= this.o.connect();
    this.control.catch(() => (this.control = undefined));
    sent(this.control.then((c) => c.command({ query: `KILL QUERY WHERE Settings['log_comment'] = '${tag}' ASYNC` })));
  }

  /** Gives the session and the slot back: at once after a clean read, after cleaning after a failed one. */
  private finish(session: ClickHouseClient, failed: boolean, stopped: boolean, release: () => void): void {
    if (!this.o.embedded) {
      release();
      return;
    }
    if (!failed) {
      if (!this.closed && this.idle.length < ADMISSION.scan.maxConcurrent + ADMISSION.lookup.maxConcurrent) this.idle.push(session);
      else void this.discard(session);
      release();
      return;
    }
    // The caller has been answered; the engine may still be inside the read's query until the
    // clean-up query comes back.
    const forget = stopped ? this.ledger.add() : undefined;
    if (forget) this.onRunaway?.();
    const done = this.clean(session)
      .then((clean) => {
        if (clean && !this.closed) this.idle.push(session);
        else return this.discard(session);
      })
      .finally(() => {
        forget?.();
        this.cleaning.delete(done);
        release();
      });
    this.cleaning.add(done);
  }

  /** Whether the session answers a query with that query's rows alone (leftovers taken up first). */
  private async clean(session: ClickHouseClient): Promise<boolean> {
    for (let i = 0; i < CLEAN_TRIES; i++) {
      try {
        const rs = await session.query({ query: CLEAN_QUERY, format: "JSONCompactEachRow" });
        if ((await rs.text()) === CLEAN_ANSWER) return true;
      } catch {
        // A leftover that is not valid output, or a session gone bad: try again, then give it up.
      }
    }
    return false;
  }

  private async discard(session: ClickHouseClient): Promise<void> {
    this.clients.delete(session);
    await session.close().catch(() => {});
  }

  private deadlineExceeded(cost: ReadCost): SqlRejected {
    return refusals.deadlineExceeded(this.limits.timeoutMs, WORDS[cost]);
  }

  /** ClickHouse's own stops of a query (by its code, as users' SQL reads them), as the guard's refusals. */
  private limitError(err: unknown, cost: ReadCost): SqlRejected | undefined {
    switch (errorKind(err)) {
      case "timeout":
        return this.deadlineExceeded(cost);
      case "cancelled":
        return refusals.cancelled();
      case "memory":
        return refusals.outOfMemory(String((err as Error).message ?? "").split("\n")[0]!);
      default:
        return undefined;
    }
  }
}
