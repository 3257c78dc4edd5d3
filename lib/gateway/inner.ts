/**
 * The end-to-end mTLS server the gateway runs on every forwarded channel (SPEC §4.4). The proxy only ever
 * sees this session's ciphertext. Per channel: TLS 1.3 handshake with our inner server cert, then the one
 * admission decision (admission.ts: THE verifier + grant + revocations), then the allowlist with one DNS
 * lookup, then the mode picked by ALPN. A refusal leaves an audit record; the platform is told why (a status
 * line, or an HTTP answer in http mode: lib/protocol/relay.ts, disclosure.ts) unless its certificate is not
 * proven ours, and the session closes. The TLS context is built once per credentials, not per channel.
 *
 * A channel is pending from its open until its inner handshake completes; each proxy may hold at most
 * `maxPendingChannels` of them (admitChannel, asked by the tunnel before it accepts a channel), so a flood
 * of channel opens is rejected at the open instead of costing a TLS session and a timer each.
 *
 * A session held for its GO (`tcp+go`, `ping+go`) has finished its handshake and been admitted: it is no longer
 * pending but held, counted apart per proxy and bounded by `maxHeldSessions` (admitHold). Its slot is taken when
 * the handshake's ALPN selection picks `<mode>+go` (so the bound holds however many handshakes run at once) and
 * given back once: at GO, or when the session is refused, ends or closes. At the bound the selection does not
 * pick `<mode>+go`: a platform that offered the plain mode too gets it (a stream dialled now, as with
 * hold_inner_sessions off), one that offered only `<mode>+go` (lib/client dial.ts holdInner: a session to hold
 * ahead of need) finds no common mode and its handshake fails before anything is admitted or dialled.
 */
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { type ErrorCode, GatewayError, unwrap, type Verdict } from '../errors/codes.js';
import { checkGrant, type GrantMode } from '../pki/grant.js';
import { decideLeafFirst, mtlsResumableServerOptions } from '../pki/tls.js';
import { loadTrustAnchors, type TrustAnchors } from '../pki/verify.js';
import {
  encodeStatus,
  GO_BYTE,
  innerServerAlpns,
  isGoAlpn,
  MODE_ALPNS,
  modeOfAlpn,
  type RelayStatus,
} from '../protocol/relay.js';
import { type AdmissionContext, type Admitted, admitAgain, admitChannel, admitHold, admitStream } from './admission.js';
import { type Allowlist, type Resolver, resolveTarget } from './allowlist.js';
import { type DisclosureContext, refusalStatus } from './disclosure.js';
import {
  DEFAULT_MODE_LIMITS,
  type ModeLimits,
  serveHealth,
  serveHttp,
  serveHttpRefusal,
  servePing,
  serveTcp,
  type UpstreamTls,
} from './modes.js';
import type { RevocationSet } from './revocations.js';
import type { StreamRegistry } from './streams.js';

/** The gateway's inner TLS identity and what it trusts, as stored after enrollment. */
export interface InnerCredentials {
  /** PEM private key of the inner server cert. */
  key: string;
  /** PEM chain, leaf first (URI SAN = the gateway URI). */
  chain: string;
  /** PEM certificates of the org's gateway client CA(s). */
  clientCaPems: readonly string[];
}

/** A refused stream, for the audit trail and metrics. */
export interface Refusal {
  code: ErrorCode;
  reason: string;
  proxyId: string;
  actor?: string;
  grantId?: string;
  mode?: string;
}

export interface InnerServerOptions {
  orgId: string;
  gatewayId: string;
  credentials: InnerCredentials;
  allowlist: Allowlist;
  resolver: Resolver;
  revoked: RevocationSet;
  registry: StreamRegistry;
  onRefused: (r: Refusal) => void;
  /** The `health` mode's document. */
  health: () => object;
  now?: () => Date;
  handshakeTimeoutMs?: number;
  /** Channels per proxy whose inner handshake is not complete yet; more are rejected at the open. */
  maxPendingChannels?: number;
  /** Sessions per proxy held for their GO (`tcp+go`, `ping+go`); past it, a session is not held. */
  maxHeldSessions?: number;
  /**
   * A channel rejected at the open by maxPendingChannels, or a session not held by maxHeldSessions (counted and
   * logged sampled: never audited, nobody has authenticated yet).
   */
  onChannelRefused?: (r: LimitRefusal) => void;
  limits?: Partial<ModeLimits>;
  /** TLS to targets in http mode (config http_upstream_tls / http_upstream_ca). */
  upstreamTls?: UpstreamTls;
  /**
   * Offer the held variants `tcp+go` and `ping+go` (lib/protocol/relay.ts step 5; config hold_inner_sessions,
   * default true). Off: only the plain modes are offered, so platforms hold no inner session here.
   */
  holdSessions?: boolean;
}

