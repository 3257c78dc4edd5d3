/**
 * In-test stand-ins for the parts around lib/client: a GrantSource that mints with the World's CAs (what the
 * CA daemon would sign for our CSRs), a relay that speaks lib/protocol/relay.ts (outer mTLS, one status line,
 * then bytes piped to a gateway), and a gateway inner-TLS server. They use the same lib/pki checks as the real
 * daemons, so the client is tested against peers that would refuse it for the right reasons.
 */

import { createPublicKey } from 'node:crypto';
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import type { GrantRequest, GrantResponse, GrantSource, ProxyEndpoint } from '../../lib/client/grant.js';
import { type ErrorCode, GatewayError, unwrap } from '../../lib/errors/codes.js';
import { loadIssuer } from '../../lib/pki/ca.js';
import { parseCsr } from '../../lib/pki/csr.js';
import type { AccessGrant } from '../../lib/pki/grant.js';
import { identityUri } from '../../lib/pki/identity.js';
import { generateKeyPairSync as generateKeyPair } from '../../lib/pki/keys.js';
import { issuePlatformInnerClientCert, issuePlatformOuterClientCert } from '../../lib/pki/profiles.js';
import { mtlsServerOptions, onVerifiedConnection } from '../../lib/pki/tls.js';
import { encodeStatus, MODE_ALPNS, modeHasStatus, RELAY_ALPN, type RelayStatus } from '../../lib/protocol/relay.js';
import type { Scope, TlsCredentials, World, X509Ca } from '../helpers/world.js';
import { createIntermediateCa } from '../pki/fixtures.js';

export interface FakeSourceOptions {
  world: World;
  /** The proxies the CA lists. */
  proxies: () => ProxyEndpoint[];
  identityId?: string;
  lifetimeSec?: number;
  /** Refuse every request with this code (a policy denial). */
  refuse?: ErrorCode;
  /** Grant ids; default grant-1, grant-2… per source. */
  grantId?: () => string;
}

/** A GrantSource that signs our CSRs with the World's CAs, like the CA's POST /v1/grants. */
export class FakeGrantSource implements GrantSource {
  requests: GrantRequest[] = [];
  constructor(readonly o: FakeSourceOptions) {}

  async requestGrant(req: GrantRequest): Promise<GrantResponse> {
    this.requests.push(req);
    if (this.o.refuse) throw new GatewayError(this.o.refuse, 'fake CA refuses');
    const { world } = this.o;
    const now = world.now();
    const lifetimeSec = this.o.lifetimeSec ?? 300;
    const uri = identityUri(world.trustDomain, req.orgId, this.o.identityId ?? 'platform');
    const outerKey = unwrap(parseCsr(req.outerCsr)).publicKey;
    const innerKey = unwrap(parseCsr(req.innerCsr)).publicKey;
    const proxies = this.o.proxies();
    const outer: Partial<Record<Scope, string>> = {};
    for (const scope of new Set(proxies.map((p) => p.scope))) {
      const ca = world.proxyCas(scope, req.orgId).pkiClient;
      const route = { version: 1 as const, orgId: req.orgId, gatewayId: req.gatewayId };
      outer[scope] = unwrap(
        issuePlatformOuterClientCert(ca.issuer, { subjectKey: outerKey, uri, now, lifetimeSec, route }),
      ).pem;
    }
    const grant: AccessGrant = {
      version: 1,
      grantId: this.o.grantId?.() ?? `grant-${this.requests.length}`,
      orgId: req.orgId,
      gatewayId: req.gatewayId,
      actor: uri,
      target: req.target,
      modes: [req.mode],
      notAfter: Math.floor(now.getTime() / 1000) + lifetimeSec,
    };
    const inner = unwrap(
      issuePlatformInnerClientCert(world.org(req.orgId).gatewayClient.issuer, {
        subjectKey: innerKey,
        uri,
        now,
        lifetimeSec,
        grant,
      }),
    );
    const scopes = [...new Set(proxies.map((p) => p.scope))];
    return {
      grantId: grant.grantId,
      expiresAt: new Date(grant.notAfter * 1000).toISOString(),
      // As the CA: the org-scope chain when org proxies exist, else the instance one.
      outerCertificateChain: (outer.org ?? outer.instance)!,
      outerCertificateChains: outer,
      innerCertificateChain: inner.pem,
      gatewayUri: world.gatewayUri(req.orgId, req.gatewayId),
      trust: {
        proxyServerCaCerts: scopes.map((s) => world.proxyCas(s, req.orgId).pkiServer.pem),
        gatewayServerCaCerts: [world.org(req.orgId).gatewayServer.pem],
      },
      proxies,
    };
  }
}

