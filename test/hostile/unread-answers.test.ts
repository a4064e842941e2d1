// Clients that ask for large answers and never read them, against a real colony with its default
// limits (DEFAULT_MAX_UNSENT_BYTES, 256 MiB). Reproduced before the fix: 60 such HTTP/2 clients
// took the worker from 260 to 1,375 MiB and held it there.
import * as http2 from "node:http2";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QueryService } from "../../gen/coral/colony/v1/query_pb.js";
import { spawnColony, transports, type SpawnedColony } from "../helpers/colony.js";

const EXECUTE = "/coral.colony.v1.QueryService/ExecuteQuery";
/** Without the budget these held ~18 MiB each in the colony (60: +1,115 MiB), so 80 would hold ~1.5 GiB. */
const READERS = 80;
/**
 * The budget (256 MiB), the answers computed while it filled (dropped, not written) and what the
 * allocators keep after them: measured +700 MiB with 40 readers, which stays after they go.
 */
const CEILING_RISE_MIB = 1_000;

let colony: SpawnedColony;

beforeAll(async () => {
  colony = await spawnColony();
}, 180_000);

afterAll(async () => {
  await colony?.stop();
});

/** An HTTP/2 session kept alive by PINGs that asks for a 15 MB answer and never reads it; settles with the HTTP status. */
function unreadAnswer(i: number): { status: Promise<string>; close(): void } {
  const session = http2.connect(colony.baseUrl);
  session.on("error", () => {});
  const stream = session.request({ ":method": "POST", ":path": EXECUTE, "content-type": "application/json" });
  stream.on("error", () => {});
  stream.end(JSON.stringify({ sql: `SELECT repeat('x', 15000000) || '${i}' AS s` }));
  stream.pause();
  const pings = setInterval(() => session.destroyed || session.ping(() => {}), 1_000);
  const status = new Promise<string>((resolve) => {
    stream.once("response", (h) => resolve(String(h[":status"])));
    stream.once("close", () => resolve("closed"));
  });
  return {
    status,
    close() {
      clearInterval(pings);
      session.destroy();
    },
  };
}

async function failure(call: Promise<unknown>): Promise<ConnectError | undefined> {
  return call.then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
}

describe("answers nobody reads", () => {
  it(`${READERS} unread 15 MB answers: memory stays bounded, others are refused with resource_exhausted until the readers go, then served`, async () => {
    const client = createClient(QueryService, transports["Connect over HTTP/1.1"]!(colony.baseUrl));
    await client.listServices({});
    const before = colony.memoryMiB();
    const readers: ReturnType<typeof unreadAnswer>[] = [];
    const statuses: string[] = [];
    // Four at a time, each lane waiting for its answer to start: how the red-team sent them.
    let next = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next < READERS) {
          const reader = unreadAnswer(next++);
          readers.push(reader);
          statuses.push(await reader.status);
        }
      }),
    );
    const held = colony.memoryMiB();
    expect(statuses).toContain("429");
    expect(held - before).toBeLessThan(CEILING_RISE_MIB);

    const refused = await failure(client.executeQuery({ sql: "SELECT 1" }));
    expect(refused?.code).toBe(Code.ResourceExhausted);
    expect(refused?.rawMessage).toMatch(/bytes of answers its clients have not read yet: retry later/);

    for (const r of readers) r.close();
    let served: unknown;
    for (let i = 0; served === undefined; i++) {
      served = await client.executeQuery({ sql: "SELECT 1 AS one" }).catch((e: unknown) => {
        if (ConnectError.from(e).code !== Code.ResourceExhausted || i > 500) throw e;
        return new Promise((r) => setTimeout(r, 20)).then(() => undefined);
      });
    }
    expect(served).toMatchObject({ rows: [{}] });
    console.log(`unread answers: colony memory ${Math.round(before)} → ${Math.round(held)} MiB; statuses ${JSON.stringify(statuses.reduce<Record<string, number>>((m, s) => ((m[s] = (m[s] ?? 0) + 1), m), {}))}`);
  }, 240_000);

  it("20 concurrent calls leave the colony's stderr free of MaxListenersExceededWarning", async () => {
    const client = createClient(QueryService, transports.gRPC!(colony.baseUrl));
    // Queued behind the SQL slots, so all 20 are in flight together.
    await Promise.all(Array.from({ length: 20 }, (_, i) => client.executeQuery({ sql: `SELECT count(*) + ${i} AS n FROM range(5000000)` })));
    expect(colony.stderr()).not.toMatch(/MaxListenersExceededWarning/);
  }, 60_000);
});
