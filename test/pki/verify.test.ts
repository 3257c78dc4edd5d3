/** THE verifier: accepts our chains, refuses every kind of bad certificate with its own code (injected clock). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { unwrap, type Verdict } from '../../lib/errors/codes.js';
import { type CaIssuer, type IssuedCert, issueCertificate, loadIssuer, validity } from '../../lib/pki/ca.js';
import {
  type AccessGrant,
  checkGrant,
  encodeGrant,
  GRANT_EXTENSION_OID,
  type GrantContext,
} from '../../lib/pki/grant.js';
import { gatewayUri, identityUri, instanceProxyUri } from '../../lib/pki/identity.js';
import { generateKeyPairSync, signatureAlgorithmFor } from '../../lib/pki/keys.js';
import { PATH_CACHE_CAPACITY, setPathCacheCapacity } from '../../lib/pki/path-cache.js';
import {
  issueGatewayServerCert,
  issuePlatformInnerClientCert,
  issuePlatformOuterClientCert,
  issueProxyServerCert,
} from '../../lib/pki/profiles.js';
import { loadTrustAnchors, type VerifyOptions, verifyAgain, verifyCertificateChain } from '../../lib/pki/verify.js';
import { parseCertificate, toPem } from '../../lib/pki/x509.js';
import { createIntermediateCa, hierarchy, T0, TD } from './fixtures.js';

const h = hierarchy('ecdsa-p256', 'Acme');
const other = hierarchy('ecdsa-p256', 'Acme'); // another org's CAs with the very same names
const key = generateKeyPairSync();
const GW = gatewayUri(TD, 'acme', 'gw-1');
const ACTOR = identityUri(TD, 'acme', 'alice');
const nowSec = Math.floor(T0.getTime() / 1000);
const grant: AccessGrant = {
  version: 1,
  grantId: 'grant-1',
  orgId: 'acme',
  gatewayId: 'gw-1',
  actor: ACTOR,
  target: { host: 'db.internal', port: 5432 },
  notAfter: nowSec + 120,
};

const gwCert = unwrap(issueGatewayServerCert(h.issuer, { subjectKey: key.publicKey, uri: GW, now: T0 }));
const inner = unwrap(issuePlatformInnerClientCert(h.issuer, { subjectKey: key.publicKey, uri: ACTOR, grant, now: T0 }));
const outer = unwrap(
  issuePlatformOuterClientCert(h.issuer, {
    subjectKey: key.publicKey,
    uri: ACTOR,
    now: T0,
    route: { version: 1, orgId: 'acme', gatewayId: 'gw-1' },
  }),
);
const anchors = unwrap(loadTrustAnchors(h.root.pem));

function run(leaf: IssuedCert | Buffer, over: Partial<VerifyOptions> = {}, inter: IssuedCert = h.inter) {
  const der = Buffer.isBuffer(leaf) ? leaf : leaf.der;
  return verifyCertificateChain({ chain: [der, inter.der], anchors, now: T0, purpose: 'serverAuth', ...over });
}

function refused(v: Verdict<unknown>, code: string) {
  assert.equal(v.ok, false, `expected ${code}, got accepted`);
  assert.equal(!v.ok && v.code, code, !v.ok ? v.reason : '');
}

/** A CaIssuer over any cert, even one loadIssuer would refuse (to build bad chains on purpose). */
function rawIssuer(cert: IssuedCert, privateKey: CaIssuer['privateKey']): CaIssuer {
  const parsed = parseCertificate(cert.der);
  return {
    certificate: parsed,
    certificatePem: cert.pem,
    privateKey,
    algorithm: unwrap(signatureAlgorithmFor(privateKey)),
    keyId: parsed.subjectKeyId!,
  };
}

