import type { Interceptor, Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";

/** Connect over HTTP/1.1, binary: what the colony serves on every port, proxies included. */
export function colonyTransport(baseUrl: string, token: string | undefined): Transport {
  const interceptors: Interceptor[] = [];
  if (token) {
    interceptors.push((next) => (req) => {
      req.header.set("authorization", `Bearer ${token}`);
      return next(req);
    });
  }
  return createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: true, interceptors });
}
