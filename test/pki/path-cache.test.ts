/**
 * THE verifier's path cache (lib/pki/path-cache.ts): a chain seen before skips its parse and its signature
 * checks, and nothing else. Each refusal below is asserted on a cache hit, so each test fails when the cache
 * skips the check it names (validity by the injected clock, revocation, the anchor set, the leaf's purpose
 * and identity).
 */
import assert from 'node:assert/strict';
import { beforeEach, test } from 'node:test';
import { unwrap, type Verdict } from '../../lib/errors/codes.js';
import { gatewayUri } from '../../lib/pki/identity.js';
import { generateKeyPairSync } from '../../lib/pki/keys.js';
import { clearPathCache, PATH_CACHE_CAPACITY, pathCacheStats, setPathCacheCapacity } from '../../lib/pki/path-cache.js';
import { issueGatewayServerCert } from '../../lib/pki/profiles.js';
import { loadTrustAnchors, type VerifyOptions, verifyCertificateChain } from '../../lib/pki/verify.js';
import { hierarchy, T0 } from './fixtures.js';

const h = hierarchy('ecdsa-p256', 'Acme');
const rotated = hierarchy('ecdsa-p256', 'Acme'); // the CA after a rotation: the very same names, new keys
const key = generateKeyPairSync();
const GW = gatewayUri('td.example', 'acme', 'gw-1');
const gwCert = unwrap(issueGatewayServerCert(h.issuer, { subjectKey: key.publicKey, uri: GW, now: T0 }));
const anchors = unwrap(loadTrustAnchors(h.root.pem));

function run(over: Partial<VerifyOptions> = {}) {
  return verifyCertificateChain({
    chain: [gwCert.der, h.inter.der],
    anchors,
    now: T0,
    purpose: 'serverAuth',
    expectedUri: GW,
    ...over,
  });
}

function refused(v: Verdict<unknown>, code: string) {
  assert.equal(v.ok, false, `expected ${code}, got accepted`);
  assert.equal(!v.ok && v.code, code, !v.ok ? v.reason : '');
}

/** Runs `f` and asserts it was answered from the cache. */
function onHit<T>(f: () => T): T {
  const before = pathCacheStats().hits;
  const out = f();
  assert.equal(pathCacheStats().hits, before + 1, 'the chain was found in the cache');
  return out;
}

beforeEach(() => clearPathCache());

test('a chain verified once is found again, with the same verdict', () => {
  const first = run();
  assert.ok(first.ok);
  assert.deepEqual(pathCacheStats(), { hits: 0, misses: 1, size: 1, capacity: PATH_CACHE_CAPACITY });
  const second = onHit(() => run());
  assert.deepEqual(second, first);
  // The chain as PEM is the same bytes, so the same entry.
  onHit(() => run({ chain: [gwCert.pem, h.inter.pem] }));
  // A caller cannot change what it was given (verdicts are frozen), and what it can (a Date's time) does not
  // change the next caller's answer.
  assert.ok(second.ok);
  assert.throws(() => (second.value.uris as string[]).push('spiffe://evil'), TypeError);
  second.value.notAfter.setTime(0);
  assert.deepEqual(
    onHit(() => run()),
    first,
  );
});

test('a cached chain is refused once expired or not yet valid by the injected clock', () => {
  assert.ok(run().ok);
  const after = new Date(gwCert.notAfter.getTime() + 61_000);
  refused(
    onHit(() => run({ now: after })),
    'E_CERT_EXPIRED',
  );
  refused(
    onHit(() => run({ now: after, skewSec: 0 })),
    'E_CERT_EXPIRED',
  );
  refused(
    onHit(() => run({ now: new Date(gwCert.notBefore.getTime() - 61_000) })),
    'E_CERT_NOT_YET_VALID',
  );
  assert.ok(onHit(() => run()).ok);
});

test('a cached chain is refused once its leaf or its intermediate is revoked', () => {
  assert.ok(run({ isRevoked: () => false }).ok);
  refused(
    onHit(() => run({ isRevoked: (serial) => serial === gwCert.serialHex })),
    'E_CERT_REVOKED',
  );
  refused(
    onHit(() => run({ isRevoked: (serial) => serial === h.inter.serialHex })),
    'E_CERT_REVOKED',
  );
});

