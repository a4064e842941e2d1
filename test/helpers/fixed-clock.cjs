// Preloaded (NODE_OPTIONS=--require) into colonies and CLI runs that must agree on "now": Date.now()
// and `new Date()` return CORAL_TEST_FIXED_NOW_MS, so two colonies seed the same demo data and
// answer the same windows whenever they run. Timers are unaffected (they use a monotonic clock).
"use strict";
const fixed = Number(process.env.CORAL_TEST_FIXED_NOW_MS);
if (Number.isFinite(fixed)) {
  const RealDate = Date;
  class FixedDate extends RealDate {
    constructor(...args) {
      if (args.length === 0) super(fixed);
      else super(...args);
    }
    static now() {
      return fixed;
    }
  }
  globalThis.Date = FixedDate;
}
