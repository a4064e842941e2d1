import { ConnectError, type Code } from "@connectrpc/connect";

/** The error a call ends with, as its code and the colony's own message; throws if it succeeds. */
export async function failureOf(p: Promise<unknown>): Promise<{ code: Code; message: string }> {
  try {
    await p;
  } catch (err) {
    const e = ConnectError.from(err);
    return { code: e.code, message: e.rawMessage };
  }
  throw new Error("expected the call to fail");
}
