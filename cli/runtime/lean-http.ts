// A colony's unary calls over plain HTTP/1.1 without node:http: the request written in one piece on
// a kept-alive socket, the answer read by its Content-Length. A `coral run` script's calls are
// sequential, so the parent's CPU per call is latency. Measured in-process against a server that
// answers at once (server's CPU included): node:http + readUnary 110-180 µs per call, this path
// 52-70, a bare request and answer on one socket 34-58; on the sdk_rpc bench's colony, on a busy
// machine, 1005 against 483 (bench/sdk-rpc.ts measures both). Streams and HTTPS stay on node:http.
//
// It fails exactly as node:http and readUnary do (connect-wire.ts), with the same errors: Node's
// socket errors, "socket hang up" before an answer, "aborted" in the middle of one, llhttp's
// "Parse Error: …" for a malformed head, the client's own timeouts and size cap. So errors.ts words
// a failure the same whichever path met it (lean-http.test.ts holds both against hostile servers).
import { connect, type Socket } from "node:net";
import { aborted, silence, tooLarge } from "./connect-wire.js";

export interface LeanTarget {
  host: string;
  port: number;
  /** What messages call the colony (the connect timeout's error names it, as node:http's did). */
  display: string;
  /** Header lines every request carries (host, user agent, token), each ending in CRLF. */
  headers: string;
  connectTimeoutMs: number;
  answerTimeoutMs: number;
  readMaxBytes: number;
}

/** A complete answer: what readUnary looks at. */
export interface Answer {
  status: number;
  contentType: string;
  body: Buffer;
}

/** Node's own limit on an answer's head (http.maxHeaderSize). */
const MAX_HEAD_BYTES = 16 * 1024;
/** Idle connections kept, as node:http's Agent (maxFreeSockets). */
const MAX_IDLE = 256;
/**
 * How soon after a request a kept-alive connection must fail for the request to be sent again. A
 * colony that dropped the connection before reading the request does so within a round trip; one
 * that read it and failed later (a worker restarting after a runaway query) must not be handed the
 * same query twice.
 */
const STALE_WITHIN_MS = 2_000;

export class LeanHttp {
  private readonly idle: Connection[] = [];
  private readonly busy = new Set<Connection>();

  constructor(private readonly target: LeanTarget) {}

  /**
   * POSTs `body` and resolves with the whole answer. A kept-alive connection the colony closed just
   * as the request went out (no byte of answer, within STALE_WITHIN_MS) is tried once more on a new
   * one: every unary call of the colony's API only reads, and this is the race every keep-alive
   * client meets when a server drops an idle connection. A second failure is reported as it is.
   */
  async post(path: string, contentType: string, body: Uint8Array, signal?: AbortSignal): Promise<Answer> {
    const request = Buffer.concat([
      Buffer.from(`POST ${path} HTTP/1.1\r\n${this.target.headers}content-type: ${contentType}\r\ncontent-length: ${body.length}\r\n\r\n`, "latin1"),
      body,
    ]);
    const reused = this.reusable();
    if (!reused) return this.exchange(this.open(), request, signal);
    try {
      return await this.exchange(reused, request, signal);
    } catch (e) {
      if (!(e instanceof Stale)) throw e;
      return this.exchange(this.open(), request, signal);
    }
  }

  /** Closes every connection; calls still running fail as the colony's closing would fail them. */
  close(): void {
    for (const c of this.busy) c.exchange?.fail(hangUp());
    for (const c of this.idle) c.socket.destroy();
    this.idle.length = 0;
  }

  private reusable(): Connection | undefined {
    const now = Date.now();
    for (let c = this.idle.pop(); c; c = this.idle.pop()) {
      if (!c.socket.destroyed && !c.socket.readableEnded && now < c.idleUntil) return c;
      c.socket.destroy();
    }
    return undefined;
  }

  private open(): Connection {
    const { host, port, connectTimeoutMs, display } = this.target;
    // TCP keep-alive as node:http's Agent sets it.
    const socket = connect({ host, port, noDelay: true, keepAlive: true, keepAliveInitialDelay: 1000 });
    const c = new Connection(socket, () => {
      const i = this.idle.indexOf(c);
      if (i >= 0) this.idle.splice(i, 1);
      this.busy.delete(c);
    });
    const timer = setTimeout(() => {
      socket.destroy(Object.assign(new Error(`connect ETIMEDOUT ${display}`), { code: "ETIMEDOUT" }));
    }, connectTimeoutMs);
    socket.once("connect", () => clearTimeout(timer));
    socket.once("close", () => clearTimeout(timer));
    return c;
  }

