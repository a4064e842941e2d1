import { PUBLIC_METHOD } from "./health.js";
import { setMaxListeners } from "node:events";
import { readFileSync } from "node:fs";
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import { Code, ConnectError, createContextKey, createContextValues, type ConnectRouter, type Interceptor } from "@connectrpc/connect";
import { compressionGzip, connectNodeAdapter } from "@connectrpc/connect-node";
import { listenError } from "./address.js";
import { assertExposureAllowed, bearerAuth, bearerChecker, refuseUnauthenticated } from "./auth.js";
import { ByteBudget, withDefaults, type Lease } from "../admission.js";
import { dropBody } from "./drop-body.js";
import { depthCheckedDecoder } from "./json-depth.js";
import { afterPendingInput, judgeTimeoutsAfterInput, REQUEST_TIMEOUT } from "./late-timeouts.js";

/**
 * How long a connection may take over each phase, and how many may be open at once. Every value
 * is in milliseconds except maxConnections; 0 turns a timeout off (tests only).
 */
export interface ConnectionLimits {
  /**
   * From accept to the first bytes that tell HTTP/2 from HTTP/1.1 (the whole 24-byte preface for
   * HTTP/2). Real clients send them with their first packet.
   */
  firstBytesTimeoutMs: number;
  /** HTTP/1.1: one request's headers, counted from its first byte. HTTP/2: the client's SETTINGS. */
  headersTimeoutMs: number;
  /** One request, headers and body, counted from its first byte (HTTP/2: from its headers). */
  requestTimeoutMs: number;
  /** A connection with no call open: HTTP/1.1 keep-alive, an HTTP/2 session without streams. */
  idleTimeoutMs: number;
  /**
   * A connection with a call open on which no byte moved either way. Each write of a streaming
   * response starts it afresh, so a long StreamQuery that is sending is never cut; a client that
   * stops reading is, and its query with it — per call too: an answer waiting for its client that
   * makes no progress this long is cancelled, however busy the rest of its HTTP/2 session is.
   */
  stallTimeoutMs: number;
  /** Connections open at once; beyond, new ones are closed as soon as they are accepted. */
  maxConnections: number;
}

/**
 * The query port's defaults. Calls are small requests (SQL text at most) answered by up to 30 s of
 * query (the SQL statement timeout), so:
 * - 5 s to the first bytes and 10 s for headers: a client on any real link sends its request in one
 *   or two round trips; whoever takes longer is holding a connection open on purpose (slowloris).
 * - 30 s for a whole request: at most readMaxBytes (4 MiB), so ≥ 140 KB/s, and far more than any
 *   real call (a few hundred bytes) needs.
 * - 30 s idle: longer than the gaps between a script's calls, so clients keep their connection;
 *   OTLP exporters (every ~5 s) too. An idle connection costs one descriptor, and the cap bounds them.
 * - 120 s stalled: four times the statement timeout, so a slow query is never cut mid-computation,
 *   yet a stream nobody reads gives its DuckDB connection back within two minutes.
 * - 1024 connections per port, far above what a colony's users open at once, or fewer when the
 *   process may not open that many files (see connectionBudget): a flood of sockets must not take
 *   the descriptors DuckDB and the other port need.
 */
export const DEFAULT_LIMITS: Readonly<ConnectionLimits> = {
  firstBytesTimeoutMs: 5_000,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  idleTimeoutMs: 30_000,
  stallTimeoutMs: 120_000,
  maxConnections: connectionBudget(openFilesLimit()),
};

/**
 * Connections one port may hold given the process's open-files limit: both ports together leave
 * 128 descriptors to DuckDB (database, WAL, temp files) and Node, and never take more than 1024
 * each. With a common soft limit of 1024 that is 448 a port; unknown (not Linux), 1024.
 */
export function connectionBudget(openFiles: number | undefined): number {
  if (openFiles === undefined || !Number.isFinite(openFiles)) return 1024;
  return Math.max(16, Math.min(1024, Math.floor((openFiles - 128) / 2)));
}

function openFilesLimit(): number | undefined {
  try {
    const soft = /^Max open files\s+(\S+)/m.exec(readFileSync("/proc/self/limits", "utf8"))?.[1];
    return soft === undefined || soft === "unlimited" ? undefined : Number(soft);
  } catch {
    return undefined;
  }
}


/**
 * Largest request message, after decompression. Requests carry SQL text and a few parameters;
 * 4 MiB is gRPC's own default limit, so no client is surprised by it, and it bounds what a gzip or
 * brotli bomb can inflate to.
 */
