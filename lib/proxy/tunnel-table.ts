/**
 * The router: which tunnels each gateway holds here, and which one a new stream takes. Pure bookkeeping (no
 * sockets): the SSH listener adds and removes tunnels, the relay asks for candidates and accounts streams.
 *
 * A gateway may hold several tunnels at once: renewal makes the new one before the old one drains, and gateway
 * replicas (several processes enrolled for one gateway id with --replica) each keep their own. New streams spread
 * over the healthy, unexpired tunnels: the one carrying the fewest streams first, the least recently picked among
 * equals (round-robin for short streams), the newest among those never picked. A tunnel that failed to open a
 * channel is marked unhealthy and tried only after every healthy one; the relay tries the next candidate when an
 * open fails, so one dead replica costs a client no failed stream. A tunnel leaves the table as soon as the
 * proxy learns that it ends: its SSH connection closes (a replica killed or its host gone: the kernel's FIN or
 * RST, or the gateway's keepalive giving up) or the gateway cancels its forward (drain on SIGTERM, renewal). Tunnels are keyed by the org named in the gateway's
 * *certificate*, so a platform of org B can never be routed to org A's gateway of the same name.
 *
 * On an instance proxy it also keeps each org's tunnels and streams, for the per-org quotas (withinQuota).
 */
import { accept, refuse, type Verdict } from '../errors/codes.js';
import { type GatewayLogin, type LimitRefusal, type OrgQuotas, refuseAt, withinQuota } from './admission.js';

export interface Tunnel<H> {
  readonly id: number;
  readonly gateway: GatewayLogin;
  /** The port answered to `tcpip-forward` (bind port 0 gets one allocated); forwarded-tcpip names it. */
  readonly boundPort: number;
  readonly openedAtMs: number;
  healthy: boolean;
  /** Streams carried now. */
  streams: number;
  /** When a stream was last opened here, as the table's pick sequence (0: never): least recently picked first. */
  lastPick: number;
  /** The listener's own connection object. */
  readonly handle: H;
}

export interface TunnelTableOptions {
  /** Concurrent streams per gateway (all its tunnels together). */
  maxStreamsPerGateway: number;
  /** Per-org quotas (an instance proxy); absent: none. */
  orgQuotas?: OrgQuotas;
}

const key = (orgId: string, gatewayId: string): string => `${orgId}\n${gatewayId}`;

export class TunnelTable<H> {
  readonly #byGateway = new Map<string, Tunnel<H>[]>();
  readonly #byId = new Map<number, Tunnel<H>>();
  #nextId = 1;
  #streams = 0;
  #picks = 0;
  /** Tunnels and streams held per org (entries dropped at zero). */
  readonly #byOrg = new Map<string, { tunnels: number; streams: number }>();
  maxStreamsPerGateway: number;
  orgQuotas: OrgQuotas | undefined;

  constructor(options: TunnelTableOptions) {
    this.maxStreamsPerGateway = options.maxStreamsPerGateway;
    this.orgQuotas = options.orgQuotas;
  }

  /** Tunnels and streams one org holds here now. */
  usageOf(orgId: string): { tunnels: number; streams: number } {
    const u = this.#byOrg.get(orgId);
    return { tunnels: u?.tunnels ?? 0, streams: u?.streams ?? 0 };
  }

  /** May `orgId` hold one more tunnel here? (E_QUOTA_EXCEEDED at its quota on an instance proxy.) */
  admitTunnel(orgId: string): Verdict<void> | LimitRefusal {
    return withinQuota('tunnels', orgId, this.usageOf(orgId).tunnels, this.orgQuotas);
  }

