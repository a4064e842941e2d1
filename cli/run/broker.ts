// `coral run`'s end of the SDK channel: it answers a script's calls by asking the colony itself,
// with the token the script never sees, within the run's budgets, and writes the audit log.
// docs/scripting.md ("The wire", "Budgets", "Audit") is the user-facing description.
//
// The script is untrusted. Everything it sends is checked (shape, size, ids, credits); anything
// off ends the run. At most MAX_IN_FLIGHT calls run at once: a further call is held and the socket
// is not read until one finishes (and none while the script leaves our answers unread), so a flood
// stays in the kernel's buffer and the script's memory, never in ours. Stream responses go out only as the script grants credit and as the socket
// drains, so a script that stops reading holds the colony's stream, not our memory.
import { writeSync } from "node:fs";
import type { Socket } from "node:net";
import { MAX_IN_FLIGHT } from "../../sdk/runtime.js";
import type { CoralErrorCode } from "../../surface/error-codes.js";
import { toWire } from "../../sdk/wire.js";
import { exhaustedMessage, reportLine, type Budget, type BudgetName, type Usage } from "./broker-budget.js";
import type { Colony } from "./broker-rpc.js";
import type { StreamItem } from "./broker-stream.js";
import { frame, LineReader, ProtocolError } from "./wire.js";

/** Stream responses a script may have granted and not yet received. */
export const MAX_CREDIT = 64;

export interface BrokerOptions {
  /** host:port of the colony. */
  colony: string;
  token?: string;
  budget: Budget;
  /** An open file descriptor for the audit log (one JSON line per call), if any. */
  auditFd?: number;
  /** Called once when the script broke the protocol; the run must end. */
  onViolation(message: string): void;
}

interface CallMessage {
  id: number;
  method: string;
  request: Record<string, unknown>;
}

interface Call {
  abort: AbortController;
  /** Responses the script will take (streams only). */
  credit: number;
  wake?: () => void;
}

