// OTLP traces → SpanRecords, straight from the protobuf wire format.
//
// The generated messages (gen/opentelemetry/...) define the format and serve the JSON path, metrics
// and tests; but decoding a 512-span request through reflection costs more than storing it
// (≈70k spans/s here), so the hot path walks the wire format itself and builds the rows the Writer
// stores — trace ids as hex, attributes as JSON text — without intermediate objects. Field numbers
// below are those of opentelemetry/proto/{collector/trace,trace,resource,common}/v1 (see proto/).
// A differential test holds this decoder to the generated one.

import type { ResourceRecord, SpanRecord } from "../writer.js";

export class OtlpDecodeError extends Error {}

export interface DecodedTraces {
  spans: SpanRecord[];
  resources: ResourceRecord[];
  /** Spans refused one by one (bad ids); the rest of the request is kept (partial success). */
  rejected: number;
  rejectReason?: string;
}

const KINDS: SpanRecord["kind"][] = ["INTERNAL", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"];
const STATUS: SpanRecord["statusCode"][] = ["UNSET", "OK", "ERROR"];
const TWO32 = 4294967296;

/** Resource attributes Coral reads; everything else on the resource is ignored. */
export interface ResourceInfo {
  serviceName: string;
  namespace: string;
  region: string;
  instanceId: string;
  hostName: string;
}

export function resourceInfo(attrs: Map<string, unknown>): ResourceInfo {
  const str = (k: string) => {
    const v = attrs.get(k);
    return v === undefined || v === null ? "" : String(v);
  };
  const serviceName = str("service.name") || "unknown_service";
  return {
    serviceName,
    namespace: str("service.namespace"),
    region: str("cloud.region"),
    instanceId: str("service.instance.id") || str("host.name") || serviceName,
    hostName: str("host.name") || str("service.instance.id") || serviceName,
  };
}

/** A cursor over protobuf bytes. Every read checks bounds: truncated input throws, never reads junk. */
class Reader {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  varint(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      if (this.pos >= this.end) throw new OtlpDecodeError("truncated varint");
      const b = this.buf[this.pos++]!;
      if (shift < 28) result |= (b & 0x7f) << shift;
      else result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return shift < 28 ? result >>> 0 : result;
      shift += 7;
      if (shift > 63) throw new OtlpDecodeError("varint too long");
    }
  }

  /** A 64-bit varint as a signed number (int64 attribute values); precise up to 2^53. */
  int64(): number {
    const start = this.pos;
    const u = this.varint();
    // Ten bytes mean the value is negative in two's complement.
    if (this.pos - start === 10) {
      let lo = 0;
      let hi = 0;
      for (let i = 0; i < 10; i++) {
        const b = this.buf[start + i]! & 0x7f;
        if (i < 4) lo |= b << (7 * i);
        else if (i === 4) {
          lo |= (b & 0x0f) << 28;
          hi |= b >> 4;
        } else hi |= b << (7 * i - 32);
      }
      return (hi | 0) * TWO32 + (lo >>> 0);
    }
    return u;
  }

  fixed32(): number {
    if (this.pos + 4 > this.end) throw new OtlpDecodeError("truncated fixed32");
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }

  /** fixed64 as [lo, hi] words: nanosecond timestamps exceed 2^53. */
  fixed64(): [number, number] {
    if (this.pos + 8 > this.end) throw new OtlpDecodeError("truncated fixed64");
    const lo = this.buf.readUInt32LE(this.pos);
    const hi = this.buf.readUInt32LE(this.pos + 4);
    this.pos += 8;
    return [lo, hi];
  }

  double(): number {
    if (this.pos + 8 > this.end) throw new OtlpDecodeError("truncated double");
    const v = this.buf.readDoubleLE(this.pos);
    this.pos += 8;
    return v;
  }

  /** Start of a length-delimited field's bytes; advances past them. */
  bytes(): [number, number] {
    const len = this.varint();
    const start = this.pos;
    if (start + len > this.end) throw new OtlpDecodeError("length exceeds message");
    this.pos = start + len;
    return [start, start + len];
  }

  string(): string {
    const [s, e] = this.bytes();
    return this.buf.toString("utf8", s, e);
  }

  skip(wireType: number): void {
    switch (wireType) {
      case 0:
        this.varint();
        return;
      case 1:
        if (this.pos + 8 > this.end) throw new OtlpDecodeError("truncated fixed64");
        this.pos += 8;
        return;
      case 2:
        this.bytes();
        return;
      case 5:
        if (this.pos + 4 > this.end) throw new OtlpDecodeError("truncated fixed32");
        this.pos += 4;
        return;
      default:
        throw new OtlpDecodeError(`unsupported wire type ${wireType}`);
    }
  }
}

