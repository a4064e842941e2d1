// What one OTLP request may make the colony build, counted before it is built.
//
// The body limit (16 MiB) bounds the bytes, not what they decode to: a protobuf Span, data point
// or attribute can be 2 bytes on the wire, and the generated decoder turns each into an object of
// 75–160 bytes (measured: 1M empty Metric messages 159 MiB, 1M KeyValues 75 MiB, 1M data points
// 160 MiB; one packed varint bucket count, 1 byte on the wire, a 32-byte BigInt). JSON is no
// better: JSON.parse spends ~64 bytes on every `{}` (3 bytes of text), and fromJson then builds a
// message with every field defaulted on top. Before these limits a 16 MiB request of empty spans
// or points took the colony to 1.6–4.3 GB and held its event loop for 15–90 s.
//
// So every request is counted first — protobuf with a pass over the wire format (tags and
// lengths, nothing decoded), JSON with a pass over the text for depth and brackets and then a walk
// of the parsed tree — and refused beyond these limits, before any message exists:
//
// - 100,000 spans or data points: 12× the OpenTelemetry Collector's default batch (8,192), and
//   about what 16 MiB of real spans holds (a minimal span with ids is ~100 bytes of OTLP JSON).
//   The pipeline's queue (262,144 items) takes two such requests.
// - 1,000,000 messages of any kind (attributes are two each: KeyValue and AnyValue): 100,000
//   points with a few attributes each, or the Collector's default batch with 60 per item. Decoded,
//   ~160 MiB at most (1M empty Metric messages), 75 MiB if all attributes. A request just under
//   every limit took the colony from ~105 to ~330 MiB RSS; one over any limit, ~150 MiB.
// - 2,000,000 repeated numbers (histogram bucket counts and bounds): 12,500 exponential
//   histograms at the SDKs' default of 160 buckets; ≤ 64 MiB as BigInts. Only varint-packed
//   counts (1 byte each) can reach it inside 16 MiB; fixed64 counts and double bounds cannot.
// - 32 levels of nesting: the deepest message OTLP defines sits at 9 (an attribute value of an
//   exemplar); 32 leaves room for ~7 levels of arrays and key-value lists inside attribute values,
//   and keeps every recursive decoder far from the stack's end. JSON gets twice as many levels,
//   since each repeated field adds an array around its messages.

import { ScalarType, type DescField, type DescMessage, type JsonValue } from "@bufbuild/protobuf";
import { forEachJsonContainer } from "../../json-brackets.js";

export class OtlpDecodeError extends Error {}

export interface RequestLimits {
  /** Spans per request (413 beyond). */
  maxSpans: number;
  /** Metric data points per request, of every kind (413 beyond). */
  maxPoints: number;
  /** Messages of any kind per request: spans, points, attributes, resources, buckets… (413 beyond). */
  maxMessages: number;
  /** Elements of repeated number fields per request: histogram bucket counts and bounds (413 beyond). */
  maxValues: number;
  /** Levels of message nesting, the request itself being level 1 (400 beyond). */
  maxDepth: number;
}

export const DEFAULT_REQUEST_LIMITS: Readonly<RequestLimits> = Object.freeze({
  maxSpans: 100_000,
  maxPoints: 100_000,
  maxMessages: 1_000_000,
  maxValues: 2_000_000,
  maxDepth: 32,
});

/** A request beyond a limit: 413 when smaller batches would pass, 400 when no batch size helps. */
export class LimitError extends Error {
  constructor(
    readonly status: 400 | 413,
    message: string,
  ) {
    super(message);
  }
}

const SPAN = "opentelemetry.proto.trace.v1.Span";
const POINTS = new Set([
  "opentelemetry.proto.metrics.v1.NumberDataPoint",
  "opentelemetry.proto.metrics.v1.HistogramDataPoint",
  "opentelemetry.proto.metrics.v1.ExponentialHistogramDataPoint",
]);

const SMALLER = "send smaller batches (e.g. the Collector's batch processor with a lower send_batch_max_size, or a lower maxExportBatchSize in the SDK)";

/** Running counts of one request; throws LimitError as soon as one passes its limit. */
export class Tally {
  spans = 0;
  points = 0;
  messages = 0;
  values = 0;

  constructor(readonly limits: Readonly<RequestLimits>) {}

