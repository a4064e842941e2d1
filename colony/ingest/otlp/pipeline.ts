import type { PreparedBatch, WriteStore } from "../../store/engine.js";
import type { HostSample, LatencyRecord, ResourceRecord, SpanRecord } from "../records.js";
import { rowsProblem } from "./validate.js";

/** The queue is full: the client should retry later (HTTP 429). */
export class BackpressureError extends Error {}
/** The colony cannot store data right now (shutting down, or the database failed): HTTP 503. */
export class UnavailableError extends Error {}
/** The request holds values the store cannot take (HTTP 400); nothing of it was stored. */
export class InvalidDataError extends Error {}

/** One request's rows: spans or metrics (never both), and the resources they came from. */
export interface IngestPart {
  spans?: SpanRecord[];
  resources?: ResourceRecord[];
  hostSamples?: HostSample[];
  latency?: LatencyRecord[];
}

interface Job {
  spans?: PreparedBatch;
  hostSamples: HostSample[];
  latency: LatencyRecord[];
  resources: ResourceRecord[];
  size: number;
  resolve(): void;
  reject(err: Error): void;
}

export interface PipelineOptions {
  /** Spans (and points) accepted but not yet committed, beyond which requests get 429. */
  maxQueued?: number;
  /** Most spans committed in one transaction. */
  maxBatch?: number;
}

/** How long a service instance's last_seen may lag: re-announcing it on every batch would cost a write each time. */
const RESOURCE_REFRESH_MS = 30_000;

const hasMetrics = (j: Job) => j.hostSamples.length > 0 || j.latency.length > 0;

/**
 * Group commit for ingestion. Requests queue their decoded rows; one loop takes everything queued
 * (up to `maxBatch`) and commits it, then resolves every request in it. While a commit runs, the
 * next batch gathers, so batches grow with load and latency stays one commit when idle — no
 * timers. A request's promise resolves only after its rows are committed (durable); the queue is
 * bounded, and a full queue refuses new work instead of growing without limit.
 *
 * A batch commits in one transaction per kind of data — the spans of all its requests in one
 * (Writer.writePrepared), their metrics in another (Writer.writeMetrics) — and a request carries
 * one kind only, so each request is stored whole or not at all. When a transaction fails it has
 * stored nothing, and each of its requests is retried alone: one request can neither sink the
 * others nor be stored twice. Rows are validated before they are queued (validate.ts), so what
 * can still fail is the database, not a client's data. Resources (service names, instances) are
 * upserts, written after the data they came with; if that write fails the data stands and the
 * resources are written with the next batch.
 */
export class IngestPipeline {
  private readonly pending: Job[] = [];
  private queued = 0;
  private running = false;
  private closed = false;
  private drained: Promise<void> = Promise.resolve();
  /** Per service instance: what was last written for it, and when. */
  private readonly announced = new Map<string, { namespace: string; region: string; atMs: number }>();
  /** Resources of committed data whose own write failed: retried with the next batch. */
  private readonly owed = new Map<string, ResourceRecord>();
  private readonly maxQueued: number;
  private readonly maxBatch: number;

  constructor(
    private readonly writer: WriteStore,
    o: PipelineOptions = {},
  ) {
    this.maxQueued = o.maxQueued ?? 262_144;
    this.maxBatch = o.maxBatch ?? 65_536;
  }

