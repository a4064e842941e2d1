// What the generated SDK functions (gen/…/query_sdk.ts) stand on: the connection to the
// colony, errors, and the result shapes. Portable across Deno (scripts) and Node (tests).
import type { DescMessage, DescMethodServerStreaming, DescMethodUnary, MessageInitShape } from "@bufbuild/protobuf";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { readEnv } from "./env.js";
import { CoralError, errorCodeName } from "./errors.js";
import { toPlain, type Plain } from "./plain.js";


interface Connection {
  address: string;
  transport: Transport;
}

let connection: Connection | undefined;

/** Sets the colony the SDK talks to; see configure.ts for the public entry. */
export function connect(o: { colony?: string; token?: string } = {}): void {
  const address = o.colony ?? readEnv("CORAL_COLONY_ADDR") ?? "127.0.0.1:9090";
  const token = o.token ?? readEnv("CORAL_TOKEN");
  const baseUrl = /^https?:\/\//.test(address) ? address : `http://${address}`;
  connection = {
    address,
    transport: createConnectTransport({
      baseUrl,
      useBinaryFormat: true,
      interceptors: token
        ? [
            (next) => (req) => {
              req.header.set("authorization", `Bearer ${token}`);
              return next(req);
            },
          ]
        : [],
    }),
  };
}

function current(): Connection {
  if (!connection) connect();
  return connection!;
}

const clients = new WeakMap<Transport, Map<string, Client<never>>>();

function clientFor(method: DescMethodUnary | DescMethodServerStreaming): Record<string, (req: unknown) => unknown> {
  const { transport } = current();
  let byService = clients.get(transport);
  if (!byService) clients.set(transport, (byService = new Map()));
  let client = byService.get(method.parent.typeName);
  if (!client) byService.set(method.parent.typeName, (client = createClient(method.parent, transport) as Client<never>));
  return client as unknown as Record<string, (req: unknown) => unknown>;
}

/** The innermost causes' messages, where fetch implementations put "Connection refused". */
function causeText(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err, depth = 0; e && depth < 6; e = (e as { cause?: unknown }).cause, depth++) {
    parts.push(String((e as Error).message ?? e));
  }
  return parts.join(" / ");
}

function coralError(err: unknown, address: string): CoralError {
  if (err instanceof CoralError) return err;
  const ce = ConnectError.from(err);
  const causes = causeText(err);
  if (/refused/i.test(causes)) {
    return new CoralError("unavailable", `cannot reach colony at ${address} (connection refused) — start one with: coral colony start`);
  }
  if (ce.code === Code.Unavailable || /fetch failed|error sending request/i.test(causes)) {
    return new CoralError("unavailable", `cannot reach colony at ${address} (${ce.rawMessage})`);
  }
  if (ce.code === Code.Unauthenticated) {
    return new CoralError("unauthenticated", `colony at ${address} rejected the request: ${ce.rawMessage} — pass --token to coral run or set CORAL_TOKEN`);
  }
  return new CoralError(errorCodeName(Code[ce.code]), `${ce.rawMessage} (colony ${address})`);
}

// In a script, an SDK failure nobody caught ends the run with its one-line message and
// exit code 1, instead of a stack trace through the minified bundle.
const scope = globalThis as { Deno?: { exit(code: number): never }; addEventListener?: (t: string, h: (e: Event & { reason?: unknown }) => void) => void };
if (scope.Deno && scope.addEventListener) {
  scope.addEventListener("unhandledrejection", (e) => {
    if (e.reason instanceof CoralError) {
      e.preventDefault();
      console.error(`error: ${e.reason.message} [${e.reason.code}]`);
      scope.Deno!.exit(1);
    }
  });
}

/** Calls a unary RPC; resolves to the plain response. */
export async function call<I extends DescMessage, O extends DescMessage>(
  method: DescMethodUnary<I, O>,
  init: MessageInitShape<I>,
): Promise<Record<string, Plain>> {
  const { address } = current();
  try {
    const res = await clientFor(method)[method.localName](create(method.input, init));
    return toPlain(method.output, res as never) as Record<string, Plain>;
  } catch (err) {
    throw coralError(err, address);
  }
}

/** Calls a server-streaming RPC; yields plain responses. */
export async function* callStream<I extends DescMessage, O extends DescMessage>(
  method: DescMethodServerStreaming<I, O>,
  init: MessageInitShape<I>,
): AsyncGenerator<Record<string, Plain>> {
  const { address } = current();
  try {
    for await (const res of clientFor(method)[method.localName](create(method.input, init)) as AsyncIterable<unknown>) {
      yield toPlain(method.output, res as never) as Record<string, Plain>;
    }
  } catch (err) {
    throw coralError(err, address);
  }
}

/** An int64 request value from a script's number, refusing what would be silently wrong. */
export function int64(name: string, v: number): bigint {
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new CoralError("invalid_argument", `${name} must be a finite number; got ${String(v)}`);
  }
  return BigInt(Math.trunc(v));
}

