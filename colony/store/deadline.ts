// The limits every query the colony runs on DuckDB lives under — users' SQL (readonly-sql.ts) and
// the typed RPCs' reads (typed-reads.ts) alike: a bounded number running at once behind a bounded
// queue, a deadline that interrupts DuckDB, the caller's going away interrupting it too, and an
// answer for the caller shortly after the deadline even when DuckDB is inside an operator it cannot
// interrupt (the query is then a runaway: it keeps its slot until DuckDB lets go of it).
import type { DuckDBConnection } from "@duckdb/node-api";
import { Slots } from "../admission.js";

export type SqlRejectionCode = "invalid_argument" | "deadline_exceeded" | "resource_exhausted" | "cancelled";

/** A refusal or failure the caller can act on. Carries no stack: the message is the whole story. */
export class SqlRejected extends Error {
  constructor(
    readonly code: SqlRejectionCode,
    message: string,
  ) {
    super(message);
    this.name = "SqlRejected";
    this.stack = undefined;
  }
}

export interface GuardLimits {
  timeoutMs: number;
  /** Queries running at once; more wait (within their deadline) in a bounded queue. */
  maxConcurrent: number;
  /** Queries that may wait for a slot; beyond, resource_exhausted at once. */
  maxQueued: number;
  /**
   * After the deadline's interrupt, how long DuckDB gets to stop before the query is abandoned:
   * the caller is answered, and the connection is closed whenever DuckDB returns.
   */
  abandonAfterMs: number;
  /**
   * Keep connections that ended cleanly for the next query (at most maxConcurrent idle). Opening
   * one costs about half a millisecond, much of a rollup read; a connection whose query failed,
   * was interrupted or abandoned is closed instead.
   */
  reuseConnections?: boolean;
}

/** How a guard's refusals name its kind of query. */
export interface GuardWords {
  /** Plural, e.g. "SQL queries". */
  queries: string;
  /** What a slot is called, e.g. "SQL slots". */
  slots: string;
  /** The deadline as users set it, e.g. "statement timeout". */
  timeout: string;
}

/** The refusals every guard words alike, whatever the engine. */
export const refusals = {
  cancelled: () => new SqlRejected("cancelled", "the query was cancelled (the client went away, or the colony is stopping)"),
  deadlineExceeded: (timeoutMs: number, w: Pick<GuardWords, "timeout">) =>
    new SqlRejected("deadline_exceeded", `the query ran longer than the ${timeoutMs} ms ${w.timeout} and was cancelled`),
  /** `what`: the engine's own first line about it. */
  outOfMemory: (what: string) => new SqlRejected("resource_exhausted", `the query needs more memory than the colony allows (--query-memory): ${what}`),
};

/**
 * A slot to run in: at once, after waiting (within the deadline) behind at most maxQueued others,
 * or a refusal that says which.
 */
export async function admitWithin(
  slots: Slots,
  l: { maxConcurrent: number; maxQueued: number; timeoutMs: number },
  w: Pick<GuardWords, "queries" | "slots">,
  deadline: number,
): Promise<() => void> {
  if (slots.active >= l.maxConcurrent && slots.waiting >= l.maxQueued) {
    throw new SqlRejected("resource_exhausted", `too many ${w.queries} at once (${slots.active} running, ${slots.waiting} waiting); retry shortly`);
  }
  try {
    return await slots.acquire(AbortSignal.timeout(Math.max(1, deadline - Date.now())));
  } catch {
    throw new SqlRejected("deadline_exceeded", `the query waited its whole ${l.timeoutMs} ms timeout for one of the ${l.maxConcurrent} ${w.slots}; retry when the colony is less busy`);
  }
}

/**
 * Queries whose caller was answered while the engine may still be inside them, by when that was.
 * Each keeps its slot until the engine lets go of it, so runaways cannot pile up.
 */
export class Runaways {
  private readonly since = new Set<{ since: number }>();