  /**
   * Resolves once `part` is committed. Throws BackpressureError / UnavailableError without
   * queueing, and InvalidDataError (nothing queued) when a value cannot be stored.
   */
  submit(part: IngestPart): Promise<void> {
    if (this.closed) return Promise.reject(new UnavailableError("the colony is shutting down"));
    const size = (part.spans?.length ?? 0) + (part.hostSamples?.length ?? 0) + (part.latency?.length ?? 0) + 1;
    // One oversized request is still accepted into an empty queue, or it could never get in.
    if (this.queued > 0 && this.queued + size > this.maxQueued) {
      return Promise.reject(new BackpressureError(`ingest queue full (${this.queued} items waiting)`));
    }
    const carriesSpans = (part.spans?.length ?? 0) > 0;
    if (carriesSpans && (part.hostSamples?.length || part.latency?.length)) {
      // Spans and metrics commit in different transactions: together they could be stored in part.
      return Promise.reject(new InvalidDataError("a request carries spans or metrics, not both"));
    }
    const problem = rowsProblem(part);
    if (problem) return Promise.reject(new InvalidDataError(`the colony cannot store this request: ${problem}`));
    // Done here, as the request arrives, rather than in the serial commit loop: the JS work of a
    // batch then overlaps the previous commit, which runs on DuckDB's threads.
    let spans: PreparedBatch | undefined;
    try {
      spans = carriesSpans ? this.writer.prepareSpans(part.spans!) : undefined;
    } catch (err) {
      return Promise.reject(new InvalidDataError((err as Error).message));
    }
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ spans, hostSamples: part.hostSamples ?? [], latency: part.latency ?? [], resources: part.resources ?? [], size, resolve, reject });
      this.queued += size;
      if (!this.running) this.drained = this.run();
    });
  }

  /** Refuses new work and waits for what was accepted to be committed. */
  async close(): Promise<void> {
    this.closed = true;
    await this.drained;
    // Resources still owed get one last try; the next report from their service writes them anyway.
    if (this.owed.size > 0) await this.writer.writeResources([...this.owed.values()]).catch(() => {});
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      while (this.pending.length > 0) {
        const batch: Job[] = [];
        let n = 0;
        while (this.pending.length > 0 && (batch.length === 0 || n + this.pending[0]!.size <= this.maxBatch)) {
          const job = this.pending.shift()!;
          n += job.size;
          batch.push(job);
        }
        try {
          await this.commit(batch);
        } finally {
          this.queued -= n;
        }
      }
    } finally {
      this.running = false;
    }
  }

  /** Commits `batch` and settles every job in it; never throws. */
  private async commit(batch: Job[]): Promise<void> {
    const failed = new Map<Job, unknown>();
    // The two run on different connections of the Writer, so neither waits for the other.
    await Promise.all([
      this.commitEach(
        batch.filter((j) => j.spans),
        (jobs) => this.writer.writePrepared(jobs.map((j) => j.spans!)),
        failed,
      ),
      this.commitEach(
        batch.filter(hasMetrics),
        (jobs) => this.writer.writeMetrics(jobs.flatMap((j) => j.hostSamples), jobs.flatMap((j) => j.latency)),
        failed,
      ),
    ]);
    const stored = batch.filter((j) => !failed.has(j));
    const owed = [...this.owed.values()];
    this.owed.clear();
    try {
      await this.announce([...owed, ...stored.flatMap((j) => j.resources)]);
    } catch (err) {
      // Data already committed must be acknowledged (a retry would store it twice); its resources
      // are owed to the next batch. A request that carried only resources has nothing stored.
      for (const r of owed) this.owed.set(instanceKey(r), r);
      for (const j of stored) {
        if (j.spans || hasMetrics(j)) for (const r of j.resources) this.owed.set(instanceKey(r), r);
        else failed.set(j, err);
      }
    }
    for (const j of batch) {
      if (failed.has(j)) j.reject(refusal(failed.get(j)));
      else j.resolve();
    }
  }

  /**
   * Runs `write` for all of `jobs` at once — one transaction — and, if that fails (storing
   * nothing), for each job alone, so only a job that fails by itself is refused.
   */
  private async commitEach(jobs: Job[], write: (jobs: Job[]) => Promise<void>, failed: Map<Job, unknown>): Promise<void> {
    if (jobs.length === 0) return;
    try {
      await write(jobs);
      return;
    } catch (err) {
      if (jobs.length === 1) {
        failed.set(jobs[0]!, err);
        return;
      }
    }
    for (const j of jobs) {
      try {
        await write([j]);
      } catch (err) {
        failed.set(j, err);
      }
    }
  }

  /** Writes the resources that are new, moved or stale, then remembers them. */
  private async announce(reported: ResourceRecord[]): Promise<void> {
    const resources: ResourceRecord[] = [];
    const now = Date.now();
    for (const r of reported) {
      const last = this.announced.get(instanceKey(r));
      // Written again when stale or when it moves the service; a report without namespace or
      // region (a metrics exporter's, often) says nothing about them.
      const same = last && (r.namespace === "" || r.namespace === last.namespace) && (r.region === "" || r.region === last.region);
      if (same && last.atMs > now - RESOURCE_REFRESH_MS) continue;
      resources.push(r);
    }
    await this.writer.writeResources(resources);
    for (const r of resources) {
      const key = instanceKey(r);
      const last = this.announced.get(key);
      this.announced.set(key, { namespace: r.namespace || (last?.namespace ?? ""), region: r.region || (last?.region ?? ""), atMs: now });
    }
  }
}

/**
 * What a failed commit tells the client. Values the database refuses to convert or that overflow
 * a column fail the same way however often they are sent: 400. Anything else (I/O, a conflict,
 * memory) may pass on a retry: 503.
 */
function refusal(err: unknown): Error {
  const message = (err as Error)?.message?.split("\n")[0] ?? String(err);
  // DuckDB's own errors name their class; its Node binding says "bigint out of int64 range".
  if (err instanceof RangeError || /^(Conversion|Out of Range|Invalid Input) Error|out of \w+ range/.test(message)) {
    return new InvalidDataError(`the colony cannot store this request's data: ${message}`);
  }
  return new UnavailableError(`could not store the data: ${message}`);
}

function instanceKey(r: ResourceRecord): string {
  return `${r.serviceName}\u0000${r.instanceId}`;
}
