import type * as http from "node:http";
import type * as net from "node:net";
import { LoopWatch } from "./loop-watch.js";

/**
 * Node judges HTTP/1.1's headers and request timeouts from a timer. When the colony's event loop is
 * held up (a long garbage collection, a paused or overloaded machine), that timer runs before the
 * loop reads what clients sent meanwhile, and every connection in the middle of a request is cut
 * although its client was on time: for OTLP, exporters' batches are lost. So a timeout is judged
 * again once the input waiting on the socket has been read (the check phase follows the poll phase
 * of the same loop turn): if the loop was held up (`LoopWatch`: it ran nothing for one of Node's
 * checking intervals or more) and the connection's bytes were waiting, it is forgiven, once, and
 * given a deadline of its own for the rest of that request (a slow client still ends within two
 * periods); any other is answered `timeoutResponse` and closed, as Node would.
 *
 * The hold-up is required, not just waiting bytes: on a healthy loop a slowloris's drip byte is
 * often read in the very turn of its judgement (a drip that lands while the check runs), and was
 * forgiven a whole period more for it. A hold-up shorter than the checking interval is no more
 * than the lateness Node's own checks allow any client.
 *
 * Also answers Node's other client errors as Node does: a 'clientError' listener replaces them.
 */
export function judgeTimeoutsAfterInput(server: http.Server, timeoutResponse: string, checkingIntervalMs: number): void {
  /** Per connection: its last response, the requests that arrived whole and when the last did, and forgiveness. */
  interface Connection {
    res?: http.ServerResponse;
    completed: number;
    lastWholeAt: number;
    /** A request's headers are in and its body is not: the request timeout's phase, not the headers'. */
    inBody: boolean;
    /** `completed` when it was last forgiven: once per request, not per connection. */
    forgivenAt?: number;
  }
  const watch = new LoopWatch(checkingIntervalMs);
  server.once("close", () => watch.stop());
  const connections = new WeakMap<net.Socket, Connection>();
  const of = (socket: net.Socket) => {
    let c = connections.get(socket);
    if (!c) connections.set(socket, (c = { completed: 0, lastWholeAt: -Infinity, inBody: false }));
    return c;
  };

  server.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
    const c = of(req.socket);
    c.res = res;
    c.inBody = true;
    const whole = () => {
      c.inBody = false;
      c.lastWholeAt = performance.now();
      c.completed++;
    };
    if (req.complete) whole();
    else req.once("end", whole);
  });

  /** Answers on the raw socket unless a response has begun on it (as Node does), then closes it. */
  const answer = (socket: net.Socket, response: string) => {
    const res = connections.get(socket)?.res;
    if (socket.writable && !(res && res.headersSent && !res.writableFinished)) socket.write(response);
    socket.destroy();
  };

  server.on("clientError", (err: NodeJS.ErrnoException, socket: net.Socket) => {
    if (err.code !== "ERR_HTTP_REQUEST_TIMEOUT") return answer(socket, NODE_ANSWERS[err.code ?? ""] ?? BAD_REQUEST);
    const judgedAt = performance.now();
    const bytesBefore = socket.bytesRead;
    afterPendingInput(() => {
      if (socket.destroyed) return;
      const c = of(socket);
      const before = c.completed;
      if (!watch.heldUp || socket.bytesRead === bytesBefore || c.forgivenAt === before) return answer(socket, timeoutResponse);
      c.forgivenAt = before;
      // Node stopped timing this connection when it declared the timeout; it times the next request
      // again by itself. The late request arrived whole in this very turn: its answer is on its way.
      if (c.lastWholeAt >= judgedAt) return;
      // One more period of the phase that ran out: a slowloris whose drip happened to be waiting
      // holds the connection at most twice as long, never a request timeout for its headers.
      const deadline = setTimeout(() => {
        if (c.completed === before && !socket.destroyed) answer(socket, timeoutResponse);
      }, (c.inBody ? server.requestTimeout : server.headersTimeout) || server.requestTimeout || server.headersTimeout).unref();
      socket.once("close", () => clearTimeout(deadline));
    });
  });
}

/**
 * Runs `judge` once the input already waiting on the sockets has been read. A timer that fires after
 * the event loop was held up runs before the loop's reads (timers come first in a loop turn);
 * setImmediate runs right after them. For timeouts that Node does not keep itself; those judges
 * only let stand a phase the waiting bytes complete (a preface, SETTINGS, a body) and give no more
 * time, so unlike the forgiveness above they need no hold-up to be fair.
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