export const DEFAULT_READ_MAX_BYTES = 4 * 2 ** 20;

/**
 * Bytes of request messages the query port holds at once, over all connections and streams, from
 * the first byte read until the message is decoded (resource_exhausted beyond). A call's message
 * is a few hundred bytes; 128 MiB is 32 calls of the largest message at once, or 16 compressed
 * ones (each may inflate to readMaxBytes more), where 1024 connections × 100 streams × 4 MiB was
 * 400 GB (measured: 200 connections sending 4 MiB each took the colony to 880 MiB; now 300 MiB).
 */
export const DEFAULT_MAX_INFLIGHT_BYTES = 128 * 2 ** 20;

/**
 * Bytes of answers the query port has written but its clients have not taken yet, over all
 * connections; beyond it new calls are refused (resource_exhausted) until clients read or go. One
 * ExecuteQuery answer can be 15 MB: 60 HTTP/2 clients that never read theirs (PINGs keeping their
 * sessions alive) held 1.1 GB in the colony, and ~170 would have forced a worker restart.
 */
export const DEFAULT_MAX_UNSENT_BYTES = 256 * 2 ** 20;

/** Streams one HTTP/2 connection may have open at once (Node's default is unlimited). */
const MAX_CONCURRENT_STREAMS = 100;

/** How long close() waits for calls in flight to end after cancelling them, before closing anyway. */
export const CLOSE_GRACE_MS = 3_000;

export interface ListenOptions {
  host: string;
  /** 0 picks a free port; the result reports the real one. */
  port: number;
  routes: (router: ConnectRouter) => void;
  /** When set, every call must carry `authorization: Bearer <token>`. */
  token?: string;
  /** Run for every call after the token check. (Not per service: a service's own list would replace the token check.) */
  interceptors?: Interceptor[];
  /** Overrides of DEFAULT_LIMITS. */
  limits?: Partial<ConnectionLimits>;
  /** Largest request message after decompression (default DEFAULT_READ_MAX_BYTES). */
  readMaxBytes?: number;
  /** Bytes of request messages held at once (default DEFAULT_MAX_INFLIGHT_BYTES). */
  maxInflightBytes?: number;
  /** Bytes of answers written and not yet taken by clients (default DEFAULT_MAX_UNSENT_BYTES). */
  maxUnsentBytes?: number;
  /** A socket already listening on host:port, received from another process, to accept from instead of binding one. */
  socket?: ListeningSocket;
}

/**
 * A listening socket as Node passes it between processes (child_process `send` with a handle): the
 * colony's supervisor keeps its ports open this way while it restarts the worker that serves them.
 */
export type ListeningSocket = object;

/** The listening socket (libuv's handle) of a server that is listening, to pass on to another process. */
export function listeningSocket(server: net.Server): ListeningSocket {
  // `_handle` is how Node's own docs name what server.listen(handle) takes.
  return (server as unknown as { _handle: ListeningSocket })._handle;
}

export interface Listener {
  address: { host: string; port: number };
  /** Bytes of request messages held now (see maxInflightBytes). */
  readonly inflightBytes: number;
  /** Bytes of answers held now (see maxUnsentBytes). */
  readonly unsentBytes: number;
  /** The listening socket (see ListenOptions.socket). */
  socket: ListeningSocket;
  /** Stops accepting, cancels the calls in flight and waits (briefly) for their handlers to end. */
  close(): Promise<void>;
}

/** Health probes carry no credentials (see server/health.ts). */
const PUBLIC_PATHS = new Set([`/${PUBLIC_METHOD}`]);

// Every HTTP/2 connection opens with this preface (RFC 9113 §3.4); no HTTP/1.x request can.
const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

/**
 * Serves Connect, gRPC and gRPC-web on one cleartext port. gRPC needs HTTP/2, while fetch-based
 * clients (Deno, browsers, curl by default) speak HTTP/1.1 — and Node's cleartext http2 server
 * refuses HTTP/1.1. So a plain TCP server reads the first bytes of each connection and hands the
 * socket to whichever server speaks its protocol.
 */
