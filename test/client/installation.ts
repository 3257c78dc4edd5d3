/**
 * A whole installation on 127.0.0.1, in this process, built the way an operator would: a CA (lib/ca
 * Authority behind its HTTPS API, pinned by fingerprint), instance proxies enrolled through that API
 * (lib/proxy ProxyServer), and a gateway enrolled with a one-time token (lib/gateway TunnelPool + InnerServer)
 * with tunnels to every proxy. The platform side (lib/client, infisical-connect) only gets a CA URL, a
 * fingerprint and a machine identity, like a real user.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { Authority } from '../../lib/ca/authority.js';
import { type CaServer, startCaServer } from '../../lib/ca/http.js';
import { unwrap } from '../../lib/errors/codes.js';
import { parseAllowlist } from '../../lib/gateway/allowlist.js';
import { InnerServer, type Refusal } from '../../lib/gateway/inner.js';
import { TunnelPool } from '../../lib/gateway/pool.js';
import { type Revocation, RevocationSet } from '../../lib/gateway/revocations.js';
import { type StreamRecord, StreamRegistry } from '../../lib/gateway/streams.js';
import { createCsrPem } from '../../lib/pki/csr.js';
import { privateKeyPem, generateKeyPairSync as x509Pair } from '../../lib/pki/keys.js';
import { CaClient } from '../../lib/protocol/ca-client.js';
import { ProxyServer } from '../../lib/proxy/proxy.js';
import { formatPublicKey, publicKeyBlob, toOpenSshPrivateKey } from '../../lib/sshcert/index.js';
import { freePort } from '../helpers/openssh.js';

export const ORG = 'acme';
export const GATEWAY = 'gw-1';

export interface InstallationOptions {
  proxies: number;
  /** Policy for identity "app": targets ("host:port", "name:x") and modes. */
  policyTargets: string[];
  modes?: ('tcp' | 'http' | 'ping' | 'health')[];
  /** Gateway allowlist ports (addresses: 127.0.0.0/8). */
  allowPorts: number[];
}

export interface Installation {
  caUrl: string;
  fingerprint: string;
  clientId: string;
  clientSecret: string;
  proxies: ProxyServer[];
  pool: TunnelPool;
  refusals: Refusal[];
  records: StreamRecord[];
  /** The CA API logged in as the instance admin (revoke, policies). */
  admin: CaClient;
  /** The id of the policy rule for identity "app". */
  policyId: string;
  /**
   * What the gateway does with an entry of the CA's revocation feed (Gateway.revoke): remembers it for
   * admission and ends the live streams it covers. Returns how many streams ended.
   */
  revokeAtGateway(r: Revocation): number;
  close(): Promise<void>;
}

const sshLine = (text: string): Buffer => Buffer.from(text.trim().split(/\s+/)[1] ?? '', 'base64');

