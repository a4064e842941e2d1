import { Code, ConnectError } from "@connectrpc/connect";
import { forEachJsonContainer } from "../json-brackets.js";

/**
 * Deepest JSON nesting a request message may have. The query API's requests are flat messages of
 * scalars (one level); 64 leaves room for any service this port may serve.
 */
export const MAX_JSON_DEPTH = 64;

/**
 * What connect-es decodes every JSON request message with (after decompression, on every protocol)
 * right before JSON.parse: it refuses text nested deeper than MAX_JSON_DEPTH first. V8's JSON.parse
 * takes seconds over a few MB of `[[[[…` (3.3 s for 1.5 million levels), all of it on the event
 * loop, and readMaxBytes (4 MiB) allows two million.
 */
export const depthCheckedDecoder = {
  decode(input?: Uint8Array): string {
    if (!input) return "";
    forEachJsonContainer(input, (depth) => {
      if (depth > MAX_JSON_DEPTH) {
        throw new ConnectError(`JSON nested more than ${MAX_JSON_DEPTH} levels deep: the requests of this API are flat messages`, Code.InvalidArgument);
      }
    });
    return new TextDecoder().decode(input);
  },
};
