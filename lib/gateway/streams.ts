/**
 * Live streams and their lifetime: a stream ends when its grant expires (a timer, even mid-transfer), when
 * its grant, identity, certificate or this gateway is revoked, or when the gateway drains. Each stream
 * leaves one audit record: actor, target, bytes each way, duration, outcome.
 */
import type { ErrorCode } from '../errors/codes.js';
import type { AccessGrant } from '../pki/grant.js';
import type { ModeAlpn } from '../protocol/relay.js';
import { type Revocation, revocationCovers } from './revocations.js';

export interface StreamInfo {
  grant: AccessGrant;
  serialHex: string;
  mode: ModeAlpn;
  proxyId: string;
  /** What was dialled, for the audit record. */
  target?: string;
}

/** How a stream ended: 'ok', or the code of what ended it. */
export type StreamOutcome = 'ok' | ErrorCode;

export interface StreamRecord {
  streamId: number;
  grantId: string;
  actor: string;
  orgId: string;
  mode: ModeAlpn;
  proxyId: string;
  target: string;
  bytesIn: number;
  bytesOut: number;
  durationMs: number;
  outcome: StreamOutcome;
  reason?: string;
}

/** What the registry needs from a stream to end it. */
export interface Closable {
  destroy(err?: Error): void;
}

export interface StreamHandle {
  readonly id: number;
  readonly info: StreamInfo;
  /** Bytes from the platform to the target. */
  bytesIn: number;
  /** Bytes from the target to the platform. */
  bytesOut: number;
  setTarget(target: string): void;
  /** Ends the stream (idempotent); the first outcome given wins. */
  end(outcome: StreamOutcome, reason?: string): void;
}

export interface StreamRegistryOptions {
  gatewayId: string;
  onEnd: (record: StreamRecord) => void;
  now?: () => number;
  /** Upper bound of live streams; admission refuses beyond it (E_LIMIT). */
  maxStreams?: number;
}

export class StreamRegistry {
  readonly #opts: StreamRegistryOptions;
  readonly #live = new Map<number, Live>();
  #nextId = 1;

  constructor(opts: StreamRegistryOptions) {
    this.#opts = opts;
  }

  get size(): number {
    return this.#live.size;
  }

  /** Upper bound of live streams (config max_streams, live: a reload sets it; streams over it are not cut). */
  get maxStreams(): number | undefined {
    return this.#opts.maxStreams;
  }

  set maxStreams(n: number | undefined) {
    this.#opts.maxStreams = n;
  }

  get full(): boolean {
    return this.#live.size >= (this.#opts.maxStreams ?? Number.POSITIVE_INFINITY);
  }

  /** Registers a stream and arms its expiry timer at the grant's end. */
  add(info: StreamInfo, resource: Closable): StreamHandle {
    const now = this.#now();
    const live = new Live(this.#nextId++, info, resource, now, (l, outcome, reason) =>
      this.#finish(l, outcome, reason),
    );
    this.#live.set(live.id, live);
    this.#arm(live);
    return live;
  }

  /** The grant is usable while now <= notAfter (whole seconds): the stream ends at the next second. */
  #arm(live: Live): void {
    const endsAt = (live.info.grant.notAfter + 1) * 1000;
    live.timer = setTimeout(
      () => {
        // Timers may fire a little early, and the injected clock may differ from the timer's: re-check.
        if (Math.floor(this.#now() / 1000) > live.info.grant.notAfter) {
          live.end('E_GRANT_EXPIRED', `grant ${live.info.grant.grantId} expired mid-stream`);
        } else this.#arm(live);
      },
      Math.max(10, endsAt - this.#now()),
    );
    live.timer.unref();
  }

  /** Ends every stream whose grant has expired by the injected clock. Returns how many ended. */
  sweep(): number {
    const nowSec = Math.floor(this.#now() / 1000);
    let n = 0;
    for (const l of [...this.#live.values()]) {
      if (nowSec > l.info.grant.notAfter) {
        l.end('E_GRANT_EXPIRED', `grant ${l.info.grant.grantId} expired mid-stream`);
        n++;
      }
    }
    return n;
  }

  /** Ends every live stream the revocation covers. Returns how many ended. */
  revoke(r: Revocation): number {
    let n = 0;
    const code = r.kind === 'grant' || r.kind === 'certificate' ? 'E_CERT_REVOKED' : 'E_SUBJECT_REVOKED';
    for (const l of [...this.#live.values()]) {
      if (revocationCovers(r, { grant: l.info.grant, serialHex: l.info.serialHex, gatewayId: this.#opts.gatewayId })) {
        l.end(code, `${r.kind} ${r.subject} revoked`);
        n++;
      }
    }
    return n;
  }

  /** Ends everything (shutdown after the drain deadline). */
  endAll(outcome: StreamOutcome, reason: string): void {
    for (const l of [...this.#live.values()]) l.end(outcome, reason);
  }

  /** Resolves when no stream is live, or after `timeoutMs`. */
  async idle(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.#live.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    return this.#live.size === 0;
  }

  #now(): number {
    return (this.#opts.now ?? Date.now)();
  }

  #finish(l: Live, outcome: StreamOutcome, reason?: string): void {
    if (!this.#live.delete(l.id)) return;
    if (l.timer) clearTimeout(l.timer);
    const g = l.info.grant;
    const target = l.info.target ?? ('name' in g.target ? g.target.name : `${g.target.host}:${g.target.port}`);
    this.#opts.onEnd({
      streamId: l.id,
      grantId: g.grantId,
      actor: g.actor,
      orgId: g.orgId,
      mode: l.info.mode,
      proxyId: l.info.proxyId,
      target,
      bytesIn: l.bytesIn,
      bytesOut: l.bytesOut,
      durationMs: Math.max(0, this.#now() - l.startedAt),
      outcome,
      ...(reason !== undefined ? { reason } : {}),
    });
  }
}

class Live implements StreamHandle {
  bytesIn = 0;
  bytesOut = 0;
  timer: NodeJS.Timeout | undefined;
  #ended = false;

  constructor(
    readonly id: number,
    readonly info: StreamInfo,
    readonly resource: Closable,
    readonly startedAt: number,
    readonly onEnd: (l: Live, outcome: StreamOutcome, reason?: string) => void,
  ) {}

  setTarget(target: string): void {
    this.info.target = target;
  }

  end(outcome: StreamOutcome, reason?: string): void {
    if (this.#ended) return;
    this.#ended = true;
    this.onEnd(this, outcome, reason);
    this.resource.destroy();
  }
}
