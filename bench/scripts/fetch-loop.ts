// sdk_rpc, baseline: the same sequential GetPercentile calls with plain fetch of the Connect endpoint
// from an unsandboxed Deno (`deno run --allow-net=HOST:PORT fetch-loop.ts HOST:PORT CALLS`), with a
// hand-encoded protobuf body (no library) and with Connect JSON. One timed round per client after a
// warm-up; prints one JSON line.
const D = (globalThis as unknown as { Deno: { args: string[] } }).Deno;
const [addr, callsArg] = D.args;
const calls = Number(callsArg ?? 100);
const url = `http://${addr}/coral.colony.v1.QueryService/GetPercentile`;

// GetPercentileRequest{service: "checkout", percentile: 0.99, time_range_ms: 3600000}, encoded by hand.
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
const rates: Record<string, number> = {};
for (const [name, call] of Object.entries(clients)) {
  for (let i = 0; i < 20; i++) values[name] = await call(); // warm-up: JIT, connection pool
  const t0 = performance.now();
  for (let i = 0; i < calls; i++) await call();
  rates[name] = calls / ((performance.now() - t0) / 1000);
}
console.log(JSON.stringify({ values, rates }));