export async function listen(opts: ListenOptions): Promise<Listener> {
  assertExposureAllowed(opts.host, opts.port, opts.token);
  const limits = withDefaults(DEFAULT_LIMITS, opts.limits);
  const readMaxBytes = opts.readMaxBytes ?? DEFAULT_READ_MAX_BYTES;
  const budget = new ByteBudget(opts.maxInflightBytes ?? DEFAULT_MAX_INFLIGHT_BYTES);
  const unsent = new ByteBudget(opts.maxUnsentBytes ?? DEFAULT_MAX_UNSENT_BYTES);
  const leases = new WeakMap<NodeRequest, Lease>();
  const leaseKey = createContextKey<Lease | undefined>(undefined);
  // A request's bytes are garbage once its message is decoded, whatever the handler then takes (a
  // StreamQuery may run for minutes). Interceptors of a unary call run after that; those of a
  // streaming call before, the handler reading the message itself.
  const decoded: Interceptor = (next) => (req) => {
    const lease = req.contextValues.get(leaseKey);
    if (!lease || !req.stream) {
      lease?.release();
      return next(req);
    }
    return next({ ...req, message: releasing(req.message, lease) });
  };

  // Unary answers computed while the backlog filled (calls admitted together, queued for SQL) are
  // dropped rather than written: each may be 15 MB, and without this they all would be.
  const answerFits: Interceptor = (next) => async (req) => {
    const res = await next(req);
    if (res.stream || unsent.used < unsent.maxBytes || `${req.service.typeName}/${req.method.name}` === PUBLIC_METHOD) return res;
    throw new ConnectError(unsentBacklog(unsent.used), Code.ResourceExhausted, { "retry-after": "1" });
  };

  // Calls in flight, so close() can wait for their handlers (and the DuckDB connections they hold).
  const inFlight = new Set<Promise<void>>();
  const track: Interceptor = (next) => async (req) => {
    let done!: () => void;
    const call = new Promise<void>((resolve) => (done = resolve));
    inFlight.add(call);
    void call.then(() => inFlight.delete(call));
    try {
      const res = await next(req);
      if (!res.stream) {
        done();
        return res;
      }
      const messages = res.message;
      return {
        ...res,
        message: (async function* () {
          try {
            yield* messages;
          } finally {
            done();
          }
        })(),
      };
    } catch (err) {
      done();
      throw err;
    }
  };
  const shutdown = new AbortController();
  // Every call in flight listens on it (connect-es); more than 10 is normal, not a leak.
  setMaxListeners(0, shutdown.signal);

  const adapter = connectNodeAdapter({
    routes: opts.routes,
    interceptors: [decoded, answerFits, track, ...(opts.token ? [bearerAuth(opts.token, new Set([PUBLIC_METHOD]))] : []), ...(opts.interceptors ?? [])],
    contextValues: (req) => createContextValues().set(leaseKey, leases.get(req)),
    connect: true,
    grpc: true,
    grpcWeb: true,
    // Bounds every message both as read and after decompression (connect-es passes it to zlib as
    // maxOutputLength), on every protocol.
    readMaxBytes,
    // gzip only: what clients send when they compress at all, and one fewer decompressor to expose.
    // Anything else (deflate, br, …) is refused with "unimplemented" before the body is read.
    acceptCompression: [compressionGzip],
    // Handlers see ctx.signal aborted at shutdown, so a StreamQuery stops at its next batch.
    shutdownSignal: shutdown.signal,
    // connect-es decodes each JSON message with this before parsing it (its own option, though its
    // handler options' type leaves it out): deep nesting is refused before JSON.parse holds the loop.
    jsonOptions: { textDecoder: depthCheckedDecoder } as object,
  });

  const accepts = opts.token ? bearerChecker(opts.token) : undefined;
  const handle = (req: NodeRequest, res: NodeResponse) => {
    // The token is checked here, on the raw request, because connect-es reads and inflates the whole
    // body before any interceptor runs: a 1 MB gzip bomb without a token took the colony to 2 GB.
    if (accepts && !PUBLIC_PATHS.has(req.url ?? "") && !accepts(req.headers.authorization)) return refuseUnauthenticated(req, res, readMaxBytes);
    // connect-es waits for 'drain' or 'error' after a write that filled the buffer; a response
    // closed under it (client gone, session destroyed at shutdown) emits neither, and the handler —
    // with the DuckDB query behind a stream — would wait forever. Its next write then fails.
    res.once("close", () => {
      if (res.listenerCount("drain") > 0) res.emit("drain");
    });
    const lease = budget.lease();
    leases.set(req, lease);
    // Every way a call ends (answered, refused, reset, timed out) closes its response.
    res.once("close", () => lease.release());
    res.once("finish", () => lease.release());
    watchUnsent(res, unsent.lease(), limits.stallTimeoutMs);
    // Health probes answer in a few bytes and must not read as "down" while clients are slow.
    const backlog = () => (unsent.used >= unsent.maxBytes && !PUBLIC_PATHS.has(req.url ?? "") ? unsent.used : undefined);
    meterBody(req, lease, readMaxBytes, () => budget.used, backlog);
    adapter(req, res);
  };

  const h1 = createHttp1Server(limits, handle);
  // Node enforces headersTimeout and requestTimeout from a timer it starts on 'listening'; this
  // server never listens (the front hands it sockets), so without this its requests could take
  // forever — 1 byte/s headers were still open after 150 s.
  h1.emit("listening");

  const h2 = http2.createServer({ settings: { maxConcurrentStreams: MAX_CONCURRENT_STREAMS } }, (req, res) => {
    requestDeadline(req, limits.requestTimeoutMs);
    handle(req, res);
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    guardSession(session, limits);
  });
  // A session's protocol errors are its own; without a listener they would be thrown.
  h2.on("sessionError", () => {});

  const sockets = new Set<net.Socket>();
  const front = net.createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    // A client that connects and vanishes must not take the process down with an unhandled error.
    socket.on("error", () => socket.destroy());
    sniff(socket, limits.firstBytesTimeoutMs, (isH2) => (isH2 ? h2 : h1).emit("connection", socket));
  });
  // Node closes sockets beyond this as it accepts them; clients already connected are unaffected.
  if (limits.maxConnections > 0) front.maxConnections = limits.maxConnections;

  await new Promise<void>((resolve, reject) => {
    front.once("error", (err: NodeJS.ErrnoException) => reject(listenError(err, opts.host, opts.port, "--listen")));
    if (opts.socket) front.listen(opts.socket, () => resolve());
    else front.listen({ host: opts.host, port: opts.port }, () => resolve());
  });
  const bound = front.address() as net.AddressInfo;
  // After start-up the only server errors are failed accepts (EMFILE, ECONNABORTED): transient and
  // per connection. Without a listener they would crash the colony and drop every other client.
  front.on("error", () => {});

  let closing: Promise<void> | undefined;
  return {
    address: { host: opts.host, port: bound.port },
    get inflightBytes() {
      return budget.used;
    },
    get unsentBytes() {
      return unsent.used;
    },
    socket: listeningSocket(front),
    close() {
      closing ??= (async () => {
        const closed = new Promise<void>((resolve) => front.close(() => resolve()));
        shutdown.abort();
        // Streaming calls and keep-alive connections would otherwise hold close() open forever.
        for (const session of sessions) session.destroy();
        for (const socket of sockets) socket.destroy();
        h1.closeAllConnections();
        h1.close(() => {}); // stops the timeout checker started above
        await closed;
        // A handler stuck in DuckDB past the grace period is the SQL runner's to abandon; the
        // colony must still get to its checkpoint.
        let grace: NodeJS.Timeout | undefined;
        await Promise.race([Promise.all(inFlight), new Promise((resolve) => (grace = setTimeout(resolve, CLOSE_GRACE_MS)))]);
        clearTimeout(grace);
      })();
      return closing;
    },
  };
}

