/**
 * @coral/sdk: query a Coral colony from TypeScript.
 *
 * ```ts
 * import * as coral from "@coral/sdk";
 *
 * for (const svc of await coral.services.list()) {
 *   const p99 = await svc.metrics.getP99();
 *   console.log(`${svc.name}: ${(p99 / 1_000_000).toFixed(1)}ms`);
 * }
 * ```
 *
 * Scripts run under `coral run script.ts`, which asks the colony on the SDK's behalf; results
 * are plain objects with the API's field names (`trace.duration_ns`), numbers in nanoseconds
 * and milliseconds.
 * @module
 */
export * from "../gen/coral/colony/v1/query_sdk.js";
export { CoralError, type CoralErrorCode } from "./errors.js";
export { params, type ParamReaders, type Params } from "./params.js";
