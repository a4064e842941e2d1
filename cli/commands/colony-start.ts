import { Command, Option } from "clipanion";
import { ColonyStartError, parseListen, startColony } from "../../colony/colony.js";
import { CoralCommand } from "../runtime/command.js";
import { CliError, UsageError } from "../runtime/errors.js";
import { ExitCode } from "../runtime/exit.js";

export class ColonyStartCommand extends CoralCommand {
  static override paths = [["colony", "start"]];

  static override usage = Command.Usage({
    category: "Colony",
    description: "run a colony: store telemetry in DuckDB and serve the query API",
    details: `
      Opens (or creates) the DuckDB database file and serves QueryService on one port, speaking
      Connect, gRPC and gRPC-web over HTTP/1.1 and HTTP/2 alike.

      When ready it prints one line to stdout, \`colony listening on HOST:PORT (db FILE)\`; everything
      else goes to stderr. Ctrl-C (SIGINT) or SIGTERM stops it cleanly and checkpoints the database.

      \`--demo\` fills an empty database with realistic, deterministic telemetry (payments, orders,
      inventory, ...) so every \`coral query\` command has something to show. A database that already
      holds data is kept as it is.

      Listening beyond loopback (e.g. \`0.0.0.0\`) requires \`--token\`: clients must then send
      \`authorization: Bearer TOKEN\`, on every protocol. \`CORAL_TOKEN\` supplies the default.
    `,
    examples: [
      ["Try Coral on demo data", "$0 colony start --demo"],
      ["Keep the data somewhere specific, on another port", "$0 colony start --db /var/lib/coral/coral.duckdb --listen 127.0.0.1:9191"],
      ["Serve the network, with a token", "CORAL_TOKEN=$(openssl rand -hex 16) $0 colony start --listen 0.0.0.0:9090"],
    ],
  });

  db = Option.String("--db", "./coral.duckdb", {
    description: "DuckDB database file (created if missing)",
  });
  listen = Option.String("--listen", "127.0.0.1:9090", {
    description: "HOST:PORT for the query API (port 0 picks a free port)",
  });
  token = Option.String("--token", {
    description: "bearer token clients must send (default: $CORAL_TOKEN; required beyond loopback)",
  });
  demo = Option.Boolean("--demo", false, {
    description: "seed realistic demo telemetry into an empty database",
  });

  async run(): Promise<number> {
    try {
      parseListen(this.listen);
    } catch (err) {
      throw new UsageError(`--listen: ${(err as Error).message}`);
    }
    const token = this.token ?? process.env.CORAL_TOKEN;
    const { stdout, stderr } = this.context;

    // Listen for signals before starting: a Ctrl-C during a long demo seed must still end cleanly.
    let onSignal: ((signal: NodeJS.Signals) => void) | undefined;
    let stopRequested = false;
    const stopped = new Promise<void>((resolve) => {
      onSignal = (signal) => {
        if (stopRequested) {
          // A second Ctrl-C means "now": the user has stopped waiting for a clean shutdown.
          stderr.write("coral: stopping without a clean shutdown\n");
          process.exit(signal === "SIGINT" ? 130 : 143);
        }
        stopRequested = true;
        resolve();
      };
    });
    process.on("SIGINT", onSignal!);
    process.on("SIGTERM", onSignal!);

    try {
      let colony;
      try {
        colony = await startColony({
          db: this.db,
          listen: this.listen,
          token,
          demo: this.demo,
          log: (line) => stderr.write(`${line}\n`),
        });
      } catch (err) {
        if (err instanceof ColonyStartError) throw new CliError(err.message);
        throw err;
      }
      stdout.write(`colony listening on ${colony.address} (db ${this.db})\n`);
      await stopped;
      stderr.write("stopping colony\n");
      await colony.close();
      return ExitCode.ok;
    } finally {
      process.off("SIGINT", onSignal!);
      process.off("SIGTERM", onSignal!);
    }
  }
}