function unsentBacklog(bytes: number): string {
  return `the colony is holding ${bytes} bytes of answers its clients have not read yet: retry later`;
}

async function* releasing<T>(messages: AsyncIterable<T>, lease: Lease): AsyncGenerator<T> {
  try {
    yield* messages;
  } finally {
    lease.release();
  }
}

/**
 * Makes the request's body take its bytes from `lease` as connect-es reads it (it reads the Node
 * request with for-await, which goes through Symbol.asyncIterator). Before the first byte: the
 * declared length, and readMaxBytes more when the call is compressed (what it may inflate to);
 * without a declared length (gRPC sends none), each chunk as it arrives, so a client trickling a
 * body holds only what it has sent. What does not fit fails the read with resource_exhausted,
 * which connect-es answers in the call's own protocol (Connect: HTTP 429; gRPC, gRPC-web: status
 * 8), before any byte of a declared body is read. The rest of the body is then dropped as it
 * arrives, never held, so the client hears the answer rather than a reset.
 *
 * Only whole-request calls are served here (unary, server streaming), so a call's body is one
 * message, and the interceptor `decoded` gives its bytes back once it is decoded.
 */
function meterBody(req: NodeRequest, lease: Lease, readMaxBytes: number, used: () => number, backlogged: () => number | undefined): void {
  const declared = req.headers["content-length"] === undefined ? undefined : Number(req.headers["content-length"]);
  const compressed = ["content-encoding", "connect-content-encoding", "grpc-encoding"].some((h) => {
    const v = String(req.headers[h] ?? "identity").trim().toLowerCase();
    return v !== "identity" && v !== "";
  });
  let inner: AsyncIterator<Buffer> | undefined;
  const refuse = (message = `the colony is holding ${used()} bytes of requests already: retry later`): ConnectError => {
    // connect-es stops reading at the error; without this the unread rest would hold the
    // HTTP/1.1 connection (or the HTTP/2 stream's window) until the request timeout.
    dropBody(req, readMaxBytes);
    // The iterator's 'readable' listener would keep 'data' from flowing until it is gone.
    void Promise.resolve(inner?.return?.()).finally(() => req.resume());
    return new ConnectError(message, Code.ResourceExhausted, { "retry-after": "1" });
  };
  const metered: AsyncIterableIterator<Buffer> = {
    async next() {
      if (!inner) {
        const backlog = backlogged();
        if (backlog !== undefined) throw refuse(unsentBacklog(backlog));
        const upfront = Math.min(declared ?? 0, readMaxBytes) + (compressed ? readMaxBytes : 0);
        if (!lease.take(upfront)) throw refuse();
        // Not destroyed when left early: refuse() still drops the rest through it.
        inner = (req as unknown as { iterator(o: { destroyOnReturn: boolean }): AsyncIterator<Buffer> }).iterator({ destroyOnReturn: false });
      }
      const r = await inner.next();
      if (!r.done && declared === undefined && !lease.take(r.value.length)) throw refuse();
      return r;
    },
    async return() {
      // connect-es leaves early when the body breaks its own limits or a message fails to decode,
      // and answers. Destroying the request then (what Node's iterator does) would close an
      // HTTP/1.1 connection before that answer; the rest is dropped as it comes instead.
      await inner?.return?.();
      if (!req.complete) {
        dropBody(req, readMaxBytes);
        req.resume();
      }
      return { done: true, value: undefined };
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
  Object.defineProperty(req, Symbol.asyncIterator, { value: () => metered, configurable: true });
}

/**
 * Keeps `lease` at the bytes of the answer written but not yet taken by the client (Node's buffer
 * of the HTTP/1.1 socket or HTTP/2 stream, which holds everything past the client's flow-control
 * window), until the response ends either way. While bytes wait, the answer must make progress
 * within stallTimeoutMs or it is cancelled: HTTP/2's own timeouts count bytes of the whole session,
 * so a client sending PINGs and never reading would otherwise hold its stream (and query) forever.
 */
function watchUnsent(res: NodeResponse, lease: Lease, stallTimeoutMs: number): void {
  const pending = (): number => ("stream" in res ? res.stream.writableLength : res.writableLength);
  let stall: NodeJS.Timeout | undefined;
  const arm = (waiting: number) => {
    stall = setTimeout(() => {
      stall = undefined;
      const now = pending();
      // One write is released at once when it is all sent, so progress shows only between writes.
      if (now === 0 || res.writableFinished || res.destroyed) return;
      if (now < waiting) return arm(now);
      if ("stream" in res) res.stream.close(http2.constants.NGHTTP2_CANCEL);
      else res.destroy();
    }, stallTimeoutMs).unref();
  };
  const update = () => {
    const now = pending();
    lease.hold(now);
    if (now === 0) {
      clearTimeout(stall);
      stall = undefined;
    } else if (stall === undefined && stallTimeoutMs > 0) arm(now);
  };
  const { write, end } = res as unknown as { write: (...a: unknown[]) => boolean; end: (...a: unknown[]) => unknown };
  Object.assign(res, {
    write(...args: unknown[]) {
      const flushed = write.apply(res, args);
      update();
      return flushed;
    },
    end(...args: unknown[]) {
      const out = end.apply(res, args);
      update();
      return out;
    },
  });
  res.on("drain", update);
  const done = () => {
    clearTimeout(stall);
    lease.release();
  };
  res.once("close", done);
  res.once("finish", done);
}

/**
 * An HTTP/1.1 server with the limits' timeouts (both ports use one). The connection cap is the
 * caller's: it belongs to the server that accepts the sockets.
 */
export function createHttp1Server(limits: ConnectionLimits, handler: http.RequestListener, timeoutResponse = REQUEST_TIMEOUT): http.Server {
  // Node checks the two timeouts below only this often (30 s by default), which would let a slow
  // client keep its connection for up to that much longer than they say.
  const connectionsCheckingInterval = checkingInterval(limits);
  const server = http.createServer(
    {
      headersTimeout: limits.requestTimeoutMs > 0 ? Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs) : limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      connectionsCheckingInterval,
    },
    handler,
  );
  server.keepAliveTimeout = limits.idleTimeoutMs;
  server.timeout = limits.stallTimeoutMs;
  judgeTimeoutsAfterInput(server, timeoutResponse, connectionsCheckingInterval);
  return server;
}

/** How often Node checks the HTTP/1.1 headers and request timeouts; also what counts as a hold-up (late-timeouts.ts). */
export function checkingInterval(limits: ConnectionLimits): number {
  const shortest = Math.min(...[limits.headersTimeoutMs, limits.requestTimeoutMs].filter((t) => t > 0));
  return Number.isFinite(shortest) ? Math.max(10, Math.min(1_000, Math.floor(shortest / 4))) : 30_000;
}

/**
 * HTTP/2's timeouts, which Node's http2 server does not have: the client's SETTINGS within the
 * headers timeout, no stream for idleTimeoutMs closes the session (GOAWAY, then the socket), no
 * byte either way for stallTimeoutMs destroys it.
 */
function guardSession(session: http2.ServerHttp2Session, limits: ConnectionLimits): void {
  if (limits.headersTimeoutMs > 0) {
    let settled = false;
    const settings = setTimeout(() => afterPendingInput(() => settled || session.destroy()), limits.headersTimeoutMs).unref();
    session.once("remoteSettings", () => {
      settled = true;
      clearTimeout(settings);
    });
    session.once("close", () => clearTimeout(settings));
  }
  if (limits.idleTimeoutMs > 0) {
    let open = 0;
    let idle: NodeJS.Timeout | undefined;
    // Counted by streams, not by bytes: PING frames would otherwise keep an unused session forever.
    const arm = () => (idle = setTimeout(() => session.close(), limits.idleTimeoutMs).unref());
    arm();
    session.on("stream", (stream: http2.ServerHttp2Stream) => {
      open++;
      clearTimeout(idle);
      stream.once("close", () => {
        if (--open === 0 && !session.closed && !session.destroyed) arm();
      });
    });
    session.once("close", () => clearTimeout(idle));
  }
  if (limits.stallTimeoutMs > 0) session.setTimeout(limits.stallTimeoutMs, () => session.destroy());
}

/**
 * HTTP/2's counterpart of Node's requestTimeout for HTTP/1.1: a stream whose request body has not
 * fully arrived in time is cancelled (a client trickling a body, or one that never ends it).
 */
function requestDeadline(req: http2.Http2ServerRequest, timeoutMs: number): void {
  if (timeoutMs <= 0 || req.stream.endAfterHeaders) return;
  const timer = setTimeout(
    () =>
      afterPendingInput(() => {
        // The body may all be here without having been read yet: that is not the client's fault.
        const received = req.readableEnded || (req.stream.state as { remoteClose?: number }).remoteClose === 1;
        if (!received && !req.stream.destroyed) req.stream.close(http2.constants.NGHTTP2_CANCEL);
      }),
    timeoutMs,
  ).unref();
  req.once("end", () => clearTimeout(timer));
  req.stream.once("close", () => clearTimeout(timer));
}

/**
 * Reads just enough of a fresh connection to tell HTTP/2 from HTTP/1.x, then puts the bytes
 * back so the chosen server parses the stream from its first byte. A connection that does not
 * get that far within timeoutMs (silent, or half a preface) is closed — judged once the input
 * waiting on the socket has been read (afterPendingInput).
 */
function sniff(socket: net.Socket, timeoutMs: number, decide: (isH2: boolean) => void): void {
  let seen = Buffer.alloc(0);
  let decided = false;
  const deadline = timeoutMs > 0 ? setTimeout(() => afterPendingInput(() => decided || socket.destroy()), timeoutMs).unref() : undefined;
  socket.once("close", () => clearTimeout(deadline));
  const onData = (chunk: Buffer) => {
    seen = Buffer.concat([seen, chunk]);
    const n = Math.min(seen.length, H2_PREFACE.length);
    const matches = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
    if (matches && seen.length < H2_PREFACE.length) return;
    clearTimeout(deadline);
    decided = true;
    socket.off("data", onData);
    socket.pause();
    socket.unshift(seen);
    decide(matches);
    // http2 takes over the socket's handle (reading what we put back first); the http1 server
    // only adds 'data' listeners, which do not restart a stream paused on purpose.
    if (!matches) socket.resume();
  };
  socket.on("data", onData);
}
