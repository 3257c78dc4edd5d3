/**
 * Test fixture for the gateway: SSH CAs and certificates (lib/sshcert), a proxy-like SSH server over
 * lib/sshwire that grants the forward and opens forwarded-tcpip channels on demand, and the X.509 side
 * (org gateway client/server CAs, inner client certs carrying grants) issued with lib/pki.
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { unwrap } from '../../lib/errors/codes.js';
import type { ProxyEndpoint, TunnelCredentials } from '../../lib/gateway/tunnel.js';
import { type CaIssuer, createRootCa, loadIssuer } from '../../lib/pki/ca.js';
import type { AccessGrant, GrantMode, GrantTarget } from '../../lib/pki/grant.js';
import { gatewayUri, identityUri } from '../../lib/pki/identity.js';
import { generateKeyPairSync as pkiKeyPair } from '../../lib/pki/keys.js';
import { issueGatewayServerCert, issuePlatformInnerClientCert } from '../../lib/pki/profiles.js';
import { publicKeyBlob, signCertificate, toOpenSshPrivateKey } from '../../lib/sshcert/index.js';
import { createCertServer, listen } from '../../lib/sshwire/server.js';
import type { Connection, Server, ServerChannel } from '../../lib/sshwire/ssh2.js';
import { authenticateUser } from '../helpers/ssh-auth.js';

export const TD = 'test.infisical';

export interface SshParty {
  key: KeyObject;
  pem: string;
  blob: Buffer;
}

export function sshParty(): SshParty {
  const { privateKey } = generateKeyPairSync('ed25519');
  return { key: privateKey, pem: toOpenSshPrivateKey(privateKey), blob: publicKeyBlob(privateKey) };
}

export function sshCert(
  ca: SshParty,
  subject: SshParty,
  type: 'user' | 'host',
  principals: string[],
  o: { keyId?: string; fromS?: number; lifetimeS?: number } = {},
): Buffer {
  const from = o.fromS ?? Math.floor(Date.now() / 1000) - 60;
  return signCertificate(
    {
      publicKey: subject.blob,
      type,
      keyId: o.keyId ?? `${type}:${principals[0]}`,
      principals,
      validAfter: BigInt(from),
      validBefore: BigInt(from + 60 + (o.lifetimeS ?? 3600)),
      ...(type === 'user' ? { extensions: { 'permit-port-forwarding': '' } } : {}),
    },
    ca.key,
  );
}

/** The SSH side of one deployment: user CA (gateways), host CA (proxies), one gateway key and cert. */
export class SshWorld {
  readonly userCa = sshParty();
  readonly hostCa = sshParty();
  readonly gatewayKey = sshParty();
  constructor(readonly gatewayId = 'gw1') {}
  gatewayCert(o: Parameters<typeof sshCert>[4] = {}): Buffer {
    return sshCert(this.userCa, this.gatewayKey, 'user', [this.gatewayId], o);
  }
  credentials(cert = this.gatewayCert()): TunnelCredentials {
    return { privateKey: this.gatewayKey.pem, certificate: cert, trustedHostCaKeys: [this.hostCa.blob] };
  }
}

/** A proxy-like SSH server: cert auth, forward granted only for the cert's principal, channels on demand. */
export class FakeProxy {
  readonly hostname: string;
  readonly #world: SshWorld;
  readonly #hostKey = sshParty();
  #hostCert: Buffer;
  #server: Server | undefined;
  #port = 0;
  readonly #conns = new Set<Connection>();
  /** gatewayId → forwards (newest last), each with the connection and the bound port. */
  readonly forwards = new Map<string, { conn: Connection; port: number }[]>();
  readonly logins: string[] = [];

  constructor(world: SshWorld, hostname = 'proxy-a.test', hostCert?: Buffer) {
    this.#world = world;
    this.hostname = hostname;
    this.#hostCert = hostCert ?? sshCert(world.hostCa, this.#hostKey, 'host', [hostname]);
  }

  /** A host cert signed by `ca` for `principals` (to test refusals). */
  useHostCert(ca: SshParty, principals: string[], o: Parameters<typeof sshCert>[4] = {}): void {
    this.#hostCert = sshCert(ca, this.#hostKey, 'host', principals, o);
  }

  get port(): number {
    return this.#port;
  }

  endpoint(proxyId = 'proxy-a'): ProxyEndpoint {
    return { proxyId, scope: 'instance', hostname: this.hostname, sshAddress: `127.0.0.1:${this.#port}` };
  }

