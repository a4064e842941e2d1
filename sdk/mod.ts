/**
 * @coral/sdk: query a Coral colony from TypeScript.
 *
 * ```ts
 * import * as coral from "@coral/sdk";
 *
 * for (const svc of await coral.services.list()) {
 *   const p99 = await svc.metrics.getP99();
 *   console.log(`${svc.name}: ${p99 === null ? "no data" : `${(p99 / 1_000_000).toFixed(1)} ms`}`);
 * }
 * ```
 *
 * Scripts run under `coral run script.ts`, which asks the colony on the SDK's behalf. The
 * functions come in modules — {@link services}, {@link metrics}, {@link traces}, {@link system}
 * and {@link db} — each documented with its parameters, result and an example. Results are plain
 * objects with the API's field names (`trace.duration_ns`); durations are in nanoseconds, windows
 * in milliseconds, and a value the colony has no data for is `null`, never a made-up 0.
 * {@link params} reads the script's `--param name=value` arguments; every failure is a
 * {@link CoralError}. The Colony API reference section has the call behind each function, with
 * its `coral query` command.
 * @module
 */
export * from "../gen/coral/colony/v1/query_sdk.js";
export { CoralError, type CoralErrorCode } from "./errors.js";
export { params, type ParamReaders, type Params } from "./params.js";
