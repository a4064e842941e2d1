// The colony side of the broker: a script's JSON request goes to the colony with the token, and the
// answer comes back as a plain value. Both go through the colony's one connection
// (cli/runtime/client.ts), as `coral query`'s and `coral mcp`'s calls do, and are read and worded by
// the same code (cli/runtime/connect-wire.ts, errors.ts). Unary calls are Connect's unary protocol
// in JSON (one POST; the script's request is already proto3 JSON), read and checked with the API's
// shape (api-shape.ts, plain-json.ts): no protobuf runtime, no descriptors, no Connect client on the
// path of a run that makes unary calls only. Measured per run: loading protobuf-es, the descriptors
// and connect-node cost ~30 ms of CPU (~100 ms on a busy machine) while Deno started, and per
// GetPercentile call connect-node spent ~2.1-2.5 ms of CPU, binary over node:http ~1.0 ms.
// Streams use Connect's streaming protocol in binary, loaded at the first one (broker-stream.ts).
import { ColonyClient, type ClientLimits } from "../runtime/client.js";
import { resolveColony } from "../runtime/colony-address.js";
import { WireError } from "../runtime/connect-wire.js";
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
  /** The run is over: its kept-alive connections close. */
  close(): void;
}

async function loadShape(): Promise<ApiShape> {
  if (typeof __CORAL_API_SHAPE__ !== "undefined") return __CORAL_API_SHAPE__;
  return (await import("./api-shape-source.js")).apiShape;
}

/** The colony at `address` (HOST:PORT, as coral run is given it) as a script's calls reach it. */
export async function connectColony(address: string, token: string | undefined, limits?: Partial<ClientLimits>): Promise<Colony> {
  const shape = await loadShape();
  const client = new ColonyClient(resolveColony(address), token, limits);
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
    async unary(method, json, signal) {
      const data = await client.unary(`/${shape.service}/${method.name}`, "application/json", Buffer.from(JSON.stringify(json)), signal);
      try {
        return plainOf(method.output, JSON.parse(data.toString("utf8")), shape);
      } catch (e) {
        throw new WireError("internal", (e as Error).message);
      }
    },
    stream(method, json, signal) {
      // Started at the first next(): a stream cancelled before anyone awaited it would otherwise
      // reject with no one listening.
      let responses: AsyncIterator<StreamItem> | undefined;
      return {
        async next() {
          if (!responses) {
            streams ??= import("./broker-stream.js").then((m) => m.streamClient(client));
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
      const f = await client.failure(err);
      return f.fromColony ? { ...f, message: `${f.message} (colony ${client.display})` } : f;
    },
    close: () => client.close(),
  };
}
