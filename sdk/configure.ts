import { connect } from "./runtime.js";

export interface ConfigureOptions {
  /** Colony address, "host:port" or an http(s) URL. Default: $CORAL_COLONY_ADDR, then 127.0.0.1:9090. */
  colony?: string;
  /** Bearer token. Default: $CORAL_TOKEN. */
  token?: string;
}

/**
 * Points the SDK at a colony. `coral run` does this for you (through CORAL_COLONY_ADDR and
 * CORAL_TOKEN); call it only to use the SDK elsewhere.
 */
export function configure(o: ConfigureOptions = {}): void {
  connect(o);
}
