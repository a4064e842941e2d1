import { existsSync, realpathSync, watch, type FSWatcher } from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";
import { abortedCode, EXIT, runOnce, type RunOptions } from "./launcher.js";

/** Editors save in bursts (write, rename, chmod); one restart per burst is enough. */
const DEBOUNCE_MS = 120;

/**
 * Runs the script, and again whenever it or a local module it imports changes, until `signal`
 * aborts. Each run gets the timeout on its own; a change during a run stops that run (SIGTERM,
 * then SIGKILL) and starts the next. Once `signal` aborts, the current run is stopped the same way
 * and the session resolves to 128+N for the signal that aborted it (abortedCode), else 130.
 */
export async function watchScript(o: RunOptions, signal?: AbortSignal): Promise<number> {
  const stderr = o.stderr ?? process.stderr;
  if (o.script === "-") {
    stderr.write("coral: --watch needs a script file; a script read from stdin cannot change\n");
    return 2;
  }
  const script = resolve(o.script);
  if (!existsSync(script)) {
    stderr.write(`coral: script not found: ${o.script}\n`);
    return EXIT.refused;
  }
  const root = dirname(realpathSync(script));
  const watcher = new ChangeWatcher();
  watcher.setFiles([realpathSync(script)]);

  return new Promise<number>((resolveSession, rejectSession) => {
    let current: AbortController | undefined;
    let restartFor: string | undefined;
    let finished = false;

    const finish = () => {
      if (finished) return;
      finished = true;
      watcher.close();
      resolveSession(abortedCode(signal));
    };
    const start = () => {
      const run = new AbortController();
      current = run;
      runOnce(o, run.signal).then(
        (outcome) => {
          current = undefined;
          // The graph check may have found new imports (or lost some); follow them. The script
          // itself stays watched even when its graph was refused, so fixing it restarts the run.
          watcher.setFiles([realpathSync(script), ...outcome.localFiles]);
          if (signal?.aborted) return finish();
          if (restartFor !== undefined) {
            const file = restartFor;
            restartFor = undefined;
            stderr.write(`${relative(root, file) || basename(file)} changed; restarting\n`);
            start();
          } else {
            stderr.write(`exited with ${outcome.code}; watching for changes (Ctrl-C to stop)\n`);
          }
        },
        (e) => {
          finished = true;
          watcher.close();
          rejectSession(e);
        },
      );
    };

    watcher.onChange = (file) => {
      if (finished) return;
      if (current) {
        restartFor = file;
        current.abort();
      } else {
        stderr.write(`${relative(root, file) || basename(file)} changed; restarting\n`);
        start();
      }
    };
    const onAbort = () => {
      if (current) current.abort();
      else finish();
    };
    if (signal?.aborted) return finish();
    signal?.addEventListener("abort", onAbort, { once: true });
    start();
  });
}

/**
 * Watches a set of files through their directories: editors often replace a file by renaming a
 * new one over it, which ends a watch on the file itself but shows up as an event in its directory.
 */
class ChangeWatcher {
  onChange: (file: string) => void = () => {};
  private readonly dirs = new Map<string, { watcher: FSWatcher; names: Set<string> }>();
  private timer: NodeJS.Timeout | undefined;

  setFiles(files: string[]): void {
    const wanted = new Map<string, Set<string>>();
    for (const f of files) {
      const dir = dirname(f);
      if (!wanted.has(dir)) wanted.set(dir, new Set());
      wanted.get(dir)!.add(basename(f));
    }
    for (const [dir, entry] of this.dirs) {
      if (!wanted.has(dir)) {
        entry.watcher.close();
        this.dirs.delete(dir);
      }
    }
    for (const [dir, names] of wanted) {
      const existing = this.dirs.get(dir);
      if (existing) {
        existing.names = names;
        continue;
      }
      try {
        const watcher = watch(dir, (_event, name) => this.event(dir, name));
        watcher.on("error", () => {}); // A directory deleted under us just stops reporting.
        this.dirs.set(dir, { watcher, names });
      } catch {
        // The directory vanished between the run and now; the next run will report the error.
      }
    }
  }

  close(): void {
    clearTimeout(this.timer);
    for (const entry of this.dirs.values()) entry.watcher.close();
    this.dirs.clear();
  }

  private event(dir: string, name: string | Buffer | null): void {
    const entry = this.dirs.get(dir);
    if (name === null || !entry?.names.has(name.toString())) return;
    const file = join(dir, name.toString());
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.onChange(file), DEBOUNCE_MS);
  }
}
