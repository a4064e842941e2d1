// When a test fails, the colonies it talked to say what they saw: a worker restarted, a refusal,
// a timeout. Without this a CI failure shows only the client's side (a reset, an EPIPE).
import { beforeEach } from "vitest";
import { liveColonies } from "../helpers/colony.js";

/** The tail of each log: enough for the last events, small enough for a CI log. */
const TAIL_BYTES = 4_000;

beforeEach(({ onTestFailed }) => {
  onTestFailed(() => {
    for (const colony of liveColonies) {
      const log = colony.stderr();
      const pid = colony.proc.pid;
      const status = colony.proc.exitCode ?? colony.proc.signalCode ?? "running";
      const tail = log.length > TAIL_BYTES ? `…${log.slice(-TAIL_BYTES)}` : log;
      console.error(`--- colony ${colony.addr} (pid ${pid}, ${status}) stderr at the failure:\n${tail || "(nothing)"}\n---`);
    }
  });
});
