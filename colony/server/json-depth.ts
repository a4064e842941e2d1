import { Code, ConnectError } from "@connectrpc/connect";

/**
 * Deepest JSON nesting a request message may have. The query API's requests are flat messages of
 * scalars (one level); 64 leaves room for any service this port may serve.
 */
export const MAX_JSON_DEPTH = 64;

/**
 * What connect-es decodes every JSON request message with (after decompression, on every protocol)
 * right before JSON.parse: it refuses text nested deeper than MAX_JSON_DEPTH first. V8's JSON.parse
 * takes seconds over a few MB of `[[[[…` (3.3 s for 1.5 million levels), all of it on the event
 * loop, and readMaxBytes (4 MiB) allows two million. One pass over the bytes; strings are jumped
 * over with indexOf. Malformed text passes through for JSON.parse to report.
 */
export const depthCheckedDecoder = {
  decode(input?: Uint8Array): string {
    if (!input) return "";
    const b = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
    let depth = 0;
    for (let i = 0; i < b.length; i++) {
      const ch = b[i]!;
      if (ch === 0x22) {
        // The closing quote is the next one not escaped, i.e. preceded by an even run of backslashes.
        let j = i;
        for (;;) {
          j = b.indexOf(0x22, j + 1);
          if (j < 0) return new TextDecoder().decode(b);
          let k = j - 1;
          while (b[k] === 0x5c) k--;
          if ((j - 1 - k) % 2 === 0) break;
        }
        i = j;
      } else if (ch === 0x7b || ch === 0x5b) {
        if (++depth > MAX_JSON_DEPTH) {
          throw new ConnectError(`JSON nested more than ${MAX_JSON_DEPTH} levels deep: the requests of this API are flat messages`, Code.InvalidArgument);
        }
      } else if (ch === 0x7d || ch === 0x5d) depth--;
    }
    return new TextDecoder().decode(b);
  },
};
