/**
 * Follows the CA's signed revocation feed for an enrolled component (gateway or proxy alike): a long-poll
 * (`wait`), so a revocation reaches every component about as soon as it is made, with polling every
 * `retryMs` while the CA cannot be reached. Each page is checked against the feed key from enrollment
 * (CaClient), recorded through `record` before the position moves (so a restart keeps it), then applied.
 *
 * It also owns the feed's health, which readiness and metrics read: the last success, and whether the feed is
 * stale (no success for `staleAfterMs`). A failure is logged once when it starts and once when it ends, and
 * in between at most once a minute; a refusal that retrying cannot fix (this component revoked or superseded)
 * stops the follower and is handed to `onRevokedSelf`.
 */
import type { KeyObject } from 'node:crypto';
import { type ErrorCode, GatewayError } from '../errors/codes.js';
import type { FeedProxyList, FeedRotation, RevocationEntry } from '../protocol/api.js';
import type { CaClient } from '../protocol/ca-client.js';

export interface FeedCredentials {
  certificate: string;
  privateKey: KeyObject;
  feedKey: string;
}

export interface FeedFollowerOptions {
  client: Pick<CaClient, 'revocations'>;
  /** The current TLS leaf, key and feed key (they change on renewal). */
  current: () => FeedCredentials;
  /** Where the feed stands (the highest seq recorded). */
  position: { seq(): number; setSeq(seq: number): void };
  /** Records and applies new entries, in order; called before the position moves. */
  apply: (entries: readonly RevocationEntry[]) => void;
  /** Gateways: the proxy list held now (its version), and what to do with a new one. */
  proxies?: { version(): string | undefined; apply(list: FeedProxyList): void };
  /**
   * CA rotation: the version applied now ("-" for none), and what to do when the feed says another (renew at
   * once, make-before-break, which brings the certificates and trust of the new phase). The follower says the
   * new version on its next read only once `apply` resolved: that is the acknowledgement the CA waits for.
   */
  rotation?: { version(): string; apply(rotation: FeedRotation): Promise<void> };
  /** The CA's refusal says this component is revoked or its certificate superseded. */
  onRevokedSelf?: (err: GatewayError) => void;
  /** Long-poll hold asked of the CA, seconds; 0 polls. Default 25. */
  waitSec?: number;
  /** Delay between reads after a failure (and between polls when waitSec is 0). */
  retryMs: number;
  /** No success for this long: stale (readiness fails). */
  staleAfterMs: number;
  now?: () => number;
  log?: {
    info(fields: object, message: string): void;
    warn(fields: object, message: string): void;
    error(fields: object, message: string): void;
  };
}

export interface FeedHealth {
  /** ms since the epoch of the last successful read; undefined before the first. */
  lastSuccessMs: number | undefined;
  stale: boolean;
  staleAfterMs: number;
  failing: boolean;
  lastError: string | undefined;
}

/** CA refusals (of a feed read or a renewal) that mean "you": retrying cannot help. */
const SELF_REFUSALS: readonly ErrorCode[] = [
  'E_SUBJECT_REVOKED',
  'E_CERT_REVOKED',
  'E_CERT_SUPERSEDED',
  'E_ROTATION_MISSED',
];

/** Is this the CA saying that this component is revoked, or that its certificate was superseded? */
export function isSelfRefusal(err: unknown): err is GatewayError {
  return err instanceof GatewayError && SELF_REFUSALS.includes(err.code);
}
/** The reason a component records when the CA refuses it for good: a missed rotation keeps its code in front. */
export function selfRefusalReason(err: GatewayError): string {
  return err.code === 'E_ROTATION_MISSED' ? `E_ROTATION_MISSED: ${err.message}` : err.message;
}

const FAILURE_LOG_EVERY_MS = 60_000;
/** An answer faster than this with nothing new means the CA did not hold the read: wait before the next. */
const MIN_HOLD_MS = 1000;

/** What SIGHUP may change while the follower runs (the next read uses it). */
export type FeedTiming = Pick<FeedFollowerOptions, 'waitSec' | 'retryMs' | 'staleAfterMs'>;

export class FeedFollower {
  #o: FeedFollowerOptions;
  readonly #startedMs: number;
  #abort: AbortController | undefined;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #lastSuccessMs: number | undefined;
  #failingSinceMs: number | undefined;
  #lastFailureLogMs = 0;
  #lastError: string | undefined;
  #running = false;

  constructor(options: FeedFollowerOptions) {
    this.#o = options;
    this.#startedMs = this.#now();
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#abort = new AbortController();
    this.#loop = this.#run();
  }

  async stop(): Promise<void> {
    this.#running = false;
    this.#abort?.abort();
    this.#wake?.();
    await this.#loop;
    this.#loop = undefined;
  }

  /** The timing in force, and whether the follower runs (a reload may stop or start it). */
  get timing(): Readonly<FeedTiming> & { running: boolean } {
    return {
      waitSec: this.#o.waitSec,
      retryMs: this.#o.retryMs,
      staleAfterMs: this.#o.staleAfterMs,
      running: this.#running,
    };
  }