  /** One embedded message of type `typeName` at nesting level `depth`. */
  message(typeName: string, depth: number): void {
    this.any(depth);
    if (typeName === SPAN) this.span();
    else if (POINTS.has(typeName)) this.point();
  }

  /** One embedded message that is neither a span nor a data point (the span decoder's attributes: its hot path). */
  any(depth: number): void {
    if (depth > this.limits.maxDepth) throw tooDeep(this.limits.maxDepth);
    if (++this.messages > this.limits.maxMessages) {
      throw new LimitError(413, `request holds more than ${this.limits.maxMessages} messages (spans, data points, attributes and the rest): ${SMALLER}`);
    }
  }

  span(): void {
    if (++this.spans > this.limits.maxSpans) throw new LimitError(413, `request holds more than ${this.limits.maxSpans} spans: ${SMALLER}`);
  }

  point(): void {
    if (++this.points > this.limits.maxPoints) throw new LimitError(413, `request holds more than ${this.limits.maxPoints} data points: ${SMALLER}`);
  }

  value(n: number): void {
    this.values += n;
    if (this.values > this.limits.maxValues) {
      throw new LimitError(413, `request holds more than ${this.limits.maxValues} repeated numbers (histogram bucket counts and bounds): ${SMALLER}`);
    }
  }
}

function tooDeep(max: number): LimitError {
  return new LimitError(400, `request nests messages more than ${max} levels deep (attribute values inside arrays and key-value lists count): flatten them`);
}

// --- protobuf: one pass over tags and lengths -------------------------------------------------

const fieldMaps = new WeakMap<DescMessage, Map<number, DescField>>();

function fieldsByNumber(desc: DescMessage): Map<number, DescField> {
  let m = fieldMaps.get(desc);
  if (!m) fieldMaps.set(desc, (m = new Map(desc.fields.map((f) => [f.number, f]))));
  return m;
}

/** Cursor over the body; `pos` moves forward only. */
interface Cursor {
  buf: Uint8Array;
  pos: number;
}

/** A tag or length: like protobuf-es, up to 10 bytes of varint of which the low 32 bits count. */
function varint32(c: Cursor, end: number): number {
  let v = 0;
  for (let i = 0; i < 10; i++) {
    if (c.pos >= end) throw new OtlpDecodeError(`truncated varint at byte ${c.pos}`);
    const b = c.buf[c.pos++]!;
    if (i < 5) v += (b & 0x7f) * 2 ** (7 * i);
    if (b < 0x80) return v % 0x100000000;
  }
  throw new OtlpDecodeError(`varint too long at byte ${c.pos}`);
}

function skipVarint(c: Cursor, end: number): void {
  for (let i = 0; i < 10; i++) {
    if (c.pos >= end) throw new OtlpDecodeError(`truncated varint at byte ${c.pos}`);
    if (c.buf[c.pos++]! < 0x80) return;
  }
  throw new OtlpDecodeError(`varint too long at byte ${c.pos}`);
}

/** How many elements a packed run of `scalar` holds in buf[start, end). */
function packedCount(buf: Uint8Array, start: number, end: number, scalar: ScalarType | undefined): number {
  switch (scalar) {
    case ScalarType.DOUBLE:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return Math.ceil((end - start) / 8);
    case ScalarType.FLOAT:
    case ScalarType.FIXED32:
    case ScalarType.SFIXED32:
      return Math.ceil((end - start) / 4);
    case ScalarType.STRING:
    case ScalarType.BYTES:
      return 1;
    default: {
      // Varints (and enums, scalar undefined): one element ends at every byte below 0x80.
      let n = 0;
      for (let i = start; i < end; i++) if (buf[i]! < 0x80) n++;
      return n;
    }
  }
}

/**
 * Counts what decoding `buf` as a `desc` message would build, without building it: every embedded
 * message by type and depth, and every element of repeated number fields. Unknown fields are
 * skipped, as the decoder skips them, but their groups still count towards depth. Throws LimitError
 * beyond a limit and OtlpDecodeError on input that is not well-formed protobuf.
 */
export function scanProtobuf(buf: Uint8Array, desc: DescMessage, tally: Tally): void {
  const c: Cursor = { buf, pos: 0 };
  scanMessage(c, buf.length, desc, 1, tally);
}