test('accepts our 2-level chains, ECDSA and RSA, and reports the leaf', () => {
  const v = run(gwCert, { expectedUri: GW });
  assert.ok(v.ok, !v.ok ? v.reason : '');
  assert.equal(v.value.serialHex, gwCert.serialHex);
  assert.deepEqual(v.value.uris, [GW]);
  assert.equal(v.value.issuerFingerprint, parseCertificate(h.inter.der).fingerprint256);
  assert.equal(v.value.anchorFingerprint, parseCertificate(h.root.der).fingerprint256);
  assert.equal(v.value.pathLength, 3);
  assert.equal(v.value.grant, undefined);

  const r = hierarchy('rsa-2048', 'RsaOrg');
  const rk = generateKeyPairSync('rsa-2048');
  const rc = unwrap(issueGatewayServerCert(r.issuer, { subjectKey: rk.publicKey, uri: GW, now: T0 }));
  const rv = verifyCertificateChain({
    chain: rc.pem + r.inter.pem,
    anchors: r.root.pem,
    now: T0,
    purpose: 'serverAuth',
  });
  assert.ok(rv.ok, !rv.ok ? rv.reason : '');
});

test('chain input: PEM bundle, extra unrelated certs, the root included, any order of intermediates', () => {
  assert.ok(
    verifyCertificateChain({ chain: gwCert.pem + h.inter.pem, anchors: h.root.pem, now: T0, purpose: 'serverAuth' }).ok,
  );
  assert.ok(run(gwCert, { chain: [gwCert.der, other.inter.der, h.root.der, h.inter.der] }).ok);
});

test('inner client cert: grant decoded and checked; outer client cert: route decoded', () => {
  const ctx = { orgId: 'acme', gatewayId: 'gw-1', target: { host: 'db.internal', port: 5432 }, mode: 'tcp' as const };
  const v = run(inner, { purpose: 'clientAuth', expectedUri: ACTOR, requireGrant: true });
  assert.ok(v.ok, !v.ok ? v.reason : '');
  assert.deepEqual(v.value.grant, grant);
  assert.ok(checkGrant(v.value.grant!, { ...ctx, now: T0 }).ok);
  const o = run(outer, { purpose: 'clientAuth', requireRoute: true });
  assert.ok(o.ok, !o.ok ? o.reason : '');
  assert.deepEqual(o.value.route, { version: 1, orgId: 'acme', gatewayId: 'gw-1' });
  refused(run(inner, { purpose: 'clientAuth', requireRoute: true }), 'E_CERT_WRONG_TYPE');
});

test('refuses expired and not-yet-valid certificates, honouring the skew', () => {
  const after = (ms: number) => new Date(gwCert.notAfter.getTime() + ms);
  assert.ok(run(gwCert, { now: after(30_000) }).ok, 'within the 60 s skew');
  refused(run(gwCert, { now: after(61_000) }), 'E_CERT_EXPIRED');
  refused(run(gwCert, { now: after(1000), skewSec: 0 }), 'E_CERT_EXPIRED');
  // The edge passes its skew in ms (proxy cert_skew): accepted iff now <= notAfter + skew, to the millisecond.
  assert.ok(run(gwCert, { now: after(5000), skewSec: 5 }).ok);
  refused(run(gwCert, { now: after(5001), skewSec: 5 }), 'E_CERT_EXPIRED');
  assert.ok(run(gwCert, { now: after(0), skewSec: 0 }).ok, 'notAfter itself is still valid');
  refused(run(gwCert, { now: after(1), skewSec: 0 }), 'E_CERT_EXPIRED');
  assert.ok(run(gwCert, { now: after(250), skewSec: 0.25 }).ok);
  refused(run(gwCert, { now: after(251), skewSec: 0.25 }), 'E_CERT_EXPIRED');
  const before = new Date(gwCert.notBefore.getTime() - 61_000);
  refused(run(gwCert, { now: before }), 'E_CERT_NOT_YET_VALID');
  // An expired intermediate fails the chain even when the leaf is fine.
  const shortInter = unwrap(
    createIntermediateCa(h.rootIssuer, {
      subjectKey: h.interKey.publicKey,
      subject: { commonName: 'Short' },
      now: T0,
      lifetimeSec: 600,
    }),
  );
  const shortIssuer = unwrap(loadIssuer(shortInter.pem, h.interKey.privateKey));
  const leaf = unwrap(
    issueGatewayServerCert(shortIssuer, { subjectKey: key.publicKey, uri: GW, now: T0, lifetimeSec: 60 }),
  );
  refused(run(leaf, { now: new Date(T0.getTime() + 3600_000), skewSec: 0 }, shortInter), 'E_CERT_EXPIRED');
});