  #count(orgId: string, tunnels: number, streams: number): void {
    const u = this.#byOrg.get(orgId) ?? { tunnels: 0, streams: 0 };
    u.tunnels += tunnels;
    u.streams += streams;
    if (u.tunnels <= 0 && u.streams <= 0) this.#byOrg.delete(orgId);
    else this.#byOrg.set(orgId, u);
  }

  get size(): number {
    return this.#byId.size;
  }

  /** Streams carried by every tunnel. */
  get streamCount(): number {
    return this.#streams;
  }

  /** Gateways with at least one tunnel. */
  get gatewayCount(): number {
    return this.#byGateway.size;
  }

  add(gateway: GatewayLogin, boundPort: number, handle: H, nowMs: number): Tunnel<H> {
    const tunnel: Tunnel<H> = {
      id: this.#nextId++,
      gateway,
      boundPort,
      openedAtMs: nowMs,
      healthy: true,
      streams: 0,
      lastPick: 0,
      handle,
    };
    const k = key(gateway.orgId, gateway.gatewayId);
    const list = this.#byGateway.get(k) ?? [];
    list.push(tunnel);
    this.#byGateway.set(k, list);
    this.#byId.set(tunnel.id, tunnel);
    this.#count(gateway.orgId, 1, 0);
    return tunnel;
  }

  get(id: number): Tunnel<H> | undefined {
    return this.#byId.get(id);
  }

  /** Forgets a tunnel; its stream count leaves the totals (the streams themselves die with it). */
  remove(id: number): boolean {
    const tunnel = this.#byId.get(id);
    if (!tunnel) return false;
    this.#byId.delete(id);
    this.#streams -= tunnel.streams;
    this.#count(tunnel.gateway.orgId, -1, -tunnel.streams);
    const k = key(tunnel.gateway.orgId, tunnel.gateway.gatewayId);
    const list = (this.#byGateway.get(k) ?? []).filter((t) => t.id !== id);
    if (list.length) this.#byGateway.set(k, list);
    else this.#byGateway.delete(k);
    return true;
  }

  setHealthy(id: number, healthy: boolean): void {
    const tunnel = this.#byId.get(id);
    if (tunnel) tunnel.healthy = healthy;
  }

  /** Streams carried for one gateway, over all its tunnels. */
  streamsOf(orgId: string, gatewayId: string): number {
    return (this.#byGateway.get(key(orgId, gatewayId)) ?? []).reduce((n, t) => n + t.streams, 0);
  }

  /**
   * Tunnels to try for a new stream of (orgId, gatewayId), best first: healthy before unhealthy; within each,
   * fewest open streams, then least recently picked, then newest; expired ones never. Refuses E_GATEWAY_OFFLINE
   * when none is left, E_LIMIT when the gateway already carries its maximum of streams, E_QUOTA_EXCEEDED when
   * its org holds its stream quota here.
   */
  candidates(orgId: string, gatewayId: string, nowMs: number): Verdict<Tunnel<H>[]> | LimitRefusal {
    const live = (this.#byGateway.get(key(orgId, gatewayId)) ?? []).filter(
      // The org check repeats the key on purpose: routing across orgs must be impossible, not just unlikely.
      (t) => t.gateway.orgId === orgId && t.gateway.gatewayId === gatewayId && t.gateway.validBeforeMs > nowMs,
    );
    if (live.length === 0) return refuse('E_GATEWAY_OFFLINE', `gateway ${gatewayId} has no tunnel here`);
    if (this.streamsOf(orgId, gatewayId) >= this.maxStreamsPerGateway) {
      return refuseAt(
        'max_streams_per_gateway',
        'E_LIMIT',
        `gateway ${gatewayId} carries its maximum of ${this.maxStreamsPerGateway} streams`,
      );
    }
    const quota = withinQuota('streams', orgId, this.usageOf(orgId).streams, this.orgQuotas);
    if (!quota.ok) return quota;
    const order = (t: Tunnel<H>) => (t.healthy ? 0 : 1);
    return accept(
      [...live].sort(
        (a, b) =>
          order(a) - order(b) ||
          a.streams - b.streams ||
          a.lastPick - b.lastPick ||
          b.openedAtMs - a.openedAtMs ||
          b.id - a.id,
      ),
    );
  }

  streamOpened(id: number): void {
    const tunnel = this.#byId.get(id);
    if (!tunnel) return;
    tunnel.lastPick = ++this.#picks;
    tunnel.streams++;
    this.#streams++;
    this.#count(tunnel.gateway.orgId, 0, 1);
  }

  streamClosed(id: number): void {
    const tunnel = this.#byId.get(id);
    if (!tunnel || tunnel.streams === 0) return;
    tunnel.streams--;
    this.#streams--;
    this.#count(tunnel.gateway.orgId, 0, -1);
  }

  /** Every tunnel matching `predicate` (revocation sweeps, expiry, drain). */
  filter(predicate: (t: Tunnel<H>) => boolean): Tunnel<H>[] {
    return [...this.#byId.values()].filter(predicate);
  }

  all(): Tunnel<H>[] {
    return [...this.#byId.values()];
  }
}