function expect(r: Reader, tag: number, wireType: number): void {
  if ((tag & 7) !== wireType) throw new OtlpDecodeError(`field ${tag >>> 3} has wire type ${tag & 7}, expected ${wireType}`);
}

/** Decodes an ExportTraceServiceRequest. Throws OtlpDecodeError on malformed input. */
export function decodeTraces(body: Buffer, receivedAtMs: number): DecodedTraces {
  const out: DecodedTraces = { spans: [], resources: [], rejected: 0 };
  const r = new Reader(body, 0, body.length);
  while (r.pos < r.end) {
    const tag = r.varint();
    if (tag >>> 3 === 1) {
      expect(r, tag, 2);
      const [s, e] = r.bytes();
      resourceSpans(new Reader(body, s, e), out, receivedAtMs);
    } else r.skip(tag & 7);
  }
  return out;
}

function resourceSpans(r: Reader, out: DecodedTraces, receivedAtMs: number): void {
  let attrs = new Map<string, unknown>();
  const first = out.spans.length;
  while (r.pos < r.end) {
    const tag = r.varint();
    const field = tag >>> 3;
    if (field === 1) {
      expect(r, tag, 2);
      const [s, e] = r.bytes();
      attrs = resourceAttributes(new Reader(r.buf, s, e));
    } else if (field === 2) {
      expect(r, tag, 2);
      const [s, e] = r.bytes();
      scopeSpans(new Reader(r.buf, s, e), out);
    } else r.skip(tag & 7);
  }
  // The resource may follow its spans on the wire; name them once the whole message is read.
  const info = resourceInfo(attrs);
  for (let i = first; i < out.spans.length; i++) out.spans[i]!.serviceName = info.serviceName;
  if (out.spans.length > first || attrs.size > 0) {
    out.resources.push({ serviceName: info.serviceName, namespace: info.namespace, region: info.region, instanceId: info.instanceId, seenAtMs: receivedAtMs });
  }
}

function resourceAttributes(r: Reader): Map<string, unknown> {
  const attrs = new Map<string, unknown>();
  while (r.pos < r.end) {
    const tag = r.varint();
    if (tag >>> 3 === 1) {
      expect(r, tag, 2);
      const [s, e] = r.bytes();
      const [k, v] = keyValue(new Reader(r.buf, s, e));
      attrs.set(k, v);
    } else r.skip(tag & 7);
  }
  return attrs;
}

function scopeSpans(r: Reader, out: DecodedTraces): void {
  while (r.pos < r.end) {
    const tag = r.varint();
    if (tag >>> 3 === 2) {
      expect(r, tag, 2);
      const [s, e] = r.bytes();
      span(new Reader(r.buf, s, e), out);
    } else r.skip(tag & 7);
  }
}