test('refuses a chain from another CA, even one with identical names (cross-org)', () => {
  const foreign = unwrap(issueGatewayServerCert(other.issuer, { subjectKey: key.publicKey, uri: GW, now: T0 }));
  refused(run(foreign, {}, other.inter), 'E_CERT_UNTRUSTED');
  refused(run(gwCert, { anchors: other.root.pem }), 'E_CERT_UNTRUSTED');
  refused(run(gwCert, { chain: [gwCert.der] }), 'E_CERT_UNTRUSTED'); // intermediate missing
});

test('refuses tampered certificates (TBS byte flipped, signature flipped)', () => {
  const tbsFlip = Buffer.from(gwCert.der);
  const at = tbsFlip.indexOf(Buffer.from('gw-1'));
  assert.ok(at > 0);
  tbsFlip[at] = 'G'.charCodeAt(0);
  refused(run(tbsFlip), 'E_CERT_SIGNATURE');
  const sigFlip = Buffer.from(gwCert.der);
  sigFlip[sigFlip.length - 5]! ^= 0x01;
  refused(run(sigFlip), 'E_CERT_SIGNATURE');
  const interFlip = Buffer.from(h.inter.der);
  interFlip[interFlip.indexOf(Buffer.from('Intermediate'))] = 'i'.charCodeAt(0);
  // The leaf's issuer name no longer matches the tampered intermediate's subject: no path.
  assert.equal(run(gwCert, { chain: [gwCert.der, interFlip] }).ok, false);
});

test('refuses the wrong EKU, a missing EKU and a CA used as a leaf', () => {
  refused(run(gwCert, { purpose: 'clientAuth' }), 'E_CERT_USAGE');
  refused(run(inner, { purpose: 'serverAuth' }), 'E_CERT_USAGE');
  const noEku = unwrap(
    issueCertificate(h.issuer, {
      subjectKey: key.publicKey,
      subject: { commonName: 'no-eku' },
      ...validity({ now: T0, lifetimeSec: 600 }),
      keyUsage: ['digitalSignature'],
      san: { uris: [GW] },
    }),
  );
  refused(run(noEku), 'E_CERT_USAGE');
  refused(run(h.inter, { chain: [h.inter.der] }), 'E_CERT_WRONG_TYPE');
});

test('refuses the wrong URI identity and the wrong host', () => {
  refused(run(gwCert, { expectedUri: gatewayUri(TD, 'acme', 'gw-2') }), 'E_CERT_IDENTITY');
  refused(run(gwCert, { expectedUri: gatewayUri(TD, 'other', 'gw-1') }), 'E_CERT_IDENTITY');
  const proxy = unwrap(
    issueProxyServerCert(h.issuer, {
      subjectKey: key.publicKey,
      uri: instanceProxyUri(TD, 'p1'),
      now: T0,
      dnsNames: ['proxy.example.com'],
      ipAddresses: ['127.0.0.1', '::1'],
    }),
  );
  assert.ok(run(proxy, { expectedHost: 'PROXY.example.com' }).ok);
  assert.ok(run(proxy, { expectedHost: '127.0.0.1' }).ok);
  assert.ok(run(proxy, { expectedHost: '0:0::1' }).ok);
  refused(run(proxy, { expectedHost: 'evil.example.com' }), 'E_CERT_IDENTITY');
  refused(run(proxy, { expectedHost: '127.0.0.2' }), 'E_CERT_IDENTITY');
});

