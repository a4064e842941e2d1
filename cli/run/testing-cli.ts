// Test helper, run with tsx by launcher.test.ts: executes RunCommand for each case given as JSON in
// argv[2] and prints what each produced. Vitest cannot load clipanion in-process (Node's ESM
// resolver rejects its extensionless internal imports), so the command is exercised from here.
import { Cli } from "clipanion";
import { PassThrough } from "node:stream";
import { RunCommand } from "../commands/run.js";

interface Case {
  args: string[];
  env?: Record<string, string>;
  /** Report the launcher options the command line maps to instead of running it. */
  options?: boolean;
}

const results: unknown[] = [];
for (const c of JSON.parse(process.argv[2]) as Case[]) {
  Object.assign(process.env, c.env ?? {});
  const cli = new Cli({ binaryName: "coral" });
  cli.register(RunCommand);
  let stderr = "";
  const err = new PassThrough();
  err.on("data", (d: Buffer) => (stderr += d.toString()));
  if (c.options) {
    const { stdout: _o, stderr: _e, stdin: _i, ...options } = (cli.process(c.args) as RunCommand).options();
    results.push({ stderr, options });
  } else {
    const code = await cli.run(c.args, { stdout: new PassThrough(), stderr: err, stdin: new PassThrough() });
    results.push({ code, stderr });
  }
  for (const k of Object.keys(c.env ?? {})) delete process.env[k];
}
process.stdout.write(JSON.stringify(results));