  async start(port = this.#port): Promise<this> {
    const server = createCertServer({ hostKey: this.#hostKey.pem, hostCertificate: this.#hostCert }, (conn) =>
      this.#onConnection(conn),
    );
    this.#server = server;
    this.#port = await listen(server, port);
    return this;
  }

  #onConnection(conn: Connection): void {
    this.#conns.add(conn);
    conn.on('error', () => {});
    conn.on('close', () => {
      this.#conns.delete(conn);
      for (const [id, list] of this.forwards) {
        const left = list.filter((f) => f.conn !== conn);
        if (left.length) this.forwards.set(id, left);
        else this.forwards.delete(id);
      }
    });
    authenticateUser(conn, { trustedUserCaKeys: [this.#world.userCa.blob] }).then(
      (cert) => {
        this.logins.push(cert.principals[0] ?? '');
        conn.on('request', (accept, reject, name, info) => {
          const bind = info as { bindAddr: string; bindPort: number };
          if (name === 'cancel-tcpip-forward' && accept) {
            const list = (this.forwards.get(bind.bindAddr) ?? []).filter((f) => f.conn !== conn);
            if (list.length) this.forwards.set(bind.bindAddr, list);
            else this.forwards.delete(bind.bindAddr);
            return accept();
          }
          if (name !== 'tcpip-forward' || !accept || !reject) return reject?.();
          if (!cert.principals.includes(bind.bindAddr)) return reject();
          const port = 1;
          accept(port);
          const list = this.forwards.get(bind.bindAddr) ?? [];
          list.push({ conn, port });
          this.forwards.set(bind.bindAddr, list);
        });
      },
      () => {},
    );
  }

  /** Opens a forwarded-tcpip channel to the newest tunnel of `gatewayId`. */
  openStream(gatewayId = this.#world.gatewayId): Promise<ServerChannel> {
    const f = this.forwards.get(gatewayId)?.at(-1);
    if (!f) return Promise.reject(new Error(`no tunnel from ${gatewayId}`));
    return new Promise((resolve, reject) => {
      f.conn.forwardOut(gatewayId, f.port, '203.0.113.7', 40000, (err, ch) => (err ? reject(err) : resolve(ch)));
    });
  }

  tunnelCount(gatewayId = this.#world.gatewayId): number {
    return this.forwards.get(gatewayId)?.length ?? 0;
  }

  /** Like a killed process: listener closed, every connection cut without goodbye. */
  async kill(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const c of this.#conns) (c as unknown as { _sock?: { destroy(): void } })._sock?.destroy();
    this.#conns.clear();
    this.forwards.clear();
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }

  /** Stops answering (keepalive test): pauses every socket so nothing is read or answered. */
  freeze(): void {
    for (const c of this.#conns) (c as unknown as { _sock?: { pause(): void } })._sock?.pause();
  }
}

// ---- X.509 side ------------------------------------------------------------------------------------------

export interface OrgPki {
  orgId: string;
  clientCa: CaIssuer;
  serverCa: CaIssuer;
}

function root(name: string): CaIssuer {
  const { privateKey } = pkiKeyPair('ecdsa-p256');
  const cert = unwrap(createRootCa({ privateKey, subject: { commonName: name }, now: new Date(), lifetimeSec: 86400 }));
  return unwrap(loadIssuer(cert.pem, privateKey));
}

export function orgPki(orgId: string): OrgPki {
  return { orgId, clientCa: root(`${orgId} gateway client CA`), serverCa: root(`${orgId} gateway server CA`) };
}

/** The gateway's inner TLS server identity. */
export function gatewayServerIdentity(org: OrgPki, gatewayId: string): { key: string; cert: string; uri: string } {
  const { privateKey, publicKey } = pkiKeyPair('ecdsa-p256');
  const uri = gatewayUri(TD, org.orgId, gatewayId);
  const cert = unwrap(issueGatewayServerCert(org.serverCa, { subjectKey: publicKey, uri, now: new Date() }));
  return { key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, cert: cert.pem, uri };
}

export interface InnerClientSpec {
  gatewayId: string;
  target: GrantTarget;
  identityId?: string;
  grantId?: string;
  modes?: GrantMode[];
  /** Seconds from now until the grant ends (default 300). */
  ttlS?: number;
  /** Org written in the grant (default the issuing org). */
  grantOrgId?: string;
}

/** A platform inner client cert with a grant, issued by `org`'s gateway client CA. */
export function innerClient(org: OrgPki, spec: InnerClientSpec): { key: string; cert: string; grant: AccessGrant } {
  const { privateKey, publicKey } = pkiKeyPair('ecdsa-p256');
  const grantOrg = spec.grantOrgId ?? org.orgId;
  const actor = identityUri(TD, grantOrg, spec.identityId ?? 'alice');
  const now = new Date();
  const grant: AccessGrant = {
    version: 1,
    grantId: spec.grantId ?? `g-${Math.random().toString(36).slice(2)}`,
    orgId: grantOrg,
    gatewayId: spec.gatewayId,
    actor,
    target: spec.target,
    notAfter: Math.floor(now.getTime() / 1000) + (spec.ttlS ?? 300),
    ...(spec.modes ? { modes: spec.modes } : {}),
  };
  const cert = unwrap(issuePlatformInnerClientCert(org.clientCa, { subjectKey: publicKey, uri: actor, now, grant }));
  return { key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, cert: cert.pem, grant };
}

export type { Duplex };
