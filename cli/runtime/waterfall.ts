// The waterfall layout (`Cli.layout: LAYOUT_WATERFALL`): the spans of one trace as a tree, one line
// each, with a bar on the trace's time line. Stored traces can be partial or corrupt (a parent never
// received, parent links that loop, repeated span ids), so the tree is built without trusting the
// links and walked without recursion: every span is drawn exactly once, whatever its links say.
// Below the tree, the attributes that say where and why (route, status, pod, release, …) of the
// spans that matter most: those on the critical path and those that failed.
import type { Plain } from "../../surface/plain.js";
import { formatDurationNs } from "../../surface/units.js";
import { humanCell } from "./render.js";

type Row = Record<string, Plain>;

interface Span {
  id: string;
  parent: string;
  service: string;
  name: string;
  start: number;
  end: number;
  error: boolean;
  /** Span attributes, then resource attributes the span does not override, as text. */
  attributes: [string, string][];
}

export interface WaterfallView {
  /** The line width to fit; the label column gives way (names are cut with "…"). */
  width: number;
  /** Span ids, names whole, a wider time line; `width` is ignored. */
  wide: boolean;
  /** The whole trace's duration, when known: bars are scaled to it rather than to the spans shown. */
  traceDurationNs?: number;
  /** Named in the title line. */
  traceId?: string;
}

/** One line of the tree: a span, how deep it sits, and why it is a root if it is one. */
interface Line {
  span: number;
  depth: number;
  /** Drawn at the top although it has a parent id: the parent is not in the trace, or the links loop. */
  detached: boolean;
}

const DURATION_WIDTH = 8;
const BAR_WIDTH = { table: 32, wide: 60 };
/** Beyond this depth the indent stops growing and the depth is written out, so names stay readable. */
const MAX_INDENT_DEPTH = { table: 8, wide: 24 };
const MIN_LABEL_WIDTH = 12;

const CRITICAL = "█";
const OTHER = "░";

function num(v: Plain | undefined): number {
  const n = typeof v === "number" ? v : Number(v);
  return Number.isFinite(n) ? n : 0;
}

function toSpan(r: Row): Span {
  const start = num(r.start_offset_ns);
  return {
    id: String(r.span_id ?? ""),
    parent: String(r.parent_span_id ?? ""),
    service: String(r.service ?? ""),
    name: String(r.name ?? ""),
    start,
    end: start + Math.max(0, num(r.duration_ns)),
    error: r.error === true,
    attributes: attributesOf(r),
  };
}

function attributesOf(r: Row): [string, string][] {
  const out = new Map<string, string>();
  for (const field of [r.attributes, r.resource_attributes]) {
    if (field === null || typeof field !== "object" || Array.isArray(field) || field instanceof Date) continue;
    for (const [k, v] of Object.entries(field)) if (!out.has(k) && v !== null) out.set(k, typeof v === "string" ? v : JSON.stringify(v));
  }
  return [...out];
}

/**
 * Attributes that most often answer "where and why", shown first in this order (OpenTelemetry
 * semantic conventions); the rest follow by name.
 */
const FIRST_ATTRIBUTES = [
  "http.route", "http.status_code", "http.response.status_code", "rpc.grpc.status_code", "error.type", "exception.type", "exception.message",
  "k8s.pod.name", "service.version", "deployment.environment", "cloud.region", "peer.service", "server.address", "db.system", "db.operation",
  "messaging.system",
];
/** Said by the span's line already (service, and the method in its name). */
const SHOWN_ELSEWHERE = new Set(["service.name", "http.method", "http.request.method"]);
/** Spans whose attributes are listed in a terminal (critical path and failed), and lines per span. */
const MAX_DETAILED_SPANS = 6;
const MAX_ATTRIBUTE_LINES = 2;
const MAX_VALUE_CHARS = 48;
/** "  +N more" for up to 99,999 pairs. */
const MORE_WIDTH = 14;

