// Admission control shared by the colony's front doors (both ports) and its SQL runner: how many
// bytes of requests may be held at once, and how many of a kind of work may run at once.

/** One request's share of a ByteBudget. */
export interface Lease {
  /** Bytes this request holds now. */
  readonly bytes: number;
  /**
   * Takes `n` more bytes if they fit, or if no other request holds any: one request larger than
   * the whole budget must still get through an idle port, or its client would retry forever.
   * False (nothing taken) otherwise, and always after release().
   */
  take(n: number): boolean;
  /** Counts `n` bytes that already exist whether or not they fit (the caller bounds them). */
  add(n: number): void;
  /** Holds exactly `n` bytes from now on, whether or not they fit (the caller bounds them). */
  hold(n: number): void;
  /** Gives everything back; later calls do nothing. */
  release(): void;
}

/**
 * Bytes of requests a port holds in memory at once, over all its connections. Per-request limits
 * bound one request; this bounds how many of them add up.
 */
export class ByteBudget {
  #used = 0;

  constructor(readonly maxBytes: number) {}

  /** Bytes held by all leases together. */
  get used(): number {
    return this.#used;
  }

  lease(): Lease {
    let held = 0;
    let released = false;
    const budget = this;
    return {
      get bytes() {
        return held;
      },
      take(n) {
        if (released) return false;
        if (budget.#used - held > 0 && budget.#used + n > budget.maxBytes) return false;
        held += n;
        budget.#used += n;
        return true;
      },
      add(n) {
        if (released) return;
        held += n;
        budget.#used += n;
      },
      hold(n) {
        if (released) return;
        budget.#used += n - held;
        held = n;
      },
      release() {
        if (released) return;
        released = true;
        budget.#used -= held;
        held = 0;
      },
    };
  }
}

/**
 * A counting semaphore whose waiters are served in arrival order; a waiter whose signal aborts
 * leaves the queue.
 */
export class Slots {
  #active = 0;
  readonly #queue: (() => void)[] = [];

  constructor(readonly size: number) {}

  get active(): number {
    return this.#active;
  }

  get waiting(): number {
    return this.#queue.length;
  }

  /** Resolves with the function that frees the slot (once; later calls do nothing). */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const grant = () => {
        signal?.removeEventListener("abort", onAbort);
        this.#active++;
        let freed = false;
        resolve(() => {
          if (freed) return;
          freed = true;
          this.#active--;
          this.#pump();
        });
      };
      const onAbort = () => {
        const i = this.#queue.indexOf(grant);
        if (i >= 0) this.#queue.splice(i, 1);
        reject(signal!.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#queue.push(grant);
      this.#pump();
    });
  }

  #pump(): void {
    while (this.#active < this.size && this.#queue.length > 0) this.#queue.shift()!();
  }
}

/**
 * `defaults` with every option the caller set; an option given as undefined keeps its default
 * (a spread alone would overwrite it with undefined).
 */
export function withDefaults<T extends object>(defaults: Readonly<T>, overrides: Partial<T> | undefined): T {
  const out = { ...defaults } as T;
  for (const [k, v] of Object.entries(overrides ?? {})) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}
