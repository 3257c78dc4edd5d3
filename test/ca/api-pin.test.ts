/**
 * Clients pin the CA API's root, not one leaf: a pinned client keeps working across `api-cert` (a new leaf from
 * the same root) with no change on its side; a leaf pin (clients enrolled before) still works for that leaf; a
 * server that shows the pinned root beside a leaf the root did not sign, or another root, is refused
 * E_CERT_UNTRUSTED before any byte of HTTP.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { after, test } from 'node:test';
import { createServer } from 'node:tls';
import { type CaServer, startCaServer } from '../../lib/ca/http.js';
import { unwrap } from '../../lib/errors/codes.js';
import { createRootCa, issueCertificate, loadIssuer, validity } from '../../lib/pki/ca.js';
import { generateKeyPairSync, privateKeyPem } from '../../lib/pki/keys.js';
import { OID } from '../../lib/pki/x509.js';
import { CaApiError, CaClient, checkPin } from '../../lib/protocol/ca-client.js';
import { newAuthority } from './helpers.js';

const names = { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] };
const servers: { close(): unknown }[] = [];
after(async () => {
  for (const s of servers) await s.close();
});

async function refusedWith(p: Promise<unknown>, code: string, pattern?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof CaApiError, String(err));
    assert.equal(err.code, code, err.message);
    if (pattern) assert.match(err.message, pattern);
    return true;
  });
}

test('a client pinning the API root keeps working across api-cert and the CA reload, with no change', async () => {
  const f = await newAuthority();
  const first = f.ca.issueApiServerCertificate(names);
  const server: CaServer = await startCaServer({ authority: f.ca, host: '127.0.0.1', port: 0, tls: first });
  servers.push({ close: () => server.drain(Date.now() + 1000) });
  const rootPinned = new CaClient({ url: server.url, fingerprint: first.rootFingerprint256, now: f.clock.now });
  const leafPinned = new CaClient({ url: server.url, fingerprint: first.fingerprint256, now: f.clock.now });
  assert.equal((await rootPinned.health()).ok, true);
  assert.equal((await leafPinned.health()).ok, true, 'a leaf pin (enrolled before root pinning) still works');

  const second = f.ca.issueApiServerCertificate(names);
  assert.notEqual(second.fingerprint256, first.fingerprint256);
  assert.equal(second.rootFingerprint256, first.rootFingerprint256, 'the root does not change with api-cert');
  server.setCredentials(second);
  assert.equal((await rootPinned.health()).ok, true, 'root pin: unchanged client, new leaf');
  await refusedWith(leafPinned.health(), 'E_CERT_UNTRUSTED', /does not match the pinned fingerprint/);
});

/** A TLS server that sends `chainPem` (leaf first) with `keyPem`: what an impostor can show. */
async function impostor(chainPem: string, keyPem: string): Promise<string> {
  const srv = createServer({ cert: chainPem, key: keyPem, minVersion: 'TLSv1.2' }, (s) => s.end());
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  servers.push({ close: () => new Promise((r) => srv.close(r)) });
  return `https://127.0.0.1:${(srv.address() as { port: number }).port}`;
}

function selfSignedCa(name: string, now: Date) {
  const key = generateKeyPairSync('ecdsa-p256').privateKey;
  const cert = unwrap(createRootCa({ privateKey: key, subject: { commonName: name }, now, lifetimeSec: 86_400 }));
  return { issuer: unwrap(loadIssuer(cert.pem, key)), pem: cert.pem };
}

function serverLeaf(issuer: ReturnType<typeof selfSignedCa>['issuer'], now: Date, lifetimeSec = 3600) {
  const key = generateKeyPairSync('ecdsa-p256');
  const cert = unwrap(
    issueCertificate(issuer, {
      subjectKey: key.publicKey,
      subject: { commonName: 'impostor' },
      ...validity({ now, lifetimeSec }),
      keyUsage: ['digitalSignature'],
      extKeyUsage: [OID.serverAuth],
      san: names,
    }),
  );
  return { pem: cert.pem, keyPem: privateKeyPem(key.privateKey) };
}

