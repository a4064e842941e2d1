import { UsageError } from "clipanion";

export const defaultColony = "127.0.0.1:9090";

/**
 * The colony a command talks to: --colony, else $CORAL_COLONY_ADDR, else the default.
 * Accepts "host:port", "[::1]:port" or an http(s):// URL; returns the base URL and the
 * address as the user should see it in messages.
 */
export function resolveColony(flag: string | undefined): { baseUrl: string; display: string } {
  const raw = (flag ?? process.env.CORAL_COLONY_ADDR ?? "").trim() || defaultColony;
  const withScheme = /^[a-z]+:\/\//i.test(raw) ? raw : `http://${raw}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new UsageError(`--colony: "${raw}" is not an address; write it like 127.0.0.1:9090`);
  }
  if (!["http:", "https:"].includes(url.protocol) || !url.hostname || (url.pathname !== "/" && url.pathname !== "")) {
    throw new UsageError(`--colony: "${raw}" is not an address; write it like 127.0.0.1:9090`);
  }
  if (!url.port && !/^[a-z]+:\/\//i.test(raw)) {
    throw new UsageError(`--colony: "${raw}" has no port; write it like ${url.hostname}:9090`);
  }
  return { baseUrl: url.origin, display: url.port ? url.host : url.origin };
}

/**
 * A bearer token as HTTP can carry it: visible ASCII, no spaces. Anything else could never be
 * sent (a colony started with it would refuse every client), so it is refused up front.
 */
export function checkToken(token: string | undefined, source = "--token"): string | undefined {
  if (token !== undefined && token !== "" && !/^[\x21-\x7e]+$/.test(token)) {
    throw new UsageError(`${source}: a token is visible ASCII without spaces (e.g. from \`openssl rand -hex 16\`)`);
  }
  return token;
}