test('refuses revoked leaves and intermediates; isRevoked sees the issuer fingerprint', () => {
  const seen: [string, string][] = [];
  const ok = run(gwCert, {
    isRevoked: (serial, issuer) => {
      seen.push([serial, issuer.fingerprint256]);
      return false;
    },
  });
  assert.ok(ok.ok);
  assert.deepEqual(seen, [
    [gwCert.serialHex, parseCertificate(h.inter.der).fingerprint256],
    [h.inter.serialHex, parseCertificate(h.root.der).fingerprint256],
  ]);
  refused(run(gwCert, { isRevoked: (s) => s === gwCert.serialHex }), 'E_CERT_REVOKED');
  refused(run(gwCert, { isRevoked: (s) => s === h.inter.serialHex }), 'E_CERT_REVOKED');
});

test('refuses a CA:false intermediate and an exceeded pathLen', () => {
  const notCaKey = generateKeyPairSync();
  const notCa = unwrap(
    issueCertificate(h.issuer, {
      subjectKey: notCaKey.publicKey,
      subject: { commonName: 'Not a CA' },
      ...validity({ now: T0, lifetimeSec: 3600 }),
      keyUsage: ['digitalSignature', 'keyCertSign'],
      extKeyUsage: ['1.3.6.1.5.5.7.3.1'],
    }),
  );
  const underNotCa = unwrap(
    issueGatewayServerCert(rawIssuer(notCa, notCaKey.privateKey), { subjectKey: key.publicKey, uri: GW, now: T0 }),
  );
  refused(run(underNotCa, { chain: [underNotCa.der, notCa.der, h.inter.der] }), 'E_CERT_WRONG_TYPE');

  // root (pathLen 1) → inter (pathLen 0) → inter2 → leaf: inter allows no intermediate below it.
  const k2 = generateKeyPairSync();
  const inter2 = unwrap(
    createIntermediateCa(h.issuer, {
      subjectKey: k2.publicKey,
      subject: { commonName: 'Inter 2' },
      now: T0,
      lifetimeSec: 3600,
    }),
  );
  const deep = unwrap(
    issueGatewayServerCert(unwrap(loadIssuer(inter2.pem, k2.privateKey)), {
      subjectKey: key.publicKey,
      uri: GW,
      now: T0,
    }),
  );
  refused(run(deep, { chain: [deep.der, inter2.der, h.inter.der] }), 'E_CERT_CHAIN_TOO_LONG');
});

test('refuses an unknown critical extension, accepts an unknown non-critical one', () => {
  const make = (critical: boolean) =>
    unwrap(
      issueCertificate(h.issuer, {
        subjectKey: key.publicKey,
        subject: { commonName: 'ext' },
        ...validity({ now: T0, lifetimeSec: 600 }),
        keyUsage: ['digitalSignature'],
        extKeyUsage: ['1.3.6.1.5.5.7.3.1'],
        san: { uris: [GW] },
        extraExtensions: [{ oid: '1.3.6.1.4.1.55555.1', critical, value: Buffer.from('0500', 'hex') }],
      }),
    );
  refused(run(make(true)), 'E_CERT_CRITICAL_OPTION');
  assert.ok(run(make(false)).ok);
});

