// A Connect Transport over the colony's one connection (client.ts): binary Connect over HTTP/1.1,
// what the colony serves on every port, proxies included. `coral query` and `coral mcp` call the
// colony through it with Connect's generated clients; their answers and failures are read by the
// same code as `coral run`'s (connect-wire.ts), so the three report a colony the same way.
import { create, fromBinary, toBinary, type DescMessage, type DescMethodStreaming, type DescMethodUnary, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type StreamResponse, type Transport, type UnaryResponse } from "@connectrpc/connect";
import type { ColonyClient } from "./client.js";
import { envelope, streamMessages } from "./connect-stream.js";
import { connectErrorOf } from "./connect-error.js";

const path = (method: { parent: { typeName: string }; name: string }) => `/${method.parent.typeName}/${method.name}`;

export function colonyTransport(client: ColonyClient): Transport {
  return {
    async unary<I extends DescMessage, O extends DescMessage>(
      method: DescMethodUnary<I, O>,
      signal: AbortSignal | undefined,
      _timeoutMs: number | undefined,
      _header: HeadersInit | undefined,
      input: MessageInitShape<I>,
    ): Promise<UnaryResponse<I, O>> {
      try {
        const body = toBinary(method.input, create(method.input, input));
        const bytes = await client.unary(path(method), "application/proto", body, signal);
        const message = fromBinary(method.output, bytes);
        return { stream: false, service: method.parent, method, header: new Headers(), trailer: new Headers(), message };
      } catch (e) {
        throw connectErrorOf(e);
      }
    },

    async stream<I extends DescMessage, O extends DescMessage>(
      method: DescMethodStreaming<I, O>,
      signal: AbortSignal | undefined,
      _timeoutMs: number | undefined,
      _header: HeadersInit | undefined,
      input: AsyncIterable<MessageInitShape<I>>,
    ): Promise<StreamResponse<I, O>> {
      if (method.methodKind !== "server_streaming") throw new ConnectError(`${method.name}: only server streams are carried`, Code.Unimplemented);
      const requests: MessageInitShape<I>[] = [];
      for await (const r of input) requests.push(r);
      let res;
      try {
        res = await client.post(path(method), "application/connect+proto", envelope(toBinary(method.input, create(method.input, requests[0]))), signal);
      } catch (e) {
        throw connectErrorOf(e);
      }
      const answer = res;
      async function* messages() {
        try {
          for await (const payload of streamMessages(answer, client.body(answer), client.limits.readMaxBytes)) {
            yield fromBinary(method.output, payload.joined());
          }
        } catch (e) {
          throw connectErrorOf(e);
        }
      }
      return { stream: true, service: method.parent, method, header: new Headers(), trailer: new Headers(), message: messages() };
    },
  };
}
