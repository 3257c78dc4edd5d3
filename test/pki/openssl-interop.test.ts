/** Certificates made by the openssl CLI: our verifier accepts the good ones and refuses the bad ones. */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import type { Verdict } from '../../lib/errors/codes.js';
import { verifyCertificateChain } from '../../lib/pki/verify.js';
import { OpensslDir } from './fixtures.js';

const ossl = new OpensslDir();
after(() => ossl.cleanup());
const now = new Date();
const URI = 'spiffe://td.example/org/acme/gateway/gw-1';

const KEYGEN: Record<string, string[]> = {
  ec: ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'],
  rsa: ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'],
  ed25519: ['genpkey', '-algorithm', 'ED25519'],
  rsa1024: ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:1024'],
};

function key(name: string, kind: string): string {
  ossl.run([...KEYGEN[kind]!, '-out', `${name}.key`]);
  return `${name}.key`;
}

/** Signs `name`'s CSR with the CA `ca` using an extension file body. */
function sign(name: string, kind: string, ca: string, ext: string, extra: string[] = []): string {
  key(name, kind);
  ossl.run(['req', '-new', '-key', `${name}.key`, '-subj', `/O=OpenSSL Org/CN=${name}`, '-out', `${name}.csr`]);
  ossl.write(`${name}.ext`, `[v3]\n${ext}\n`);
  ossl.run([
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    `${ca}.pem`,
    '-CAkey',
    `${ca}.key`,
    '-CAcreateserial',
    '-days',
    '30',
    '-extfile',
    `${name}.ext`,
    '-extensions',
    'v3',
    '-out',
    `${name}.pem`,
    ...extra,
  ]);
  return ossl.run(['x509', '-in', `${name}.pem`]);
}

const CA_EXT = (pathLen: number) =>
  `basicConstraints=critical,CA:true,pathlen:${pathLen}\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always`;
const LEAF_EXT = (more = '') =>
  `basicConstraints=critical,CA:false\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=URI:${URI},DNS:gw.example\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n${more}`;

function root(name: string, kind: string): string {
  key(name, kind);
  ossl.write(`${name}.cnf`, `[req]\ndistinguished_name=dn\n[dn]\n[v3]\n${CA_EXT(1)}\n`);
  ossl.run([
    'req',
    '-x509',
    '-new',
    '-key',
    `${name}.key`,
    '-subj',
    `/O=OpenSSL Org/CN=${name}`,
    '-days',
    '60',
    '-config',
    `${name}.cnf`,
    '-extensions',
    'v3',
    '-out',
    `${name}.pem`,
  ]);
  return ossl.run(['x509', '-in', `${name}.pem`]);
}

function verify(chain: string[], anchor: string, expectedUri?: string): Verdict<unknown> {
  return verifyCertificateChain({
    chain,
    anchors: anchor,
    now,
    purpose: 'serverAuth',
    ...(expectedUri ? { expectedUri } : {}),
  });
}

for (const kind of ['ec', 'rsa', 'ed25519']) {
  test(`accepts an openssl-made ${kind} root → intermediate → leaf chain (and openssl agrees)`, () => {
    const r = root(`${kind}-root`, kind);
    const i = sign(`${kind}-inter`, kind, `${kind}-root`, CA_EXT(0));
    const l = sign(`${kind}-leaf`, kind, `${kind}-inter`, LEAF_EXT());
    const ok = ossl.tryRun([
      'verify',
      '-x509_strict',
      '-purpose',
      'sslserver',
      '-CAfile',
      `${kind}-root.pem`,
      '-untrusted',
      `${kind}-inter.pem`,
      `${kind}-leaf.pem`,
    ]);
    assert.ok(ok.ok, ok.out);
    const v = verify([l, i], r, URI);
    assert.ok(v.ok, !v.ok ? `${v.code}: ${v.reason}` : '');
  });
}

test('refuses openssl-made bad certificates: SHA-1, RSA-1024, CA:false intermediate, unknown critical extension', () => {
  const r = root('bad-root', 'ec');
  const i = sign('bad-inter', 'ec', 'bad-root', CA_EXT(0));
  const expect = (v: Verdict<unknown>, code: string) =>
    assert.equal(v.ok ? 'accepted' : v.code, code, v.ok ? '' : v.reason);

  const sha1 = sign('sha1-leaf', 'rsa', 'bad-inter', LEAF_EXT(), ['-sha1']);
  expect(verify([sha1, i], r), 'E_CERT_WEAK_ALGORITHM');

  const small = sign('small-leaf', 'rsa1024', 'bad-inter', LEAF_EXT());
  expect(verify([small, i], r), 'E_CERT_WEAK_ALGORITHM');

  const notCa = sign(
    'notca-inter',
    'ec',
    'bad-inter',
    'basicConstraints=critical,CA:false\nkeyUsage=critical,digitalSignature,keyCertSign\nsubjectKeyIdentifier=hash',
  );
  const under = sign('under-notca', 'ec', 'notca-inter', LEAF_EXT());
  expect(verify([under, notCa, i], r), 'E_CERT_WRONG_TYPE');

  const crit = sign('crit-leaf', 'ec', 'bad-inter', LEAF_EXT('1.3.6.1.4.1.55555.7=critical,ASN1:NULL'));
  expect(verify([crit, i], r), 'E_CERT_CRITICAL_OPTION');
  // openssl refuses the same certificate for the same reason.
  const o = ossl.tryRun(['verify', '-CAfile', 'bad-root.pem', '-untrusted', 'bad-inter.pem', 'crit-leaf.pem']);
  assert.equal(o.ok, false);
  assert.match(o.out, /unhandled critical extension/);

  const wrongUri = sign('uri-leaf', 'ec', 'bad-inter', LEAF_EXT());
  expect(verify([wrongUri, i], r, 'spiffe://td.example/org/acme/gateway/gw-2'), 'E_CERT_IDENTITY');
});
