import type { HostSample, LatencyRecord, PreparedSpans, ResourceRecord, SpanRecord, Writer } from "../writer.js";

/** The queue is full: the client should retry later (HTTP 429). */
export class BackpressureError extends Error {}
/** The colony cannot store data right now (shutting down, or the database failed): HTTP 503. */
export class UnavailableError extends Error {}
/** The request holds values the store cannot take (HTTP 400); nothing of it was queued. */
export class InvalidDataError extends Error {}

export interface IngestPart {
  spans?: SpanRecord[];
  resources?: ResourceRecord[];
  hostSamples?: HostSample[];
  latency?: LatencyRecord[];
}

interface Job extends Omit<IngestPart, "spans"> {
  spans?: PreparedSpans;
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

/**
 * Group commit for ingestion. Requests queue their decoded rows; one loop takes everything queued
 * (up to `maxBatch`) and commits it in one Writer call, then resolves every request in it. While a
 * commit runs, the next batch gathers, so batches grow with load and latency stays one commit when
 * idle — no timers. A request's promise resolves only after its rows are committed (durable); the
 * queue is bounded, and a full queue refuses new work instead of growing without limit.
 */
export class IngestPipeline {
  private readonly pending: Job[] = [];
  private queued = 0;
  private running = false;
  private closed = false;
  private drained: Promise<void> = Promise.resolve();
  /** Per service instance: what was last written for it, and when. */
  private readonly announced = new Map<string, { namespace: string; region: string; atMs: number }>();
  private readonly maxQueued: number;
  private readonly maxBatch: number;

  constructor(
    private readonly writer: Writer,
    o: PipelineOptions = {},
  ) {
    this.maxQueued = o.maxQueued ?? 262_144;
    this.maxBatch = o.maxBatch ?? 65_536;
  }

  /** Resolves once `part` is committed. Throws BackpressureError / UnavailableError without queueing. */
  submit(part: IngestPart): Promise<void> {
    if (this.closed) return Promise.reject(new UnavailableError("the colony is shutting down"));
    const size = (part.spans?.length ?? 0) + (part.hostSamples?.length ?? 0) + (part.latency?.length ?? 0) + 1;
    // One oversized request is still accepted into an empty queue, or it could never get in.
    if (this.queued > 0 && this.queued + size > this.maxQueued) {
      return Promise.reject(new BackpressureError(`ingest queue full (${this.queued} items waiting)`));
    }
    // Done here, as the request arrives, rather than in the serial commit loop: the JS work of a
    // batch then overlaps the previous commit, which runs on DuckDB's threads.
    let spans: PreparedSpans | undefined;
    try {
      spans = part.spans && part.spans.length > 0 ? this.writer.prepareSpans(part.spans) : undefined;
    } catch (err) {
      return Promise.reject(new InvalidDataError((err as Error).message));
    }
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ ...part, spans, size, resolve, reject });
      this.queued += size;
      if (!this.running) this.drained = this.run();
    });
  }

  /** Refuses new work and waits for what was accepted to be committed. */
  async close(): Promise<void> {
    this.closed = true;
    await this.drained;
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
          for (const j of batch) j.resolve();
        } catch {
          // One bad request must not sink the others it was batched with: retry each on its own.
          for (const j of batch) {
            try {
              await this.commit([j]);
              j.resolve();
            } catch (err) {
              j.reject(new UnavailableError(`could not store the data: ${(err as Error).message.split("\n")[0]}`));
            }
          }
        } finally {
          this.queued -= n;
        }
      }
    } finally {
      this.running = false;
    }
  }

  private async commit(batch: Job[]): Promise<void> {
    const resources: ResourceRecord[] = [];
    const now = Date.now();
    for (const j of batch) {
      for (const r of j.resources ?? []) {
        const last = this.announced.get(instanceKey(r));
        // Written again when stale or when it moves the service; a report without namespace or
        // region (a metrics exporter's, often) says nothing about them.
        const same = last && (r.namespace === "" || r.namespace === last.namespace) && (r.region === "" || r.region === last.region);
        if (same && last.atMs > now - RESOURCE_REFRESH_MS) continue;
        resources.push(r);
      }
    }
    const spans = batch.flatMap((j) => (j.spans ? [j.spans] : []));
    const hostSamples = batch.flatMap((j) => j.hostSamples ?? []);
    const latency = batch.flatMap((j) => j.latency ?? []);
    await this.writer.writeResources(resources);
    for (const r of resources) {
      const key = instanceKey(r);
      const last = this.announced.get(key);
      this.announced.set(key, { namespace: r.namespace || (last?.namespace ?? ""), region: r.region || (last?.region ?? ""), atMs: now });
    }
    await this.writer.writeHostSamples(hostSamples);
    await this.writer.writeLatency(latency);
    await this.writer.writePrepared(spans);
  }
}

function instanceKey(r: ResourceRecord): string {
  return `${r.serviceName}\u0000${r.instanceId}`;
}
