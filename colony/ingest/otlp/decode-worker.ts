// The body of an OTLP decode thread (decoder.ts): decodeRequest, off the colony's event loop.
import { parentPort } from "node:worker_threads";
import { decodeRequest } from "./decode.js";
import type { DecodeFailure, DecodeJob } from "./decoder.js";
import { LimitError, OtlpDecodeError } from "./limits.js";

parentPort!.on("message", (job: DecodeJob) => {
  try {
    const body = Buffer.from(job.body.buffer, job.body.byteOffset, job.body.byteLength);
    parentPort!.postMessage({ id: job.id, result: decodeRequest(job.signal, job.format, body, job.receivedAtMs, job.limits) });
  } catch (err) {
    const e = err as Error;
    const error: DecodeFailure =
      err instanceof LimitError
        ? { kind: "limit", status: err.status, message: e.message }
        : { kind: err instanceof OtlpDecodeError ? "decode" : "other", message: e.message };
    parentPort!.postMessage({ id: job.id, error });
  }
});