class Refusal extends Error {
  constructor(
    readonly code: CoralErrorCode,
    message: string,
  ) {
    super(message);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function hasOnlyKeys(m: Record<string, unknown>, allowed: string[]): boolean {
  return Object.keys(m).every((k) => allowed.includes(k));
}

/** What a response counts against the rows budget: a batch's row_count, else its lists' items, else 1. */
export function rowsOf(res: Record<string, unknown>): number {
  if (typeof res.row_count === "number") return res.row_count;
  let n = 0;
  let lists = false;
  for (const k of Object.keys(res)) {
    const v = res[k];
    if (k !== "columns" && Array.isArray(v)) {
      n += v.length;
      lists = true;
    }
  }
  return lists ? n : 1;
}

/**
 * The line of one stream response. A response's JSON-encoded cells (StreamItem.raw) travel as a
 * JSON value under "raw", spliced in as the colony's bytes: the SDK parses them once, with the line.
 */
export function itemLine(id: number, item: StreamItem): { parts: (string | Buffer)[]; bytes: number } {
  const head = `{"id":${id},"item":${JSON.stringify(toWire(item.plain))}`;
  if (!item.raw) return { parts: [`${head}}\n`], bytes: Buffer.byteLength(head) + 2 };
  const open = `${head},"raw":{${JSON.stringify(item.raw.field)}:`;
  const cells = item.raw.json.reduce((n, b) => n + b.length, 0);
  return { parts: [open, ...item.raw.json, "}}\n"], bytes: Buffer.byteLength(open) + cells + 3 };
}

let rpcModule: Promise<typeof import("./broker-rpc.js")> | undefined;

/**
 * Starts loading the colony side (the HTTP client and the API's shape) in the background; the
 * launcher calls it once Deno has been spawned, so it loads while Deno starts.
 */
export function preloadColony(): Promise<typeof import("./broker-rpc.js")> {
  rpcModule ??= import("./broker-rpc.js");
  rpcModule.catch(() => {}); // reported by the first call that needs it
  return rpcModule;
}

export class Broker {
  readonly usage: Usage = { rpcs: 0, rows: 0, bytes: 0, time: 0 };
  /** Budgets that refused a call; the run's end report names them. */
  readonly exceeded = new Set<BudgetName>();
  violation?: string;
  private readonly calls = new Map<number, Call>();
  private held?: CallMessage;
  private readonly reader = new LineReader();
  private readonly colony: Promise<Colony>;
  private closed = false;

  constructor(
    private readonly socket: Socket,
    private readonly o: BrokerOptions,
  ) {
    this.colony = preloadColony().then((m) => m.connectColony(o.colony, o.token));
    this.colony.catch(() => {});
    socket.on("data", (chunk: Buffer) => {
      try {
        this.reader.push(chunk);
      } catch (e) {
        if (!(e instanceof ProtocolError)) throw e;
        this.violate(e.message);
      }
      this.pump();
    });
    socket.on("drain", () => {
      for (const c of this.calls.values()) c.wake?.();
      this.pump();
    });
    // EPIPE and the like once the script has exited: the launcher reports how it ended.
    socket.on("error", () => {});
  }

  /** The script is gone: every call still running is abandoned. */
  close(): void {
    this.closed = true;
    this.held = undefined;
    for (const c of this.calls.values()) {
      c.abort.abort();
      c.wake?.();
    }
    this.socket.destroy();
    void this.colony.then((c) => c.close(), () => {});
  }

  /** The end-of-run line about budgets, when one refused a call. */
  report(): string | undefined {
    return this.exceeded.size ? reportLine([...this.exceeded], this.usage, this.o.budget) : undefined;
  }

  private violate(what: string): void {
    if (this.violation || this.closed) return;
    this.violation = `coral run: the script broke the SDK protocol (${what}); the run was stopped`;
    this.close();
    this.o.onViolation(this.violation);
  }

  private pump(): void {
    try {
      this.dispatchAll();
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      this.violate(e.message);
    }
  }

  private dispatchAll(): void {
    while (!this.closed) {
      if (this.held) {
        if (this.calls.size >= MAX_IN_FLIGHT || this.socket.writableNeedDrain) break;
        const m = this.held;
        this.held = undefined;
        void this.start(m);
        continue;
      }
      const m = this.reader.next();
      if (m === undefined) break;
      this.dispatch(m);
    }
    if (this.closed) return;
    if (this.held) this.socket.pause();
    else this.socket.resume();
  }

  private dispatch(m: unknown): void {
    if (!isObject(m)) throw new ProtocolError("sent a message that is not an object");
    const id = m.id;
    if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 1) throw new ProtocolError("sent a message without a valid id");
    if ("method" in m) {
      if (!hasOnlyKeys(m, ["id", "method", "request"]) || typeof m.method !== "string" || !isObject(m.request)) {
        throw new ProtocolError("sent a malformed call");
      }
      if (this.calls.has(id) || this.held?.id === id) throw new ProtocolError(`reused the id ${id} of a call in flight`);
      const call = m as unknown as CallMessage;
      // A script that does not read its answers gets no more of them.
      if (this.calls.size >= MAX_IN_FLIGHT || this.socket.writableNeedDrain) this.held = call;
      else void this.start(call);
    } else if ("credit" in m) {
      const credit = m.credit;
      if (!hasOnlyKeys(m, ["id", "credit"]) || typeof credit !== "number" || !Number.isSafeInteger(credit) || credit < 1) {
        throw new ProtocolError("sent a malformed credit");
      }
      const call = this.calls.get(id);
      if (!call) return; // A stream that just ended; the script had not seen the end yet.
      call.credit += credit;
      if (call.credit > MAX_CREDIT) throw new ProtocolError(`asked for more than ${MAX_CREDIT} stream responses ahead`);
      call.wake?.();
    } else if ("cancel" in m) {
      if (!hasOnlyKeys(m, ["id", "cancel"]) || m.cancel !== true) throw new ProtocolError("sent a malformed cancel");
      const call = this.calls.get(id);
      call?.abort.abort();
      call?.wake?.();
    } else {
      throw new ProtocolError("sent a message that is neither a call, a credit nor a cancel");
    }
  }

  private send(message: unknown): number {
    const line = frame(message);
    if (!this.closed) this.socket.write(line);
    return Buffer.byteLength(line);
  }

  /** Why a new call may not start, if a budget is used up. */
  private refusal(): Refusal | undefined {
    const b = this.o.budget;
    for (const name of ["rpcs", "rows", "bytes", "time"] as const) {
      if (this.usage[name] >= b[name]) return this.exhausted(name);
    }
    return undefined;
  }

  private exhausted(name: BudgetName): Refusal {
    this.exceeded.add(name);
    return new Refusal("resource_exhausted", exhaustedMessage(name, this.usage, this.o.budget));
  }

  /** Counts a response against the rows and bytes budgets; refuses one that would overrun them. */
  private charge(rows: number, bytes: number): void {
    const b = this.o.budget;
    if (this.usage.rows + rows > b.rows) throw this.exhausted("rows");
    if (this.usage.bytes + bytes > b.bytes) throw this.exhausted("bytes");
    this.usage.rows += rows;
    this.usage.bytes += bytes;
  }

  private async start(m: CallMessage): Promise<void> {
    const call: Call = { abort: new AbortController(), credit: 0 };
    this.calls.set(m.id, call);
    const startedAt = new Date();
    const t0 = performance.now();
    let rows = 0;
    let bytes = 0;
    let outcome = "ok";
    let colonyTime = false;
    let overTime = false;
    let timer: NodeJS.Timeout | undefined;
    let stream: AsyncIterator<StreamItem> | undefined;
    try {
      const colony = await this.colony;
      const method = colony.method(m.method);
      if (!method) {
        throw new Refusal("invalid_argument", `unknown method ${JSON.stringify(m.method)}; the API has ${colony.methodNames.join(", ")}`);
      }
      try {
        colony.check(method, m.request);
      } catch (e) {
        throw new Refusal("invalid_argument", `${method.name}: ${(e as Error).message}`);
      }
      const refused = this.refusal();
      if (refused) throw refused;
      this.usage.rpcs++;
      colonyTime = true;
      const left = this.o.budget.time - this.usage.time;
      // Node's timers stop at 2^31 ms (and fire at once beyond); the run's own --timeout is shorter.
      if (left < 2 ** 31) {
        timer = setTimeout(() => {
          overTime = true;
          call.abort.abort();
          call.wake?.();
        }, left);
      }
      if (method.kind === "server_streaming") {
        const responses = (stream = colony.stream(method, m.request, call.abort.signal));
        // Waits until `ready` or the call is over; wake() re-checks on credit, drain and cancel.
        const until = async (ready: () => boolean) => {
          while (!ready() && !call.abort.signal.aborted) {
            await new Promise<void>((resolve) => (call.wake = resolve));
            call.wake = undefined;
          }
          if (call.abort.signal.aborted) throw call.abort.signal.reason;
        };
        for (;;) {
          await until(() => call.credit > 0);
          // The next batch is fetched while the script still reads the previous one: one batch in
          // our memory at most, besides what the socket holds.
          const r = await responses.next();
          if (r.done) break;
          const n = rowsOf(r.value.plain);
          const line = itemLine(m.id, r.value);
          this.charge(n, line.bytes);
          rows += n;
          bytes += line.bytes;
          await until(() => !this.socket.writableNeedDrain);
          if (!this.closed) {
            // One write of the parts (writev): the cells are the colony's bytes, never copied into a string.
            this.socket.cork();
            for (const part of line.parts) this.socket.write(part);
            this.socket.uncork();
          }
          call.credit--;
        }
        bytes += this.send({ id: m.id, end: true });
        stream = undefined;
      } else {
        const res = await colony.unary(method, m.request, call.abort.signal);
        const line = frame({ id: m.id, result: toWire(res) });
        const n = rowsOf(res);
        this.charge(n, Buffer.byteLength(line));
        rows = n;
        bytes = Buffer.byteLength(line);
        if (!this.closed) this.socket.write(line);
      }
    } catch (err) {
      let failure: { code: CoralErrorCode; message: string } | undefined;
      if (overTime) failure = this.exhausted("time");
      else if (err instanceof Refusal) failure = err;
      else if (call.abort.signal.aborted) outcome = "canceled"; // by the script, or the run ended
      else failure = await (await this.colony).failure(err);
      if (failure) {
        call.abort.abort(); // a stream refused midway stops at the colony too
        outcome = failure.code;
        this.send({ id: m.id, error: { code: failure.code, message: failure.message } });
      }
    } finally {
      clearTimeout(timer);
      await stream?.return?.().catch(() => {});
      const ms = performance.now() - t0;
      if (colonyTime) this.usage.time += ms;
      this.calls.delete(m.id);
      this.audit({ time: startedAt.toISOString(), method: m.method, request: m.request, rows, bytes, ms: Math.round(ms * 10) / 10, outcome });
      this.pump();
    }
  }

  private audit(entry: Record<string, unknown>): void {
    if (this.o.auditFd !== undefined) writeSync(this.o.auditFd, `${JSON.stringify(entry)}\n`);
  }
}
