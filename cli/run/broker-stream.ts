// Server-streaming calls (StreamQuery) for the broker, through connect-node with protobuf-es:
// loaded at a script's first stream only, so that runs making unary calls alone never load the
// protobuf runtime or the API's descriptors (broker-rpc.ts).
import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { QueryService } from "../../gen/coral/colony/v1/query_pb.js";
import { toPlain, type Plain } from "../../surface/plain.js";

export type StreamCall = (method: string, json: unknown, signal: AbortSignal) => AsyncIterator<Record<string, Plain>>;

export function streamClient(address: string, token: string | undefined): StreamCall {
  // No compression: the colony is a loopback or LAN hop away, and gzip of ~1 MiB batches cost both
  // processes more CPU than the bytes it saved (the colony's thread pool, our inflate).
  const transport = createConnectTransport({
    baseUrl: `http://${address}`,
    httpVersion: "1.1",
    useBinaryFormat: true,
    acceptCompression: [],
    interceptors: token
      ? [
          (next) => (req) => {
            req.header.set("authorization", `Bearer ${token}`);
            return next(req);
          },
        ]
      : [],
  });
  const client = createClient(QueryService, transport) as unknown as Client<typeof QueryService> &
    Record<string, (req: unknown, o: { signal: AbortSignal }) => AsyncIterable<unknown>>;
  return (name, json, signal) => {
    const method = QueryService.methods.find((m) => m.name === name)!;
    let request: unknown;
    try {
      request = fromJson(method.input, json as JsonValue);
    } catch (e) {
      throw new ConnectError(`${name}: ${(e as Error).message}`, Code.InvalidArgument);
    }
    const responses = client[method.localName]!(request, { signal })[Symbol.asyncIterator]();
    return {
      async next() {
        const r = await responses.next();
        return r.done ? r : { done: false, value: toPlain(method.output, r.value as never) as Record<string, Plain> };
      },
      async return() {
        await responses.return?.();
        return { done: true, value: undefined };
      },
    };
  };
}