test('a cached chain is refused once the anchors changed (rotation), and found again only under its anchors', () => {
  assert.ok(run().ok);
  // After a rotation the old root is gone: a CA with the same names but other keys does not vouch for it.
  const after = unwrap(loadTrustAnchors(rotated.root.pem));
  refused(run({ anchors: after }), 'E_CERT_UNTRUSTED');
  // Loaded again from the same PEM (a reload): the same set, the same entry.
  onHit(() => assert.ok(run({ anchors: unwrap(loadTrustAnchors(h.root.pem)) }).ok));
  // During a rotation both roots are trusted: another set, judged afresh, and accepted.
  const both = unwrap(loadTrustAnchors([rotated.root.pem, h.root.pem]));
  const misses = pathCacheStats().misses;
  assert.ok(run({ anchors: both }).ok);
  assert.equal(pathCacheStats().misses, misses + 1);
});

test("a cached chain is still held to the caller's purpose and expected identity", () => {
  assert.ok(run().ok);
  refused(
    onHit(() => run({ purpose: 'clientAuth' })),
    'E_CERT_USAGE',
  );
  refused(
    onHit(() => run({ expectedUri: gatewayUri('td.example', 'acme', 'gw-2') })),
    'E_CERT_IDENTITY',
  );
  refused(
    onHit(() => run({ requireGrant: true })),
    'E_GRANT_MISSING',
  );
});

test('refused chains are not kept, and the cache is bounded', () => {
  const stranger = hierarchy('ecdsa-p256', 'Acme');
  const forged = unwrap(issueGatewayServerCert(stranger.issuer, { subjectKey: key.publicKey, uri: GW, now: T0 }));
  refused(run({ chain: [forged.der, stranger.inter.der] }), 'E_CERT_UNTRUSTED');
  refused(run({ chain: [forged.der, stranger.inter.der] }), 'E_CERT_UNTRUSTED');
  assert.equal(pathCacheStats().size, 0);
  assert.equal(pathCacheStats().hits, 0);
  // A chain of our CAs refused for what is judged on every call takes no place either (nor evicts another).
  const ours = unwrap(issueGatewayServerCert(h.issuer, { subjectKey: key.publicKey, uri: GW, now: T0 }));
  refused(
    run({ chain: [ours.der, h.inter.der], now: new Date(T0.getTime() + 10 * 365 * 86_400_000) }),
    'E_CERT_EXPIRED',
  );
  refused(run({ chain: [ours.der, h.inter.der], isRevoked: () => true }), 'E_CERT_REVOKED');
  assert.equal(pathCacheStats().size, 0, 'expired and revoked chains are not kept');

  const n = PATH_CACHE_CAPACITY + 5;
  const leaves = Array.from({ length: n }, () =>
    unwrap(issueGatewayServerCert(h.issuer, { subjectKey: key.publicKey, uri: GW, now: T0 })),
  );
  for (const leaf of leaves) assert.ok(run({ chain: [leaf.der, h.inter.der] }).ok);
  assert.equal(pathCacheStats().size, PATH_CACHE_CAPACITY);
  // The oldest went first; the newest is still there.
  const misses = pathCacheStats().misses;
  onHit(() => run({ chain: [leaves[n - 1]!.der, h.inter.der] }));
  assert.ok(run({ chain: [leaves[0]!.der, h.inter.der] }).ok);
  assert.equal(pathCacheStats().misses, misses + 1);
});

test('with capacity 0 nothing is kept, and every chain is judged in full', () => {
  assert.ok(run().ok);
  setPathCacheCapacity(0);
  try {
    assert.equal(pathCacheStats().size, 0, 'lowering the capacity drops what no longer fits');
    assert.ok(run().ok);
    assert.ok(run().ok);
    assert.deepEqual(pathCacheStats(), { hits: 0, misses: 3, size: 0, capacity: 0 });
  } finally {
    setPathCacheCapacity(PATH_CACHE_CAPACITY);
  }
});
