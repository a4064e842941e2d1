// The one connection to a colony that every client of it uses: `coral query` and `coral mcp` through
// a Connect transport over it (transport.ts), `coral run`'s broker directly (cli/run/broker-rpc.ts,
// broker-stream.ts). It owns what a request carries (the token, the user agent, Connect's version
// header), the keep-alive sockets, the time a colony has to answer, the largest answer taken, and
// how a failure is worded (the translator in errors.ts).
//
// node:http and its own lean HTTP/1.1 for unary calls to a plain-HTTP colony (lean-http.ts), and
// nothing of Connect or protobuf: a `coral run` whose script makes unary calls only must load
// neither (broker-rpc.ts says what that saves). Failures are worded lazily.
import { Agent, request as httpRequest, type IncomingMessage } from "node:http";
import pkg from "../../package.json" with { type: "json" };
import type { RpcFailure } from "./errors.js";
import { aborted, readUnary, silence, unaryBody } from "./connect-wire.js";
import { LeanHttp } from "./lean-http.js";

export interface ClientLimits {
  /** Time to open a connection: a host that drops packets would otherwise hold a call for minutes. */
  connectTimeoutMs: number;
  /**
   * Time the colony may stay silent while a call waits for it: for an answer's headers, and for
   * each next part of a body that is being read. A healthy colony is never this quiet: it bounds its
   * own queries (30 s for SQL) and drops a connection idle for 120 s; what is quieter is stopped or
   * hung.
   */
  answerTimeoutMs: number;
  /** The largest message taken: a unary body, or one message of a stream. */
  readMaxBytes: number;
}

export const DEFAULT_LIMITS: ClientLimits = {
  connectTimeoutMs: 10_000,
  answerTimeoutMs: 150_000,
  // Far above anything the colony sends (its batches are ~1 MiB, a SQL answer at most 16 MiB), so
  // only a broken or foreign server meets it.
  readMaxBytes: 256 * 1024 * 1024,
};

/** Where the colony is: its base URL and the address as messages show it (colony-address.ts). */
export interface ColonyAddress {
  baseUrl: string;
  display: string;
}

export class ColonyClient {
  readonly display: string;
  readonly limits: ClientLimits;
  private readonly url: URL;
  /** Plain HTTP's agent and request, or (a colony behind a TLS proxy) HTTPS's, loaded when first used. */
  private http?: { agent: Agent; request: typeof httpRequest };
  private https?: Promise<{ agent: Agent; request: typeof httpRequest }>;
  /** Unary calls to a plain-HTTP colony. */
  private readonly lean?: LeanHttp;
  private readonly headers: Record<string, string>;

  constructor(address: ColonyAddress, token: string | undefined, limits: Partial<ClientLimits> = {}) {
    this.display = address.display;
    this.limits = { ...DEFAULT_LIMITS, ...limits };
    this.url = new URL(address.baseUrl);
    this.headers = { "connect-protocol-version": "1", "user-agent": `coral/${pkg.version}` };
    if (token) this.headers.authorization = `Bearer ${token}`;
    if (this.url.protocol === "https:") {
      // node:https loads node:crypto and node:tls, which a run against a plain-HTTP colony never needs.
      this.https = import("node:https").then((m) => ({ agent: new m.Agent({ keepAlive: true }), request: m.request }));
      return;
    }
    this.http = { agent: new Agent({ keepAlive: true }), request: httpRequest };
    // A header value node:http would refuse (checkToken refuses such tokens first) keeps node:http,
    // and its error.
    if (Object.values(this.headers).every((v) => /^[\x20-\x7e]*$/.test(v))) {
      this.lean = new LeanHttp({
        host: this.url.hostname.replace(/^\[|\]$/g, ""),
        port: Number(this.url.port || 80),
        display: this.display,
        headers: `host: ${this.url.host}\r\nconnection: keep-alive\r\n${Object.entries(this.headers).map(([k, v]) => `${k}: ${v}\r\n`).join("")}`,
        ...this.limits,
      });
    }
  }

