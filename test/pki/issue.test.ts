/** What we issue is what OpenSSL accepts: CSRs, CA certificates and every SPEC §3 profile, ECDSA and RSA. */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { unwrap } from '../../lib/errors/codes.js';
import type { IssuedCert } from '../../lib/pki/ca.js';
import { createCsr, createCsrPem, parseCsr } from '../../lib/pki/csr.js';
import type { AccessGrant } from '../../lib/pki/grant.js';
import { gatewayUri, identityUri, instanceProxyUri, orgProxyUri } from '../../lib/pki/identity.js';
import { generateKeyPairSync, type KeyAlgorithm } from '../../lib/pki/keys.js';
import {
  issueGatewayServerCert,
  issuePlatformInnerClientCert,
  issuePlatformOuterClientCert,
  issueProxyServerCert,
} from '../../lib/pki/profiles.js';
import { parseCertificate } from '../../lib/pki/x509.js';
import { hierarchy, OpensslDir, T0, TD } from './fixtures.js';

const ossl = new OpensslDir();
after(() => ossl.cleanup());
const attime = String(Math.floor(T0.getTime() / 1000));
const actor = identityUri(TD, 'acme', 'alice');
const grant: AccessGrant = {
  version: 1,
  grantId: 'grant-1',
  orgId: 'acme',
  gatewayId: 'gw-1',
  actor,
  target: { host: 'db.internal', port: 5432 },
  modes: ['tcp'],
  notAfter: Math.floor(T0.getTime() / 1000) + 120,
};

function opensslVerify(alg: string, name: string, cert: IssuedCert, purpose: 'sslserver' | 'sslclient') {
  const leaf = ossl.write(`${alg}-${name}.pem`, cert.pem);
  return ossl.tryRun([
    'verify',
    '-x509_strict',
    '-attime',
    attime,
    '-purpose',
    purpose,
    '-CAfile',
    ossl.path(`${alg}-root.pem`),
    '-untrusted',
    ossl.path(`${alg}-inter.pem`),
    leaf,
  ]);
}