  private exchange(c: Connection, request: Buffer, signal: AbortSignal | undefined): Promise<Answer> {
    return new Promise<Answer>((resolve, reject) => {
      if (signal?.aborted) {
        this.release(c, false);
        reject(aborted(signal));
        return;
      }
      this.busy.add(c);
      c.socket.ref();
      const onAbort = () => exchange.fail(aborted(signal!));
      const exchange = new Exchange(this.target, c.uses > 0, (err, answer, keepFor) => {
        signal?.removeEventListener("abort", onAbort);
        c.exchange = undefined;
        if (err) {
          this.release(c, false);
          reject(err);
        } else {
          this.release(c, keepFor ?? false);
          resolve(answer!);
        }
      });
      c.exchange = exchange;
      signal?.addEventListener("abort", onAbort, { once: true });
      c.socket.write(request);
    });
  }

  /** Back to the pool for `keepFor` ms (false: closed), as node:http's Agent keeps a socket. */
  private release(c: Connection, keepFor: number | false): void {
    this.busy.delete(c);
    if (keepFor === false || c.socket.destroyed || this.idle.length >= MAX_IDLE) {
      c.socket.destroy();
      return;
    }
    c.uses++;
    c.idleUntil = Date.now() + keepFor;
    // Idle, it must not keep the process alive.
    c.socket.unref();
    this.idle.push(c);
  }
}

/** One socket to the colony, and the exchange on it now (none while idle). */
class Connection {
  exchange?: Exchange;
  /** Answers already read on it: a connection with some is one the colony may have dropped since. */
  uses = 0;
  idleUntil = 0;

  constructor(
    readonly socket: Socket,
    gone: () => void,
  ) {
    // Bytes on an idle connection belong to no request: it cannot be trusted any more.
    socket.on("data", (d: Buffer) => (this.exchange ? this.exchange.data(d) : socket.destroy()));
    socket.on("error", (e) => this.exchange?.failed(e));
    socket.on("close", () => {
      this.exchange?.closed();
      gone();
    });
  }
}

/** A failure on a kept-alive connection before any byte of the answer: post() tries once more. */
class Stale extends Error {}

type Framing = { kind: "length"; remaining: number } | { kind: "chunked"; chunk: number; state: "size" | "data" | "crlf" | "trailer" } | { kind: "close" };

/** One request's answer as it arrives: its head, then its body. */
class Exchange {
  private done = false;
  private readonly started = Date.now();
  private readonly timer: NodeJS.Timeout;
  /** Bytes not yet parsed: part of the head, or (chunked) part of a line. */
  private pending: Buffer | undefined;
  private received = 0;
  private headBytes = 0;
  private inBody = false;
  private status = 0;
  private http10 = false;
  private contentType: string | undefined;
  private contentLength: number | undefined;
  private transferEncoding: string | undefined;
  private connection = "";
  private keepAliveHint: string | undefined;
  private framing: Framing = { kind: "close" };
  private readonly chunks: Buffer[] = [];
  private length = 0;
  private reusable = true;

  constructor(
    private readonly target: LeanTarget,
    private readonly reused: boolean,
    private readonly settle: (err: Error | undefined, answer?: Answer, keepFor?: number | false) => void,
  ) {
    // Until the head is in, the colony has answerTimeoutMs in all; then as long between two parts
    // of the body (client.ts: post(), readUnary).
    this.timer = setTimeout(() => this.fail(silence(target.answerTimeoutMs)), target.answerTimeoutMs);
  }