export interface Listening {
  port: number;
  connections: number;
  close(): Promise<void>;
}

async function listen(server: net.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

function tracked(server: net.Server, port: number, counter: { connections: number }): Listening {
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    counter.connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  return Object.assign(counter, {
    port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  });
}

/**
 * A relay for one gateway: verifies the outer client cert (route required), writes `status`, then pipes to
 * `gatewayPort`. `status` 'ok' = `{"ok":true}`; an error code = that refusal.
 */
export async function startRelay(o: {
  world: World;
  scope: Scope;
  orgId: string;
  proxyId: string;
  gatewayPort: () => number;
  status?: 'ok' | ErrorCode;
  /** Override the server cert (a stray CA, another proxy's name…). */
  credentials?: TlsCredentials;
}): Promise<Listening & { endpoint: ProxyEndpoint }> {
  const creds = o.credentials ?? o.world.proxyTls({ scope: o.scope, orgId: o.orgId, proxyId: o.proxyId });
  const cas = o.world.proxyCas(o.scope, o.orgId);
  const server = tls.createServer(
    mtlsServerOptions({ key: creds.key, chain: creds.certPem, anchors: [cas.pkiClient.pem], alpn: [RELAY_ALPN] }),
  );
  server.on('tlsClientError', () => undefined);
  onVerifiedConnection(
    server,
    { anchors: [cas.pkiClient.pem], purpose: 'clientAuth', requireRoute: true },
    o.world.now,
    (socket) => {
      socket.on('error', () => undefined);
      const status = o.status ?? 'ok';
      if (status !== 'ok') {
        socket.end(encodeStatus({ ok: false, code: status, message: `relay ${o.proxyId} says ${status}` }));
        return;
      }
      const upstream = net.connect(o.gatewayPort(), '127.0.0.1', () => {
        socket.write(encodeStatus({ ok: true }));
        socket.pipe(upstream).pipe(socket);
      });
      upstream.on('error', () => socket.destroy());
      socket.on('close', () => upstream.destroy());
    },
  );
  const port = await listen(server);
  const l = tracked(server, port, { connections: 0 });
  return Object.assign(l, {
    endpoint: {
      proxyId: o.proxyId,
      scope: o.scope,
      hostname: 'localhost',
      hostnames: ['localhost'],
      tlsAddress: `127.0.0.1:${port}`,
    },
  });
}

/** What a gateway with `lineAfter` read on one connection. */
export interface EarlyRead {
  grantId: string;
  /** Bytes read before its status line was written. */
  beforeLine: number;
  /** Everything read, in order. */
  received: Buffer[];
}

/**
 * A gateway inner-TLS server: grant required; `tcp` and `ping` echo. In tcp, ping and health it writes the
 * gateway's status line first (lib/protocol/relay.ts): `respond` picks it per grant (default ok), 'close'
 * for a refusal without a word, or 'silent' for a gateway that never writes its line. With `lineAfter` the line
 * is late (a slow target dial): written once `bytes` came from the client (or `ms` passed), what came before it
 * recorded in `early` and then echoed (ok) or dropped (a refusal).
 */
export async function startGateway(o: {
  world: World;
  orgId: string;
  gatewayId: string;
  credentials?: TlsCredentials;
  respond?: (grant: AccessGrant) => RelayStatus | 'close' | 'silent';
  lineAfter?: { bytes: number; ms: number };
  early?: EarlyRead[];
}): Promise<Listening> {
  const creds = o.credentials ?? o.world.gatewayInnerTls({ orgId: o.orgId, gatewayId: o.gatewayId });
  const anchors = [o.world.org(o.orgId).gatewayClient.pem];
  const server = tls.createServer(
    mtlsServerOptions({ key: creds.key, chain: creds.certPem, anchors, alpn: [...MODE_ALPNS] }),
  );
  server.on('tlsClientError', () => undefined);
  onVerifiedConnection(server, { anchors, purpose: 'clientAuth', requireGrant: true }, o.world.now, (socket, peer) => {
    socket.on('error', () => undefined);
    const status = o.respond?.(peer.grant!) ?? { ok: true };
    if (status === 'close') return socket.destroy();
    if (status === 'silent') return;
    const withLine = modeHasStatus(String(socket.alpnProtocol));
    if (o.lineAfter && withLine) return lateLine(socket, status, o.lineAfter, peer.grant!.grantId, o.early);
    if (!status.ok) {
      if (withLine) socket.end(encodeStatus(status));
      else socket.destroy();
      return;
    }
    if (withLine) socket.write(encodeStatus(status));
    socket.pipe(socket);
  });
  const port = await listen(server);
  return tracked(server, port, { connections: 0 });
}

/** The gateway's status line once `after.bytes` came (or `after.ms` passed); see startGateway's `lineAfter`. */
function lateLine(
  socket: tls.TLSSocket,
  status: RelayStatus,
  after: { bytes: number; ms: number },
  grantId: string,
  early: EarlyRead[] = [],
): void {
  const read: EarlyRead = { grantId, beforeLine: 0, received: [] };
  early.push(read);
  let answered = false;
  const answer = (): void => {
    if (answered || socket.destroyed) return;
    answered = true;
    clearTimeout(timer);
    if (!status.ok) {
      socket.end(encodeStatus(status));
      socket.resume(); // the bytes that came with the request are dropped with the refusal
      return;
    }
    socket.write(encodeStatus(status));
    for (const chunk of read.received) socket.write(chunk);
  };
  const timer = setTimeout(answer, after.ms);
  socket.on('data', (chunk: Buffer) => {
    read.received.push(chunk);
    if (!answered) {
      read.beforeLine += chunk.length;
      if (read.beforeLine >= after.bytes) answer();
    } else if (status.ok) socket.write(chunk);
  });
  socket.on('end', () => {
    answer();
    socket.end();
  });
  socket.on('close', () => clearTimeout(timer));
}

/** An intermediate CA under `parent` (its `pem` is the intermediate only: peers send it after their leaf). */
export function intermediateCa(world: World, parent: X509Ca, name: string): X509Ca {
  const key = generateKeyPair('ecdsa-p256');
  const issued = unwrap(
    createIntermediateCa(parent.issuer, {
      subjectKey: createPublicKey(key.privateKey),
      subject: { commonName: name },
      now: world.now(),
      lifetimeSec: 24 * 3600,
    }),
  );
  return { name, issuer: unwrap(loadIssuer(issued.pem, key.privateKey)), pem: issued.pem };
}

/** A port with nothing listening. */
export async function deadPort(): Promise<number> {
  const server = net.createServer();
  const port = await listen(server);
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

/** Writes `data`, reads back the same number of bytes. */
export async function echo(socket: tls.TLSSocket, data: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  const done = new Promise<void>((resolve, reject) => {
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      n += c.length;
      if (n >= data.length) resolve();
    });
    socket.on('error', reject);
    socket.on('close', () => (n >= data.length ? resolve() : reject(new Error('closed early'))));
  });
  socket.resume();
  socket.write(data);
  await done;
  return Buffer.concat(chunks);
}