  /**
   * A unary call: POSTs `body` to `path` and resolves with the answer's body when it is a 200 of
   * `contentType`; else fails as post() does, or with what the answer means (connect-wire.ts).
   */
  async unary(path: string, contentType: string, body: Uint8Array, signal?: AbortSignal): Promise<Buffer> {
    if (!this.lean) return readUnary(await this.post(path, contentType, body, signal), contentType, this.limits);
    const answer = await this.lean.post(path, contentType, body, signal);
    return unaryBody(answer.status, answer.contentType, answer.body, contentType);
  }

  /**
   * POSTs `body` to `path` and resolves with the answer once its headers are in. Fails with the
   * socket's error (the translator names ECONNREFUSED and friends), ETIMEDOUT when no connection
   * opens in time, or deadline_exceeded when no answer comes.
   */
  async post(path: string, contentType: string, body: Buffer | Uint8Array, signal?: AbortSignal): Promise<IncomingMessage> {
    const { connectTimeoutMs, answerTimeoutMs } = this.limits;
    const { agent, request } = this.http ?? (await this.https!);
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(aborted(signal));
        return;
      }
      const req = request({
        protocol: this.url.protocol,
        hostname: this.url.hostname.replace(/^\[|\]$/g, ""),
        port: this.url.port || undefined,
        path,
        method: "POST",
        agent,
        headers: { ...this.headers, "content-type": contentType, "content-length": body.length },
      });
      // Not request()'s own `signal`: aborted just after an answer was dropped, that destroys a socket
      // already detached from the request, whose error then has no listener (Node 20).
      let answer: IncomingMessage | undefined;
      const onAbort = () => (answer ? answer.destroy(aborted(signal!)) : req.destroy(aborted(signal!)));
      signal?.addEventListener("abort", onAbort, { once: true });
      req.once("close", () => signal?.removeEventListener("abort", onAbort));
      let connecting: NodeJS.Timeout | undefined;
      const silent = setTimeout(() => req.destroy(silence(answerTimeoutMs)), answerTimeoutMs);
      req.on("socket", (socket) => {
        if (!socket.connecting) return; // a kept-alive connection
        connecting = setTimeout(() => {
          const e = Object.assign(new Error(`connect ETIMEDOUT ${this.display}`), { code: "ETIMEDOUT" });
          req.destroy(e);
        }, connectTimeoutMs);
        socket.once("connect", () => clearTimeout(connecting));
      });
      req.on("response", (res) => {
        clearTimeout(silent);
        clearTimeout(connecting);
        // Aborted after its reader is done (an MCP tool stops a stream it has read enough of), the
        // error has no one left to tell. Readers add their own listeners.
        res.on("error", () => {});
        answer = res;
        resolve(res);
      });
      req.on("error", (e) => {
        clearTimeout(silent);
        clearTimeout(connecting);
        reject(e);
      });
      req.end(body);
    });
  }

  /**
   * An answer's body, read as the caller asks for it; the colony's silence counts only while the
   * caller waits, so a reader that pauses (a script reading slowly) is never timed out.
   */
  async *body(res: IncomingMessage): AsyncGenerator<Buffer> {
    const chunks = res[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    const ms = this.limits.answerTimeoutMs;
    try {
      for (;;) {
        const timer = setTimeout(() => res.destroy(silence(ms)), ms);
        let r: IteratorResult<Buffer>;
        try {
          r = await chunks.next();
        } finally {
          clearTimeout(timer);
        }
        if (r.done) return;
        yield r.value;
      }
    } finally {
      // Cancelled or failed midway: closing the connection is what stops the colony's work.
      if (!res.complete) res.destroy();
    }
  }

  /** A failure as the user reads it: the status code, and a line naming this colony. */
  async failure(err: unknown): Promise<RpcFailure> {
    const [{ connectErrorOf }, { rpcFailure }] = await Promise.all([import("./connect-error.js"), import("./errors.js")]);
    return rpcFailure(connectErrorOf(err), this.display);
  }

  /** Closes the kept-alive connections; calls still running fail. */
  close(): void {
    this.lean?.close();
    this.http?.agent.destroy();
    void this.https?.then((h) => h.agent.destroy(), () => {});
  }
}
