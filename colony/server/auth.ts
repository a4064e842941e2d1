import { createHash, timingSafeEqual } from "node:crypto";
import type * as http from "node:http";
import type * as http2 from "node:http2";
import { isIP } from "node:net";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { dropBody } from "./drop-body.js";
import { ColonyStartError } from "./errors.js";

/** What every refused call is told, on every protocol. */
export const TOKEN_REFUSED = "missing or wrong bearer token";

/**
 * A constant-time test of an `authorization` header value against `Bearer <token>`.
 *
 * Comparing fixed-length digests keeps the comparison constant-time even when the lengths
 * differ; timingSafeEqual alone throws on unequal lengths and so leaks the token's length.
 */
export function bearerChecker(token: string): (authorization: string | null | undefined) => boolean {
  const expected = digest(token);
  return (authorization) => {
    const presented = /^Bearer[ \t]+(.+)$/i.exec(authorization ?? "")?.[1]?.trim();
    return presented !== undefined && timingSafeEqual(digest(presented), expected);
  };
}

/**
 * Requires `authorization: Bearer <token>` on every call. Connect interceptors run for the
 * Connect, gRPC and gRPC-web protocols alike, so one check covers all three — but only after the
 * adapter has read and decompressed the body, which is why listen() checks the token first, on the
 * raw request (see refuseUnauthenticated). This stays as a second line should a route ever reach
 * the adapter some other way.
 */
export function bearerAuth(token: string, publicMethods: ReadonlySet<string> = new Set()): Interceptor {
  const accepts = bearerChecker(token);
  return (next) => async (req) => {
    if (!publicMethods.has(`${req.service.typeName}/${req.method.name}`) && !accepts(req.header.get("authorization"))) {
      throw new ConnectError(TOKEN_REFUSED, Code.Unauthenticated);
    }
    return next(req);
  };
}

/**
 * Answers a call without a valid token in its own protocol's terms, before its body is read,
 * parsed or inflated (a gzip bomb sent without a token must cost nothing). The protocol is told by
 * the content type, as connect-es's router does.
 */
export function refuseUnauthenticated(
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
  maxDiscardBytes: number,
): void {
  const contentType = String(req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
  if (req.httpVersionMajor === 1 && !req.complete) {
    // An HTTP/1.1 client is still writing its body when the answer comes; closing at once would
    // hand it EPIPE instead of the answer. So a body up to the size a call may have is skipped
    // (counted and dropped, never buffered or inflated; requestTimeout bounds how long that may
    // take) and the connection kept; a larger one ends the connection.
    dropBody(req, maxDiscardBytes);
    if (!(Number(req.headers["content-length"] ?? 0) <= maxDiscardBytes)) res.setHeader("connection", "close");
  }
  let answer: { status: number; headers: Record<string, string>; body?: Buffer };
  if (/^application\/grpc(?:-web(?:-text)?)?(?:\+[a-z]+)?$/.test(contentType)) {
    // gRPC and gRPC-web: an error before any message is a "trailers-only" response, HTTP 200 with
    // the status in the headers (HTTP/2: one HEADERS frame that ends the stream).
    answer = {
      status: 200,
      headers: { "content-type": contentType, "grpc-status": String(Code.Unauthenticated), "grpc-message": encodeURIComponent(TOKEN_REFUSED) },
    };
  } else if (/^application\/connect\+[a-z]+$/.test(contentType)) {
    // Connect streaming: HTTP 200 and the error in the end-of-stream message (flag 0b10), which is
    // always JSON whatever the codec.
    const json = Buffer.from(JSON.stringify({ error: { code: "unauthenticated", message: TOKEN_REFUSED } }));
    const prefix = Buffer.alloc(5);
    prefix[0] = 0b10;
    prefix.writeUInt32BE(json.length, 1);
    answer = { status: 200, headers: { "content-type": contentType }, body: Buffer.concat([prefix, json]) };
  } else {
    // Connect unary (POST or GET), and anything unknown: the Connect error JSON, HTTP 401.
    const json = Buffer.from(JSON.stringify({ code: "unauthenticated", message: TOKEN_REFUSED }));
    answer = { status: 401, headers: { "content-type": "application/json", "www-authenticate": "Bearer" }, body: json };
  }
  if ("stream" in req) {
    // HTTP/2, on the stream itself: the compatibility layer's response waits for trailers, and that
    // keeps Node from resetting (NO_ERROR, RFC 9113 §8.1) a stream whose body it never read — a
    // client still sending a large body would stall on flow control until the request timeout.
    req.stream.respond({ ":status": answer.status, ...answer.headers }, { endStream: answer.body === undefined });
    if (answer.body) req.stream.end(answer.body);
  } else {
    (res as http.ServerResponse).writeHead(answer.status, { ...answer.headers, "content-length": answer.body?.length ?? 0 }).end(answer.body);
  }
}

function digest(s: string): Buffer {
  return createHash("sha256").update(s, "utf8").digest();
}

/** True for addresses only this machine can reach. Host names other than `localhost` are not trusted to be. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  if (h === "localhost") return true;
  if (isIP(h) === 4) return h.startsWith("127.");
  if (isIP(h) === 6) return h === "::1" || /^::ffff:127\./.test(h);
  return false;
}

/** `host:port` as a user would type it back, with IPv6 hosts bracketed. */
export function formatAddress(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Telemetry names hosts, routes and user ids, so a colony reachable from the network must not
 * serve it to anyone who asks: beyond loopback a token is mandatory.
 */
export function assertExposureAllowed(host: string, port: number, token: string | undefined): void {
  if (!token && !isLoopback(host)) {
    throw new ColonyStartError(
      `refusing to listen on ${formatAddress(host, port)} without --token (anyone on the network could read your telemetry)`,
    );
  }
}