for (const alg of ['ecdsa-p256', 'rsa-2048'] as KeyAlgorithm[]) {
  test(`${alg}: openssl accepts our CSR, CAs and all four leaf profiles`, () => {
    const h = hierarchy(alg);
    ossl.write(`${alg}-root.pem`, h.root.pem);
    ossl.write(`${alg}-inter.pem`, h.inter.pem);

    const leafKey = generateKeyPairSync(alg);
    const csrPem = createCsrPem({ privateKey: leafKey.privateKey, commonName: 'gw-1', uris: ['spiffe://x/y'] });
    const csrOut = ossl.run(['req', '-verify', '-noout', '-text', '-in', ossl.write(`${alg}.csr`, csrPem)]);
    assert.match(csrOut, /verify OK/);
    assert.match(csrOut, /URI:spiffe:\/\/x\/y/);
    const csr = unwrap(parseCsr(csrPem));
    assert.equal(csr.subjectCn, 'gw-1');
    assert.deepEqual(csr.requested.uris, ['spiffe://x/y']);

    const rootText = ossl.run(['x509', '-noout', '-text', '-in', ossl.path(`${alg}-root.pem`)]);
    assert.match(rootText, /Basic Constraints: critical\s+CA:TRUE, pathlen:1/);
    assert.match(rootText, /Key Usage: critical\s+Certificate Sign, CRL Sign/);
    assert.match(rootText, /Subject Key Identifier/);
    const interText = ossl.run(['x509', '-noout', '-text', '-in', ossl.path(`${alg}-inter.pem`)]);
    assert.match(interText, /CA:TRUE, pathlen:0/);
    assert.match(interText, /Authority Key Identifier/);

    const base = { subjectKey: csr.publicKey, now: T0 };
    const gw = unwrap(issueGatewayServerCert(h.issuer, { ...base, uri: gatewayUri(TD, 'acme', 'gw-1') }));
    const proxy = unwrap(
      issueProxyServerCert(h.issuer, {
        ...base,
        uri: instanceProxyUri(TD, 'eu-1'),
        dnsNames: ['proxy.example.com'],
        ipAddresses: ['127.0.0.1', '::1'],
      }),
    );
    const outer = unwrap(
      issuePlatformOuterClientCert(h.issuer, {
        ...base,
        uri: actor,
        route: { version: 1, orgId: 'acme', gatewayId: 'gw-1' },
      }),
    );
    const inner = unwrap(issuePlatformInnerClientCert(h.issuer, { ...base, uri: actor, grant }));

    for (const [name, cert, purpose] of [
      ['gateway', gw, 'sslserver'],
      ['proxy', proxy, 'sslserver'],
      ['outer', outer, 'sslclient'],
      ['inner', inner, 'sslclient'],
    ] as const) {
      const v = opensslVerify(alg, name, cert, purpose);
      assert.ok(v.ok && /: OK/.test(v.out), `${name}: ${v.out}`);
    }
    // The EKU is real: a server cert is not accepted as a client cert and vice versa.
    assert.equal(opensslVerify(alg, 'gateway', gw, 'sslclient').ok, false);
    assert.equal(opensslVerify(alg, 'inner', inner, 'sslserver').ok, false);

    const gwText = ossl.run(['x509', '-noout', '-text', '-in', ossl.path(`${alg}-gateway.pem`)]);
    assert.match(gwText, /URI:spiffe:\/\/td\.example\/org\/acme\/gateway\/gw-1/);
    assert.match(gwText, /TLS Web Server Authentication/);
    assert.match(gwText, /Basic Constraints: critical\s+CA:FALSE/);
    const proxyText = ossl.run(['x509', '-noout', '-text', '-in', ossl.path(`${alg}-proxy.pem`)]);
    assert.match(proxyText, /DNS:proxy\.example\.com, IP Address:127\.0\.0\.1, IP Address:0:0:0:0:0:0:0:1/);
    const innerText = ossl.run(['x509', '-noout', '-text', '-in', ossl.path(`${alg}-inner.pem`)]);
    assert.match(innerText, /TLS Web Client Authentication/);
    assert.match(innerText, /2\.25\.164606950001041719975179529538499735090\.1:\s*\n/);
    assert.doesNotMatch(innerText, /2\.25\.[0-9.]+: critical/);
    const expectedSig = alg === 'rsa-2048' ? 'sha256WithRSAEncryption' : 'ecdsa-with-SHA256';
    assert.match(innerText, new RegExp(`Signature Algorithm: ${expectedSig}`));
  });
}

