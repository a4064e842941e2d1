// Large OTLP bodies are decoded on threads of their own: decodeRequest holds whatever thread runs
// it for seconds on a 15 MiB body (~0.7 s for 5.7 MiB of metrics, measured), while handing its
// records back costs the event loop a fifth of that (structured clone: ~0.14 s for the same).
// Maps (histogram buckets) and bigints (stream starts) survive the clone; the two error classes
// the receiver tells apart are rebuilt from a tag.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import type { DecodedRequest, Format, Signal } from "./decode.js";
import { LimitError, OtlpDecodeError, type RequestLimits } from "./limits.js";

export interface DecodeJob {
  id: number;
  signal: Signal;
  format: Format;
  body: Uint8Array;
  receivedAtMs: number;
  limits: Readonly<RequestLimits>;
}

export type DecodeFailure = { kind: "limit"; status: 400 | 413; message: string } | { kind: "decode" | "other"; message: string };

type Answer = { id: number; result: DecodedRequest } | { id: number; error: DecodeFailure };

/**
 * The thread's script: the bundle's entry beside the colony's chunks (dist/cli, scripts/build.mjs).
 * Run from source (unit tests) there is none, and large bodies decode inline, paced (receiver.ts).
 */
function workerScript(): URL | undefined {
  for (const name of ["../otlp-decode-worker.mjs", "./otlp-decode-worker.mjs"]) {
    const url = new URL(name, import.meta.url);
    if (existsSync(fileURLToPath(url))) return url;
  }
  return undefined;
}

/** A decoder with `threads` threads, or undefined where there is no thread script to run. */
export function offThreadDecoder(threads: number): OffThreadDecoder | undefined {
  const script = threads > 0 ? workerScript() : undefined;
  return script && new OffThreadDecoder(script, threads);
}

export class OffThreadDecoder {
  private readonly threads: (Worker | undefined)[] = [];
  private readonly pending = new Map<number, { thread: Worker; resolve: (r: DecodedRequest) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private turn = 0;

  constructor(
    private readonly script: URL,
    private readonly size: number,
  ) {}

  decode(signal: Signal, format: Format, body: Buffer, receivedAtMs: number, limits: Readonly<RequestLimits>): Promise<DecodedRequest> {
    const id = this.nextId++;
    // The thread takes the bytes over: a body that owns its whole buffer (what a large request's
    // Buffer.concat gives) moves at no cost; a slice of a buffer Node pools is copied first.
    const whole = body.byteOffset === 0 && body.byteLength === body.buffer.byteLength && body.buffer instanceof ArrayBuffer;
    const own = whole ? new Uint8Array(body.buffer as ArrayBuffer) : new Uint8Array(body);
    const thread = this.thread();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { thread, resolve, reject });
      thread.postMessage({ id, signal, format, body: own, receivedAtMs, limits } satisfies DecodeJob, [own.buffer]);
    });
  }

  private thread(): Worker {
    const i = this.turn++ % this.size;
    let t = this.threads[i];
    if (!t) {
      t = new Worker(this.script);
      t.on("message", (a: Answer) => this.settle(a));
      // A thread that dies takes only its own jobs; the next decode starts a new one.
      const lost = (err: Error) => {
        if (this.threads[i] === t) delete this.threads[i];
        for (const [id, p] of this.pending) {
          if (p.thread !== t) continue;
          this.pending.delete(id);
          p.reject(err);
        }
      };
      t.on("error", lost);
      t.on("exit", (code) => lost(new Error(`the decode thread exited (${code})`)));
      t.unref();
      this.threads[i] = t;
    }
    return t;
  }

  private settle(a: Answer): void {
    const p = this.pending.get(a.id);
    if (!p) return;
    this.pending.delete(a.id);
    if ("result" in a) {
      p.resolve(a.result);
      return;
    }
    const e = a.error;
    p.reject(e.kind === "limit" ? new LimitError(e.status, e.message) : e.kind === "decode" ? new OtlpDecodeError(e.message) : new Error(e.message));
  }

  async close(): Promise<void> {
    await Promise.all(this.threads.map((t) => t?.terminate()));
  }
}
