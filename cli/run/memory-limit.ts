// The script memory limit's default and bounds, in MB: `coral run --memory`, $CORAL_SCRIPT_MEMORY,
// `coral mcp --memory` and the early start (early-start.ts, which must compute what `coral run`
// will) read them from here. A module of its own: the early bundle imports it and stays small.
export const SCRIPT_MEMORY_MB = { default: 512, min: 16, max: 1_048_576 } as const;