export async function startInstallation(o: InstallationOptions): Promise<Installation> {
  const authority = Authority.open({
    db: ':memory:',
    sealKey: randomBytes(32),
    trustDomain: 'example.test',
    limits: { scrypt: { N: 2 ** 10, r: 8, p: 1 } },
  });
  const init = unwrap(await authority.init());
  const api = authority.issueApiServerCertificate({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  const caServer: CaServer = await startCaServer({ authority, host: '127.0.0.1', port: 0, tls: api });
  const anonymous = new CaClient({ url: caServer.url, fingerprint: api.fingerprint256 });
  const { client: admin } = await anonymous.loginAs({
    clientId: init.adminClientId,
    clientSecret: init.adminClientSecret,
  });
  await admin.createOrg(ORG);
  const app = await admin.createIdentity(ORG, { identityId: 'app', role: 'member' });
  const policy = await admin.addPolicy(ORG, {
    subject: 'identity:app',
    gateways: [GATEWAY],
    targets: o.policyTargets,
    modes: o.modes ?? ['tcp', 'http', 'ping'],
  });

  const proxies: ProxyServer[] = [];
  const stops: (() => Promise<unknown>)[] = [];
  try {
    for (let i = 1; i <= o.proxies; i++) {
      const [sshPort, tlsPort] = [await freePort(), await freePort()];
      const tlsKey = x509Pair('ecdsa-p256').privateKey;
      const sshKey = generateKeyPairSync('ed25519').privateKey;
      const enrolled = await admin.enrollProxy({
        scope: 'instance',
        proxyId: `p${i}`,
        hostnames: ['localhost'],
        sshAddress: `127.0.0.1:${sshPort}`,
        tlsAddress: `127.0.0.1:${tlsPort}`,
        csr: createCsrPem({ privateKey: tlsKey, commonName: `p${i}` }),
        sshPublicKey: formatPublicKey(publicKeyBlob(sshKey), `p${i}`),
      });
      const proxy = await ProxyServer.start({
        credentials: {
          proxyUri: enrolled.proxyUri,
          tlsKey,
          tlsChain: enrolled.tlsCertificateChain,
          sshHostKey: toOpenSshPrivateKey(sshKey),
          sshHostCertificate: enrolled.sshHostCertificate,
          sshUserCaKeys: enrolled.trust.sshUserCaKeys.map(sshLine),
          pkiClientCaPems: enrolled.trust.pkiClientCaCerts,
        },
        ssh: { host: '127.0.0.1', port: sshPort },
        tls: { host: '127.0.0.1', port: tlsPort },
      });
      proxies.push(proxy);
      stops.push(() => proxy.stop());
    }

    const token = await admin.createEnrollmentToken(ORG, { kind: 'gateway', subjectId: GATEWAY });
    const gwTlsKey = x509Pair('ecdsa-p256').privateKey;
    const gwSshKey = generateKeyPairSync('ed25519').privateKey;
    const gw = await anonymous.enrollGateway({
      orgId: ORG,
      gatewayId: GATEWAY,
      csr: createCsrPem({ privateKey: gwTlsKey, commonName: GATEWAY }),
      sshPublicKey: formatPublicKey(publicKeyBlob(gwSshKey), GATEWAY),
      enrollmentToken: token.token,
    });
    const refusals: Refusal[] = [];
    const records: StreamRecord[] = [];
    const revoked = new RevocationSet();
    const registry = new StreamRegistry({ gatewayId: GATEWAY, onEnd: (r) => records.push(r) });
    const inner = new InnerServer({
      orgId: ORG,
      gatewayId: GATEWAY,
      credentials: {
        key: privateKeyPem(gwTlsKey),
        chain: gw.tlsCertificateChain,
        clientCaPems: gw.trust.gatewayClientCaCerts,
      },
      allowlist: unwrap(
        parseAllowlist({ cidrs: ['127.0.0.0/8'], hosts: [], ports: o.allowPorts.map(String), targets: [] }),
      ),
      resolver: async (host) => [host],
      revoked,
      registry,
      onRefused: (r) => refusals.push(r),
      health: () => ({ ok: true }),
    });
    const sshPrivate = toOpenSshPrivateKey(gwSshKey);
    const pool = new TunnelPool({
      gatewayId: GATEWAY,
      proxies: gw.proxies.map((p) => ({
        proxyId: p.proxyId,
        scope: p.scope,
        hostname: p.hostname,
        sshAddress: p.sshAddress,
      })),
      credentialsFor: (p) => ({
        privateKey: sshPrivate,
        certificate: gw.sshCertificates.find((c) => c.scope === p.scope)!.certificate,
        trustedHostCaKeys: gw.trust.sshHostCaKeys.filter((k) => k.scope === p.scope).map((k) => sshLine(k.key)),
      }),
      onChannel: (channel, _info, proxy) => inner.handle(channel, { proxyId: proxy.proxyId }),
    });
    pool.start();
    stops.unshift(() => pool.close());
    await pool.whenUp(15_000, o.proxies);

    return {
      caUrl: caServer.url,
      fingerprint: api.fingerprint256,
      clientId: app.clientId,
      clientSecret: app.clientSecret,
      proxies,
      pool,
      refusals,
      records,
      admin,
      policyId: policy.id,
      revokeAtGateway: (r) => (revoked.add(r) ? registry.revoke(r) : 0),
      close: async () => {
        for (const stop of stops) await stop().catch(() => undefined);
        await caServer.drain(Date.now() + 1000);
        authority.close();
      },
    };
  } catch (err) {
    for (const stop of stops) await stop().catch(() => undefined);
    await caServer.drain(Date.now() + 1000);
    throw err;
  }
}
