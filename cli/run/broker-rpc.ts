// The colony side of the broker: JSON requests from a script become protobuf messages, go to the
// colony with the token, and come back as plain values. Streams use the CLI's Connect transport.
// Unary calls use Connect's unary protocol over node:http directly (one POST, binary body, errors as
// JSON): measured here, connect-node spent ~2.1-2.5 ms of CPU per GetPercentile call against ~1.0 ms
// for the same request through node:http, and a script's sequential calls wait for all of it.
// Loaded on its own (broker.ts's preloadColony, as a run starts): protobuf-es, Connect and the API's
// descriptors cost ~30 ms to load, which then overlaps the module-graph check and Deno's start.
import { Agent, request } from "node:http";
import { fromBinary, fromJson, toBinary, type DescMessage, type DescMethod, type JsonValue, type Message } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { QueryService } from "../../gen/coral/colony/v1/query_pb.js";
import { toPlain, type Plain } from "../../sdk/plain.js";
import { colonyTransport } from "../runtime/client.js";
import { rpcFailure, type RpcFailure } from "../runtime/errors.js";

export interface Colony {
  /** The method a script names, or undefined for a name the API does not have. */
  method(name: string): DescMethod | undefined;
  /** Every method name, for the error that names an unknown one. */
  methodNames: string[];
  /** The request message from the script's proto3 JSON; throws with protobuf-es's reason. */
  request(method: DescMethod, json: unknown): unknown;
  unary(method: DescMethod, request: unknown, signal: AbortSignal): Promise<Record<string, Plain>>;
  stream(method: DescMethod, request: unknown, signal: AbortSignal): AsyncIterator<Record<string, Plain>>;
  /** A failure as the script's CoralError will carry it: the code and a line naming the colony. */
  failure(err: unknown): RpcFailure;
}

/** The code of a Connect error's JSON `code` ("not_found" → Code.NotFound), else Unknown. */
function codeOf(name: unknown): Code {
  const camel = typeof name === "string" ? name.replace(/(^|_)([a-z])/g, (_, _u, c: string) => c.toUpperCase()) : "";
  const code = (Code as unknown as Record<string, Code>)[camel];
  return typeof code === "number" ? code : Code.Unknown;
}

/** A failed unary answer as Connect's client would report it, so rpcFailure reads it the same way. */
function answerError(status: number, contentType: string | undefined, body: Buffer): ConnectError {
  if (contentType?.startsWith("application/json")) {
    try {
      const e = JSON.parse(body.toString("utf8")) as { code?: unknown; message?: unknown };
      return new ConnectError(typeof e.message === "string" ? e.message : "", codeOf(e.code));
    } catch {
      // Not Connect's error JSON: reported by status below.
    }
  }
  if (status === 200) return new ConnectError(`unsupported content type ${contentType ?? ""}`.trim(), Code.Internal);
  return new ConnectError(`HTTP ${status}`, Code.Unknown);
}

export function connectColony(address: string, token: string | undefined): Colony {
  const { hostname, port } = new URL(`http://${address}`);
  const agent = new Agent({ keepAlive: true });
  const headers = (length: number): Record<string, string | number> => ({
    "content-type": "application/proto",
    "connect-protocol-version": "1",
    "content-length": length,
    ...(token ? { authorization: `Bearer ${token}` } : {}),
  });
  const unary = <O extends DescMessage>(method: DescMethod & { output: O }, message: Message, signal: AbortSignal) => {
    const body = toBinary(method.input, message as never);
    return new Promise<unknown>((resolve, reject) => {
      const path = `/${method.parent.typeName}/${method.name}`;
      const req = request({ host: hostname.replace(/^\[|\]$/g, ""), port, path, method: "POST", agent, signal, headers: headers(body.length) }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () => {
          const data = Buffer.concat(chunks);
          if (res.statusCode === 200 && res.headers["content-type"] === "application/proto") {
            try {
              resolve(fromBinary(method.output, data));
            } catch (e) {
              reject(ConnectError.from(e, Code.Internal));
            }
          } else {
            reject(answerError(res.statusCode ?? 0, res.headers["content-type"], data));
          }
        });
      });
      req.on("error", reject);
      req.end(body);
    });
  };
  const client = createClient(QueryService, colonyTransport(`http://${address}`, token)) as unknown as Client<typeof QueryService> &
    Record<string, (req: unknown, o: { signal: AbortSignal }) => unknown>;
  const byName = new Map<string, DescMethod>(QueryService.methods.map((m) => [m.name, m]));
  return {
    method: (name) => byName.get(name),
    methodNames: [...byName.keys()],
    request: (method, json) => fromJson(method.input, json as JsonValue),
    async unary(method, request, signal) {
      const res = await unary(method, request as Message, signal);
      return toPlain(method.output, res as never) as Record<string, Plain>;
    },
    stream(method, request, signal) {
      // Started at the first next(): Connect sends the request as soon as the method is called, and
      // a stream cancelled before anyone awaited it would reject with no one listening.
      let responses: AsyncIterator<unknown> | undefined;
      return {
        async next() {
          responses ??= (client[method.localName]!(request, { signal }) as AsyncIterable<unknown>)[Symbol.asyncIterator]();
          const r = await responses.next();
          return r.done ? r : { done: false, value: toPlain(method.output, r.value as never) as Record<string, Plain> };
        },
        async return() {
          await responses?.return?.();
          return { done: true, value: undefined };
        },
      };
    },
    failure(err) {
      const f = rpcFailure(err, address);
      return f.fromColony ? { ...f, message: `${f.message} (colony ${address})` } : f;
    },
  };
}
