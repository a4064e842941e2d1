// Emits the request defaults of the annotations as values, so the colony applies to a
// field left at zero exactly the default the CLI and the SDK fill in.
import type { Schema } from "@bufbuild/protoplugin";
import type { Rpc } from "./model.js";

export function emitDefaults(schema: Schema, rpcsByFile: Map<string, Rpc[]>): void {
  for (const file of schema.files) {
    const rpcs = rpcsByFile.get(file.name) ?? [];
    const withDefaults = rpcs.filter((r) => r.params.some((p) => p.defaultValue !== undefined));
    if (withDefaults.length === 0) continue;
    const f = schema.generateFile(`${file.name}_defaults.ts`);
    f.preamble(file);
    f.print(f.jsDoc("Request message type name → field (protobuf-es property) → default value."));
    f.print(f.export("const", "requestDefaults"), ": Record<string, Record<string, unknown>> = {");
    for (const r of withDefaults) {
      f.print("  ", f.string(r.method.input.typeName), ": {");
      for (const p of r.params) {
        if (p.defaultValue === undefined) continue;
        const v = p.int64 ? `${p.defaultValue}n` : JSON.stringify(p.defaultValue);
        f.print("    ", p.localName, ": ", v, ",");
      }
      f.print("  },");
    }
    f.print("};");
  }
}