/** A channel or a hold refused by a limit, named by its config key. */
export interface LimitRefusal {
  limit: 'max_pending_channels' | 'max_held_sessions';
  proxyId: string;
  code: ErrorCode;
  reason: string;
}

/** Built once per credentials and offered modes (construction, reload) and shared by every channel. */
interface Loaded {
  context: tls.SecureContext;
  anchors: TrustAnchors;
  /** The inner ALPNs offered, in order of preference (lib/protocol/relay.ts innerServerAlpns). */
  alpns: readonly string[];
}

/** How long a refused platform has to read the status line and close before the session is cut. */
const REFUSAL_GRACE_MS = 2000;

export const DEFAULT_MAX_PENDING_CHANNELS = 256;
/** Config max_held_sessions' default: see its description in config.ts. */
export const DEFAULT_MAX_HELD_SESSIONS = 1024;

/** How long an inner session ticket is accepted: a grant's default lifetime (its expiry is judged anyway). */
const INNER_TICKET_LIFETIME_SEC = 300;

export class InnerServer {
  readonly #opts: InnerServerOptions;
  #credentials: InnerCredentials;
  #holdSessions: boolean;
  #loaded: Loaded;
  #allowlist: Allowlist;
  #upstreamTls: UpstreamTls | undefined;
  #maxPendingChannels: number;
  #maxHeldSessions: number;
  #handshakeTimeoutMs: number;
  readonly #limits: ModeLimits;
  /** Channels whose inner handshake is not complete, per proxy id. */
  readonly #pending = new Map<string, number>();
  /** Sessions held for their GO (or whose handshake picked `<mode>+go`), per proxy id. */
  readonly #held = new Map<string, number>();

  constructor(opts: InnerServerOptions) {
    this.#opts = opts;
    this.#credentials = opts.credentials;
    this.#holdSessions = opts.holdSessions ?? true;
    this.#loaded = load(opts.credentials, this.#holdSessions);
    this.#allowlist = opts.allowlist;
    this.#upstreamTls = opts.upstreamTls;
    this.#maxPendingChannels = opts.maxPendingChannels ?? DEFAULT_MAX_PENDING_CHANNELS;
    this.#maxHeldSessions = opts.maxHeldSessions ?? DEFAULT_MAX_HELD_SESSIONS;
    this.#handshakeTimeoutMs = opts.handshakeTimeoutMs ?? 10_000;
    this.#limits = { ...DEFAULT_MODE_LIMITS, ...opts.limits };
  }

  /** What new channels are held to now (reported as live settings). */
  get settings(): {
    handshakeTimeoutMs: number;
    maxPendingChannels: number;
    maxHeldSessions: number;
    limits: Readonly<ModeLimits>;
    holdSessions: boolean;
  } {
    return {
      handshakeTimeoutMs: this.#handshakeTimeoutMs,
      maxPendingChannels: this.#maxPendingChannels,
      maxHeldSessions: this.#maxHeldSessions,
      limits: this.#limits,
      holdSessions: this.#holdSessions,
    };
  }