  /** New timing from a reload; a read already held keeps its wait, the next one uses the new value. */
  configure(timing: FeedTiming): void {
    this.#o = { ...this.#o, ...timing };
  }

  health(): FeedHealth {
    const since = this.#lastSuccessMs ?? this.#startedMs;
    return {
      lastSuccessMs: this.#lastSuccessMs,
      stale: this.#now() - since > this.#o.staleAfterMs,
      staleAfterMs: this.#o.staleAfterMs,
      failing: this.#failingSinceMs !== undefined,
      lastError: this.#lastError,
    };
  }

  /** One read without waiting (tests, `renew`): every page until the feed is exhausted. */
  async readOnce(): Promise<number> {
    return this.#read(0, undefined);
  }

  async #run(): Promise<void> {
    let first = true;
    while (this.#running) {
      const configured = this.#o.waitSec ?? 25;
      // The first read answers at once (catch up, and a success to count from). A held read is only known to be
      // alive when it returns, so no hold may outlast half of staleAfterMs.
      const waitSec = first ? 0 : Math.min(configured, Math.floor(this.#o.staleAfterMs / 2000));
      const started = this.#now();
      let pause = 0;
      try {
        const applied = await this.#read(waitSec, this.#abort?.signal);
        if (configured === 0) pause = this.#o.retryMs;
        else if (!first && applied === 0 && this.#now() - started < MIN_HOLD_MS) pause = this.#o.retryMs;
        first = false;
      } catch (err) {
        if (!this.#running) break;
        if (isSelfRefusal(err)) {
          this.#running = false;
          this.#o.log?.error({ code: err.code, err: err.message }, 'the CA refuses this component: stopping the feed');
          this.#o.onRevokedSelf?.(err);
          break;
        }
        this.#failed(err);
        pause = this.#o.retryMs;
      }
      if (pause > 0 && this.#running) await this.#sleep(pause);
    }
  }

  /** Reads until the feed is exhausted; returns how many entries (and proxy lists) were new. */
  async #read(waitSec: number, signal: AbortSignal | undefined): Promise<number> {
    let applied = 0;
    for (let page = 0; page < 100; page++) {
      const since = this.#o.position.seq();
      const { certificate, privateKey, feedKey } = this.#o.current();
      const version = this.#o.proxies?.version();
      const rotation = this.#o.rotation?.version();
      const feed = await this.#o.client.revocations(since, {
        current: { certificate, privateKey },
        feedKey,
        // Only the first read of a round waits; the pages after it follow at once.
        ...(page === 0 && waitSec > 0 ? { waitSec } : {}),
        ...(version ? { proxiesVersion: version } : {}),
        ...(rotation ? { rotation } : {}),
        ...(signal ? { signal } : {}),
      });
      this.#succeeded();
      const fresh = feed.entries.filter((e) => e.seq > since);
      if (fresh.length > 0) this.#o.apply(fresh);
      applied += fresh.length;
      if (feed.proxies && this.#o.proxies && feed.proxies.version !== version) {
        this.#o.proxies.apply(feed.proxies);
        applied++;
      }
      if (feed.rotation && this.#o.rotation && feed.rotation.version !== rotation) {
        // Throws when the renewal fails: the read counts as failed and is retried after retryMs.
        await this.#o.rotation.apply(feed.rotation);
        applied++;
      }
      // A complete page says where the whole feed stands (beyond entries filtered out for this component's
      // scope); a full page says its last entry, and the next page follows.
      const last = feed.entries.at(-1)?.seq ?? since;
      this.#o.position.setSeq(Math.max(since, feed.seq));
      if (feed.entries.length === 0 || feed.seq > last) break;
    }
    return applied;
  }

  #succeeded(): void {
    this.#lastSuccessMs = this.#now();
    if (this.#failingSinceMs !== undefined) {
      this.#o.log?.info(
        { feed: 'revocations', failedForMs: this.#lastSuccessMs - this.#failingSinceMs },
        'revocation feed read again',
      );
    }
    this.#failingSinceMs = undefined;
    this.#lastError = undefined;
  }

  #failed(err: unknown): void {
    const now = this.#now();
    this.#lastError = err instanceof Error ? err.message : String(err);
    const code = err instanceof GatewayError ? err.code : undefined;
    if (this.#failingSinceMs === undefined) {
      this.#failingSinceMs = now;
      this.#lastFailureLogMs = now;
      this.#o.log?.warn(
        { feed: 'revocations', code, err: this.#lastError, retryMs: this.#o.retryMs },
        'revocation feed cannot be read; retrying (logged again once a minute while it lasts)',
      );
    } else if (now - this.#lastFailureLogMs >= FAILURE_LOG_EVERY_MS) {
      this.#lastFailureLogMs = now;
      this.#o.log?.warn(
        { feed: 'revocations', code, err: this.#lastError, failingForMs: now - this.#failingSinceMs },
        'revocation feed still cannot be read',
      );
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.#wake = done;
    });
  }

  #now(): number {
    return (this.#o.now ?? Date.now)();
  }
}
