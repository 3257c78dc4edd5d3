/**
 * `ping` mode through EVERY proxy of the grant, one at a time: stream setup time (outer TLS, status line,
 * inner TLS) and round trips of small probes that the gateway echoes. Tells which proxies reach the gateway
 * and how fast, where `open` would stop at the first that works.
 */
import { randomBytes } from 'node:crypto';
import type tls from 'node:tls';
import type { GatewayConnector } from './connector.js';
import { type DialOptions, dialViaProxy } from './dial.js';
import { atHop, ConnectError } from './errors.js';
import type { ClientGrant, ProxyEndpoint } from './grant.js';

export interface PingResult {
  proxyId: string;
  scope: ProxyEndpoint['scope'];
  address: string;
  ok: boolean;
  /** Outer TLS + status line + inner TLS, ms. */
  setupMs?: number;
  timings?: { proxyMs: number; statusMs: number; gatewayMs: number };
  /** One round trip per probe, ms. */
  rttMs: number[];
  error?: ConnectError;
}

export interface PingOptions extends DialOptions {
  /** Probes per proxy (default 4). */
  count?: number;
  /** Bound on each probe's echo (default 5 s). */
  probeTimeoutMs?: number;
  onResult?: (r: PingResult) => void;
}

const PROBE_BYTES = 32;

/** Pings the gateway through each proxy of `grant` (a grant for mode `ping`). */
export async function pingEachProxy(grant: ClientGrant, opts: PingOptions = {}): Promise<PingResult[]> {
  const results: PingResult[] = [];
  for (const proxy of grant.proxies) {
    const r = await pingVia(grant, proxy, opts);
    opts.onResult?.(r);
    results.push(r);
  }
  return results;
}

/** Gets a ping grant from the connector, then pings through every proxy. */
export async function ping(
  connector: GatewayConnector,
  target: Parameters<GatewayConnector['grant']>[0],
  opts: PingOptions = {},
): Promise<PingResult[]> {
  return pingEachProxy(await connector.grant(target, 'ping'), opts);
}

async function pingVia(grant: ClientGrant, proxy: ProxyEndpoint, opts: PingOptions): Promise<PingResult> {
  const base = { proxyId: proxy.proxyId, scope: proxy.scope, address: proxy.tlsAddress, rttMs: [] as number[] };
  const t0 = performance.now();
  let socket: tls.TLSSocket | undefined;
  try {
    const stream = await dialViaProxy(grant, proxy, 'ping', opts);
    socket = stream.socket;
    const setupMs = performance.now() - t0;
    const rttMs: number[] = [];
    for (let i = 0; i < (opts.count ?? 4); i++) {
      rttMs.push(await probe(socket, opts.probeTimeoutMs ?? 5000, proxy.proxyId));
    }
    return { ...base, ok: true, setupMs, timings: stream.timings, rttMs };
  } catch (err) {
    return { ...base, ok: false, error: atHop(err, 'proxy', proxy.proxyId) };
  } finally {
    socket?.destroy();
  }
}

/** Writes a random probe and waits for the same bytes back. */
function probe(socket: tls.TLSSocket, timeoutMs: number, proxyId: string): Promise<number> {
  const payload = randomBytes(PROBE_BYTES);
  return new Promise((resolve, reject) => {
    let got = Buffer.alloc(0);
    const start = performance.now();
    const fail = (code: 'E_TIMEOUT' | 'E_STREAM_CLOSED', detail: string) => {
      cleanup();
      reject(new ConnectError(code, 'gateway', detail, { proxyId }));
    };
    const timer = setTimeout(() => fail('E_TIMEOUT', `no echo within ${timeoutMs} ms`), timeoutMs);
    const onData = (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (got.length < payload.length) return;
      cleanup();
      if (got.subarray(0, payload.length).equals(payload)) resolve(performance.now() - start);
      else reject(new ConnectError('E_STREAM_CLOSED', 'gateway', 'ping echo did not match the probe', { proxyId }));
    };
    // Refusals came as the status line before the first probe; a close now is a stream ended mid-way (the grant
    // expired or was revoked, the echo bound was reached): the gateway's audit log has the code.
    const onClose = () =>
      fail('E_STREAM_CLOSED', 'no echo: the gateway closed the ping stream (see its audit log for the code)');
    const cleanup = () => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('error', onClose);
    };
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.once('error', onClose);
    socket.write(payload);
  });
}
