import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { assertExposureAllowed, bearerAuth, formatAddress } from "./auth.js";
import { ColonyStartError } from "./errors.js";

export interface ListenOptions {
  host: string;
  /** 0 picks a free port; the result reports the real one. */
  port: number;
  routes: (router: ConnectRouter) => void;
  /** When set, every call must carry `authorization: Bearer <token>`. */
  token?: string;
  /** Run for every call after the token check. (Not per service: a service's own list would replace the token check.) */
  interceptors?: Interceptor[];
}

export interface Listener {
  address: { host: string; port: number };
  close(): Promise<void>;
}

// Every HTTP/2 connection opens with this preface (RFC 9113 §3.4); no HTTP/1.x request can.
const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

/**
 * Serves Connect, gRPC and gRPC-web on one cleartext port. gRPC needs HTTP/2, while fetch-based
 * clients (Deno, browsers, curl by default) speak HTTP/1.1 — and Node's cleartext http2 server
 * refuses HTTP/1.1. So a plain TCP server reads the first bytes of each connection and hands the
 * socket to whichever server speaks its protocol.
 */
export async function listen(opts: ListenOptions): Promise<Listener> {
  assertExposureAllowed(opts.host, opts.port, opts.token);

  const handler = connectNodeAdapter({
    routes: opts.routes,
    interceptors: [...(opts.token ? [bearerAuth(opts.token)] : []), ...(opts.interceptors ?? [])],
    connect: true,
    grpc: true,
    grpcWeb: true,
  });
  const h1 = http.createServer(handler);
  const h2 = http2.createServer(handler);

  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });

  const front = net.createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    // A client that connects and vanishes must not take the process down with an unhandled error.
    socket.on("error", () => socket.destroy());
    sniff(socket, (isH2) => (isH2 ? h2 : h1).emit("connection", socket));
  });

  await new Promise<void>((resolve, reject) => {
    front.once("error", (err: NodeJS.ErrnoException) => reject(describeListenError(err, opts.host, opts.port)));
    front.listen({ host: opts.host, port: opts.port }, () => resolve());
  });
  const bound = front.address() as net.AddressInfo;
  // After start-up the only server errors are failed accepts (EMFILE, ECONNABORTED): transient and
  // per connection. Without a listener they would crash the colony and drop every other client.
  front.on("error", () => {});

  let closing: Promise<void> | undefined;
  return {
    address: { host: opts.host, port: bound.port },
    close() {
      closing ??= new Promise<void>((resolve) => {
        front.close(() => resolve());
        // Streaming calls and keep-alive connections would otherwise hold close() open forever.
        for (const session of sessions) session.destroy();
        for (const socket of sockets) socket.destroy();
        h1.closeAllConnections();
      });
      return closing;
    },
  };
}

/**
 * Reads just enough of a fresh connection to tell HTTP/2 from HTTP/1.x, then puts the bytes
 * back so the chosen server parses the stream from its first byte.
 */
function sniff(socket: net.Socket, decide: (isH2: boolean) => void): void {
  let seen = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    seen = Buffer.concat([seen, chunk]);
    const n = Math.min(seen.length, H2_PREFACE.length);
    const matches = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
    if (matches && seen.length < H2_PREFACE.length) return;
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

function describeListenError(err: NodeJS.ErrnoException, host: string, port: number): Error {
  const where = formatAddress(host, port);
  switch (err.code) {
    case "EADDRINUSE":
      return new ColonyStartError(`cannot listen on ${where}: the port is already in use (another colony?) — pick another with --listen`);
    case "EADDRNOTAVAIL":
      return new ColonyStartError(`cannot listen on ${where}: this machine has no such address`);
    case "EACCES":
      return new ColonyStartError(`cannot listen on ${where}: permission denied (ports below 1024 need privileges)`);
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return new ColonyStartError(`cannot listen on ${where}: host "${host}" not found`);
    default:
      return new ColonyStartError(`cannot listen on ${where}: ${err.message}`);
  }
}