test('the pinned root shown beside a leaf it did not sign, another root, or an expired leaf: refused', async () => {
  const f = await newAuthority();
  const real = f.ca.issueApiServerCertificate(names);
  const realRootPem = real.certificateChainPem.slice(real.certificateChainPem.indexOf('-----BEGIN', 1));
  const now = f.clock.now();
  const pin = real.rootFingerprint256;

  // A leaf from another CA named like the real root (so TLS links it to the real root by name), with the real
  // (pinned) root appended to the chain: the signature check under the pinned root refuses it.
  const rootCn = /CN=([^\n]+)/.exec(new X509Certificate(realRootPem).subject)?.[1] ?? '';
  const other = selfSignedCa(rootCn, now);
  const forged = serverLeaf(other.issuer, now);
  const url1 = await impostor(forged.pem + realRootPem, forged.keyPem);
  // (TLS passes on only certificates that name each other, so the appended root may not even reach the check.)
  await refusedWith(
    new CaClient({ url: url1, fingerprint: pin, now: f.clock.now }).health(),
    'E_CERT_UNTRUSTED',
    /refused under the pinned root|does not match the pinned fingerprint/,
  );
  // The pin check itself, given that very chain: the leaf does not verify under the pinned root.
  const der = (pem: string) => new X509Certificate(pem).raw;
  const verdict = checkPin([der(forged.pem), der(realRootPem)], new Set([pin]), now);
  assert.equal(verdict.ok, false);
  assert.match(!verdict.ok ? verdict.reason : '', /refused under the pinned root/);
  assert.deepEqual(checkPin([der(real.certificateChainPem), der(realRootPem)], new Set([pin]), now), {
    ok: true,
    value: 'root',
  });
  // A whole other chain: no pinned certificate in it.
  const url2 = await impostor(forged.pem + other.pem, forged.keyPem);
  await refusedWith(
    new CaClient({ url: url2, fingerprint: pin, now: f.clock.now }).health(),
    'E_CERT_UNTRUSTED',
    /does not match the pinned fingerprint/,
  );
  // The real root, but its leaf has expired (the client's clock is past it).
  const url3 = await startCaServer({ authority: f.ca, host: '127.0.0.1', port: 0, tls: real });
  servers.push({ close: () => url3.drain(Date.now() + 1000) });
  const later = () => new Date(real.notAfter.getTime() + 3600_000);
  await refusedWith(
    new CaClient({ url: url3.url, fingerprint: pin, now: later }).health(),
    'E_CERT_UNTRUSTED',
    /E_CERT_EXPIRED|expired/,
  );
});

test('a client that pinned the leaf learns the root it chains to, and keeps working after api-cert', async () => {
  const f = await newAuthority();
  const first = f.ca.issueApiServerCertificate(names);
  const server: CaServer = await startCaServer({ authority: f.ca, host: '127.0.0.1', port: 0, tls: first });
  servers.push({ close: () => server.drain(Date.now() + 1000) });
  const learned: string[] = [];
  const client = new CaClient({
    url: server.url,
    fingerprint: first.fingerprint256,
    now: f.clock.now,
    onRootLearned: (fp) => learned.push(fp),
  });
  assert.equal((await client.health()).ok, true);
  assert.deepEqual(learned, [first.rootFingerprint256]);
  await client.health();
  assert.equal(learned.length, 1, 'reported once');

  server.setCredentials(f.ca.issueApiServerCertificate(names));
  assert.equal((await client.health()).ok, true, 'the same client, after api-cert');
  // What a component stores: its old pin and the learned root, as one comma-separated value.
  const stored = new CaClient({
    url: server.url,
    fingerprint: [first.fingerprint256, ...learned].join(','),
    now: f.clock.now,
  });
  assert.equal((await stored.health()).ok, true);
});
