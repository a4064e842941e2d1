import { isIP } from "node:net";
import { QueryService } from "../gen/coral/colony/v1/query_pb.js";
import { seedDemo } from "./demo/demo.js";
import { Writer } from "./ingest/writer.js";
import { queryServiceImpl } from "./query/service.js";
import { assertExposureAllowed, formatAddress } from "./server/auth.js";
import { ColonyStartError } from "./server/errors.js";
import { listen } from "./server/listen.js";
import { Queries } from "./store/queries.js";
import { SqlRunner } from "./store/readonly-sql.js";
import { Store } from "./store/store.js";

export { ColonyStartError };

export interface ColonyOptions {
  /** DuckDB database file, created if missing. */
  db: string;
  /** `host:port` for the query API; port 0 picks a free one. */
  listen: string;
  token?: string;
  /** Seed realistic demo telemetry into an empty database. */
  demo?: boolean;
  /** Progress for humans (seeding, keeping data); the caller decides where it goes. */
  log?: (line: string) => void;
}

export interface Colony {
  /** `host:port` actually listened on. */
  address: string;
  close(): Promise<void>;
}

/** Opens the store, seeds demo data when asked, and serves QueryService on one port. */
export async function startColony(o: ColonyOptions): Promise<Colony> {
  const log = o.log ?? (() => {});
  const { host, port } = parseListen(o.listen);
  // Before opening (and perhaps seeding) the database, so a refused start costs nothing.
  assertExposureAllowed(host, port, o.token);
  const store = await openStore(o.db);
  try {
    const queries = new Queries(store);
    if (o.demo) {
      const existing = await queries.listServices({});
      if (existing.length === 0) {
        const seeded = await seedDemo(new Writer(store), { nowMs: Date.now() });
        log(`seeded demo data: ${seeded.spans} spans from ${seeded.services.length} services (${seeded.services.join(", ")})`);
      } else {
        log(`${o.db} already holds ${existing.length} services; keeping its data instead of seeding demo data`);
      }
    }
    const sql = new SqlRunner(store);
    const server = await listen({
      host,
      port,
      token: o.token || undefined,
      routes: (router) => router.service(QueryService, queryServiceImpl({ queries, sql })),
    });
    let closing: Promise<void> | undefined;
    return {
      address: formatAddress(server.address.host, server.address.port),
      close() {
        closing ??= (async () => {
          await server.close();
          await checkpointAndClose(store);
        })();
        return closing;
      },
    };
  } catch (err) {
    await store.close().catch(() => {});
    throw err;
  }
}

/** Parses `host:port` (`[v6]:port` for IPv6). A bare port is refused: which interface matters. */
export function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(value.trim());
  const host = m?.[1] ?? m?.[2];
  const port = m ? Number(m[3]) : NaN;
  if (!m || !host || port > 65535 || (m[1] !== undefined && isIP(m[1]) !== 6)) {
    throw new ColonyStartError(
      `invalid listen address "${value}": expected HOST:PORT, e.g. 127.0.0.1:9090, 0.0.0.0:9090 or [::1]:9090`,
    );
  }
  return { host, port };
}

/**
 * Store.open with DuckDB's errors turned into one line that names the file and the way out.
 * DuckDB refuses a file it cannot lock or does not recognise before writing to it, so a failed
 * open leaves the existing file as it was.
 */
async function openStore(path: string): Promise<Store> {
  try {
    return await Store.open(path);
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    const pid = /\(PID (\d+)\)/.exec(msg)?.[1];
    if (/Could not set lock|Conflicting lock/i.test(msg)) {
      throw new ColonyStartError(
        `database ${path} is in use by another process${pid ? ` (PID ${pid})` : ""} — is another colony running? Stop it or use --db OTHER.duckdb`,
      );
    }
    if (/not a valid DuckDB database file/i.test(msg)) {
      throw new ColonyStartError(`${path} is not a DuckDB database (left untouched) — point --db at another file`);
    }
    if (/No such file or directory/i.test(msg)) {
      throw new ColonyStartError(`cannot create database ${path}: its directory does not exist`);
    }
    if (/Permission denied|Read-only file system/i.test(msg)) {
      throw new ColonyStartError(`cannot open database ${path}: permission denied`);
    }
    if (/Is a directory/i.test(msg)) {
      throw new ColonyStartError(`cannot open database ${path}: it is a directory, not a file`);
    }
    throw new ColonyStartError(`cannot open database ${path}: ${msg.split("\n")[0]}`);
  }
}

/** Folding the WAL into the file on the way out means the next start need not replay it. */
async function checkpointAndClose(store: Store): Promise<void> {
  try {
    const conn = await store.connect();
    try {
      await conn.run("CHECKPOINT");
    } finally {
      conn.closeSync();
    }
  } finally {
    await store.close();
  }
}
