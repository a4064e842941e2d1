// The broker against a real process on the other end of a real socketpair, writing what no SDK
// would: each message that breaks the protocol ends the run with one line naming what was wrong.
// (Scripts under `coral run` can send only JSON objects; test/e2e/run-wire.test.ts covers those.)
import { spawn } from "node:child_process";
import type { Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { Broker, MAX_CREDIT, rowsOf } from "./broker.js";
import { DEFAULT_BUDGET } from "./broker-budget.js";
import { MAX_LINE_BYTES } from "./wire.js";

/** Starts Node writing `payload` (a JS expression evaluated in the child) to its fd 3; resolves to the broker's verdict. */
function violationFor(payload: string): Promise<string> {
  const child = spawn(process.execPath, ["-e", `require("node:fs").writeSync(3, ${payload}); setInterval(() => {}, 1000);`], {
    stdio: ["ignore", "ignore", "inherit", "pipe"],
  });
  return new Promise<string>((resolve) => {
    new Broker(child.stdio[3] as Socket, { colony: "127.0.0.1:9", budget: DEFAULT_BUDGET, onViolation: resolve });
  }).finally(() => child.kill("SIGKILL"));
}

const line = (o: unknown) => JSON.stringify(`${JSON.stringify(o)}\n`);

describe("protocol violations end the run", () => {
  for (const [what, payload, reason] of [
    ["text that is not JSON", JSON.stringify("hello\n"), "sent a message that is not JSON"],
    ["a line over the limit, even before its end", `"x".repeat(${MAX_LINE_BYTES + 1})`, `sent a message longer than ${MAX_LINE_BYTES} bytes`],
    ["JSON that is not an object", line([1, 2]), "sent a message that is not an object"],
    ["an id that is not a positive integer", line({ id: 0, method: "ListServices", request: {} }), "sent a message without a valid id"],
    ["a call with extra keys", line({ id: 1, method: "ListServices", request: {}, token: "x" }), "sent a malformed call"],
    ["a call whose request is not an object", line({ id: 1, method: "ListServices", request: "x" }), "sent a malformed call"],
    ["a message of no known kind", line({ id: 1, exec: "rm -rf /" }), "sent a message that is neither a call, a credit nor a cancel"],
    ["a bad credit", line({ id: 1, credit: -1 }), "sent a malformed credit"],
    ["a bad cancel", line({ id: 1, cancel: "yes" }), "sent a malformed cancel"],
  ] as const) {
    it(what, async () => {
      expect(await violationFor(payload)).toBe(`coral run: the script broke the SDK protocol (${reason}); the run was stopped`);
    });
  }

  it("an id reused while its call is in flight", async () => {
    const call = { id: 7, method: "ListServices", request: {} };
    expect(await violationFor(`${line(call)} + ${line(call)}`)).toMatch(/reused the id 7 of a call in flight/);
  });

  it("more stream credit than the window", async () => {
    const payload = `${line({ id: 1, method: "StreamQuery", request: { sql: "SELECT 1" } })} + ${line({ id: 1, credit: MAX_CREDIT + 1 })}`;
    expect(await violationFor(payload)).toMatch(new RegExp(`asked for more than ${MAX_CREDIT} stream responses ahead`));
  });
});

describe("rowsOf", () => {
  it("counts a batch's row_count, else list items (not columns), else one", () => {
    expect(rowsOf({ columns: [{}, {}], row_count: 8192, values_json: "[]" })).toBe(8192);
    expect(rowsOf({ columns: [{}, {}, {}], rows: [[1], [2]], truncated: false })).toBe(2);
    expect(rowsOf({ traces: [], total_count: 0 })).toBe(0);
    expect(rowsOf({ value: 1.5, unit: "nanoseconds" })).toBe(1);
  });
});