test('grants: missing, for another target / gateway / org / mode, expired (injected clock), or not the subject', () => {
  const ctx = { orgId: 'acme', gatewayId: 'gw-1', target: { host: 'db.internal', port: 5432 }, mode: 'tcp' as const };
  const client = (over: Partial<VerifyOptions>) => run(inner, { purpose: 'clientAuth', ...over });
  refused(run(outer, { purpose: 'clientAuth', requireGrant: true }), 'E_GRANT_MISSING');
  // The verifier, then checkGrant on the grant it decoded, as the gateway's admission runs them.
  const admit = (c: IssuedCert, context: Omit<GrantContext, 'now'>, now = T0): Verdict<unknown> => {
    const v = run(c, { purpose: 'clientAuth', requireGrant: true, now });
    return v.ok ? checkGrant(v.value.grant!, { ...context, now }) : v;
  };
  assert.ok(admit(inner, ctx).ok);
  refused(admit(outer, ctx), 'E_GRANT_MISSING');
  refused(admit(inner, { ...ctx, target: { host: 'db.internal', port: 22 } }), 'E_GRANT_TARGET');
  refused(admit(inner, { ...ctx, target: { name: 'db' } }), 'E_GRANT_TARGET');
  refused(admit(inner, { ...ctx, gatewayId: 'gw-2' }), 'E_GRANT_GATEWAY');
  refused(admit(inner, { ...ctx, orgId: 'other' }), 'E_GRANT_ORG');
  // 30 s after the grant's end the cert is still inside the skew: only the grant check can refuse.
  const late = new Date((grant.notAfter + 30) * 1000);
  assert.ok(client({ now: late }).ok, 'the certificate itself is still acceptable');
  refused(admit(inner, ctx, late), 'E_GRANT_EXPIRED');

  const otherActor = unwrap(
    issueCertificate(h.issuer, {
      subjectKey: key.publicKey,
      subject: { commonName: 'mallory' },
      ...validity({ now: T0, lifetimeSec: 120 }),
      keyUsage: ['digitalSignature'],
      extKeyUsage: ['1.3.6.1.5.5.7.3.2'],
      san: { uris: [identityUri(TD, 'acme', 'mallory')] },
      extraExtensions: [{ oid: GRANT_EXTENSION_OID, critical: false, value: unwrap(encodeGrant(grant)) }],
    }),
  );
  refused(admit(otherActor, ctx), 'E_CERT_IDENTITY');
  const badGrant = unwrap(
    issueCertificate(h.issuer, {
      subjectKey: key.publicKey,
      subject: { commonName: 'alice' },
      ...validity({ now: T0, lifetimeSec: 120 }),
      keyUsage: ['digitalSignature'],
      extKeyUsage: ['1.3.6.1.5.5.7.3.2'],
      san: { uris: [ACTOR] },
      extraExtensions: [{ oid: GRANT_EXTENSION_OID, critical: false, value: Buffer.from('300100', 'hex') }],
    }),
  );
  refused(run(badGrant, { purpose: 'clientAuth' }), 'E_GRANT_MALFORMED');
});

test('refuses malformed input', () => {
  refused(run(Buffer.from('3003020100', 'hex')), 'E_CERT_MALFORMED');
  refused(run(gwCert.der.subarray(0, gwCert.der.length - 3)), 'E_CERT_MALFORMED');
  refused(verifyCertificateChain({ chain: 'not a pem', anchors, now: T0, purpose: 'serverAuth' }), 'E_CERT_MALFORMED');
  refused(verifyCertificateChain({ chain: [], anchors, now: T0, purpose: 'serverAuth' }), 'E_CERT_MALFORMED');
  const many = Array.from({ length: 20 }, () => h.inter.der);
  refused(run(gwCert, { chain: [gwCert.der, ...many] }), 'E_CERT_MALFORMED');
  assert.equal(loadTrustAnchors('nothing').ok, false);
  // Trailing garbage after a DER cert is not a cert.
  refused(run(Buffer.concat([gwCert.der, Buffer.from([0])])), 'E_CERT_MALFORMED');
  assert.match(toPem(gwCert.der), /^-----BEGIN CERTIFICATE-----\n/);
});

