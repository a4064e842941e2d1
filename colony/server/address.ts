import { isIP } from "node:net";
import { formatAddress } from "./auth.js";
import { ColonyStartError } from "./errors.js";

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

/** A failed listen as one line naming the address and, for a taken port, the flag that picks another. */
export function listenError(err: NodeJS.ErrnoException, host: string, port: number, flag: "--listen" | "--otlp"): ColonyStartError {
  const where = formatAddress(host, port);
  switch (err.code) {
    case "EADDRINUSE":
      return new ColonyStartError(
        `cannot listen on ${where}: the port is already in use (another colony?) — pick another with ${flag}${flag === "--otlp" ? " or turn it off with --otlp off" : ""}`,
      );
    case "EADDRNOTAVAIL":
      return new ColonyStartError(`cannot listen on ${where}: this machine has no such address`);
    case "EACCES":
      return new ColonyStartError(`cannot listen on ${where}: permission denied (ports below 1024 need privileges)`);
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return new ColonyStartError(`cannot listen on ${where}: host "${host}" not found`);
    default:
      return new ColonyStartError(`cannot listen on ${where}: ${err.message}`);
  }
}
