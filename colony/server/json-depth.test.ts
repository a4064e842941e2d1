import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { depthCheckedDecoder, MAX_JSON_DEPTH } from "./json-depth.js";

const decode = (text: string) => depthCheckedDecoder.decode(new TextEncoder().encode(text));

describe("depthCheckedDecoder", () => {
  it(`passes text nested ${MAX_JSON_DEPTH} levels deep, and brackets inside strings (escaped quotes too) do not count`, () => {
    const nested = "[".repeat(MAX_JSON_DEPTH) + "]".repeat(MAX_JSON_DEPTH);
    expect(decode(nested)).toBe(nested);
    const sql = JSON.stringify({ sql: `SELECT '${"[{".repeat(5_000)}' AS "a\\"[[[", 'é' AS b` });
    expect(JSON.parse(decode(sql))).toEqual(JSON.parse(sql));
  });

  it(`refuses one level more with invalid_argument, wherever the brackets are`, () => {
    for (const text of ["[".repeat(MAX_JSON_DEPTH + 1), `{"a":"x\\\\",${"{".repeat(MAX_JSON_DEPTH)}}`]) {
      const err = (() => {
        try {
          decode(text);
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code).toBe(Code.InvalidArgument);
    }
  });

  it("leaves malformed text (an unterminated string) for JSON.parse to report", () => {
    expect(decode('{"a":"[[[')).toBe('{"a":"[[[');
  });
});
