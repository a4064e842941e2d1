// Every check of the annotation model, on a proto that breaks exactly that rule: a mistake in
// the proto must stop `npm run gen` with a message naming the RPC and the rule, never generate a
// surface that fails (or silently misbehaves) at run time.
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createFileRegistry, fromBinary, type DescFile } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ModelError, cliCommands, rpcsOf } from "./model.js";

const root = fileURLToPath(new URL("..", import.meta.url));

/** A request with one string field and the usual window, for cases about something else. */
const PLAIN = `
message Req { string service = 1; int64 time_range_ms = 2; }
message Res { int64 value = 1; repeated google.protobuf.ListValue rows = 2; repeated Col columns = 3; string encoded = 4; repeated string names = 5; }
message Col { string name = 1; }
`;

const rpc = (name: string, options: string, req = "Req", res = "Res", streaming = "") =>
  `rpc ${name}(${req}) returns (${streaming}${res}) { option (coral.options.v1.method) = { ${options} }; }`;

/** Each broken rule: the service body, extra messages, and the error it must produce. */
const cases: { rule: string; service: string; messages?: string; error: RegExp }[] = [
  {
    rule: "request fields are scalars",
    service: rpc("A", `cli: {path: "a"}`, "NestedReq"),
    messages: "message NestedReq { Col col = 1; }",
    error: /NestedReq\.col: only scalar request fields are supported/,
  },
  {
    rule: "no bytes request fields",
    service: rpc("A", `cli: {path: "a"}`, "BytesReq"),
    messages: "message BytesReq { bytes blob = 1; }",
    error: /BytesReq\.blob: bytes request fields are not supported/,
  },
  {
    rule: "a default parses with the field's rule",
    service: rpc("A", `cli: {path: "a"}`, "BadDefaultReq"),
    messages: `message BadDefaultReq { int64 w = 1 [(coral.options.v1.field) = {parse: PARSE_DURATION_MS, default: "5xs"}]; }`,
    error: /BadDefaultReq\.w: bad default "5xs"/,
  },
  {
    rule: "a bound parses with the field's rule",
    service: rpc("A", `cli: {path: "a"}`, "BadBoundReq"),
    messages: `message BadBoundReq { int32 n = 1 [(coral.options.v1.field) = {max: "lots"}]; }`,
    error: /BadBoundReq\.n: bad max "lots"/,
  },
  {
    rule: "bounds only on numeric fields",
    service: rpc("A", `cli: {path: "a"}`, "StringBoundReq"),
    messages: `message StringBoundReq { string s = 1 [(coral.options.v1.field) = {min: "1"}]; }`,
    error: /StringBoundReq\.s: min applies to numeric fields only/,
  },
  {
    rule: "min is not above max",
    service: rpc("A", `cli: {path: "a"}`, "CrossedReq"),
    messages: `message CrossedReq { int32 n = 1 [(coral.options.v1.field) = {min: "10", max: "5"}]; }`,
    error: /CrossedReq\.n: min 10 is above max 5/,
  },
  {
    rule: "min_exclusive needs a min",
    service: rpc("A", `cli: {path: "a"}`, "LoneExclusiveReq"),
    messages: `message LoneExclusiveReq { int32 n = 1 [(coral.options.v1.field) = {min_exclusive: true}]; }`,
    error: /LoneExclusiveReq\.n: min_exclusive without a min/,
  },
  {
    rule: "the default lies within the bounds",
    service: rpc("A", `cli: {path: "a"}`, "DefaultOutReq"),
    messages: `message DefaultOutReq { int32 n = 1 [(coral.options.v1.field) = {default: "2000", min: "1", max: "1000"}]; }`,
    error: /DefaultOutReq\.n: default "2000" is outside its bounds/,
  },
  {
    rule: "parse rules only on numeric fields",
    service: rpc("A", `cli: {path: "a"}`, "ParseStringReq"),
    messages: `message ParseStringReq { string w = 1 [(coral.options.v1.field) = {parse: PARSE_DURATION_MS}]; }`,
    error: /ParseStringReq\.w: parse rules apply to numeric fields only/,
  },
  {
    rule: "cli.rows names a response field",
    service: rpc("A", `cli: {path: "a", rows: "nope"}`),
    error: /A: cli\.rows "nope" is not a field of t\.\w+\.Res/,
  },
  {
    rule: "cli.columns names a response field",
    service: rpc("A", `cli: {path: "a", rows: "rows", columns: "nope"}`),
    error: /A: cli\.columns "nope" is not a field/,
  },
  {
    rule: "an encoding is only for string fields",
    service: rpc("A", `cli: {path: "a", rows: "cells", columns: "columns"}`, "Req", "EncodedIntRes"),
    messages: `message EncodedIntRes { int64 cells = 1 [(coral.options.v1.field) = {encoding: ENCODING_JSON_COLUMNS}]; repeated Col columns = 2; }`,
    error: /A: cli\.rows "cells" has an encoding but is not a string field/,
  },
  {
    rule: "cells are ListValues or an encoded string",
    service: rpc("A", `cli: {path: "a", rows: "names", columns: "columns"}`),
    error: /A: cli\.rows "names" must be a repeated google\.protobuf\.ListValue or an encoded string/,
  },
  {
    rule: "client and bidi streaming have no surface",
    service: "rpc A(stream Req) returns (Res) { option (coral.options.v1.method) = { cli: {path: \"a\"} }; }",
    error: /\.A: only unary and server-streaming RPCs are supported/,
  },
  {
    rule: "cli.path is not empty",
    service: rpc("A", `cli: {path: "  "}`),
    error: /A: cli\.path is empty/,
  },
  {
    rule: "encoded cells need their column list",
    service: rpc("A", `cli: {path: "a", rows: "cells"}`, "Req", "EncodedRes"),
    messages: `message EncodedRes { string cells = 1 [(coral.options.v1.field) = {encoding: ENCODING_JSON_COLUMNS}]; }`,
    error: /A: cli\.rows "cells" is encoded cells; name the column list with cli\.columns/,
  },
  {
    rule: "sdk.module and sdk.function are both given",
    service: rpc("A", `sdk: {module: "m"}`),
    error: /A: sdk\.module and sdk\.function are required/,
  },
  {
    rule: "sdk.unwrap names a response field",
    service: rpc("A", `sdk: {module: "m", function: "f", unwrap: "nope"}`),
    error: /A: sdk\.unwrap "nope" is not a field/,
  },
  {
    rule: "sdk.rows and sdk.columns only with a table shape",
    service: rpc("A", `sdk: {module: "m", function: "f", rows: "rows"}`),
    error: /A: sdk\.rows and sdk\.columns apply to the table shapes only/,
  },
  {
    rule: "a table shape needs cells",
    service: rpc("A", `sdk: {module: "m", function: "f", shape: RESULT_SHAPE_TABLE, rows: "names"}`),
    error: /A: sdk\.rows "names" must be a repeated google\.protobuf\.ListValue/,
  },
  {
    rule: "an alias fixes only fields the request has",
    service: rpc("A", `sdk: {module: "m", function: "f", aliases: [{function: "g", fixed: {key: "nope", value: "1"}}]}`),
    error: /A: alias g fixes unknown field "nope"/,
  },
  {
    rule: "SDK parameters: required before optional",
    service: rpc("A", `sdk: {module: "m", function: "f"}`, "OrderReq"),
    messages: `message OrderReq { string a = 1 [(coral.options.v1.field) = {default: "x"}]; string b = 2 [(coral.options.v1.field) = {positional: true}]; }`,
    error: /A: a positional \(required\) field follows an optional one/,
  },
  {
    rule: "an SDK function has an example",
    service: rpc("A", `sdk: {module: "m", function: "f", unwrap: "value"}`),
    error: /A: sdk\.example is required: TypeScript calling coral\.m\.f\(…\)/,
  },
  {
    rule: "a blank example is no example",
    service: rpc("A", `sdk: {module: "m", function: "f", unwrap: "value", example: " \\n "}`),
    error: /A: sdk\.example is required/,
  },
  {
    rule: "the example calls its own function",
    service: rpc("A", `sdk: {module: "m", function: "f", unwrap: "value", example: "await coral.m.g(1);"}`),
    error: /A: sdk\.example does not call m\.f\(…\)/,
  },
  {
    rule: "an alias has an example of its own",
    service: rpc("A", `sdk: {module: "m", function: "f", unwrap: "value", example: "await coral.m.f(\\"s\\");", aliases: [{function: "g", fixed: {key: "time_range_ms", value: "1"}}]}`),
    error: /A: the example of alias g is required: TypeScript calling coral\.m\.g\(…\)/,
  },
  {
    rule: "a function returning the whole response names its result type",
    service: rpc("A", `sdk: {module: "m", function: "f", example: "await coral.m.f(\\"s\\");"}`, "Req", "WholeResponse"),
    messages: "message WholeResponse { int64 n = 1; }",
    error: /A: sdk\.result is required when the function returns the whole WholeResponse: the name scripts know it by/,
  },
  {
    rule: "sdk.result only for a whole response",
    service: rpc("A", `sdk: {module: "m", function: "f", unwrap: "value", result: "Value", example: "await coral.m.f(\\"s\\");"}`),
    error: /A: sdk\.result applies only to a function returning the whole response/,
  },
  {
    rule: "sdk.result is a type name",
    service: rpc("A", `sdk: {module: "m", function: "f", result: "my result", example: "await coral.m.f(\\"s\\");"}`),
    error: /A: sdk\.result "my result" is not a PascalCase type name/,
  },
  {
    rule: "one default variant per path",
    service: [rpc("A", `cli: {path: "a", default_variant: true}`), rpc("B", `cli: {path: "a", variant: "b", default_variant: true}`)].join("\n"),
    error: /"a": more than one default variant/,
  },
  {
    rule: "every variant of a shared path is selectable",
    service: [rpc("A", `cli: {path: "a", variant: "x"}`), rpc("B", `cli: {path: "a"}`)].join("\n"),
    error: /"a": every variant needs a variant flag or the default mark/,
  },
  {
    rule: "a flag means one thing on one path",
    service: [rpc("A", `cli: {path: "a", default_variant: true}`, "WindowMsReq"), rpc("B", `cli: {path: "a", variant: "b"}`, "WindowRawReq")].join("\n"),
    messages: `message WindowMsReq { int64 window = 1 [(coral.options.v1.field) = {parse: PARSE_DURATION_MS}]; }
message WindowRawReq { int64 window = 1; }`,
    error: /"a": --window means different things in different variants/,
  },
  {
    rule: "variants take the same positionals",
    service: [rpc("A", `cli: {path: "a", default_variant: true}`, "PosReq"), rpc("B", `cli: {path: "a", variant: "b"}`)].join("\n"),
    messages: `message PosReq { string service = 1 [(coral.options.v1.field) = {positional: true}]; }`,
    error: /"a": variants must take the same positional arguments/,
  },
  {
    rule: "a variant selected by its own field needs a value to select it by",
    service: [rpc("A", `cli: {path: "a", default_variant: true}`), rpc("B", `cli: {path: "a", variant: "by"}`, "BoolByReq")].join("\n"),
    messages: `message BoolByReq { bool by = 1; }`,
    error: /B: variant "by" is selected by its field by, which must be a non-boolean field without a default/,
  },
  {
    rule: "the waterfall layout draws repeated span messages",
    service: rpc("A", `cli: {path: "a", rows: "rows", columns: "columns", layout: LAYOUT_WATERFALL}`),
    error: /A: the waterfall layout needs cli\.rows naming a repeated message/,
  },
  {
    rule: "the waterfall layout needs every field it draws",
    service: rpc("A", `cli: {path: "a", rows: "spans", layout: LAYOUT_WATERFALL}`, "Req", "SpansRes"),
    messages: `message SpansRes { repeated NoEndSpan spans = 1; }
message NoEndSpan { string span_id = 1; string parent_span_id = 2; string service = 3; string name = 4; int64 start_offset_ns = 5; bool error = 6; }`,
    error: /A: the waterfall layout needs a int64 field "duration_ns" in t\.case\d+\.NoEndSpan/,
  },  {
    rule: "a total describes rows",
    service: rpc("A", `cli: {path: "a", total: "value"}`),
    error: /A: cli\.total needs cli\.rows: it describes the rows/,
  },
  {
    rule: "a total is a response field",
    service: rpc("A", `cli: {path: "a", rows: "rows", columns: "columns", total: "count"}`),
    error: /A: cli\.total "count" is not a field of/,
  },
  {
    rule: "a total is an integer",
    service: rpc("A", `cli: {path: "a", rows: "rows", columns: "columns", total: "encoded"}`),
    error: /A: cli\.total "encoded" must be a single integer field/,
  },
  {
    rule: "truncated is a bool",
    service: rpc("A", `cli: {path: "a", rows: "rows", columns: "columns", truncated: "value"}`),
    error: /A: cli\.truncated "value" must be a single bool field/,
  },
];

