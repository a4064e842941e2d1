// Emits the request defaults and bounds of the annotations as values, so the colony applies to a
// field left at zero exactly the default the CLI and the SDK fill in, and refuses what the CLI
// would refuse, for every client.
import type { Schema } from "@bufbuild/protoplugin";
import type { Param, Rpc } from "./model.js";

/** Whether the colony has something to check in the field: a bound, or a required field that must be there. */
const checked = (p: Param) => p.min !== undefined || p.max !== undefined || p.required;

export function emitDefaults(schema: Schema, rpcsByFile: Map<string, Rpc[]>): void {
  for (const file of schema.files) {
    const rpcs = rpcsByFile.get(file.name) ?? [];
    const withDefaults = rpcs.filter((r) => r.params.some((p) => p.defaultValue !== undefined));
    const withRules = rpcs.filter((r) => r.params.some(checked));
    if (withDefaults.length === 0 && withRules.length === 0) continue;
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
    f.print();
    f.print(f.jsDoc("What the colony checks in a request field once defaults are applied."));
    f.print(f.export("interface", "FieldRule"), " {");
    f.print("  /** Proto field name, as error messages name it. */");
    f.print("  name: string;");
    f.print("  /** Must be non-blank (a string) or non-zero. */");
    f.print("  required?: boolean;");
    f.print("  min?: number;");
    f.print("  minExclusive?: boolean;");
    f.print("  max?: number;");
    f.print("}");
    f.print();
    f.print(f.jsDoc("Request message type name → field (protobuf-es property) → rule."));
    f.print(f.export("const", "requestRules"), ": Record<string, Record<string, FieldRule>> = {");
    for (const r of withRules) {
      f.print("  ", f.string(r.method.input.typeName), ": {");
      for (const p of r.params.filter(checked)) {
        const parts = [`name: ${JSON.stringify(p.name)}`];
        if (p.required) parts.push("required: true");
        if (p.min) parts.push(`min: ${p.min.value}`, ...(p.min.exclusive ? ["minExclusive: true"] : []));
        if (p.max) parts.push(`max: ${p.max.value}`);
        f.print("    ", p.localName, ": { ", parts.join(", "), " },");
      }
      f.print("  },");
    }
    f.print("};");
  }
}
