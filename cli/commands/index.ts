import type { CommandClass } from "clipanion";
import { commands as queryCommands } from "../../gen/coral/colony/v1/query_cli.js";
import { ColonyStartCommand } from "./colony-start.js";
import { DemoLoadCommand } from "./demo-load.js";
import { InitCommand } from "./init.js";
import { RunCommand } from "./run.js";

/** Every command `coral` knows; the query commands come from the proto (gen/). */
export const commands: CommandClass[] = [ColonyStartCommand, DemoLoadCommand, ...queryCommands, RunCommand, InitCommand];
