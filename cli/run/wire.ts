// Framing of the script → `coral run` direction of the SDK channel: newline-delimited JSON, as
// Node's and Deno's IPC channels write it. The script is untrusted, so Node's own 'ipc' stdio is not
// used here: it buffers and parses lines of any length. This reader holds at most one line of
// MAX_LINE_BYTES plus one socket read, and hands out lines only while the consumer wants them;
// the caller stops reading the socket in between, so a flood waits in the kernel and the script.

/** The longest message a script may send: a request carries at most one SQL text. */
export const MAX_LINE_BYTES = 1024 * 1024;
/**
 * Deepest nesting a message may have. Requests are proto3 JSON of flat messages (a few levels);
 * a 10,000-deep one parsed fine but overflowed the stack of everything that walks it after
 * (JSON.stringify for the audit log took coral run down).
 */
export const MAX_DEPTH = 64;

/** How deeply the JSON text in `line` nests arrays and objects (brackets inside strings do not count). */
function nestingDepth(line: Buffer): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) max = depth;
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
  return max;
}

/** A message the script should never have sent; ends the run. */
export class ProtocolError extends Error {}

const NEWLINE = 0x0a;

export class LineReader {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(private readonly maxLine = MAX_LINE_BYTES) {}

  /** Adds bytes read from the socket; throws ProtocolError once an unfinished line is too long. */
  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    if (this.buffered > this.maxLine && !this.hasLine()) {
      throw new ProtocolError(`sent a message longer than ${this.maxLine} bytes`);
    }
  }

  private hasLine(): boolean {
    return this.chunks.some((c) => c.includes(NEWLINE));
  }

  /** The next complete line parsed as JSON, or undefined until more bytes arrive. */
  next(): unknown {
    let at = -1;
    let before = 0;
    for (const c of this.chunks) {
      at = c.indexOf(NEWLINE);
      if (at >= 0) break;
      before += c.length;
    }
    if (at < 0) return undefined;
    const whole = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const end = before + at;
    if (end > this.maxLine) throw new ProtocolError(`sent a message longer than ${this.maxLine} bytes`);
    const line = whole.subarray(0, end);
    const rest = whole.subarray(end + 1);
    this.chunks = rest.length ? [rest] : [];
    this.buffered = rest.length;
    if (nestingDepth(line) > MAX_DEPTH) throw new ProtocolError(`sent a message nested deeper than ${MAX_DEPTH} levels`);
    try {
      return JSON.parse(line.toString("utf8"));
    } catch {
      throw new ProtocolError("sent a message that is not JSON");
    }
  }

  /** Bytes received but not yet handed out. */
  get pending(): number {
    return this.buffered;
  }
}

/** One line for the script: its JSON and the newline. */
export function frame(message: unknown): string {
  return `${JSON.stringify(message)}\n`;
}
