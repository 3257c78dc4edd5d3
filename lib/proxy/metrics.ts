/** The proxy's Prometheus series (infisical_proxy_*), over lib/runtime's per-daemon registry. */
import type { Counter } from 'prom-client';
import type { ErrorCode } from '../errors/codes.js';
import type { Direction } from '../protocol/splice.js';
import type { DaemonMetrics } from '../runtime/metrics.js';
import type { LimitName } from './admission.js';

export interface ProxyGauges {
  tunnels: number;
  gateways: number;
  streams: number;
  bufferedBytes: number;
  sshConnections: number;
  sshUnauthenticated: number;
  tlsConnections: number;
  tlsUnauthenticated: number;
  sshUnauthenticatedSources: number;
  tlsUnauthenticatedSources: number;
}

export class ProxyMetrics {
  readonly #refusals: Counter<'listener' | 'code'>;
  readonly #limitRefusals: Counter<'listener' | 'limit'>;
  readonly #streams: Counter;
  readonly #tunnels: Counter;
  readonly #revocations: Counter<'kind'>;
  readonly #bytes: Record<Direction, Counter.Internal>;

  constructor(metrics: DaemonMetrics, gauges: () => ProxyGauges) {
    const p = metrics.prefix;
    const gauge = (name: keyof ProxyGauges, series: string, help: string) =>
      metrics.gauge(`${p}${series}`, help, [], (g) => {
        g.set(gauges()[name]);
      });
    gauge('tunnels', 'tunnels', 'Tunnels held by gateways now.');
    gauge('gateways', 'gateways', 'Gateways with at least one tunnel now.');
    gauge('streams', 'streams', 'Platform streams carried now.');
    gauge('bufferedBytes', 'buffered_bytes', 'Bytes held in stream buffers now (bounded by backpressure).');
    gauge('sshConnections', 'ssh_connections', 'SSH connections, authenticated or not.');
    gauge('sshUnauthenticated', 'ssh_unauthenticated_connections', 'SSH connections not authenticated yet.');
    gauge('tlsConnections', 'tls_connections', 'Platform (TLS) connections, admitted or not.');
    gauge(
      'tlsUnauthenticated',
      'tls_unauthenticated_connections',
      'Platform connections whose route is not admitted yet.',
    );
    gauge(
      'sshUnauthenticatedSources',
      'ssh_unauthenticated_sources',
      'Sources (IPv4 address, IPv6 /64) with an SSH connection not authenticated yet.',
    );
    gauge(
      'tlsUnauthenticatedSources',
      'tls_unauthenticated_sources',
      'Sources (IPv4 address, IPv6 /64) with a platform connection whose route is not admitted yet.',
    );
    this.#refusals = metrics.counter(`${p}refusals_total`, 'Refused connections and requests, by stable error code.', [
      'listener',
      'code',
    ]);
    this.#limitRefusals = metrics.counter(
      `${p}limit_refusals_total`,
      'Connections, logins, tunnels and streams refused by an abuse limit, by listener and limit (its config key).',
      ['listener', 'limit'],
    );
    this.#streams = metrics.counter(`${p}streams_total`, 'Platform streams opened.');
    this.#tunnels = metrics.counter(`${p}tunnels_total`, 'Tunnels opened.');
    this.#revocations = metrics.counter(`${p}revocations_total`, 'Revocation entries applied.', ['kind']);
    const bytes = metrics.counter(`${p}bytes_total`, 'Bytes relayed (up: platform to gateway).', ['direction']);
    this.#bytes = { up: bytes.labels('up'), down: bytes.labels('down') };
  }

  refusal(listener: 'ssh' | 'tls', code: ErrorCode): void {
    this.#refusals.inc({ listener, code });
  }

  limitRefusal(listener: 'ssh' | 'tls', limit: LimitName): void {
    this.#limitRefusals.inc({ listener, limit });
  }

  streamOpened(): void {
    this.#streams.inc();
  }

  tunnelOpened(): void {
    this.#tunnels.inc();
  }

  revocation(kind: string): void {
    this.#revocations.inc({ kind });
  }

  bytes(direction: Direction, n: number): void {
    this.#bytes[direction].inc(n);
  }
}
