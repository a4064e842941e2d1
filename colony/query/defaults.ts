import { isFieldSet, type DescMessage, type Message } from "@bufbuild/protobuf";
import { requestDefaults } from "../../gen/coral/colony/v1/query_defaults.js";

export type DefaultsTable = Record<string, Record<string, unknown>>;

/**
 * Fills the request fields a caller left unset with the defaults declared in query.proto
 * (`(coral.options.v1.field).default`), so a bare SDK call, a CLI invocation and a raw gRPC
 * client all get the same answer. Mutates and returns `msg`.
 *
 * "Unset" is protobuf presence: for proto3 scalars that means the zero value, which the wire
 * cannot tell apart from an explicit zero.
 */
export function applyDefaults<T extends Message>(schema: DescMessage, msg: T, table: DefaultsTable = requestDefaults): T {
  const defaults = table[schema.typeName];
  if (!defaults) return msg;
  for (const field of schema.fields) {
    if (!(field.localName in defaults) || field.oneof !== undefined) continue;
    if (isFieldSet(msg as never, field)) continue;
    (msg as Record<string, unknown>)[field.localName] = defaults[field.localName];
  }
  return msg;
}
