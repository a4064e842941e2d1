// Generic gRPC tooling against a real colony: server reflection lets `buf curl` (a real client, the
// one the toolchain already installs) list and call methods without .proto files, and the standard
// health service answers probes that carry no token.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { spawnColony, type SpawnedColony } from "../helpers/colony.js";
import { storeServices } from "../helpers/otlp-span.js";

const buf = fileURLToPath(new URL("../../node_modules/.bin/buf", import.meta.url));
const TOKEN = "grpc-clients-test-token";

let colony: SpawnedColony;
// buf curl reads a buf.yaml from its working directory; the repo's would stand in for reflection.
let cwd: string;
beforeAll(async () => {
  colony = await spawnColony({ token: TOKEN });
  // A payments span to ask a p99 of.
  await storeServices(colony, ["payments"], TOKEN);
  cwd = mkdtempSync(join(tmpdir(), "coral-buf-curl-"));
});
afterAll(async () => {
  await colony?.stop();
  if (cwd) rmSync(cwd, { recursive: true, force: true });
});

async function bufCurl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await promisify(execFile)(buf, ["curl", "--http2-prior-knowledge", ...args], { cwd, env: { PATH: process.env.PATH ?? "", HOME: cwd } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

const auth = ["-H", `authorization: Bearer ${TOKEN}`, "--reflect-header", `authorization: Bearer ${TOKEN}`];

describe("server reflection", () => {
  it.each([["grpc-v1"], ["grpc-v1alpha"]])("buf curl --list-methods (%s) lists every QueryService method", async (protocol) => {
    const r = await bufCurl([...auth, "--reflect-protocol", protocol, "--list-methods", colony.baseUrl]);
    expect(r.stderr).toBe("");
    const methods = r.stdout.trim().split("\n");
    for (const m of ["ListServices", "GetPercentile", "FindSlowTraces", "ExecuteQuery", "StreamQuery"]) {
      expect(methods).toContain(`coral.colony.v1.QueryService/${m}`);
    }
    expect(methods).toContain("grpc.health.v1.Health/Check");
  });

  it.each([["connect"], ["grpc"], ["grpcweb"]])("buf curl calls GetPercentile from the reflected schema (%s)", async (protocol) => {
    const r = await bufCurl([
      ...auth,
      "--protocol",
      protocol,
      "-d",
      JSON.stringify({ service: "payments", percentile: 0.99, timeRangeMs: 86_400_000 }),
      `${colony.baseUrl}/coral.colony.v1.QueryService/GetPercentile`,
    ]);
    expect(r.stderr).toBe("");
    const answer = JSON.parse(r.stdout);
    expect(answer.value).toBeGreaterThan(0);
    expect(answer.unit).toBe("nanoseconds");
  });

  it("reflection needs the token like every other call", async () => {
    const r = await bufCurl(["--list-methods", colony.baseUrl]);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe("");
  });
});

describe("grpc.health.v1", () => {
  const health = () => createClient(Health, createGrpcTransport({ baseUrl: colony.baseUrl }));

  it.each([[""], ["coral.colony.v1.QueryService"]])("Check(%j) answers SERVING without a token", async (service) => {
    expect((await health().check({ service })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
  });

  it("Check of an unknown service is NOT_FOUND, as the protocol says", async () => {
    await expect(health().check({ service: "no.such.Service" })).rejects.toMatchObject({ code: 5 });
  });

  it("Watch needs the token (it holds its stream open), and then sends the current status first", async () => {
    const refused = (async () => {
      for await (const _ of health().watch({ service: "" })) return;
    })();
    await expect(refused).rejects.toMatchObject({ code: 16 });
    const abort = new AbortController();
    const withToken = { signal: abort.signal, headers: { authorization: `Bearer ${TOKEN}` } };
    for await (const res of health().watch({ service: "" }, withToken)) {
      expect(res.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
      break;
    }
    abort.abort();
  });

  it("buf curl with the health proto reflected (token only for reflection) gets SERVING", async () => {
    const r = await bufCurl(["--reflect-header", `authorization: Bearer ${TOKEN}`, "--protocol", "grpc", `${colony.baseUrl}/grpc.health.v1.Health/Check`]);
    expect(r.stderr).toBe("");
    expect(JSON.parse(r.stdout)).toEqual({ status: "SERVING" });
  });
});