  fail(err: Error): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.timer);
    this.settle(err);
  }

  failed(err: Error): void {
    if (this.inBody) this.fail(abortedAnswer());
    else this.fail(this.stale() ? new Stale(err.message) : err);
  }

  closed(): void {
    if (this.done) return;
    if (this.inBody && this.framing.kind === "close") this.finish();
    else if (this.inBody) this.fail(abortedAnswer());
    else this.fail(this.stale() ? new Stale("socket hang up") : hangUp());
  }

  private stale(): boolean {
    return this.reused && this.received === 0 && Date.now() - this.started < STALE_WITHIN_MS;
  }

  data(d: Buffer): void {
    if (this.done) return;
    this.received += d.length;
    if (this.inBody) {
      this.timer.refresh();
      this.body(d);
      return;
    }
    const buf = this.pending ? Buffer.concat([this.pending, d]) : d;
    this.pending = undefined;
    const rest = this.head(buf);
    if (rest === undefined || this.done) return;
    this.inBody = true;
    this.timer.refresh();
    if (this.startBody() && rest.length > 0) this.body(rest);
  }

  /** Reads head lines from `buf`; the bytes after the head, or undefined when it is not all in. */
  private head(buf: Buffer): Buffer | undefined {
    let pos = 0;
    if (this.status === 0 && this.headBytes === 0) {
      const n = Math.min(5, buf.length);
      if (buf.toString("latin1", 0, n) !== "HTTP/".slice(0, n)) return this.parseError("HPE_INVALID_CONSTANT", "Expected HTTP/, RTSP/ or ICE/");
    }
    for (;;) {
      const lf = buf.indexOf(10, pos);
      if (lf < 0) {
        if (this.headBytes + buf.length - pos > MAX_HEAD_BYTES) return this.parseError("HPE_HEADER_OVERFLOW", "Header overflow");
        this.pending = buf.subarray(pos);
        return undefined;
      }
      this.headBytes += lf + 1 - pos;
      if (this.headBytes > MAX_HEAD_BYTES) return this.parseError("HPE_HEADER_OVERFLOW", "Header overflow");
      if (lf === pos || buf[lf - 1] !== 13) {
        return this.parseError("HPE_CR_EXPECTED", this.status === 0 ? "Missing expected CR after response line" : "Missing expected CR after header value");
      }
      const line = buf.toString("latin1", pos, lf - 1);
      pos = lf + 1;
      if (this.status === 0) {
        this.statusLine(line);
        if (this.done) return undefined;
      } else if (line === "") {
        // An informational answer (100 Continue, 103 Early Hints) comes before the real one.
        if (this.status >= 100 && this.status < 200 && this.status !== 101) {
          this.resetHead();
          if (pos === buf.length) return undefined;
          return this.head(buf.subarray(pos));
        }
        return buf.subarray(pos);
      } else {
        this.header(line);
        if (this.done) return undefined;
      }
    }
  }

  private statusLine(line: string): void {
    const m = /^HTTP\/(\d)\.(\d) (\d{3})(?: |$)/.exec(line);
    if (m) {
      this.status = Number(m[3]);
      this.http10 = m[1] === "1" && m[2] === "0";
    } else if (!/^HTTP\/\d\./.test(line)) {
      this.parseError("HPE_INVALID_VERSION", "Expected dot");
    } else {
      this.parseError("HPE_INVALID_STATUS", "Invalid status code");
    }
  }

  private header(line: string): void {
    const colon = line.indexOf(":");
    if (line.charCodeAt(0) === 32 || line.charCodeAt(0) === 9) return this.parseError("HPE_INVALID_HEADER_TOKEN", "Unexpected whitespace after header value");
    if (colon <= 0 || !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(line.slice(0, colon))) return this.parseError("HPE_INVALID_HEADER_TOKEN", "Invalid header token");
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    if (/[\x00-\x08\x0a-\x1f\x7f]/.test(value)) return this.parseError("HPE_INVALID_HEADER_TOKEN", "Invalid header value char");
    switch (line.slice(0, colon).toLowerCase()) {
      case "content-length": {
        if (this.contentLength !== undefined) return this.parseError("HPE_UNEXPECTED_CONTENT_LENGTH", "Duplicate Content-Length");
        if (!/^\d+$/.test(value)) return this.parseError("HPE_INVALID_CONTENT_LENGTH", "Invalid character in Content-Length");
        if (BigInt(value) > 0xffffffffffffffffn) return this.parseError("HPE_INVALID_CONTENT_LENGTH", "Content-Length overflow");
        this.contentLength = Number(value);
        break;
      }
      case "content-type":
        // node:http keeps the first of a duplicated content-type.
        this.contentType ??= value;
        break;
      case "transfer-encoding":
        this.transferEncoding = this.transferEncoding === undefined ? value : `${this.transferEncoding}, ${value}`;
        break;
      case "connection":
        this.connection += `,${value.toLowerCase()}`;
        break;
      case "keep-alive":
        this.keepAliveHint ??= value;
        break;
    }
  }

  private resetHead(): void {
    this.status = 0;
    this.headBytes = 0;
    this.contentType = this.contentLength = this.transferEncoding = this.keepAliveHint = undefined;
    this.connection = "";
  }

  /** Sets how the body is framed from the head; false when the answer is already settled. */
  private startBody(): boolean {
    if (this.transferEncoding !== undefined && this.contentLength !== undefined) {
      this.parseError("HPE_INVALID_TRANSFER_ENCODING", "Transfer-Encoding can't be present with Content-Length");
      return false;
    }
    if (this.status === 101 || this.status === 204 || this.status === 304) {
      this.framing = { kind: "length", remaining: 0 };
      if (this.status === 101) this.reusable = false;
    } else if (this.transferEncoding !== undefined) {
      const codings = this.transferEncoding.split(",");
      this.framing = codings[codings.length - 1]!.trim().toLowerCase() === "chunked" ? { kind: "chunked", chunk: 0, state: "size" } : { kind: "close" };
    } else if (this.contentLength !== undefined) {
      if (this.contentLength > this.target.readMaxBytes) {
        this.fail(tooLarge(this.contentLength, this.target.readMaxBytes));
        return false;
      }
      this.framing = { kind: "length", remaining: this.contentLength };
    } else {
      this.framing = { kind: "close" };
    }
    if (this.framing.kind === "length" && this.framing.remaining === 0) {
      this.finish();
      return false;
    }
    return true;
  }

  private body(d: Buffer): void {
    const f = this.framing;
    if (f.kind === "length") {
      if (d.length >= f.remaining) {
        // Bytes past the answer belong to no request: the connection is not used again.
        if (d.length > f.remaining) this.reusable = false;
        this.take(d.subarray(0, f.remaining));
        f.remaining = 0;
        if (!this.done) this.finish();
      } else {
        f.remaining -= d.length;
        this.take(d);
      }
    } else if (f.kind === "close") {
      this.take(d);
    } else {
      this.chunked(f, d);
    }
  }

  /** Chunked transfer coding (RFC 9112 §7.1): size line, data, CRLF; a 0 size, trailers, empty line. */
  private chunked(f: Extract<Framing, { kind: "chunked" }>, d: Buffer): void {
    const buf = this.pending ? Buffer.concat([this.pending, d]) : d;
    this.pending = undefined;
    let pos = 0;
    while (pos < buf.length && !this.done) {
      if (f.state === "data") {
        const n = Math.min(f.chunk, buf.length - pos);
        this.take(buf.subarray(pos, pos + n));
        pos += n;
        f.chunk -= n;
        if (f.chunk === 0) f.state = "crlf";
        continue;
      }
      const lf = buf.indexOf(10, pos);
      if (lf < 0) {
        if (buf.length - pos > MAX_HEAD_BYTES) this.fail(abortedAnswer());
        else this.pending = buf.subarray(pos);
        return;
      }
      if (lf === pos || buf[lf - 1] !== 13) return this.fail(abortedAnswer());
      const line = buf.toString("latin1", pos, lf - 1);
      this.headBytes += lf + 1 - pos;
      pos = lf + 1;
      if (f.state === "crlf") {
        if (line !== "") return this.fail(abortedAnswer());
        f.state = "size";
      } else if (f.state === "size") {
        const m = /^([0-9A-Fa-f]{1,16})[ \t]*(?:;.*)?$/.exec(line);
        if (!m) return this.fail(abortedAnswer());
        f.chunk = Number.parseInt(m[1]!, 16);
        if (f.chunk > 0) {
          f.state = "data";
        } else {
          f.state = "trailer";
          this.headBytes = 0;
        }
      } else if (line === "") {
        if (pos < buf.length) this.reusable = false;
        this.finish();
      } else if (this.headBytes > MAX_HEAD_BYTES) {
        return this.fail(abortedAnswer());
      }
    }
  }

  /** A part of the body, within readMaxBytes as readUnary counts it. */
  private take(part: Buffer): void {
    if (part.length === 0) return;
    this.length += part.length;
    if (this.length > this.target.readMaxBytes) this.fail(tooLarge(this.length, this.target.readMaxBytes));
    else this.chunks.push(part);
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.timer);
    const body = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    this.settle(undefined, { status: this.status, contentType: this.contentType ?? "", body }, this.keepFor());
  }

  /**
   * How long the connection may wait for the next request, as node:http's Agent reads it: not at
   * all after `Connection: close`, a body read to the close, or bytes past the answer; else until
   * a second before the server's announced `Keep-Alive: timeout=N`.
   */
  private keepFor(): number | false {
    if (!this.reusable || this.framing.kind === "close") return false;
    const tokens = this.connection.split(",").map((t) => t.trim());
    if (tokens.includes("close") || (this.http10 && !tokens.includes("keep-alive"))) return false;
    const hint = this.keepAliveHint && /^timeout=(\d+)/.exec(this.keepAliveHint)?.[1];
    if (!hint) return Infinity;
    const ms = Number(hint) * 1000 - 1000;
    return ms > 0 ? ms : false;
  }

  /** llhttp's error for a malformed head, as node:http raises it. */
  private parseError(code: string, reason: string): undefined {
    this.fail(Object.assign(new Error(`Parse Error: ${reason}`), { code }));
    return undefined;
  }
}

/** node:http's error for a connection closed before an answer's head. */
function hangUp(): Error {
  return Object.assign(new Error("socket hang up"), { code: "ECONNRESET" });
}

/** node:http's error for an answer cut off (closed, reset or malformed) after its head. */
function abortedAnswer(): Error {
  return Object.assign(new Error("aborted"), { code: "ECONNRESET" });
}
