/** A proxy's stored state as enrollment would leave it, from the test World's CAs. */
import { privateKeyPem } from '../../lib/pki/keys.js';
import type { ProxyState } from '../../lib/proxy/state.js';
import { formatPublicKey } from '../../lib/sshcert/index.js';
import type { World } from '../helpers/world.js';

export function proxyState(world: World, proxyId = 'p1'): ProxyState {
  const at = { scope: 'instance' as const, proxyId };
  const tls = world.proxyTls(at);
  const host = world.proxySshHost(at);
  const trust = world.proxyTrust('instance');
  return {
    proxyUri: world.proxyUri('instance', proxyId),
    proxyId,
    scope: 'instance',
    orgId: null,
    hostnames: ['127.0.0.1'],
    sshListen: '127.0.0.1:0',
    tlsListen: '127.0.0.1:0',
    sshAddress: '127.0.0.1:2222',
    tlsAddress: '127.0.0.1:8443',
    caUrl: 'https://127.0.0.1:1',
    caFingerprint: `sha256:${'0'.repeat(64)}`,
    tlsKeyPem: privateKeyPem(tls.key),
    tlsChainPem: tls.certPem,
    sshPrivateKey: host.privateKey,
    sshHostCertificate: String(host.certificate).trim(),
    sshUserCaKeys: trust.sshUserCaKeys.map((b) => formatPublicKey(b, 'ssh-client-ca')),
    pkiClientCaCerts: trust.pkiClientCaPems,
    revocationFeedKey: '',
    notAfter: new Date(Date.now() + 3600_000).toISOString(),
  };
}
