/**
 * A colony start-up failure whose message is already written for the user (one line, no stack):
 * a bad listen address, a port in use, a database another colony holds. The CLI prints it as is.
 */
export class ColonyStartError extends Error {
  override readonly name = "ColonyStartError";
}