function span(r: Reader, out: DecodedTraces): void {
  const buf = r.buf;
  let traceId: [number, number] | undefined;
  let spanId: [number, number] | undefined;
  let parent: [number, number] | undefined;
  let name = "";
  let kind = 0;
  let start: [number, number] = [0, 0];
  let end: [number, number] = [0, 0];
  let status = 0;
  let attrs = "{";
  let httpStatus: number | null = null;
  while (r.pos < r.end) {
    const tag = r.varint();
    switch (tag >>> 3) {
      case 1:
        expect(r, tag, 2);
        traceId = r.bytes();
        break;
      case 2:
        expect(r, tag, 2);
        spanId = r.bytes();
        break;
      case 4:
        expect(r, tag, 2);
        parent = r.bytes();
        break;
      case 5:
        expect(r, tag, 2);
        name = r.string();
        break;
      case 6:
        expect(r, tag, 0);
        kind = r.varint();
        break;
      case 7:
        expect(r, tag, 1);
        start = r.fixed64();
        break;
      case 8:
        expect(r, tag, 1);
        end = r.fixed64();
        break;
      case 9: {
        expect(r, tag, 2);
        const [s, e] = r.bytes();
        const [k, v] = keyValue(new Reader(buf, s, e));
        if ((k === "http.status_code" || k === "http.response.status_code") && v !== null && Number.isFinite(Number(v))) httpStatus = Number(v);
        if (attrs.length > 1) attrs += ",";
        attrs += JSON.stringify(k) + ":" + JSON.stringify(v === undefined ? null : v);
        break;
      }
      case 15: {
        expect(r, tag, 2);
        const [s, e] = r.bytes();
        const sr = new Reader(buf, s, e);
        while (sr.pos < sr.end) {
          const t = sr.varint();
          if (t >>> 3 === 3) {
            expect(sr, t, 0);
            status = sr.varint();
          } else sr.skip(t & 7);
        }
        break;
      }
      default:
        r.skip(tag & 7);
    }
  }
  if (!traceId || traceId[1] - traceId[0] !== 16 || !spanId || spanId[1] - spanId[0] !== 8 || isZero(buf, traceId) || isZero(buf, spanId)) {
    out.rejected++;
    out.rejectReason ??= "spans need a 16-byte trace_id and an 8-byte span_id, not all zero";
    return;
  }
  // Exact nanosecond arithmetic in two words; a span that ends before it starts lasts 0 ns.
  const durationNs = Math.max(0, (end[1] - start[1]) * TWO32 + (end[0] - start[0]));
  out.spans.push({
    traceId: buf.toString("hex", traceId[0], traceId[1]),
    spanId: buf.toString("hex", spanId[0], spanId[1]),
    parentSpanId: parent && parent[1] - parent[0] === 8 && !isZero(buf, parent) ? buf.toString("hex", parent[0], parent[1]) : null,
    serviceName: "",
    name,
    kind: KINDS[kind] ?? "INTERNAL",
    startTimeMs: start[1] * (TWO32 / 1e6) + start[0] / 1e6,
    durationNs,
    statusCode: STATUS[status] ?? "UNSET",
    httpStatusCode: httpStatus,
    attributes: attrs + "}",
  });
}

function isZero(buf: Buffer, [s, e]: [number, number]): boolean {
  for (let i = s; i < e; i++) if (buf[i] !== 0) return false;
  return true;
}

type Json = string | number | boolean | null | Json[] | { [k: string]: Json };

function keyValue(r: Reader): [string, Json] {
  let key = "";
  let value: Json = null;
  while (r.pos < r.end) {
    const tag = r.varint();
    const field = tag >>> 3;
    if (field === 1) {
      expect(r, tag, 2);
      key = r.string();
    } else if (field === 2) {
      expect(r, tag, 2);
      const [s, e] = r.bytes();
      value = anyValue(new Reader(r.buf, s, e));
    } else r.skip(tag & 7);
  }
  return [key, value];
}

function anyValue(r: Reader): Json {
  let value: Json = null;
  while (r.pos < r.end) {
    const tag = r.varint();
    switch (tag >>> 3) {
      case 1:
        expect(r, tag, 2);
        value = r.string();
        break;
      case 2:
        expect(r, tag, 0);
        value = r.varint() !== 0;
        break;
      case 3:
        expect(r, tag, 0);
        value = r.int64();
        break;
      case 4:
        expect(r, tag, 1);
        value = r.double();
        if (!Number.isFinite(value)) value = String(value);
        break;
      case 5: {
        expect(r, tag, 2);
        const [s, e] = r.bytes();
        const ar = new Reader(r.buf, s, e);
        const list: Json[] = [];
        while (ar.pos < ar.end) {
          const t = ar.varint();
          if (t >>> 3 === 1) {
            expect(ar, t, 2);
            const [s2, e2] = ar.bytes();
            list.push(anyValue(new Reader(r.buf, s2, e2)));
          } else ar.skip(t & 7);
        }
        value = list;
        break;
      }
      case 6: {
        expect(r, tag, 2);
        const [s, e] = r.bytes();
        const kr = new Reader(r.buf, s, e);
        const obj: { [k: string]: Json } = {};
        while (kr.pos < kr.end) {
          const t = kr.varint();
          if (t >>> 3 === 1) {
            expect(kr, t, 2);
            const [s2, e2] = kr.bytes();
            const [k, v] = keyValue(new Reader(r.buf, s2, e2));
            obj[k] = v;
          } else kr.skip(t & 7);
        }
        value = obj;
        break;
      }
      case 7: {
        expect(r, tag, 2);
        const [s, e] = r.bytes();
        value = r.buf.toString("base64", s, e);
        break;
      }
      default:
        r.skip(tag & 7);
    }
  }
  return value;
}