let work: string;
const files = new Map<string, DescFile>();

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "coral-model-"));
  const proto = join(work, "proto");
  cpSync(join(root, "proto/coral/options"), join(proto, "coral/options"), { recursive: true });
  cases.forEach((c, i) => {
    mkdirSync(join(proto, "t"), { recursive: true });
    writeFileSync(
      join(proto, `t/case${i}.proto`),
      `syntax = "proto3";
package t.case${i};
import "coral/options/v1/options.proto";
import "google/protobuf/struct.proto";
${PLAIN}
${c.messages ?? ""}
service S {
${c.service}
}
`,
    );
  });
  writeFileSync(
    join(proto, "t/control.proto"),
    `syntax = "proto3";
package t.control;
import "coral/options/v1/options.proto";
import "google/protobuf/struct.proto";
${PLAIN}
service S {
${rpc("A", `cli: {path: "a"} sdk: {module: "m", function: "f", result: "Result", example: "const r = await coral.m.f(\\"s\\");", aliases: [{function: "g", fixed: {key: "time_range_ms", value: "1"}, example: "await coral.m.g<number>(\\"s\\");"}]}`)}
}
`,
  );
  writeFileSync(join(work, "buf.yaml"), "version: v2\nmodules:\n  - path: proto\n");
  // One buf build for every case: each is a file of its own in the set.
  execFileSync(join(root, "node_modules/.bin/buf"), ["build", "-o", "set.binpb"], { cwd: work, stdio: "pipe" });
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(join(work, "set.binpb"))));
  cases.forEach((_, i) => files.set(`case${i}`, registry.getFile(`t/case${i}.proto`)!));
  files.set("control", registry.getFile("t/control.proto")!);
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("annotation model checks", () => {
  it.each(cases.map((c, i) => [c.rule, i] as const))("%s", (_, i) => {
    const file = files.get(`case${i}`)!;
    const check = () => cliCommands(rpcsOf(file.services));
    expect(check).toThrow(ModelError);
    expect(check).toThrow(cases[i]!.error);
  });

  it("the same scaffolding with nothing broken passes (so each case fails for its own rule)", () => {
    const commands = cliCommands(rpcsOf(files.get("control")!.services));
    expect(commands.map((c) => c.path.join(" "))).toEqual(["a"]);
    expect(commands[0]!.rpcs.map((r) => r.sdk?.function)).toEqual(["f"]);
    expect(commands[0]!.rpcs[0]!.sdk).toMatchObject({ result: "Result", example: 'const r = await coral.m.f("s");' });
  });
});