function scanMessage(c: Cursor, end: number, desc: DescMessage | undefined, depth: number, tally: Tally, group?: number): void {
  const fields = desc ? fieldsByNumber(desc) : undefined;
  while (c.pos < end) {
    const tag = varint32(c, end);
    const no = Math.floor(tag / 8);
    const wireType = tag & 7;
    if (no === 0) throw new OtlpDecodeError(`illegal tag at byte ${c.pos}`);
    const f = fields?.get(no);
    const repeatedScalar = f?.fieldKind === "list" && f.listKind !== "message";
    switch (wireType) {
      case 0:
        skipVarint(c, end);
        if (repeatedScalar) tally.value(1);
        break;
      case 1:
      case 5:
        c.pos += wireType === 1 ? 8 : 4;
        if (c.pos > end) throw new OtlpDecodeError("truncated fixed-width field");
        if (repeatedScalar) tally.value(1);
        break;
      case 2: {
        const len = varint32(c, end);
        const sub = c.pos + len;
        if (sub > end) throw new OtlpDecodeError(`length exceeds message at byte ${c.pos}`);
        if (f && (f.fieldKind === "message" || (f.fieldKind === "list" && f.listKind === "message"))) {
          tally.message(f.message.typeName, depth + 1);
          scanMessage(c, sub, f.message, depth + 1, tally);
        } else if (repeatedScalar) {
          tally.value(packedCount(c.buf, c.pos, sub, f.listKind === "scalar" ? f.scalar : undefined));
        }
        c.pos = sub;
        break;
      }
      case 3:
        // A group (proto2; none in OTLP): skipped like any unknown field, but it nests.
        if (depth + 1 > tally.limits.maxDepth) throw tooDeep(tally.limits.maxDepth);
        scanMessage(c, end, undefined, depth + 1, tally, no);
        break;
      case 4:
        if (group === no) return;
        throw new OtlpDecodeError(`unexpected end of group at byte ${c.pos}`);
      default:
        throw new OtlpDecodeError(`illegal wire type ${wireType} at byte ${c.pos}`);
    }
  }
  if (group !== undefined) throw new OtlpDecodeError("unterminated group");
}

// --- JSON: brackets before parsing, then the parsed tree ----------------------------------------

/**
 * Refuses JSON text nested deeper than twice `maxDepth`, or holding more than twice `maxMessages`
 * objects and arrays, before JSON.parse builds any of it (a message is an object, and a repeated
 * field adds an array).
 */
export function scanJsonText(buf: Uint8Array, limits: Readonly<RequestLimits>): void {
  const maxDepth = 2 * limits.maxDepth;
  const maxContainers = 2 * limits.maxMessages;
  let containers = 0;
  forEachJsonContainer(buf, (depth) => {
    if (depth > maxDepth) throw new LimitError(400, `JSON nested more than ${maxDepth} levels deep (attribute values inside arrays and key-value lists count): flatten them`);
    if (++containers > maxContainers) throw new LimitError(413, `request holds more than ${maxContainers} JSON objects and arrays: ${SMALLER}`);
  });
}

const jsonMaps = new WeakMap<DescMessage, Map<string, DescField>>();

/** Fields by the names fromJson accepts: the JSON (lowerCamelCase) name and the proto name. */
function fieldsByJsonName(desc: DescMessage): Map<string, DescField> {
  let m = jsonMaps.get(desc);
  if (!m) {
    m = new Map();
    for (const f of desc.fields) {
      m.set(f.name, f);
      m.set(f.jsonName, f);
    }
    jsonMaps.set(desc, m);
  }
  return m;
}

/**
 * Counts what fromJson would build from `value` as a `desc` message, as scanProtobuf does for the
 * wire format. Unknown keys and values of the wrong JSON type are left for fromJson to ignore or
 * refuse. Recursion is bounded by scanJsonText's depth check, which must run first.
 */
export function countJson(value: JsonValue, desc: DescMessage, tally: Tally, depth = 1): void {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return;
  const fields = fieldsByJsonName(desc);
  for (const key in value) {
    const f = fields.get(key);
    if (!f) continue;
    const v = value[key]!;
    if (f.fieldKind === "message") {
      if (v !== null && typeof v === "object" && !Array.isArray(v)) {
        tally.message(f.message.typeName, depth + 1);
        countJson(v, f.message, tally, depth + 1);
      }
    } else if (f.fieldKind === "list" && Array.isArray(v)) {
      if (f.listKind === "message") {
        for (const el of v) {
          tally.message(f.message.typeName, depth + 1);
          countJson(el, f.message, tally, depth + 1);
        }
      } else tally.value(v.length);
    }
  }
}
