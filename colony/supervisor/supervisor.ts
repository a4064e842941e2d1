// `coral colony start` as a supervisor: it runs the colony proper (database, queries, ingestion) as
// a worker process it can kill and restart, and keeps the worker's listening sockets open meanwhile.
// DuckDB cannot interrupt every operator, and memory that one scalar expression allocates escapes
// its memory_limit; the process holding DuckDB is the only thing that can always be stopped (a
// second process cannot open the file, a worker thread would open a second instance of it).
// Restarting is safe because recovery after any kill is (test/hostile/crash.test.ts), and clients
// are not refused meanwhile: the kernel queues their connections on the sockets kept here until
// the next worker accepts them. Deliberately light: no DuckDB, no HTTP server.
import { spawn, type ChildProcess } from "node:child_process";
import type { ListeningSocket } from "../server/listen.js";
import { ColonyStartError } from "../server/errors.js";
import { residentBytes, WORKER_FLAG } from "./process.js";
import type { FromWorker, Port, ToWorker, WorkerColonyOptions } from "./protocol.js";

export interface SupervisorOptions {
  colony: WorkerColonyOptions;
  /** The worker's resident memory beyond which its user SQL is stopped, and the worker restarted if that does not bring it back. */
  memoryLimitBytes: number;
  /** One line for the operator (restarts and their reasons). */
  log: (line: string) => void;
}

export interface SupervisedColony {
  /** `host:port` of the query port. */
  address: string;
  /** `host:port` of the OTLP/HTTP receiver, when it is on. */
  otlpAddress?: string;
  /** Settles when the colony has ended for good: stopped, or a worker could not be started again (rejects). */
  readonly ended: Promise<void>;
  /** Stops the worker cleanly (it checkpoints the database) and closes the ports. */
  stop(): Promise<void>;
  /** Ends the worker with SIGKILL (a second Ctrl-C: no clean shutdown). */
  kill(): void;
}

/** How often the worker's RSS is read: /proc/PID/status costs microseconds. */
const MEMORY_POLL_MS = 100;
/** After the worker was asked to interrupt user SQL for memory: how long it has to answer. */
const INTERRUPT_ANSWER_MS = 1_000;
/** …and how long its RSS may stay over the limit after it answered before it is restarted anyway. */
const MEMORY_SETTLE_MS = 3_000;
/** Beyond limit × this, the worker is killed at once: memory is growing faster than it can be asked to stop. */
const HARD_LIMIT_FACTOR = 1.25;
/** How long a worker asked to stop for a restart may take before it is killed. */
const RESTART_STOP_MS = 10_000;
/** Restarts in a row that fail before the worker is ready, after which the supervisor gives up. */
const MAX_FAILED_STARTS = 3;
/**
 * A worker that dies by itself within this long of its start counts as a quick death: the first is
 * restarted at once, each further one in a row 0.5 s, 1 s, 2 s … (at most BACKOFF_MAX_MS) later.
 */
const QUICK_DEATH_MS = 60_000;
const BACKOFF_MAX_MS = 10_000;

interface Worker {
  proc: ChildProcess;
  ready: boolean;
  startedAt: number;
  /** Why it is being stopped or killed (undefined: not asked to). */
  ending?: string;
  failure?: string;
  memory?: { since: number; answered: boolean };
  exited: Promise<void>;
}

