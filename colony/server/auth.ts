import { createHash, timingSafeEqual } from "node:crypto";
import { isIP } from "node:net";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { ColonyStartError } from "./errors.js";

/**
 * Requires `authorization: Bearer <token>` on every call. Connect interceptors run for the
 * Connect, gRPC and gRPC-web protocols alike, so one check covers all three.
 */
export function bearerAuth(token: string): Interceptor {
  // Comparing fixed-length digests keeps the comparison constant-time even when the lengths
  // differ; timingSafeEqual alone throws on unequal lengths and so leaks the token's length.
  const expected = digest(token);
  return (next) => async (req) => {
    const presented = /^Bearer[ \t]+(.+)$/i.exec(req.header.get("authorization") ?? "")?.[1]?.trim();
    if (presented === undefined || !timingSafeEqual(digest(presented), expected)) {
      throw new ConnectError("missing or wrong bearer token", Code.Unauthenticated);
    }
    return next(req);
  };
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
