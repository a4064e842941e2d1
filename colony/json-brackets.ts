/**
 * Calls `opened(depth)` for every object or array that JSON text opens, in one pass over the bytes,
 * before anything parses it: V8's JSON.parse holds the event loop for seconds over a few MB of
 * `[[[[…`, so the query port and OTLP both refuse by nesting (and OTLP by count) first. Strings are
 * jumped over with indexOf. Malformed text passes through for JSON.parse to report. `opened` throws
 * to refuse.
 */
export function forEachJsonContainer(text: Uint8Array, opened: (depth: number) => void): void {
  const b = Buffer.isBuffer(text) ? text : Buffer.from(text.buffer, text.byteOffset, text.byteLength);
  let depth = 0;
  for (let i = 0; i < b.length; i++) {
    const ch = b[i]!;
    if (ch === 0x22) {
      // The closing quote is the next one not escaped, i.e. preceded by an even run of backslashes.
      let j = i;
      for (;;) {
        j = b.indexOf(0x22, j + 1);
        if (j < 0) return;
        let k = j - 1;
        while (b[k] === 0x5c) k--;
        if ((j - 1 - k) % 2 === 0) break;
      }
      i = j;
    } else if (ch === 0x7b || ch === 0x5b) opened(++depth);
    else if (ch === 0x7d || ch === 0x5d) depth--;
  }
}