/** Starts a worker and resolves once it serves; rejects with the worker's own error if it cannot start. */
export async function superviseColony(o: SupervisorOptions): Promise<SupervisedColony> {
  /** The ports' listening sockets, from the first worker on: open as long as the colony runs. */
  const sockets: Partial<Record<Port, ListeningSocket>> = {};
  let worker: Worker | undefined;
  let stopping = false;
  let failedStarts = 0;
  let quickDeaths = 0;
  let resolveEnded!: () => void;
  let rejectEnded!: (err: Error) => void;
  const ended = new Promise<void>((resolve, reject) => ((resolveEnded = resolve), (rejectEnded = reject)));
  ended.catch(() => {});
  let firstReady: { resolve: (addresses: { address: string; otlpAddress?: string }) => void; reject: (err: Error) => void } | undefined;

  const closeSockets = () => {
    for (const port of ["query", "otlp"] as const) {
      (sockets[port] as { close?: () => void } | undefined)?.close?.();
      delete sockets[port];
    }
  };

  const tell = (w: Worker, msg: ToWorker, handle?: ListeningSocket) => {
    if (w.proc.connected) w.proc.send(msg, handle as never, {}, () => {});
  };

  const kill = (w: Worker, why: string) => {
    w.ending = why;
    if (w.proc.exitCode === null && w.proc.signalCode === null) w.proc.kill("SIGKILL");
  };

  /** Asks the worker to stop cleanly (for a restart, or for good), killing it if it takes longer than `within`. */
  const stopWorker = (w: Worker, why: string, within?: number) => {
    if (w.ending) return;
    w.ending = why;
    tell(w, { type: "stop" });
    if (within !== undefined) {
      const timer = setTimeout(() => kill(w, why), within);
      void w.exited.then(() => clearTimeout(timer));
    }
  };

  const startWorker = () => {
    // The same entry point as this process (bin/coral.cjs, or the bundle itself), so the worker
    // runs the same code. Its thread pool is sized before it starts: every DuckDB call holds one
    // of those threads, and with libuv's default 4, four queries DuckDB cannot interrupt froze
    // every other DuckDB call.
    const proc = spawn(process.execPath, [...process.execArgv, process.argv[1]!, "colony", "start", WORKER_FLAG], {
      stdio: ["ignore", "ignore", "inherit", "ipc"],
      env: { ...process.env, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE || "16" },
    });
    const w: Worker = { proc, ready: false, startedAt: performance.now(), exited: new Promise((resolve) => proc.once("exit", () => resolve())) };
    worker = w;
    proc.on("message", (msg: FromWorker, handle?: ListeningSocket) => onMessage(w, msg, handle));
    proc.once("exit", (code, signal) => onExit(w, code, signal));
    proc.on("error", (err) => {
      // Not started at all (no 'exit' follows then); other errors (a message to a dead worker) end in 'exit'.
      if (proc.pid !== undefined) return;
      w.failure = `cannot start the colony worker: ${err.message}`;
      onExit(w, 1, null);
    });
  };

  const onMessage = (w: Worker, msg: FromWorker, handle?: ListeningSocket) => {
    switch (msg.type) {
      case "hello":
        for (const port of ["query", "otlp"] as const) if (sockets[port]) tell(w, { type: "socket", port }, sockets[port]);
        tell(w, { type: "start", options: o.colony });
        break;
      case "socket":
        // Kept, never accepted from here: only a worker serves, the kernel queues connections between two.
        if (handle) sockets[msg.port] = handle;
        break;
      case "ready":
        w.ready = true;
        failedStarts = 0;
        if (firstReady) {
          firstReady.resolve({ address: msg.address, otlpAddress: msg.otlpAddress });
          firstReady = undefined;
        } else o.log(`colony worker restarted: serving again after ${((performance.now() - w.startedAt) / 1000).toFixed(1)} s`);
        break;
      case "failed":
        w.failure = msg.message;
        break;
      case "interrupted":
        if (w.memory) {
          w.memory.answered = true;
          // Their callers are answered; what DuckDB is still inside goes on growing until killed.
          if (msg.stuck > 0) restartForMemory(w, "user SQL DuckDB could not interrupt exceeded the memory limit");
        }
        break;
      case "runaway":
        if (!w.ending) {
          o.log(
            `a query DuckDB could not interrupt was still running ${(msg.pastDeadlineMs / 1000).toFixed(0)} s past its ${seconds(msg.deadlineMs)} deadline: restarting the colony worker; calls in flight were cancelled`,
          );
          stopWorker(w, "runaway", RESTART_STOP_MS);
        }
        break;
    }
  };

  const onExit = (w: Worker, code: number | null, signal: NodeJS.Signals | null) => {
    if (worker === w) worker = undefined;
    const how = signal ? `signal ${signal}` : `code ${code}`;
    if (stopping) {
      closeSockets();
      resolveEnded();
      return;
    }
    if (!w.ready) {
      const error = new ColonyStartError(w.failure ?? `the colony worker exited (${how}) before it was ready`);
      if (firstReady) {
        // The first start: the user hears the worker's own reason (a database in use, a port taken…).
        closeSockets();
        firstReady.reject(error);
        firstReady = undefined;
        return;
      }
      if (++failedStarts >= MAX_FAILED_STARTS) {
        closeSockets();
        rejectEnded(new ColonyStartError(`the colony worker could not be started again (${failedStarts} attempts): ${error.message}`));
        return;
      }
    }
    let backoffMs = 0;
    if (!w.ending) {
      // Died by itself: a crash, the kernel's OOM killer. One that keeps dying is restarted ever more slowly.
      quickDeaths = performance.now() - w.startedAt < QUICK_DEATH_MS ? quickDeaths + 1 : 1;
      backoffMs = quickDeaths > 1 ? Math.min(BACKOFF_MAX_MS, 500 * 2 ** (quickDeaths - 2)) : 0;
      o.log(`the colony worker ended unexpectedly (${how}): restarting it${backoffMs ? ` in ${(backoffMs / 1000).toFixed(1)} s` : ""}; calls in flight were cancelled`);
    }
    setTimeout(() => (stopping ? resolveEnded() : startWorker()), backoffMs);
  };

  // User SQL is what can take memory without bound (one scalar building a list DuckDB's
  // memory_limit does not see); the worker's own needs are bounded by its other limits. So first
  // its user SQL is stopped, then, if that does not bring the memory back, the worker is killed.
  const limit = o.memoryLimitBytes;
  const over = (rss: number) => `(RSS ${size(rss)} > ${size(limit)})`;
  const restartForMemory = (w: Worker, why: string, rss = residentBytes(w.proc.pid!)) => {
    if (w.ending === "memory") return;
    o.log(`${why}${rss === undefined ? "" : ` ${over(rss)}`}: restarting the colony worker; queries in flight were cancelled`);
    kill(w, "memory");
  };
  const memoryWatch = setInterval(() => {
    const w = worker;
    if (!w?.ready || w.proc.pid === undefined || w.ending === "memory") return;
    const rss = residentBytes(w.proc.pid);
    if (rss === undefined) return;
    if (rss > limit * HARD_LIMIT_FACTOR) return restartForMemory(w, "user SQL exceeded the memory limit", rss);
    if (w.ending) return;
    if (!w.memory) {
      if (rss > limit) {
        w.memory = { since: performance.now(), answered: false };
        tell(w, { type: "interrupt", message: `the query was stopped: the colony's memory went over its limit ${over(rss)} — select less, or raise coral colony start --memory-limit` });
      }
      return;
    }
    const elapsed = performance.now() - w.memory.since;
    if (!w.memory.answered) {
      if (elapsed > INTERRUPT_ANSWER_MS) restartForMemory(w, "user SQL exceeded the memory limit and the colony worker did not stop it", rss);
    } else if (rss <= limit) w.memory = undefined;
    else if (elapsed > MEMORY_SETTLE_MS) restartForMemory(w, "the colony's memory stayed over its limit after user SQL was stopped", rss);
  }, MEMORY_POLL_MS);
  void ended.then(
    () => clearInterval(memoryWatch),
    () => clearInterval(memoryWatch),
  );

  const addresses = await new Promise<{ address: string; otlpAddress?: string }>((resolve, reject) => {
    firstReady = { resolve, reject };
    startWorker();
  }).catch((err: unknown) => {
    clearInterval(memoryWatch);
    throw err;
  });

  let stopped: Promise<void> | undefined;
  return {
    ...addresses,
    ended,
    stop() {
      stopped ??= (async () => {
        stopping = true;
        const w = worker;
        if (w) {
          stopWorker(w, "stop");
          await w.exited;
        }
        closeSockets();
        resolveEnded();
        await ended;
      })();
      return stopped;
    },
    kill() {
      stopping = true;
      if (worker) kill(worker, "killed");
    },
  };
}

/** MiB below 4 GiB, where a tenth of a GiB would hide the difference between RSS and limit. */
function size(bytes: number): string {
  return bytes >= 4 * 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(1)} GiB` : `${Math.round(bytes / 2 ** 20)} MiB`;
}

function seconds(ms: number): string {
  return ms % 1000 ? `${(ms / 1000).toFixed(1)} s` : `${ms / 1000} s`;
}
