import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QueryService } from "../../gen/coral/colony/v1/query_pb.js";
import { runCoral, spawnColony, transports, type SpawnedColony } from "../../test/helpers/colony.js";

async function codeOf(p: Promise<unknown>): Promise<{ code: Code; message: string } | "ok"> {
  try {
    await p;
    return "ok";
  } catch (err) {
    const ce = ConnectError.from(err);
    return { code: ce.code, message: ce.rawMessage };
  }
}

describe("bearer token", () => {
  const token = "s3cret-token";
  let colony: SpawnedColony;
  beforeAll(async () => {
    colony = await spawnColony({ token });
  });
  afterAll(async () => {
    await colony?.stop();
  });

  const denied = { code: Code.Unauthenticated, message: "missing or wrong bearer token" };

  for (const [name, make] of Object.entries(transports)) {
    it(`${name}: no token, a wrong one or a longer one is refused; the right one is served`, async () => {
      const client = createClient(QueryService, make(colony.baseUrl));
      const call = (authorization?: string) =>
        codeOf(client.listServices({}, { headers: authorization ? { authorization } : {} }));

      expect(await call()).toEqual(denied);
      expect(await call("Bearer wrong")).toEqual(denied);
      expect(await call(`Bearer ${token}x`)).toEqual(denied);
      expect(await call(token)).toEqual(denied);
      expect(await call(`Bearer ${token}`)).toBe("ok");
    });
  }

  it("guards streaming calls too", async () => {
    const client = createClient(QueryService, transports.gRPC!(colony.baseUrl));
    const drain = async (headers: Record<string, string>) => {
      for await (const _ of client.streamQuery({ sql: "SELECT 1" }, { headers }));
    };
    expect(await codeOf(drain({}))).toEqual(denied);
    expect(await codeOf(drain({ authorization: `Bearer ${token}` }))).toBe("ok");
  });

  it("takes the token from CORAL_TOKEN when --token is absent", async () => {
    const fromEnv = await spawnColony({ env: { CORAL_TOKEN: "from-env" } });
    try {
      const client = createClient(QueryService, transports["Connect over HTTP/1.1"]!(fromEnv.baseUrl));
      expect(await codeOf(client.listServices({}))).toEqual(denied);
      expect(await codeOf(client.listServices({}, { headers: { authorization: "Bearer from-env" } }))).toBe("ok");
    } finally {
      await fromEnv.stop();
    }
  });
});

describe("exposure", () => {
  it("will not listen beyond loopback without a token", async () => {
    const r = await runCoral(["colony", "start", "--listen", "0.0.0.0:9090", "--db", ":memory:"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe(
      "coral: refusing to listen on 0.0.0.0:9090 without --token (anyone on the network could read your telemetry)\n",
    );
  });
});
