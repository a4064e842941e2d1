// Messages between `coral colony start` (the supervisor, which keeps the ports open) and its worker
// (the colony proper, which owns the database), over the IPC channel of child_process.
import type { ColonyOptions } from "../colony.js";

/** What the worker needs to start a colony: the options that survive JSON. */
export type WorkerColonyOptions = Omit<ColonyOptions, "log" | "sockets" | "onRunaway">;

export type Port = "query" | "otlp";

export type ToWorker =
  /** Sent with a listening socket of a port, kept from the previous worker; before "start". */
  | { type: "socket"; port: Port }
  | { type: "start"; options: WorkerColonyOptions }
  /** The worker's memory is over the limit: answer every user SQL query with `message` and interrupt it. */
  | { type: "interrupt"; message: string }
  /** Stop cleanly (calls in flight cancelled, accepted data committed, checkpoint if possible) and exit. */
  | { type: "stop" };

export type FromWorker =
  /** Listening for messages (one sent before would be lost): send the sockets, then "start". */
  | { type: "hello" }
  /** Sent with a listening socket the worker opened, for the supervisor to keep. */
  | { type: "socket"; port: Port }
  | { type: "ready"; address: string; otlpAddress?: string }
  /** The start failed: a message written for the user. */
  | { type: "failed"; message: string }
  /** After "interrupt": how many of the queries DuckDB is still inside. */
  | { type: "interrupted"; stuck: number }
  /** A query DuckDB cannot interrupt has run this long past its deadline: restart the worker. */
  | { type: "runaway"; pastDeadlineMs: number; deadlineMs: number };