test('CSRs made by openssl parse, with their SANs; tampered and weak CSRs are refused', () => {
  for (const [name, keyArgs] of [
    ['ec', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']],
    ['rsa', ['-newkey', 'rsa:2048']],
  ] as const) {
    ossl.run([
      'req',
      '-new',
      ...keyArgs,
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}-ossl.csr`,
      '-subj',
      '/CN=from-openssl',
      '-addext',
      'subjectAltName=URI:spiffe://td/org/o/proxy/p,DNS:p.example,IP:10.0.0.1',
    ]);
    const csr = unwrap(parseCsr(ossl.run(['req', '-in', `${name}-ossl.csr`])));
    assert.equal(csr.subjectCn, 'from-openssl');
    assert.deepEqual(csr.requested, { uris: ['spiffe://td/org/o/proxy/p'], dns: ['p.example'], ips: ['10.0.0.1'] });
  }
  const key = generateKeyPairSync();
  const der = createCsr({ privateKey: key.privateKey, commonName: 'abcdef' });
  const tampered = Buffer.from(der);
  const at = tampered.indexOf(Buffer.from('abcdef'));
  tampered[at] = 'x'.charCodeAt(0);
  const v = parseCsr(tampered);
  assert.ok(!v.ok && v.code === 'E_CSR_INVALID', JSON.stringify(v));
  assert.ok(parseCsr(der).ok);

  ossl.run([
    'req',
    '-new',
    '-newkey',
    'rsa:1024',
    '-nodes',
    '-keyout',
    'weak.key',
    '-out',
    'weak.csr',
    '-subj',
    '/CN=weak',
  ]);
  const weak = parseCsr(ossl.run(['req', '-in', 'weak.csr']));
  assert.ok(!weak.ok && weak.code === 'E_CERT_WEAK_ALGORITHM');
  const garbage = parseCsr('-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n');
  assert.ok(!garbage.ok && garbage.code === 'E_CSR_INVALID');
});

test('serials are random, positive and at least 64 bits', () => {
  const h = hierarchy();
  const key = generateKeyPairSync();
  const serials = new Set<string>();
  for (let i = 0; i < 20; i++) {
    const c = unwrap(
      issueGatewayServerCert(h.issuer, { subjectKey: key.publicKey, uri: gatewayUri(TD, 'o', 'g'), now: T0 }),
    );
    const parsed = parseCertificate(c.der);
    assert.equal(parsed.serialNegative, false);
    assert.ok(BigInt(`0x${parsed.serialHex}`) >= 2n ** 64n);
    assert.equal(parsed.serialHex, c.serialHex);
    serials.add(c.serialHex);
  }
  assert.equal(serials.size, 20);
});

test('lifetimes: inner cert never outlives its grant, no cert outlives its issuer', () => {
  const h = hierarchy();
  const key = generateKeyPairSync();
  const inner = unwrap(
    issuePlatformInnerClientCert(h.issuer, {
      subjectKey: key.publicKey,
      uri: actor,
      grant,
      now: T0,
      lifetimeSec: 3600,
    }),
  );
  assert.equal(inner.notAfter.getTime(), grant.notAfter * 1000);
  const long = unwrap(
    issueGatewayServerCert(h.issuer, {
      subjectKey: key.publicKey,
      uri: gatewayUri(TD, 'acme', 'gw-1'),
      now: T0,
      lifetimeSec: 10 * 365 * 86400,
    }),
  );
  assert.equal(long.notAfter.getTime(), h.issuer.certificate.notAfter.getTime());
});

test('profiles refuse the wrong identity kind, missing names, and mismatched grants or routes', () => {
  const h = hierarchy();
  const k = generateKeyPairSync().publicKey;
  const code = (v: { ok: boolean; code?: string }) => (v.ok ? 'ok' : v.code);
  assert.equal(code(issueGatewayServerCert(h.issuer, { subjectKey: k, uri: actor, now: T0 })), 'E_CERT_IDENTITY');
  assert.equal(
    code(issueProxyServerCert(h.issuer, { subjectKey: k, uri: orgProxyUri(TD, 'acme', 'p1'), now: T0 })),
    'E_CERT_IDENTITY',
  );
  assert.equal(
    code(
      issuePlatformOuterClientCert(h.issuer, {
        subjectKey: k,
        uri: actor,
        now: T0,
        route: { version: 1, orgId: 'other', gatewayId: 'gw-1' },
      }),
    ),
    'E_GRANT_ORG',
  );
  const bob = identityUri(TD, 'acme', 'bob');
  assert.equal(
    code(issuePlatformInnerClientCert(h.issuer, { subjectKey: k, uri: bob, grant, now: T0 })),
    'E_CERT_IDENTITY',
  );
  const late = new Date((grant.notAfter + 1) * 1000);
  assert.equal(
    code(issuePlatformInnerClientCert(h.issuer, { subjectKey: k, uri: actor, grant, now: late })),
    'E_GRANT_EXPIRED',
  );
  assert.equal(
    code(issueGatewayServerCert(h.issuer, { subjectKey: k, uri: 'spiffe://td/org/o/gateway/a b', now: T0 })),
    'E_IDENTITY_MALFORMED',
  );
});
