// sdk_rpc: sequential GetPercentile calls through the SDK vs plain fetch of the same Connect endpoint,
// in alternating rounds within one Deno process (run by `coral run`). Prints one JSON line.
// Params: rounds, calls (per round and client).
import * as coral from "@coral/sdk";

const D = (globalThis as unknown as { Deno: { env: { get(k: string): string | undefined } } }).Deno;
const params = JSON.parse(D.env.get("CORAL_PARAMS") ?? "{}") as Record<string, string>;
const rounds = Number(params.rounds ?? 5);
const calls = Number(params.calls ?? 100);
const url = `http://${D.env.get("CORAL_COLONY_ADDR")}/coral.colony.v1.QueryService/GetPercentile`;

// GetPercentileRequest{service: "checkout", percentile: 0.99, time_range_ms: 3600000}, encoded by hand:
// the baseline carries no protobuf library at all.
function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}
const service = new TextEncoder().encode("checkout");
const q = new Uint8Array(new Float64Array([0.99]).buffer);
const protoBody = new Uint8Array([0x0a, service.length, ...service, 0x19, ...q, 0x20, ...varint(3_600_000)]);
const jsonBody = JSON.stringify({ service: "checkout", percentile: 0.99, timeRangeMs: "3600000" });

/** GetPercentileResponse.value (field 1, double) from the binary response. */
function valueOf(b: Uint8Array): number {
  if (b[0] !== 0x09) return 0;
  return new DataView(b.buffer, b.byteOffset + 1, 8).getFloat64(0, true);
}

const clients: Record<string, () => Promise<number>> = {
  sdk: () => coral.metrics.getPercentile("checkout"),
  fetch_proto: async () => {
    const res = await fetch(url, { method: "POST", headers: { "content-type": "application/proto", "connect-protocol-version": "1" }, body: protoBody });
    const b = new Uint8Array(await res.arrayBuffer());
    if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
    return valueOf(b);
  },
  fetch_json: async () => {
    const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json", "connect-protocol-version": "1" }, body: jsonBody });
    const body = (await res.json()) as { value: number };
    if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
    return body.value;
  },
};

const values: Record<string, number> = {};
for (const [name, call] of Object.entries(clients)) {
  for (let i = 0; i < 20; i++) values[name] = await call(); // warm-up: JIT, connection pool
}
const rates: Record<string, number[]> = Object.fromEntries(Object.keys(clients).map((k) => [k, []]));
const names = Object.keys(clients);
for (let r = 0; r < rounds; r++) {
  // Rotate the order so no client always runs first (or last) in a round.
  for (let k = 0; k < names.length; k++) {
    const name = names[(k + r) % names.length]!;
    const t0 = performance.now();
    for (let i = 0; i < calls; i++) await clients[name]!();
    rates[name]!.push(calls / ((performance.now() - t0) / 1000));
  }
}
console.log(JSON.stringify({ values, rates }));