test('verifyAgain: the verdict verifyCertificateChain gives at a later moment, on the path judged before', () => {
  const opts = { purpose: 'clientAuth' as const, expectedUri: ACTOR, requireGrant: true };
  const first = run(inner, opts);
  assert.ok(first.ok, !first.ok ? first.reason : '');
  const peer = first.value;
  const again = (over: Partial<VerifyOptions>) => verifyAgain(peer, { ...opts, anchors, now: T0, ...over });
  // Every moment around the leaf's and the intermediate's ends, with and without the skew: the same verdict.
  const edges = [inner.notBefore, inner.notAfter, h.inter.notAfter].map((d) => d.getTime());
  for (const edge of edges) {
    for (const delta of [-61_000, -60_000, -1, 0, 1, 59_999, 60_000, 60_001, 3_600_000]) {
      const now = new Date(edge + delta);
      const full = run(inner, { ...opts, now });
      const judged = again({ now });
      assert.ok(judged, 'judged again');
      assert.equal(judged.ok, full.ok, `at ${now.toISOString()}`);
      if (!judged.ok && !full.ok) assert.equal(judged.code, full.code);
      if (judged.ok) assert.equal(judged.value, peer, 'the same peer');
    }
  }
  // Revoked since: the leaf, or the intermediate that signed it.
  const leafRevoked = again({ isRevoked: (s) => s === inner.serialHex });
  assert.ok(leafRevoked);
  refused(leafRevoked, 'E_CERT_REVOKED');
  const interRevoked = again({ isRevoked: (s) => s === h.inter.serialHex });
  assert.ok(interRevoked);
  refused(interRevoked, 'E_CERT_REVOKED');
  assert.ok(again({ isRevoked: () => false })?.ok);
});

test('verifyAgain: nothing to judge again under other anchors or expectations, for a copy, or with the cache off', () => {
  const asked = { purpose: 'clientAuth' as const, requireGrant: true };
  const first = run(inner, asked);
  assert.ok(first.ok);
  const peer = first.value;
  assert.ok(verifyAgain(peer, { ...asked, anchors, now: T0 })?.ok, 'the same options: judged again');
  // The same CA loaded again is another anchor set object (a reload): verified in full by the caller.
  assert.equal(verifyAgain(peer, { ...asked, anchors: unwrap(loadTrustAnchors(h.root.pem)), now: T0 }), undefined);
  assert.equal(verifyAgain(peer, { ...asked, anchors: h.root.pem, now: T0 }), undefined);
  // Other expectations than the first verdict's: a full verification would judge them, so nothing is judged again.
  for (const other of [
    { purpose: 'serverAuth' as const, requireGrant: true },
    { purpose: 'clientAuth' as const },
    { ...asked, requireRoute: true },
    { ...asked, expectedUri: ACTOR },
    { ...asked, expectedHost: 'db.internal' },
  ]) {
    assert.equal(verifyAgain(peer, { ...other, anchors, now: T0 }), undefined, JSON.stringify(other));
  }
  assert.equal(verifyAgain({ ...peer }, { ...asked, anchors, now: T0 }), undefined, 'a copy is not a verdict');
  // The verdict judged again is the one given: it cannot be changed in between.
  assert.ok(Object.isFrozen(peer) && Object.isFrozen(peer.uris) && Object.isFrozen(peer.grant));
  assert.throws(() => {
    (peer.uris as string[]).push('spiffe://other');
  });
  // A verdict given on anchors passed as PEM (loaded inside) has no anchor object to be judged again under.
  const fromPem = verifyCertificateChain({ chain: [inner.der, h.inter.der], anchors: h.root.pem, now: T0, ...asked });
  assert.ok(fromPem.ok);
  assert.equal(verifyAgain(fromPem.value, { ...asked, anchors, now: T0 }), undefined);
  // The path cache off (the setup bench's comparison): every judgement in full, none judged again.
  setPathCacheCapacity(0);
  try {
    assert.equal(verifyAgain(peer, { ...asked, anchors, now: T0 }), undefined);
  } finally {
    setPathCacheCapacity(PATH_CACHE_CAPACITY);
  }
});
