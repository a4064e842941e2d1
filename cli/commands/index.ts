import type { CommandClass } from "clipanion";

/**
 * Every command `coral` knows, grouped by the first word of its path and loaded on demand: a
 * group's module (and what it imports: protobuf and Connect for `query`, the colony for
 * `colony`) is only evaluated when the command line starts with that word. `coral run` thus
 * starts without parsing the query API's descriptors. The query commands come from the proto (gen/).
 */
const groups: Record<string, () => Promise<CommandClass[]>> = {
  colony: async () => [(await import("./colony-start.js")).ColonyStartCommand],
  demo: async () => [(await import("./demo-load.js")).DemoLoadCommand],
  query: async () => {
    const [{ commands }, { queryCommand }] = await Promise.all([
      import("../../gen/coral/colony/v1/query_cli.js"),
      import("../runtime/query-command.js"),
    ]);
    return commands.map(queryCommand);
  },
  run: async () => [(await import("./run.js")).RunCommand],
  mcp: async () => [(await import("./mcp.js")).McpCommand],
  init: async () => [(await import("./init.js")).InitCommand],
};

/**
 * The commands needed to handle `argv`: the group its first word names, or all of them (in the
 * order help lists them) for anything else — `--help`, `--version`, a typo clipanion should
 * suggest a fix for.
 */
export async function commandsFor(argv: readonly string[]): Promise<CommandClass[]> {
  const first = argv[0];
  if (first !== undefined && Object.hasOwn(groups, first)) return groups[first]!();
  return allCommands();
}

/** Every command, in the order help lists them. */
export async function allCommands(): Promise<CommandClass[]> {
  return (await Promise.all(Object.values(groups).map((load) => load()))).flat();
}
