/**
 * The Authority's change signal: raised after a commit that may change what a feed reader sees (a revocation
 * inserted, the proxy table changed, a certificate retired). Held feed reads (long-polls) listen to it to answer
 * as soon as there is news instead of at the end of their wait. It carries no data: a listener re-reads the store.
 */
export type ChangeListener = () => void;

export class ChangeSignal {
  readonly #listeners = new Set<ChangeListener>();
  readonly #announce: () => void;
  readonly #announceFailed: (err: unknown) => void;

  /**
   * `announce` tells other processes and CA replicas of a change made here (the store's NOTIFY on PostgreSQL);
   * `announceFailed` hears when it threw (the daemon logs it).
   */
  constructor(announce: () => void = () => undefined, announceFailed: (err: unknown) => void = () => undefined) {
    this.#announce = announce;
    this.#announceFailed = announceFailed;
  }

  /** Subscribes; returns the unsubscribe function (call it, or the listener leaks). */
  on(listener: ChangeListener): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /**
   * A change made here: wakes this process's listeners and announces it to the others (inside a write
   * transaction PostgreSQL holds the notice until the commit, and drops it if the transaction fails). Never
   * throws: the change stands or falls with its own transaction whatever becomes of the announcement (a lost
   * NOTIFY). Held reads on other replicas that miss it see the change when their wait ends (the reader's
   * feed_wait, 25 s by default, at most 30 s) or at the next notice of any other change, whichever is first.
   */
  raise(): void {
    this.heard();
    try {
      this.#announce();
    } catch (err) {
      this.#announceFailed(err);
    }
  }

  /** A change another process or replica announced: wakes listeners only (announcing it again would echo forever). */
  heard(): void {
    // A copy: listeners unsubscribe while being called.
    for (const listener of [...this.#listeners]) listener();
  }

  get listenerCount(): number {
    return this.#listeners.size;
  }

  /**
   * Resolves at the next raise, after `ms`, or when `signal` aborts, whichever comes first; the listener and
   * timer are gone when it resolves (a client that goes away leaves nothing behind).
   */
  next(ms: number, signal?: AbortSignal): Promise<'changed' | 'timeout' | 'aborted'> {
    if (signal?.aborted) return Promise.resolve('aborted');
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (why: 'changed' | 'timeout' | 'aborted') => {
        clearTimeout(timer);
        off();
        signal?.removeEventListener('abort', onAbort);
        resolve(why);
      };
      const onAbort = () => done('aborted');
      const off = this.on(() => done('changed'));
      timer = setTimeout(() => done('timeout'), Math.max(0, ms));
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
