/** Colour only for a terminal that wants it (https://no-color.org). */
export function colorsEnabled(stream: NodeJS.WritableStream & { isTTY?: boolean }): boolean {
  if (process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== "") return false;
  if (process.env.FORCE_COLOR) return true;
  return Boolean(stream.isTTY);
}
