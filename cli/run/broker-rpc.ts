// The colony side of the broker: a script's JSON request goes to the colony with the token, and the
// answer comes back as a plain value. Unary calls are Connect's unary protocol in JSON over
// node:http (one POST; the script's request is already proto3 JSON), read and checked with the
// API's shape (api-shape.ts, plain-json.ts): no protobuf runtime, no descriptors, no Connect client
// on the path of a run that makes unary calls only. Measured per run: loading protobuf-es, the
// descriptors and connect-node cost ~30 ms of CPU (~100 ms on a busy machine) while Deno started,
// and per GetPercentile call connect-node spent ~2.1-2.5 ms of CPU, binary over node:http ~1.0 ms.
// Streams use Connect's streaming protocol in binary, loaded at the first one (broker-stream.ts).
import { Agent, request, type IncomingMessage } from "node:http";
import type { Plain } from "../../surface/plain.js";
import type { RpcFailure } from "../runtime/errors.js";
import type { ApiShape, MethodShape } from "./api-shape.js";
import type { StreamCall, StreamItem } from "./broker-stream.js";
import { checkRequest, plainOf } from "./plain-json.js";

/** The shape the build inlines (scripts/build.mjs); undefined when running from the sources. */
declare const __CORAL_API_SHAPE__: ApiShape | undefined;

export interface Method extends MethodShape {
  name: string;
}

export interface Colony {
  /** The method a script names, or undefined for a name the API does not have. */
  method(name: string): Method | undefined;
  /** Every method name, for the error that names an unknown one. */
  methodNames: string[];
  /** Throws with the reason when `json` is not a request of `method` in proto3 JSON. */
  check(method: Method, json: unknown): void;
  unary(method: Method, json: unknown, signal: AbortSignal): Promise<Record<string, Plain>>;
  stream(method: Method, json: unknown, signal: AbortSignal): AsyncIterator<StreamItem>;
  /** A failure as the script's CoralError will carry it: the code and a line naming the colony. */
  failure(err: unknown): Promise<RpcFailure>;
}

/**
 * A unary answer other than 200 + JSON, kept as it came: it becomes a ConnectError only in
 * failure(), so that the path of a successful call loads nothing of Connect.
 */
class Answer extends Error {
  constructor(
    readonly status: number,
    readonly contentType: string | undefined,
    readonly body: Buffer,
  ) {
    super(`HTTP ${status}`);
  }
}

/** A 200 whose JSON could not be read. */
class Unreadable extends Error {}

/** An answer as Connect's client would report it, so rpcFailure reads it the same way. */
function answerError(a: Answer, connect: typeof import("@connectrpc/connect")): Error {
  const { Code, ConnectError } = connect;
  if (a.contentType?.startsWith("application/json")) {
    try {
      const e = JSON.parse(a.body.toString("utf8")) as { code?: unknown; message?: unknown };
      // The code of Connect's JSON ("not_found" → Code.NotFound), else Unknown.
      const camel = typeof e.code === "string" ? e.code.replace(/(^|_)([a-z])/g, (_, _u, c: string) => c.toUpperCase()) : "";
      const code = (Code as unknown as Record<string, number>)[camel];
      if (a.status !== 200 || e.code !== undefined) return new ConnectError(typeof e.message === "string" ? e.message : "", typeof code === "number" ? code : Code.Unknown);
    } catch {
      // Not Connect's error JSON: reported by status below.
    }
  }
  if (a.status === 200) return new ConnectError(`unsupported content type ${a.contentType ?? ""}`.trim(), Code.Internal);
  return new ConnectError(`HTTP ${a.status}`, Code.Unknown);
}

async function loadShape(): Promise<ApiShape> {
  if (typeof __CORAL_API_SHAPE__ !== "undefined") return __CORAL_API_SHAPE__;
  return (await import("./api-shape-source.js")).apiShape;
}

export async function connectColony(address: string, token: string | undefined): Promise<Colony> {
  const shape = await loadShape();
  const { hostname, port } = new URL(`http://${address}`);
  const host = hostname.replace(/^\[|\]$/g, "");
  const agent = new Agent({ keepAlive: true });
  let streams: Promise<StreamCall> | undefined;
  const methods = new Map<string, Method>(Object.entries(shape.methods).map(([name, m]) => [name, { name, ...m }]));
  return {
    // A Map, not the shape's object: "__proto__" or "toString" must not name a method.
    method: (name) => methods.get(name),
    methodNames: [...methods.keys()],
    check(method, json) {
      const why = checkRequest(method.input, json, shape);
      if (why) throw new Error(why);
    },
    unary(method, json, signal) {
      const body = Buffer.from(JSON.stringify(json));
      return new Promise((resolve, reject) => {
        const headers: Record<string, string | number> = {
          "content-type": "application/json",
          "connect-protocol-version": "1",
          "content-length": body.length,
        };
        if (token) headers.authorization = `Bearer ${token}`;
        const req = request({ host, port, path: `/${shape.service}/${method.name}`, method: "POST", agent, signal, headers }, (res: IncomingMessage) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("error", reject);
          res.on("end", () => {
            const data = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
            const type = res.headers["content-type"];
            if (res.statusCode === 200 && type === "application/json") {
              try {
                resolve(plainOf(method.output, JSON.parse(data.toString("utf8")), shape));
              } catch (e) {
                reject(new Unreadable((e as Error).message));
              }
            } else {
              reject(new Answer(res.statusCode ?? 0, type, data));
            }
          });
        });
        req.on("error", reject);
        req.end(body);
      });
    },
    stream(method, json, signal) {
      // Started at the first next(): a stream cancelled before anyone awaited it would otherwise
      // reject with no one listening.
      let responses: AsyncIterator<StreamItem> | undefined;
      return {
        async next() {
          if (!responses) {
            streams ??= import("./broker-stream.js").then((m) => m.streamClient(address, token));
            responses = (await streams)(method.name, json, signal);
          }
          return responses.next();
        },
        async return() {
          await responses?.return?.();
          return { done: true, value: undefined };
        },
      };
    },
    async failure(err) {
      const [connect, { rpcFailure }] = await Promise.all([import("@connectrpc/connect"), import("../runtime/errors.js")]);
      const e = err instanceof Answer ? answerError(err, connect) : err instanceof Unreadable ? new connect.ConnectError(err.message, connect.Code.Internal) : err;
      const f = rpcFailure(e, address);
      return f.fromColony ? { ...f, message: `${f.message} (colony ${address})` } : f;
    },
  };
}
