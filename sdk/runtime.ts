// What the generated SDK functions (gen/…/query_sdk.ts) stand on: the channel to `coral run`,
// errors, and int64 arguments. A script holds no network permission and no token: each call is
// a JSON message to its parent over the IPC channel Deno opens from NODE_CHANNEL_FD (Node's own
// format, newline-delimited JSON), and the parent asks the colony. docs/scripting.md, "The wire",
// describes the messages.
import { CoralError, type CoralErrorCode } from "./errors.js";
import type { Plain } from "../surface/plain.js";
import { fromWire, requestToWire } from "./wire.js";

interface Channel {
  send(message: unknown): boolean;
  on(event: "message" | "error" | "disconnect", listener: (message: unknown) => void): void;
  channel?: { ref(): void; unref(): void };
}

const CLOSED: NonNullable<Reply["error"]> = {
  code: "unavailable",
  message: "the SDK's channel to coral run is closed (did the script call process.disconnect()?); no further calls can be made",
};
let closed = false;

/**
 * Sends on the channel; once it is closed (a script can close it through node:process), every call
 * fails with one CoralError instead of Node's "Channel closed" and a stack through the bundle.
 */
function post(message: unknown): boolean {
  if (closed) return false;
  try {
    channel!.send(message);
    return true;
  } catch {
    closeAll();
    return false;
  }
}

function closeAll(): void {
  closed = true;
  for (const w of [...waiters.values()]) w({ error: CLOSED });
}

/** Calls in flight at once; more wait here. `coral run` refuses a script that sends more. */
export const MAX_IN_FLIGHT = 16;
/** Stream batches the parent may send before the script has taken them. */
const STREAM_WINDOW = 4;

interface Reply {
  result?: unknown;
  item?: unknown;
  /** Fields of `item` sent as JSON values of their own (a batch's cells), taken as they are. */
  raw?: Record<string, unknown>;
  end?: true;
  error?: { code: CoralErrorCode; message: string };
}

type Waiter = (reply: Reply) => void;

let channel: Channel | undefined;
const waiters = new Map<number, Waiter>();
let nextId = 1;
let inFlight = 0;
const queued: (() => void)[] = [];
// The channel keeps the script alive only while something awaits an answer, so a script ends
// when its code is done, as it would with fetch.
let awaiting = 0;

function hold(): void {
  if (awaiting++ === 0) channel!.channel?.ref();
}

function release(): void {
  if (--awaiting === 0) channel!.channel?.unref();
}

function open(): Channel {
  if (channel) return channel;
  const p = (globalThis as { process?: Partial<Channel> }).process;
  if (typeof p?.send !== "function" || typeof p.on !== "function") {
    throw new CoralError("unavailable", "@coral/sdk reaches the colony through coral run; run the script with: coral run SCRIPT");
  }
  channel = p as Channel;
  channel.on("message", (m) => {
    const { id, ...reply } = m as Reply & { id: number };
    waiters.get(id)?.(reply);
  });
  channel.on("error", closeAll);
  channel.on("disconnect", closeAll);
  channel.channel?.unref();
  return channel;
}

async function slot(): Promise<void> {
  if (inFlight < MAX_IN_FLIGHT) {
    inFlight++;
    return;
  }
  await new Promise<void>((resolve) => queued.push(resolve));
}

function freeSlot(): void {
  const next = queued.shift();
  if (next) next();
  else inFlight--;
}

function failure(e: NonNullable<Reply["error"]>): CoralError {
  return new CoralError(e.code, e.message);
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

/** Calls a unary RPC by method name with its request in proto3 JSON; resolves to the plain response. */
export async function call(method: string, request: Record<string, unknown>): Promise<Record<string, Plain>> {
  open();
  await slot();
  const id = nextId++;
  hold();
  try {
    const reply = await new Promise<Reply>((resolve) => {
      waiters.set(id, resolve);
      if (!post({ id, method, request: requestToWire(request) })) resolve({ error: CLOSED });
    });
    if (reply.error) throw failure(reply.error);
    return fromWire(reply.result) as Record<string, Plain>;
  } finally {
    waiters.delete(id);
    release();
    freeSlot();
  }
}

/**
 * Calls a server-streaming RPC; yields plain responses. The parent sends at most STREAM_WINDOW
 * responses ahead of the script, so a slow consumer holds the stream, not memory.
 */
export async function* callStream(method: string, request: Record<string, unknown>): AsyncGenerator<Record<string, Plain>> {
  open();
  await slot();
  const id = nextId++;
  const replies: Reply[] = [];
  let wake: (() => void) | undefined;
  let ended = false;
  waiters.set(id, (reply) => {
    replies.push(reply);
    wake?.();
  });
  try {
    if (!post({ id, method, request: requestToWire(request) }) || !post({ id, credit: STREAM_WINDOW })) replies.push({ error: CLOSED });
    for (;;) {
      if (replies.length === 0) {
        hold();
        try {
          await new Promise<void>((resolve) => (wake = resolve));
        } finally {
          wake = undefined;
          release();
        }
        continue;
      }
      const reply = replies.shift()!;
      if (reply.error) {
        ended = true;
        throw failure(reply.error);
      }
      if (reply.end) {
        ended = true;
        return;
      }
      post({ id, credit: 1 });
      const item = fromWire(reply.item) as Record<string, Plain>;
      yield reply.raw ? Object.assign(item, reply.raw as Record<string, Plain>) : item;
    }
  } finally {
    waiters.delete(id);
    if (!ended) post({ id, cancel: true });
    freeSlot();
  }
}

/** An int64 request value from a script's number, refusing what would be silently wrong. */
export function int64(name: string, v: number): number {
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new CoralError("invalid_argument", `${name} must be a finite number; got ${String(v)}`);
  }
  return Math.trunc(v);
}
