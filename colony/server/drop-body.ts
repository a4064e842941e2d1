import * as http2 from "node:http2";
import type * as http from "node:http";

/**
 * Reads the rest of a request's body only to throw it away, after the request was answered early
 * (refused before its body was wanted). Closing at once would hand an HTTP/1.1 client still
 * writing EPIPE instead of the answer, and an unread HTTP/2 stream would hold its flow-control
 * window; dropping costs bandwidth, never memory. Past `maxBytes` — more than a request may carry —
 * the stream (HTTP/2) or connection (HTTP/1.1) is ended instead.
 */
export function dropBody(req: http.IncomingMessage | http2.Http2ServerRequest, maxBytes: number): void {
  let dropped = 0;
  req.on("data", (chunk: Buffer) => {
    dropped += chunk.length;
    if (dropped <= maxBytes) return;
    if ("stream" in req) req.stream.close(http2.constants.NGHTTP2_CANCEL);
    else req.socket.destroy();
  });
}
