// Headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON
// messages ending in a NUL byte, written to the browser's fd 3 and read from its fd 4). Enough to
// open a page, wait until it has rendered, read its DOM and take a screenshot, without a browser
// automation package. The browser is Debian's `chromium` package.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable, Writable } from "node:stream";

/** The Chromium binary: $CHROMIUM, or `chromium` on the PATH; a clear error (how to install it) when there is none. */
export function chromiumPath(): string {
  for (const candidate of [process.env.CHROMIUM, "chromium", "chromium-browser"]) {
    if (!candidate) continue;
    try {
      return execFileSync("/bin/sh", ["-c", 'command -v "$1"', "sh", candidate], { encoding: "utf8" }).trim();
    } catch {
      // Not this one; try the next.
    }
  }
  throw new Error("headless Chromium is not installed, and this test needs it: run `apt-get install chromium` (Debian), or set CHROMIUM to a Chromium binary");
}

interface Message {
  id?: number;
  method?: string;
  sessionId?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { message: string };
}

/** Waits this long for any one answer; a browser that hangs fails the test instead of stalling it. */
const COMMAND_TIMEOUT_MS = 30_000;

export class Browser {
  private nextId = 1;
  private pending = new Map<number, { resolve: (m: Message) => void; reject: (e: Error) => void; method: string }>();
  private listeners = new Set<(m: Message) => void>();
  private buffered = "";

  private constructor(
    private readonly proc: ChildProcess,
    private readonly profile: string,
  ) {
    const input = proc.stdio[4] as Readable;
    input.setEncoding("utf8");
    input.on("data", (chunk: string) => {
      this.buffered += chunk;
      let end: number;
      while ((end = this.buffered.indexOf("\0")) >= 0) {
        const message = JSON.parse(this.buffered.slice(0, end)) as Message;
        this.buffered = this.buffered.slice(end + 1);
        this.dispatch(message);
      }
    });
    proc.on("exit", () => {
      for (const p of this.pending.values()) p.reject(new Error(`Chromium exited while answering ${p.method}`));
      this.pending.clear();
    });
  }

  static async launch(binary: string, o: { width?: number; height?: number } = {}): Promise<Browser> {
    const profile = mkdtempSync(join(tmpdir(), "coral-chromium-"));
    const args = [
      "--headless",
      "--remote-debugging-pipe",
      `--user-data-dir=${profile}`,
      "--no-first-run",
      "--no-default-browser-check",
      "--disable-gpu",
      "--hide-scrollbars",
      "--mute-audio",
      `--window-size=${o.width ?? 1280},${o.height ?? 1000}`,
      // Chromium refuses to start as root with its sandbox on (CI machines and containers run as root).
      ...(process.getuid?.() === 0 ? ["--no-sandbox"] : []),
      "about:blank",
    ];
    const proc = spawn(binary, args, { stdio: ["ignore", "ignore", "pipe", "pipe", "pipe"] });
    let stderr = "";
    proc.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr = (stderr + d).slice(-4000)));
    const browser = new Browser(proc, profile);
    await Promise.race([
      browser.send("Browser.getVersion"),
      new Promise((_, reject) => proc.once("exit", (code) => reject(new Error(`Chromium exited with code ${code}:\n${stderr}`)))),
    ]);
    return browser;
  }

  private dispatch(m: Message): void {
    if (m.id !== undefined) {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (m.error) p?.reject(new Error(`${p.method}: ${m.error.message}`));
      else p?.resolve(m);
      return;
    }
    for (const l of this.listeners) l(m);
  }

  send(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<Record<string, any>> {
    const id = this.nextId++;
    const done = new Promise<Message>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`Chromium did not answer ${method} within ${COMMAND_TIMEOUT_MS / 1000} s`));
      }, COMMAND_TIMEOUT_MS);
      this.pending.set(id, {
        method,
        resolve: (m) => (clearTimeout(timer), resolve(m)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
    });
    (this.proc.stdio[3] as Writable).write(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }) + "\0");
    return done.then((m) => m.result ?? {});
  }

  /** Resolves with the first event of this name (and session) for which `match` holds. */
  waitFor(method: string, sessionId: string, match: (params: any) => boolean = () => true): Promise<any> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.listeners.delete(listener);
        reject(new Error(`no ${method} within ${COMMAND_TIMEOUT_MS / 1000} s`));
      }, COMMAND_TIMEOUT_MS);
      const listener = (m: Message) => {
        if (m.method !== method || m.sessionId !== sessionId || !match(m.params)) return;
        clearTimeout(timer);
        this.listeners.delete(listener);
        resolve(m.params);
      };
      this.listeners.add(listener);
    });
  }

  on(listener: (m: Message) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** A new tab. */
  async newPage(): Promise<Page> {
    const { targetId } = await this.send("Target.createTarget", { url: "about:blank" });
    const { sessionId } = await this.send("Target.attachToTarget", { targetId, flatten: true });
    const page = new Page(this, sessionId as string);
    await page.send("Page.enable");
    await page.send("Runtime.enable");
    return page;
  }

  async close(): Promise<void> {
    const exited = new Promise((resolve) => (this.proc.exitCode !== null ? resolve(null) : this.proc.once("exit", resolve)));
    await this.send("Browser.close").catch(() => this.proc.kill("SIGKILL"));
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
    rmSync(this.profile, { recursive: true, force: true });
  }
}

export class Page {
  /** Uncaught exceptions and console errors of the page, as text. */
  readonly errors: string[] = [];

  constructor(
    private readonly browser: Browser,
    private readonly sessionId: string,
  ) {
    browser.on((m) => {
      if (m.sessionId !== sessionId) return;
      if (m.method === "Runtime.exceptionThrown") {
        const d = (m.params as any).exceptionDetails;
        this.errors.push(d.exception?.description ?? d.text);
      } else if (m.method === "Runtime.consoleAPICalled" && (m.params as any).type === "error") {
        this.errors.push((m.params as any).args.map((a: any) => a.value ?? a.description).join(" "));
      }
    });
  }

  send(method: string, params: Record<string, unknown> = {}): Promise<Record<string, any>> {
    return this.browser.send(method, params, this.sessionId);
  }

  /** Opens `url` and waits for its load event. */
  async goto(url: string): Promise<void> {
    const loaded = this.browser.waitFor("Page.loadEventFired", this.sessionId);
    const { errorText } = await this.send("Page.navigate", { url });
    if (errorText) throw new Error(`${url}: ${errorText}`);
    await loaded;
  }

  /** The value of a JavaScript expression in the page (promises awaited). */
  async evaluate<T>(expression: string): Promise<T> {
    const r = await this.send("Runtime.evaluate", { expression, awaitPromise: true, returnByValue: true });
    if (r.exceptionDetails) throw new Error(`in the page: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
    return r.result.value as T;
  }

  /** A PNG of the whole page, not only the window. */
  async screenshot(): Promise<Buffer> {
    const { cssContentSize } = await this.send("Page.getLayoutMetrics");
    const clip = { x: 0, y: 0, width: Math.ceil(cssContentSize.width), height: Math.ceil(cssContentSize.height), scale: 1 };
    const { data } = await this.send("Page.captureScreenshot", { format: "png", clip, captureBeyondViewport: true });
    return Buffer.from(data as string, "base64");
  }
}
