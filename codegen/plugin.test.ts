// Runs protoc-gen-coral through buf, as `npm run gen` does, on a fixture proto and
// compares every output with the golden files (UPDATE_GOLDEN=1 rewrites them).
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { listFiles } from "../test/helpers/files.js";
import { afterAll, describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("..", import.meta.url));
const golden = join(root, "codegen/testdata/golden");
const work = mkdtempSync(join(tmpdir(), "coral-codegen-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** buf generate with our plugin (both emit modes) on the given proto tree; returns the output dir. */
function generate(protoDir: string, name: string): string {
  const dir = join(work, name);
  cpSync(protoDir, join(dir, "proto"), { recursive: true });
  cpSync(join(root, "proto/coral/options"), join(dir, "proto/coral/options"), { recursive: true });
  const plugin = ["node", "--import", import.meta.resolve("tsx"), join(root, "codegen/plugin.ts")];
  writeFileSync(join(dir, "buf.yaml"), "version: v2\nmodules:\n  - path: proto\n");
  writeFileSync(
    join(dir, "buf.gen.yaml"),
    JSON.stringify({
      version: "v2",
      plugins: [
        { local: plugin, out: "out/gen", opt: ["target=ts", "import_extension=js", "emit=code"], strategy: "all" },
        { local: plugin, out: "out/docs", opt: ["target=ts", "emit=docs"], strategy: "all" },
      ],
    }),
  );
  execFileSync(join(root, "node_modules/.bin/buf"), ["generate", "--exclude-path", "proto/coral/options"], { cwd: dir, stdio: "pipe" });
  return join(dir, "out");
}

describe("protoc-gen-coral", () => {
  it("generates the golden CLI, SDK, defaults and docs for the fixture", () => {
    const out = generate(join(root, "codegen/testdata/proto"), "fixture");
    const files = listFiles(out);
    expect(files).toEqual([
      "docs/README.md",
      "docs/cli.md",
      "docs/rpc/GetErrorRatio.md",
      "docs/rpc/GetLatency.md",
      "docs/rpc/ListWidgets.md",
      "docs/rpc/Query.md",
      "gen/coral/fixture/v1/fixture_cli.ts",
      "gen/coral/fixture/v1/fixture_defaults.ts",
      "gen/coral/fixture/v1/fixture_mcp.ts",
      "gen/coral/fixture/v1/fixture_sdk.ts",
    ]);
    for (const f of files) {
      const actual = readFileSync(join(out, f), "utf8");
      const path = join(golden, f);
      if (process.env.UPDATE_GOLDEN) {
        mkdirSync(dirname(path), { recursive: true });
        writeFileSync(path, actual);
      }
      expect(existsSync(path), `${f} has no golden file; run UPDATE_GOLDEN=1 npx vitest run codegen`).toBe(true);
      expect(actual, `${f} differs from its golden file`).toBe(readFileSync(path, "utf8"));
    }
  });

  it("turns one added annotated RPC into a CLI command, an SDK function, an MCP tool and a docs page", () => {
    const proto = readFileSync(join(root, "proto/coral/colony/v1/query.proto"), "utf8");
    const extra = proto
      .replace(
        /^service QueryService \{$/m,
        `service QueryService {
  // Counts a service's spans over a window.
  rpc CountSpans(CountSpansRequest) returns (CountSpansResponse) {
    option (coral.options.v1.method) = {
      cli: {path: "query span-count", examples: ["query span-count payments"]}
      sdk: {module: "spans", function: "count", unwrap: "count", example: "console.log(await coral.spans.count(\\"payments\\"));"}
    };
  }
`,
      )
      .concat(`
message CountSpansRequest {
  // Service name.
  string service = 1 [(coral.options.v1.field) = {positional: true, service_ref: true, metavar: "SERVICE"}];
  // Look-back window in milliseconds.
  int64 time_range_ms = 2 [(coral.options.v1.field) = {flag: "window", parse: PARSE_DURATION_MS, default: "15m"}];
}

message CountSpansResponse {
  // Spans in the window.
  int64 count = 1;
}
`);
    const src = join(work, "extra-src");
    mkdirSync(join(src, "coral/colony/v1"), { recursive: true });
    writeFileSync(join(src, "coral/colony/v1/query.proto"), extra);
    const out = generate(src, "extra");
    const cli = readFileSync(join(out, "gen/coral/colony/v1/query_cli.ts"), "utf8");
    expect(cli).toContain('path: ["query", "span-count"],');
    expect(cli).toContain('{ prop: "window", field: "timeRangeMs", flag: "--window", parse: "durationMs", default: "15m" }');
    expect(cli).toContain("method: QueryService.method.countSpans,");
    const sdk = readFileSync(join(out, "gen/coral/colony/v1/query_sdk.ts"), "utf8");
    expect(sdk).toContain("export const spans = {");
    expect(sdk).toContain("async count(service: string, time_range_ms?: number): Promise<number>");
    expect(sdk).toContain("Counts a service's spans over a window.");
    expect(sdk).toContain('   * @example\n   * ```ts\n   * console.log(await coral.spans.count("payments"));\n   * ```');
    expect(sdk).toContain("count: (time_range_ms?: number) => spans.count(name, time_range_ms),");
    const defaults = readFileSync(join(out, "gen/coral/colony/v1/query_defaults.ts"), "utf8");
    expect(defaults).toContain('"coral.colony.v1.CountSpansRequest": {\n    timeRangeMs: 900000n,');
    const page = readFileSync(join(out, "docs/rpc/CountSpans.md"), "utf8");
    expect(page).toContain("# CountSpans");
    expect(page).toContain("coral query span-count payments");
    expect(page).toContain("coral.spans.count(service, time_range_ms?)");
    expect(page).toContain('console.log(await coral.spans.count("payments"));');
    expect(readFileSync(join(out, "docs/cli.md"), "utf8")).toContain("## coral query span-count");
    const mcp = readFileSync(join(out, "gen/coral/colony/v1/query_mcp.ts"), "utf8");
    expect(mcp).toContain('name: "count_spans"');
    expect(mcp).toContain('{ name: "window", field: "timeRangeMs", parse: "durationMs", default: "15m" }');
  });
});
