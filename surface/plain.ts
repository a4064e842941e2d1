// Protobuf messages → the plain objects scripts and `--output json` see: proto field
// names (`trace.duration_ns`), 64-bit integers as numbers (so `p99 / 1_000_000` works),
// timestamps as Date, google.protobuf.Value/ListValue/Struct as their JSON values, an unset
// `optional` field (no data) as null.
import { toJson, type DescEnum, type DescField, type DescMessage, type Message, type MessageShape } from "@bufbuild/protobuf";
import { reflect, type ReflectMessage } from "@bufbuild/protobuf/reflect";
import {
  FeatureSet_FieldPresence,
  ListValueSchema,
  StructSchema,
  ValueSchema,
  timestampDate,
  type ListValue,
  type Struct,
  type Timestamp,
  type Value,
} from "@bufbuild/protobuf/wkt";

export type Plain = null | boolean | number | string | Date | Plain[] | { [key: string]: Plain };

/** bigint → number when exact; beyond 2^53 a string keeps every digit. */
export function int64ToPlain(v: bigint | string | number): number | string {
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : String(v);
}

function scalar(v: unknown): Plain {
  if (typeof v === "bigint") return int64ToPlain(v);
  if (v instanceof Uint8Array) return Array.from(v);
  return v as Plain;
}

function wellKnown(typeName: string, msg: Message): Plain | undefined {
  switch (typeName) {
    case "google.protobuf.Timestamp":
      return timestampDate(msg as Timestamp);
    case "google.protobuf.Value":
      return toJson(ValueSchema, msg as Value) as Plain;
    case "google.protobuf.ListValue":
      return toJson(ListValueSchema, msg as ListValue) as Plain;
    case "google.protobuf.Struct":
      return toJson(StructSchema, msg as Struct) as Plain;
  }
  return undefined;
}

/** An enum value by its name, as the SDK's types declare it (a number the proto does not name stays a number). */
function enumName(e: DescEnum, v: number): string | number {
  return e.values.find((x) => x.number === v)?.name ?? v;
}

function toPlainMessage(r: ReflectMessage): Plain {
  const known = wellKnown(r.desc.typeName, r.message);
  if (known !== undefined) return known;
  const out: Record<string, Plain> = {};
  for (const f of r.fields) {
    out[f.name] = fieldToPlain(r, f);
  }
  return out;
}

function fieldToPlain(r: ReflectMessage, f: DescField): Plain {
  switch (f.fieldKind) {
    case "scalar":
      // A field with presence (proto3 `optional`) left unset is "no data", not its zero value.
      if (f.presence === FeatureSet_FieldPresence.EXPLICIT && !r.isSet(f)) return null;
      return scalar(r.get(f));
    case "enum":
      return enumName(f.enum, r.get(f) as number);
    case "message": {
      if (!r.isSet(f)) return null;
      return toPlainMessage(r.get(f));
    }
    case "list": {
      const list = r.get(f);
      const out: Plain[] = [];
      for (const item of list) {
        out.push(f.listKind === "message" ? toPlainMessage(item as ReflectMessage) : f.listKind === "enum" ? enumName(f.enum, item as number) : scalar(item));
      }
      return out;
    }
    case "map": {
      const out: Record<string, Plain> = {};
      for (const [k, v] of r.get(f)) {
        out[String(k)] = f.mapKind === "message" ? toPlainMessage(v as ReflectMessage) : f.mapKind === "enum" ? enumName(f.enum, v as number) : scalar(v);
      }
      return out;
    }
  }
}

/** The plain form of a message (see the module comment). */
export function toPlain<Desc extends DescMessage>(schema: Desc, msg: MessageShape<Desc>): Plain {
  return toPlainMessage(reflect(schema, msg));
}
