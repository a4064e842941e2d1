import { StringDecoder } from "node:string_decoder";
import { SCRIPT_ENV } from "./sandbox.js";

/**
 * Passes a Deno child's stderr through live, except for the out-of-memory report and Deno's
 * permission hints.
 *
 * When the script runs out of memory, V8 prints a GC trace and a C stack trace ("<--- Last few
 * GCs --->", "# Fatal JavaScript out of memory", "==== C stack trace") or Deno prints an uncaught
 * "RangeError: Array buffer allocation failed" with the script's stack. Neither tells a user what
 * happened, so from the first line that looks like the start of such a report we hold output back;
 * when the process has exited the caller asks `finish()` whether it was a memory death (then the
 * held text is dropped for one clear line) or not (then the held text is written out unchanged).
 *
 * Deno ends a permission error with "run again with the --allow-net flag", naming flags `coral run`
 * does not have; each such hint is replaced with what `coral run` does offer (rewriteHints).
 *
 * Memory and time stay linear in the output: a line is held back whole only up to HOLD_BYTES;
 * beyond that it cannot be a V8 report and is passed on in pieces.
 */
export class StderrFilter {
  private readonly decoder = new StringDecoder("utf8");
  private partial = "";
  private atLineStart = true;
  private flowing = true;
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

  /**
   * Takes the next chunk. Returns false when `out` asked us to wait: the caller should pause the
   * source until `out` emits "drain", or everything written would pile up in our memory.
   */
  write(chunk: Buffer | string): boolean {
    this.flowing = true;
    const text = this.partial + (typeof chunk === "string" ? chunk : this.decoder.write(chunk));
    const lines = text.split("\n");
    this.partial = lines.pop()!;
    for (const line of lines) this.line(line + "\n");
    if (this.partial.length > HOLD_BYTES) {
      // Text without a newline this long is no report: pass it on rather than grow with it.
      this.line(this.partial);
      this.partial = "";
    }
    // A partial line is shown at once unless it could be the beginning of a report; holding every
    // partial line would delay progress output that scripts write without a newline.
    if (this.partial && !this.holding && !couldStartReport(this.partial) && !(this.o.plain && ESCAPE_CUT.test(this.partial))) {
      this.emit(this.partial);
      this.partial = "";
    }
    return this.flowing;
  }

  /** Call once the child has exited. Returns whether its stderr reported an out-of-memory death. */
  finish(exitedWithFailure: boolean): boolean {
    this.partial += this.decoder.end();
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
    if (plain.trim() === "" && this.pendingBlank.length + line.length <= HOLD_BYTES) {
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
    const shown = rewriteHints(this.o.plain ? stripAnsi(text) : text);
    if (shown) this.atLineStart = shown.endsWith("\n");
    if (!this.out.write(shown)) this.flowing = false;
  }

  /**
   * One line of coral run's own (a timeout, a budget report), after everything the script wrote:
   * on a line of its own even when the script's last line had no newline, and, on a terminal, with
   * the script's text attributes reset, so a hide-text escape cannot make it invisible.
   */
  ownLine(text: string): void {
    const fresh = this.atLineStart ? "" : "\n";
    this.atLineStart = true;
    // Prefixed like every line coral writes of its own, so it cannot pass for the script's.
    const own = text.startsWith("coral") ? text : `coral: ${text}`;
    this.out.write(`${fresh}${this.o.plain ? "" : "\x1b[0m"}${own}\n`);
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

/** What `coral run` offers instead of each Deno permission flag. */
const HINTS: Record<string, string> = {
  read: "coral run --allow-read DIR grants one directory",
  net: "scripts cannot open connections; use the @coral/sdk functions",
  import: "scripts cannot load remote code; import @coral/sdk and local modules",
  env: `scripts can read only ${SCRIPT_ENV.join(" and ")}`,
};

const DENO_HINT = /run again with the --allow-([a-z-]+) flag/g;

/** Deno's error when the Cache API cannot make its directory, which closeStorage (sandbox.ts) sees to. */
const NO_CACHE_DIR = /Failed to create cache storage directory \S+/g;

/**
 * Replaces Deno's "run again with the --allow-X flag" with what `coral run` offers, and the Cache
 * API's failure (which names a path in the run's temp directory) with its reason.
 */
export function rewriteHints(text: string): string {
  if (text.includes("--allow-")) {
    text = text.replace(DENO_HINT, (_, flag: string) => HINTS[flag] ?? `${flag} access is not available to scripts`);
  }
  if (text.includes("cache storage")) {
    text = text.replace(NO_CACHE_DIR, "the Cache API is not available to scripts (they cannot write to disk)");
  }
  return text;
}

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
