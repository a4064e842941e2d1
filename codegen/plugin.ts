// protoc-gen-coral: from the Coral annotations in the protos, generate the `coral query`
// commands and the @coral/sdk functions (emit=code) or the markdown reference (emit=docs).
import { createEcmaScriptPlugin, runNodeJs, type Schema } from "@bufbuild/protoplugin";
import { emitCli } from "./cli.js";
import { emitDefaults } from "./defaults.js";
import { emitDocs } from "./docs.js";
import { emitMcp } from "./mcp.js";
import { rpcsOf, type Rpc } from "./model.js";
import { emitSdk } from "./sdk.js";

interface Options {
  emit: "code" | "docs";
}

function parseOptions(raw: { key: string; value: string }[]): Options {
  const o: Options = { emit: "code" };
  for (const { key, value } of raw) {
    if (key === "emit" && (value === "code" || value === "docs")) o.emit = value;
    else throw new Error(`unknown option ${key}=${value}; protoc-gen-coral takes emit=code|docs`);
  }
  return o;
}

function generate(schema: Schema<Options>): void {
  const rpcsByFile = new Map<string, Rpc[]>(schema.files.map((f) => [f.name, rpcsOf(f.services)]));
  if (schema.options.emit === "docs") {
    emitDocs(schema, rpcsByFile);
  } else {
    emitCli(schema, rpcsByFile);
    emitSdk(schema, rpcsByFile);
    emitDefaults(schema, rpcsByFile);
    emitMcp(schema, rpcsByFile);
  }
}

export const protocGenCoral = createEcmaScriptPlugin({
  name: "protoc-gen-coral",
  version: "v0.1.0",
  parseOptions,
  generateTs: generate,
});

runNodeJs(protocGenCoral);
