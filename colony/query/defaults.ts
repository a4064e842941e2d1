import { isFieldSet, type DescMessage, type Message } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { requestDefaults, requestRules, type FieldRule } from "../../gen/coral/colony/v1/query_defaults.js";
import { boundsPhrase, outside } from "../../surface/bounds.js";

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

/**
 * Refuses a request (invalid_argument) whose fields break the bounds declared in query.proto
 * (`min`, `max`, a positional that must be there), after defaults are applied: the checks the CLI
 * makes before sending, made here for every client.
 */
export function checkRequest<T extends Message>(schema: DescMessage, msg: T, table: Record<string, Record<string, FieldRule>> = requestRules): T {
  const rules = table[schema.typeName];
  if (!rules) return msg;
  for (const [prop, rule] of Object.entries(rules)) {
    const v = (msg as Record<string, unknown>)[prop];
    // Bounds first: proto3 cannot tell an explicit 0 from an absent field, and for a 0 the bounds
    // refuse, "must be in 1..100; got 0" says what to send (and is what the CLI says).
    if ((typeof v === "number" || typeof v === "bigint") && outside(Number(v), rule)) {
      throw new ConnectError(`${rule.name} must be ${boundsPhrase(rule)}; got ${v}`, Code.InvalidArgument);
    }
    if (rule.required && (v === undefined || (typeof v === "string" ? v.trim() === "" : v === 0 || v === 0n))) {
      throw new ConnectError(`${rule.name} is required`, Code.InvalidArgument);
    }
  }
  return msg;
}

/** A request as the handlers may trust it: defaults applied, then checked. */
export function prepare<T extends Message>(schema: DescMessage, msg: T): T {
  return checkRequest(schema, applyDefaults(schema, msg));
}