  get count(): number {
    return this.since.size;
  }

  /** When the longest-running of them was abandoned (ms since the epoch), if any runs. */
  get oldestSince(): number | undefined {
    let oldest: number | undefined;
    for (const r of this.since) oldest = Math.min(oldest ?? r.since, r.since);
    return oldest;
  }

  /** Records one, abandoned now; returns the way to forget it once the engine lets go. */
  add(): () => void {
    const r = { since: Date.now() };
    this.since.add(r);
    return () => this.since.delete(r);
  }
}

/**
 * One kind of query's admission, deadlines and runaways. `begin` hands out a connection of its own
 * per query, so an interrupt hits only that query.
 */
export class QueryGuard {
  private readonly slots: Slots;
  private readonly idle: DuckDBConnection[] = [];
  private closed = false;

  /** The queries running now, by connection, with the way to stop each (for `close`, `stopAll`). */
  private readonly open = new Map<DuckDBConnection, { stop(why: SqlRejected): void; abandon(): void }>();

  /** Queries abandoned (past their deadline, or stopped) that DuckDB is still running. */
  private readonly ledger = new Runaways();

  /** Called when a query is abandoned while DuckDB is still inside it (see oldestRunawaySince). */
  onRunaway?: () => void;

  constructor(
    private readonly connect: () => Promise<DuckDBConnection>,
    readonly limits: GuardLimits,
    private readonly words: GuardWords,
  ) {
    this.slots = new Slots(limits.maxConcurrent);
  }

  get runaways(): number {
    return this.ledger.count;
  }

  /** See Runaways.oldestSince. */
  get oldestRunawaySince(): number | undefined {
    return this.ledger.oldestSince;
  }

  /**
   * Interrupts every running query, whose caller gets `why`; those DuckDB has not let go of after
   * `graceMs` are abandoned (their callers answered now, their slots held until DuckDB returns).
   * Resolves with how many that is.
   */
  async stopAll(why: SqlRejected, graceMs = 500): Promise<number> {
    for (const [conn, query] of this.open) {
      query.stop(why);
      conn.interrupt();
    }
    await this.drain(graceMs);
    for (const query of this.open.values()) query.abandon();
    return this.open.size;
  }

  /**
   * Interrupts every running query and closes the idle connections. Returns false when DuckDB is
   * still inside one it cannot interrupt: the database must then not be checkpointed or closed
   * (either would wait for that query); committed data is in the WAL regardless.
   */
  async close(graceMs = 1_000): Promise<boolean> {
    this.closed = true;
    for (const conn of this.idle.splice(0)) conn.closeSync();
    for (const conn of this.open.keys()) conn.interrupt();
    await this.drain(graceMs);
    return this.open.size === 0;
  }

