// The colony proper, run by `coral colony start` (the supervisor) as a child process it can kill:
// it owns the database and serves the ports, whose listening sockets the supervisor keeps open
// across restarts.
import { ColonyStartError, startColony, type Colony } from "../colony.js";
import type { ListeningSocket } from "../server/listen.js";
import { SQL_DEFAULTS, SqlRejected } from "../store/readonly-sql.js";
import type { FromWorker, Port, ToWorker } from "./protocol.js";

/**
 * How long a query DuckDB cannot interrupt may go on after it was abandoned (SQL_DEFAULTS
 * .abandonAfterMs past its deadline, its caller answered) before the worker asks to be restarted.
 * DuckDB often does finish such an operator within seconds (the slot then comes back with no
 * restart, which would cut every other call in flight); past this, it is taken to be hours of
 * backtracking or a list growing without end, and the core (and memory) it holds matter more.
 */
export const RUNAWAY_GRACE_MS = 5_000;

/** How long answers written to sockets are given to leave before this process may be killed. */
const ANSWERS_FLUSH_MS = 50;

/** Runs the worker until the supervisor stops it or goes away; never returns. */
export async function runWorker(): Promise<never> {
  const send = process.send?.bind(process);
  if (!send) throw new ColonyStartError("the colony worker is started by `coral colony start`, not by hand");
  const tell = (msg: FromWorker, handle?: ListeningSocket, then?: () => void) => send(msg, handle as never, {}, () => then?.());
  // The supervisor gone, even killed: end at once, so the database is free for the next colony
  // (everything acknowledged is committed; the next start replays the WAL). exit() could wait for
  // hours on a thread DuckDB is stuck in.
  process.on("disconnect", () => process.kill(process.pid, "SIGKILL"));
  // Gone already, while this process was loading (the event came before the listener).
  if (!process.connected) process.kill(process.pid, "SIGKILL");
  // Ctrl-C reaches the whole process group, and a service manager may signal every process of the
  // colony: the supervisor decides when and how the worker stops.
  process.on("SIGINT", () => {});
  process.on("SIGTERM", () => {});

  const sockets: { query?: ListeningSocket; otlp?: ListeningSocket } = {};
  let options: Extract<ToWorker, { type: "start" }>["options"] | undefined;
  let colony: Colony | undefined;
  let stopping = false;
  let runawayTimer: NodeJS.Timeout | undefined;

  // A runaway is checked when its grace ends; the oldest one decides when to look again.
  const watchRunaways = () => {
    if (runawayTimer || stopping) return;
    const since = colony?.oldestRunawaySince;
    if (since === undefined) return;
    runawayTimer = setTimeout(() => {
      runawayTimer = undefined;
      const oldest = colony?.oldestRunawaySince;
      if (oldest !== undefined && Date.now() - oldest >= RUNAWAY_GRACE_MS && !stopping) {
        tell({ type: "runaway", pastDeadlineMs: Date.now() - oldest + SQL_DEFAULTS.abandonAfterMs, deadlineMs: options!.queryTimeoutMs ?? SQL_DEFAULTS.timeoutMs });
      } else watchRunaways();
    }, Math.max(0, since + RUNAWAY_GRACE_MS - Date.now()));
  };

  process.on("message", (msg: ToWorker, handle?: ListeningSocket) => {
    switch (msg.type) {
      case "socket":
        sockets[msg.port] = handle;
        break;
      case "start":
        options = msg.options;
        void start();
        break;
      case "interrupt":
        void colony
          ?.stopUserSql(new SqlRejected("resource_exhausted", msg.message))
          // A moment for the callers' answers to reach their sockets: with queries DuckDB cannot
          // stop, the supervisor kills this process as soon as it hears back.
          .then((stuck) => setTimeout(() => tell({ type: "interrupted", stuck }), stuck > 0 ? ANSWERS_FLUSH_MS : 0));
        break;
      case "stop":
        void stop();
        break;
    }
  });

  async function start(): Promise<void> {
    try {
      colony = await startColony({
        ...options!,
        sockets,
        log: (line) => process.stderr.write(`${line}\n`),
        onRunaway: watchRunaways,
      });
    } catch (err) {
      const message = err instanceof ColonyStartError ? err.message : `the colony failed to start: ${(err as Error).stack ?? String(err)}`;
      tell({ type: "failed", message }, undefined, () => process.exit(1));
      return;
    }
    // Ports this worker opened itself: the supervisor keeps them open for the next one.
    for (const port of ["query", "otlp"] as const satisfies Port[]) {
      const socket = colony.sockets[port];
      if (socket && !sockets[port]) tell({ type: "socket", port }, socket);
    }
    tell({ type: "ready", address: colony.address, otlpAddress: colony.otlpAddress });
    if (stopping) void stop();
  }

  async function stop(): Promise<void> {
    stopping = true;
    clearTimeout(runawayTimer);
    // Not started yet: start() comes back here once it is (or exits if it fails).
    if (!colony) return;
    await colony.close();
    // exit() would wait for the thread DuckDB is stuck in, for as long as that query runs; every
    // commit is durable by now.
    if (colony.stuck) process.kill(process.pid, "SIGKILL");
    process.exit(0);
  }

  tell({ type: "hello" });
  return new Promise<never>(() => {});
}
