/**
 * Passes a Deno child's stderr through live, except for the out-of-memory report.
 *
 * When the script runs out of memory, V8 prints a GC trace and a C stack trace ("<--- Last few
 * GCs --->", "# Fatal JavaScript out of memory", "==== C stack trace") or Deno prints an uncaught
 * "RangeError: Array buffer allocation failed" with the script's stack. Neither tells a user what
 * happened, so from the first line that looks like the start of such a report we hold output back;
 * when the process has exited the caller asks `finish()` whether it was a memory death (then the
 * held text is dropped for one clear line) or not (then the held text is written out unchanged).
 */
export class StderrFilter {
  private partial = "";
  private pendingBlank = "";
  private held: string[] = [];
  private heldBytes = 0;
  private holding = false;
  private oomSeen = false;

  /** `plain`: drop colour codes (Deno colours its errors even on a pipe; a log file wants none). */
  constructor(
    private readonly out: NodeJS.WritableStream,
    private readonly o: { plain?: boolean } = {},
  ) {}

  write(chunk: Buffer | string): void {
    const text = this.partial + chunk.toString();
    const lines = text.split("\n");
    this.partial = lines.pop()!;
    for (const line of lines) this.line(line + "\n");
    // A partial line is shown at once unless it could be the beginning of a report; holding every
    // partial line would delay progress output that scripts write without a newline.
    if (this.partial && !this.holding && !couldStartReport(this.partial) && !(this.o.plain && ESCAPE_CUT.test(this.partial))) {
      this.emit(this.partial);
      this.partial = "";
    }
  }

  /** Call once the child has exited. Returns whether its stderr reported an out-of-memory death. */
  finish(exitedWithFailure: boolean): boolean {
    if (this.partial) this.line(this.partial);
    this.partial = "";
    const oom = this.oomSeen && exitedWithFailure;
    if (!oom) {
      if (this.pendingBlank) this.put(this.pendingBlank);
      for (const l of this.held) this.put(l);
    }
    this.held = [];
    this.pendingBlank = "";
    return oom;
  }

  private line(line: string): void {
    const plain = stripAnsi(line);
    if (OOM_TEXT.test(plain)) this.oomSeen = true;
    if (!this.holding && STARTS_REPORT.test(plain)) this.holding = true;
    if (this.holding) {
      this.hold(line);
      return;
    }
    // V8 opens its report with blank lines; keep them back until we know what follows.
    if (plain.trim() === "") {
      this.pendingBlank += line;
      return;
    }
    this.emit(line);
  }

  private emit(text: string): void {
    if (this.pendingBlank) {
      this.put(this.pendingBlank);
      this.pendingBlank = "";
    }
    this.put(text);
  }

  private put(text: string): void {
    this.out.write(this.o.plain ? stripAnsi(text) : text);
  }

  private hold(line: string): void {
    this.held.push(line);
    this.heldBytes += line.length;
    if (!this.oomSeen && (this.held.length > HOLD_LINES || this.heldBytes > HOLD_BYTES)) {
      // V8 names the cause within its first dozen lines; this was a script's own output after all.
      this.holding = false;
      const held = this.held;
      this.held = [];
      this.heldBytes = 0;
      for (const l of held) this.emit(l);
      return;
    }
    // Past recognition, the rest of a V8 dump is noise we will not print; keep memory flat.
    while (this.oomSeen && this.heldBytes > HOLD_BYTES && this.held.length > 1) {
      this.heldBytes -= this.held.shift()!.length;
    }
  }
}

const HOLD_LINES = 16;
const HOLD_BYTES = 64 * 1024;

/** First lines of the reports V8 and Deno print when memory runs out. */
const STARTS_REPORT =
  /^(<--- Last few GCs --->|#\s*$|# Fatal |error: Uncaught .*RangeError: Array buffer allocation failed)/;

/** Text that settles it: this was a memory death (the exit status is checked too). */
const OOM_TEXT =
  /Fatal (JavaScript|process) out of memory|RangeError: Array buffer allocation failed|JavaScript heap out of memory/;

/** A chunk that ends inside a colour code: wait for the rest before stripping it. */
// eslint-disable-next-line no-control-regex
const ESCAPE_CUT = /\x1b(\[[0-9;]*)?$/;

function couldStartReport(partial: string): boolean {
  const plain = stripAnsi(partial);
  return ["<--- Last few GCs --->", "#", "error: Uncaught"].some(
    (marker) => marker.startsWith(plain) || plain.startsWith(marker),
  );
}

function stripAnsi(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/\x1b\[[0-9;]*m/g, "");
}