  private async drain(graceMs: number): Promise<void> {
    const until = Date.now() + graceMs;
    while (this.open.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  }

  /**
   * Admits one query (waiting for a slot within its deadline) and arms its deadline. The caller
   * routes every DuckDB call of the query through `call` and ends it with `end`, always.
   * `signal`: the caller went away (or the colony is stopping): DuckDB is interrupted.
   */
  async begin(signal?: AbortSignal): Promise<GuardedQuery> {
    const deadline = Date.now() + this.limits.timeoutMs;
    const release = await this.admit(deadline);
    let conn: DuckDBConnection;
    try {
      conn = this.idle.pop() ?? (await this.connect());
    } catch (err) {
      release();
      throw err;
    }
    return new GuardedQuery(conn, deadline, signal, this.limits, this.words, {
      opened: (stop, abandon) => this.open.set(conn, { stop, abandon }),
      finished: (reusable) => {
        this.open.delete(conn);
        if (reusable && this.limits.reuseConnections && !this.closed && this.idle.length < this.limits.maxConcurrent) this.idle.push(conn);
        else conn.closeSync();
        release();
      },
      ranAway: () => {
        const forget = this.ledger.add();
        this.onRunaway?.();
        return forget;
      },
    });
  }

  /** A slot to run in (admitWithin), refused outright while as many runaways hold slots as there are. */
  private async admit(deadline: number): Promise<() => void> {
    if (this.runaways >= this.limits.maxConcurrent) {
      throw new SqlRejected(
        "resource_exhausted",
        `${this.runaways} earlier queries are still running past their deadline (DuckDB cannot interrupt the operator they are in); ${this.words.queries} are refused until they end — the other RPCs are unaffected`,
      );
    }
    return admitWithin(this.slots, this.limits, this.words, deadline);
  }
}

interface GuardHooks {
  opened(stop: (why: SqlRejected) => void, abandon: () => void): void;
  /** The query is over and DuckDB has let go of the connection. */
  finished(reusable: boolean): void;
  /** DuckDB is still inside the abandoned query; returns the way to forget it once it returns. */
  ranAway(): () => void;
}

/** One admitted query: its connection, its deadline, and the way its DuckDB calls are made. */
export class GuardedQuery {
  /** The call DuckDB is busy with now, if any. */
  private running: Promise<unknown> | undefined;
  private timedOut = false;
  /** Why the caller was answered while DuckDB may still be inside the query, once it was. */
  private abandoned: SqlRejected | undefined;
  /** Why the query was stopped from outside (stopAll), which its caller is told however it ends. */
  private stopped: SqlRejected | undefined;
  // The calls waiting on DuckDB, to reject when the query is abandoned. A set rather than a race
  // against one long-lived promise: each race would leave a reaction on it holding its result, and
  // a long stream would keep every chunk it ever read.
  private readonly waiting = new Set<(err: SqlRejected) => void>();
  private readonly interruptTimer: NodeJS.Timeout;
  private readonly abandonTimer: NodeJS.Timeout;
  private readonly onAbort = () => this.conn.interrupt();

  constructor(
    readonly conn: DuckDBConnection,
    readonly deadline: number,
    private readonly signal: AbortSignal | undefined,
    private readonly limits: GuardLimits,
    private readonly words: GuardWords,
    private readonly hooks: GuardHooks,
  ) {
    this.interruptTimer = setTimeout(() => {
      this.timedOut = true;
      conn.interrupt();
    }, Math.max(0, deadline - Date.now()));
    signal?.addEventListener("abort", this.onAbort, { once: true });
    if (signal?.aborted) conn.interrupt();
    hooks.opened(
      (why) => (this.stopped ??= why),
      () => this.abandon(this.stopped ?? this.deadlineExceeded()),
    );
    this.abandonTimer = setTimeout(() => this.abandon(this.deadlineExceeded()), Math.max(0, deadline - Date.now()) + limits.abandonAfterMs);
  }

  /**
   * Every DuckDB call of the query goes through here: raced against abandonment, so a query stuck
   * in an operator DuckDB cannot interrupt (a GLOB that backtracks for hours) still ends, for its
   * caller, shortly after the deadline.
   */
  readonly call = <T>(p: Promise<T>): Promise<T> => {
    this.running = p;
    return new Promise<T>((resolve, reject) => {
      if (this.abandoned) return reject(this.abandoned);
      this.waiting.add(reject);
      p.then(
        (v) => {
          this.waiting.delete(reject);
          if (this.running === p) this.running = undefined;
          resolve(v);
        },
        (err: unknown) => {
          this.waiting.delete(reject);
          if (this.running === p) this.running = undefined;
          reject(err);
        },
      );
    });
  };

  /**
   * Why the query did not run to its end, if it did not: abandoned or stopped, past its deadline,
   * or its caller gone. An interrupted DuckDB result ends like a complete one (an empty chunk), so
   * a result is whole only when this is undefined.
   */
  failure(): SqlRejected | undefined {
    if (this.abandoned ?? this.stopped) return this.abandoned ?? this.stopped;
    if (this.timedOut) return this.deadlineExceeded();
    if (this.signal?.aborted) return refusals.cancelled();
    return undefined;
  }

