import type * as http from "node:http";
import type * as net from "node:net";

/**
 * Node judges HTTP/1.1's headers and request timeouts from a timer. When the colony's event loop is
 * held up (a long garbage collection, a paused or overloaded machine), that timer runs before the
 * loop reads what clients sent meanwhile, and every connection in the middle of a request is cut
 * although its client was on time: for OTLP, exporters' batches are lost. So a timeout is judged
 * again once the input waiting on the socket has been read (the check phase follows the poll phase
 * of the same loop turn): a connection whose bytes were waiting is forgiven, once, and given a
 * deadline of its own for the rest of that request (a slow client still ends within two periods);
 * any other is answered `timeoutResponse` and closed, as Node would.
 *
 * Also answers Node's other client errors as Node does: a 'clientError' listener replaces them.
 */
export function judgeTimeoutsAfterInput(server: http.Server, timeoutResponse: string): void {
  /** The last request each connection started (and its response), and when each one was whole. */
  const latest = new WeakMap<net.Socket, http.IncomingMessage>();
  const responses = new WeakMap<net.Socket, http.ServerResponse>();
  const wholeAt = new WeakMap<http.IncomingMessage, number>();
  const completed = new WeakMap<net.Socket, number>();
  /** Requests completed on a connection when it was last forgiven: once per request, not per connection. */
  const forgivenAt = new WeakMap<net.Socket, number>();

  server.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
    latest.set(req.socket, req);
    responses.set(req.socket, res);
    const whole = () => {
      wholeAt.set(req, performance.now());
      completed.set(req.socket, (completed.get(req.socket) ?? 0) + 1);
    };
    if (req.complete) whole();
    else req.once("end", whole);
  });

  /** Answers on the raw socket unless a response has begun on it (as Node does), then closes it. */
  const answer = (socket: net.Socket, response: string) => {
    const res = responses.get(socket);
    if (socket.writable && !(res && res.headersSent && !res.writableFinished)) socket.write(response);
    socket.destroy();
  };

  server.on("clientError", (err: NodeJS.ErrnoException, socket: net.Socket) => {
    if (err.code !== "ERR_HTTP_REQUEST_TIMEOUT") return answer(socket, NODE_ANSWERS[err.code ?? ""] ?? BAD_REQUEST);
    const judgedAt = performance.now();
    const bytesBefore = socket.bytesRead;
    setImmediate(() => {
      if (socket.destroyed) return;
      const before = completed.get(socket) ?? 0;
      if (socket.bytesRead === bytesBefore || forgivenAt.get(socket) === before) return answer(socket, timeoutResponse);
      forgivenAt.set(socket, before);
      // Node stopped timing this connection when it declared the timeout; it times the next request
      // again by itself.
      const req = latest.get(socket);
      // The late request arrived whole in this very turn: its answer is on its way.
      if (req && (wholeAt.get(req) ?? -Infinity) >= judgedAt) return;
      const deadline = setTimeout(() => {
        if ((completed.get(socket) ?? 0) === before && !socket.destroyed) answer(socket, timeoutResponse);
      }, server.requestTimeout || server.headersTimeout).unref();
      socket.once("close", () => clearTimeout(deadline));
    });
  });
}

/**
 * Runs `judge` once the input already waiting on the sockets has been read. A timer that fires after
 * the event loop was held up runs before the loop's reads (timers come first in a loop turn);
 * setImmediate runs right after them. For timeouts that Node does not keep itself.
 */
export function afterPendingInput(judge: () => void): void {
  setImmediate(judge);
}

const BAD_REQUEST = "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n";
/** What Node answers for these errors when nobody listens to 'clientError'. */
const NODE_ANSWERS: Record<string, string> = {
  HPE_HEADER_OVERFLOW: "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n",
  HPE_CHUNK_EXTENSIONS_OVERFLOW: "HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\n\r\n",
  ERR_HTTP_REQUEST_TIMEOUT: "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n",
};

/** Node's own answer to a request that took too long. */
export const REQUEST_TIMEOUT = NODE_ANSWERS.ERR_HTTP_REQUEST_TIMEOUT!;
