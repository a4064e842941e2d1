// A few spans over OTLP/HTTP JSON: data in a colony at a fraction of a demo seed's cost, for tests
// that need some stored data (and one service per name) but not the demo's shape.
import { createClient } from "@connectrpc/connect";
import { QueryService } from "../../gen/coral/colony/v1/query_pb.js";
import { transports, type SpawnedColony } from "./colony.js";

/**
 * POSTs one SERVER span per service to `otlpUrl` and fails unless the colony acknowledged them;
 * `headers` carry the token when the colony has one.
 */
async function postSpans(otlpUrl: string, services: readonly string[], headers: Record<string, string> = {}): Promise<void> {
  const nowNs = BigInt(Date.now()) * 1_000_000n;
  const body = {
    resourceSpans: services.map((service, i) => ({
      resource: { attributes: [{ key: "service.name", value: { stringValue: service } }] },
      scopeSpans: [
        {
          spans: [
            {
              traceId: (i + 1).toString(16).padStart(32, "0"),
              spanId: (i + 1).toString(16).padStart(16, "0"),
              name: "GET /",
              kind: 2,
              startTimeUnixNano: `${nowNs}`,
              endTimeUnixNano: `${nowNs + 5_000_000n}`,
            },
          ],
        },
      ],
    })),
  };
  const r = await fetch(`${otlpUrl}/v1/traces`, { method: "POST", headers: { ...headers, "content-type": "application/json" }, body: JSON.stringify(body) });
  if (r.status !== 200) throw new Error(`OTLP POST answered ${r.status}: ${await r.text()}`);
}

/**
 * postSpans, then waits until the colony lists every one of `services`: what a test that used the
 * demo seed only to have some services (and their spans) to ask about needs, in well under a second.
 */
export async function storeServices(colony: SpawnedColony, services: readonly string[], token?: string): Promise<void> {
  const headers: Record<string, string> = token === undefined ? {} : { authorization: `Bearer ${token}` };
  if (!colony.otlpUrl) throw new Error("storeServices needs a colony with its OTLP receiver on");
  await postSpans(colony.otlpUrl, services, headers);
  const client = createClient(QueryService, transports["Connect over HTTP/1.1"]!(colony.baseUrl));
  for (let waited = 0; ; waited += 50) {
    const listed = new Set((await client.listServices({}, { headers })).services.map((s) => s.name));
    if (services.every((s) => listed.has(s))) return;
    if (waited > 30_000) throw new Error(`the colony acknowledged spans of ${services.join(", ")} but lists only ${[...listed].join(", ")}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