function ordered(attributes: [string, string][]): [string, string][] {
  const rank = (k: string) => {
    const i = FIRST_ATTRIBUTES.indexOf(k);
    return i < 0 ? FIRST_ATTRIBUTES.length : i;
  };
  return attributes
    .filter(([k]) => !SHOWN_ELSEWHERE.has(k))
    .sort(([a], [b]) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * `key=value` pairs filled into lines of `width` after an indent; in a terminal, at most
 * MAX_ATTRIBUTE_LINES of them, values cut, and how many pairs did not fit.
 */
function attributeLines(attributes: [string, string][], width: number, wide: boolean): string[] {
  const indent = "     ";
  const pairs = ordered(attributes).map(([k, v]) => `${humanCell(k)}=${wide ? humanCell(v) : cut(humanCell(v), MAX_VALUE_CHARS)}`);
  if (wide) return pairs.length ? [indent + pairs.join("  ")] : [];
  const lines: string[] = [];
  let k = 0;
  for (; k < pairs.length; k++) {
    // The last line keeps room to say how many pairs did not fit, unless this pair is the last.
    const room = (n: number) => (n === MAX_ATTRIBUTE_LINES - 1 && k < pairs.length - 1 ? width - MORE_WIDTH : width);
    const last = lines.length - 1;
    if (last >= 0 && lines[last]!.length + 2 + pairs[k]!.length <= room(last)) lines[last] += `  ${pairs[k]}`;
    else if (lines.length < MAX_ATTRIBUTE_LINES) lines.push(indent + cut(pairs[k]!, room(lines.length) - indent.length));
    else break;
  }
  if (k < pairs.length) lines[lines.length - 1] += `  +${pairs.length - k} more`;
  return lines;
}

const byStart = (spans: Span[]) => (a: number, b: number) => spans[a]!.start - spans[b]!.start || spans[b]!.end - spans[a]!.end || a - b;

/**
 * The tree in drawing order (depth first, children by start time). A span whose parent id names no
 * span of the trace is a root; spans whose links loop are reached from none, and the earliest of
 * them is then made a root, until every span is placed.
 */
export function treeOf(spans: Span[]): { lines: Line[]; children: number[][]; roots: number[]; index: Map<string, number> } {
  const index = new Map<string, number>();
  spans.forEach((s, i) => {
    if (!index.has(s.id)) index.set(s.id, i);
  });
  const children: number[][] = spans.map(() => []);
  const roots: number[] = [];
  const detached = new Set<number>();
  spans.forEach((s, i) => {
    const p = s.parent === "" ? undefined : index.get(s.parent);
    if (p === undefined || p === i) {
      roots.push(i);
      if (s.parent !== "" && p === undefined) detached.add(i);
    } else {
      children[p]!.push(i);
    }
  });
  const order = byStart(spans);
  for (const c of children) c.sort(order);
  roots.sort(order);

  const lines: Line[] = [];
  const placed = new Array<boolean>(spans.length).fill(false);
  const walk = (root: number) => {
    const stack: { span: number; depth: number }[] = [{ span: root, depth: 0 }];
    while (stack.length) {
      const { span, depth } = stack.pop()!;
      if (placed[span]) continue;
      placed[span] = true;
      lines.push({ span, depth, detached: detached.has(span) });
      const c = children[span]!;
      for (let k = c.length - 1; k >= 0; k--) if (!placed[c[k]!]) stack.push({ span: c[k]!, depth: depth + 1 });
    }
  };
  for (const r of roots) walk(r);
  if (lines.length < spans.length) {
    for (const i of spans.map((_, i) => i).sort(order)) {
      if (placed[i]) continue;
      detached.add(i);
      roots.push(i);
      walk(i);
    }
  }
  return { lines, children, roots, index };
}

/**
 * The spans on the critical path below `root`: the span, then, going back from its end, the child
 * that finished last before that point, the path below it, and so on from that child's start —
 * the chain of work the trace's end waited for.
 */
export function criticalPath(spans: Span[], children: number[][], root: number): Set<number> {
  const on = new Set<number>();
  const stack: { span: number; until: number }[] = [{ span: root, until: spans[root]!.end }];
  while (stack.length) {
    const { span, until } = stack.pop()!;
    if (on.has(span)) continue;
    on.add(span);
    let cursor = Math.min(until, spans[span]!.end);
    const byEnd = [...children[span]!].sort((a, b) => spans[b]!.end - spans[a]!.end || a - b);
    for (const c of byEnd) {
      const s = spans[c]!;
      if (s.start >= cursor || on.has(c)) continue;
      stack.push({ span: c, until: cursor });
      cursor = s.start;
    }
  }
  return on;
}

function cut(s: string, n: number): string {
  return s.length <= n ? s : `${s.slice(0, Math.max(0, n - 1))}…`;
}

/** Cells `[from, to)` of a time line `width` cells wide for the interval [start, end] of `total`. */
function barCells(start: number, end: number, total: number, width: number): [number, number] {
  const from = Math.min(width - 1, Math.floor((start / total) * width));
  const to = Math.min(width, Math.max(from + 1, Math.ceil((end / total) * width)));
  return [from, to];
}

/** The trace as text: a header, one line per span, and a legend. */
export function formatWaterfall(rows: Row[], view: WaterfallView): string {
  const spans = rows.map(toSpan);
  if (spans.length === 0) return "";
  const { lines, children, roots, index } = treeOf(spans);
  // The trace's critical path starts at the root that ends last (a partial trace may have several).
  const main = roots.reduce((best, r) => (spans[r]!.end > spans[best]!.end ? r : best), roots[0]!);
  const critical = criticalPath(spans, children, main);

  const mode = view.wide ? "wide" : "table";
  const labels = lines.map((l) => {
    const s = spans[l.span]!;
    const p = l.depth === 0 ? undefined : index.get(s.parent);
    // The service is named where the trace enters it: at a root and wherever it differs from the parent's.
    const text = p !== undefined && spans[p]!.service === s.service ? s.name : `${s.service} ${s.name}`;
    const capped = Math.min(l.depth, MAX_INDENT_DEPTH[mode]);
    const deeper = l.depth > capped ? `(${l.depth}) ` : "";
    return `${"  ".repeat(capped)}${deeper}${l.detached ? "… " : ""}${humanCell(text)}`;
  });

  // Loops, not Math.max(...xs): a spread of 100,000 arguments overflows the stack.
  const widest = (xs: number[], floor: number) => xs.reduce((m, x) => (x > m ? x : m), floor);
  const total = widest(spans.map((s) => s.end), Math.max(view.traceDurationNs ?? 0, 1));
  // Narrow terminals shrink the time line too, not only the names.
  const bar = view.wide ? BAR_WIDTH.wide : Math.max(10, Math.min(BAR_WIDTH.table, Math.floor((view.width - 11) * 0.47)));
  const idWidth = view.wide ? widest(spans.map((s) => humanCell(s.id).length), 7) : 0;
  const fixed = 1 + (view.wide ? idWidth + 1 : 0) + 1 + DURATION_WIDTH + 1 + bar;
  const natural = widest(labels.map((l) => l.length), 4);
  const labelWidth = view.wide ? natural : Math.min(natural, Math.max(MIN_LABEL_WIDTH, view.width - fixed));

  const totalText = formatDurationNs(total);
  const scale = `0${totalText.padStart(bar - 1)}`;
  const services = new Set(spans.map((s) => s.service)).size;
  const failed = spans.filter((s) => s.error).length;
  const facts = [
    `${spans.length} span${spans.length === 1 ? "" : "s"}`,
    `${services} service${services === 1 ? "" : "s"}`,
    totalText,
    ...(failed ? [`${failed} failed`] : []),
  ].join(" · ");
  const title = view.traceId ? `${humanCell(view.traceId)}  ${facts}` : facts;
  const out: string[] = [cut(title, view.wide ? Infinity : view.width), ""];
  const row = (marker: string, id: string, label: string, duration: string, timeline: string) =>
    `${marker}${view.wide ? `${id.padEnd(idWidth)} ` : ""}${cut(label, labelWidth).padEnd(labelWidth)} ${duration.padStart(DURATION_WIDTH)} ${timeline}`.trimEnd();
  out.push(row(" ", "SPAN_ID", "SPAN", "DURATION", scale));
  for (let k = 0; k < lines.length; k++) {
    const i = lines[k]!.span;
    const s = spans[i]!;
    const [from, to] = barCells(s.start, s.end, total, bar);
    const timeline = " ".repeat(from) + (critical.has(i) ? CRITICAL : OTHER).repeat(to - from);
    out.push(row(s.error ? "!" : " ", humanCell(s.id), labels[k]!, formatDurationNs(s.end - s.start), timeline));
  }
  out.push(...details(spans, lines, children, critical, view));
  const legend = [`${CRITICAL} critical path`, `${OTHER} other spans`, "! failed"];
  if (lines.some((l) => l.detached)) legend.push("… parent missing");
  // The legend wraps rather than widen a narrow waterfall.
  const legendLines = [legend[0]!];
  for (const item of legend.slice(1)) {
    const last = legendLines.length - 1;
    if (view.wide || legendLines[last]!.length + 2 + item.length <= view.width) legendLines[last] += `  ${item}`;
    else legendLines.push(item);
  }
  out.push("", ...legendLines);
  return out.join("\n") + "\n";
}

/**
 * The attributes of the spans on the critical path and of the failed ones, in tree order: a line
 * naming the span, then its attributes. In a terminal, MAX_DETAILED_SPANS of them: the failed ones,
 * then those that spent the most time on their own (not waiting for a child) — where a slow
 * trace's time went; wide, every one with its span id.
 */
function details(spans: Span[], lines: Line[], children: number[][], critical: Set<number>, view: WaterfallView): string[] {
  const chosen = lines.map((l) => l.span).filter((i) => (critical.has(i) || spans[i]!.error) && spans[i]!.attributes.length > 0);
  if (chosen.length === 0) return [];
  let shown = chosen;
  if (!view.wide && chosen.length > MAX_DETAILED_SPANS) {
    const own = new Map(chosen.map((i) => [i, selfTime(spans, children[i]!, i)]));
    const kept = new Set(
      [...chosen].sort((a, b) => Number(spans[b]!.error) - Number(spans[a]!.error) || own.get(b)! - own.get(a)! || a - b).slice(0, MAX_DETAILED_SPANS),
    );
    shown = chosen.filter((i) => kept.has(i));
  }
  const heading = "ATTRIBUTES of the critical path and failed spans";
  const out = ["", view.wide ? heading : cut(heading, view.width)];
  for (const i of shown) {
    const s = spans[i]!;
    const label = `${s.error ? "!" : " "}${view.wide ? `${humanCell(s.id)} ` : ""}${humanCell(`${s.service} ${s.name}`)}  ${formatDurationNs(s.end - s.start)}`;
    out.push(view.wide ? label : cut(label, view.width), ...attributeLines(s.attributes, view.width, view.wide));
  }
  const rest = chosen.length - shown.length;
  if (rest > 0) out.push(cut(`… ${rest} more such span${rest === 1 ? "" : "s"}: --output wide lists them all`, view.width));
  return out;
}

/** A span's time not covered by any of its children. */
function selfTime(spans: Span[], kids: number[], i: number): number {
  const s = spans[i]!;
  const parts = kids.map((c) => [Math.max(s.start, spans[c]!.start), Math.min(s.end, spans[c]!.end)] as const).filter(([a, b]) => b > a);
  parts.sort((x, y) => x[0] - y[0]);
  let covered = 0;
  let reach = s.start;
  for (const [a, b] of parts) {
    if (b <= reach) continue;
    covered += b - Math.max(a, reach);
    reach = b;
  }
  return s.end - s.start - covered;
}
