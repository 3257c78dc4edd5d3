/**
 * Reads the CA's signed revocation feed (`GET /v1/revocations?since=N`, authenticated by the proxy's current
 * TLS key, signature checked with the feed key received at enrollment) and applies each new entry: recorded
 * in the state database first (so a restart keeps it), then handed to the running proxy, which closes what
 * it hits. A failed poll is logged and retried at the next tick; the position only moves after applying.
 */
import type { KeyObject } from 'node:crypto';
import type { CaClient } from '../protocol/ca-client.js';
import type { Revocation } from './revocations.js';

export interface FeedSource {
  /** Where the feed stands (the highest seq applied). */
  seq(): number;
  /** Records an entry; the poller moves the position after a whole page. */
  record(entry: Revocation & { seq: number }): void;
  setSeq(seq: number): void;
}

export interface FeedPollerOptions {
  client: CaClient;
  /** The current TLS leaf and key (they change on renewal). */
  current: () => { certificate: string; privateKey: KeyObject; feedKey: string };
  source: FeedSource;
  apply: (entry: Revocation) => void;
  intervalMs: number;
  log?: { warn(fields: object, message: string): void };
}

export class RevocationFeedPoller {
  readonly #o: FeedPollerOptions;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<number> | undefined;

  constructor(options: FeedPollerOptions) {
    this.#o = options;
  }

  /** Polls now and then every intervalMs (unref'd: never keeps the process alive). */
  start(): void {
    if (this.#o.intervalMs <= 0 || this.#timer) return;
    const tick = () => void this.poll().catch(() => undefined);
    tick();
    this.#timer = setInterval(tick, this.#o.intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** One poll (pages until the feed is exhausted); returns how many entries were new. Never overlaps itself. */
  poll(): Promise<number> {
    this.#running ??= this.#poll().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #poll(): Promise<number> {
    let applied = 0;
    try {
      for (let page = 0; page < 100; page++) {
        const since = this.#o.source.seq();
        const { certificate, privateKey, feedKey } = this.#o.current();
        const feed = await this.#o.client.revocations(since, { current: { certificate, privateKey }, feedKey });
        for (const e of feed.entries) {
          if (e.seq <= since) continue;
          const entry = { kind: e.kind, subject: e.subject, orgId: e.orgId };
          this.#o.source.record({ ...entry, seq: e.seq });
          this.#o.apply(entry);
          applied++;
        }
        // A complete page says where the whole feed stands (beyond entries filtered out for an org proxy);
        // a full page says its last entry, and the next page follows.
        const last = feed.entries.at(-1)?.seq ?? since;
        this.#o.source.setSeq(Math.max(since, feed.seq));
        if (feed.entries.length === 0 || feed.seq > last) break;
      }
    } catch (err) {
      this.#o.log?.warn({ err, feed: 'revocations' }, 'revocation feed poll failed; retrying at the next tick');
      throw err;
    }
    return applied;
  }
}