  /** Channels waiting for their inner handshake now, over every proxy. */
  get pendingChannels(): number {
    return total(this.#pending);
  }

  /** Sessions held for their GO now, over every proxy. */
  get heldSessions(): number {
    return total(this.#held);
  }

  /** May `proxyId` open one more channel now? A refusal is reported (onChannelRefused) and the open rejected. */
  admitChannel(proxyId: string): boolean {
    const verdict = admitChannel(this.#pending.get(proxyId) ?? 0, this.#maxPendingChannels, proxyId);
    if (!verdict.ok) {
      this.#opts.onChannelRefused?.({
        limit: 'max_pending_channels',
        proxyId,
        code: verdict.code,
        reason: verdict.reason,
      });
    }
    return verdict.ok;
  }

  /**
   * SIGHUP / renewal: new streams use the new cert, anchors, allowlist; streams already running keep theirs.
   * Throws (keeping the old state) when the credentials do not load.
   */
  reload(update: {
    credentials?: InnerCredentials;
    allowlist?: Allowlist;
    upstreamTls?: UpstreamTls | undefined;
    maxPendingChannels?: number;
    maxHeldSessions?: number;
    handshakeTimeoutMs?: number;
    limits?: Partial<ModeLimits>;
    holdSessions?: boolean;
  }): void {
    const holdSessions = update.holdSessions ?? this.#holdSessions;
    const credentials = update.credentials ?? this.#credentials;
    // A new context for new credentials or another list of modes; sessions held already keep theirs until GO
    // (and are judged in full there: other anchors). The same credentials again (every SIGHUP passes them) keep
    // the context, so sessions held across a reload that changed nothing of it are judged again cheaply.
    const changed = update.credentials !== undefined && !sameCredentials(update.credentials, this.#credentials);
    if (changed || holdSessions !== this.#holdSessions) this.#loaded = load(credentials, holdSessions);
    this.#credentials = credentials;
    this.#holdSessions = holdSessions;
    if (update.maxPendingChannels !== undefined) this.#maxPendingChannels = update.maxPendingChannels;
    if (update.maxHeldSessions !== undefined) this.#maxHeldSessions = update.maxHeldSessions;
    if (update.handshakeTimeoutMs !== undefined) this.#handshakeTimeoutMs = update.handshakeTimeoutMs;
    // In place: streams already running read the same object, new ones see the new values at once.
    if (update.limits) Object.assign(this.#limits, update.limits);
    if (update.allowlist) this.#allowlist = update.allowlist;
    if ('upstreamTls' in update) this.#upstreamTls = update.upstreamTls;
  }

  /** Serves one forwarded channel. */
  handle(channel: Duplex, meta: { proxyId: string }): void {
    const now = this.#opts.now ?? (() => new Date());
    const loaded = this.#loaded;
    const { proxyId } = meta;
    // Pending until the inner handshake completes (or the channel goes); counted per proxy for admitChannel.
    this.#pending.set(proxyId, (this.#pending.get(proxyId) ?? 0) + 1);
    let pending = true;
    const settle = () => {
      if (!pending) return;
      pending = false;
      decrement(this.#pending, proxyId);
    };
    // A held slot: taken when the handshake picks `<mode>+go`, given back once (GO, refusal, end, close).
    let holding = false;
    const release = () => {
      if (!holding) return;
      holding = false;
      decrement(this.#held, proxyId);
    };
    // `<mode>+go` declined (at the bound, or not offered with holding off) and the platform offered no plain mode:
    // its handshake fails, quietly (a session to hold ahead, not a stream).
    let holdDeclined = false;
    const socket = new tls.TLSSocket(channel, {
      isServer: true,
      secureContext: loaded.context,
      requestCert: true,
      rejectUnauthorized: false, // THE verifier decides, below
      // Our order of preference (loaded.alpns), `<mode>+go` only while this proxy's held sessions are below the bound.
      ALPNCallback: ({ protocols }) => {
        release(); // a second ClientHello (after a HelloRetryRequest) is selected for afresh
        holdDeclined = false;
        for (const alpn of loaded.alpns) {
          if (!protocols.includes(alpn)) continue;
          if (!isGoAlpn(alpn)) return alpn;
          const verdict = admitHold(this.#held.get(proxyId) ?? 0, this.#maxHeldSessions, proxyId);
          if (verdict.ok) {
            holding = true;
            this.#held.set(proxyId, (this.#held.get(proxyId) ?? 0) + 1);
            return alpn;
          }
          if (!holdDeclined) {
            holdDeclined = true;
            this.#opts.onChannelRefused?.({
              limit: 'max_held_sessions',
              proxyId,
              code: verdict.code,
              reason: verdict.reason,
            });
          }
        }
        // Offered `<mode>+go` alone where none is offered (hold_inner_sessions off, by config or a reload since
        // the client last negotiated one): a session to hold ahead of need, declined as at the bound; the client
        // then holds none and dials its next stream in full.
        if (!holdDeclined && protocols.length > 0 && protocols.every(isGoAlpn)) holdDeclined = true;
        return undefined;
      },
    });
    socket.once('close', settle);
    channel.once('close', settle);
    socket.once('close', release);
    channel.once('close', release);
    let closing = false;
    const cleanup = () => {
      socket.destroy();
      channel.destroy();
    };
    socket.once('close', () => channel.destroy());
    channel.once('close', () => socket.destroy());
    // Tells the platform why (status line, or an HTTP answer in http mode) and closes; silent when undefined.
    const tellAndClose = (told: RelayStatus | undefined, mode: string | undefined) => {
      if (closing) return;
      closing = true;
      if (!told || told.ok) return cleanup();
      // The platform reads the line and closes; a peer that does not is cut after a grace period.
      setTimeout(cleanup, REFUSAL_GRACE_MS).unref();
      if (mode === 'http') return serveHttpRefusal(socket, told, this.#limits);
      socket.resume(); // bytes the platform sent early are dropped, never forwarded
      socket.end(encodeStatus(told));
    };
    const refuse = (code: ErrorCode, reason: string, extra: Partial<Refusal> = {}, told?: DisclosureContext) => {
      this.#opts.onRefused({ code, reason, proxyId: meta.proxyId, ...extra });
      tellAndClose(told ? refusalStatus(code, reason, told) : undefined, extra.mode);
    };
    socket.on('error', (err) => {
      if (secured) return;
      // Offered only `<mode>+go` at the held bound (counted above) or with holding off: a session to hold ahead
      // of need, not opened; no stream was asked for yet (the platform dials it in full when one is), so nothing
      // is audited.
      if (holdDeclined && /APPLICATION_PROTOCOL/.test((err as NodeJS.ErrnoException).code ?? '')) {
        closing = true;
        return cleanup();
      }
      refuse(...handshakeRefusal(err));
    });
    let secured = false;
    // `tcp+go`, `ping+go`: secured and admitted, waiting for the platform's GO byte (held, no longer pending; the
    // same timer bounds it).
    let held = false;
    const handshakeTimeoutMs = this.#handshakeTimeoutMs;
    const timer = setTimeout(
      () =>
        held
          ? refuse('E_TIMEOUT', `no go within ${handshakeTimeoutMs} ms of the inner session's start`, heldWho)
          : refuse('E_TIMEOUT', `no inner TLS handshake within ${handshakeTimeoutMs} ms`),
      handshakeTimeoutMs,
    );
    let heldWho: Partial<Refusal> = {};
    socket.once('close', () => clearTimeout(timer));
    // End of stream from the platform before the handshake finished, or before its GO (it gave up; the proxy
    // passes a half-close on as a channel EOF): no stream can start, so the channel goes now, no refusal.
    const gaveUp = () => {
      if ((!secured || held) && !closing) {
        closing = true;
        cleanup();
      }
    };
    channel.once('end', gaveUp);
    socket.once('end', gaveUp);
    socket.once('secure', () => {
      secured = true;
      settle();
      if (socket.getProtocol() !== 'TLSv1.3') {
        release();
        clearTimeout(timer);
        return refuse('E_CERT_WEAK_ALGORITHM', `${socket.getProtocol()} refused`);
      }
      const admitted = this.#admit(socket, loaded, now());
      if (!admitted.ok || !isGoAlpn(socket.alpnProtocol)) {
        release();
        clearTimeout(timer);
        return serve(admitted);
      }
      // Held until GO: the mode runs (tcp: the target dial) only for a stream the platform asked for, and the
      // grant is judged again at GO (revocations, validity by the clock then): nothing decided now that can
      // change is taken for granted later.
      held = true;
      const { grant, mode } = admitted.value;
      heldWho = { actor: grant.actor, grantId: grant.grantId, mode };
      const onGo = () => {
        const first = socket.read(1) as Buffer | null;
        if (first === null) return;
        socket.off('readable', onGo);
        held = false;
        release();
        clearTimeout(timer);
        socket.pause();
        if (first[0] !== GO_BYTE) {
          return refuse('E_STREAM_CLOSED', `expected go (0x01) first, got 0x${first[0]!.toString(16)}`, heldWho, {});
        }
        // Judged again by the clock and revocations of now on what was verified at the handshake (the session's
        // certificate cannot change); in full when a reload brought other anchors meanwhile.
        serve(this.#admitAgain(admitted.value, now()) ?? this.#admit(socket, this.#loaded, now()));
      };
      socket.on('readable', onGo);
    });
    // Today's path from the admission decision on: the mode, its target dial and status line.
    const serve = (admitted: Verdict<Admitted>) => {
      if (!admitted.ok) {
        const mode = modeOfAlpn(socket.alpnProtocol) ?? String(socket.alpnProtocol);
        return refuse(admitted.code, admitted.reason, { mode }, {});
      }
      const { grant, mode, peer } = admitted.value;
      const who = { actor: grant.actor, grantId: grant.grantId, mode };
      const told = { target: grant.target };
      if (this.#opts.registry.full) return refuse('E_LIMIT', 'too many streams on this gateway', who, told);
      socket.pause(); // nothing is read until the mode is wired
      const handle = this.#opts.registry.add(
        { grant, serialHex: peer.serialHex, mode, proxyId: meta.proxyId },
        { destroy: () => (closing ? undefined : cleanup()) },
      );
      // After registration a refusal is audited twice: as a refusal, and as the stream's outcome.
      const refuseStream = (code: ErrorCode, reason: string, cause?: string) => {
        refuse(code, reason, who, cause === undefined ? told : { ...told, cause });
        handle.end(code, reason);
      };
      const ok = () => socket.write(encodeStatus({ ok: true }));
      if (mode === 'ping') {
        ok();
        return servePing(socket.resume(), handle, this.#limits);
      }
      if (mode === 'health') {
        ok();
        return serveHealth(socket, handle, this.#opts.health());
      }
      const allowlist = this.#allowlist;
      const upstreamTls = this.#upstreamTls;
      void resolveTarget(allowlist, grant.target, this.#opts.resolver).then((dial) => {
        if (socket.destroyed) return handle.end('ok', 'platform closed before the target was resolved');
        if (!dial.ok) {
          return refuseStream(
            dial.code,
            dial.reason,
            dial.code === 'E_TARGET_UNREACHABLE' ? 'name resolution' : undefined,
          );
        }
        if (mode === 'tcp') {
          return serveTcp(socket, handle, dial.value, this.#limits, {
            connected: ok,
            unreachable: (reason, cause) => refuseStream('E_TARGET_UNREACHABLE', reason, cause),
          });
        }
        serveHttp(socket, handle, dial.value, {
          limits: this.#limits,
          ...(upstreamTls ? { upstreamTls } : {}),
          checkRequested: (target) =>
            checkGrant(grant, {
              orgId: this.#opts.orgId,
              gatewayId: this.#opts.gatewayId,
              target,
              mode: mode as GrantMode,
              now: now(),
            }),
        });
        socket.resume();
      });
    };
  }

  /** THE admission decision, on the peer's leaf alone first (lib/pki/tls decideLeafFirst: the same verdict). */
  #admit(socket: tls.TLSSocket, loaded: Loaded, now: Date): Verdict<Admitted> {
    const ctx = this.#context(loaded, now);
    return decideLeafFirst(socket, (chain) => admitStream(chain, socket.alpnProtocol, ctx));
  }

  /** A held session at its GO: undefined when the anchors changed since its admission (then #admit). */
  #admitAgain(admitted: Admitted, now: Date): Verdict<Admitted> | undefined {
    return admitAgain(admitted, this.#context(this.#loaded, now));
  }

  #context(loaded: Loaded, now: Date): AdmissionContext {
    return {
      orgId: this.#opts.orgId,
      gatewayId: this.#opts.gatewayId,
      anchors: loaded.anchors,
      revoked: this.#opts.revoked,
      now,
    };
  }
}

function total(counts: Map<string, number>): number {
  let n = 0;
  for (const v of counts.values()) n += v;
  return n;
}

function decrement(counts: Map<string, number>, key: string): void {
  const n = (counts.get(key) ?? 1) - 1;
  if (n > 0) counts.set(key, n);
  else counts.delete(key);
}

function sameCredentials(a: InnerCredentials, b: InnerCredentials): boolean {
  return (
    a.key === b.key &&
    a.chain === b.chain &&
    a.clientCaPems.length === b.clientCaPems.length &&
    a.clientCaPems.every((pem, i) => pem === b.clientCaPems[i])
  );
}

/** A failed handshake, as a refusal code: no common mode, too old a protocol, or anything else. */
function handshakeRefusal(err: Error): [ErrorCode, string] {
  const code = (err as NodeJS.ErrnoException).code ?? err.message;
  if (/APPLICATION_PROTOCOL/.test(code))
    return ['E_TARGET_NOT_ALLOWED', `no common mode (offer one of ${MODE_ALPNS.join(', ')})`];
  if (/VERSION|PROTOCOL/.test(code)) return ['E_CERT_WEAK_ALGORITHM', `inner TLS handshake failed: ${code}`];
  return ['E_CERT_UNTRUSTED', `inner TLS handshake failed: ${code}`];
}

function load(c: InnerCredentials, holdSessions: boolean): Loaded {
  if (c.clientCaPems.length === 0) throw new GatewayError('E_CONFIG_INVALID', 'no gateway client CA to trust');
  // Resumable (lib/pki/tls.ts): a platform resumes with the session of its grant (lib/client/grant-tls.ts), and
  // #admit judges a resumed session exactly as a full one: its certificate, today's clock and revocations.
  const alpns = innerServerAlpns(holdSessions);
  const options = mtlsResumableServerOptions(
    { key: c.key, chain: c.chain, anchors: [...c.clientCaPems], alpn: alpns },
    INNER_TICKET_LIFETIME_SEC,
  );
  const context = tls.createSecureContext(options);
  return { context, anchors: unwrap(loadTrustAnchors([...c.clientCaPems])), alpns };
}