  /**
   * Disarms the deadline and gives the connection and slot back — at once, or, when DuckDB is still
   * inside an abandoned query, whenever it returns. `pending`: a call the caller started and no
   * longer waits for (a prefetch), which must end before the connection is reused or closed.
   */
  async end(pending?: Promise<unknown>): Promise<void> {
    clearTimeout(this.interruptTimer);
    clearTimeout(this.abandonTimer);
    this.signal?.removeEventListener("abort", this.onAbort);
    const busy = this.running;
    if (this.abandoned && busy) {
      // Closing the connection now would block this thread until DuckDB returns; instead the slot
      // stays taken (so runaways cannot pile up) and is given back, with the connection, then.
      const forget = this.hooks.ranAway();
      void busy.catch(() => undefined).finally(() => {
        forget();
        this.hooks.finished(false);
      });
      return;
    }
    let clean = this.failure() === undefined;
    for (const p of [pending, this.running]) if (p) await p.catch(() => (clean = false));
    this.hooks.finished(clean);
  }

  private abandon(why: SqlRejected): void {
    this.abandoned ??= why;
    for (const reject of this.waiting) reject(this.abandoned);
    this.waiting.clear();
  }

  private deadlineExceeded(): SqlRejected {
    return refusals.deadlineExceeded(this.limits.timeoutMs, this.words);
  }
}

/**
 * DuckDB's failures that are a query's limits rather than a fault: out of memory (the instance's
 * memory_limit, --query-memory) and an interrupt. Undefined for anything else.
 */
export function limitError(err: unknown): SqlRejected | undefined {
  const message = err instanceof Error ? err.message : String(err);
  if (/^Out of Memory Error:/i.test(message)) {
    // Only the first line: DuckDB goes on with advice (SET threads=…) a user of the colony cannot follow.
    return refusals.outOfMemory(message.replace(/^Out of Memory Error:\s*/i, "").split("\n")[0]!);
  }
  if (/^INTERRUPT Error:/i.test(message)) return new SqlRejected("deadline_exceeded", message);
  return undefined;
}

/**
 * A streamed result whose deadline also runs while its consumer holds a batch. A stream whose
 * client stops reading is suspended between batches, where neither the engine's interrupt nor
 * abandonment can end it: it kept its slot and connection for as long as the client's connection
 * lived (an HTTP/2 client sending PINGs: forever), and four such streams froze every client's SQL.
 * So once the query would have been abandoned (the deadline, then `abandonAfterMs` for the engine's
 * own interrupt to land first), `batches` is ended, its slot given back, and the consumer's next
 * pull fails.
 */
export async function* heldWithin<T>(
  batches: AsyncGenerator<T>,
  limits: Pick<GuardLimits, "timeoutMs" | "abandonAfterMs">,
  words: Pick<GuardWords, "timeout">,
): AsyncGenerator<T> {
  const end = Date.now() + limits.timeoutMs + limits.abandonAfterMs;
  let timer: NodeJS.Timeout | undefined;
  let cut = false;
  try {
    for (;;) {
      const next = await batches.next();
      if (next.done) return;
      // `batches` is suspended at its own yield until the consumer pulls again: ending it now is safe.
      timer = setTimeout(() => {
        cut = true;
        batches.return(undefined).catch(() => undefined);
      }, Math.max(0, end - Date.now()));
      yield next.value;
      clearTimeout(timer);
      if (cut) {
        throw new SqlRejected(
          "deadline_exceeded",
          `the result was not read within the ${limits.timeoutMs} ms ${words.timeout}: the query was ended with rows still unsent; read the stream as it arrives`,
        );
      }
    }
  } finally {
    clearTimeout(timer);
    await batches.return(undefined);
  }
}
